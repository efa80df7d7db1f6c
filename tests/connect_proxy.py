"""An HTTP CONNECT proxy on loopback that requires Basic credentials, for the proxy tests of the
engines and of the command."""
import base64
import contextlib
import socket
import threading

from tests import engine_targets

PROXY_USER, PROXY_PASSWORD = "proxy-user", "p@ss%w:rd-never-shown"


def proxy_auth_value(user=PROXY_USER, password=PROXY_PASSWORD):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class AuthProxy(engine_targets.AcceptingServer):
    """An HTTP CONNECT proxy on loopback for any number of connections. mode: "auth" (Basic
    credentials required: 407 without the right Proxy-Authorization), "open" (no credentials asked),
    "refuse" (403 always), "close" (closes without an answer), "garbage" (an answer that is not HTTP).
    refuse_ports: targets on these ports get 403 whatever the mode (a proxy whose policy blocks
    one site). Records every request head."""

    def __init__(self, mode="auth", expected=None, refuse_ports=()):
        self.mode = mode
        self.refuse_ports = {int(port) for port in refuse_ports}
        self.expected = expected or proxy_auth_value()
        self.requests = []
        super().__init__()

    def _handle(self, conn):
        threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            text = head.decode("latin-1")
            self.requests.append(text)
            given = [line.split(":", 1)[1].strip() for line in text.split("\r\n")
                     if line.lower().startswith("proxy-authorization:")]
            host, port = text.split()[1].rsplit(":", 1)
            if self.mode == "close":
                return
            if self.mode == "garbage":
                conn.sendall(b"SSH-2.0-not-a-proxy\r\n\r\n")
                return
            if self.mode == "refuse" or int(port) in self.refuse_ports:
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            if self.mode == "auth" and given != [self.expected]:
                conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                             b"Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n")
                return
            with socket.create_connection((host, int(port))) as up:
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                t = threading.Thread(target=engine_targets.pipe, args=(up, conn), daemon=True)
                t.start()
                engine_targets.pipe(conn, up)
                with contextlib.suppress(OSError):      # the target may have closed first
                    up.shutdown(socket.SHUT_RDWR)
                t.join(5)
