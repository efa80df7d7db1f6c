"""Client-side workloads, each run against one way in: (host, port) of a tunnel or the raw target.

Every function returns plain numbers and raises `WorkloadFailed` when the way in does not carry
the work (a refused or reset connection, or no answer within the deadline): a failure is a result.
"""
import os
import selectors
import socket
import statistics
import time

from bench.targets import BLOCK, HEADER, send_count


class WorkloadFailed(Exception):
    pass


def _connect(addr, timeout):
    sock = socket.create_connection(addr, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def bulk_download(addr, size, timeout=300.0):
    """Seconds to receive `size` bytes that the target streams through the way in."""
    try:
        with _connect(addr, timeout) as sock:
            start = time.perf_counter()
            sock.sendall(HEADER.pack(b"D", size))
            buf = bytearray(1 << 20)
            got = 0
            while got < size:
                n = sock.recv_into(buf)
                if not n:
                    raise WorkloadFailed(f"EOF after {got} of {size} bytes")
                got += n
            return time.perf_counter() - start
    except OSError as exc:
        raise WorkloadFailed(str(exc)) from exc


def bulk_upload(addr, size, timeout=300.0):
    """Seconds until the target acknowledges `size` bytes sent through the way in."""
    try:
        with _connect(addr, timeout) as sock:
            start = time.perf_counter()
            sock.sendall(HEADER.pack(b"U", size))
            send_count(sock, size)
            if sock.recv(1) != b"K":
                raise WorkloadFailed("no acknowledgement from the target")
            return time.perf_counter() - start
    except OSError as exc:
        raise WorkloadFailed(str(exc)) from exc


def round_trips(addr, count, size=64, timeout=5.0):
    """Microseconds for each of up to `count` exchanges of `size` bytes, and why it stopped early.

    A way in that stalls mid-run keeps the samples it produced; the caller reports the stall.
    """
    payload = os.urandom(size)
    samples = []
    try:
        with _connect(addr, timeout) as sock:
            sock.sendall(HEADER.pack(b"E", 0))
            for _ in range(count):
                start = time.perf_counter()
                sock.sendall(payload)
                got = 0
                while got < size:
                    chunk = sock.recv(size - got)
                    if not chunk:
                        return samples, f"EOF after {len(samples)} of {count} exchanges"
                    got += len(chunk)
                samples.append((time.perf_counter() - start) * 1e6)
    except OSError as exc:
        return samples, f"stalled after {len(samples)} of {count} exchanges ({exc})"
    return samples, None


def percentile(samples, pct):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


class _EchoClient:
    """One connection of the concurrency workload, driven by a selector."""

    def __init__(self, addr, payload):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.connect_ex(addr)
        self.out = HEADER.pack(b"E", 0) + payload
        self.payload = payload
        self.received = bytearray()
        self.done = False

    def on_writable(self):
        try:
            sent = self.sock.send(self.out)
        except BlockingIOError:
            return
        self.out = self.out[sent:]

    def on_readable(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("EOF")
        self.received += data
        self.done = len(self.received) >= len(self.payload)


def concurrent_echo(addr, count, deadline=60.0):
    """Open `count` connections at once, each echoing 64 bytes; (completed, seconds)."""
    sel = selectors.DefaultSelector()
    clients = []
    start = time.perf_counter()
    for i in range(count):
        client = _EchoClient(addr, i.to_bytes(4, "big") * 16)
        clients.append(client)
        sel.register(client.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, client)
    completed = 0
    open_clients = count
    end = start + deadline
    while open_clients and time.perf_counter() < end:
        for key, events in sel.select(timeout=0.5):
            client = key.data
            try:
                if events & selectors.EVENT_WRITE and client.out:
                    client.on_writable()
                    if not client.out:
                        sel.modify(client.sock, selectors.EVENT_READ, client)
                if events & selectors.EVENT_READ:
                    client.on_readable()
            except OSError:
                client.done = None
            if client.done is not False:
                if client.done and bytes(client.received) == client.payload:
                    completed += 1
                sel.unregister(client.sock)
                client.sock.close()
                open_clients -= 1
    elapsed = time.perf_counter() - start
    for client in clients:
        if client.done is False:
            sel.unregister(client.sock)
            client.sock.close()
    sel.close()
    return completed, elapsed


def open_idle(addr, count, timeout=30.0):
    """Open `count` connections that each completed one echo, and leave them idle; returns them."""
    socks = []
    for i in range(count):
        sock = _connect(addr, timeout)
        sock.sendall(HEADER.pack(b"E", 0) + b"ping")
        if sock.recv(4) != b"ping":
            raise WorkloadFailed(f"connection {i} got no echo")
        socks.append(sock)
    return socks


def median_spread(values):
    """(median, min, max) of the successful values, or None when there are none."""
    ok = [v for v in values if v is not None]
    if not ok:
        return None
    return statistics.median(ok), min(ok), max(ok)


__all__ = ["BLOCK", "WorkloadFailed", "bulk_download", "bulk_upload", "round_trips", "percentile",
           "concurrent_echo", "open_idle", "median_spread"]
