"""`make test-sanitize`: the engine tests again against sanitizer builds of the native module.

Two passes, each with its own build tree (the normal in-place build is untouched), with the
sanitizer runtime preloaded into the (unsanitized) interpreter and the module loaded from that
tree (tunnel.py honours WEBAPP_TUNNEL_NATIVE_DIR). Child tunnels started by the tests inherit it.

1. ASan+UBSan (.build-asan/): the engine tests. Leak detection is off here (CPython itself
   "leaks" at exit); valgrind checks leaks in the normal run.
2. TSan (.build-tsan/): the engine tests again, i.e. the threaded paths -- the native service
   thread against the Python threads calling start/check/stats/poll_events/wait/stop, 1,000
   concurrent relays, signals during transfers. Only our module is instrumented (CPython,
   libwebsockets, OpenSSL and libcurl are not), so TSan can only report accesses made by our
   code (plus the interceptors' view of pthread/malloc/memcpy). Suppressions: tests/tsan.supp,
   which suppresses nothing today -- see the file for why a pattern naming CPython would be
   wrong (it would hide every race reached from a Python call into the module). Before the pass,
   a self-check proves the set-up reports races: a tiny instrumented library with a deliberate
   data race is loaded into the same interpreter under the same options, and must be reported.
   Any TSan report during the pass fails it (reports are collected from TSAN_OPTIONS log_path).

3. scm (.build-scm-*/): the sandbox's C SCM server, built with ASan+UBSan and then with TSan
   (it is threaded: one thread per connection, config reloads under a lock), under its own tests
   and the engine's relay, keep-alive and hold tests (SCM_SERVER_BINARY). Any report fails the pass.

`python tests/sanitize.py [asan|tsan|scm]...` runs only the named passes (default: all).
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent

# Everything but the 1 GiB transfer (minutes under a sanitizer), valgrind (cannot run under a
# sanitizer) and the ring's unit test (its own ASan executable; the TSan runtime cannot be
# preloaded into it).
ASAN_SELECT = "not one_gib and not valgrind"
TSAN_SELECT = "not one_gib and not valgrind and not ring_unit"

RACY_C = r"""
#include <pthread.h>
static int shared;
static void *bump(void *arg) { (void)arg; for (int i = 0; i < 100000; i++) shared++; return 0; }
int race(void)
{
    pthread_t a, b;
    pthread_create(&a, 0, bump, 0);
    pthread_create(&b, 0, bump, 0);
    pthread_join(a, 0);
    pthread_join(b, 0);
    return shared;
}
"""


def _runtime(name):
    path = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True,
                          check=True).stdout.strip()
    if not os.path.isabs(path):
        sys.exit(f"error: gcc has no {name}; install the sanitizer runtimes (Debian: gcc)")
    return path


def _build(build, sanitize):
    env = dict(os.environ, WEBAPP_SANITIZE=sanitize, WEBAPP_WERROR="1")
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(build),
                    "--build-temp", str(build / "tmp")], cwd=ROOT, env=env, check=True)


def _check_loaded(env, build):
    check = subprocess.run([sys.executable, "-c", "from azext_webapp import tunnel; print(tunnel._tunnel.__file__)"],
                           cwd=ROOT, env=env, capture_output=True, text=True)
    if str(build) not in check.stdout:
        sys.exit(f"error: the sanitized module was not loaded: {check.stdout}{check.stderr}")


def _pytest(env, select):
    tests = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_engine_*.py"))
    tests.append("tests/test_trust_native.py")  # the engine's regression tests for the trust defects
    # the native engine only: these builds instrument the C module (the portable engine is Python)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--engine=native",
                           "-k", select, *tests],
                          cwd=ROOT, env=env).returncode


def asan():
    build = ROOT / ".build-asan"
    _build(build, "address,undefined")
    env = dict(os.environ, WEBAPP_WERROR="1")
    env.update({
        "LD_PRELOAD": " ".join([_runtime("libasan.so"), _runtime("libubsan.so")]),
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1:allocator_may_return_null=1",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        "WEBAPP_TUNNEL_NATIVE_DIR": str(build / "azext_webapp"),
    })
    _check_loaded(env, build)
    return _pytest(env, ASAN_SELECT)


TSAN_MARKERS = ("WARNING: ThreadSanitizer", "ERROR: ThreadSanitizer")


def _reports(log_dir, pattern="tsan*", markers=TSAN_MARKERS):
    """Sanitizer logs that hold a report: one of `markers`, or with markers=None any text."""
    out = []
    for path in sorted(glob.glob(os.path.join(log_dir, pattern))):
        text = Path(path).read_text(errors="replace")
        if any(m in text for m in markers) if markers else text.strip():
            out.append(f"--- {path}\n{text}")
    return out


def tsan():
    build = ROOT / ".build-tsan"
    _build(build, "thread")
    log_dir = tempfile.mkdtemp(prefix="webapp-tsan-")
    env = dict(os.environ, WEBAPP_WERROR="1")
    env.update({
        "LD_PRELOAD": _runtime("libtsan.so"),
        # halt_on_error=0: collect every report of the pass, then fail on any (below).
        "TSAN_OPTIONS": f"halt_on_error=0:second_deadlock_stack=1:history_size=4:"
                        f"suppressions={HERE / 'tsan.supp'}:log_path={log_dir}/tsan",
        "WEBAPP_TUNNEL_NATIVE_DIR": str(build / "azext_webapp"),
    })
    try:
        # Self-check: a deliberate race in an instrumented library loaded into this interpreter.
        lib = Path(log_dir) / "libracy.so"
        src = Path(log_dir) / "racy.c"
        src.write_text(RACY_C)
        subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-g", "-fsanitize=thread", "-o", str(lib), str(src)],
                       check=True)
        subprocess.run([sys.executable, "-c", f"import ctypes; ctypes.CDLL({str(lib)!r}).race()"], env=env)
        if not _reports(log_dir):
            print("error: the TSan self-check found no report for a deliberate race: the set-up is broken")
            return 1
        for path in glob.glob(os.path.join(log_dir, "tsan*")):
            os.unlink(path)
        _check_loaded(env, build)
        rc = _pytest(env, TSAN_SELECT)
        reports = _reports(log_dir)
        if reports:
            print("\n".join(reports))
            print(f"error: ThreadSanitizer reported {len(reports)} problem(s) (above)")
            return rc or 1
        print("TSan: no reports")
        return rc
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)


SCM_TESTS = ["tests/test_scm_server.py", "tests/test_scm_webssh.py", "tests/test_scm_exec.py",
             "tests/test_sandbox_walls.py",
             "tests/test_engine_relay.py",
             "tests/test_engine_keepalive.py",
             "tests/test_engine_hold.py"]        # a site restarting behind the front end (unavailable_until)


def scm():
    """The SCM server built with each sanitizer in its own copy of sandbox/scm."""
    rc = 0
    for name, sanitize in (("asan", "address,undefined"), ("tsan", "thread")):
        build = ROOT / f".build-scm-{name}"
        shutil.rmtree(build, ignore_errors=True)
        shutil.copytree(ROOT / "sandbox" / "scm", build,
                        ignore=shutil.ignore_patterns("*.o", "scm-server", ".flags", ".build.lock"))
        subprocess.run(["make", "-s", "-C", str(build), f"SANITIZE={sanitize}"], check=True)
        log_dir = tempfile.mkdtemp(prefix=f"webapp-scm-{name}-")
        env = dict(os.environ, SCM_SERVER_BINARY=str(build / "scm-server"))
        env.update({
            "ASAN_OPTIONS": f"abort_on_error=1:log_path={log_dir}/asan",
            "UBSAN_OPTIONS": f"print_stacktrace=1:log_path={log_dir}/ubsan",
            "TSAN_OPTIONS": f"halt_on_error=0:second_deadlock_stack=1:log_path={log_dir}/tsan",
        })
        try:
            result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                     "--engine=native", "-m", "not slow", "-k", "not one_gib", *SCM_TESTS],
                                    cwd=ROOT, env=env).returncode
            reports = _reports(log_dir, "*", markers=None)
            if reports:
                print("\n".join(reports))
                print(f"error: the {name} build of the SCM server reported {len(reports)} problem(s) (above)")
            else:
                print(f"SCM server under {name}: no reports")
            rc = rc or result or (1 if reports else 0)
        finally:
            shutil.rmtree(log_dir, ignore_errors=True)
    return rc


def main(argv):
    passes = argv or ["asan", "tsan", "scm"]
    failed = []
    for name in passes:
        print(f"== sanitizer pass: {name}", flush=True)
        if {"asan": asan, "tsan": tsan, "scm": scm}[name]():
            failed.append(name)
    if failed:
        print("failed passes: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
