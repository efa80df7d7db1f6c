"""The real Azure CLI (.venv/bin/az), signed in to the sandbox, as pytest fixtures.

- `az_cli` (alias `az`): an `AzCli` bound to a fresh copy of a signed-in AZURE_CONFIG_DIR
  (cloud registered + selected, service principal logged in, versionCheck.json seeded,
  telemetry off). The sign-in runs once per session; each test gets its own copy.
- `az_cli_signed_out`: an `AzCli` with a seeded but empty config dir.

az starts in about a second: keep the number of calls per test small.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AZ = os.path.join(REPO, ".venv", "bin", "az")


class AzCli:
    """Runs the real az with `env` (AZURE_CONFIG_DIR = config_dir) against the sandbox."""

    def __init__(self, sandbox, config_dir: str, az: str = AZ):
        self.sandbox = sandbox
        self.config_dir = config_dir
        self.az = az
        self.env = sandbox.az_env(config_dir)

    def __call__(self, *args, check: bool = False, timeout: float = 120, env: dict | None = None,
                 input: str | None = None) -> subprocess.CompletedProcess:
        """Run `az ARGS...`; returns the CompletedProcess (text stdout/stderr)."""
        r = subprocess.run([self.az, *map(str, args)], env=self._env(env), capture_output=True,
                           text=True, timeout=timeout, input=input,
                           stdin=None if input is not None else subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise AssertionError(f"az {' '.join(map(str, args))} -> {r.returncode}\n"
                                 f"stdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    run = __call__

    def json(self, *args, **kw):
        """Run with `-o json` and check=True; returns the parsed output."""
        r = self(*args, "-o", "json", check=True, **kw)
        return json.loads(r.stdout) if r.stdout.strip() else None

    def popen(self, *args, env: dict | None = None, **kw) -> subprocess.Popen:
        """Start `az ARGS...` in the background, in its own process group (stop with .stop)."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        return subprocess.Popen([self.az, *map(str, args)], env=self._env(env),
                                start_new_session=True, **kw)

    @staticmethod
    def stop(p: subprocess.Popen, sig=signal.SIGINT, timeout: float = 10):
        """Signal a popen()'d az's process group; SIGKILL if it has not exited in time."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
        try:
            return p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            return p.communicate()

    def _env(self, extra):
        return dict(self.env, **(extra or {}))


@pytest.fixture(scope="session")
def az_signed_in_template(sandbox, tmp_path_factory):
    """A signed-in AZURE_CONFIG_DIR made once per session (copied per test)."""
    if not os.access(AZ, os.X_OK):
        pytest.fail(f"{AZ} missing: run `make venv`")
    config_dir = str(tmp_path_factory.mktemp("az-template") / "az")
    sandbox.az_login(config_dir, az=AZ)
    return config_dir


def _fresh_copy(template: str, dest: str) -> str:
    shutil.copytree(template, dest, ignore=shutil.ignore_patterns("logs", "telemetry", "*.lock"))
    return dest


@pytest.fixture
def az_cli(sandbox, az_signed_in_template, tmp_path) -> AzCli:
    return AzCli(sandbox, _fresh_copy(az_signed_in_template, str(tmp_path / "az")))


@pytest.fixture
def az(az_cli) -> AzCli:
    return az_cli


@pytest.fixture
def az_cli_signed_out(sandbox, tmp_path) -> AzCli:
    from sandbox import seed_az_config
    config_dir = str(tmp_path / "az-signed-out")
    os.makedirs(config_dir)
    seed_az_config(config_dir)
    return AzCli(sandbox, config_dir)
