"""Hostile servers (issue 8): a TLS server that answers the WebSocket upgrade with huge headers,
invalid frames, oversize messages or a handshake that never finishes. Each must end that one
connection with a clear error -- never the process, never the other connections.

The tunnel points at tests/hostile_server.py, which relays every connection it has no hostile
behaviour queued for to the real sandbox SCM server (engine fixtures), so one tunnel serves good
and hostile connections side by side.
"""
import socket
import time
from pathlib import Path

import pytest

from tests import engine_targets
from tests.hostile_server import HostileServer

# Handshake-phase behaviours: the WebSocket never opens, so a "failed" event must say why.
_SILENT_TIMEOUT = pytest.mark.xfail(strict=True, reason=(
    "engine bug (issue 8): a server that accepts TLS and then never finishes the HTTP answer ends the "
    "local connection only at the 20 s handshake time-out, and then with a plain 'closed' event and no "
    "message (stats failures not counted): the user is not told why. The time-out path never records a "
    "tn_err, so tn_relay_finish emits TN_EV_CLOSED (it emits FAILED only when err.kind != TN_OK)"))
_NO_CAP = pytest.mark.xfail(strict=True, reason=(
    "engine bug (issue 8): no limit on the size of a message from the server. The SCM caps its binary "
    "messages at AppsvcTunnelBuffer (<= 262144 bytes), yet a frame announcing 2^63-1 bytes or 1 GiB is "
    "accepted and streamed to the local client indefinitely instead of ending the connection with an error"))
_MASKED = pytest.mark.xfail(strict=True, reason=(
    "engine bug (issue 8): a masked frame from the server (forbidden, RFC 6455 5.1: the client MUST close "
    "the connection) is accepted; libwebsockets unmasks it and its payload is delivered to the local client"))
HANDSHAKE = ["huge_headers", "huge_status", "no_tls",
             pytest.param("no_http_answer", marks=[_SILENT_TIMEOUT, pytest.mark.slow]),
             pytest.param("partial_101", marks=[_SILENT_TIMEOUT, pytest.mark.slow])]
# After a valid 101: the WebSocket opened, then the server broke the protocol.
FRAMES = ["bad_opcode", "reserved_bits", "len_2_63", "bad_control",
          pytest.param("masked_frame", marks=_MASKED),
          pytest.param("len_2_63_minus_1", marks=_NO_CAP),
          pytest.param("oversize_message", marks=_NO_CAP)]
# The engine's handshake time-out (tn_engine.c: info.timeout_secs = 20) plus slack.
HANDSHAKE_LIMIT = 35


@pytest.fixture(scope="module")
def hostile(scm, tmp_path_factory):
    from sandbox import pki
    ca_cert = Path(scm.ca_file)
    ca = pki.Ca(ca_cert.stem, ca_cert, ca_cert.with_suffix(".key"))
    cert, key = ca.issue(tmp_path_factory.mktemp("hostile-pki"), "hostile")
    server = HostileServer(str(cert), str(key), scm.ports["engine-site"])
    yield server
    server.close()


@pytest.fixture
def hostile_tunnel(hostile, engine_env):
    from azext_webapp import tunnel
    from tests.fixtures_engine import basic_auth
    t = tunnel.Tunnel(f"https://localhost:{hostile.port}", basic_auth(), ping_interval=5)
    t.start()
    yield t
    t.stop()


def _echo_ok(conn, payload):
    conn.sendall(payload)
    return engine_targets.recv_exact(conn, len(payload)) == payload


def _wait_eof(conn, limit):
    """Seconds until the local client saw EOF/reset; fails if it did not within `limit`."""
    conn.settimeout(limit)
    started = time.monotonic()
    try:
        while conn.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        pytest.fail(f"the local client was not closed within {limit} s")
    return time.monotonic() - started


def _events(t, want, timeout=10):
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got += t.poll_events()
        if any(e.kind in want for e in got):
            break
        time.sleep(0.05)
    return got


def _run_case(t, hostile, behaviour, limit):
    t.poll_events()
    with socket.create_connection(("127.0.0.1", t.port)) as good:
        assert _echo_ok(good, b"before-" + behaviour.encode())
        hostile.push(behaviour)
        bad = socket.create_connection(("127.0.0.1", t.port))
        try:
            bad.sendall(b"SSH-2.0-hostile-test\r\n")   # what ssh would send first
            took = _wait_eof(bad, limit)
        finally:
            bad.close()
        # the good connection that was open all along still works
        assert _echo_ok(good, b"during-" + behaviour.encode())
    # and a new connection after it works too (the tunnel keeps accepting)
    with socket.create_connection(("127.0.0.1", t.port)) as again:
        assert _echo_ok(again, b"after-" + behaviour.encode())
    assert t.running, "the engine stopped"
    return took


@pytest.mark.parametrize("behaviour", HANDSHAKE)
def test_hostile_handshake_fails_that_connection_with_a_clear_error(hostile_tunnel, hostile, behaviour):
    t = hostile_tunnel
    took = _run_case(t, hostile, behaviour, HANDSHAKE_LIMIT)
    events = _events(t, {"failed"})
    failed = [e for e in events if e.kind == "failed"]
    assert len(failed) == 1, "\n".join(map(str, events))
    message = failed[0].message
    print(f"{behaviour}: closed after {took:.1f} s; event: {message}")
    assert "localhost" in message and len(message) > 20, message
    assert t.stats()["failures"] >= 1


@pytest.mark.parametrize("behaviour", FRAMES)
def test_invalid_frames_end_that_connection_not_the_process(hostile_tunnel, hostile, behaviour):
    t = hostile_tunnel
    took = _run_case(t, hostile, behaviour, 8)
    print(f"{behaviour}: closed after {took:.1f} s")
    events = _events(t, {"failed", "closed"})
    assert any(e.kind in ("failed", "closed") for e in events), events


@pytest.mark.xfail(strict=True, reason="engine bug (issue 8): a protocol violation by the server after the "
                   "101 (invalid opcode, RSV bits, masked server frame, 2^63 length) ends the connection "
                   "with a plain 'closed' event and no message; nothing tells the user why. "
                   "tn_relay_finish emits TN_EV_FAILED only when !ws_up, and no error is recorded "
                   "for LWS_CALLBACK_CLIENT_CLOSED after a protocol error")
@pytest.mark.parametrize("behaviour", ["bad_opcode", "len_2_63"])
def test_invalid_frames_are_reported_as_failures_with_a_reason(hostile_tunnel, hostile, behaviour):
    t = hostile_tunnel
    _run_case(t, hostile, behaviour, 15)
    events = _events(t, {"failed"}, timeout=3)
    failed = [e for e in events if e.kind == "failed"]
    assert failed and failed[0].message, events
