"""Containers as the documentation builds them (issue 15): every way in works against seed-app (the
documentation's sshd_config: CBC ciphers and hmac-sha1 only, no sftp subsystem), and what a container
without the sftp subsystem allows. The real az with the extension wheel, real OpenSSH, the sandbox."""
import os
import re
import shlex
import subprocess

import pytest

from tests.fixtures_command import SSH_OPTIONS, ssh_env

pytestmark = pytest.mark.root


@pytest.fixture(scope='module')
def ways_in(webapp_az, sandbox, tmp_path_factory):
    """An ssh_config with the seed-app and nosftp-app blocks, and an environment for OpenSSH."""
    if not sandbox.sshd_available:
        pytest.skip(f'sandbox without sshd instances: {sandbox.sshd_unavailable_reason}')
    directory = tmp_path_factory.mktemp('custom-images')
    config = directory / 'config'
    for app in ('seed-app', 'nosftp-app'):
        webapp_az.run('webapp', 'remote-connection', 'ssh-config', '-g', 'sandbox-rg', '-n', app, '--file',
                      str(config), check=True)
    env = ssh_env(str(directory))
    env.update({k: v for k, v in webapp_az.env.items() if k.startswith(('AZURE_', 'REQUESTS_'))})
    return str(config), env, directory


def run(argv, env, cwd, timeout=120):
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=timeout)


def test_remote_connection_ssh_reaches_the_seed_container(webapp_az, sandbox_sshd):
    result = webapp_az.run('webapp', 'remote-connection', 'ssh', '-g', 'sandbox-rg', '-n', 'seed-app', '--',
                           'hostname')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'seed-app-i0'


def test_ssh_config_block_ssh_and_scp_dash_o_reach_the_seed_container(ways_in, webapp_az):
    config, env, directory = ways_in
    effective = run(['ssh', '-G', '-F', config, 'seed-app'], env, webapp_az.cwd).stdout.splitlines()
    ciphers = next(line.split()[1].split(',') for line in effective if line.startswith('ciphers '))
    assert ciphers[-2:] == ['aes128-cbc', 'aes256-cbc'] and ciphers[0] != 'aes128-cbc'  # appended: defaults win
    login = run(['ssh', '-F', config, 'seed-app', 'hostname'], env, webapp_az.cwd)
    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == 'seed-app-i0'
    payload = os.urandom(300_000)
    (directory / 'up.bin').write_bytes(payload)
    # OpenSSH 9's scp speaks SFTP: the seed container has no sftp subsystem, so plain scp fails ...
    plain = run(['scp', '-F', config, str(directory / 'up.bin'), 'seed-app:/tmp/seed-scp.bin'], env, webapp_az.cwd)
    assert plain.returncode != 0
    # ... and scp -O (the original scp protocol over ssh) works
    legacy = run(['scp', '-O', '-F', config, str(directory / 'up.bin'), 'seed-app:/tmp/seed-scp.bin'], env,
                 webapp_az.cwd)
    assert legacy.returncode == 0, legacy.stderr
    back = run(['scp', '-O', '-F', config, 'seed-app:/tmp/seed-scp.bin', str(directory / 'down.bin')], env,
               webapp_az.cwd)
    assert back.returncode == 0, back.stderr
    assert (directory / 'down.bin').read_bytes() == payload
    # sftp needs the subsystem: the container does not allow it
    sftp = subprocess.run(['sftp', '-F', config, 'seed-app'], input='ls /\nbye\n', env=env, cwd=webapp_az.cwd,
                          capture_output=True, text=True, timeout=120)
    assert sftp.returncode != 0
    run(['ssh', '-F', config, 'seed-app', 'rm -f /tmp/seed-scp.bin'], env, webapp_az.cwd)


def test_no_sftp_subsystem_scp_needs_dash_o(ways_in, webapp_az):
    config, env, directory = ways_in
    (directory / 'small.txt').write_text('small\n')
    plain = run(['scp', '-F', config, str(directory / 'small.txt'), 'nosftp-app:/tmp/nosftp.txt'], env,
                webapp_az.cwd)
    assert plain.returncode != 0
    legacy = run(['scp', '-O', '-F', config, str(directory / 'small.txt'), 'nosftp-app:/tmp/nosftp.txt'], env,
                 webapp_az.cwd)
    assert legacy.returncode == 0, legacy.stderr
    check = run(['ssh', '-F', config, 'nosftp-app', 'cat /tmp/nosftp.txt; rm -f /tmp/nosftp.txt'], env,
                webapp_az.cwd)
    assert check.stdout == 'small\n', check.stderr


