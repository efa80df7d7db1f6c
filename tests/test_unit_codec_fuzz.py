"""The libFuzzer targets' inputs (tests/fuzz/corpus/) driven through the portable codec too: a bounded
random mutator (no coverage instrumentation, standard library only, so it runs wherever the portable
engine does) with the same input layouts and invariants as tests/fuzz/fuzz_*.c, plus two more:

- the outcome never depends on how the input is cut into reads (whole input vs the target's reads);
- where build/codec/libtn_codec.so is built (`make codec-lib`), the native codec gives the same
  outcome for the same reads (a differential check of the two codecs, tests/codec_drivers.py).

Targets: ws_frames (the server's frames), ws_handshake (the answer to the upgrade), proxy_answer (a
proxy's answer to CONNECT), ws_roundtrip (frames built masked decode, by the sandbox's own codec, to
what went in, and re-sent as a server sends them parse back to it).

The quick pass (`make test`, `make test-fast`) runs WEBAPP_PYFUZZ_RUNS mutations per target (default
500) from a fixed seed, in about a second per target. `make fuzz` runs each for WEBAPP_PYFUZZ_SECONDS
with a random seed (printed). A failure names the seed and leaves the input in build/pyfuzz/ (in the
corpus layout: copy it there to keep it as a seed for both fuzzers).
"""
import hashlib
import json
import os
import random
import time

import pytest

from azext_webapp._portable import codec
from sandbox import wscodec
from tests.codec_drivers import PortableCodec, native_codec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
CRASHES = os.path.join(ROOT, "build", "pyfuzz")
SECONDS = float(os.environ.get("WEBAPP_PYFUZZ_SECONDS", "0"))
RUNS = int(os.environ.get("WEBAPP_PYFUZZ_RUNS", "500"))
SEED = int(os.environ.get("WEBAPP_PYFUZZ_SEED", "0")) or (random.SystemRandom().getrandbits(32) if SECONDS else 1)
# Inputs are cut to this; the round trip's may pass FRAME_MAX (and its 64-bit length) in the long pass. Python
# feeds a long input a byte at a time slowly, and a header block is at most HS_MAX anyway.
MAX_LEN = 20000
MAX_LEN_ROUNDTRIP = 70000 if SECONDS else MAX_LEN

# what a mutation inserts or writes: the bytes where both parsers branch
TOKENS = [b"\r\n", b"\r\n\r\n", b"\r\n ", b"\r\n\t", b"HTTP/1.1 ", b"HTTP/1.0 ", b" 101 ", b" 200 ", b" 407 ",
          b"\x00", b"Sec-WebSocket-Accept: ", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", b"\x82\x7e", b"\x82\x7f",
          b"\x88\x02\x03\xe8", b"\x88\x01", b"\x89\x00", b"\x8a\x00", b"\x01\x01a", b"\x80\x01b", b"\x00\x01",
          b"\xff\xff", b"\x7f\xff\xff\xff\xff\xff\xff\xff", b"\x00\x00\x00\x00\x01\x00\x00\x01", b"\xc3\xa9"]
BYTES = [0x00, 0x01, 0x02, 0x08, 0x09, 0x0A, 0x0D, 0x20, 0x3A, 0x7D, 0x7E, 0x7F, 0x80, 0x81, 0x82, 0x88, 0x89,
         0x8A, 0xC2, 0xFF]


def _reads(data, step):
    return [data[i:i + step] for i in range(0, len(data), step)] or [b""]


def _native():
    return native_codec()[0]


# -- the targets: each raises AssertionError when an invariant breaks, and returns a short signature of
# -- the outcome (a new signature keeps the input in the pool: a poor man's coverage)

def ws_frames(data, native):
    """fuzz_ws_frames.c: byte 0 picks the read size, the rest is the server's byte stream."""
    if not data:
        return None
    body = data[1:]
    reads = _reads(body, data[0] % 64 + 1)
    events, end = got = PortableCodec.frames(reads)
    assert sum(len(p) for k, p in events if k == "data") <= len(body), "more payload than was received"
    assert all(len(p) <= 125 for k, p in events if k != "data"), "a control payload over 125 bytes"
    assert PortableCodec.frames([body]) == got, "the outcome depends on the reads"
    if native:
        assert native.frames(reads) == got, "the native codec disagrees"
    return end, tuple(k for k, _ in events[:4])


def _head_target(parse_name, step_mod, allowed):
    def target(data, native):
        if not data:
            return None
        body = data[1:]
        reads = _reads(body, data[0] % step_mod + 1)
        got = getattr(PortableCodec, parse_name)(reads)
        assert got[0] in allowed, got
        if got[0] == "ok" and parse_name == "upgrade":    # the proxy's rest is the tunnel's, never returned
            rest = got[1]
            assert body.endswith(rest) and len(body) - len(rest) <= codec.HS_MAX, "the rest is not what followed"
        assert getattr(PortableCodec, parse_name)([body]) == got, "the outcome depends on the reads"
        if native:
            assert getattr(native, parse_name)(reads) == got, "the native codec disagrees"
        return got[0], got[1] if got[0].startswith("error") else None
    target.__name__ = parse_name
    return target


ws_handshake = _head_target("upgrade", 200, {"ok", "incomplete", "error:http", "error:auth"})
proxy_answer = _head_target("proxy", 300, {"ok", "incomplete", "error:proxy"})


