"""The server side of RFC 6455 on a socket the HTTP handler has answered with 101.

Only what the page needs: masked client frames (text, binary, continuation, ping, pong, close),
unmasked server frames, one message at most MAX_MESSAGE bytes. Reads happen on one thread;
sends may come from any thread (the SSH reader sends output while the handler answers pings).
"""
from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
MAX_MESSAGE = 1 << 20     # a paste is far below this; anything larger is not a terminal's input

CLOSE_NORMAL, CLOSE_PROTOCOL, CLOSE_TOO_BIG, CLOSE_ERROR = 1000, 1002, 1009, 1011


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def valid_key(key: str | None) -> bool:
    try:
        return key is not None and len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        return False


class ProtocolError(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code


def encode(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def _unmask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


class WebSocket:
    """rfile: the handler's buffered reader (it may already hold bytes sent after the
    handshake); sock: the connection, for sending and for ending it."""

    def __init__(self, rfile, sock: socket.socket):
        self._rfile = rfile
        self._sock = sock
        self._send_lock = threading.Lock()
        self._close_sent = False

    # -- sending (any thread)
    def _send(self, frame: bytes) -> bool:
        with self._send_lock:
            if self._close_sent:
                return False
            try:
                self._sock.sendall(frame)
            except OSError:
                self._close_sent = True     # the peer is gone; later sends are moot
                return False
            return True

    def send_text(self, text: str) -> bool:
        return self._send(encode(OP_TEXT, text.encode("utf-8")))

    def send_binary(self, data: bytes) -> bool:
        return self._send(encode(OP_BINARY, bytes(data)))

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Send a close frame once (the reason is cut to fit a control frame)."""
        payload = struct.pack("!H", code) + reason.encode("utf-8")[:123]
        with self._send_lock:
            if self._close_sent:
                return
            self._close_sent = True
            try:
                self._sock.sendall(encode(OP_CLOSE, payload))
            except OSError:
                pass

    def abort(self) -> None:
        """End the connection now, waking a thread blocked in recv()."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def drain(self, seconds: float) -> None:
        """After our close: read until the peer answers it or `seconds` pass, so the browser
        sees a clean close rather than a reset."""
        try:
            self._sock.settimeout(seconds)
        except OSError:
            return
        while self.recv() is not None:
            pass

    # -- receiving (one thread)
    def _read(self, n: int) -> bytes:
        data = self._rfile.read(n) if n else b""
        if len(data) != n:
            raise EOFError
        return data

    def _frame(self):
        b0, b1 = self._read(2)
        if b0 & 0x70:
            raise ProtocolError(CLOSE_PROTOCOL, "reserved bits set")
        if not b1 & 0x80:
            raise ProtocolError(CLOSE_PROTOCOL, "client frames must be masked")
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        opcode = b0 & 0x0F
        if opcode >= 0x8 and (n > 125 or not b0 & 0x80):
            raise ProtocolError(CLOSE_PROTOCOL, "bad control frame")
        if n > MAX_MESSAGE:
            raise ProtocolError(CLOSE_TOO_BIG, "message too big")
        key = self._read(4)
        return bool(b0 & 0x80), opcode, _unmask(self._read(n), key)

    def recv(self):
        """The next message as (OP_TEXT, str) or (OP_BINARY, bytes); None once the peer has
        closed (its close is answered) or the connection has ended."""
        parts, kind = [], None
        try:
            while True:
                fin, opcode, payload = self._frame()
                if opcode == OP_PING:
                    self._send(encode(OP_PONG, payload))
                    continue
                if opcode == OP_PONG:
                    continue
                if opcode == OP_CLOSE:
                    code = (struct.unpack("!H", payload[:2])[0] if len(payload) >= 2
                            else CLOSE_NORMAL)
                    self.close(code if code in (CLOSE_NORMAL, 1001) else CLOSE_NORMAL)
                    return None
                if opcode in (OP_TEXT, OP_BINARY):
                    if kind is not None:
                        raise ProtocolError(CLOSE_PROTOCOL, "new message inside a fragmented one")
                    kind = opcode
                elif opcode != OP_CONT or kind is None:
                    raise ProtocolError(CLOSE_PROTOCOL, f"unexpected opcode {opcode}")
                parts.append(payload)
                if sum(map(len, parts)) > MAX_MESSAGE:
                    raise ProtocolError(CLOSE_TOO_BIG, "message too big")
                if fin:
                    data = b"".join(parts)
                    if kind == OP_TEXT:
                        try:
                            return OP_TEXT, data.decode("utf-8")
                        except UnicodeDecodeError:
                            raise ProtocolError(1007, "text frame is not UTF-8") from None
                    return OP_BINARY, data
        except ProtocolError as e:
            self.close(e.code, str(e))
            return None
        except (EOFError, OSError, ValueError):
            return None
