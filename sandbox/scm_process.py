"""Launch and control the C SCM server (sandbox/scm/scm-server, Contract 2).

    with ScmServer(workdir, sites, keepalive_seconds=15) as scm:
        scm.port("linux-app")                       # the site's TLS port
        scm.update_site("linux-app", fault={"drop_after_bytes": 1000})

`sites` are the dicts of Contract 2.  A site without "cert"/"key" gets a
certificate from `ca` (a sandbox.pki.Ca; one is made in workdir when needed).

The server never outlives this process: it gets the read end of a pipe whose
write end only this process holds (SCM_SERVER_PARENT_FD) and exits when that
pipe reports EOF, whichever thread started it and however this process ends;
stop() (also on leaving the `with`, and at interpreter exit) sends SIGTERM and
kills after a timeout.  The server runs in its own session so a terminal's
Ctrl+C reaches this process first and the shutdown stays orderly.

SCM_SERVER_BINARY in the environment runs another build instead of the default
one (e.g. an ASan build: make -C sandbox/scm SANITIZE=address,undefined in a
copy of the directory).

webssh_port / webssh_token (both or neither) name the local web SSH service that the
server proxies /webssh/ to (the "webssh" config key); webssh_session_seconds shortens the
session cookie's 8 h lifetime (tests). exec_port / exec_token likewise name the exec
channel's service behind /exec/ (the "exec" key).

update_site() rewrites the config and sends SIGHUP, then waits until the
ready file's "generation" moves past the value seen before: the reload is
applied when it returns (or it raises with the server's reason).
"""
from __future__ import annotations

import copy
import fcntl
import json
import os
import signal
import subprocess
import threading
import time
import weakref
from pathlib import Path

SCM_DIR = Path(__file__).resolve().parent / "scm"
BINARY = SCM_DIR / "scm-server"
_MUTABLE = {"basic", "bearer", "state", "starting_until", "unavailable_until", "fault", "default_port",
            "instances", "exec_refusal", "ip_forbidden", "bearer_forbidden", "ssh_disabled", "sitecontainers"}


class ScmServerError(RuntimeError):
    """The server could not be built, started, reloaded or stopped."""


def _sources_newer_than(binary: Path) -> bool:
    try:
        built = binary.stat().st_mtime
    except FileNotFoundError:
        return True
    for p in SCM_DIR.iterdir():
        if p.suffix in (".c", ".h") or p.name == "Makefile":
            if p.stat().st_mtime > built:
                return True
    return False


