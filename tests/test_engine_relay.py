"""The engine's data path against the real sandbox SCM server over TLS on loopback."""
import hashlib
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from tests import engine_targets
from tests.engine_targets import wait_for
from tests.fixtures_engine import BEARER_TOKEN, CLOSER_PORT, STREAM_PORT


def test_echo_and_events(make_tunnel):
    t = make_tunnel()
    t.start()
    t.check()
    with socket.create_connection(("127.0.0.1", t.port)) as c:
        c.sendall(b"hello tunnel")
        assert engine_targets.recv_exact(c, 12) == b"hello tunnel"
    assert wait_for(lambda: t.stats()["open"] == 0)
    stats = t.stats()
    assert stats["total"] == 1 and stats["bytes_up"] == 12 and stats["bytes_down"] == 12
    assert stats["failures"] == 0
    kinds = [e.kind for e in t.poll_events()]
    assert kinds == ["opened", "closed"]


def test_bearer_auth_is_accepted(make_tunnel):
    t = make_tunnel(authorization="Bearer " + BEARER_TOKEN)
    t.start()
    t.check()
    with socket.create_connection(("127.0.0.1", t.port)) as c:
        c.sendall(b"x")
        assert c.recv(1) == b"x"


def test_thousand_concurrent_connections(make_tunnel):
    t = make_tunnel()
    t.start()
    n = 1000
    socks = []
    try:
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", t.port)))
        # all open at once: every one sends, then every one reads its own echo back
        for i, s in enumerate(socks):
            s.sendall(b"conn-%06d;" % i)
        for i, s in enumerate(socks):
            s.settimeout(60)
            assert engine_targets.recv_exact(s, 12) == b"conn-%06d;" % i
        assert t.stats()["open"] == n
    finally:
        for s in socks:
            s.close()
    assert wait_for(lambda: t.stats()["open"] == 0, 30)
    stats = t.stats()
    assert stats["total"] == n and stats["failures"] == 0
    assert stats["bytes_up"] == stats["bytes_down"] == 12 * n


def test_one_gib_each_way_is_byte_exact(make_tunnel, record_property):
    total = 1 << 30
    t = make_tunnel(target_port=STREAM_PORT)
    t.start()
    expected = engine_targets.stream_digest(total)
    with socket.create_connection(("127.0.0.1", t.port)) as c:
        c.sendall(struct.pack(">Q", total))
        started = time.monotonic()
        up_done = []

        def send_all():
            for piece in engine_targets.stream_blocks(total):
                c.sendall(piece)
            up_done.append(time.monotonic())
        sender = threading.Thread(target=send_all)
        sender.start()
        h = hashlib.sha256()
        got = 0
        buf = bytearray(1 << 20)
        while got < total:
            n = c.recv_into(buf, min(len(buf), total - got))
            assert n, f"EOF after {got} bytes"
            h.update(memoryview(buf)[:n])
            got += n
        down_done = time.monotonic()
        sender.join()
        server_digest = engine_targets.recv_exact(c, 32)
    assert h.digest() == expected, "bytes from the container arrived altered"
    assert server_digest == expected, "bytes to the container arrived altered"
    up_s, down_s = up_done[0] - started, down_done - started
    record_property("mib_per_s_up", round(1024 / up_s, 1))
    record_property("mib_per_s_down", round(1024 / down_s, 1))
    print(f"1 GiB each way: up {1024 / up_s:.0f} MiB/s, down {1024 / down_s:.0f} MiB/s")


def test_remote_close_reaches_local_client_as_eof(make_tunnel):
    t = make_tunnel(target_port=CLOSER_PORT)
    t.start()
    with socket.create_connection(("127.0.0.1", t.port)) as c:
        c.settimeout(10)
        assert engine_targets.recv_exact(c, 4) == b"bye\n"
        started = time.monotonic()
        assert c.recv(10) == b""  # EOF, not a hang
        assert time.monotonic() - started < 5
    assert wait_for(lambda: t.stats()["open"] == 0)


def test_local_close_closes_the_websocket(make_tunnel):
    t = make_tunnel()
    t.start()
    c = socket.create_connection(("127.0.0.1", t.port))
    c.sendall(b"ping")
    assert engine_targets.recv_exact(c, 4) == b"ping"
    assert t.stats()["open"] == 1
    c.close()
    assert wait_for(lambda: t.stats()["open"] == 0)
    assert [e.kind for e in t.poll_events()][-1] == "closed"


def test_connections_are_independent(make_tunnel):
    """A connection whose WebSocket fails does not disturb one that is running."""
    t = make_tunnel()
    t.start()
    with socket.create_connection(("127.0.0.1", t.port)) as good:
        good.sendall(b"a")
        assert good.recv(1) == b"a"
        for _ in range(20):  # local clients that vanish at once, mid-handshake
            socket.create_connection(("127.0.0.1", t.port)).close()
        good.sendall(b"b")
        assert good.recv(1) == b"b"
    assert wait_for(lambda: t.stats()["open"] == 0)


def test_serve_returns_on_stop_and_delivers_events(make_tunnel):
    events = []
    t = make_tunnel(on_event=events.append)
    t.start()
    threading.Timer(0.5, lambda: socket.create_connection(("127.0.0.1", t.port)).close()).start()
    threading.Timer(1.5, t.stop).start()
    started = time.monotonic()
    t.serve(timeout=20)
    assert time.monotonic() - started < 10
    assert any(e.kind in ("opened", "closed", "failed") for e in events)


def test_many_tunnels_can_start_and_stop(make_tunnel):
    with ThreadPoolExecutor(4) as pool:
        tunnels = [make_tunnel() for _ in range(8)]
        ports = list(pool.map(lambda t: t.start(), tunnels))
        assert len(set(ports)) == 8
        for t in tunnels:
            t.stop()
            t.stop()  # idempotent
