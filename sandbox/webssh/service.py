"""Start and stop the web SSH service as a child of the sandbox (sandbox/procs.py rules).

The listening socket is made here and inherited by the child, so the port is known, and the
SCM server can be configured with it, before the service has even started; connections wait
in the backlog meanwhile. The token is random per start and reaches the child through its
environment, never its command line.
"""
from __future__ import annotations

import importlib.util
import os
import secrets
import socket
import sys
from pathlib import Path

from .. import procs

REPO = Path(__file__).resolve().parent.parent.parent


def _python() -> str:
    """An interpreter with paramiko (az's, in the repository's venv, has it)."""
    if importlib.util.find_spec("paramiko") is not None:
        return sys.executable
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


class WebsshService:
    def __init__(self, log_path: str | None = None):
        self.log_path = log_path
        self.token = secrets.token_hex(32)
        self.port: int | None = None
        self.proc = None

    def start(self) -> "WebsshService":
        if self.proc is not None:
            raise RuntimeError("the web SSH service is already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            self.port = sock.getsockname()[1]
            env = dict(os.environ, WEBSSH_TOKEN=self.token,
                       PYTHONPATH=os.pathsep.join(filter(None, [str(REPO),
                                                                os.environ.get("PYTHONPATH")])))
            self.proc = procs.spawn([_python(), "-m", "sandbox.webssh", "--fd", str(sock.fileno())],
                                    log_path=self.log_path, env=env, cwd=str(REPO),
                                    pass_fds=(sock.fileno(),))
        finally:
            sock.close()        # the child holds its own copy
        return self

    def stop(self) -> None:
        """SIGTERM (each open terminal is told the service is stopping), then SIGKILL."""
        procs.stop(self.proc)

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
