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
