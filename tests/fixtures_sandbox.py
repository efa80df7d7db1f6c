"""The local App Service sandbox as pytest fixtures (docs/ARCHITECTURE.md, Contract 3).

- `sandbox`: one `sandbox.Sandbox` for the whole session, stopped at the end (also after a
  failing test or Ctrl+C; and its children die with this process in any case).
- `sandbox_sshd`: the same sandbox, or a skip with the reason when sshd instances cannot run.
- tests marked `root` are skipped with a reason when not running as root.
"""
from __future__ import annotations

import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCM_SERVER = os.path.join(REPO, "sandbox", "scm", "scm-server")


def pytest_runtest_setup(item):
    if item.get_closest_marker("root") and os.geteuid() != 0:
        pytest.skip("needs root: sshd with password login runs in mount/UTS namespaces "
                    "(see sandbox/README.md)")


def _ensure_scm_server():
    """`make test` builds it; a bare `pytest` run builds it here (fails loudly if it can't)."""
    from sandbox import scm_process
    try:
        scm_process.build()
    except scm_process.ScmServerError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    from sandbox import Sandbox

    _ensure_scm_server()
    sb = Sandbox(str(tmp_path_factory.mktemp("sandbox")))
    sb.start()
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture
def sandbox_sshd(sandbox):
    if not sandbox.sshd_available:
        pytest.skip(f"sandbox without sshd instances: {sandbox.sshd_unavailable_reason}")
    return sandbox


# -- helpers for the sandbox's own tests (and anyone who needs raw access) --------------------

def arm_call(sb, method: str, path: str, token: str | None = "default", body: bytes | None = None,
             api_version: str = "2024-04-01"):
    """One HTTPS request to the sandbox ARM; returns (status, parsed JSON or text)."""
    import http.client
    import json
    import ssl
    ctx = ssl.create_default_context(cafile=sb.ca_file)
    conn = http.client.HTTPSConnection("127.0.0.1", sb.arm.port, context=ctx, timeout=10)
    headers = {}
    if token == "default":
        token = sb.bearer_token
    if token:
        headers["Authorization"] = f"Bearer {token}"
    sep = "&" if "?" in path else "?"
    conn.request(method, f"{path}{sep}api-version={api_version}" if api_version else path,
                 body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    try:
        return resp.status, json.loads(data)
    except ValueError:
        return resp.status, data


def scm_call(app, path: str, authorization: str | None, cookie: str | None = None,
             cafile: str | None = None, headers: dict | None = None):
    """One HTTPS request to an app's SCM site; returns (status, headers, body bytes)."""
    import http.client
    import ssl
    ctx = ssl.create_default_context(cafile=cafile)
    host, port = app.scm_host.rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
    h = dict(headers or {})
    if authorization:
        h["Authorization"] = authorization
    if cookie:
        h["Cookie"] = f"ARRAffinity={cookie}"
    conn.request("GET", path, headers=h)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, resp.headers, body       # headers: case-insensitive look-ups


class SshClient:
    """OpenSSH client with password `Docker!` via SSH_ASKPASS (sandbox-only host-key policy)."""

    OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
            "-o", "PreferredAuthentications=password", "-o", "NumberOfPasswordPrompts=1"]

    def __init__(self, askpass_dir: str, password: str = "Docker!"):
        self.askpass = os.path.join(askpass_dir, "askpass.sh")
        with open(self.askpass, "w") as f:
            f.write(f"#!/bin/sh\nprintf '%s\\n' '{password}'\n")
        os.chmod(self.askpass, 0o700)
        self.env = dict(os.environ, SSH_ASKPASS=self.askpass, SSH_ASKPASS_REQUIRE="force",
                        DISPLAY=os.environ.get("DISPLAY", ":0"))

    def ssh(self, port: int, command: str, timeout: float = 30, host: str = "127.0.0.1"):
        return subprocess.run(["ssh", "-p", str(port), *self.OPTS, f"root@{host}", command],
                              env=self.env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def ssh_popen(self, port: int, command: str, host: str = "127.0.0.1"):
        return subprocess.Popen(["ssh", "-p", str(port), *self.OPTS, f"root@{host}", command],
                                env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)

    def sftp(self, port: int, batch: str, timeout: float = 60, host: str = "127.0.0.1"):
        # sftp -b implies BatchMode=yes (no password prompt): feed the commands on stdin.
        return subprocess.run(["sftp", "-P", str(port), *self.OPTS, f"root@{host}"],
                              env=self.env, input=batch, capture_output=True, text=True,
                              timeout=timeout)

    def scp(self, port: int, src: str, dst: str, timeout: float = 60, host: str = "127.0.0.1"):
        return subprocess.run(["scp", "-P", str(port), *self.OPTS, src, dst.replace("HOST:", f"root@{host}:")],
                              env=self.env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def ssh_client(tmp_path_factory) -> SshClient:
    return SshClient(str(tmp_path_factory.mktemp("ssh")))