def ws_roundtrip(data, native):
    """fuzz_ws_roundtrip.c: byte 0 the read size, byte 1 the message size unit, the rest the payload."""
    if len(data) < 2:
        return None
    read, unit = data[0] * 37 % 70000 + 1, min(data[1] * 263 % 70000 + 1, codec.FRAME_MAX)
    payload = data[2:]
    messages = [payload[i:i + unit] for i in range(0, len(payload), unit)]
    built = [codec.frame(codec.OP_BINARY, m) for m in messages]
    decoded, rest = wscodec.split_frames(b"".join(built), masked=True)
    assert rest == b"" and [(f.fin, f.opcode, f.payload) for f in decoded] == \
        [(True, codec.OP_BINARY, m) for m in messages], "a client frame does not decode to what went in"
    bulk, rest = wscodec.split_frames(codec.data_frames(payload), masked=True)
    assert rest == b"" and b"".join(f.payload for f in bulk) == payload, "data_frames lost or added bytes"
    assert all(len(f.payload) <= codec.FRAME_MAX for f in bulk), "a data frame over FRAME_MAX"
    if native:
        for message, frame in zip(messages, built):
            key = frame[len(frame) - len(message) - 4:len(frame) - len(message)]
            assert native.build(codec.OP_BINARY, message, key) == frame, "the native codec builds another frame"
    stream = b"".join(wscodec.frame(wscodec.OP_BINARY, m) for m in messages)
    want = ([("data", payload)] if payload else [], "boundary")
    assert PortableCodec.frames(_reads(stream, read)) == want, "a server's frames do not parse back"
    if native:
        assert native.frames(_reads(stream, read)) == want, "the native codec parses them otherwise"
    return len(messages) > 1, len(payload) >= codec.FRAME_MAX


TARGETS = {"ws_frames": ws_frames, "ws_handshake": ws_handshake, "proxy_answer": proxy_answer,
           "ws_roundtrip": ws_roundtrip}
# the vectors' inputs seed the pool too (in reads of 7 and of 64 bytes: the vectors' own test reads them
# a byte at a time)
VECTOR_SECTIONS = {"ws_frames": "frames", "ws_handshake": "upgrade", "proxy_answer": "proxy"}


def _seeds(target, max_len):
    pool = []
    folder = os.path.join(CORPUS, target)
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            pool.append(f.read())
    if target in VECTOR_SECTIONS:
        from tests.test_unit_codec_vectors import VECTORS, data
        for vector in VECTORS[VECTOR_SECTIONS[target]]:
            raw = data(vector["in"])
            if len(raw) <= max_len:
                pool += [b"\x06" + raw, b"\x3f" + raw]
    return pool


def mutate(rng, data, pool, max_len):
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3, 5))):
        op, pos = rng.randrange(9), rng.randrange(len(buf) + 1)
        at = min(pos, len(buf) - 1)
        if op == 0 and buf:
            buf[at] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[at] = rng.randrange(256)
        elif op == 2 and buf:
            buf[at] = rng.choice(BYTES)
        elif op == 3:
            buf[pos:pos] = rng.choice(TOKENS)
        elif op == 4 and buf:
            del buf[pos:pos + rng.randint(1, 16)]
        elif op == 5 and buf:
            start = rng.randrange(len(buf))
            buf[pos:pos] = buf[start:start + rng.randint(1, 64)]
        elif op == 6:
            other = rng.choice(pool)
            buf[pos:] = other[rng.randrange(len(other) + 1):]
        elif op == 7:
            del buf[pos + 1:]
        elif op == 8:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
    return bytes(buf[:max_len])


@pytest.mark.parametrize("name", list(TARGETS))
def test_portable_codec_fuzz(name):
    target, native = TARGETS[name], _native()
    rng = random.Random(f"{SEED}:{name}")
    max_len = MAX_LEN_ROUNDTRIP if name == "ws_roundtrip" else MAX_LEN
    pool = _seeds(name, max_len)
    seen, runs, started = set(), 0, time.monotonic()

    def run(data):
        try:
            seen_before = len(seen)
            seen.add(target(data, native))
            return len(seen) > seen_before
        except Exception as exc:
            os.makedirs(CRASHES, exist_ok=True)     # outlives pytest's temporary directories
            path = os.path.join(CRASHES, f"crash-{name}-{hashlib.sha256(data).hexdigest()[:16]}")
            with open(path, "wb") as f:
                f.write(data)
            raise AssertionError(f"{name}: {exc!r} with seed {SEED} on {len(data)} bytes (saved as {path}, "
                                 f"the same layout as tests/fuzz/corpus/{name}/): {data[:2000].hex()}") from exc

    for data in list(pool):
        run(data)
    while (time.monotonic() - started < SECONDS) if SECONDS else runs < RUNS:
        data = mutate(rng, rng.choice(pool), pool, max_len)
        if run(data) and len(pool) < 4096:
            pool.append(data)
        runs += 1
    rate = runs / max(time.monotonic() - started, 1e-9)
    print(f"{name}: {runs} runs ({rate:.0f}/s), seed {SEED}, {len(seen)} outcomes, pool {len(pool)}, "
          f"native {'on' if native else 'off: ' + native_codec()[1]}")
    assert runs >= (1 if SECONDS else RUNS)


def test_the_vector_seeds_load():
    """The pool's extra seeds come from the vectors file; a renamed section would silently drop them."""
    with open(os.path.join(ROOT, "tests", "vectors", "websocket.json"), encoding="utf-8") as f:
        sections = json.load(f)
    assert set(VECTOR_SECTIONS.values()) <= set(sections)
