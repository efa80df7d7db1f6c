"""Containers: the environment of an instance (or of a site's Kudu), as far as a loopback sandbox
needs one.

As root, each container is a mount + UTS + PID namespace (util-linux `unshare`) whose first
process sets it up and then becomes the container's init:
  - the hostname is the container's name (an instance name, or `<site>-kudu`);
  - /run is a private tmpfs; a directory of the host (an sshd's config and host keys) may be
    bound at /run/sandbox, and a private /etc/shadow and /etc/motd over the real ones (the
    host's files are never written);
  - /tmp is a private tmpfs (empty at start, gone with the container);
  - /mnt is a private tmpfs holding /mnt/full, a tmpfs of 64 KiB, for "disk full" tests;
  - /proc is the namespace's own, and the end of the init ends every process in it.
The init is either the instance's sshd (sandbox/sshd.py) or an idle shell that reaps orphans.
The exec channel (sandbox/exec_service/) enters a running container with `nsenter --target
<init pid>`; `containers_map()` tells it which pid is whose. Everything else (the file
system, the network, the users) is the host's.

Without root there are no namespaces: `Container.unavailable_reason()` says why, and the exec
channel runs on the host instead.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from . import procs

UNSHARE = "/usr/bin/unshare"
NSENTER = "/usr/bin/nsenter"
FULL_SIZE = "64k"            # /mnt/full: "disk full" after 64 KiB
READY = "/run/sandbox-ready"     # written last by the set-up: the container can be entered
BIND_AT = "/run/sandbox"         # where a container sees its host directory (an sshd's files)
MAP_FILE = "containers.json"     # in the workdir: who is who, for the exec channel

# Runs inside the new namespaces as their first process, then becomes the container's init.
# $1 hostname, $2 shadow file or "", $3 motd file or "", $4 host directory or "", then the init.
# The host paths may lie under /tmp: everything bound from them is bound before /tmp is covered.
_SETUP = f"""\
set -e
mount -t tmpfs -o mode=755,size=1m sandbox-run /run
mkdir -m 755 /run/sshd {BIND_AT}
[ -z "$4" ] || mount --bind "$4" {BIND_AT}
[ -z "$2" ] || mount --bind "$2" /etc/shadow
[ -z "$3" ] || mount --bind "$3" /etc/motd
mount -t tmpfs -o mode=1777 sandbox-tmp /tmp
if [ -d /mnt ]; then
    mount -t tmpfs -o mode=755,size=64k sandbox-mnt /mnt
    mkdir /mnt/full
    mount -t tmpfs -o mode=1777,size={FULL_SIZE} sandbox-full /mnt/full
fi
hostname "$1"
: > {READY}
shift 4
exec "$@"
"""

# The init of a container without sshd: reaps whatever is orphaned in it, ends on SIGTERM.
IDLE_INIT = ["/bin/sh", "-c", 'trap "exit 0" TERM INT HUP; while :; do sleep 86400 & wait $!; done']


def delayed(seconds: float, init: list) -> list:
    """`init` after `seconds`: a container coming back from a restart, whose programs (its sshd) are
    not up yet. Until then its first process is a shell that ends on SIGTERM (a namespace's init
    ignores signals it has no handler for)."""
    return ["/bin/sh", "-c", 'trap "exit 0" TERM INT HUP; sleep "$0" & wait $!; trap - TERM INT HUP; exec "$@"',
            f"{max(seconds, 0):.3f}", *init]


def unavailable_reason() -> str | None:
    """None if containers (namespaces) can be made here, else a one-line reason."""
    if os.geteuid() != 0:
        return "containers need root (mount, UTS and PID namespaces)"
    for path in (UNSHARE, NSENTER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (Debian: util-linux)"
    return None


class Container:
    """One container: `spawn()` starts its namespaces and init, `wait_ready()` waits for the set-up,
    `init_pid` is what `nsenter --target` takes, `stop()` ends it and everything in it."""

    def __init__(self, name: str, workdir: str, *, shadow: str = "", motd: str = "",
                 bind_dir: str = "", log_path: str | None = None):
        self.name = name
        self.shadow = shadow
        self.motd = motd
        self.bind_dir = bind_dir
        self.log_path = log_path or os.path.join(workdir, "logs", f"container-{name}.log")
        self.proc = None

    def spawn(self, init: list | None = None):
        """Start the namespaces; `init` (default: init_argv()) runs in them once set up."""
        argv = [UNSHARE, "--mount", "--uts", "--pid", "--fork", "--kill-child", "--mount-proc",
                "--propagation", "private", "--", "/bin/sh", "-c", _SETUP, "sandbox-container",
                self.name, self.shadow, self.motd, self.bind_dir, *(init or self.init_argv())]
        self.proc = procs.spawn(argv, log_path=self.log_path)

    @property
    def init_pid(self) -> int | None:
        """The host pid of the container's init (its PID 1), or None before it exists."""
        if self.proc is None:
            return None
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                kids = f.read().split()
        except OSError:
            return None
        return int(kids[0]) if kids else None

    def host_path(self, path: str) -> str:
        """The host's path to the container's absolute `path` (its init's view, e.g. of its /tmp)."""
        return f"/proc/{self.init_pid}/root{path}"

    def is_ready(self) -> bool:
        pid = self.init_pid
        return pid is not None and os.path.exists(f"/proc/{pid}/root{READY}")

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """True once the set-up is done; False if the container ended (its log says why)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self.is_ready():
                return True
            time.sleep(0.02)
        return False

    def restart(self, seconds: float):
        """A restart: the container goes away (every process in it ends), and a new one with the
        same name, files and settings is there at once, its init running `seconds` from now. Returns
        once the new one can be entered (its init pid is known)."""
        self.stop()
        Container.spawn(self, delayed(seconds, self.init_argv()))
        if not Container.wait_ready(self):
            raise RuntimeError(f"container {self.name} did not come back; see {self.log_path}")

    def init_argv(self) -> list:
        """What the container's init runs (the idle init; an sshd's container runs sshd)."""
        return IDLE_INIT

    def start(self):
        self.spawn()
        if not self.wait_ready():
            self.stop()
            raise RuntimeError(f"container {self.name} did not start; see {self.log_path}")
        return self

    def pids(self) -> list:
        return procs.descendants(self.proc.pid) if self.proc else []

    def stop(self):
        # unshare ignores SIGTERM while it waits for its child. So: SIGTERM the namespace's
        # first process; when it exits the kernel kills every process in the namespace and
        # unshare reaps it and exits. procs.stop then reaps unshare (SIGKILL if it lingers).
        if self.proc is None:
            return
        pid = self.init_pid
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        procs.stop(self.proc, sig=signal.SIGKILL, grace=2.0)


def write_map(workdir: str, instances: dict, kudu: dict, namespaces: bool,
              site_containers: dict | None = None) -> str:
    """The exec channel's look-up: instance name -> init pid, site -> its Kudu's init pid, and for
    an app with site containers instance -> {container name -> {"main", "state", "pid"}} (a
    sidecar's pid: its own container's init, where it runs)."""
    path = os.path.join(workdir, MAP_FILE)
    data = {"namespaces": namespaces, "instances": instances, "kudu": kudu,
            "site_containers": site_containers or {}}
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=1)
    os.replace(path + ".tmp", path)
    return path
