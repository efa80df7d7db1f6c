"""The web SSH service's HTTP side: the page, its static files and the terminal's WebSocket.

Only the SCM server's /webssh/ proxy talks to it (sandbox/scm/scm_webssh.c): every request
must carry the service's token in X-Webssh-Token, and the proxy adds which site, instance and
loopback port (the instance's container port 2222) it is for. Each request gets its own
thread; a plain request is one response on a closed connection, as the proxy expects.
"""
from __future__ import annotations

import html
import urllib.parse
from pathlib import Path

from ..local_service import LocalServer, TokenHandler
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


class Handler(TokenHandler):
    server_version = "sandbox-webssh"

    def _text(self, status: int, message: str):
        self._reply(status, (message + "\n").encode("utf-8"))

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
        self._upgrade(accept_key(key))
        bridge = Bridge(WebSocket(self.rfile, self.connection), port, instance, cols, rows,
                        self.server.log)
        if not self.server.track(bridge):
            bridge.stop()
            return
        try:
            bridge.run()
        finally:
            self.server.untrack(bridge)


class WebsshServer(LocalServer):
    token_header = "X-Webssh-Token"

    def __init__(self, token: str, log, sock=None, port: int = 0):
        super().__init__(token, log, Handler, sock=sock, port=port)
        self._bundle = None

    def bundle(self):
        """(folder, None) with the xterm bundle, or (None, why not); built once when missing."""
        with self._lock:
            if self._bundle is None:
                try:
                    self._bundle = (assets.build(), None)
                except (assets.AssetsError, OSError) as e:
                    self._bundle = (None, str(e))
            return self._bundle
