"""Hold (the engine contract's `hold=True`, both engines): a connection the server turns away before its
first byte, the way a restarting app does, is held instead of ended. Its client stays connected, what
it sent is kept, a "held" event says why, and release(True) retries it on a new WebSocket with those
bytes first, or release(False) ends it as it would have ended without hold. Against the sandbox's
SCM server: its front end's 503 while the site restarts (unavailable_until), and a container port
where nothing listens yet (the WebSocket is accepted, then closed at once)."""
import socket
import time

import pytest

from tests.engine_targets import recv_exact, wait_for
from tests.fixtures_engine import ECHO_PORT, free_port

SITE = "restart-site"
AN_HOUR = 3600


@pytest.fixture
def restart_site(engine_env):
    """The site's front end and container port as a test sets them; as they were afterwards."""
    original = None

    class Site:
        def unavailable(self, on=True):
            engine_env.update_site(SITE, unavailable_until=time.time() + AN_HOUR if on else 0)

        def container_port_down(self, down=True):
            if down:
                self.container_port_to(free_port())
            else:
                engine_env.update_site(SITE, instances=original)

        def container_port_to(self, local_port):
            nonlocal original
            if original is None:
                original = engine_env._server.sites[SITE]["instances"]  # pylint: disable=protected-access
            instances = [dict(i, ports={**i["ports"], str(ECHO_PORT): local_port}) for i in original]
            engine_env.update_site(SITE, instances=instances)
    yield Site()
    engine_env.update_site(SITE, unavailable_until=0)
    if original is not None:
        engine_env.update_site(SITE, instances=original)


def events_of(tunnel, seen, kind, count=1, timeout=20):
    """Wait for `count` events of `kind` (collecting every event into seen); returns those."""
    def arrived():
        seen.extend(tunnel.poll_events())
        return len([e for e in seen if e.kind == kind]) >= count
    assert wait_for(arrived, timeout), [e[:8] for e in seen]
    return [e for e in seen if e.kind == kind]


def client(port, payload=b""):
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    if payload:
        sock.sendall(payload)
    return sock


def still_waiting(sock, seconds=0.5):
    """Nothing came and nothing ended within `seconds`."""
    sock.settimeout(seconds)
    try:
        data = sock.recv(1)
    except socket.timeout:
        return True
    finally:
        sock.settimeout(20)
    raise AssertionError(f"expected the client to wait, got {data!r}")


def test_the_front_ends_503_is_held_and_retried_with_what_the_client_sent(make_tunnel, restart_site):
    restart_site.unavailable()
    tunnel = make_tunnel(SITE, hold=True)
    tunnel.start()
    seen = []
    with client(tunnel.port, b"sent-while-restarting") as sock:
        held, = events_of(tunnel, seen, "held")
        assert held.reason == "http_status" and held.status == 503 and held.facts["phase"] == "upgrade"
        assert still_waiting(sock)
        sock.sendall(b"|and-meanwhile")           # kept too, in order
        restart_site.unavailable(False)
        tunnel.release(True)
        expected = b"sent-while-restarting|and-meanwhile"
        assert recv_exact(sock, len(expected)) == expected
        sock.sendall(b"|after")
        assert recv_exact(sock, 6) == b"|after"
    closed, = events_of(tunnel, seen, "closed")
    assert [e.kind for e in seen if e.conn_id == held.conn_id] == ["held", "opened", "closed"]
    assert closed.bytes_down == len(expected) + 6
    stats = tunnel.stats()
    assert stats["failures"] == 0 and stats["bytes_up"] == len(expected) + 6


def test_nothing_listening_yet_is_held_too(make_tunnel, restart_site):
    restart_site.container_port_down()
    tunnel = make_tunnel(SITE, hold=True)
    tunnel.start()
    seen = []
    with client(tunnel.port, b"SSH-2.0-client\r\n") as sock:
        held, = events_of(tunnel, seen, "held")
        assert held.reason == "" and held.facts is None and held.remote_closed and held.bytes_down == 0
        assert still_waiting(sock)
        restart_site.container_port_down(False)
        tunnel.release(True)
        assert recv_exact(sock, 16) == b"SSH-2.0-client\r\n"
    events_of(tunnel, seen, "closed")
    assert [e.kind for e in seen if e.conn_id == held.conn_id] == ["opened", "held", "opened", "closed"]


def test_release_without_retry_ends_it_as_before(make_tunnel, restart_site):
    restart_site.unavailable()
    tunnel = make_tunnel(SITE, hold=True)
    tunnel.start()
    seen = []
    with client(tunnel.port, b"x") as sock:
        events_of(tunnel, seen, "held")
        tunnel.release(False)
        assert sock.recv(1) == b""                # EOF
    failed, = events_of(tunnel, seen, "failed")
    assert failed.reason == "http_status" and failed.status == 503
    assert tunnel.stats()["failures"] == 1


