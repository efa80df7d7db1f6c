"""Tunnels for scripts and CI, end to end with the real az: `create --background` returns once the port
is open and leaves the tunnel running in a session of its own, its output in a log file it names;
`close --port N | --pid P | --all` ends it cleanly (SIGTERM), waits, and never signals a process that
is not that tunnel; `create --ready-file` writes the same record for a tunnel started with `&`. (The
Makefile's test-portable runs this file again with the portable engine.)"""
import json
import os
import signal
import subprocess
import time

import psutil

from tests.fixtures_command import free_port, ssh

APP = 'linux-app'


def registry(webapp_az):
    return os.path.join(webapp_az.env['AZURE_CONFIG_DIR'], 'webapp', 'tunnels')


def background(webapp_az, *args, output=True):
    argv = ['webapp', 'remote-connection', 'create', '-g', 'sandbox-rg', *args, '--background']
    return webapp_az.run(*argv, *(['-o', 'json'] if output else []), timeout=180)


def close(webapp_az, *args):
    return webapp_az.run('webapp', 'remote-connection', 'close', *args, timeout=60)


def gone(pid, timeout=10):
    deadline = time.monotonic() + timeout
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_background_tunnel_runs_detached_until_closed_by_port(webapp_az, sandbox_sshd, ssh_client_env):
    started = background(webapp_az, '-n', APP)
    assert started.returncode == 0, started.stderr
    record = json.loads(started.stdout)
    port, pid = record['port'], record['pid']
    assert record['name'] == APP and record['resourceGroup'] == 'sandbox-rg' and record['bind'] == '127.0.0.1'
    assert record['ssh'] == f'ssh root@127.0.0.1 -p {port}'
    assert os.path.dirname(record['log']) == registry(webapp_az)
    try:
        assert os.getsid(pid) == pid                  # a session of its own: no terminal's signals reach it
        result = ssh(port, 'hostname', env=ssh_client_env)
        assert result.returncode == 0 and result.stdout.split() == [f'{APP}-i0'], result.stderr
        with open(record['log'], encoding='utf-8') as log:
            assert f'Port {port} is open' in log.read()
        closed = close(webapp_az, '--port', str(port))
        assert closed.returncode == 0, closed.stderr
        assert closed.stderr.strip() == (f"WARNING: Closed the background tunnel on port {port} (pid {pid}, "
                                         f"app '{APP}').")
        assert gone(pid)
        assert os.listdir(registry(webapp_az)) == []  # its record and its log are removed
    finally:
        if psutil.pid_exists(pid):
            os.kill(pid, signal.SIGKILL)


def test_background_prints_what_to_do_next_and_closes_by_pid(webapp_az, sandbox_sshd):
    started = background(webapp_az, '-n', APP, '--port', str(free_port()), output=False)
    assert started.returncode == 0, started.stderr
    first = started.stdout.splitlines()[0]
    port = int(first.split()[1].rstrip(','))
    pid = int(first.split('(pid ')[1].split(')')[0])
    log = first.split('its output goes to ')[1]
    assert started.stdout.splitlines()[1:] == [
        'SSH is available { username: root, password: Docker! }',
        f'For example: ssh root@127.0.0.1 -p {port}',
        f'Close it with: az webapp remote-connection close --port {port}']
    assert os.path.isfile(log)
    closed = close(webapp_az, '--pid', str(pid))
    assert closed.returncode == 0 and gone(pid), closed.stderr


def test_a_tunnel_that_cannot_start_says_why_and_leaves_nothing(webapp_az, sandbox):
    started = background(webapp_az, '-n', 'no-such-app')
    assert started.returncode == 1
    assert "App 'no-such-app' was not found in resource group 'sandbox-rg'" in started.stderr
    assert started.stdout == ''
    assert not os.path.isdir(registry(webapp_az)) or os.listdir(registry(webapp_az)) == []


