"""One shell of the exec channel: a WebSocket joined to a shell on a real PTY in a container.

Client to shell: binary frames are keystrokes, written to the PTY as they are; a text frame that is
a JSON object with "width"/"height" resizes the PTY (TIOCSWINSZ: the shell gets SIGWINCH), any
other text is keystrokes too. Shell to client: whatever the PTY gives, as binary frames of up to
MAX_FRAME bytes (one UTF-8 stream, split anywhere). When the shell exits, everything it wrote is
read and sent before the close frame (1000): up to the PTY's end, or, when something it started
still holds the terminal, until that stays quiet for QUIET_SECONDS or has written AFTER_EXIT bytes
more than any PTY holds (a job left behind that keeps writing does not keep the session open).

Two threads, each blocking only where the other side makes it wait: the client's frames are read
only as fast as the PTY takes them, and the PTY is read only as fast as the client takes the
frames, so back-pressure reaches both ends. The PTY's descriptor is non-blocking and every wait
also watches a stop pipe, so the session ends at once when either side or the service stops.
"""
from __future__ import annotations

import fcntl
import json
import os
import select
import struct
import subprocess
import termios
import threading

from ..webssh.websocket import CLOSE_NORMAL, OP_TEXT, WebSocket
from . import target as target_mod

MAX_FRAME = 256 * 1024
READ_SIZE = 64 * 1024
POLL_SECONDS = 0.5            # how often a silent session looks whether its shell has exited
QUIET_SECONDS = 0.25          # how long the PTY of an exited shell may stay quiet before the end
AFTER_EXIT = 1 << 20          # what may still be read after it exited: its last writes, buffered
CLOSE_WAIT_SECONDS = 2.0      # for the client to answer our close frame
DEFAULT_SIZE = (80, 24)
TERM = "xterm-256color"


def resize_request(text: str):
    """(columns, rows) from a resize message, or None when the text is not one (then it is input),
    or () when it is one whose size is unusable (then it is ignored)."""
    try:
        msg = json.loads(text)
    except ValueError:
        return None
    if not isinstance(msg, dict) or not ({"width", "height"} & set(msg)):
        return None
    width, height = msg.get("width"), msg.get("height")
    if not all(type(v) is int and 1 <= v <= 0xFFFF for v in (width, height)):
        return ()
    return width, height


def set_size(fd: int, columns: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


class ShellSession:
    def __init__(self, ws: WebSocket, target: target_mod.Target, shell: str, log):
        self.ws = ws
        self.target = target
        self.shell = shell
        self.log = log
        self.proc = None
        self._master = -1
        self._stop_r, self._stop_w = os.pipe()
        os.set_blocking(self._stop_w, False)
        self._pipe_lock = threading.Lock()
        self._stopping = False
        self._done = threading.Event()
        self.bytes_in = self.bytes_out = 0

    def stop(self):
        """From another thread (the service is stopping): end the session, its processes too;
        returns when it has ended (cutting the connection if the client does not read)."""
        self._stopping = True
        self._wake()
        if not self._done.wait(CLOSE_WAIT_SECONDS + 1):
            self.ws.abort()
            self._done.wait(CLOSE_WAIT_SECONDS + 1)

    def _wake(self):
        with self._pipe_lock:
            if self._stop_w >= 0:
                try:
                    os.write(self._stop_w, b"x")
                except OSError:             # full: it is awake already
                    pass

    def run(self):
        """Runs on the connection's thread until the shell exits or the client leaves."""
        try:
            self._run()
        except Exception as e:      # a fault here must leave neither a shell nor a client waiting
            self.log(f"shell {self.shell} on {self.target.name}: failed: {e!r}")
            self.ws.close(1011, "internal error")
            self.ws.abort()
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self._master >= 0:
                self._close()
        finally:
            with self._pipe_lock:
                os.close(self._stop_r)
                os.close(self._stop_w)
                self._stop_r = self._stop_w = -1
            self._done.set()

    def _run(self):
        label = f"shell {self.shell} on {self.target.name}"
        master, slave = os.openpty()
        self._master = master
        tty = os.fstat(slave).st_rdev
        try:
            set_size(master, *DEFAULT_SIZE)
            self.proc = subprocess.Popen(
                self.target.argv(self.target.home, [self.shell], terminal=True), stdin=slave,
                stdout=slave, stderr=slave, env=self.target.environment(self.shell, TERM),
                close_fds=True, start_new_session=True)
        except OSError as e:
            self.log(f"{label}: cannot start: {e}")
            self.ws.close(1011, "cannot start the shell")
            self._close()
            return
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self.log(f"{label}: started")
        reader = threading.Thread(target=self._client_to_shell, name="exec-input", daemon=True)
        reader.start()
        how = self._shell_to_client()
        if self._stopping:
            self.ws.close(1001, "the exec service is stopping")
        else:
            self.ws.close(CLOSE_NORMAL)
        self._wake()
        reader.join(CLOSE_WAIT_SECONDS)
        if reader.is_alive():
            self.ws.abort()
            reader.join(CLOSE_WAIT_SECONDS)
        target_mod.end_terminal(self.proc, tty, self._close)
        self.log(f"{label}: ended ({how}; exit status {self.proc.returncode}; "
                 f"{self.bytes_in} bytes in, {self.bytes_out} out)")

    def _close(self):
        os.close(self._master)
        self._master = -1

    # -- shell -> client (the connection's thread)
    def _shell_to_client(self) -> str:
        fd = self._master
        after_exit = None                       # bytes read since the shell exited
        while True:
            if after_exit is None and self.proc.poll() is not None:
                after_exit = 0
            # until it exits, look at the shell twice a second: a job it left may hold the PTY
            waiting = POLL_SECONDS if after_exit is None else QUIET_SECONDS
            ready, _, _ = select.select([fd, self._stop_r], [], [], waiting)
            if self._stop_r in ready:
                return "service stopping" if self._stopping else "client left"
            if after_exit is not None and (not ready or after_exit > AFTER_EXIT):
                return "shell exited"           # and the PTY stayed quiet, or a job goes on
            if not ready:
                continue
            chunks, size = [], 0
            while size < MAX_FRAME:
                try:
                    data = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    break
                except OSError:                 # EIO: every holder of the terminal is gone
                    data = b""
                if not data:
                    if chunks:
                        self._send(chunks)
                    return "shell exited"
                chunks.append(data)
                size += len(data)
            if after_exit is not None:
                after_exit += size
            if not self._send(chunks):
                return "client left"

    def _send(self, chunks) -> bool:
        data = b"".join(chunks)
        self.bytes_out += len(data)
        return self.ws.send_binary(data)

    # -- client -> shell (its own thread)
    def _client_to_shell(self):
        try:
            while True:
                message = self.ws.recv()
                if message is None:
                    return
                opcode, data = message
                if opcode == OP_TEXT:
                    size = resize_request(data)
                    if size:
                        set_size(self._master, *size)
                    if size is not None:
                        continue
                    data = data.encode("utf-8")
                if not self._write(data):
                    return
        finally:
            self._wake()

    def _write(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._master, view)
            except BlockingIOError:
                ready, _, _ = select.select([self._stop_r], [self._master], [])
                if self._stop_r in ready:
                    return False
                continue
            except OSError:                     # the shell is gone
                return False
            self.bytes_in += n
            view = view[n:]
        return True
