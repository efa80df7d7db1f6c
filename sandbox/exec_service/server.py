"""The exec channel's HTTP side: `GET /exec/shell` (a WebSocket: session.py) and
`POST /exec/execute` (a command started detached), as the SCM server's /exec/ proxy forwards them
(sandbox/scm/scm_exec.c: auth, refusals and the instance are its part).

Every request carries the service's token (X-Exec-Token) and the site and instance it is for
(X-Exec-Site, X-Exec-Instance). Every error is JSON, `{"Message": "..."}`, the shape Azure's
client reads (docs/PROTOCOL.md, "Exec channel", also for which answers are inferred).
"""
from __future__ import annotations

import json
import subprocess
import threading
import urllib.parse

from ..local_service import LocalServer, TokenHandler
from ..webssh.websocket import WebSocket, accept_key, valid_key
from . import target as target_mod
from .session import ShellSession

JSON = "application/json; charset=utf-8"
ACCEPTED = "Command accepted. Starting execution."
MAX_BODY = 1 << 20
DEFAULT_SHELL = "/bin/bash"


class Refusal(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Handler(TokenHandler):
    server_version = "sandbox-exec"

    def _json(self, status: int, message: str, extra: dict | None = None):
        self._reply(status, json.dumps({"Message": message}).encode(), JSON, extra)

    def _route(self):
        """(path in lower case, query dict); the query's keys in lower case."""
        parts = urllib.parse.urlsplit(self.path)
        query = {k.lower(): v for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)}
        return urllib.parse.unquote(parts.path).rstrip("/").lower(), query

    def _not_found(self):
        # ASP.NET Web API's answer for a path that no controller serves
        self._json(404, "No HTTP resource was found that matches the request URI "
                        f"'{urllib.parse.urlsplit(self.path).path}'.")

    def _dispatch(self, method: str):
        if not self._authorized():
            self._json(403, "This service answers only the SCM site's /exec/ proxy.")
            return
        path, query = self._route()
        routes = {"/exec/shell": ("GET", self._shell), "/exec/execute": ("POST", self._execute)}
        if path not in routes:
            self._not_found()
            return
        allowed, action = routes[path]
        if method != allowed:
            self._json(405, f"The requested resource does not support http method '{method}'.",
                       extra={"Allow": allowed})
            return
        try:
            action(query)
        except Refusal as e:
            self._json(e.status, str(e))
        except target_mod.TargetError as e:
            self._json(e.status, str(e))

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def _target(self, kudu: bool = False, container: str | None = None) -> target_mod.Target:
        return target_mod.find(self.server.map_path, self.headers.get("X-Exec-Site", ""),
                               self.headers.get("X-Exec-Instance", ""), kudu, container)

    # -- /exec/shell
    def _shell(self, query: dict):
        key = self.headers.get("Sec-WebSocket-Key")
        if (self.headers.get("Upgrade", "").lower() != "websocket"
                or "upgrade" not in self.headers.get("Connection", "").lower()
                or self.headers.get("Sec-WebSocket-Version") != "13" or not valid_key(key)):
            raise Refusal(400, "The shell is a WebSocket: send a GET with a WebSocket (version 13) "
                               "upgrade.")
        where = query.get("target", "app").lower()
        if where not in ("app", "kudu"):
            raise Refusal(400, f"Unknown target '{query['target']}': use app or kudu.")
        shell = query.get("shell") or DEFAULT_SHELL
        if not shell.startswith("/"):
            raise Refusal(400, f"The shell must be an absolute path, not '{shell}'.")
        container = query.get("container")
        if container is not None and where == "kudu":
            raise Refusal(400, "A container is one of the app's: leave out target=kudu to choose one.")
        target = self._target(kudu=where == "kudu", container=container)
        if not target.executable(shell):
            raise Refusal(400, f"The shell '{shell}' does not exist in {target.name} "
                               "(or is not an executable file).")
        self._upgrade(accept_key(key))
        session = ShellSession(WebSocket(self.rfile, self.connection), target, shell, self.server.log)
        if not self.server.track(session):
            session.ws.close(1001, "the exec service is stopping")
            return
        try:
            session.run()
        finally:
            self.server.untrack(session)

    # -- /exec/execute
    def _body(self) -> dict:
        if self.headers.get("Transfer-Encoding"):
            raise Refusal(411, "Send the request body with a Content-Length.")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise Refusal(411, "Send the request body with a Content-Length.") from None
        if not 0 <= length <= MAX_BODY:
            raise Refusal(413, f"The request body is larger than {MAX_BODY} bytes.")
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise Refusal(400, f"The request body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise Refusal(400, "The request body must be a JSON object with Command, Args and "
                               "WorkingDirectory.")
        return body

    def _execute(self, query: dict):
        body = self._body()
        command, args, cwd = body.get("Command"), body.get("Args"), body.get("WorkingDirectory")
        if not isinstance(command, str) or not command.strip():
            raise Refusal(400, "Command is required: the program to run.")
        if args is None:
            args = []
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise Refusal(400, "Args must be a list of strings.")
        if cwd is not None and (not isinstance(cwd, str) or not cwd.startswith("/")):
            raise Refusal(400, "WorkingDirectory must be an absolute path.")
        target = self._target(container=query.get("container"))
        cwd = cwd or target.home
        if not target.directory(cwd):
            raise Refusal(400, f"The working directory '{cwd}' does not exist in {target.name}.")
        program = target.resolve(command)
        if program is None:
            raise Refusal(400, f"The command '{command}' was not found in {target.name}.")
        self.server.execute(target, program, args, cwd)
        self._json(202, ACCEPTED)


class ExecServer(LocalServer):
    token_header = "X-Exec-Token"

    def __init__(self, token: str, log, map_path: str, sock=None, port: int = 0):
        super().__init__(token, log, Handler, sock=sock, port=port)
        self.map_path = map_path

    def execute(self, target: target_mod.Target, program: str, args: list, cwd: str):
        """Start program detached (no output kept, as in Azure); its status goes to the log."""
        proc = subprocess.Popen(target.argv(cwd, [program, *args]), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=target.environment(), close_fds=True)
        run = _Execution(proc)
        if not self.track(run):
            run.stop()
            return
        self.log(f"execute on {target.name}: {program} started (pid {proc.pid})")

        def reap():
            proc.wait()
            self.untrack(run)
            self.log(f"execute on {target.name}: {program} exited with status {proc.returncode}")
        threading.Thread(target=reap, name="exec-reaper", daemon=True).start()


class _Execution:
    """A detached command, for the service's stop (it ends the command's whole session)."""

    def __init__(self, proc):
        self.proc = proc

    def stop(self):
        target_mod.end_session(self.proc)
