"""The "container" ports behind the sandbox SCM server for the engine tests.

- EchoServer: echoes every byte back (selector loop in one thread; 1,000 connections are fine).
- StreamServer: per connection the client sends an 8-byte length N; the server then sends the
  deterministic stream of N bytes while hashing the N bytes it receives, and finally sends the
  32-byte SHA-256 of what it received. Both directions at full speed, verified by digest.
- CloserServer: sends b"bye\\n" and closes (the container side ending).
"""
import hashlib
import random
import selectors
import socket
import struct
import threading
import time

BLOCK = 1 << 20
_BASE = random.Random(20240601).randbytes(BLOCK)


def wait_for(predicate, timeout=10.0):
    """The engine's counters and events trail the bytes a client sees: poll, never assume."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def stream_blocks(total):
    """The deterministic stream: 1 MiB blocks, each stamped with its index (catches reordering)."""
    index = 0
    sent = 0
    block = bytearray(_BASE)
    while sent < total:
        struct.pack_into(">Q", block, 0, index)
        n = min(BLOCK, total - sent)
        yield memoryview(block)[:n]
        sent += n
        index += 1


def stream_digest(total):
    h = hashlib.sha256()
    for piece in stream_blocks(total):
        h.update(piece)
    return h.digest()


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def pipe(src, dst):
    """Copy src to dst until EOF or an error on either side (a relay leg in a test)."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass


class _Server:
    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=2048)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def close(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass


class EchoServer(_Server):
    def _run(self):
        sel = selectors.DefaultSelector()
        self.sock.setblocking(False)
        sel.register(self.sock, selectors.EVENT_READ, None)
        pending = {}
        while not self._stop.is_set():
            for key, mask in sel.select(0.2):
                if key.data is None:
                    try:
                        conn, _ = self.sock.accept()
                    except OSError:
                        continue
                    conn.setblocking(False)
                    pending[conn] = bytearray()
                    sel.register(conn, selectors.EVENT_READ, "c")
                    continue
                conn = key.fileobj
                if mask & selectors.EVENT_READ:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        sel.unregister(conn)
                        conn.close()
                        pending.pop(conn, None)
                        continue
                    pending[conn] += data
                if mask & selectors.EVENT_WRITE or pending.get(conn):
                    try:
                        n = conn.send(pending[conn])
                        del pending[conn][:n]
                    except BlockingIOError:
                        pass
                    except OSError:
                        sel.unregister(conn)
                        conn.close()
                        pending.pop(conn, None)
                        continue
                    sel.modify(conn, selectors.EVENT_READ | (selectors.EVENT_WRITE if pending[conn] else 0),
                               "c")
        sel.close()


class AcceptingServer(_Server):
    """Calls self._handle(conn) for every accepted connection, on the accepting thread."""

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._handle(conn)


class StreamServer(AcceptingServer):
    def _handle(self, conn):
        threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _serve(conn):
        try:
            total = struct.unpack(">Q", recv_exact(conn, 8))[0]

            def send_stream():
                try:
                    for piece in stream_blocks(total):
                        conn.sendall(piece)
                except OSError:
                    pass  # the client went away (e.g. a test that stops mid-stream)
            sender = threading.Thread(target=send_stream, daemon=True)
            sender.start()
            h = hashlib.sha256()
            got = 0
            buf = bytearray(1 << 20)
            while got < total:
                n = conn.recv_into(buf, min(len(buf), total - got))
                if not n:
                    break
                h.update(memoryview(buf)[:n])
                got += n
            sender.join()
            conn.sendall(h.digest())
        except (OSError, EOFError):
            pass  # reachability probes connect and leave at once
        finally:
            conn.close()


class CloserServer(AcceptingServer):
    @staticmethod
    def _handle(conn):
        try:
            conn.sendall(b"bye\n")
        finally:
            conn.close()
