"""A tunnel left open across an app restart, end to end: the real az (`create`, `create --stdio`), the
sandbox restarting restart-app as Azure does (its SCM site answers 503, then GetStatus reads STARTING
while the container comes back with the same sshd and host keys), and real OpenSSH clients. The
listener stays; connections made during the restart wait, held, and go through once the container
answers; the tunnel says so once per restart (the Makefile's test-portable runs this file again with
the portable engine)."""
import signal
import subprocess
import time

import pytest

from tests.fixtures_command import ssh, ssh_command

pytestmark = pytest.mark.root

APP = 'restart-app'
RESTART_SECONDS = 9


def popen_ssh(port, env, *remote):
    return subprocess.Popen(ssh_command(port, *remote), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_back(sandbox, app=APP):
    """Until the restart is over (the next test finds the app running)."""
    time.sleep(max(0.0, sandbox_restart_ends.get(app, 0) - time.time()) + 0.5)


sandbox_restart_ends = {}


def restart(sandbox, seconds=RESTART_SECONDS, app=APP):
    sandbox.restart_app(app, seconds)
    sandbox_restart_ends[app] = time.time() + seconds


def test_connections_during_a_restart_wait_and_go_through(webapp_az, sandbox_sshd, ssh_client_env, rg):
    instance = f'{APP}-i0'
    with webapp_az.tunnel("-g", rg, "-n", APP, "--instance", instance) as run:
        before = ssh(run.port, 'hostname', env=ssh_client_env)
        assert before.returncode == 0 and before.stdout.split() == [instance], before.stderr
        restart(sandbox_sshd)
        started = time.monotonic()
        front_end = popen_ssh(run.port, ssh_client_env, 'hostname')     # while the SCM site answers 503
        time.sleep(RESTART_SECONDS / 2)
        container = popen_ssh(run.port, ssh_client_env, 'hostname')     # while GetStatus reads STARTING
        outcomes = [proc.communicate(timeout=90) for proc in (front_end, container)]
        waited = time.monotonic() - started
        for proc, (out, err) in zip((front_end, container), outcomes):
            assert proc.returncode == 0, err + run.stderr_so_far()
            assert out.split() == [instance]
        assert waited >= RESTART_SECONDS - 1, waited      # they did wait for the container
        after = ssh(run.port, 'hostname', env=ssh_client_env)
        assert after.returncode == 0, after.stderr
        run.signal(signal.SIGINT)
        assert run.wait() == 0, run.stderr
    said = run.stderr
    print(said)
    restarting = f"Instance '{instance}' of app '{APP}' is restarting: new connections wait"
    assert said.count(restarting) == 1, said
    assert said.count(f"Instance '{instance}' of app '{APP}' is back after ") == 1, said
    assert 'A new connection failed' not in said and 'stopped answering' not in said, said
    assert 'Traceback' not in said


def test_without_an_instance_it_names_what_the_tunnel_reaches(webapp_az, sandbox_sshd, ssh_client_env, rg):
    wait_back(sandbox_sshd)
    with webapp_az.tunnel('-g', rg, '-n', APP, '--verbose') as run:
        restart(sandbox_sshd, 6)
        result = ssh(run.port, 'hostname', env=ssh_client_env, timeout=90)
        assert result.returncode == 0 and result.stdout.split() == [f'{APP}-i0'], result.stderr
    said = run.stderr
    assert said.count(f"The instance of app '{APP}' this tunnel reaches is restarting") == 1, said
    assert ' waits: ' in said                 # --verbose: the held connection, and why


def test_create_started_during_a_restart_waits_for_the_app(webapp_az, sandbox_sshd, ssh_client_env, rg):
    wait_back(sandbox_sshd)
    restart(sandbox_sshd, 6)
    started = time.monotonic()
    with webapp_az.tunnel('-g', rg, '-n', APP) as run:
        assert time.monotonic() - started >= 4
        result = ssh(run.port, 'hostname', env=ssh_client_env)
        assert result.returncode == 0, result.stderr
    assert f"Waiting for app '{APP}' to start up..." in run.stderr


def test_an_app_stopped_meanwhile_ends_the_waiting_connection(webapp_az, sandbox_sshd, ssh_client_env, rg):
    wait_back(sandbox_sshd)
    with webapp_az.tunnel('-g', rg, '-n', APP) as run:
        sandbox_sshd.set_state(APP, 'STOPPED')
        try:
            with sandbox_sshd.sshd_down(APP):
                result = ssh(run.port, 'hostname', env=ssh_client_env, timeout=60)
        finally:
            sandbox_sshd.set_state(APP, 'STARTED')
        assert result.returncode == 255
    assert f"App '{APP}' was stopped: the connections that waited were closed. Start it with `az webapp start " \
        in run.stderr


def test_ssh_exec_cp_started_during_a_restart_wait_for_the_app(webapp_az, sandbox_sshd, rg, tmp_path):
    """Each command started while the SCM site answers 503 waits for the app, as create does; the
    doctor, which does not wait, says what a 503 most often means."""
    wait_back(sandbox_sshd)
    local = tmp_path / 'sent-during-restart'
    local.write_bytes(b'sent while the app restarted\n')
    restart(sandbox_sshd)
    commands = {'ssh': ('ssh', '-g', rg, '-n', APP, '--', 'hostname'),
                'exec': ('exec', '-g', rg, '-n', APP, '--', 'hostname'),
                'cp': ('cp', '-g', rg, '-n', APP, str(local), ':/tmp/'),
                'doctor': ('doctor', '-g', rg, '-n', APP)}
    procs = {name: webapp_az.popen('webapp', 'remote-connection', *args) for name, args in commands.items()}
    said = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        said[name] = (proc.returncode, out.decode(), err.decode())
    for name in ('ssh', 'exec', 'cp'):
        code, out, err = said[name]
        assert code == 0, (name, err)
        assert f"Waiting for app '{APP}' to start up..." in err, (name, err)
    assert said['ssh'][1].split() == said['exec'][1].split() == [f'{APP}-i0']
    check = webapp_az.run('webapp', 'remote-connection', 'exec', '-g', rg, '-n', APP, '--',
                          'cat /tmp/sent-during-restart')
    assert check.returncode == 0 and check.stdout == 'sent while the app restarted\n', check.stderr
    code, out, _ = said['doctor']
    out = ' '.join(out.split())      # as the doctor wraps it
    assert code == 1 and 'HTTP 503' in out and "Azure's front end answers so while the app restarts" in out, out
