"""Stdio mode in the engine: Tunnel(listen=False).relay_stdio (native/tn_pump.c + Engine.adopt)
relays a pair of descriptors through one WebSocket. In process, with pipes, against the engine
fixtures' echo and closer targets, so that the sanitizer passes (tests/sanitize.py) cover it."""
import hashlib
import os
import threading

from tests.fixtures_engine import CLOSER_PORT


def _start_relay(tunnel, in_fd, out_fd):
    result = {}

    def run():
        try:
            result['counts'] = tunnel.relay_stdio(in_fd, out_fd, poll_interval=0.2)
        except Exception as err:  # pylint: disable=broad-except
            result['error'] = err
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def _close(*fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def test_echo_is_byte_exact_and_stdin_eof_ends_the_relay(make_tunnel):
    tunnel = make_tunnel(listen=False)
    assert tunnel.start() == 0  # no listener
    tunnel.check()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    payload = os.urandom(24 * 1024 * 1024)
    thread, result = _start_relay(tunnel, in_r, out_w)
    echoed = hashlib.sha256()
    received = 0
    try:
        writer = threading.Thread(target=lambda: [os.write(in_w, payload[i:i + 65536])
                                                  for i in range(0, len(payload), 65536)], daemon=True)
        writer.start()
        while received < len(payload):
            chunk = os.read(out_r, 65536)
            assert chunk, f'EOF after {received} bytes'
            echoed.update(chunk)
            received += len(chunk)
        writer.join(timeout=10)
        os.close(in_w)  # EOF on "stdin": the WebSocket closes, then "stdout" reaches EOF
        in_w = -1
        assert os.read(out_r, 65536) == b''
        thread.join(timeout=15)
        assert not thread.is_alive()
        assert 'error' not in result, result
        assert result['counts'] == (len(payload), len(payload))
        assert echoed.digest() == hashlib.sha256(payload).digest()
    finally:
        _close(in_r, in_w, out_r, out_w)


def test_websocket_end_ends_the_relay_while_stdin_stays_open(make_tunnel):
    tunnel = make_tunnel(listen=False, target_port=CLOSER_PORT)
    tunnel.start()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    thread, result = _start_relay(tunnel, in_r, out_w)
    try:
        data = b''
        while True:
            chunk = os.read(out_r, 4096)
            if not chunk:
                break
            data += chunk
        assert data == b'bye\n'
        thread.join(timeout=15)
        assert not thread.is_alive() and 'error' not in result, result
        assert result['counts'] == (0, 4)
        assert tunnel.running  # the engine stays up; only the relay ended
    finally:
        _close(in_r, in_w, out_r, out_w)


def test_stop_during_a_relay_ends_it(make_tunnel):
    tunnel = make_tunnel(listen=False)
    tunnel.start()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    thread, result = _start_relay(tunnel, in_r, out_w)
    try:
        os.write(in_w, b'ping\n')
        assert os.read(out_r, 5) == b'ping\n'
        tunnel.stop()  # the engine closes its end: the pump sees EOF and ends
        thread.join(timeout=15)
        assert not thread.is_alive() and 'error' not in result, result
        assert os.read(out_r, 16) == b''
    finally:
        _close(in_r, in_w, out_r, out_w)
