"""RFC 6455 framing and the upgrade's handshake, for the sandbox and the tests: one codec of their own.

The sandbox's browser SSH service (webssh/websocket.py) speaks the server side with it; the tests'
client (tests/wsclient.py), their hostile server (tests/hostile_server.py) and their raw checks of
the SCM server and of the product speak either side with it. It shares nothing with the product's
codecs (native/tn_ws.c, azext_webapp/_portable/codec.py), so that what the tests check is checked
against a second reading of the RFC. Standard library only, no I/O: bytes in, bytes or frames out
(``read_frame`` and ``recv_head`` take the caller's ``read`` / ``recv``).

Frames:
    frame(opcode, payload, fin=True, mask_key=None)    # unmasked (a server's) unless a key is given
    client_frame(opcode, payload, fin=True, mask_key=None)   # masked (a client's), random key if None
    read_frame(read, masked=None, max_payload=None)    # -> Frame; read(n) returns exactly n bytes
    iter_frames(data, masked=None)                     # -> (Frame, offset after it), ... (whole ones)
    split_frames(data, masked=None)                    # -> ([Frame, ...], bytes left over)
Handshake:
    new_key(), accept_key(key), valid_key(key)
    upgrade_request(path, host, key, headers=())       # the client's GET, as bytes
    answer_101(key)                                    # the server's 101, as bytes
    request_key(request)                               # Sec-WebSocket-Key of a raw request
    recv_head(recv)                                    # -> (head, rest) read with the caller's recv
    parse_head(head)                                   # -> (status, [(name, value), ...])

A frame that breaks the RFC raises ``ProtocolError`` with the close code that answers it (1002
reserved bits, an unknown opcode, a bad control frame, the wrong masking; 1009 over max_payload).
"""
from __future__ import annotations

import base64
import hashlib
import os
import struct
from dataclasses import dataclass

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
OPCODES = (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG)
CLOSE_NORMAL, CLOSE_PROTOCOL, CLOSE_TOO_BIG, CLOSE_ERROR = 1000, 1002, 1009, 1011


class ProtocolError(Exception):
    """A frame the RFC forbids; ``code`` is the close code that answers it."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code


class Incomplete(Exception):
    """``split_frames``'s reader ran out of bytes inside a frame."""


@dataclass
class Frame:
    opcode: int
    payload: bytes
    fin: bool = True
    masked: bool = False

    @property
    def close_code(self):
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]

    @property
    def close_reason(self) -> str:
        return self.payload[2:].decode("utf-8", "replace") if self.opcode == OP_CLOSE else ""


# -- masking and frames -----------------------------------------------------------------------------

