"""Start and stop the web SSH service as a child of the sandbox (sandbox/local_service.py)."""
from __future__ import annotations

import importlib.util
import sys

from ..local_service import REPO, LocalService


def _python() -> str:
    """An interpreter with paramiko (az's, in the repository's venv, has it)."""
    if importlib.util.find_spec("paramiko") is not None:
        return sys.executable
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


class WebsshService(LocalService):
    def __init__(self, log_path: str | None = None):
        super().__init__("sandbox.webssh", "WEBSSH_TOKEN", log_path, python=_python())
