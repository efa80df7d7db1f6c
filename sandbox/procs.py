"""Child processes that cannot outlive the sandbox.

Every child: its own session and process group (`start_new_session`), and
`prctl(PR_SET_PDEATHSIG, SIGKILL)` so the kernel kills it if the thread that started it dies
(start children from a long-lived thread: the main thread). A registry lets `atexit` and the
signal handlers of `python -m sandbox` stop whatever is still running.
"""
from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import threading
import time

PR_SET_PDEATHSIG = 1

# Loaded here, not between fork and exec: dlopen there could wait forever on a lock that
# another thread held at fork time.
_libc = ctypes.CDLL(None, use_errno=True)
_live: set = set()
_live_lock = threading.Lock()


def _pdeathsig_preexec(parent_pid: int):
    """Runs in the child between fork and exec: die with the parent, even on SIGKILL."""
    prctl = _libc.prctl

    def preexec():
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent_pid:      # the parent died before prctl took effect
            os._exit(1)
    return preexec


def spawn(argv: list, *, log_path: str | None = None, env=None, cwd=None,
          pass_fds: tuple = ()) -> subprocess.Popen:
    """Start argv in its own process group, tied to our life; output to log_path (or null).
    pass_fds: descriptors the child inherits (e.g. a listening socket it serves)."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             env=env, cwd=cwd, start_new_session=True, close_fds=True,
                             pass_fds=pass_fds,
                             preexec_fn=_pdeathsig_preexec(os.getpid()))
    finally:
        if log_path:
            out.close()
    with _live_lock:
        _live.add(p)
    return p


def stop(p: subprocess.Popen, sig=signal.SIGTERM, grace: float = 3.0):
    """Signal p's process group, wait up to grace seconds, then SIGKILL the group; reap."""
    if p is None:
        return
    if p.poll() is None:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    # Also whatever is left in the group (children that outlived the leader).
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    with _live_lock:
        _live.discard(p)


def stats():
    """(pid, the fields of /proc/PID/stat after the name) of every process now."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        yield int(entry), stat[stat.rindex(")") + 2:].split()


def descendants(pid: int) -> list:
    """pid and every process below it (by /proc ppid links), for lifecycle checks."""
    children: dict = {}
    for child, fields in stats():
        children.setdefault(int(fields[1]), []).append(child)
    out, todo = [], [pid]
    while todo:
        cur = todo.pop()
        out.append(cur)
        todo.extend(children.get(cur, []))
    return out


def alive(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def wait_until(pred, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def stop_all():
    with _live_lock:
        procs = list(_live)
    for p in procs:
        stop(p, grace=1.0)


atexit.register(stop_all)
