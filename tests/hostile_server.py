"""A hostile "SCM" endpoint for the hardening tests: a TLS server (ssl + socket) that answers the
tunnel's WebSocket upgrade the way a broken or malicious server might.

Each accepted TCP connection takes the next behaviour from a queue (`push(name)`); with the
queue empty it is relayed byte for byte (no TLS termination) to `upstream` -- the real sandbox
SCM server -- so that one tunnel pointed at this server can be shown to keep serving good
connections while hostile ones are cut.

Behaviours (BEHAVIOURS):
- huge_headers: "101 Switching Protocols" followed by 1 MiB of header lines, never a blank line
- huge_status: a 1 MiB status line with no CRLF
- bad_opcode / reserved_bits / masked_frame / len_2_63 / len_2_63_minus_1 / bad_control /
  close_1005 / stray_continuation: a correct 101 (valid Sec-WebSocket-Accept), then one invalid frame
- oversize_message: a correct 101, then a data frame announcing 1 GiB and sending it
- no_http_answer: TLS completes, the request is read, nothing is ever answered
- partial_101: half of a 101 answer, then nothing
- no_tls: TCP accepted, the TLS handshake never started by the server
- frame_in_101: the 101 and a binary frame whose payload holds 0x00 bytes, in ONE TLS write
  (one record, so one read on the client: the NUL is behind the header block)
- reset_mid_stream: a correct 101, a data frame, then a TCP reset (SO_LINGER 0)
- tls_garbage_mid_stream: a correct 101, a data frame, then bytes that are not a TLS record,
  written under TLS straight to the socket
- close_1011: a correct 101, a data frame, then Close 1011 (the server's normal end)
- refuse_json / refuse_text: the upgrade refused, 403 with a JSON body whose Message says why /
  503 with a text body, head and body in one write (REFUSAL_MESSAGE is what they say)
- not_http: an answer to the upgrade that is not HTTP
- bad_accept: 101 with a Sec-WebSocket-Accept for another key
- close_after_request: TLS completes, the request is read, the connection closed unanswered
- close_at_tls: TCP accepted, the TLS hello read, the connection closed (a FIN, no handshake)
- plain_200: any request answered 200 with a body that is not JSON (a probe's GetStatus)
- ping_close_when_full: a correct 101; stops reading until the client's upload has filled the
  socket, sends a Ping then a Close, then reads everything the client sends until EOF and checks
  that it parses as valid masked client frames ending with a Close (the outcome is recorded in
  `served`: "frames ok: ..." or "frames bad: ...")

The exec channel's (a WebSocket to another path, Text frames both ways, a refusal's body):
- frame_echo: a correct 101, then GREETING (a UTF-8 text split inside a character: a Text frame
  and a Binary one), then every data frame the client sends comes back with its kind swapped and
  marked: Text "x" as Binary b"T:x", Binary b"y" as Text "B:y"; every frame received is recorded
  in `frames` as (opcode, payload); a Close is answered and ends it
- length_refusal: 403 with a JSON body {"Message": EXEC_REFUSAL_MESSAGE} and its Content-Length,
  written after the head, then the connection is held open (the client must stop at the length,
  not wait for the end)
- chunked_refusal: 404 with the same body in chunks (Transfer-Encoding: chunked), written in two
  parts a little apart, then held open
- endless_refusal: 403 with neither length nor chunks, then body bytes without end
- refusal_then_close: 401 with a plain-text body and no length, then the connection closed
"""
from __future__ import annotations

import os
import queue
import socket
import ssl
import struct
import threading
import time

from sandbox import wscodec
from tests import engine_targets