def build(force: bool = False) -> Path:
    """Build scm-server with make when it is missing or older than its sources."""
    if not force and not _sources_newer_than(BINARY):
        return BINARY
    # One build at a time, also across processes (parallel test runs).
    with open(SCM_DIR / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if force or _sources_newer_than(BINARY):
            r = subprocess.run(["make", "-s", "-C", str(SCM_DIR)], capture_output=True,
                               text=True)
            if r.returncode != 0:
                raise ScmServerError(f"building {BINARY} failed:\n{r.stdout}{r.stderr}")
    return BINARY


def _server_env(parent_fd: int) -> dict:
    # A sanitizer runtime preloaded into the tests (tests/sanitize.py) is for the module under
    # test, not for this uninstrumented server: it would only cost it memory and time.
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env["SCM_SERVER_PARENT_FD"] = str(parent_fd)
    return env


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _terminate(proc: subprocess.Popen, parent_w: list, timeout: float = 5.0) -> None:
    """SIGTERM, wait, SIGKILL; then drop the parent pipe.  Idempotent."""
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
    finally:
        if parent_w:
            try:
                os.close(parent_w.pop())
            except OSError:
                pass


class ScmServer:
    def __init__(self, workdir, sites, keepalive_seconds: float = 15,
                 keepalive_kind: str = "ping", listen: str = "127.0.0.1", ca=None,
                 log_path=None, binary=None, start_timeout: float = 15.0,
                 webssh_port=None, webssh_token=None, webssh_session_seconds=None,
                 exec_port=None, exec_token=None):
        if keepalive_kind not in ("ping", "pong"):
            raise ValueError("keepalive_kind must be 'ping' or 'pong'")
        if (webssh_port is None) != (webssh_token is None):
            raise ValueError("webssh_port and webssh_token go together")
        if (exec_port is None) != (exec_token is None):
            raise ValueError("exec_port and exec_token go together")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sites = {s["name"]: copy.deepcopy(dict(s)) for s in sites}
        if len(self.sites) != len(sites) or not sites:
            raise ValueError("sites: need at least one, names unique")
        self.keepalive_seconds = int(keepalive_seconds)
        self.keepalive_kind = keepalive_kind
        self.listen = listen
        self.ca = ca
        self.config_path = self.workdir / "scm-config.json"
        self.ready_path = self.workdir / "scm-ready.json"
        self.log_path = Path(log_path) if log_path else self.workdir / "scm-server.log"
        self.binary = Path(binary) if binary else None
        self.start_timeout = start_timeout
        # The local web SSH service that /webssh/ is proxied to (None: /webssh/ is 404);
        # written on every start and reload.
        self.webssh_port = webssh_port
        self.webssh_token = webssh_token
        self.webssh_session_seconds = webssh_session_seconds
        self.exec_port = exec_port          # the exec channel's service (None: /exec/ is 404)
        self.exec_token = exec_token
        self.proc: subprocess.Popen | None = None
        self.generation = 0
        self._ports: dict = {}
        self._lock = threading.Lock()
        self._parent_w: list = []
        self._finalizer = None

    # -- life cycle
    def start(self) -> "ScmServer":
        if self.proc is not None:
            raise ScmServerError("already started")
        binary = self.binary or os.environ.get("SCM_SERVER_BINARY") or build()
        self._fill_certs()
        self._write_config()
        try:
            self.ready_path.unlink()
        except FileNotFoundError:
            pass
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        r, w = os.pipe()            # both ends non-inheritable (PEP 446)
        try:
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [str(binary), str(self.config_path)], stdin=subprocess.DEVNULL,
                    stdout=log, stderr=log, pass_fds=(r,), start_new_session=True,
                    env=_server_env(r))
        except BaseException:
            os.close(w)
            raise
        finally:
            os.close(r)
        self._parent_w.append(w)
        self._finalizer = weakref.finalize(self, _terminate, self.proc, self._parent_w)
        try:
            ready = self._wait_ready(lambda d: d.get("generation", 0) >= 1,
                                     self.start_timeout, "start")
        except BaseException:
            self.stop()
            raise
        self._ports = {n: int(v["port"]) for n, v in ready["sites"].items()}
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, wait, kill after timeout.  Idempotent."""
        if self.proc is None:
            return
        if self._finalizer is not None:
            self._finalizer.detach()
        _terminate(self.proc, self._parent_w, timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def returncode(self):
        return self.proc.poll() if self.proc else None

    def log(self) -> str:
        """The server's stderr so far (tail)."""
        return _tail(self.log_path)

    # -- look-ups
    def port(self, site_name: str) -> int:
        try:
            return self._ports[site_name]
        except KeyError:
            raise KeyError(f"no SCM site {site_name!r}; sites: {', '.join(self._ports)}") from None

    def url(self, site_name: str) -> str:
        return f"https://127.0.0.1:{self.port(site_name)}"

    # -- reload
    def update_site(self, name: str, timeout: float = 10.0, **fields) -> None:
        """Change a site's mutable fields, SIGHUP, and wait until applied."""
        unknown = set(fields) - _MUTABLE
        if unknown:
            raise ValueError(f"not mutable by reload: {', '.join(sorted(unknown))}")
        with self._lock:
            if name not in self.sites:
                raise KeyError(f"no SCM site {name!r}")
            self.sites[name].update(copy.deepcopy(fields))
            self._reload_locked(timeout)

    def update_all_sites(self, timeout: float = 10.0, **fields) -> None:
        """Change the same mutable fields of every site with one reload."""
        unknown = set(fields) - _MUTABLE
        if unknown:
            raise ValueError(f"not mutable by reload: {', '.join(sorted(unknown))}")
        with self._lock:
            for site in self.sites.values():
                site.update(copy.deepcopy(fields))
            self._reload_locked(timeout)

    def reload(self, timeout: float = 10.0) -> None:
        """Rewrite the config from self.sites and SIGHUP; wait until applied."""
        with self._lock:
            self._reload_locked(timeout)

    def _reload_locked(self, timeout: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise ScmServerError(f"scm-server is not running\n{self.log()}")
        before = self._read_ready().get("generation", 0)
        self._write_config()
        self.proc.send_signal(signal.SIGHUP)
        ready = self._wait_ready(lambda d: d.get("generation", 0) > before, timeout, "reload")
        if ready.get("error"):
            raise ScmServerError(f"scm-server rejected the new config: {ready['error']}")

    # -- internals
    def _fill_certs(self) -> None:
        need = [s for s in self.sites.values() if not s.get("cert") or not s.get("key")]
        if not need:
            return
        from . import pki
        certs = self.workdir / "certs"
        if self.ca is None:
            self.ca = pki.make_ca(certs)
        for s in need:
            crt, key = self.ca.issue(certs, f"scm-{s['name']}")
            s["cert"], s["key"] = str(crt), str(key)

    def _write_config(self) -> None:
        cfg = {
            "listen": self.listen,
            "ready_file": str(self.ready_path),
            "keepalive_seconds": self.keepalive_seconds,
            "keepalive_kind": self.keepalive_kind,
            "sites": list(self.sites.values()),
        }
        if self.webssh_port is not None:
            cfg["webssh"] = {"port": int(self.webssh_port), "token": str(self.webssh_token)}
            if self.webssh_session_seconds is not None:
                cfg["webssh"]["session_seconds"] = int(self.webssh_session_seconds)
        if self.exec_port is not None:
            cfg["exec"] = {"port": int(self.exec_port), "token": str(self.exec_token)}
        _write_atomic(self.config_path, json.dumps(cfg, indent=1))

    def _read_ready(self) -> dict:
        try:
            d = json.loads(self.ready_path.read_text())
        except (OSError, ValueError):
            return {}
        return d if self.proc and d.get("pid") == self.proc.pid else {}

    def _wait_ready(self, done, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            d = self._read_ready()
            if d and done(d):
                self.generation = d.get("generation", 0)
                return d
            rc = self.proc.poll()
            if rc is not None:
                raise ScmServerError(
                    f"scm-server exited with status {rc} during {what}; its log "
                    f"({self.log_path}):\n{self.log()}")
            if time.monotonic() > deadline:
                raise ScmServerError(
                    f"scm-server did not finish {what} within {timeout:.0f} s; its log "
                    f"({self.log_path}):\n{self.log()}")
            time.sleep(0.01)
