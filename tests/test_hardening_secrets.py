"""Secrets (issue 8): with --debug and --verbose, the publishing password, the base64 Basic value
and the bearer token appear nowhere -- not in az's stdout/stderr, not in any log file under
AZURE_CONFIG_DIR, and not in the command line of any process on the machine while the tunnel is
up and an SSH session runs through it. The real az, the installed extension, the sandbox."""
import base64
import os
from pathlib import Path

import pytest

from tests.fixtures_command import ssh

# Where az legitimately keeps credentials: the MSAL token cache holds the bearer token (that is
# how az has it at all) and the service principal entries the client secret. Not logs.
CREDENTIAL_STORES = ("msal_token_cache", "service_principal_entries", "msal_http_cache")


def _secrets(sandbox, app):
    info = sandbox.app(app)
    basic = base64.b64encode(f"{info.basic_user}:{info.basic_password}".encode()).decode()
    return {"publishing password": info.basic_password, "Basic value": basic,
            "bearer token": sandbox.bearer_token}


def _cmdlines():
    out = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                out[int(pid)] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                pass
    return out


def _files(config_dir):
    for path in Path(config_dir).rglob("*"):
        if path.is_file() and not any(s in path.name for s in CREDENTIAL_STORES):
            yield path


@pytest.mark.root
@pytest.mark.parametrize("app,scheme", [("linux-app", "Basic"), ("bearer-app", "Bearer")])
def test_no_secret_in_output_logs_or_command_lines(webapp_az, sandbox, ssh_client_env, app, scheme):
    secrets = _secrets(sandbox, app)
    with webapp_az.tunnel("-g", sandbox.resource_group, "-n", app, "--debug", "--verbose") as run:
        result = ssh(run.port, "hostname", env=ssh_client_env)
        assert result.returncode == 0, result.stderr
        cmdlines = _cmdlines()          # while the tunnel is up (and right after a session)
    assert f"with {scheme} auth" in run.stderr
    text = "\n".join(run.stdout_lines) + "\n" + run.stderr
    assert len(cmdlines) > 10
    leaks = [f"{what} in az output" for what, s in secrets.items() if s in text]
    leaks += [f"{what} in the command line of pid {pid}: {line[:80]}"
              for pid, line in cmdlines.items() for what, s in secrets.items() if s in line]
    config_dir = webapp_az.env["AZURE_CONFIG_DIR"]
    scanned = 0
    for path in _files(config_dir):
        data = path.read_bytes().decode(errors="replace")
        scanned += 1
        leaks += [f"{what} in {path}" for what, s in secrets.items() if s in data]
    assert scanned, f"nothing scanned under {config_dir}"
    assert not leaks, leaks
