"""`az webapp remote-connection ssh`, `ssh-config` and `create --stdio` end to end: the real az with
the extension wheel, the sandbox's sshd, real OpenSSH (ssh, scp, rsync) and a pseudo-terminal."""
import hashlib
import json
import os
import shutil
import subprocess
import time

import pexpect
import pytest

from azext_webapp import ssh as webapp_ssh
from tests.fixtures_command import AZ, ssh_env
from tests.test_command_tunnel import secrets_of

pytestmark = pytest.mark.root


def az_ssh(webapp_az, *args, remote=(), timeout=120):
    return webapp_az.run('webapp', 'remote-connection', 'ssh', '-g', 'sandbox-rg', *args, '--', *remote,
                         timeout=timeout)


def known_hosts(webapp_az):
    return os.path.join(webapp_az.env['AZURE_CONFIG_DIR'], 'webapp', 'known_hosts')


def test_remote_command_output_exit_status_and_key_pinned(webapp_az, sandbox_sshd):
    alias = webapp_ssh.host_key_alias(sandbox_sshd.app('linux-app').scm_url)
    result = az_ssh(webapp_az, '-n', 'linux-app', remote=['echo out-$((40+2)); hostname; echo err >&2; exit 7'])
    assert result.returncode == 7, result.stderr
    assert result.stdout.split() == ['out-42', 'linux-app-i0']
    assert 'err' in result.stderr
    for secret in secrets_of(sandbox_sshd, 'linux-app'):
        assert secret not in result.stdout + result.stderr
    # The first use recorded the key under the app's alias; the next use checks it and succeeds.
    assert webapp_ssh.stored_keys(alias, known_hosts(webapp_az))
    again = az_ssh(webapp_az, '-n', 'linux-app', remote=['true'])
    assert again.returncode == 0, again.stderr


def test_user_options_pass_through_and_slot(webapp_az, sandbox_sshd):
    # Options reach ssh, the remote command keeps its words, and the slot is the slot.
    result = az_ssh(webapp_az, '-n', 'slot-app', '--slot', 'staging',
                    remote=['-o', 'ConnectTimeout=30', '-T', 'echo', 'a  b', '&&', 'hostname'])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split('\n')[:2] == ['a b', 'slot-app-staging-i0']


def test_changed_host_key_is_refused(webapp_az, sandbox_sshd, tmp_path):
    alias = webapp_ssh.host_key_alias(sandbox_sshd.app('scaled-app').scm_url, 'scaled-app-i1')
    path = known_hosts(webapp_az)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(tmp_path / 'other')], check=True)
    kind, blob = (tmp_path / 'other.pub').read_text().split()[:2]
    with open(path, 'a', encoding='utf-8') as handle:
        handle.write(f'{alias} {kind} {blob}\n')
    result = az_ssh(webapp_az, '-n', 'scaled-app', '--instance', 'scaled-app-i1', remote=['echo should-not-run'])
    assert result.returncode != 0
    assert 'should-not-run' not in result.stdout
    assert 'REMOTE HOST IDENTIFICATION HAS CHANGED' in result.stderr  # OpenSSH's own refusal ...
    assert "Refused: the SSH host key of app 'scaled-app' is not the one recorded" in result.stderr  # ... and ours
    assert f'ssh-keygen -R {alias} -f {path}' in result.stderr
    assert webapp_ssh.stored_keys(alias, path) == {(kind, blob)}  # the pinned key was not replaced