def test_a_client_that_stops_waiting_is_a_plain_close(make_tunnel, restart_site):
    restart_site.unavailable()
    tunnel = make_tunnel(SITE, hold=True)
    tunnel.start()
    seen = []
    sock = client(tunnel.port, b"x")
    events_of(tunnel, seen, "held")
    sock.close()
    closed, = events_of(tunnel, seen, "closed")
    assert closed.reason == "" and not closed.remote_closed
    assert tunnel.stats()["failures"] == 0 and tunnel.stats()["open"] == 0
    tunnel.release(True)                          # nothing held any more: nothing happens
    assert not [e for e in tunnel.poll_events() if e.kind != "closed"]


def test_held_at_most_hold_times_max_then_it_fails(make_tunnel, restart_site):
    from azext_webapp import tunnel as tunnel_module
    most = tunnel_module._tunnel.HOLD_TIMES_MAX  # pylint: disable=protected-access
    restart_site.unavailable()
    tunnel = make_tunnel(SITE, hold=True)
    tunnel.start()
    seen = []
    with client(tunnel.port, b"x") as sock:
        for times in range(1, most + 1):
            events_of(tunnel, seen, "held", times)
            tunnel.release(True)                  # still restarting: turned away again
        assert sock.recv(1) == b""
    failed, = events_of(tunnel, seen, "failed")
    assert failed.status == 503 and len([e for e in seen if e.kind == "held"]) == most


def test_a_client_that_keeps_sending_loses_nothing(make_tunnel, restart_site):
    """More than HOLD_KEEP_MAX while held: the engine stops reading at the limit and the rest waits
    in the kernel; after the retry every byte arrives, in order."""
    restart_site.unavailable()
    tunnel = make_tunnel(SITE, hold=True)
    tunnel.start()
    seen = []
    payload = bytes(range(256)) * 1024               # 256 KiB
    with client(tunnel.port, b"first") as sock:
        events_of(tunnel, seen, "held")
        sock.settimeout(2)
        sent = 0
        try:
            while sent < len(payload):
                sent += sock.send(payload[sent:])
        except socket.timeout:
            pass                                  # the kernel's buffers are full: the engine paused
        sock.settimeout(30)
        restart_site.unavailable(False)
        tunnel.release(True)
        sock.sendall(payload[sent:])
        assert recv_exact(sock, 5 + len(payload)) == b"first" + payload


def test_without_hold_a_503_ends_the_client_at_once(make_tunnel, restart_site):
    restart_site.unavailable()
    tunnel = make_tunnel(SITE)
    tunnel.start()
    seen = []
    with client(tunnel.port, b"x") as sock:
        assert sock.recv(1) == b""
    failed, = events_of(tunnel, seen, "failed")
    assert failed.status == 503 and not [e for e in seen if e.kind == "held"]


def test_stop_with_connections_held_closes_them(make_tunnel, restart_site):
    restart_site.unavailable()
    tunnel = make_tunnel(SITE, hold=True)
    tunnel.start()
    seen = []
    socks = [client(tunnel.port, b"x") for _ in range(5)]
    events_of(tunnel, seen, "held", 5)
    started = time.monotonic()
    tunnel.stop()
    assert time.monotonic() - started < 2
    for sock in socks:
        sock.settimeout(5)
        assert sock.recv(1) == b""
        sock.close()


def test_a_websocket_that_lasted_before_it_closed_is_not_held(make_tunnel, restart_site):
    """A server that closes after a while without a byte (an idle time-out) did not turn the connection
    away as a restarting container does (at once, within HOLD_WINDOW_MS): the client sees the close,
    and what it sent is never sent again."""
    import threading
    from azext_webapp import tunnel as tunnel_module
    window = tunnel_module._tunnel.HOLD_WINDOW_MS / 1000  # pylint: disable=protected-access
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def serve():
        listener.settimeout(30)
        conn, _ = listener.accept()
        accepted.append(conn.recv(100))
        time.sleep(window + 0.5)
        conn.close()
    server = threading.Thread(target=serve, daemon=True)
    server.start()
    restart_site.container_port_to(listener.getsockname()[1])
    tunnel = make_tunnel(SITE, hold=True)
    tunnel.start()
    seen = []
    try:
        with client(tunnel.port, b"GET / HTTP/1.0\r\n\r\n") as sock:
            sock.settimeout(window + 10)
            assert sock.recv(1) == b""
        events_of(tunnel, seen, "closed")
        assert not [e for e in seen if e.kind == "held"]
        assert accepted == [b"GET / HTTP/1.0\r\n\r\n"]
    finally:
        server.join(10)
        listener.close()
