"""`az webapp remote-connection ssh`, `ssh-config` and `create --stdio` end to end: the real az with
the extension wheel, the sandbox's sshd, real OpenSSH (ssh, scp, rsync) and a pseudo-terminal."""
import hashlib
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
    assert proxy.endswith(' -P -m azure.cli webapp remote-connection create -g sandbox-rg -n slot-app '
                          '--slot staging --stdio')

    config = tmp_path / 'config'
    config.write_text('Host other\n    User bob')  # no final newline
    for expected in ('Added', 'Already up to date:'):
        result = webapp_az.run('webapp', 'remote-connection', 'ssh-config', '-g', 'sandbox-rg', '-n', 'slot-app',
                               '--slot', 'staging', '--file', str(config))
        assert result.returncode == 0, result.stderr
        assert expected in result.stderr
        assert result.stdout == ''
    assert config.read_text() == 'Host other\n    User bob\n\n' + printed.stdout
    fresh = tmp_path / 'new' / 'config'  # a missing file (and directory) is created private
    webapp_az.run('webapp', 'remote-connection', 'ssh-config', '-g', 'sandbox-rg', '-n', 'slot-app', '--slot',
                  'staging', '--file', str(fresh), check=True)
    assert fresh.read_text() == printed.stdout
    assert (fresh.stat().st_mode & 0o777) == 0o600 and (fresh.parent.stat().st_mode & 0o777) == 0o700


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