def test_interactive_session_ctrl_c_interrupts_remote_sleep(webapp_az, sandbox_sshd):
    child = pexpect.spawn(AZ, ['webapp', 'remote-connection', 'ssh', '-g', 'sandbox-rg', '-n', 'linux-app'],
                          env=webapp_az.env, cwd=webapp_az.cwd, timeout=60, encoding='utf-8',
                          dimensions=(40, 120))
    try:
        child.sendline("PS1='P''S> '")  # a prompt that the echo of this line does not contain
        child.expect_exact('PS> ')
        child.sendline('sleep 30; echo slept-$((1+1))')
        time.sleep(1.0)
        started = time.monotonic()
        child.sendcontrol('c')  # goes to the remote sleep, not to az or ssh
        child.expect_exact('PS> ', timeout=15)
        child.sendline('echo alive-$((20+1))')
        child.expect_exact('alive-21', timeout=15)
        assert time.monotonic() - started < 15
        assert 'slept-2' not in child.before
        child.expect_exact('PS> ')
        time.sleep(0.3)  # readline is reading again: ^D now means end of input to the shell
        child.sendcontrol('d')  # ends the shell, ssh, the tunnel and az
        child.expect(pexpect.EOF, timeout=30)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, child.before


def test_ssh_config_prints_block_and_updates_file_idempotently(webapp_az, sandbox_sshd, tmp_path):
    printed = webapp_az.run('webapp', 'remote-connection', 'ssh-config', '-g', 'sandbox-rg', '-n', 'slot-app',
                            '--slot', 'staging')
    assert printed.returncode == 0, printed.stderr
    alias = webapp_ssh.host_key_alias(sandbox_sshd.app('slot-app', 'staging').scm_url)
    lines = printed.stdout.splitlines()
    assert lines[0] == '# BEGIN az webapp remote-connection: slot-app-staging'
    assert lines[-1] == '# END az webapp remote-connection: slot-app-staging'
    assert '    User root' in lines
    assert f'    HostKeyAlias {alias}' in lines
    assert f'    UserKnownHostsFile {known_hosts(webapp_az)}' in lines
    assert '    StrictHostKeyChecking accept-new' in lines
    proxy = next(line for line in lines if line.startswith('    ProxyCommand '))
    # The subscription and the (non-default) az config directory go with it.
    assert proxy.startswith(f"    ProxyCommand env AZURE_CONFIG_DIR={webapp_az.env['AZURE_CONFIG_DIR']} "), proxy
    assert proxy.endswith(' -P -m azure.cli webapp remote-connection create -g sandbox-rg -n slot-app '
                          f'--slot staging --subscription {sandbox_sshd.subscription} --stdio')

    config = tmp_path / 'config'
    config.write_text('Host other\n    User bob')  # no final newline
    ours = tmp_path / 'config.az-webapp'
    for expected in ('Added', 'Already up to date:'):
        result = webapp_az.run('webapp', 'remote-connection', 'ssh-config', '-g', 'sandbox-rg', '-n', 'slot-app',
                               '--slot', 'staging', '--file', str(config))
        assert result.returncode == 0, result.stderr
        assert expected in result.stderr and f'included from the top of {config}' in result.stderr
        assert result.stdout == ''
    assert config.read_text() == webapp_ssh.include_lines(str(ours)) + '\nHost other\n    User bob'
    assert ours.read_text() == webapp_ssh.OURS_HEADER.format(config=config) + '\n' + printed.stdout
    assert (ours.stat().st_mode & 0o777) == 0o600
    fresh = tmp_path / 'new' / 'config'  # a missing directory is not created behind the user's back
    missing = webapp_az.run('webapp', 'remote-connection', 'ssh-config', '-g', 'sandbox-rg', '-n', 'slot-app',
                            '--slot', 'staging', '--file', str(fresh))
    assert missing.returncode != 0
    assert f'The directory {fresh.parent} does not exist' in missing.stderr and 'mkdir -m 700' in missing.stderr
    assert not fresh.parent.exists()


