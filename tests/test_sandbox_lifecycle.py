"""Every process the sandbox starts is gone after it stops: normal stop, Ctrl+C of
`python -m sandbox`, and SIGKILL of its parent (PR_SET_PDEATHSIG)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from sandbox import Sandbox, procs
from tests.fixtures_sandbox import REPO


def _gone(pids, timeout=10.0):
    return procs.wait_until(lambda: not [p for p in pids if procs.alive(p)], timeout)


def _comm(pid) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def test_stop_ends_every_process_even_open_sessions(tmp_path, ssh_client):
    sb = Sandbox(str(tmp_path / "sb"))
    with sb:
        other_ports = {a.scm_host for a in sb.apps()}
        assert len(other_ports) == len(sb.apps())          # one SCM listener per site
        session = None
        if sb.sshd_available:
            session = ssh_client.ssh_popen(sb.app("linux-app").instances[0].ssh_port,
                                           "echo up; sleep 60")
            assert session.stdout.readline().strip() == "up"
        pids = sb.pids()
        assert pids and all(procs.alive(p) for p in pids)
    assert _gone(pids), [p for p in pids if procs.alive(p)]
    if session is not None:
        assert session.wait(timeout=10) != 0       # the session died with its container
    sb.stop()                                      # idempotent


def _start_main(workdir):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, "-m", "sandbox", "--workdir", str(workdir)], cwd=REPO,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Ctrl+C stops everything" in line:
            return p, "".join(lines)
    p.kill()
    pytest.fail("python -m sandbox did not come up:\n" + "".join(lines) + p.stdout.read())


def test_main_prints_usage_and_stops_on_ctrl_c(tmp_path):
    p, out = _start_main(tmp_path / "main")
    try:
        assert "az cloud register --name Sandbox" in out
        assert "az login --service-principal" in out
        assert "REQUESTS_CA_BUNDLE=" in out and "linux-app" in out and "https://127.0.0.1:" in out
        pids = [x for x in procs.descendants(p.pid) if x != p.pid]
        assert pids
        os.killpg(p.pid, signal.SIGINT)            # what Ctrl+C in a terminal does
        try:
            rc = p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGUSR1)         # faulthandler: where is it stuck?
            time.sleep(1)
            os.killpg(p.pid, signal.SIGKILL)
            pytest.fail("no exit 20 s after SIGINT:\n" + p.stdout.read())
        assert rc == 0
        assert _gone(pids), [x for x in pids if procs.alive(x)]
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_children_die_with_a_killed_parent(tmp_path):
    p, _ = _start_main(tmp_path / "killed")
    pids = [x for x in procs.descendants(p.pid) if x != p.pid]
    assert pids
    os.kill(p.pid, signal.SIGKILL)                 # no atexit, no finally: only the kernel
    p.wait(timeout=10)
    assert _gone(pids), [x for x in pids if procs.alive(x)]


def test_without_sshd_the_rest_still_works(tmp_path, monkeypatch):
    """What a non-root user gets: no sshd instances, a clear reason, everything else up."""
    import json
    from sandbox import sshd
    from tests.fixtures_sandbox import scm_call
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "need root" in sshd.sshd_unavailable_reason()
    monkeypatch.undo()
    with Sandbox(str(tmp_path / "nosshd"), sshd=False) as sb:
        assert not sb.sshd_available and "disabled" in sb.sshd_unavailable_reason
        assert "NOT RUNNING" in sb.summary()
        app = sb.app("linux-app")
        status, _, body = scm_call(app, "/AppServiceTunnel/Tunnel.ashx?GetStatus&GetStatusAPIVer=2",
                                   app.basic_authorization, cafile=sb.ca_file)
        assert status == 200 and json.loads(body)["canReachPort"] is False
        assert not [p for p in sb.pids() if _comm(p) == "sshd"]     # containers, but no sshd
        starting = sb.app("starting-app")            # STARTING for the first 5 s after start
        status, _, body = scm_call(starting, "/AppServiceTunnel/Tunnel.ashx?GetStatus&GetStatusAPIVer=2",
                                   starting.basic_authorization, cafile=sb.ca_file)
        assert time.time() - sb.started_at < 5 and json.loads(body)["state"] == "STARTING"
