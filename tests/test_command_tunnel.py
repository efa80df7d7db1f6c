"""`az webapp remote-connection create` end to end: the real az, the extension wheel, the sandbox,
real OpenSSH clients through the tunnel."""
import base64
import os
import signal
import socket
import subprocess
import time
import uuid

import pytest

from tests.fixtures_command import AZ, READY_RE, sftp_popen, ssh, ssh_command


def ready_block(port):
    return [f'Port {port} is open',
            'SSH is available { username: root, password: Docker! }',
            f'Start your favorite client and connect to port {port}',
            f'For example: ssh root@127.0.0.1 -p {port}',
            'Ctrl + C to close']


def secrets_of(sandbox, app):
    info = sandbox.app(app)
    basic = f'{info.basic_user}:{info.basic_password}'.encode()
    return [info.basic_password, base64.b64encode(basic).decode(), sandbox.bearer_token]


def assert_no_secrets(run, secrets):
    text = '\n'.join(run.stdout_lines) + run.stderr
    for secret in secrets:
        assert secret not in text


def test_two_ssh_sessions_and_sftp_through_one_tunnel(webapp_az, sandbox, ssh_client_env, tmp_path):
    payload = os.urandom(3 * 1024 * 1024)
    local = tmp_path / 'up.bin'
    local.write_bytes(payload)
    remote = f'/tmp/webapp-sftp-{uuid.uuid4().hex}.bin'
    with webapp_az.tunnel('-g', sandbox.resource_group, '-n', 'linux-app', '--verbose') as run:
        assert run.stdout_lines == ready_block(run.port)
        started = time.monotonic()
        sessions = [subprocess.Popen(ssh_command(run.port, f'sleep 3; echo session-{i}; hostname'),
                                     env=ssh_client_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True) for i in range(2)]
        sftp = sftp_popen(run.port, [f'put {local} {remote}', f'get {remote} {tmp_path / "down.bin"}',
                                     f'rm {remote}'], ssh_client_env, str(tmp_path))
        outputs = [proc.communicate(timeout=60) for proc in sessions]
        sftp_out = sftp.communicate(timeout=120)
        elapsed = time.monotonic() - started
        for i, (proc, (out, err)) in enumerate(zip(sessions, outputs)):
            assert proc.returncode == 0, err
            assert out.split() == [f'session-{i}', 'linux-app-i0']
        assert sftp.returncode == 0, sftp_out
        assert (tmp_path / 'down.bin').read_bytes() == payload
        # Both 3-second sessions ran at the same time (one after the other would take 6 s or more).
        assert elapsed < 5.9, elapsed
        run.signal(signal.SIGINT)
        assert run.wait() == 0, run.stderr
    assert 'Closed (Ctrl+C).' in run.stderr
    # --verbose: each connection opened and closed, with its byte counts.
    opened = [line for line in run.stderr.splitlines() if ' opened' in line and 'Connection ' in line]
    closed = [line for line in run.stderr.splitlines() if ' closed: ' in line and 'bytes sent' in line]
    assert len(opened) >= 3 and len(closed) >= 3, run.stderr
    assert any(int(line.split(' bytes sent')[0].rsplit(' ', 1)[1]) >= len(payload) for line in closed), closed
    assert 'Traceback' not in run.stderr
    assert_no_secrets(run, secrets_of(sandbox, 'linux-app'))


