"""The engine contract's exec-channel parts (issue 21), on both engines: a WebSocket to a request
path of the caller's choice with the instance's ARRAffinity cookie, Text frames sent on a given
connection (the terminal's size goes first), the server's Text and Binary frames relayed as one
byte stream (a UTF-8 character split across two frames arrives whole), and a refused upgrade's
body read -- by its Content-Length, its chunks, or until the connection ends, at most 4 KiB and
2 s -- so that the SCM site's JSON "Message" reaches the user.

Against tests/hostile_server.py (its frame_echo and *_refusal behaviours), through
azext_webapp.tunnel.Channel, the one door the exec commands use.
"""
import json
import os
import signal
import socket
import threading
import time

import pytest

from tests.hostile_server import EXEC_REFUSAL_MESSAGE, GREETING

EXEC_PATH = "/exec/shell?target=kudu&shell=%2Fbin%2Fsh"
SIZE = json.dumps({"width": 132, "height": 43})


@pytest.fixture
def channel(hostile, engine_env):
    from azext_webapp import tunnel
    from tests.fixtures_engine import basic_auth
    made = []

    def make(behaviour, path=EXEC_PATH, instance="exec-app-i1"):
        hostile.push(behaviour)
        made.append(tunnel.Channel(f"https://localhost:{hostile.port}", basic_auth(), path, instance=instance))
        return made[-1]
    yield make
    for c in made:
        c.close()


def _recv_until(sock, want, timeout=10):
    sock.settimeout(timeout)
    data = b""
    while len(data) < len(want):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_the_request_goes_to_the_path_with_the_instance_cookie_and_the_size_comes_first(channel, hostile):
    before = len(hostile.requests)
    c = channel("frame_echo").open(first_text=SIZE)
    c.sock.sendall(b"echo hi\n")
    got = _recv_until(c.sock, GREETING + b"T:" + SIZE.encode() + b"B:echo hi\n")
    c.send_text(json.dumps({"width": 80, "height": 24}))
    got += _recv_until(c.sock, b'T:{"width": 80, "height": 24}')
    request = hostile.requests[before].decode("latin-1")
    lines = request.split("\r\n")
    assert lines[0] == f"GET {EXEC_PATH} HTTP/1.1"
    assert "Cookie: ARRAffinity=exec-app-i1" in lines
    assert not [line for line in lines if line.startswith("AppsvcTunnelPort")]
    # the size before any keystroke; the server's Text and Binary frames both arrive as bytes, in order
    assert hostile.frames[-3:] == [(0x1, SIZE.encode()), (0x2, b"echo hi\n"), (0x1, b'{"width": 80, "height": 24}')]
    assert got == GREETING + b"T:" + SIZE.encode() + b"B:echo hi\n" + b'T:{"width": 80, "height": 24}'


def test_a_character_split_across_a_text_and_a_binary_frame_arrives_whole(channel):
    c = channel("frame_echo").open(first_text=SIZE)
    got = _recv_until(c.sock, GREETING)[:len(GREETING)]
    assert got == GREETING
    assert got.decode("utf-8") == "caf\u00e9 \u2713\n"


def test_the_server_closing_is_eof_and_no_failure(channel, hostile):
    c = channel("frame_echo").open()
    _recv_until(c.sock, GREETING)
    c.sock.shutdown(socket.SHUT_WR)          # the local end: the engine sends a Close, the server answers
    c.sock.settimeout(10)
    while c.sock.recv(65536):
        pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and c.failure() is None and not any(
            e.kind == "closed" for e in c._events):  # pylint: disable=protected-access
        time.sleep(0.05)
    assert c.failure() is None


@pytest.mark.parametrize("behaviour, kind, status", [
    ("length_refusal", "auth", 403),        # Content-Length: the connection stays open behind it
    ("chunked_refusal", "http", 404),       # chunks, the last one a little later
])
def test_a_refusal_shows_the_sites_message_as_soon_as_its_body_is_complete(channel, behaviour, kind, status):
    c = channel(behaviour)
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        c.open(first_text=SIZE)
    took = time.monotonic() - started
    err = caught.value
    assert (err.kind, err.status) == (kind, status)
    assert err.server_message == EXEC_REFUSAL_MESSAGE      # the body came after the head
    assert took < 1.8, f"waited {took:.1f} s: the body's end was not recognised"


def test_a_refusal_without_length_ends_with_the_connection(channel):
    with pytest.raises(Exception) as caught:
        channel("refusal_then_close").open()
    assert (caught.value.kind, caught.value.status) == ("auth", 401)
    assert caught.value.server_message == "Sign in first."      # a text body's first line


def test_an_endless_refusal_body_is_cut_at_4_kib_and_2_seconds(channel):
    c = channel("endless_refusal")
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        c.open()
    took = time.monotonic() - started
    assert caught.value.status == 403
    assert took < 4, f"took {took:.1f} s"
    assert caught.value.server_message.startswith("endless endless")
    assert len(caught.value.server_message.encode()) <= 200      # one line, cut to SERVER_MESSAGE_MAX


def test_text_frames_for_unknown_or_ended_connections_are_dropped(channel):
    c = channel("frame_echo").open()
    c._tunnel.send_text(c.conn_id + 1000, "nobody")  # pylint: disable=protected-access
    c.sock.sendall(b"still here")
    assert _recv_until(c.sock, GREETING + b"B:still here").endswith(b"B:still here")


def test_bad_paths_and_oversized_text_frames_are_refused(engine_env):
    from azext_webapp import tunnel
    from tests.fixtures_engine import basic_auth
    for path in ("exec/shell", "/exec/shell?x=a b", "/exec/shell\r\nX: y", "/caf\u00e9"):
        with pytest.raises(ValueError):
            tunnel.Tunnel(engine_env.url(), basic_auth(), listen=False, path=path)
    t = tunnel.Tunnel(engine_env.url(), basic_auth(), listen=False, path="/exec/shell")
    try:
        t.start()
        with pytest.raises(ValueError):
            t.send_text(1, "x" * (64 * 1024 + 1))
        t.stop()
        with pytest.raises(tunnel.TunnelError) as caught:
            t.send_text(1, "after stop")
        assert caught.value.kind == "closed"
    finally:
        t.stop()


def test_a_recorded_signal_ends_the_wait_for_an_upgrade_that_never_comes(channel):
    from azext_webapp._termination import Terminated, terminate_on
    c = channel("no_http_answer")
    with terminate_on("SIGUSR1"):
        threading.Timer(0.5, os.kill, args=(os.getpid(), signal.SIGUSR1)).start()
        started = time.monotonic()
        with pytest.raises(Terminated):
            c.open(timeout=30)
    assert time.monotonic() - started < 2.5