def test_close_never_signals_what_is_not_its_tunnel(webapp_az, sandbox, tmp_path):
    unrelated = subprocess.Popen(['sleep', '60'])
    try:
        assert close(webapp_az, '--port', str(free_port())).returncode != 0
        wrong = close(webapp_az, '--pid', str(unrelated.pid))
        assert wrong.returncode != 0
        assert f'No background tunnel of this az configuration has pid {unrelated.pid}' in wrong.stderr
        # a record whose pid now belongs to another program (a pid the system reused): left alone
        os.makedirs(registry(webapp_az), exist_ok=True)
        stale = os.path.join(registry(webapp_az), 'tunnel-reused.json')
        with open(stale, 'w', encoding='utf-8') as handle:
            json.dump({'port': 40001, 'pid': unrelated.pid, 'processStarted': 1.0, 'name': APP}, handle)
        result = close(webapp_az, '--pid', str(unrelated.pid))
        assert result.returncode == 0, result.stderr
        assert 'had already ended' in result.stderr
        assert unrelated.poll() is None                # never signalled
        assert not os.path.exists(stale)
    finally:
        unrelated.kill()
        unrelated.wait()


def test_close_all_ends_every_background_tunnel(webapp_az, sandbox_sshd):
    pids = []
    for app in (APP, 'scaled-app'):
        started = background(webapp_az, '-n', app)
        assert started.returncode == 0, started.stderr
        pids.append(json.loads(started.stdout)['pid'])
    listed = close(webapp_az, '--port', str(free_port()))
    assert 'Running: port ' in listed.stderr and f"app '{APP}'" in listed.stderr
    closed = close(webapp_az, '--all')
    assert closed.returncode == 0, closed.stderr
    assert closed.stderr.count('Closed the background tunnel on port ') == 2
    assert all(gone(pid) for pid in pids)
    assert close(webapp_az, '--all').stderr.strip() == \
        'WARNING: No background tunnel of this az configuration is running.'


def test_ctrl_c_while_waiting_for_the_port_stops_the_background_tunnel(webapp_az, sandbox):
    sandbox.hold_starting('starting-app', 60)
    try:
        proc = webapp_az.popen('webapp', 'remote-connection', 'create', '-g', 'sandbox-rg', '-n', 'starting-app',
                               '--background')
        deadline = time.monotonic() + 60
        while not (os.path.isdir(registry(webapp_az)) and os.listdir(registry(webapp_az))):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        children = psutil.Process(proc.pid).children()
        time.sleep(2)
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert b'Cancelled (Ctrl+C) before the tunnel was ready.' in err
        assert children and all(gone(child.pid) for child in children)
    finally:
        sandbox.hold_starting('starting-app', 0)


def test_ready_file_of_a_tunnel_started_with_an_ampersand(webapp_az, sandbox_sshd, ssh_client_env, tmp_path):
    ready = tmp_path / 'tunnel.json'
    ready.write_text('{"pid": 1, "port": 1}')          # left by an earlier run that was killed
    proc = webapp_az.popen('webapp', 'remote-connection', 'create', '-g', 'sandbox-rg', '-n', APP,
                           '--ready-file', str(ready))
    try:
        deadline = time.monotonic() + 60
        stale_removed = False
        while not (ready.exists() and json.loads(ready.read_text())['pid'] != 1):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            stale_removed = stale_removed or not ready.exists()
            time.sleep(0.01)
        assert stale_removed, 'the stale ready file stood until the port was open'
        record = json.loads(ready.read_text())
        assert record['pid'] == proc.pid and oct(ready.stat().st_mode & 0o777) == '0o600'
        result = ssh(record['port'], 'hostname', env=ssh_client_env)
        assert result.returncode == 0, result.stderr
    finally:
        os.kill(proc.pid, signal.SIGHUP)                # its terminal closed: a clean end too
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and b'Closed (SIGHUP).' in err, err
    assert not ready.exists()                           # removed when the tunnel ended


def test_close_ends_a_tunnel_started_with_a_ready_file(webapp_az, sandbox_sshd, tmp_path):
    """`create --ready-file PATH &` in a script, then `close --port N`: the same clean end as SIGTERM."""
    ready = tmp_path / 'tunnel.json'
    proc = webapp_az.popen('webapp', 'remote-connection', 'create', '-g', 'sandbox-rg', '-n', APP,
                           '--ready-file', str(ready))
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.1)
        port = json.loads(ready.read_text())['port']
        closed = webapp_az.run('webapp', 'remote-connection', 'close', '--port', str(port))
        assert closed.returncode == 0, closed.stderr
        assert f'Closed the tunnel on port {port} (pid {proc.pid}' in closed.stderr
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0 and b'Closed (SIGTERM).' in err, err
    assert not ready.exists()
    assert webapp_az.run('webapp', 'remote-connection', 'close', '--all').stderr.strip() == \
        'WARNING: No background tunnel of this az configuration is running.'