def test_ssh_config_block_wins_over_host_star_and_never_replaces_a_foreign_block(
        webapp_az, sandbox_sshd, tmp_path):
    """A real configuration: options outside any block and a `Host *` with `User bob` come first. OpenSSH
    keeps the first value it reads, yet the generated host logs in as root, through the ProxyCommand,
    without AZURE_CONFIG_DIR in ssh's environment; other hosts keep the user's settings."""
    config = tmp_path / 'config'
    user_text = ('ForwardAgent yes\n'
                 'Host *\n    User bob\n    ServerAliveInterval 7\n'
                 'Match host nothing-matches\n    User carol\n'
                 '# an older run of this command appended its block here\n\n'
                 + webapp_ssh.config_block('linux-app', 'old-rg', 'linux-app', 'old-alias', '/old/known_hosts'))
    config.write_text(user_text)
    webapp_az.run('webapp', 'remote-connection', 'ssh-config', '-g', 'sandbox-rg', '-n', 'linux-app', '--file',
                  str(config), check=True)
    text = config.read_text()
    assert text.startswith(webapp_ssh.include_lines(f'{config}.az-webapp'))
    assert 'old-rg' not in text and 'old-rg' not in (tmp_path / 'config.az-webapp').read_text()  # moved, updated
    env = ssh_env(str(tmp_path))
    env.update({k: v for k, v in webapp_az.env.items() if k.startswith(('AZURE_', 'REQUESTS_'))})
    env.pop('AZURE_CONFIG_DIR')  # the ProxyCommand names it
    run = dict(env=env, cwd=webapp_az.cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    settings = subprocess.run(['ssh', '-G', '-F', str(config), 'linux-app'], **run).stdout.splitlines()
    assert 'user root' in settings and 'forwardagent yes' in settings and 'serveraliveinterval 7' in settings
    other = subprocess.run(['ssh', '-G', '-F', str(config), 'elsewhere'], **run).stdout.splitlines()
    assert 'user bob' in other and 'forwardagent yes' in other
    login = subprocess.run(['ssh', '-F', str(config), 'linux-app', 'whoami; hostname'], **run)
    assert login.returncode == 0, login.stderr
    assert login.stdout.split() == ['root', 'linux-app-i0']

    # A Host block of the user's own with the same name is never replaced: a clear error, nothing written.
    before, ours_before = config.read_text(), (tmp_path / 'config.az-webapp').read_text()
    config.write_text(before + 'Host mine\n    User bob\n')
    refused = webapp_az.run('webapp', 'remote-connection', 'ssh-config', '-g', 'sandbox-rg', '-n', 'linux-app',
                            '--host', 'mine', '--file', str(config))
    assert refused.returncode != 0
    assert f"{config} already has a Host block for 'mine'" in refused.stderr and '--host' in refused.stderr
    assert config.read_text() == before + 'Host mine\n    User bob\n'
    assert (tmp_path / 'config.az-webapp').read_text() == ours_before


def test_proxy_command_on_windows_and_with_the_default_config_dir():
    """The platform branch, simulated: Windows has no `env` and reads a CreateProcess command line."""
    default = webapp_ssh.default_config_dir()
    posix = webapp_ssh.proxy_command('rg', 'app', subscription='sub-1', config_dir=default, windows=False)
    assert 'AZURE_CONFIG_DIR' not in posix and posix.endswith(' create -g rg -n app --subscription sub-1 --stdio')
    windows = webapp_ssh.proxy_command('rg', 'app 1%', subscription='sub-1', config_dir='C:\\Users\\me\\az dir',
                                       windows=True)
    assert not windows.startswith('env ')
    assert "os.environ[\\\"AZURE_CONFIG_DIR\\\"]='C:\\\\Users\\\\me\\\\az dir'" in windows, windows
    assert windows.endswith(' -n "app 1%%" --subscription sub-1 --stdio'), windows
    assert webapp_ssh.include_lines('C:\\Users\\me\\.ssh\\config.az-webapp', windows=True).splitlines()[1] == \
        'Include C:/Users/me/.ssh/config.az-webapp'


def test_stdio_takes_no_port_options(webapp_az):
    result = webapp_az.run('webapp', 'remote-connection', 'create', '-g', 'sandbox-rg', '-n', 'linux-app', '--stdio',
                           '--port', '2222', '--timeout', '5')
    assert result.returncode != 0 and result.stdout == ''
    assert '--stdio relays standard input and output and opens no local port, so --port, --timeout cannot' \
        in result.stderr


def test_merge_block_replaces_in_place():
    block = webapp_ssh.config_block('app', 'rg', 'app', 'alias', '/kh')
    newer = webapp_ssh.config_block('app', 'rg2', 'app', 'alias', '/kh')
    text = webapp_ssh.merge_block('Host a\n', block, 'app') + 'Host z\n'
    merged = webapp_ssh.merge_block(text, newer, 'app')
    assert merged == 'Host a\n\n' + newer + 'Host z\n'
    assert webapp_ssh.merge_block(merged, newer, 'app') == merged


def test_ssh_argv_is_exact():
    argv = webapp_ssh.ssh_argv('/usr/bin/ssh', 40001, 'app.example', '/c/webapp/known_hosts',
                               ['-v', '-L', '8080:localhost:80', '-oServerAliveInterval=5', 'ls', '-l'])
    assert argv == ['/usr/bin/ssh', '-o', 'HostKeyAlias=app.example', '-o', 'UserKnownHostsFile=/c/webapp/known_hosts',
                    '-o', 'StrictHostKeyChecking=accept-new', '-p', '40001', '-v', '-L', '8080:localhost:80',
                    '-oServerAliveInterval=5', '-o', 'Ciphers=+aes128-cbc,aes256-cbc', 'root@127.0.0.1', 'ls', '-l']
    own = webapp_ssh.ssh_argv('ssh', 1, 'a', '/kh', ['-l', 'bob', '-i', 'key', '--', '-x'])
    assert own[-5:] == ['key', '-o', 'Ciphers=+aes128-cbc,aes256-cbc', '127.0.0.1', '-x']
    assert webapp_ssh.has_own_identity(['-i', 'key'])
    assert webapp_ssh.has_own_identity(['-o', 'IdentityFile=/k'])
    assert not webapp_ssh.has_own_identity(['-v', '-L', '1:h:2'])


# ---------------------------------------------------------------------------------------------
# ProxyCommand: create --stdio through the ssh-config block


def stdio_available():
    from azext_webapp import tunnel
    return hasattr(tunnel.Tunnel, 'relay_stdio')


needs_stdio = pytest.mark.skipif(not stdio_available(), reason='the engine has no stdio mode yet')


@pytest.fixture(scope='module')
def proxy_config(webapp_az, sandbox, tmp_path_factory):
    """An ssh_config with the linux-app block, and an environment for OpenSSH clients that use it."""
    if not sandbox.sshd_available:
        pytest.skip(f'sandbox without sshd instances: {sandbox.sshd_unavailable_reason}')
    directory = tmp_path_factory.mktemp('proxy')
    config = directory / 'config'
    webapp_az.run('webapp', 'remote-connection', 'ssh-config', '-g', 'sandbox-rg', '-n', 'linux-app', '--file',
                  str(config), check=True)
    env = ssh_env(str(directory))
    env.update({k: v for k, v in webapp_az.env.items() if k.startswith(('AZURE_', 'REQUESTS_'))})
    return str(config), env


@needs_stdio
def test_scp_and_rsync_through_the_ssh_config_block(proxy_config, webapp_az, tmp_path):
    config, env = proxy_config
    payload = os.urandom(2 * 1024 * 1024)
    (tmp_path / 'up.bin').write_bytes(payload)
    tree = tmp_path / 'tree'
    (tree / 'sub').mkdir(parents=True)
    (tree / 'a.txt').write_text('alpha\n')
    (tree / 'sub' / 'b.bin').write_bytes(payload[:12345])
    run = dict(env=env, cwd=webapp_az.cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)

    up = subprocess.run(['scp', '-F', config, str(tmp_path / 'up.bin'), 'linux-app:/tmp/webapp-scp.bin'], **run)
    assert up.returncode == 0, up.stderr
    down = subprocess.run(['scp', '-F', config, 'linux-app:/tmp/webapp-scp.bin', str(tmp_path / 'down.bin')], **run)
    assert down.returncode == 0, down.stderr
    assert (tmp_path / 'down.bin').read_bytes() == payload

    assert shutil.which('rsync'), 'rsync is not installed (make deps installs it)'
    sync = subprocess.run(['rsync', '-a', '-e', f'ssh -F {config}', f'{tree}/', 'linux-app:/tmp/webapp-rsync/'],
                          **run)
    assert sync.returncode == 0, sync.stderr
    back = subprocess.run(['rsync', '-a', '-e', f'ssh -F {config}', 'linux-app:/tmp/webapp-rsync/',
                           f'{tmp_path}/back/'], **run)
    assert back.returncode == 0, back.stderr
    assert (tmp_path / 'back' / 'a.txt').read_text() == 'alpha\n'
    assert (tmp_path / 'back' / 'sub' / 'b.bin').read_bytes() == payload[:12345]
    clean = subprocess.run(['ssh', '-F', config, 'linux-app', 'rm -rf /tmp/webapp-rsync /tmp/webapp-scp.bin'], **run)
    assert clean.returncode == 0, clean.stderr


@needs_stdio
def test_256_mib_through_stdio_mode_arrive_byte_exact(proxy_config, webapp_az):
    config, env = proxy_config
    size, chunk = 256 * 1024 * 1024, os.urandom(1024 * 1024)
    proc = subprocess.Popen(['ssh', '-F', config, 'linux-app', 'cat > /tmp/webapp-stdio.bin && '
                             'sha256sum /tmp/webapp-stdio.bin && rm /tmp/webapp-stdio.bin'],
                            env=env, cwd=webapp_az.cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    digest = hashlib.sha256()
    started = time.monotonic()
    for i in range(size // len(chunk)):
        block = bytes([i & 0xff]) + chunk[1:]  # every MiB different
        digest.update(block)
        proc.stdin.write(block)
    proc.stdin.close()
    out, err = proc.stdout.read(), proc.stderr.read()  # a line each: the pipes never filled meanwhile
    proc.wait(timeout=120)
    assert proc.returncode == 0, err.decode(errors='replace')
    assert out.decode().split()[0] == digest.hexdigest()
    assert time.monotonic() - started < 180


# ---------------------------------------------------------------------------------------------
# --instance all / NAME,NAME: one command on every instance at once


def _times_and_host(stdout_lines):
    """(start, end, hostname) from the lines of `date +%s.%N; sleep 2; date +%s.%N; hostname`."""
    return float(stdout_lines[0]), float(stdout_lines[1]), stdout_lines[2]


EVERYWHERE = 'date +%s.%N; sleep 2; date +%s.%N; hostname; echo to-stderr >&2; exit 3'


def _forget_keys(webapp_az, sandbox_sshd, app, names):
    """Start from no pinned keys for these instances (test_changed_host_key_is_refused plants a wrong one)."""
    for name in names:
        alias = webapp_ssh.host_key_alias(sandbox_sshd.app(app).scm_url, name)
        if os.path.exists(known_hosts(webapp_az)):
            subprocess.run(['ssh-keygen', '-R', alias, '-f', known_hosts(webapp_az)], capture_output=True, check=True)


def test_instance_all_runs_on_every_instance_at_once_with_prefixed_lines(webapp_az, sandbox_sshd):
    _forget_keys(webapp_az, sandbox_sshd, 'scaled-app', ['scaled-app-i0', 'scaled-app-i1'])
    result = az_ssh(webapp_az, '-n', 'scaled-app', '--instance', 'all', remote=[EVERYWHERE])
    assert result.returncode == 3, result.stderr
    runs = {}
    for name in ('scaled-app-i0', 'scaled-app-i1'):
        mine = [line[len(name) + 2:] for line in result.stdout.splitlines() if line.startswith(f'{name}: ')]
        assert len(mine) == 3, result.stdout
        runs[name] = _times_and_host(mine)
        assert runs[name][2] == name  # each instance's own sshd, through its own tunnel
        assert f'{name}: to-stderr' in result.stderr.splitlines()
    (start0, end0, _), (start1, end1, _) = runs.values()
    assert start0 < end1 and start1 < end0, runs  # the two 2-second runs overlapped: in parallel
    # Each instance's key is pinned under its own alias.
    for name in ('scaled-app-i0', 'scaled-app-i1'):
        alias = webapp_ssh.host_key_alias(sandbox_sshd.app('scaled-app').scm_url, name)
        assert webapp_ssh.stored_keys(alias, known_hosts(webapp_az))
    for secret in secrets_of(sandbox_sshd, 'scaled-app'):
        assert secret not in result.stdout + result.stderr


def test_instance_list_with_a_failing_instance_json_records_and_worst_status(webapp_az, sandbox_sshd):
    _forget_keys(webapp_az, sandbox_sshd, 'scaled-app', ['scaled-app-i0', 'scaled-app-i1'])
    with sandbox_sshd.sshd_down('scaled-app', instance='scaled-app-i1'):
        result = az_ssh(webapp_az, '-n', 'scaled-app', '--instance', 'scaled-app-i1,scaled-app-i0', '-o', 'json',
                        remote=['hostname; echo err >&2; exit 4'])
    assert result.returncode == 255, result.stderr  # the unreachable instance is the worst
    records = json.loads(result.stdout)
    assert [record['instance'] for record in records] == ['scaled-app-i1', 'scaled-app-i0']
    down, up = records
    assert up['exitStatus'] == 4 and up['stdout'] == 'scaled-app-i0\n' and up['stderr'].endswith('err\n')
    assert up['error'] is None and 0 < up['seconds'] < 60
    assert down['exitStatus'] == 255 and down['stdout'] == ''
    assert "container port 2222 of app 'scaled-app' (instance 'scaled-app-i1')" in down['error'], down
    assert 'Traceback' not in result.stderr


def test_instance_all_needs_a_command_and_unknown_names_are_named(webapp_az, sandbox_sshd):
    interactive = webapp_az.run('webapp', 'remote-connection', 'ssh', '-g', 'sandbox-rg', '-n', 'scaled-app',
                                '--instance', 'all')
    assert interactive.returncode != 0 and interactive.stdout == ''
    assert 'needs the command after `--`' in interactive.stderr
    assert 'An interactive session reaches one instance' in interactive.stderr
    unknown = az_ssh(webapp_az, '-n', 'scaled-app', '--instance', 'scaled-app-i0,nope', remote=['true'])
    assert unknown.returncode != 0
    assert "'nope' is not an instance of app 'scaled-app' (instances: scaled-app-i0, scaled-app-i1)" \
        in unknown.stderr
    create = webapp_az.run('webapp', 'remote-connection', 'create', '-g', 'sandbox-rg', '-n', 'scaled-app',
                           '--instance', 'all')
    assert create.returncode != 0 and 'create opens one tunnel to one instance' in create.stderr
    forward = az_ssh(webapp_az, '-n', 'scaled-app', '--instance', 'all', remote=['-L', '8080:localhost:80', 'true'])
    assert forward.returncode != 0 and 'cannot forward ports (-L)' in forward.stderr, forward.stderr


def test_instance_all_output_honours_query(webapp_az, sandbox_sshd):
    _forget_keys(webapp_az, sandbox_sshd, 'scaled-app', ['scaled-app-i0', 'scaled-app-i1'])
    result = az_ssh(webapp_az, '-n', 'scaled-app', '--instance', 'all', '-o', 'tsv', '--query',
                    '[].[instance, exitStatus, stdout]', remote=['hostname'])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['scaled-app-i0', '0', 'scaled-app-i0', 'scaled-app-i1', '0', 'scaled-app-i1']


def test_ssh_options_without_double_dash_get_a_hint(webapp_az):
    for words, shown in ((['-L', '8080:localhost:80'], '-L 8080:localhost:80'),
                         (['-i', '~/.ssh/id_ed25519', '-v'], '-i ~/.ssh/id_ed25519 -v'),
                         (['-o', 'ConnectTimeout=5'], '-o ConnectTimeout=5')):
        result = webapp_az.run('webapp', 'remote-connection', 'ssh', '-g', 'sandbox-rg', '-n', 'linux-app', *words)
        assert result.returncode != 0
        errors = [line for line in result.stderr.splitlines() if line.startswith('ERROR:')]
        assert len(errors) == 1, result.stderr
        assert 'Put ssh\'s options and the remote command after `--`' in errors[0]
        assert f'az webapp remote-connection ssh -g GROUP -n APP -- {shown}`' in errors[0], errors[0]


@pytest.mark.parametrize('app,slot,hostname', [('slot-app', 'staging', 'slot-app-staging-i0'),
                                               ('linux-app', None, 'linux-app-i0')])
def test_ssh_ids_of_an_app_or_a_slot_reach_it(webapp_az, sandbox_sshd, app, slot, hostname):
    result = webapp_az.run('webapp', 'remote-connection', 'ssh', '--ids', sandbox_sshd.site_id(app, slot),
                           '--', 'hostname')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == hostname


def test_ssh_config_ids_of_a_production_app(webapp_az, sandbox):
    result = webapp_az.run('webapp', 'remote-connection', 'ssh-config', '--ids', sandbox.site_id('linux-app'))
    assert result.returncode == 0, result.stderr
    assert 'Host linux-app' in result.stdout


def test_stray_ssh_options_leave_az_options_alone():
    """The hint before az parses: only what az would not take as the ssh command's own options."""
    from types import SimpleNamespace
    from azext_webapp._validators import _stray_ssh_options
    value = SimpleNamespace(nargs=None)
    actions = {'-g': value, '--resource-group': value, '-n': value, '--name': value, '--instance': value,
               '-i': value, '--slot': value, '-s': value, '--ids': SimpleNamespace(nargs='+')}
    ours = ['-g', 'rg', '-n', 'app', '--instance', 'all', '-o', 'json', '--query', '[].instance', '--debug',
            '--subscription', 'sub', '--output=tsv', 'uname']
    assert _stray_ssh_options(ours, actions) == []
    assert _stray_ssh_options(['-n', 'app', '-vL', '1:h:2'], actions) == ['-vL']
    assert _stray_ssh_options(['-n', 'app', '-p', '22', '-A'], actions) == ['-p', '22', '-A']
    assert _stray_ssh_options(['-n', 'app', '-i', 'C:\\keys\\id_rsa'], actions) == ['-i', 'C:\\keys\\id_rsa']
    assert _stray_ssh_options(['-n', 'app', '-o', 'yaml'], actions) == []


def test_update_config_file_keeps_one_include_and_refuses_user_blocks_in_our_file(tmp_path):
    config = tmp_path / 'config'
    block = webapp_ssh.config_block('app', 'rg', 'app', 'alias', '/kh')
    assert webapp_ssh.update_config_file(str(config), block, 'app') == ('added', f'{config}.az-webapp')
    other = webapp_ssh.config_block('app2', 'rg', 'app2', 'alias2', '/kh')
    assert webapp_ssh.update_config_file(str(config), other, 'app2')[0] == 'added'
    assert config.read_text().count('Include ') == 1
    ours = tmp_path / 'config.az-webapp'
    assert ours.read_text().count('# BEGIN az webapp remote-connection: ') == 2
    ours.write_text(ours.read_text() + 'Host app3\n    User bob\n')
    with pytest.raises(webapp_ssh.ConfigFileError, match="already has a Host block for 'app3'"):
        webapp_ssh.update_config_file(str(config), webapp_ssh.config_block('app3', 'rg', 'a', 'x', '/kh'), 'app3')
    (tmp_path / 'foreign').write_text('Host x\n')
    (tmp_path / 'foreign.az-webapp').write_text('Host x\n')
    with pytest.raises(webapp_ssh.ConfigFileError, match='was not written by this command'):
        webapp_ssh.update_config_file(str(tmp_path / 'foreign'), block, 'app')
