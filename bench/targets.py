"""The "container" side of the benchmark: one TCP server every tunnel and the raw floor reach.

A client starts each connection with a one-byte mode and an 8-byte big-endian count:
  E  echo everything until EOF
  D  send `count` bytes, then read until EOF
  U  read `count` bytes, then send one byte b"K"
Every connection gets its own thread: the same code path for all three ways in, so the floor is fair.
"""
import socket
import struct
import threading

HEADER = struct.Struct("!cQ")
BLOCK = bytes(range(256)) * 4096  # 1 MiB


def _recv_exact(sock, count):
    buf = bytearray(count)
    view = memoryview(buf)
    got = 0
    while got < count:
        n = sock.recv_into(view[got:])
        if not n:
            raise ConnectionError("peer closed early")
        got += n
    return bytes(buf)


def _drain(sock, count=None):
    buf = bytearray(1 << 20)
    total = 0
    while count is None or total < count:
        want = len(buf) if count is None else min(len(buf), count - total)
        n = sock.recv_into(buf, want)
        if not n:
            break
        total += n
    return total


def send_count(sock, count):
    view = memoryview(BLOCK)
    left = count
    while left:
        chunk = view[:min(left, len(BLOCK))]
        sock.sendall(chunk)
        left -= len(chunk)


def _serve_one(conn):
    with conn:
        try:
            mode, count = HEADER.unpack(_recv_exact(conn, HEADER.size))
            if mode == b"E":
                buf = bytearray(1 << 16)
                while True:
                    n = conn.recv_into(buf)
                    if not n:
                        return
                    conn.sendall(memoryview(buf)[:n])
            elif mode == b"D":
                send_count(conn, count)
                _drain(conn)
            elif mode == b"U":
                if _drain(conn, count) == count:
                    conn.sendall(b"K")
        except OSError:
            pass


class TargetServer:
    def __init__(self, host="127.0.0.1"):
        self._sock = socket.create_server((host, 0), backlog=2048)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _accept_loop(self):
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=_serve_one, args=(conn,), daemon=True).start()

    def close(self):
        self._sock.close()
