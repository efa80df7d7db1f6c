"""The two engines' codecs behind one interface, for the byte-level vectors
(tests/test_unit_codec_vectors.py) and the Python fuzz pass (tests/test_unit_codec_fuzz.py).

- ``PortableCodec``: azext_webapp/_portable/codec.py (FrameParser, the upgrade's HeadCollector and
  check_upgrade, frame) and connect.py's proxy answer (Route.proxy_collector / check_proxy_answer).
- ``NativeCodec``: native/tn_ws.c and native/tn_conn.c through tests/vectors/codec_lib.c, built as
  build/codec/libtn_codec.so by ``make codec-lib`` (``native_codec()`` says why it cannot load).

Every parser takes its input as a list of reads (``chunks``) and answers in plain values:

- ``frames(chunks)`` -> ``(events, end)``: events are ``(kind, payload)`` with kind ``data``,
  ``ping``, ``pong`` or ``close`` (consecutive data runs merged: how a codec cuts them is its own
  business); end is ``boundary`` (between frames), ``mid-frame``, ``closed`` (a Close arrived:
  nothing after it counts) or ``error:<kind>``.
- ``upgrade(chunks)`` / ``proxy(chunks)`` -> ``("ok", rest)`` (rest: the bytes after the header
  block, which are frames; for the proxy always b""), ``("incomplete", b"")`` or
  ``("error:<kind>", status)``.
- ``build(opcode, payload, key)`` -> one masked client frame (``key`` None: the codec's own key).
"""
import ctypes
import os

from azext_webapp import _reasons
from azext_webapp._portable import codec
from azext_webapp._portable.connect import Route
from azext_webapp._portable.errors import Error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY = os.path.join(ROOT, "build", "codec", "libtn_codec.so")
# the C files the library is built from: a library older than any of them is stale
LIBRARY_SOURCES = ["native/tn_ws.c", "native/tn_ws.h", "native/tn_conn.c", "native/tn_conn.h", "native/tn_http.h",
                   "native/tn_err.c", "native/tn_err.h", "native/tn_config.h", "native/tn_limits.h",
                   "azext_webapp/_reasons.def", "tests/vectors/codec_lib.c"]
HOST = "scm.example"
PORT = 443
PROXY = "proxy.example:3128"
# RFC 6455 section 1.3's example: this key's accept value is s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
CONTROL = {codec.OP_PING: "ping", codec.OP_PONG: "pong", codec.OP_CLOSE: "close"}


def merged(events):
    """Consecutive data runs as one event."""
    out = []
    for kind, payload in events:
        if kind == "data" and out and out[-1][0] == "data":
            out[-1] = ("data", out[-1][1] + payload)
        elif kind != "data" or payload:
            out.append((kind, bytes(payload)))
    return out


class PortableCodec:
    name = "portable"

    @staticmethod
    def frames(chunks):
        events = []
        parser = codec.FrameParser(HOST, lambda view: events.append(("data", bytes(view))),
                                   lambda op, payload: events.append((CONTROL[op], bytes(payload))))
        try:
            for chunk in chunks:
                parser.feed(chunk)
        except Error as err:
            return merged(events), f"error:{_reasons.kind_of(err.reason)}"
        if parser.closed:
            return merged(events), "closed"
        return merged(events), "boundary" if parser.need == 2 and not parser.hdr else "mid-frame"

    @staticmethod
    def _head(collector, check, chunks):
        rest = None
        try:
            for chunk in chunks:
                if rest is not None:
                    rest += chunk
                    continue
                done = collector.feed(chunk)
                if done is not None:
                    check(*done)
                    rest = done[1]
        except Error as err:
            return f"error:{_reasons.kind_of(err.reason)}", int(err.facts.get("status", 0))
        return ("incomplete", b"") if rest is None else ("ok", rest)

    @classmethod
    def upgrade(cls, chunks):
        return cls._head(codec.upgrade_collector(HOST, PORT),
                         lambda head, rest: codec.check_upgrade(head, rest, KEY, HOST, PORT), chunks)

    @classmethod
    def proxy(cls, chunks):
        route = Route(HOST, PORT, PROXY, None, None)
        outcome, rest = cls._head(route.proxy_collector(), lambda head, rest: route.check_proxy_answer(head), chunks)
        return (outcome, b"") if outcome == "ok" else (outcome, rest)

    @staticmethod
    def build(opcode, payload, key):
        return codec.frame(opcode, payload, key)


