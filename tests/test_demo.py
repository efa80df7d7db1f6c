"""`make demo` (sandbox/demo.py) does what README.md promises a newcomer, end to end."""
import os
import re
import subprocess
import sys

import pytest

from sandbox import sshd_unavailable_reason
from sandbox.browser import chromium_unavailable_reason

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.root
def test_demo_runs_the_main_job_and_exits_0(tmp_path):
    reason = sshd_unavailable_reason() or chromium_unavailable_reason()
    if reason:
        pytest.skip(reason)
    result = subprocess.run([sys.executable, "-m", "sandbox.demo"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, stdin=subprocess.DEVNULL,
                            env=dict(os.environ, DEMO_OUTPUT_DIR=str(tmp_path)))
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
    # the browser SSH page ran the command in its terminal and a screenshot of it was kept
    assert "the page says: linux-app-i0: " in out
    assert "\n     linux-app-i0\n     Linux " in out
    shot = re.search(r"Browser SSH screenshot: (\S+)", out)
    assert shot, out[-3000:]
    assert os.path.dirname(shot.group(1)) == str(tmp_path)
    with open(shot.group(1), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
