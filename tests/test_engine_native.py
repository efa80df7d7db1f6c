"""C-level tests of the engine, reported through pytest: the ring's unit test (built with ASan and
UBSan when gcc supports them) and a valgrind memcheck of a short tunnel session."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests import engine_targets
from tests.fixtures_engine import ROOT, cli_env, engine_and_why

NATIVE = ROOT / "native"


def test_the_running_tunnel_module_says_it_runs_the_native_engine_when_forced():
    assert engine_and_why("native") == ["native", "WEBAPP_ENGINE=native"]


def test_ring_unit(tmp_path):
    exe = tmp_path / "tn_ring_test"
    flags = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-O1",
             "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    subprocess.run(["gcc", *flags, "-I", str(NATIVE), str(NATIVE / "test" / "tn_ring_test.c"),
                    str(NATIVE / "tn_ring.c"), "-o", str(exe)], check=True)
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ring ok" in proc.stdout


@pytest.mark.skipif(not shutil.which("valgrind"), reason="valgrind is not installed")
def test_valgrind_finds_no_leak_in_the_module(scm, tmp_path):
    if os.environ.get("LD_PRELOAD"):
        pytest.skip("running under the ASan build (tests/sanitize.py); valgrind runs in the normal pass")
    log = tmp_path / "valgrind.log"
    env = cli_env(scm, PYTHONMALLOC="malloc")
    proc = subprocess.Popen(
        ["valgrind", "--leak-check=full", "--show-leak-kinds=definite", "--errors-for-leak-kinds=definite",
         "--num-callers=40", f"--log-file={log}", sys.executable, "-m", "azext_webapp.tunnel", scm.url()],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline().decode()
        assert line.startswith("Port "), proc.stderr.read().decode()
        port = int(line.split()[1])
        for i in range(5):  # a short session: a few relayed connections, one failing local client
            with socket.create_connection(("127.0.0.1", port), timeout=60) as c:
                c.sendall(b"valgrind-%d" % i)
                assert engine_targets.recv_exact(c, 10) == b"valgrind-%d" % i
        socket.create_connection(("127.0.0.1", port)).close()
        time.sleep(1)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    assert proc.returncode == 0
    text = log.read_text()
    assert "LEAK SUMMARY" in text or "All heap blocks were freed" in text, text[-2000:]
    records = re.split(r"\n==\d+== \n", text)
    ours = [r for r in records if "definitely lost" in r and re.search(r"_tunnel|\btn_\w+", r)]
    assert not ours, "\n\n".join(ours)
