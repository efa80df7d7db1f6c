"""RFC 6455, client side: the upgrade request, the 101 check, frame building (masked) and parsing.

Only the wire format lives here (tn_ws.c's counterpart); nothing here does I/O. Masking XORs the
whole payload as one integer (``int.from_bytes`` / ``to_bytes``), so a 64 KiB frame is masked by a
few C loops instead of 65,536 Python steps.
"""
import base64
import hashlib
import os
import random
import re
import struct

from .. import _reasons
from .errors import fail, refused
from .sizes import FRAME_MAX, HS_MAX, RX_FRAME_MAX

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TUNNEL_PATH = "/AppServiceTunnel/Tunnel.ashx"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CLOSE_NORMAL = 1000

# RFC 7230 3.1.2: the version, one space, three digits, then a space or the line's end
_STATUS_RE = re.compile(rb"HTTP/1\.[01] (\d{3})[ \r]")
_FOLD_RE = re.compile(rb"\r\n[ \t]")
_DIGITS = re.compile("[0-9]+")
_rng = random.Random(int.from_bytes(os.urandom(16), "little"))


def mask(payload, key):
    """payload XOR the 4-byte key repeated: whole-buffer integer XOR, no per-byte Python loop."""
    n = len(payload)
    if not n:
        return b""
    keys = key * ((n + 3) >> 2)
    if len(keys) != n:
        keys = keys[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(keys, "little")).to_bytes(n, "little")