def native_codec():
    """(NativeCodec, None), or (None, why it is not available)."""
    if not os.path.exists(LIBRARY):
        return None, f"{os.path.relpath(LIBRARY, ROOT)} is not built (make codec-lib; make test builds it)"
    built = os.path.getmtime(LIBRARY)
    stale = [path for path in LIBRARY_SOURCES if os.path.getmtime(os.path.join(ROOT, path)) > built]
    if stale:
        return None, f"{os.path.relpath(LIBRARY, ROOT)} is older than {', '.join(stale)} (make codec-lib)"
    return NativeCodec(ctypes.CDLL(LIBRARY)), None


class NativeCodec:
    name = "native"
    _STATE = {0: "boundary", 1: "mid-frame", 2: "closed"}

    def __init__(self, lib):
        self.lib = lib
        lib.cv_new.restype = ctypes.c_void_p
        lib.cv_new.argtypes = [ctypes.c_char_p, ctypes.c_uint64]
        lib.cv_free.argtypes = [ctypes.c_void_p]
        lib.cv_error_kind.restype = ctypes.c_char_p
        lib.cv_error_kind.argtypes = [ctypes.c_void_p]
        lib.cv_error_status.argtypes = [ctypes.c_void_p]
        lib.cv_handshake.restype = ctypes.c_long
        lib.cv_handshake.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.cv_proxy.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.cv_frames_feed.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                       ctypes.POINTER(ctypes.c_size_t)]
        lib.cv_state.argtypes = [ctypes.c_void_p]
        lib.cv_frame.restype = ctypes.c_size_t
        lib.cv_frame.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t,
                                 ctypes.c_void_p]

    def _new(self, seed=1):
        return self.lib.cv_new(codec.accept_for(KEY).encode("ascii"), seed)

    def _error(self, handle):
        return "error:" + self.lib.cv_error_kind(handle).decode("ascii"), self.lib.cv_error_status(handle)

    def frames(self, chunks):
        handle, events, end = self._new(), [], None
        try:
            for chunk in chunks:
                # the input in a buffer of its own: the data runs handed out point into it
                inp = ctypes.create_string_buffer(bytes(chunk), len(chunk) or 1)
                out = ctypes.create_string_buffer(6 * len(chunk) + 256)
                out_len = ctypes.c_size_t(0)
                rc = self.lib.cv_frames_feed(handle, inp, len(chunk), out, ctypes.byref(out_len))
                records = out.raw[:out_len.value]
                pos = 0
                while pos < len(records):
                    kind, n = records[pos], int.from_bytes(records[pos + 1:pos + 5], "big")
                    events.append(("data" if kind == 0 else CONTROL[kind], records[pos + 5:pos + 5 + n]))
                    pos += 5 + n
                if rc == -2:
                    raise AssertionError("tn_ws_next broke its contract (a run outside the input, or input left)")
                if rc < 0:
                    end = self._error(handle)[0]
                    break
            return merged(events), end or self._STATE[self.lib.cv_state(handle)]
        finally:
            self.lib.cv_free(handle)

    def upgrade(self, chunks):
        handle = self._new()
        try:
            rest = None
            for chunk in chunks:
                chunk = bytes(chunk)
                if rest is not None:
                    rest += chunk
                    continue
                took = self.lib.cv_handshake(handle, chunk, len(chunk))
                if took < 0:
                    return self._error(handle)
                if took > 0:
                    assert took <= len(chunk), "the 101 took more bytes than it was given"
                    rest = chunk[took:]
            return ("incomplete", b"") if rest is None else ("ok", rest)
        finally:
            self.lib.cv_free(handle)

    def proxy(self, chunks):
        handle = self._new()
        try:
            for chunk in chunks:
                chunk = bytes(chunk)
                rc = self.lib.cv_proxy(handle, chunk, len(chunk))
                if rc < 0:
                    return self._error(handle)
                if rc > 0:
                    return "ok", b""
            return "incomplete", b""
        finally:
            self.lib.cv_free(handle)

    def build(self, opcode, payload, key):
        handle = self._new(seed=0)
        try:
            out = ctypes.create_string_buffer(len(payload) + 14)
            n = self.lib.cv_frame(handle, opcode, key, bytes(payload), len(payload), out)
            return out.raw[:n]
        finally:
            self.lib.cv_free(handle)
