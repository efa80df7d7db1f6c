"""A shell behind a local pseudo-terminal, reached through a socket: what an exec channel's socket
carries (keys in, terminal output out), without an SCM site or an engine, for the unit tier's
tests of the marker protocol (POSIX only)."""
import os
import pty
import select
import signal
import socket
import threading
import time


class PtyShell:
    """``sock``: our end; the shell's terminal is the other. ``close()`` hangs the terminal up."""

    def __init__(self, shell="/bin/sh", env=None, argv=None):
        """argv: the program that gives the shell (its first item a path), instead of shell alone."""
        argv = argv or [shell]
        self.pid, self.master = pty.fork()
        if self.pid == 0:   # the child: an interactive shell on the terminal
            os.execve(argv[0], argv, dict(env or {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PS1": "$ ",
                                                  "HOME": "/tmp", "TERM": "xterm"}))
        self.sock, self._far = socket.socketpair()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self):
        far, master = self._far, self.master
        try:
            while not self._done.is_set():
                ready, _, _ = select.select([far, master], [], [], 0.2)
                if far in ready:
                    data = far.recv(65536)
                    if not data:
                        break
                    view = memoryview(data)
                    while view:
                        view = view[os.write(master, view):]
                if master in ready:
                    try:
                        data = os.read(master, 65536)
                    except OSError:     # EIO: the shell has gone
                        break
                    if not data:
                        break
                    far.sendall(data)
        except OSError:
            pass
        finally:
            far.close()

    def close(self):
        self._done.set()
        self._thread.join(2)
        for signum in (signal.SIGHUP, signal.SIGKILL):   # hung up, and killed should that not do
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                break
            if self._reaped(2.0):
                break
        os.close(self.master)
        self.sock.close()

    def _reaped(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                return True
            time.sleep(0.02)
        return False


def busybox_root(root):
    """A root of BusyBox and its applets alone (an Alpine-style container's userland) at root, a
    new directory; None, with why, where busybox or user namespaces are missing."""
    import shutil
    import subprocess
    busybox, unshare = shutil.which("busybox"), shutil.which("unshare")
    if not busybox or not unshare:
        return None, "needs busybox and unshare (make deps installs them)"
    if subprocess.run([unshare, "--user", "--map-root-user", "--mount", "--pid", "--fork", "true"], check=False,
                      capture_output=True).returncode != 0:
        return None, "user and PID namespaces are not available here"
    for folder in ("bin", "tmp", "dev", "proc"):
        os.makedirs(os.path.join(root, folder))
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    open(os.path.join(root, "dev", "null"), "wb").close()     # a bind mount of the real one goes over it
    shutil.copy2(busybox, os.path.join(root, "bin", "busybox"))
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", os.path.join(root, "bin", applet))
    listing = subprocess.run(["ldd", busybox], capture_output=True, text=True, check=False).stdout
    for library in [word for line in listing.splitlines() for word in line.split() if word.startswith("/")]:
        os.makedirs(os.path.dirname(os.path.join(root, library.lstrip("/"))), exist_ok=True)
        shutil.copy2(library, os.path.join(root, library.lstrip("/")))
    return root, ""


def busybox_shell(root):
    """A PtyShell whose shell is BusyBox's ash in root (busybox_root), entered through user, mount and
    PID namespaces of its own (no root needed), with /dev/null and /proc."""
    import shutil
    enter = ('mount --bind /dev/null "$1/dev/null" && mount -t proc proc "$1/proc" && '
             'exec chroot "$1" /bin/sh -i')
    argv = [shutil.which("unshare"), "--user", "--map-root-user", "--mount", "--pid", "--fork", "--kill-child",
            "--", "/bin/sh", "-c", enter, "enter", str(root)]
    return PtyShell(argv=argv, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PS1": "$ ", "HOME": "/tmp",
                                    "TERM": "xterm"})
