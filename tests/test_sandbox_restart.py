"""The sandbox restarts an app as `az webapp restart` does (Sandbox.restart_app): its containers go away
and come back with the same names, host keys and ports; meanwhile its SCM site answers every request
with the front end's 503 page, then GetStatus reads STARTING with canReachPort false until the
containers' programs run again (docs/PROTOCOL.md section 2, "Restarts")."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.fixtures_sandbox import scm_call

pytestmark = pytest.mark.root

APP = "restart-app"
STATUS = "/AppServiceTunnel/Tunnel.ashx?GetStatus&GetStatusAPIVer=2"


def get(sb, path, authorization="basic"):
    app = sb.app(APP)
    auth = app.basic_authorization if authorization == "basic" else authorization
    status, headers, body = scm_call(app, path, auth, cafile=sb.ca_file)
    return status, headers, body


def host_key(port):
    out = subprocess.run(["ssh-keyscan", "-t", "ed25519", "-p", str(port), "127.0.0.1"], capture_output=True,
                         text=True, timeout=30).stdout
    return [line.split(None, 1)[1] for line in out.splitlines() if line and not line.startswith("#")]


def init_pid(sb, instance):
    with open(os.path.join(sb.workdir, "containers.json"), encoding="utf-8") as f:
        return json.load(f)["instances"][instance]


def test_restart_front_end_then_starting_then_back(sandbox_sshd, ssh_client):
    sb = sandbox_sshd
    instance = sb.app(APP).instances[0]
    key = host_key(instance.ssh_port)
    assert key
    pid = init_pid(sb, instance)
    session = ssh_client.ssh_popen(instance.ssh_port, "sleep 60")
    time.sleep(1)
    started = time.monotonic()
    sb.restart_app(APP, 6)
    assert session.wait(timeout=10) != 0                 # the container and its sessions are gone

    for path in (STATUS, "/api/settings", "/webssh/host"):   # the front end: whoever asks, whatever for
        status, headers, body = get(sb, path, authorization=None)
        assert status == 503 and headers["Content-Type"].startswith("text/html"), path
        assert b"HTTP Error 503. The service is unavailable." in body
    assert init_pid(sb, instance) != pid                 # the exec channel finds the new container

    while time.monotonic() - started < 2.2:
        time.sleep(0.1)
    status, _, body = get(sb, STATUS)
    assert status == 200
    assert json.loads(body) == {"port": 2222, "state": "STARTING", "canReachPort": False,
                                "msg": "Unable to connect to WebApp"}

    while time.monotonic() - started < 6.5:
        time.sleep(0.1)
    status, _, body = get(sb, STATUS)
    assert json.loads(body)["state"] == "STARTED" and json.loads(body)["canReachPort"] is True
    assert sb.app(APP).instances[0].ssh_port == instance.ssh_port
    assert host_key(instance.ssh_port) == key             # the same container image: the same host keys
    result = ssh_client.ssh(instance.ssh_port, "hostname")
    assert result.returncode == 0 and result.stdout.split() == [instance.name]


def test_restart_needs_a_positive_time(sandbox):
    with pytest.raises(ValueError):
        sandbox.restart_app(APP, 0)