FRAME_BEHAVIOURS = {
    # opcode 0x3 is reserved for further non-control frames (RFC 6455 5.2)
    "bad_opcode": bytes([0x83, 0x04]) + b"evil",
    # RSV1 set, no extension negotiated
    "reserved_bits": bytes([0xC2, 0x04]) + b"evil",
    # a server must not mask its frames (RFC 6455 5.1)
    "masked_frame": wscodec.frame(wscodec.OP_BINARY, b"evil", mask_key=b"\x01\x02\x03\x04"),
    # 64-bit length with the most significant bit set: 2^63 (RFC 6455: MSB MUST be 0)
    "len_2_63": bytes([0x82, 0x7F]) + struct.pack(">Q", 1 << 63) + b"evil",
    # the largest legal 64-bit length, then a few bytes
    "len_2_63_minus_1": bytes([0x82, 0x7F]) + struct.pack(">Q", (1 << 63) - 1) + b"evil" * 1024,
    # a control frame (ping) longer than 125 bytes and fragmented
    "bad_control": bytes([0x09, 0x7E]) + struct.pack(">H", 300) + b"p" * 300,
    # a Close with 1005, a code that is never on the wire (RFC 6455 7.4.1): echoing it would break the RFC
    "close_1005": wscodec.frame(wscodec.OP_CLOSE, (1005).to_bytes(2, "big")),
    # a continuation frame with no message to continue (RFC 6455 5.4)
    "stray_continuation": wscodec.frame(wscodec.OP_CONT, b"evil"),
}
# What the frame_in_101 payload is: NUL bytes inside, and at both ends.
ZERO_PAYLOAD = b"\x00zero\x00in\x00the\x00101 record\x00"
# A data frame that goes first in the mid-stream behaviours (the client sees it arrive).
HELLO = b"hello from the server"
GREETING = "caf\u00e9 \u2713\n".encode("utf-8")
GREETING_SPLIT = 4                  # inside the two bytes of "\u00e9"
EXEC_REFUSAL_MESSAGE = "Exec is disabled for this site."
EXEC_REFUSALS = ("length_refusal", "chunked_refusal", "endless_refusal", "refusal_then_close")
MID_STREAM = ("reset_mid_stream", "tls_garbage_mid_stream", "close_1011")
# What refuse_json and refuse_text say: control characters and a second line for the engines to drop.
REFUSAL_MESSAGE = "Access to this site is restricted \u2013 ask its owner"
REFUSALS = {
    "refuse_json": b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n\r\n"
                   + ('{"Code": "Forbidden", "Message": "Access to this site\\tis restricted \\u2013 ask its '
                      'owner\\n"}').encode(),
    "refuse_text": b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\r\n"
                   + " Access to this site is\x07\t restricted \u2013 ask its owner \r\nsecond line".encode(),
    "not_http": b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
    "plain_200": b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot JSON!",
}
BEHAVIOURS = ("huge_headers", "huge_status", "oversize_message", "no_http_answer", "partial_101",
              "no_tls", "frame_in_101", "ping_close_when_full", "bad_accept", "close_after_request",
              "close_at_tls", "frame_echo", *REFUSALS, *EXEC_REFUSALS, *MID_STREAM, *FRAME_BEHAVIOURS)
PING_PAYLOAD = b"are you there?"
FULL_WAIT = 3.0     # seconds of not reading: enough for a busy upload to fill both socket buffers


def _read_request(conn) -> bytes:
    head, _ = wscodec.recv_head(conn.recv)
    if head is None:
        raise ConnectionError("client closed during the request (or sent 64 KiB without its end)")
    return head


def parse_client_frames(data: bytes):
    """(frames, error): every frame a client sent, as (opcode, payload of a control frame or the
    length of a data frame's), until the first problem. Client frames must be masked (RFC 6455 5.1),
    have no reserved bits and a known opcode."""
    frames, end = [], 0
    try:
        for found, end in wscodec.iter_frames(data, masked=True):
            frames.append((found.opcode, found.payload if found.opcode >= 8 else len(found.payload)))
    except wscodec.ProtocolError as err:
        return frames, f"not a client frame at offset {end} ({err}): {data[end:end + 8].hex()}"
    if end < len(data):
        return frames, f"truncated frame at offset {end}: {len(data) - end} byte(s) left"
    return frames, None


def _good_101(request: bytes) -> bytes:
    return wscodec.answer_101(wscodec.request_key(request))


