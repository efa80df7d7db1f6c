"""`make demo` (sandbox/demo.py) does what README.md promises a newcomer, end to end."""
import os
import subprocess
import sys

import pytest

from sandbox import sshd_unavailable_reason

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.root
def test_demo_runs_the_main_job_and_exits_0():
    reason = sshd_unavailable_reason()
    if reason:
        pytest.skip(reason)
    result = subprocess.run([sys.executable, "-m", "sandbox.demo"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, stdin=subprocess.DEVNULL)
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    # the extension came from the sandbox's index, by name, as the docs show
    assert "az extension add --name webapp" in out
    assert "Port " in out and "SSH is available { username: root, password: Docker! }" in out
    # ssh ran a command inside the "container" instance, scp copied a file intact
    assert "hello from linux-app-i0, logged in as root" in out
    assert "sha256 matches on both sides" in out
    # Ctrl+C closed the tunnel cleanly and the sandbox went away
    assert "az exited with status 0" in out and "every sandbox process has stopped" in out
