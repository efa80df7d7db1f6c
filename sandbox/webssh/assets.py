"""Bundle the page's terminal, xterm.js, into build/webssh/ with Debian's esbuild.

Debian's node-xterm (3.8) ships CommonJS modules, not a browser build, so esbuild turns
xterm-entry.js into one script (xterm.js) next to a copy of xterm's stylesheet (xterm.css).
Nothing comes from the internet. `make webssh-assets` runs this file as a script (standard
library only, so the system python3 can run it before any venv exists); the service calls
build() itself when the bundle is missing or older than its sources.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

NODE_PATH = Path("/usr/share/nodejs")
XTERM_DIR = NODE_PATH / "xterm"
XTERM_CSS = XTERM_DIR / "lib" / "xterm.css"
HERE = Path(__file__).resolve().parent
ENTRY = HERE / "xterm-entry.js"
OUT_DIR = HERE.parent.parent / "build" / "webssh"
OUTPUTS = ("xterm.js", "xterm.css")


class AssetsError(RuntimeError):
    """The bundle cannot be built here; the message says what to install."""


def _sources() -> list:
    return [ENTRY, Path(__file__).resolve(), XTERM_DIR / "package.json", XTERM_CSS]


def _esbuild() -> str:
    found = shutil.which("esbuild")
    if not found:
        raise AssetsError("esbuild is not installed (Debian package esbuild; "
                          "`make deps` installs it)")
    if not (XTERM_DIR / "package.json").exists():
        raise AssetsError(f"xterm.js is not installed in {XTERM_DIR} (Debian package node-xterm; "
                          "`make deps` installs it)")
    return found


def stale(out_dir: Path = OUT_DIR) -> bool:
    try:
        built = min((out_dir / name).stat().st_mtime for name in OUTPUTS)
    except FileNotFoundError:
        return True
    try:
        return any(src.stat().st_mtime > built for src in _sources())
    except FileNotFoundError:       # a source is gone: building says which
        return True


def build(out_dir: Path = OUT_DIR, force: bool = False) -> Path:
    """Bundle into out_dir unless it is up to date; returns out_dir. Raises AssetsError."""
    out_dir = Path(out_dir)
    if not force and not stale(out_dir):
        return out_dir
    esbuild = _esbuild()
    out_dir.mkdir(parents=True, exist_ok=True)
    # Parallel sandboxes (and make) may build at once: one builds, the others find it done.
    with open(out_dir / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and not stale(out_dir):
            return out_dir
        tmp_js = out_dir / f".xterm.js.{os.getpid()}"
        env = dict(os.environ, NODE_PATH=str(NODE_PATH))
        r = subprocess.run([esbuild, str(ENTRY), "--bundle", "--minify", "--log-level=warning",
                            f"--outfile={tmp_js}"], env=env, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            tmp_js.unlink(missing_ok=True)
            raise AssetsError(f"esbuild failed to bundle {ENTRY.name}:\n{r.stdout}{r.stderr}")
        tmp_css = out_dir / f".xterm.css.{os.getpid()}"
        shutil.copyfile(XTERM_CSS, tmp_css)
        os.replace(tmp_css, out_dir / "xterm.css")
        os.replace(tmp_js, out_dir / "xterm.js")    # last: its mtime marks the bundle complete
    return out_dir


def main(argv: list) -> int:
    out = Path(argv[1]) if len(argv) > 1 else OUT_DIR
    try:
        build(out)
    except AssetsError as e:
        print(f"webssh assets: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
