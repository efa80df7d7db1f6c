"""libFuzzer targets for the native code that reads what a server sends: the upgrade answer and the
WebSocket framing (native/tn_ws.c), an HTTP proxy's answer to CONNECT (native/tn_conn.c) and a
refusal's body, for its server_message (native/tn_err.c), each built from the real file alone (with
tn_err.c, the error record the parsers fill), with nothing stubbed. Each runs for a bounded time from the committed
seed corpus (tests/fuzz/corpus/<target>/), under ASan and UBSan; a crash, leak or trap fails the test and leaves
the reproducer in the test's temporary directory.

WEBAPP_FUZZ_SECONDS sets the time per target (default 20).
"""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUZZ = os.path.join(ROOT, "tests", "fuzz")
TARGETS = ["ws_frames", "ws_handshake", "ws_roundtrip", "proxy_answer", "server_message"]
SOURCES = {"ws_frames": ["tn_ws.c", "tn_err.c"], "ws_handshake": ["tn_ws.c", "tn_err.c"],
           "ws_roundtrip": ["tn_ws.c", "tn_err.c"], "proxy_answer": ["tn_conn.c", "tn_err.c"],
           "server_message": ["tn_err.c"]}
SECONDS = int(os.environ.get("WEBAPP_FUZZ_SECONDS", "20"))


def _clang_reason():
    if not shutil.which("clang"):
        return "clang is not installed (Debian: clang, libclang-rt-14-dev)"
    return None


@pytest.fixture(scope="module")
def fuzz_build(tmp_path_factory):
    reason = _clang_reason()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("fuzz-build")
    built = {}
    for target in TARGETS:
        binary = str(out / f"fuzz_{target}")
        argv = ["clang", "-g", "-O1", "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror",
                "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=undefined",
                "-I", os.path.join(ROOT, "native"), os.path.join(FUZZ, f"fuzz_{target}.c"),
                *(os.path.join(ROOT, "native", source) for source in SOURCES[target]), "-lcrypto", "-o", binary]
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0 and "fuzzer" in result.stderr and "cannot find" in result.stderr:
            pytest.skip("libFuzzer runtime missing (Debian: libclang-rt-14-dev)")
        assert result.returncode == 0, result.stderr
        built[target] = binary
    return built


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target_finds_nothing(fuzz_build, target, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(os.path.join(FUZZ, "corpus", target), corpus)   # the committed seeds stay as they are
    argv = [fuzz_build[target], f"-max_total_time={SECONDS}", "-max_len=200000", "-timeout=10",
            "-rss_limit_mb=1024", f"-artifact_prefix={tmp_path}/", str(corpus)]
    # Through sh, which forks it: a process exec'd straight from pytest inherits pytest's peak RSS
    # as its own ru_maxrss (Linux keeps it across execve), and after the load tests that alone is
    # over libFuzzer's -rss_limit_mb.
    result = subprocess.run(["sh", "-c", '"$@"; exit $?', "sh", *argv], capture_output=True, text=True,
                            timeout=SECONDS + 120)
    runs = [line for line in result.stderr.splitlines() if line.startswith("Done ")]
    print(f"{target}: {runs[-1] if runs else 'no summary'}")
    assert result.returncode == 0, result.stderr[-4000:]
    assert runs, "libFuzzer printed no summary"