def mask(data: bytes, key: bytes) -> bytes:
    """data XOR the 4-byte key repeated (the same operation unmasks)."""
    n = len(data)
    if not n or key == b"\0\0\0\0":
        return bytes(data)
    keys = (key * (n // 4 + 1))[:n]
    # one big integer XOR: far faster than a per-byte Python loop
    return (int.from_bytes(data, "little") ^ int.from_bytes(keys, "little")).to_bytes(n, "little")


def frame(opcode: int, payload: bytes = b"", fin: bool = True, mask_key: bytes | None = None) -> bytes:
    """One frame in the shortest length form: unmasked (as a server sends) unless mask_key is given."""
    n = len(payload)
    bit = 0x80 if mask_key is not None else 0
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if mask_key is None:
        return head + bytes(payload)
    return head + mask_key + mask(payload, mask_key)


def client_frame(opcode: int, payload: bytes = b"", fin: bool = True, mask_key: bytes | None = None) -> bytes:
    """One client frame: always masked (RFC 6455 5.1), with a random key unless one is given; a zero
    key keeps the payload as it is (throughput tests that should not mask in Python)."""
    return frame(opcode, payload, fin, os.urandom(4) if mask_key is None else mask_key)


def read_frame(read, masked: bool | None = None, max_payload: int | None = None) -> Frame:
    """The next frame from ``read(n)`` (exactly n bytes, or an exception at the end of the stream).

    masked: True for what a server reads (client frames must be masked), False for what a client
    reads, None to take either. The payload comes back unmasked."""
    b0, b1 = read(2)
    opcode, fin, is_masked, n = b0 & 0x0F, bool(b0 & 0x80), bool(b1 & 0x80), b1 & 0x7F
    if b0 & 0x70:
        raise ProtocolError(CLOSE_PROTOCOL, "reserved bits set")
    if opcode not in OPCODES:
        raise ProtocolError(CLOSE_PROTOCOL, f"unknown opcode {opcode}")
    if masked is not None and is_masked != masked:
        raise ProtocolError(CLOSE_PROTOCOL, "client frames must be masked" if masked
                            else "server frames must not be masked")
    if n == 126:
        n = struct.unpack("!H", read(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", read(8))[0]
    if opcode >= OP_CLOSE and (n > 125 or not fin):
        raise ProtocolError(CLOSE_PROTOCOL, "bad control frame")
    if max_payload is not None and n > max_payload:
        raise ProtocolError(CLOSE_TOO_BIG, "message too big")
    key = read(4) if is_masked else None
    payload = read(n) if n else b""
    return Frame(opcode, mask(payload, key) if key else payload, fin, is_masked)


class _Cursor:
    """read(n) over bytes in memory; Incomplete when they run out."""

    def __init__(self, data: bytes):
        self.view = memoryview(data)
        self.pos = 0

    def read(self, n: int) -> bytes:
        if self.pos + n > len(self.view):
            raise Incomplete
        self.pos += n
        return bytes(self.view[self.pos - n:self.pos])


def iter_frames(data: bytes, masked: bool | None = None):
    """(frame, the offset after it) for each whole frame at the start of ``data``; stops before an
    unfinished one (ProtocolError for a bad one, as read_frame)."""
    cursor = _Cursor(data)
    while cursor.pos < len(data):
        start = cursor.pos
        try:
            found = read_frame(cursor.read, masked)
        except Incomplete:
            cursor.pos = start
            return
        yield found, cursor.pos


def split_frames(data: bytes, masked: bool | None = None):
    """Every whole frame at the start of ``data`` and the bytes after them (an unfinished frame)."""
    frames, end = [], 0
    for found, end in iter_frames(data, masked):
        frames.append(found)
    return frames, bytes(data[end:])


# -- the handshake ------------------------------------------------------------------------------------

def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def valid_key(key: str | None) -> bool:
    """A Sec-WebSocket-Key is 16 random bytes in base64."""
    try:
        return key is not None and len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        return False


def upgrade_request(path: str, host: str, key: str, headers=()) -> bytes:
    """A client's upgrade request; ``headers``: (name, value) pairs or a dict, after the standard ones."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    pairs = headers.items() if isinstance(headers, dict) else headers
    lines += [f"{name}: {value}" for name, value in pairs]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer_101(key: str) -> bytes:
    """A server's 101 to a request with this Sec-WebSocket-Key."""
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n").encode()


def recv_head(recv, limit: int = 1 << 16):
    """An HTTP head read with ``recv(n)`` (b"" at the end of the stream): (the head without its blank
    line, the bytes after it); the head is None when the stream ends, or ``limit`` bytes pass, first."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = recv(65536) if len(buf) <= limit else b""
        if not chunk:
            return None, buf
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def parse_head(head: bytes):
    """An HTTP head (without its blank line, or with it): (status or None for a request, [(name, value)])
    with names as sent and values stripped."""
    lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    first = lines[0].split(" ", 2)
    status = int(first[1]) if first[0].startswith("HTTP/") and len(first) > 1 else None
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return status, headers


def request_key(request: bytes) -> str:
    """The Sec-WebSocket-Key of a raw upgrade request ("" when it has none)."""
    _, headers = parse_head(request.split(b"\r\n\r\n", 1)[0])
    return next((value for name, value in headers if name.lower() == "sec-websocket-key"), "")