def test_the_ssh_line_create_prints_works_against_the_seed_container(webapp_az, sandbox_sshd, ssh_client_env):
    with webapp_az.tunnel('-g', 'sandbox-rg', '-n', 'seed-app') as tunnel:
        example = next(line for line in tunnel.stdout_lines if line.startswith('For example: '))
        assert example == f'For example: ssh -o Ciphers=+aes128-cbc root@127.0.0.1 -p {tunnel.port}'
        assert any('give scp and sftp the same -o Ciphers=+aes128-cbc' in line for line in tunnel.stdout_lines)
        argv = shlex.split(example[len('For example: '):])
        # the printed line as a user runs it; only the test's host-key and askpass options added
        result = subprocess.run(argv[:1] + SSH_OPTIONS + argv[1:] + ['hostname'], env=ssh_client_env,
                                capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == 'seed-app-i0'
        # without the option, today's OpenSSH finds no cipher in common
        bare = subprocess.run(['ssh', *SSH_OPTIONS, '-p', str(tunnel.port), 'root@127.0.0.1', 'true'],
                              env=ssh_client_env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=60)
        assert bare.returncode == 255


def test_remote_debugging_apps_are_handled_consistently(webapp_az, sandbox_sshd, ssh_client_env):
    config = webapp_az.run('webapp', 'remote-connection', 'ssh-config', '-g', 'sandbox-rg', '-n', 'debug-app')
    assert config.returncode != 0 and config.stdout == ''
    assert 'Remote debugging is enabled for app \'debug-app\'' in config.stderr
    assert '`az webapp remote-connection ssh-config` needs SSH' in config.stderr
    ssh = webapp_az.run('webapp', 'remote-connection', 'ssh', '-g', 'sandbox-rg', '-n', 'debug-app', '--', 'true')
    assert ssh.returncode != 0 and '`az webapp remote-connection ssh` needs SSH' in ssh.stderr
    with webapp_az.tunnel('-g', 'sandbox-rg', '-n', 'debug-app', '--target-port', '2222') as tunnel:
        lines = tunnel.stdout_lines
        assert lines[1] == ('Remote debugging is enabled, but --target-port 2222 leads this tunnel to SSH '
                            '(container port 2222), not to the debugger')
        assert f'For example: ssh root@127.0.0.1 -p {tunnel.port}' in lines
        result = subprocess.run(['ssh', *SSH_OPTIONS, '-p', str(tunnel.port), 'root@127.0.0.1', 'hostname'],
                                env=ssh_client_env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                timeout=60)
        assert result.stdout.strip() == 'debug-app-i0', result.stderr
    with webapp_az.tunnel('-g', 'sandbox-rg', '-n', 'debug-app') as tunnel:
        assert 'this tunnel is for the debugger (container port 9229)' in tunnel.stdout_lines[1]


def test_help_says_scp_needs_dash_o_and_shows_the_cbc_option(webapp_az):
    doctor = webapp_az.run('webapp', 'remote-connection', 'doctor', '--help')
    assert doctor.returncode == 0, doctor.stderr
    # az wraps help at hyphens too ("hmac-sha1-" then "96"): the words, whatever the terminal's width
    text = re.sub(r'(?<=\w-) (?=\w)', '', ' '.join(doctor.stdout.split()))
    assert "and so does OpenSSH 9's scp unless given -O" in text
    assert 'sha1-96 or hmac-md5-96' in text
    config = ' '.join(webapp_az.run('webapp', 'remote-connection', 'ssh-config', '--help').stdout.split())
    assert 'scp -O ./app.log MyWebApp:/home/' in config
    create = ' '.join(webapp_az.run('webapp', 'remote-connection', 'create', '--help').stdout.split())
    assert 'ssh -o Ciphers=+aes128-cbc root@127.0.0.1 -p 21382' in create
    assert 'scp -O -o Ciphers=+aes128-cbc -P 21382' in create
    assert '--target-port 2222' in create


def test_failures_point_to_the_doctor(webapp_az, sandbox_sshd):
    ssh = webapp_az.run('webapp', 'remote-connection', 'ssh', '-g', 'sandbox-rg', '-n', 'wrongpw-app', '--', 'true')
    assert ssh.returncode == 255
    assert 'Permission denied' in ssh.stderr
    assert ('ssh could not connect or log in (exit status 255). `az webapp remote-connection doctor -g sandbox-rg '
            '-n wrongpw-app` checks every hop') in ' '.join(ssh.stderr.split())
    create = webapp_az.run('webapp', 'remote-connection', 'create', '-g', 'sandbox-rg', '-n', 'port22-app',
                           '--timeout', '5')
    assert create.returncode != 0
    text = ' '.join(create.stderr.split())
    assert "Nothing answers on container port 2222 of app 'port22-app'" in text
    assert '`az webapp remote-connection doctor -g sandbox-rg -n port22-app` checks every hop.' in text
