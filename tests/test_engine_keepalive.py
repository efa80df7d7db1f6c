"""Keep-alive: the engine pings idle WebSockets and tolerates the server's own keep-alives, which
Kudu sends every 15 s as a Ping or as an unsolicited Pong depending on its .NET version
(PROTOCOL.md section 2). Here the sandbox SCM server sends them every second."""
import socket
import time

import pytest

from azext_webapp import tunnel
from tests import engine_targets
from tests.fixtures_engine import BASIC_PASSWORD, BASIC_USER, ECHO_PORT, basic_auth


@pytest.fixture(params=["ping", "pong"])
def chatty_scm(request, tmp_path, engine_targets_running, monkeypatch):
    from sandbox import pki
    from sandbox.scm_process import ScmServer
    ca = pki.make_ca(tmp_path / "pki")
    site = {"name": "chatty", "basic": [BASIC_USER, BASIC_PASSWORD], "bearer": [], "state": "STARTED",
            "starting_until": 0, "default_port": ECHO_PORT, "fault": None,
            "instances": [{"name": "chatty-i0", "ports": {str(ECHO_PORT): engine_targets_running["echo"].port}}]}
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca.cert_path))
    with ScmServer(tmp_path / "scm", [site], keepalive_seconds=1, keepalive_kind=request.param, ca=ca) as scm:
        yield scm


def test_server_keepalives_are_tolerated_and_the_idle_session_goes_on(chatty_scm):
    t = tunnel.Tunnel(chatty_scm.url("chatty"), basic_auth(), ping_interval=1.0)
    try:
        t.start()
        with socket.create_connection(("127.0.0.1", t.port), timeout=10) as c:
            c.sendall(b"before idle")
            assert engine_targets.recv_exact(c, 11) == b"before idle"
            time.sleep(3.5)     # several server keep-alives and client pings cross the idle WebSocket
            c.sendall(b"after idle")
            assert engine_targets.recv_exact(c, 10) == b"after idle"
        # the counters are final once the relay has closed, not when the client has its bytes
        assert engine_targets.wait_for(lambda: t.stats()["open"] == 0)
        stats = t.stats()
        assert stats["failures"] == 0
        assert stats["bytes_up"] == 21 and stats["bytes_down"] == 21   # keep-alives carry no data
        assert not [e for e in t.poll_events() if e.kind == "failed"]
    finally:
        t.stop()