def test_basic_auth_timeout_and_debug_shows_no_credentials(webapp_az, sandbox, ssh_client_env):
    with webapp_az.tunnel('-g', sandbox.resource_group, '-n', 'linux-app', '--timeout', '4', '--debug') as run:
        result = ssh(run.port, 'hostname', env=ssh_client_env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == 'linux-app-i0'
        assert run.wait(timeout=20) == 0, run.stderr[-3000:]
    assert 'the --timeout of 4 seconds has passed' in run.stderr
    assert 'with Basic auth' in run.stderr
    assert 'publishingcredentials/list' in run.stderr  # the call happened, under --debug, without its body
    assert_no_secrets(run, secrets_of(sandbox, 'linux-app'))


def test_basic_disabled_app_connects_with_bearer_and_sigterm_exits_0(webapp_az, sandbox, ssh_client_env):
    with webapp_az.tunnel('-g', sandbox.resource_group, '-n', 'bearer-app', '--debug') as run:
        result = ssh(run.port, 'hostname', env=ssh_client_env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == 'bearer-app-i0'
        run.signal(signal.SIGTERM)
        assert run.wait() == 0, run.stderr[-3000:]
    assert 'with Bearer auth' in run.stderr
    assert 'Closed (SIGTERM).' in run.stderr
    assert 'publishingcredentials/list' not in run.stderr
    assert_no_secrets(run, secrets_of(sandbox, 'bearer-app'))


def test_instance_reaches_the_named_instance(webapp_az, sandbox, ssh_client_env):
    with webapp_az.tunnel('-g', sandbox.resource_group, '-n', 'scaled-app', '--instance', 'scaled-app-i1') as run:
        result = ssh(run.port, 'hostname', env=ssh_client_env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == 'scaled-app-i1'


def test_slot_reaches_the_slot(webapp_az, sandbox, ssh_client_env):
    with webapp_az.tunnel('-g', sandbox.resource_group, '-n', 'slot-app', '--slot', 'staging') as run:
        result = ssh(run.port, 'hostname', env=ssh_client_env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == 'slot-app-staging-i0'


def test_starting_app_waits_with_progress_then_opens(webapp_az, sandbox, ssh_client_env):
    sandbox.hold_starting('starting-app', 4)
    started = time.monotonic()
    with webapp_az.tunnel('-g', sandbox.resource_group, '-n', 'starting-app') as run:
        assert time.monotonic() - started >= 3
        result = ssh(run.port, 'hostname', env=ssh_client_env)
        assert result.returncode == 0, result.stderr
    assert run.returncode == 0
    assert "Waiting for app 'starting-app' to start up..." in run.stderr


def test_remote_debugging_app_says_the_tunnel_is_for_the_debugger(webapp_az, sandbox):
    with webapp_az.tunnel('-g', sandbox.resource_group, '-n', 'debug-app') as run:
        assert run.stdout_lines == [
            f'Port {run.port} is open',
            'Remote debugging is enabled: this tunnel is for the debugger (container port 9229), not for SSH',
            f'Attach your debugger to 127.0.0.1:{run.port}',
            'Ctrl + C to close']
        with socket.create_connection(('127.0.0.1', run.port), timeout=10) as conn:
            assert conn.recv(1024)  # the sandbox's debugger greets with a banner


def test_background_with_ampersand(webapp_az, sandbox, ssh_client_env, tmp_path):
    """`az ... &` from a (non-interactive) shell: SIGINT is ignored there; SIGTERM ends it with 0."""
    port = _free_port()
    script = (f'"{AZ}" webapp remote-connection create -g {sandbox.resource_group} -n linux-app -p {port} '
              f'> "{tmp_path}/out" 2> "{tmp_path}/err" &\n'
              f'echo $! > "{tmp_path}/pid"\nwait $!\necho $? > "{tmp_path}/rc"\n')
    # faulthandler: a SIGABRT makes a hung az print every thread's Python stack to its stderr
    shell = subprocess.Popen(['sh', '-c', script], env=dict(webapp_az.env, PYTHONFAULTHANDLER='1'),
                             cwd=webapp_az.cwd, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = (tmp_path / 'out').read_text() if (tmp_path / 'out').exists() else ''
            if out.splitlines() and READY_RE.match(out.splitlines()[0]):
                break
            assert shell.poll() is None, (tmp_path / 'err').read_text()
            time.sleep(0.2)
        assert out.splitlines()[0] == f'Port {port} is open', out
        result = ssh(port, 'hostname', env=ssh_client_env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == 'linux-app-i0'
        os.kill(int((tmp_path / 'pid').read_text()), signal.SIGTERM)
        try:
            shell.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(int((tmp_path / 'pid').read_text()), signal.SIGABRT)
            shell.wait(timeout=10)
            pytest.fail('az did not end within 20 s of SIGTERM; its stacks:\n' + (tmp_path / 'err').read_text())
    finally:
        if shell.poll() is None:
            os.kill(int((tmp_path / 'pid').read_text()), signal.SIGKILL)
            shell.wait()
    assert (tmp_path / 'rc').read_text().strip() == '0', (tmp_path / 'err').read_text()
    assert (tmp_path / 'out').read_text().splitlines() == ready_block(port)
    assert 'Closed (SIGTERM).' in (tmp_path / 'err').read_text()


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_verbose_says_once_which_engine_runs_and_why(webapp_az, sandbox):
    """The native engine where it loads; `make test-portable` runs these suites again with
    WEBAPP_ENGINE=portable, which this shows reached the tunnel inside az."""
    expected = os.environ.get('WEBAPP_ENGINE') or 'native'
    with webapp_az.tunnel('-g', sandbox.resource_group, '-n', 'linux-app', '--verbose') as run:
        pass
    lines = [line for line in run.stderr.splitlines() if 'Tunnel engine:' in line]
    assert len(lines) == 1, run.stderr
    assert f'Tunnel engine: {expected} (' in lines[0]