class HostileServer:
    """TLS on 127.0.0.1:<port> with cert/key; see the module docstring."""

    def __init__(self, cert: str, key: str, upstream_port: int):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.upstream_port = upstream_port
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.port = self.sock.getsockname()[1]
        self._queue: queue.Queue = queue.Queue()
        self.served: list = []            # (behaviour, outcome) per hostile connection
        self.requests: list = []          # the upgrade requests' heads the hostile paths read
        self.frames: list = []            # frame_echo: (opcode, payload) of every frame received
        self._stop = threading.Event()
        self._conns: list = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def push(self, *behaviours):
        for b in behaviours:
            if b not in BEHAVIOURS:
                raise ValueError(b)
            self._queue.put(b)

    def close(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            for c in self._conns:
                try:
                    c.close()
                except OSError:
                    pass

    # -- internals ---------------------------------------------------------------------------
    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            try:
                behaviour = self._queue.get_nowait()
            except queue.Empty:
                behaviour = None
            target = self._relay if behaviour is None else self._hostile
            threading.Thread(target=target, args=(conn, behaviour), daemon=True).start()

    def _relay(self, conn, _):
        try:
            up = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            conn.close()
            return
        with self._lock:
            self._conns.append(up)

        def pump(src, dst):
            try:
                engine_targets.pipe(src, dst)
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
        t = threading.Thread(target=pump, args=(up, conn), daemon=True)
        t.start()
        pump(conn, up)
        t.join()
        conn.close()
        up.close()

    def _hostile(self, conn, behaviour):
        outcome = "done"
        try:
            if behaviour == "no_tls":
                self._hold(conn)
                return
            if behaviour == "close_at_tls":
                conn.recv(4096)         # nothing left unread: a FIN, not a reset
                return
            tls = self.ctx.wrap_socket(conn, server_side=True)
            with self._lock:
                self._conns.append(tls)
            request = _read_request(tls)
            self.requests.append(request)
            if behaviour == "frame_in_101":
                tls.sendall(_good_101(request) + wscodec.frame(wscodec.OP_BINARY, ZERO_PAYLOAD))
                self._hold(tls)
            elif behaviour in REFUSALS:
                tls.sendall(REFUSALS[behaviour])    # one write: the body comes with the head
                self._hold(tls)
            elif behaviour == "bad_accept":
                tls.sendall(_good_101(b"Sec-WebSocket-Key: c29tZSBvdGhlciBrZXk=\r\n"))
                self._hold(tls)
            elif behaviour == "close_after_request":
                tls.close()
            elif behaviour in MID_STREAM:
                tls.sendall(_good_101(request) + wscodec.frame(wscodec.OP_BINARY, HELLO))
                time.sleep(0.5)             # the client has the data frame before the end
                if behaviour == "reset_mid_stream":
                    tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    tls.close()             # RST: no close_notify, no FIN
                elif behaviour == "tls_garbage_mid_stream":
                    # a TLS 1.2 application-data record header and noise: the MAC cannot match
                    os.write(tls.fileno(), b"\x17\x03\x03\x00\x40" + b"\x5a" * 64)
                    self._hold(tls)
                else:
                    tls.sendall(wscodec.frame(wscodec.OP_CLOSE, (1011).to_bytes(2, "big") + b"Connection failure."))
                    self._hold(tls)
            elif behaviour == "frame_echo":
                tls.sendall(_good_101(request) + wscodec.frame(wscodec.OP_TEXT, GREETING[:GREETING_SPLIT])
                            + wscodec.frame(wscodec.OP_BINARY, GREETING[GREETING_SPLIT:]))
                self._echo_frames(tls)
            elif behaviour in EXEC_REFUSALS:
                self._refuse(tls, behaviour)
            elif behaviour == "ping_close_when_full":
                tls.sendall(_good_101(request))
                time.sleep(FULL_WAIT)       # not reading: the client's upload fills the socket
                tls.sendall(wscodec.frame(wscodec.OP_PING, PING_PAYLOAD)
                            + wscodec.frame(wscodec.OP_CLOSE, (1000).to_bytes(2, "big")))
                outcome = self._read_frames(tls)
            elif behaviour == "no_http_answer":
                self._hold(tls)
            elif behaviour == "partial_101":
                tls.sendall(b"HTTP/1.1 101 Switching Pro")
                self._hold(tls)
            elif behaviour == "huge_headers":
                tls.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n")
                line = b"X-Hostile: " + b"h" * 1000 + b"\r\n"
                for _ in range(1024):            # ~1 MiB of headers, no end
                    tls.sendall(line)
                self._hold(tls)
            elif behaviour == "huge_status":
                tls.sendall(b"HTTP/1.1 101 " + b"s" * (1 << 20))
                self._hold(tls)
            elif behaviour == "oversize_message":
                tls.sendall(_good_101(request))
                tls.sendall(bytes([0x82, 0x7F]) + struct.pack(">Q", 1 << 30))
                block = b"o" * 65536
                for _ in range((1 << 30) // len(block)):
                    tls.sendall(block)
                self._hold(tls)
            else:
                tls.sendall(_good_101(request))
                tls.sendall(FRAME_BEHAVIOURS[behaviour])
                self._hold(tls)
        except (OSError, ConnectionError, ssl.SSLError) as e:
            outcome = f"client ended: {type(e).__name__}"
        finally:
            self.served.append((behaviour, outcome))
            try:
                conn.close()
            except OSError:
                pass

    def _echo_frames(self, tls):
        """frame_echo: answer every whole frame as it arrives (see the module docstring)."""
        data = b""
        tls.settimeout(0.2)
        while not self._stop.is_set():
            try:
                chunk = tls.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                return
            frames, data = wscodec.split_frames(data + chunk, masked=True)
            for found in frames:
                self.frames.append((found.opcode, found.payload))
                if found.opcode == wscodec.OP_CLOSE:
                    tls.sendall(wscodec.frame(wscodec.OP_CLOSE, (1000).to_bytes(2, "big")))
                    return
                if found.opcode == wscodec.OP_TEXT:
                    tls.sendall(wscodec.frame(wscodec.OP_BINARY, b"T:" + found.payload))
                elif found.opcode == wscodec.OP_BINARY:
                    tls.sendall(wscodec.frame(wscodec.OP_TEXT, b"B:" + found.payload))

    def _refuse(self, tls, behaviour):
        body = ('{"Code": "Forbidden", "Message": "%s"}' % EXEC_REFUSAL_MESSAGE).encode()
        if behaviour == "length_refusal":
            tls.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json; charset=utf-8\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(body))
            time.sleep(0.3)                 # the body in a read of its own
            tls.sendall(body)
        elif behaviour == "chunked_refusal":
            tls.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % 10 + body[:10] + b"\r\n")
            time.sleep(0.3)
            tls.sendall(b"%x\r\n" % (len(body) - 10) + body[10:] + b"\r\n0\r\n\r\n")
        elif behaviour == "endless_refusal":
            tls.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n\r\n")
            try:
                while not self._stop.is_set():
                    tls.sendall(b"endless " * 128)
                    time.sleep(0.01)
            except (OSError, ssl.SSLError):
                return
        else:
            tls.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\n\r\n")
            time.sleep(0.3)
            tls.sendall(b"Sign in first.\nSecond line.")
            return
        self._hold(tls)

    def _read_frames(self, tls):
        """Everything the client sends until EOF, checked as client frames ending with a Close."""
        data = bytearray()
        tls.settimeout(20)
        try:
            while True:
                chunk = tls.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        except (OSError, ssl.SSLError) as e:
            if not data:
                return f"frames bad: nothing read ({type(e).__name__})"
        frames, error = parse_client_frames(bytes(data))
        pongs = [f for f in frames if f[0] == wscodec.OP_PONG]
        summary = f"{len(frames)} frames, {len(data)} bytes, {len(pongs)} pong(s)"
        if error:
            return f"frames bad: {error}; {summary}"
        if not frames or frames[-1][0] != wscodec.OP_CLOSE:
            return f"frames bad: no Close at the end; {summary}"
        if [op for op, _ in frames].count(wscodec.OP_CLOSE) != 1:
            return f"frames bad: more than one Close; {summary}"
        return f"frames ok: {summary}"

    def _hold(self, conn):
        """Keep the connection open, reading and discarding, until the client leaves."""
        conn.settimeout(1.0)
        while not self._stop.is_set():
            try:
                if not conn.recv(65536):
                    return
            except socket.timeout:
                continue
