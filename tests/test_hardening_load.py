"""Load (issue 8): 1,000 concurrent connections through one tunnel process, each moving 1 MiB
both ways (to the sandbox SCM server's echo target, over TLS on loopback): every byte comes back
in order, and the tunnel's RSS stays bounded."""
import selectors
import socket
import threading
import time

import pytest

from tests.fixtures_engine import CliTunnel

N = 1000
SIZE = 1 << 20
# Bounded rings are 256 KiB per direction per connection, so the worst case for the data path is
# N * 512 KiB = 500 MiB, plus lws/TLS buffers per connection; an unbounded buffer would need
# 2 GiB here. Measured on 2 cores: peak ~595 MiB (the client writes its 1 MiB before reading, so
# every ring fills).
RSS_LIMIT_KIB = 768 * 1024


def _payload(i):
    return (b"%06d" % i) * (SIZE // 6) + b"x" * (SIZE % 6)


@pytest.mark.slow
def test_thousand_connections_one_mib_each_way(scm):
    cli = CliTunnel(scm)
    peak = [cli.rss_kib()]
    done = threading.Event()

    def sample():
        while not done.wait(0.2):
            peak.append(cli.rss_kib())
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        started = time.monotonic()
        sel = selectors.DefaultSelector()
        state = {}
        for i in range(N):
            s = socket.create_connection(("127.0.0.1", cli.port), timeout=60)
            s.setblocking(False)
            state[s] = {"i": i, "out": memoryview(_payload(i)), "sent": 0, "got": bytearray()}
            sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
        remaining = N
        deadline = time.monotonic() + 300
        while remaining:
            assert time.monotonic() < deadline, f"{remaining} connections unfinished after 300 s"
            for key, mask in sel.select(1.0):
                s, st = key.fileobj, state[key.fileobj]
                if mask & selectors.EVENT_WRITE and st["sent"] < SIZE:
                    try:
                        st["sent"] += s.send(st["out"][st["sent"]:st["sent"] + 262144])
                    except BlockingIOError:
                        pass
                    if st["sent"] == SIZE:
                        sel.modify(s, selectors.EVENT_READ)
                if mask & selectors.EVENT_READ:
                    try:
                        chunk = s.recv(262144)
                    except BlockingIOError:
                        continue
                    assert chunk, f"connection {st['i']} ended after {len(st['got'])} bytes"
                    st["got"] += chunk
                    if len(st["got"]) == SIZE:
                        assert st["got"] == _payload(st["i"]), f"connection {st['i']}: bytes altered"
                        sel.unregister(s)
                        s.close()
                        remaining -= 1
        took = time.monotonic() - started
    finally:
        done.set()
        sampler.join()
        for s in list(state):
            s.close()
    print(f"{N} x 1 MiB each way in {took:.1f} s; tunnel RSS {peak[0] // 1024} -> peak {max(peak) // 1024} MiB")
    assert max(peak) < RSS_LIMIT_KIB
    code, _, err = cli.stop()
    assert code == 0, err
