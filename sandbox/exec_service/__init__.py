"""The sandbox's exec channel service: what an SCM site's /exec/ proxies to (Azure's
`az webapp exec`; docs/PROTOCOL.md, "Exec channel").

    service = ExecService(map_path, log_path).start()     # service.port, service.token
    ...
    service.stop()

A separate process (`python -m sandbox.exec_service`, __main__.py) that the SCM server's /exec/
proxy (sandbox/scm/scm_exec.c) reaches on 127.0.0.1: server.py answers `GET /exec/shell` with a
WebSocket that session.py joins to a shell on a real PTY, and `POST /exec/execute` by starting the
command detached, both in the instance's container (or the site's Kudu container) that target.py
enters with nsenter, by the pids the sandbox writes to `map_path` (sandbox/containers.py).
"""
from __future__ import annotations

from ..local_service import LocalService

TOKEN_ENV = "EXEC_SERVICE_TOKEN"


class ExecService(LocalService):
    def __init__(self, map_path: str, log_path: str | None = None):
        super().__init__("sandbox.exec_service", TOKEN_ENV, log_path, args=("--map", map_path))
        self.map_path = map_path


__all__ = ["ExecService"]
