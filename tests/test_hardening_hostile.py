"""Hostile servers (issue 8): a TLS server that answers the WebSocket upgrade with huge headers,
invalid frames, oversize messages or a handshake that never finishes. Each must end that one
connection with a clear error -- never the process, never the other connections.

The tunnel points at tests/hostile_server.py, which relays every connection it has no hostile
behaviour queued for to the real sandbox SCM server (engine fixtures), so one tunnel serves good
and hostile connections side by side.
"""
import socket
import time

import pytest

from tests import engine_targets

# Handshake-phase behaviours: the WebSocket never opens, so a "failed" event must say why.
HANDSHAKE = ["huge_headers", "huge_status", "no_tls",
             pytest.param("no_http_answer", marks=pytest.mark.slow),
             pytest.param("partial_101", marks=pytest.mark.slow)]
# After a valid 101: the WebSocket opened, then the server broke the protocol.
FRAMES = ["bad_opcode", "reserved_bits", "len_2_63", "bad_control", "masked_frame", "len_2_63_minus_1",
          "oversize_message", "close_1005", "stray_continuation"]
# The engine's handshake time-out (tn_engine.c: info.timeout_secs = 20) plus slack.
HANDSHAKE_LIMIT = 35


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


@pytest.mark.parametrize("behaviour", ["bad_opcode", "len_2_63", "masked_frame", "oversize_message", "close_1005",
                                       "stray_continuation"])
def test_invalid_frames_are_reported_as_failures_with_a_reason(hostile_tunnel, hostile, behaviour):
    t = hostile_tunnel
    _run_case(t, hostile, behaviour, 15)
    events = _events(t, {"failed"}, timeout=3)
    failed = [e for e in events if e.kind == "failed"]
    assert failed and "localhost" in failed[0].message, events
    assert failed[0].error_kind == "protocol", failed[0]
    print(f"{behaviour}: {failed[0].message}")
    assert t.stats()["failures"] >= 1
