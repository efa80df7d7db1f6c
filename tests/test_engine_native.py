"""C-level tests of the engine, reported through pytest: the ring's unit test and the refusal body's
server_message against the Python one (built with ASan and UBSan), and a valgrind memcheck of a short
tunnel session."""
import os
import random
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


SERVER_BODIES = [
    b"", b"   ", b"<html><body>Forbidden</body></html>", b"\xef\xbb\xbf  <?xml version='1.0'?>",
    b'{"Message":"Access denied"}', b'{"message" : "lower case key"}', b'{"MESSAGE":"any case"}',
    b'{"Code":"x"}', b'{"Message": 42, "message": "the string one"}', b'{"Message":"cut off in the mid',
    b'{"Message":"esc \\" \\\\ \\/ \\b\\f\\n\\r\\t \\u00e9 \\u2013 \\ud83d\\ude00 \\ud800x \\udc00 \\uZZZZ"}',
    b'{"Message":"\\u000', b'{"Message":"bad \\q escape"}', b"\xef\xbb\xbf\r\n Service Unavailable \r\nmore",
    b"first\x00line\x1b[31m red \x7f\xc2\x9b csi \xc2\xa0 nbsp", "caf\u00e9 ".encode() * 60,
    "\u00e9".encode() * 150, b"x" * 199 + "\u00e9".encode(), b"y" * 5000, b"\xff\xfe invalid utf-8 \xc3",
]


def _random_bodies(count=3000):
    """Bodies made of the bytes the scanner cares about, seeded (the same every run)."""
    rng = random.Random(1066)
    pieces = [b'{', b'}', b'"', b'Message', b'message', b':', b' ', b'\\', b'\\u', b'00e9', b'd83d', b'\\ude00',
              b'\n', b'\r', b'\t', b'\x00', b'\x1b', b'\xc2', b'\x9b', b'\xa0', b'\xe2\x80\x93', b'<', b'a',
              b'\xef\xbb\xbf']
    return [b"".join(rng.choice(pieces) for _ in range(rng.randrange(0, 60))) for _ in range(count)]


def test_server_message_is_the_same_in_c_and_python(tmp_path):
    """native/tn_err.c and azext_webapp/_reasons.py pick a refusal's message byte for byte alike."""
    from azext_webapp._reasons import server_message
    exe = tmp_path / "tn_err_test"
    flags = ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-g", "-O1",
             "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    subprocess.run(["gcc", *flags, "-I", str(NATIVE), str(NATIVE / "test" / "tn_err_test.c"),
                    str(NATIVE / "tn_err.c"), "-o", str(exe)], check=True)
    bodies = SERVER_BODIES + _random_bodies()
    records = b"".join(len(body).to_bytes(4, "big") + body for body in bodies)
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "TSAN_OPTIONS")}
    proc = subprocess.run([str(exe)], input=records, capture_output=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == len(bodies)
    for body, line in zip(bodies, lines):
        ours = None if line == "-" else bytes.fromhex(line).decode("utf-8", "replace")
        assert ours == server_message(body), body


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


HOLD_SCRIPT = r"""
import socket, sys, time
from azext_webapp import tunnel
t = tunnel.Tunnel(sys.argv[1], sys.argv[2], hold=True)
t.start()

def held(count):
    seen = 0
    deadline = time.monotonic() + 30
    while seen < count and time.monotonic() < deadline:
        seen += sum(1 for e in t.poll_events() if e.kind == "held")
        time.sleep(0.05)
    assert seen == count, seen

dropped = [socket.create_connection(("127.0.0.1", t.port)) for _ in range(3)]
for c in dropped:
    c.sendall(b"kept")
held(3)
t.release(False)                          # ended as they would have
for c in dropped:
    assert c.recv(1) == b""
retried = socket.create_connection(("127.0.0.1", t.port))
retried.sendall(b"again")
left = socket.create_connection(("127.0.0.1", t.port))
held(2)
left.close()                              # a client that stops waiting
print("held", flush=True)
sys.stdin.readline()                      # the site is back
t.release(True)
assert retried.recv(5) == b"again"
print("retried", flush=True)
sys.stdin.readline()                      # the site restarts again
stuck = [socket.create_connection(("127.0.0.1", t.port)) for _ in range(2)]
held(2)
for c in stuck:
    c.setblocking(False)
    try:
        c.send(b"x" * 100000)             # more than is kept while held: the rest waits in the kernel
    except BlockingIOError:
        pass
time.sleep(1)
t.stop()                                  # with connections held
print("done", flush=True)
"""


@pytest.mark.skipif(not shutil.which("valgrind"), reason="valgrind is not installed")
def test_valgrind_finds_no_leak_with_connections_held(scm, tmp_path):
    """hold=True: connections held, then ended, retried with their kept bytes, left by their client,
    and held at stop: every relay and kept copy freed."""
    if os.environ.get("LD_PRELOAD"):
        pytest.skip("running under the ASan build (tests/sanitize.py); valgrind runs in the normal pass")
    from tests.fixtures_engine import basic_auth
    log = tmp_path / "valgrind.log"
    env = cli_env(scm, PYTHONMALLOC="malloc", REQUESTS_CA_BUNDLE=scm.ca_file)
    scm.update_site("restart-site", unavailable_until=time.time() + 3600)
    proc = subprocess.Popen(
        ["valgrind", "--leak-check=full", "--show-leak-kinds=definite", "--errors-for-leak-kinds=definite",
         "--num-callers=40", f"--log-file={log}", sys.executable, "-c", HOLD_SCRIPT, scm.url("restart-site"),
         basic_auth()], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"held\n", proc.stderr.read().decode()[-3000:]
        scm.update_site("restart-site", unavailable_until=0)
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"retried\n", proc.stderr.read().decode()[-3000:]
        scm.update_site("restart-site", unavailable_until=time.time() + 3600)
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"done\n", proc.stderr.read().decode()[-3000:]
        proc.communicate(timeout=120)
    finally:
        scm.update_site("restart-site", unavailable_until=0)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    text = log.read_text()
    assert "LEAK SUMMARY" in text or "All heap blocks were freed" in text, text[-2000:]
    records = re.split(r"\n==\d+== \n", text)
    ours = [r for r in records if "definitely lost" in r and re.search(r"_tunnel|\btn_\w+", r)]
    assert not ours, "\n\n".join(ours)
