"""The server side of a WebSocket on a socket the HTTP handler has answered with 101.

Only what the page needs: masked client frames (text, binary, continuation, ping, pong, close),
unmasked server frames, one message at most MAX_MESSAGE bytes. Reads happen on one thread;
sends may come from any thread (the SSH reader sends output while the handler answers pings).
The framing and the handshake's keys are the sandbox's one codec, sandbox/wscodec.py; its names
used here (GUID, the opcodes and close codes, accept_key, valid_key, ProtocolError, and its
``frame`` as ``encode``) stay importable from this module.
"""
from __future__ import annotations

import socket
import struct
import threading

from ..wscodec import (CLOSE_ERROR, CLOSE_NORMAL, CLOSE_PROTOCOL, CLOSE_TOO_BIG, GUID, OP_BINARY, OP_CLOSE,
                       OP_CONT, OP_PING, OP_PONG, OP_TEXT, ProtocolError, accept_key, read_frame, valid_key)
from ..wscodec import frame as encode

__all__ = ["GUID", "OP_CONT", "OP_TEXT", "OP_BINARY", "OP_CLOSE", "OP_PING", "OP_PONG", "MAX_MESSAGE",
           "CLOSE_NORMAL", "CLOSE_PROTOCOL", "CLOSE_TOO_BIG", "CLOSE_ERROR", "ProtocolError", "accept_key",
           "valid_key", "encode", "WebSocket"]

MAX_MESSAGE = 1 << 20     # a paste is far below this; anything larger is not a terminal's input


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

    def recv(self):
        """The next message as (OP_TEXT, str) or (OP_BINARY, bytes); None once the peer has
        closed (its close is answered) or the connection has ended."""
        parts, kind = [], None
        try:
            while True:
                got = read_frame(self._read, masked=True, max_payload=MAX_MESSAGE)
                opcode, payload = got.opcode, got.payload
                if opcode == OP_PING:
                    self._send(encode(OP_PONG, payload))
                    continue
                if opcode == OP_PONG:
                    continue
                if opcode == OP_CLOSE:
                    code = got.close_code
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
                if got.fin:
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
