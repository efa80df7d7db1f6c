"""The set-up contract: two commands from README.md, a clear build error, and re-runs that reuse."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _make(*args):
    return subprocess.run(["make", "-C", ROOT, *args], capture_output=True, text=True, timeout=120)


def test_readme_gives_the_two_commands():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert "make demo" in readme and "make test" in readme


def test_ci_runs_the_readme_test_command_with_warnings_as_errors_and_sanitizers():
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        script = f.read()
    assert "make test\n" in script and "make test-sanitize" in script and "WEBAPP_WERROR=1" in script


def test_missing_native_library_fails_with_one_line_naming_the_debian_package(tmp_path):
    # An empty pkg-config search path makes every library look missing, as on a bare machine.
    env = dict(os.environ, PKG_CONFIG_LIBDIR=str(tmp_path), PKG_CONFIG_PATH="")
    result = subprocess.run([sys.executable, "setup.py", "--version"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["error: missing native libraries; install them with: apt-get install "
                     "libwebsockets-dev libssl-dev libcurl4-openssl-dev"]


def test_a_second_run_reuses_what_is_installed():
    # `make test` has just built everything: every step must now be up to date.
    assert _make("-q", ".venv/.stamp-debian", ".venv/.stamp-pip", ".venv/.stamp-module").returncode == 0
    dry = _make("-n", "build")
    assert "pip install" not in dry.stdout and "apt-get" not in dry.stdout
    assert "build_ext" not in dry.stdout


@pytest.mark.parametrize("target", ["demo", "test", "bench"])
def test_each_entry_point_installs_what_it_needs_first(target):
    plan = _make("-n", "-B", target).stdout
    assert "apt-get install" in plan and "pip install" in plan and "build_ext" in plan


def test_a_header_change_rebuilds_the_module(tmp_path):
    # A module whose objects disagree about a struct's layout is worse than no module: a change to
    # any native header must rebuild it, as a change to a .c file does.
    for name in ("setup.py", "README.md"):
        shutil.copy(os.path.join(ROOT, name), tmp_path)
    shutil.copytree(os.path.join(ROOT, "native"), tmp_path / "native")
    shutil.copytree(os.path.join(ROOT, "tools"), tmp_path / "tools")
    shutil.copytree(os.path.join(ROOT, "azext_webapp"), tmp_path / "azext_webapp",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    argv = [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", "out", "--build-temp", "tmp"]

    def build():
        subprocess.run(argv, cwd=tmp_path, check=True, capture_output=True, timeout=300)
        (module,) = (tmp_path / "out").rglob("_tunnel*.so")
        return module.stat().st_mtime_ns

    first = build()
    header = tmp_path / "native" / "tn_err.h"
    os.utime(header, ns=(first + 10**9, first + 10**9))
    assert build() > first, "a header change did not rebuild the module"


def test_build_is_the_extension_alone_and_wheel_puts_it_in_dist():
    """The sandbox is the test bench: `make build` leaves it alone; `make wheel` writes dist/."""
    assert "sandbox/scm" not in _make("-n", "-B", "build").stdout
    assert "tools/build_index.py --out dist" in _make("-n", "-B", "wheel").stdout
    for target in ("demo", "test", "bench", "test-sanitize"):
        assert "sandbox/scm" in _make("-n", "-B", target).stdout, target
