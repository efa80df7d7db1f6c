"""A local HTTP service behind the SCM server's proxy: what the browser SSH (sandbox/webssh/) and
the exec channel (sandbox/exec_service/) have in common.

Parent side, `LocalService`: the listening socket is made here and inherited by the child, so the
port is known, and the SCM server can be configured with it, before the service has even started
(connections wait in the backlog meanwhile). The token is random per start and reaches the child
through its environment, never its command line. The child is a sandbox child (sandbox/procs.py).

Child side, `serve()`: `python -m sandbox.<service> --fd N | --port P`; SIGTERM or SIGINT ends it,
its open sessions included. `LocalServer` and `TokenHandler` are its HTTP server and handler
base: every request must carry the token in the service's header (only the SCM server's proxy
has it), and each answer of the service's own goes out in one write, head and body together (a
client that reads a refused upgrade's body with a single recv gets all of it).
"""
from __future__ import annotations

import argparse
import hmac
import http.server
import os
import secrets
import signal
import socket
import socketserver
import sys
import threading
import time
from pathlib import Path

from . import procs

REPO = Path(__file__).resolve().parent.parent


class LocalService:
    """Start and stop `python -m <module>` on a loopback socket of its own."""

    def __init__(self, module: str, token_env: str, log_path: str | None = None,
                 python: str | None = None, args: tuple = ()):
        self.module = module
        self.args = list(args)        # more of the child's command line (never a secret)
        self.token_env = token_env
        self.log_path = log_path
        self.python = python or sys.executable
        self.token = secrets.token_hex(32)
        self.port: int | None = None
        self.proc = None

    def start(self):
        if self.proc is not None:
            raise RuntimeError(f"{self.module} is already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            self.port = sock.getsockname()[1]
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(
                filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
            env[self.token_env] = self.token
            self.proc = procs.spawn([self.python, "-m", self.module, "--fd", str(sock.fileno()),
                                     *self.args],
                                    log_path=self.log_path, env=env, cwd=str(REPO),
                                    pass_fds=(sock.fileno(),))
        finally:
            sock.close()        # the child holds its own copy
        return self

    def stop(self) -> None:
        """SIGTERM (each open session is told the service is stopping), then SIGKILL."""
        procs.stop(self.proc)

    def pids(self) -> list:
        return procs.descendants(self.proc.pid) if self.proc else []

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


_log_lock = threading.Lock()


def log(line: str) -> None:
    """One time-stamped line on stderr (the service's log file)."""
    with _log_lock:
        sys.stderr.write(time.strftime("%Y-%m-%dT%H:%M:%SZ ", time.gmtime()) + line + "\n")
        sys.stderr.flush()


class TokenHandler(http.server.BaseHTTPRequestHandler):
    """Plumbing of a service's handler; the server says which header carries the token."""
    protocol_version = "HTTP/1.1"
    sys_version = ""

    def log_message(self, fmt, *args):
        self.server.log("%s %s" % (self.address_string(), fmt % args))

    def _authorized(self) -> bool:
        given = self.headers.get(self.server.token_header, "")
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.server.token.encode())

    def _reply(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8",
               extra: dict | None = None):
        """The whole answer in one write; one request per connection (as the proxy expects)."""
        self.log_request(status)
        reason = self.responses.get(status, ("Status",))[0]
        lines = [f"{self.protocol_version} {status} {reason}", f"Server: {self.version_string()}",
                 f"Date: {self.date_time_string()}", f"Content-Type: {ctype}",
                 f"Content-Length: {len(body)}", "Cache-Control: no-store",
                 "X-Content-Type-Options: nosniff"]
        lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
        lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head if self.command == "HEAD" else head + body)
        self.close_connection = True

    def _upgrade(self, accept: str):
        """Answer a WebSocket upgrade with 101 (the caller checked the request)."""
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True


class LocalServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Serves on a listening socket made by the caller (or bound here when sock is None), and
    keeps the open sessions (anything with a stop()) to end them when it stops."""
    daemon_threads = True
    block_on_close = False
    token_header = "X-Service-Token"

    def __init__(self, token: str, log, handler, sock=None, port: int = 0):
        if not token:
            raise ValueError("a token is required")
        self.token = token
        self.log = log
        self._sessions: set = set()
        self._lock = threading.Lock()
        self._stopping = False
        if sock is None:
            super().__init__(("127.0.0.1", port), handler)
        else:
            super().__init__(sock.getsockname()[:2], handler, bind_and_activate=False)
            self.socket.close()
            self.socket = sock

    def track(self, session) -> bool:
        with self._lock:
            if self._stopping:
                return False
            self._sessions.add(session)
            return True

    def untrack(self, session):
        with self._lock:
            self._sessions.discard(session)

    def stop(self):
        """Stop accepting, end every session (each says the service is stopping)."""
        with self._lock:
            self._stopping = True
            sessions = list(self._sessions)
        self.shutdown()
        for s in sessions:
            s.stop()
        self.server_close()


def serve(argv, prog: str, token_env: str, make_server, ready=None, arguments=None) -> int:
    """The child's main: serve until SIGTERM or SIGINT. make_server(token, log, sock, port,
    args); ready(server), if given, runs once before serving (e.g. to log what is missing);
    arguments(parser), if given, adds the service's own options."""
    ap = argparse.ArgumentParser(prog=prog)
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--fd", type=int, help="an inherited listening socket")
    where.add_argument("--port", type=int, help="bind 127.0.0.1:PORT (0: any free port)")
    if arguments is not None:
        arguments(ap)
    args = ap.parse_args(argv)
    token = os.environ.pop(token_env, "")
    if not token:
        print(f"{token_env} is not set", file=sys.stderr)
        return 2
    sock = socket.socket(fileno=args.fd) if args.fd is not None else None
    server = make_server(token, log, sock, args.port or 0, args)
    # shutdown() waits for serve_forever, which runs on this (the main) thread: stop elsewhere.
    stopper = threading.Thread(target=server.stop, name=f"{prog}-stop", daemon=True)

    def on_signal(signum, frame):
        if not stopper.is_alive() and stopper.ident is None:
            stopper.start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if ready is not None:
        ready(server)
    log(f"listening on 127.0.0.1:{server.server_address[1]}")
    server.serve_forever(poll_interval=0.5)
    stopper.join(10)        # its sessions are told and closed before the process ends
    log("stopped")
    return 0
