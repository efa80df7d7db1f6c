"""Microsoft's own client against the sandbox's exec channel: `az webapp exec` of the installed Azure
CLI (2.91), signed in to the sandbox, in a real terminal (pexpect: its shell mode insists on one).

This is the proof that the sandbox speaks the protocol Azure's client speaks (docs/PROTOCOL.md,
"Exec channel"): the URL and query, the auth headers, the ARRAffinity cookie, the size frames, the
keystrokes, the output stream, the refusal's JSON Message, /exec/execute's 202. az's WebSocket
library (websocket-client) verifies TLS with the CA in WEBSOCKET_CLIENT_CA_BUNDLE, not with
REQUESTS_CA_BUNDLE.
"""
from __future__ import annotations

import os
import time

import pexpect
import pytest

from tests.fixtures_az import AZ
from tests.test_sandbox_exec import in_container, wait_for

CONNECTED = r"Press Ctrl\+C twice to exit"
OUTPUT = "\x01(.*?)\x02"


@pytest.fixture
def az_exec(az_cli, sandbox, tmp_path):
    """Starts `az webapp exec -g sandbox-rg ARGS...` in a terminal of rows x columns."""
    children = []
    env = dict(az_cli.env, WEBSOCKET_CLIENT_CA_BUNDLE=sandbox.ca_file)

    def start(*args, rows=24, columns=80):
        child = pexpect.spawn(AZ, ["webapp", "exec", "-g", sandbox.resource_group, *args], env=env,
                              cwd=str(tmp_path), dimensions=(rows, columns), timeout=60,
                              encoding="utf-8", codec_errors="replace")
        children.append(child)
        return child

    yield start
    for child in children:
        child.close(force=True)


def output(child, command: str) -> str:
    """What command prints, as the local terminal shows it (framed by bytes that the echo of the
    typed line does not contain)."""
    child.send(f"printf '\\001%s\\002\\n' \"$({command})\"\r")
    child.expect(OUTPUT)
    return child.match.group(1)


def leave(child) -> int:
    child.send("exit\r")
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


@pytest.mark.root
def test_a_shell_shows_the_instance_follows_resizes_and_exits(az_exec):
    child = az_exec("-n", "exec-app", rows=30, columns=100)
    child.expect(CONNECTED)
    assert output(child, "hostname") == "exec-app-i0"
    assert output(child, "stty size") == "30 100"
    child.setwinsize(40, 120)           # SIGWINCH: az sends {"width": 120, "height": 40}
    time.sleep(0.5)                     # az looks at its resize flag between reads
    assert output(child, "stty size") == "40 120"
    assert leave(child) == 0


@pytest.mark.root
def test_instance_target_kudu_and_shell(az_exec):
    child = az_exec("-n", "exec-app", "--instance", "exec-app-i1")
    child.expect(CONNECTED)
    assert output(child, "hostname") == "exec-app-i1"
    assert leave(child) == 0
    child = az_exec("-n", "exec-app", "--target", "kudu", "--shell", "/bin/sh")
    child.expect(CONNECTED)
    assert output(child, "hostname") == "exec-app-kudu"
    assert output(child, "readlink /proc/$$/exe") == os.path.realpath("/bin/sh")
    assert leave(child) == 0


def test_ctrl_c_twice_ends_it_and_bearer_is_used_where_basic_is_off(az_exec):
    child = az_exec("-n", "bearer-app")
    child.expect(CONNECTED)
    assert output(child, "echo $((6*7))") == "42"
    child.send("\x03")
    time.sleep(0.2)
    child.send("\x03")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_a_refusal_shows_azures_message(az_exec):
    child = az_exec("-n", "noexec-app")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert "ERROR: The exec endpoint is disabled for this app." in child.before
    child = az_exec("-n", "exec-app", "--shell", "/bin/no-such-shell")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert "ERROR: The shell '/bin/no-such-shell' does not exist in exec-app-i0" in child.before


@pytest.mark.root
def test_execute_mode_is_accepted_and_runs_on_every_instance(az_exec, sandbox):
    marker = f"/tmp/az-execute-{os.getpid()}"
    child = az_exec("-n", "exec-app", "--mode", "execute", "--instance", "all",
                    "--shell-command", f"hostname > {marker}", "--working-directory", "/tmp")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert child.before.count('"status": "accepted"') == 2
    assert "Command accepted. Starting execution." in child.before
    for instance in ("exec-app-i0", "exec-app-i1"):
        path = in_container(sandbox, instance, marker)
        assert wait_for(path), instance
        with open(path) as f:
            assert f.read().strip() == instance
        os.unlink(path)
    child = az_exec("-n", "exec-app", "--mode", "execute", "--command", "touch x",
                    "--working-directory", "/no/such/dir")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert "The working directory '/no/such/dir' does not exist in exec-app-i0." in child.before
