"""One codec truth for both engines: the byte-level vectors of tests/vectors/websocket.json (frames from
the server, client frames built with a given mask key, the 101 in its odd shapes, a proxy's answer to
CONNECT) run against the portable codec and the native one (tests/codec_drivers.py).

Each vector is fed whole, in every split into two reads, byte by byte (long ones: in reads of a few
sizes and with splits near both ends), and every truncation of it must be an unfinished form of the
same outcome: never another error, never an event the whole input does not give.

The portable half needs no build; the native half needs build/codec/libtn_codec.so (`make codec-lib`,
which `make test` runs) and skips with the reason without it.
"""
import json
import os

import pytest

from tests.codec_drivers import PortableCodec, native_codec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VECTORS_FILE = os.path.join(ROOT, "tests", "vectors", "websocket.json")

with open(VECTORS_FILE, encoding="utf-8") as _f:
    VECTORS = json.load(_f)

SMALL = 300                # inputs up to this long are tried in every split and every truncation


def data(value):
    """The bytes a vector's field describes (see the file's "about")."""
    if isinstance(value, list):
        return b"".join(data(part) for part in value)
    if value == "":
        return b""
    form, _, body = value.partition(": ")
    if form == "x":
        return bytes.fromhex(body)
    if form == "t":
        return body.encode("latin-1")
    if form == "n":
        count, pattern = body.split()
        pattern = bytes.fromhex(pattern)
        return (pattern * (int(count) // len(pattern) + 1))[:int(count)]
    raise ValueError(f"unknown form in {value!r}")


def splits(raw):
    """The reads a vector is fed in."""
    yield [raw]
    if len(raw) <= SMALL:
        yield [raw[i:i + 1] for i in range(len(raw))]
        for i in range(1, len(raw)):
            yield [raw[:i], raw[i:]]
        return
    for step in (997, 4096, 65536):
        yield [raw[i:i + step] for i in range(0, len(raw), step)]
    for i in list(range(1, 24)) + list(range(len(raw) - 24, len(raw))):
        yield [raw[:i], raw[i:]]


def truncations(raw):
    """Every prefix of a short input; of a long one, those near both ends."""
    if len(raw) <= SMALL:
        return range(len(raw))
    return list(range(24)) + list(range(len(raw) - 24, len(raw)))


def _is_prefix(part, whole):
    """Events `part` are what a prefix of the input that gave `whole` may give."""
    if len(part) > len(whole):
        return False
    for i, (kind, payload) in enumerate(part):
        if kind != whole[i][0]:
            return False
        last_data = i == len(part) - 1 and kind == "data"
        if payload != whole[i][1] and not (last_data and whole[i][1].startswith(payload)):
            return False
    return True


@pytest.fixture(params=["portable", "native"])
def codec_engine(request):
    """The codec under test (not tests/fixtures_engine.py's `engine`: no engine module is swapped here)."""
    if request.param == "portable":
        return PortableCodec
    native, why = native_codec()
    if native is None:
        pytest.skip(why)
    return native


def _named(section):
    return [pytest.param(v, id=v["name"]) for v in VECTORS[section]]


@pytest.mark.parametrize("vector", _named("frames"))
def test_frames(codec_engine, vector):
    raw = data(vector["in"])
    want = ([(kind, data(payload)) for kind, payload in vector["events"]], vector["end"])
    for chunks in splits(raw):
        got = codec_engine.frames(chunks)
        assert got == want, f"reads of {[len(c) for c in chunks]}"
    for n in truncations(raw):
        events, end = codec_engine.frames([raw[:n]])
        assert _is_prefix(events, want[0]), f"the first {n} bytes gave {events}"
        assert end in ("boundary", "mid-frame", want[1]), f"the first {n} bytes ended {end}"


@pytest.mark.parametrize("vector", _named("build"))
def test_build(codec_engine, vector):
    payload = data(vector["payload"])
    if vector["key"] is not None:
        assert codec_engine.build(vector["opcode"], payload, bytes.fromhex(vector["key"])) == data(vector["out"])
        return
    out = codec_engine.build(vector["opcode"], payload, None)
    n = len(payload)
    head = 2 if n < 126 else 4 if n < 65536 else 10
    # the codec's own key: the frame must say what the given-key form says, with the key it carries
    key = out[head:head + 4]
    again = codec_engine.build(vector["opcode"], payload, key)
    assert out == again == PortableCodec.build(vector["opcode"], payload, key)


def _head_want(vector):
    if vector["result"] in ("ok", "incomplete"):
        return vector["result"], data(vector.get("rest", ""))
    return vector["result"], vector["status"]


def _check_head(parse, vector):
    raw = data(vector["in"])
    want = _head_want(vector)
    for chunks in splits(raw):
        assert parse(chunks) == want, f"reads of {[len(c) for c in chunks]}"
    for n in truncations(raw):
        got = parse([raw[:n]])
        if got[0] == "ok" and want[0] == "ok":
            assert want[1].startswith(got[1]), f"the first {n} bytes left {got[1]!r}"
        else:
            assert got in (("incomplete", b""), want), f"the first {n} bytes gave {got}"


@pytest.mark.parametrize("vector", _named("upgrade"))
def test_upgrade_answer(codec_engine, vector):
    _check_head(codec_engine.upgrade, vector)


@pytest.mark.parametrize("vector", _named("proxy"))
def test_proxy_answer(codec_engine, vector):
    _check_head(codec_engine.proxy, vector)


def test_the_vectors_cover_what_the_brief_names():
    """Every section holds vectors, each named once (a copied name would hide a vector in the report)."""
    for section in ("frames", "build", "upgrade", "proxy"):
        names = [v["name"] for v in VECTORS[section]]
        assert names and len(names) == len(set(names)), section