class _FullFrameKeys:
    """Mask keys for full FRAME_MAX frames, each with its repeated form already an integer: that
    conversion is a third of the masking cost, so a small pool of keys keeps it precomputed. A
    frame takes a random key of the pool, and a fresh key replaces one every few frames."""

    SIZE = 8

    def __init__(self):
        self.keys = [self._make() for _ in range(self.SIZE)]
        self.taken = 0

    @staticmethod
    def _make():
        key = _rng.getrandbits(32).to_bytes(4, "little")
        return key, int.from_bytes(key * (FRAME_MAX // 4), "little")

    def take(self):
        self.taken += 1
        if not self.taken % self.SIZE:
            self.keys[(self.taken // self.SIZE) % self.SIZE] = self._make()
        return self.keys[_rng.getrandbits(3)]


_full_frame_keys = _FullFrameKeys()


def _full_frame(payload):
    """A binary frame of exactly FRAME_MAX bytes (the bulk of every upload)."""
    key, keys_int = _full_frame_keys.take()
    masked = (int.from_bytes(payload, "little") ^ keys_int).to_bytes(FRAME_MAX, "little")
    return _FULL_HEAD + key + masked


_FULL_HEAD = struct.pack("!BBH", 0x80 | OP_BINARY, 0x80 | 126, FRAME_MAX) if FRAME_MAX < 65536 else \
    struct.pack("!BBQ", 0x80 | OP_BINARY, 0x80 | 127, FRAME_MAX)


def frame(opcode, payload=b"", key=None):
    """One FIN frame, masked (clients always mask). ``key``: 4 bytes, random when None."""
    n = len(payload)
    if key is None:
        if n == FRAME_MAX and opcode == OP_BINARY:
            return _full_frame(payload)
        key = _rng.getrandbits(32).to_bytes(4, "little")
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + key + mask(payload, key)


def data_frames(data):
    """Binary frames of at most FRAME_MAX bytes carrying data, as one bytes object."""
    n = len(data)
    if n <= FRAME_MAX:
        return frame(OP_BINARY, data)
    view = memoryview(data)
    return b"".join(frame(OP_BINARY, view[i:i + FRAME_MAX]) for i in range(0, n, FRAME_MAX))


def close_payload(code):
    return struct.pack("!H", code)


def new_key():
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + GUID).digest()).decode("ascii")


def upgrade_request(host, port, authorization, key, instance=None, target_port=0, path=None):
    """The upgrade request, byte for byte the native engine's (tn_ws_request). ``path``: the
    request path with its query (default: the tunnel's)."""
    hostport = host if port == 443 else f"{host}:{port}"
    extra = ""
    if instance:
        extra += f"Cookie: ARRAffinity={instance}\r\n"
    if target_port:
        extra += f"AppsvcTunnelPort: {int(target_port)}\r\n"
    return (f"GET {path or TUNNEL_PATH} HTTP/1.1\r\n"
            f"Host: {hostport}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Pragma: no-cache\r\n"
            "Cache-Control: no-cache\r\n"
            f"Origin: {hostport}\r\n"
            f"Sec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            f"Authorization: {authorization}\r\n"
            f"{extra}\r\n").encode("latin-1")


class HeadCollector:
    """Collects an HTTP answer's header block (at most HS_MAX bytes, no NUL).

    feed(data) -> None while incomplete, else (head, rest): rest are the bytes after the blank line.
    Raises ``oversized`` or ``malformed`` (Errors with the sender's facts) for such an answer."""

    def __init__(self, oversized, malformed):
        self.buf = bytearray()
        self.oversized, self.malformed = oversized, malformed

    def feed(self, data):
        old = len(self.buf)
        take = min(len(data), HS_MAX - old)
        self.buf += data[:take]
        end = self.buf.find(b"\r\n\r\n", max(0, old - 3))
        # a NUL inside the header block is malformed; what follows it (frames) may hold any byte. The
        # bytes before `old` were looked at already (an answer dribbled a byte a read stays linear).
        if self.buf.find(b"\0", old, len(self.buf) if end < 0 else end) >= 0:
            raise self.malformed
        if end < 0:
            if len(self.buf) >= HS_MAX:
                raise self.oversized
            return None
        head = bytes(self.buf[:end + 4])
        rest = bytes(self.buf[end + 4:]) + bytes(data[take:])
        self.buf = bytearray()
        return head, rest


class BodyCollector:
    """The body of a refused upgrade, after its head (tn_ws.c's rules): feed(data) -> None while more is
    expected, else (its data, b""). It ends at its Content-Length, at its last chunk, or at BODY_SCAN
    bytes; ``data()`` is what came so far, its chunks joined."""

    def __init__(self, head):
        length = header_value(head, "Content-Length") or ""
        short = _DIGITS.fullmatch(length) and len(length) <= len(str(_reasons.BODY_SCAN))
        self.want = int(length) if short and int(length) < _reasons.BODY_SCAN else _reasons.BODY_SCAN
        self.chunked = (header_value(head, "Transfer-Encoding") or "").lower().endswith("chunked")
        self.body = bytearray()

    def feed(self, data):
        self.body += data[:self.want - len(self.body)]
        done = len(self.body) >= self.want or (self.chunked and (
            self.body == b"0\r\n\r\n" or (len(self.body) >= 7 and self.body.endswith(b"\r\n0\r\n\r\n"))))
        return (self.data(), b"") if done else None

    def data(self):
        return _dechunked(bytes(self.body)) if self.chunked else bytes(self.body)


def _dechunked(body):
    """A chunked body's data (tn_ws_dechunk): each chunk's hex size line (extensions after ';'), its
    bytes, CRLF; it stops at the last chunk or at anything else."""
    out, pos = bytearray(), 0
    while pos < len(body):
        digits = re.match(rb"[0-9A-Fa-f]{1,8}", body[pos:pos + 8])
        line_end = body.find(b"\n", pos)
        if not digits or line_end < 0 or not int(digits.group(), 16):
            break
        size, pos = int(digits.group(), 16), line_end + 1
        out += body[pos:pos + size]
        pos += size + 2
    return bytes(out)


def status_of(head):
    match = _STATUS_RE.match(head)
    return int(match.group(1)) if match else None


def header_value(head, name):
    """The first value of header ``name`` (case-insensitive) in a header block, or None. Folded lines
    (obs-fold) are read as one, as RFC 7230 3.2.4 asks of a user agent."""
    want = name.lower().encode("latin-1") + b":"
    for line in _FOLD_RE.sub(b" ", head).split(b"\r\n")[1:]:
        if line[:len(want)].lower() == want:
            return line[len(want):].strip(b" \t").decode("latin-1")
    return None


def close_valid(payload: bytes) -> bool:
    """A Close's payload: empty, or a code a peer may send (RFC 6455 7.4; 1012 to 1014 as IANA
    registered them) and a UTF-8 reason. Its code is echoed back, so one that must never be on the
    wire is not taken (tn_ws_close_valid)."""
    if not payload:
        return True
    if len(payload) < 2:
        return False
    code = int.from_bytes(payload[:2], "big")
    if code < 1000 or 1004 <= code <= 1006 or 1015 <= code < 3000 or code >= 5000:
        return False
    try:
        payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def upgrade_collector(host, port):
    return HeadCollector(fail("http_too_large", host=host, port=port, phase="upgrade", limit=HS_MAX),
                         fail("http_malformed", host=host, port=port, phase="upgrade"))


def check_upgrade(head, rest, key, host, port):
    """Raise Error unless ``head`` is a 101 with the right Sec-WebSocket-Accept; ``rest`` is what
    came after it (a refusal's body: what the server said)."""
    status = status_of(head)
    if status is None or status < 100:
        raise fail("http_malformed", host=host, port=port, phase="upgrade")
    if status != 101:
        raise refused(status, rest, host=host, port=port, phase="upgrade")
    if header_value(head, "Sec-WebSocket-Accept") != accept_for(key):
        raise fail("http_bad_accept", host=host, port=port, phase="upgrade", status=101)


class FrameParser:
    """Parses the server's frames. feed(data) hands data payload runs to on_data(memoryview) as they
    are (no copy) and complete control frames to on_control(opcode, bytes); it stops after a Close.
    Raises Error(protocol_*) for what RFC 6455 forbids a server to send."""

    __slots__ = ("host", "port", "on_data", "on_control", "hdr", "need", "remain", "opcode", "ctl", "fragmented",
                 "closed")

    def __init__(self, host, on_data, on_control, port=0):
        self.host, self.port = host, port
        self.on_data, self.on_control = on_data, on_control
        self.hdr = b""
        self.need = 2          # header bytes expected; 0 while in a payload
        self.remain = 0
        self.opcode = 0
        self.ctl = b""
        self.fragmented = False   # inside a message sent in fragments
        self.closed = False

    def _violation(self, reason, **facts):
        return fail(reason, host=self.host, port=self.port, phase="frame", **facts)

    def _header(self):
        b0, b1 = self.hdr[0], self.hdr[1]
        if b0 & 0x70:
            raise self._violation("protocol_reserved_bits")
        if b1 & 0x80:
            raise self._violation("protocol_masked")
        op = b0 & 0x0F
        if not (op <= 2 or 8 <= op <= 10):
            raise self._violation("protocol_opcode", opcode=op)
        l7 = b1 & 0x7F
        return 2 + (2 if l7 == 126 else 8 if l7 == 127 else 0)

    def _begin(self):
        b0, l7 = self.hdr[0], self.hdr[1] & 0x7F
        if l7 == 126:
            plen = struct.unpack_from("!H", self.hdr, 2)[0]
        elif l7 == 127:
            plen = struct.unpack_from("!Q", self.hdr, 2)[0]
        else:
            plen = l7
        self.opcode = b0 & 0x0F
        if self.opcode >= 8 and (plen > 125 or not b0 & 0x80):
            raise self._violation("protocol_control")
        # RFC 6455 5.4: continuations follow an unfinished message, and messages are not interleaved
        if self.opcode == OP_CONT and not self.fragmented:
            raise self._violation("protocol_fragment")
        if OP_CONT < self.opcode < 8 and self.fragmented:
            raise self._violation("protocol_fragment")
        if self.opcode < 8:
            self.fragmented = not b0 & 0x80
        if plen > RX_FRAME_MAX:
            raise self._violation("protocol_too_large", size=plen, limit=RX_FRAME_MAX)
        self.remain = plen
        self.ctl = b""
        self.need = 0
        self.hdr = b""

    def feed(self, data):
        view = memoryview(data)
        pos, end = 0, len(view)
        while pos < end and not self.closed:
            if self.need == 2 and not self.hdr and end - pos >= 10:
                # the common case: a whole header in this chunk, taken at once
                l7 = view[pos + 1] & 0x7F
                size = 4 if l7 == 126 else 10 if l7 == 127 else 2
                self.hdr = bytes(view[pos:pos + 2])
                self._header()
                self.hdr = bytes(view[pos:pos + size])
                pos += size
                self._begin()
            elif self.need:
                # collect the header (2..10 bytes) across chunks
                take = min(self.need - len(self.hdr), end - pos)
                self.hdr += bytes(view[pos:pos + take])
                pos += take
                if len(self.hdr) < self.need:
                    continue
                if len(self.hdr) == 2:
                    full = self._header()
                    if full > 2:
                        self.need = full
                        continue
                self._begin()
            else:
                n = min(self.remain, end - pos)
                if self.opcode >= 8:
                    self.ctl += bytes(view[pos:pos + n])
                elif n:
                    self.on_data(view[pos:pos + n])
                pos += n
                self.remain -= n
            if not self.need and not self.remain:
                if self.opcode >= 8:
                    if self.opcode == OP_CLOSE:
                        if not close_valid(self.ctl):
                            raise self._violation("protocol_close")
                        self.closed = True
                    self.on_control(self.opcode, self.ctl)
                self.need = 2
                self.hdr = b""
