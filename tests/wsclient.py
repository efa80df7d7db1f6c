"""A minimal RFC 6455 WebSocket client over (TLS) sockets, for tests.

Enough to speak to the SCM tunnel endpoint the way a real client does, and to
observe what the server does on the wire (pings, pongs, close codes, a TCP
drop without a close frame):

    ws = WsClient.connect("127.0.0.1", port, "/AppServiceTunnel/Tunnel.ashx",
                          headers={"Authorization": "Basic ..."},
                          ssl_context=ctx)
    ws.send_binary(b"data")
    frame = ws.recv_frame()          # Frame(opcode, payload, fin)
    ws.close(1000)

connect() raises HandshakeError (with .status, .headers, .body) on a non-101
answer.  recv_frame() returns every frame, control frames included, and
raises ConnectionClosedError when the TCP stream ends without a close frame.
recv_data() is the convenient variant: it answers pings, records them in
.pings / .pongs, and returns the next data or close frame.

mask_key: the client must mask; a zero key (mask_key=b"\\0\\0\\0\\0") keeps the
payload as is, which lets throughput tests avoid masking in Python.

The framing and the handshake's keys are the sandbox's codec (sandbox/wscodec.py), which shares
nothing with the product's: its opcodes, Frame and client_frame (as encode_frame) are re-exported.
"""
from __future__ import annotations

import socket
import ssl

from sandbox import wscodec
from sandbox.wscodec import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, Frame
from sandbox.wscodec import client_frame as encode_frame

__all__ = ["OP_CONT", "OP_TEXT", "OP_BINARY", "OP_CLOSE", "OP_PING", "OP_PONG", "Frame", "encode_frame",
           "HandshakeError", "ConnectionClosedError", "http_request", "WsClient"]


class HandshakeError(Exception):
    def __init__(self, status: int, headers: dict, body: bytes):
        super().__init__(f"WebSocket handshake refused: HTTP {status}")
        self.status = status
        self.headers = headers
        self.body = body


class ConnectionClosedError(Exception):
    """The TCP/TLS stream ended without a WebSocket close frame."""


def http_request(host: str, port: int, method: str, path: str, headers=None,
                 ssl_context: ssl.SSLContext | None = None, timeout: float = 10.0):
    """One plain HTTP/1.1 request (Connection: close); returns (status, headers, body)."""
    sock = _open(host, port, ssl_context, timeout)
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        reader = _Reader(sock)
        status, hdrs = reader.read_head()
        if "content-length" in hdrs:
            body = reader.read_exact(int(hdrs["content-length"]))
        else:
            body = reader.read_to_eof()
        return status, hdrs, body
    finally:
        sock.close()


def _open(host, port, ssl_context, timeout):
    raw = socket.create_connection((host, port), timeout=timeout)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if ssl_context is None:
        return raw
    try:
        return ssl_context.wrap_socket(raw, server_hostname=host)
    except BaseException:
        raw.close()
        raise


class _Reader:
    """Buffered exact reads over a socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self, want: int = 1 << 18) -> bool:
        try:
            chunk = self.sock.recv(want)
        except ssl.SSLZeroReturnError:
            chunk = b""
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill(max(n - len(self.buf), 1 << 18)):
                raise ConnectionClosedError(
                    f"stream ended after {len(self.buf)} of {n} bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_to_eof(self) -> bytes:
        while self._fill():
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def read_head(self):
        """(status, {lower-case name: value}) of the HTTP answer's head."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(4096):
                raise ConnectionClosedError("stream ended inside the HTTP head")
        end = self.buf.index(b"\r\n\r\n")
        status, headers = wscodec.parse_head(bytes(self.buf[:end]))
        del self.buf[:end + 4]
        return status, {name.lower(): value for name, value in headers}


class WsClient:
    def __init__(self, sock, reader: _Reader, mask_key: bytes | None = None):
        self.sock = sock
        self._reader = reader
        self.mask_key = mask_key
        self.pings: list[bytes] = []     # payloads of pings received
        self.pongs: list[bytes] = []     # payloads of pongs received
        self.closed = False

    @classmethod
    def connect(cls, host: str, port: int, path: str, headers=None,
                ssl_context: ssl.SSLContext | None = None, timeout: float = 10.0,
                mask_key: bytes | None = None) -> "WsClient":
        sock = _open(host, port, ssl_context, timeout)
        try:
            key = wscodec.new_key()
            sock.sendall(wscodec.upgrade_request(path, f"{host}:{port}", key, headers or {}))
            reader = _Reader(sock)
            status, hdrs = reader.read_head()
            if status != 101:
                body = b""
                if hdrs.get("content-length", "0") != "0":
                    body = reader.read_exact(int(hdrs["content-length"]))
                raise HandshakeError(status, hdrs, body)
            if hdrs.get("sec-websocket-accept") != wscodec.accept_key(key):
                raise HandshakeError(status, hdrs, b"bad Sec-WebSocket-Accept")
            return cls(sock, reader, mask_key)
        except BaseException:
            sock.close()
            raise

    # -- sending
    def send_frame(self, opcode: int, payload: bytes = b"", fin: bool = True) -> None:
        self.sock.sendall(encode_frame(opcode, payload, fin, self.mask_key))

    def send_binary(self, data: bytes) -> None:
        self.send_frame(OP_BINARY, data)

    def send_text(self, text: str) -> None:
        self.send_frame(OP_TEXT, text.encode())

    def ping(self, payload: bytes = b"") -> None:
        self.send_frame(OP_PING, payload)

    def pong(self, payload: bytes = b"") -> None:
        self.send_frame(OP_PONG, payload)

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        self.send_frame(OP_CLOSE, code.to_bytes(2, "big") + reason.encode())

    # -- receiving
    def recv_frame(self) -> Frame:
        """The next frame, control frames included; a server's frame that breaks RFC 6455 (masked,
        reserved bits, a bad control frame) raises wscodec.ProtocolError."""
        return wscodec.read_frame(self._reader.read_exact, masked=False)

    def recv_data(self, auto_pong: bool = True) -> Frame:
        """Next data or close frame; pings are answered, pings/pongs recorded."""
        while True:
            f = self.recv_frame()
            if f.opcode == OP_PING:
                self.pings.append(f.payload)
                if auto_pong:
                    self.pong(f.payload)
                continue
            if f.opcode == OP_PONG:
                self.pongs.append(f.payload)
                continue
            return f

    def recv_bytes(self, n: int) -> bytes:
        """Exactly n bytes of payload from data frames (raises on close)."""
        out = bytearray()
        while len(out) < n:
            f = self.recv_data()
            if f.opcode == OP_CLOSE:
                raise ConnectionClosedError(
                    f"close {f.close_code} after {len(out)} of {n} bytes")
            out += f.payload
        return bytes(out)

    def close(self, code: int = 1000, reason: str = "", wait: float = 2.0) -> Frame | None:
        """Send a close frame and wait for the server's; returns it (or None)."""
        reply = None
        try:
            self.send_close(code, reason)
            self.sock.settimeout(wait)
            while True:
                f = self.recv_data()
                if f.opcode == OP_CLOSE:
                    reply = f
                    break
        except (OSError, ConnectionClosedError, ssl.SSLError):
            pass
        finally:
            self.abort()
        return reply

    def abort(self) -> None:
        """Close the socket without a close frame."""
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.abort()
