"""`make test-sanitize`: the engine tests again against an ASan+UBSan build of the native module.

Builds azext_webapp._tunnel with WEBAPP_SANITIZE=address,undefined into .build-asan/ (the normal
in-place build is untouched), then runs a representative subset of the engine tests with gcc's
libasan preloaded into the (unsanitized) interpreter and the module loaded from that directory
(tunnel.py honours WEBAPP_TUNNEL_NATIVE_DIR). Child tunnels started by the tests inherit all of it.
Leak detection is off here (CPython itself "leaks" at exit); valgrind checks leaks in the normal run.
"""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / ".build-asan"

# Everything but the 1 GiB transfer (minutes under ASan) and valgrind (cannot run under ASan).
SELECT = "not one_gib and not valgrind"


def _runtime(name):
    path = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True,
                          check=True).stdout.strip()
    if not os.path.isabs(path):
        sys.exit(f"error: gcc has no {name}; install libasan/libubsan (Debian: gcc)")
    return path


def main():
    env = dict(os.environ, WEBAPP_SANITIZE="address,undefined", WEBAPP_WERROR="1")
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(BUILD),
                    "--build-temp", str(BUILD / "tmp")], cwd=ROOT, env=env, check=True)
    env.pop("WEBAPP_SANITIZE")
    env.update({
        "LD_PRELOAD": " ".join([_runtime("libasan.so"), _runtime("libubsan.so")]),
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1:allocator_may_return_null=1",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        "WEBAPP_TUNNEL_NATIVE_DIR": str(BUILD / "azext_webapp"),
    })
    check = subprocess.run([sys.executable, "-c", "from azext_webapp import tunnel; print(tunnel._tunnel.__file__)"],
                           cwd=ROOT, env=env, capture_output=True, text=True)
    if str(BUILD) not in check.stdout:
        sys.exit(f"error: the sanitized module was not loaded: {check.stdout}{check.stderr}")
    tests = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_engine_*.py"))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", SELECT, *tests],
                          cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
