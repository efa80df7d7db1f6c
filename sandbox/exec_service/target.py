"""Where a command of the exec channel runs: a container (sandbox/containers.py), entered with
nsenter, or, without namespaces (not root), the host itself.

Paths are checked as the container sees them, through /proc/<init pid>/root: the containers
share the host's file system but for their own /run, /tmp and /mnt.
"""
from __future__ import annotations

import getpass
import json
import os
import signal
import time

from .. import procs
from ..catalogue import kudu_name, sidecar_name
from ..containers import NSENTER, READY

SETSID = "/usr/bin/setsid"
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Changes to the working directory inside the container, then becomes the command.
_CD_AND_EXEC = 'cd -- "$1" || exit 126; shift; exec "$@"'


class TargetError(Exception):
    """No container to run in; `.status` and the message are the client's answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Target:
    """A container by the host pid of its init, or the host (pid None)."""

    def __init__(self, name: str, pid: int | None):
        self.name = name
        self.pid = pid

    @property
    def home(self) -> str:
        return "/root" if self.pid else os.path.expanduser("~")

    def path(self, path: str) -> str:
        """The host path that shows the container's absolute `path`."""
        return f"/proc/{self.pid}/root{path}" if self.pid else path

    def executable(self, path: str) -> bool:
        host = self.path(path)
        return os.path.isfile(host) and os.access(host, os.X_OK)

    def directory(self, path: str) -> bool:
        return os.path.isdir(self.path(path))

    def resolve(self, command: str) -> str | None:
        """The absolute path of a command as the container's PATH finds it, or None."""
        if "/" in command:
            return command if command.startswith("/") and self.executable(command) else None
        for folder in self.search_path().split(":"):
            if folder.startswith("/") and self.executable(f"{folder}/{command}"):
                return f"{folder}/{command}"
        return None

    def search_path(self) -> str:
        return CONTAINER_PATH if self.pid else os.environ.get("PATH", CONTAINER_PATH)

    def argv(self, cwd: str, command: list, terminal: bool = False) -> list:
        """Runs `command` in `cwd` of the container as a new session: one that end_session()
        finds, or, with `terminal`, one whose controlling terminal is standard input (its
        leader must be in the container's PID namespace for the shell's job control to work:
        start it with start_new_session, so that nsenter has a session of its own too)."""
        inner = ["/bin/sh", "-c", _CD_AND_EXEC, "sandbox-exec", cwd, *command]
        if terminal:      # --wait: a process group leader has setsid fork, and waits then
            inner = [SETSID, "--ctty", "--wait", *inner]
        elif self.pid is None:
            return [SETSID, *inner]
        if self.pid is None:
            return inner
        enter = [NSENTER, "--target", str(self.pid), "--mount", "--uts", "--pid", "--"]
        return enter + inner if terminal else [SETSID, *enter, *inner]

    def environment(self, shell: str | None = None, term: str | None = None) -> dict:
        """What a login to the container starts with; nothing of the service's own."""
        if self.pid:
            user, env = "root", {"HISTFILE": "/tmp/.bash_history"}   # not the host's /root
        else:
            user, env = getpass.getuser(), {}
        env.update({"HOME": self.home, "USER": user, "LOGNAME": user, "PATH": self.search_path(),
                    "LANG": "C.UTF-8"})
        if shell:
            env["SHELL"] = shell
        if term:
            env["TERM"] = term
        return env


def find(map_path: str, site: str, instance: str, kudu: bool, container: str | None = None) -> Target:
    """The container of a site's instance (or of its Kudu, or one of the instance's site containers)
    from the sandbox's map."""
    try:
        with open(map_path) as f:
            known = json.load(f)
    except (OSError, ValueError):
        known = {"namespaces": False}
    if container is not None:
        return _site_container(known, instance, container)
    name = kudu_name(site) if kudu else instance
    if not known.get("namespaces"):
        return Target(name, None)
    pid = (known.get("kudu", {}).get(site) if kudu else known.get("instances", {}).get(instance))
    return _running(name, pid, f"the Kudu container of {site}" if kudu else f"the container of instance {instance}")


def _running(name: str, pid, what: str) -> Target:
    if not pid or not os.path.exists(f"/proc/{pid}/root{READY}"):
        raise TargetError(503, f"Cannot reach {what}: it is not running.")
    return Target(name, int(pid))


def _site_container(known: dict, instance: str, container: str) -> Target:
    """`?container=NAME` (the sandbox's model, docs/PROTOCOL.md section 9): the main container is
    the instance's own, a sidecar its own container; a sidecar that is not running is 409."""
    declared = known.get("site_containers", {}).get(instance)
    if not declared:
        raise TargetError(400, f"Instance {instance} has no site containers (sidecars): leave out container.")
    entry = declared.get(container)
    if entry is None:
        raise TargetError(404, f"Instance {instance} has no container '{container}'; its containers are "
                               f"{', '.join(declared)}.")
    if entry.get("main"):
        return find_instance(known, instance)
    name = sidecar_name(instance, container)
    if entry.get("state") != "Running":
        raise TargetError(409, f"The container '{container}' of instance {instance} is not running "
                               f"(its state: {entry.get('state')}).")
    if not known.get("namespaces"):
        return Target(name, None)
    return _running(name, entry.get("pid"), f"the container '{container}' of instance {instance}")


def find_instance(known: dict, instance: str) -> Target:
    if not known.get("namespaces"):
        return Target(instance, None)
    return _running(instance, known.get("instances", {}).get(instance), f"the container of instance {instance}")


def _processes(field: int, value: int) -> list:
    """Live processes whose /proc/PID/stat field number `field` (after the name) is `value`."""
    return [pid for pid, fields in procs.stats() if int(fields[field]) == value and fields[0] != "Z"]


def _signal_all(pids, sig) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait(proc, grace: float) -> bool:
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    return proc.poll() is not None


def end_session(proc, grace: float = 1.0) -> None:
    """SIGTERM every process of the session that `proc` (a Target.argv process) leads; SIGKILL
    what is left after `grace` seconds; reap proc."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        _signal_all(_processes(3, proc.pid), sig)
        if _wait(proc, grace) and not _processes(3, proc.pid):
            return
    proc.wait()


def end_terminal(proc, tty: int, close, grace: float = 1.0) -> None:
    """Hang up a terminal session as a closing terminal does: SIGHUP every process whose
    controlling terminal is `tty` (a device number) and `close()` the terminal's master. What
    ignores SIGHUP (nohup) lives on, unless the shell itself has not ended after `grace` seconds:
    then SIGKILL for all of them. Reaps proc."""
    members = _processes(4, tty)
    _signal_all(members, signal.SIGHUP)
    _signal_all(members, signal.SIGCONT)        # a stopped job must see its SIGHUP
    close()
    if not _wait(proc, grace):
        _signal_all([proc.pid] + [p for p in members if procs.alive(p)], signal.SIGKILL)
    proc.wait()
