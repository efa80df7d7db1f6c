"""The web SSH service's HTTP side: the page, its static files and the terminal's WebSocket.

Only the SCM server's /webssh/ proxy talks to it (sandbox/scm/scm_webssh.c): every request
must carry the service's token in X-Webssh-Token, and the proxy adds which site, instance and
loopback port (the instance's container port 2222) it is for. Each request gets its own
thread; a plain request is one response on a closed connection, as the proxy expects.
"""
from __future__ import annotations

import hmac
import html
import http.server
import socketserver
import threading
import urllib.parse
from pathlib import Path

from . import assets
from .bridge import Bridge, clamp_size
from .websocket import WebSocket, accept_key, valid_key

STATIC_DIR = Path(__file__).resolve().parent / "static"
# name -> (directory, content type): the page's own files, then the xterm bundle from make.
STATIC = {
    "webssh.js": (STATIC_DIR, "text/javascript; charset=utf-8"),
    "webssh.css": (STATIC_DIR, "text/css; charset=utf-8"),
    "xterm.js": (None, "text/javascript; charset=utf-8"),
    "xterm.css": (None, "text/css; charset=utf-8"),
}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sandbox-webssh"
    sys_version = ""

    # -- plumbing
    def log_message(self, fmt, *args):
        self.server.log("%s %s" % (self.address_string(), fmt % args))

    def _reply(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8",
               extra: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True

    def _text(self, status: int, message: str):
        self._reply(status, (message + "\n").encode("utf-8"))

    def _authorized(self) -> bool:
        given = self.headers.get("X-Webssh-Token", "")
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.server.token.encode())

    def _route(self):
        """(route, static name, query dict) from the request line; route None: unknown."""
        parts = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(parts.path)
        query = {k.lower(): v for k, v in urllib.parse.parse_qsl(parts.query)}
        low = path.lower()
        if low == "/webssh/host":
            return "host", None, query
        if low == "/webssh/socket":
            return "socket", None, query
        if low.startswith("/webssh/static/") and path[len("/webssh/static/"):] in STATIC:
            return "static", path[len("/webssh/static/"):], query
        return None, None, query

    # -- methods
    def do_GET(self):
        if not self._authorized():
            self._text(403, "Forbidden: this service answers only the SCM site's /webssh/ proxy.")
            return
        route, name, query = self._route()
        if route == "host":
            self._page()
        elif route == "static":
            self._static(name)
        elif route == "socket":
            self._socket(query)
        else:
            self._text(404, f"Not found: {urllib.parse.urlsplit(self.path).path}")

    def do_HEAD(self):
        route = self._route()[0] if self._authorized() else None
        if route == "socket":
            self._text(400, "The terminal's socket needs a GET with a WebSocket upgrade.")
        else:
            self.do_GET()

    def _other(self):
        if not self._authorized():
            self._text(403, "Forbidden: this service answers only the SCM site's /webssh/ proxy.")
        elif self._route()[0] is None:
            self._text(404, f"Not found: {urllib.parse.urlsplit(self.path).path}")
        else:
            self._reply(405, b"Method not allowed\n", extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _other

    # -- the page and its files
    def _page(self):
        instance = self.headers.get("X-Webssh-Instance", "")
        site = self.headers.get("X-Webssh-Site", "")
        text = (STATIC_DIR / "host.html").read_text(encoding="utf-8")
        for key, value in (("INSTANCE", instance), ("SITE", site)):
            text = text.replace("{{%s}}" % key, html.escape(value, quote=True))
        self._reply(200, text.encode("utf-8"), "text/html; charset=utf-8", extra={
            # The DOM renderer styles the terminal through inline <style> elements.
            "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                       "img-src 'self' data:; frame-ancestors 'none'",
            "Referrer-Policy": "no-referrer",
        })

    def _static(self, name: str):
        folder, ctype = STATIC[name]
        if folder is None:
            folder, reason = self.server.bundle()
            if folder is None:
                self._text(503, f"The terminal's script is not built: {reason}")
                return
        try:
            body = (folder / name).read_bytes()
        except OSError:
            self._text(404, f"Not found: /webssh/static/{name}")
            return
        self._reply(200, body, ctype)

    # -- the terminal
    def _socket(self, query: dict):
        host = self.headers.get("Host", "")
        origin = self.headers.get("Origin", "")
        if not host or origin.lower() != f"https://{host}".lower():
            self._text(403, "Forbidden: the terminal's socket accepts only its own page's origin.")
            return
        key = self.headers.get("Sec-WebSocket-Key")
        if (self.headers.get("Upgrade", "").lower() != "websocket"
                or "upgrade" not in self.headers.get("Connection", "").lower()
                or self.headers.get("Sec-WebSocket-Version") != "13" or not valid_key(key)):
            self._reply(400, b"Expected a WebSocket (version 13) upgrade\n",
                        extra={"Sec-WebSocket-Version": "13"})
            return
        instance = self.headers.get("X-Webssh-Instance", "") or "(unnamed)"
        try:
            port = int(self.headers.get("X-Webssh-Port", "0"))
        except ValueError:
            port = 0
        cols, rows = clamp_size(query.get("cols"), query.get("rows"))
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept_key(key))
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        bridge = Bridge(WebSocket(self.rfile, self.connection), port, instance, cols, rows,
                        self.server.log)
        if not self.server.track(bridge):
            bridge.stop()
            return
        try:
            bridge.run()
        finally:
            self.server.untrack(bridge)


class WebsshServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Serves on a listening socket made by the caller (or bound here when sock is None)."""
    daemon_threads = True
    block_on_close = False

    def __init__(self, token: str, log, sock=None, port: int = 0):
        if not token:
            raise ValueError("a token is required")
        self.token = token
        self.log = log
        self._bridges: set = set()
        self._lock = threading.Lock()
        self._stopping = False
        self._bundle = None
        if sock is None:
            super().__init__(("127.0.0.1", port), Handler)
        else:
            super().__init__(sock.getsockname()[:2], Handler, bind_and_activate=False)
            self.socket.close()
            self.socket = sock

    def bundle(self):
        """(folder, None) with the xterm bundle, or (None, why not); built once when missing."""
        with self._lock:
            if self._bundle is None:
                try:
                    self._bundle = (assets.build(), None)
                except (assets.AssetsError, OSError) as e:
                    self._bundle = (None, str(e))
            return self._bundle

    def track(self, bridge) -> bool:
        with self._lock:
            if self._stopping:
                return False
            self._bridges.add(bridge)
            return True

    def untrack(self, bridge):
        with self._lock:
            self._bridges.discard(bridge)

    def stop(self):
        """Stop accepting, end every terminal (each says the service is stopping)."""
        with self._lock:
            self._stopping = True
            bridges = list(self._bridges)
        self.shutdown()
        for b in bridges:
            b.stop()
        self.server_close()
