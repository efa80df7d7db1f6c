"""``Pump``: stdio mode (OpenSSH's ProxyCommand). Standard input and output are relayed to one end of
a socket pair whose other end the engine adopts as one local connection (tn_pump.c's counterpart).

Two threads with plain os.read / os.write, because on Windows standard input and output are pipes
or a console, never sockets, and nothing can poll them; the same code runs everywhere.

Ends: stdin EOF -> shutdown(SHUT_WR) on the pair (the engine then closes the WebSocket: it has no
half-close). The pair's EOF (the WebSocket ended) -> what was read is written, out_fd is pointed at
the null device so its reader sees EOF, and the pump is done. A thread blocked reading stdin is a
daemon: it cannot be woken portably and ends with the process."""
import os
import socket
import threading

from . import waits
from .errors import errno_of, fail
from .sizes import LOCAL_CHUNK as CHUNK


class Pump:
    def __init__(self, in_fd, out_fd):
        self.in_fd, self.out_fd = int(in_fd), int(out_fd)
        try:
            os.fstat(self.in_fd)
            os.fstat(self.out_fd)
        except OSError as exc:
            raise fail("internal", detail="standard input or output is closed", errno=errno_of(exc)) from None
        try:
            self._sock, self._peer = socket.socketpair()
        except OSError as exc:
            raise fail("internal", detail="creating a socket pair", errno=errno_of(exc)) from None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._closed = False
        self._err = None
        self._in = self._out = 0
        self._up = threading.Thread(target=self._stdin_to_pair, daemon=True, name="webapp-stdio-in")
        self._down = threading.Thread(target=self._pair_to_stdout, daemon=True, name="webapp-stdio-out")
        self._up.start()
        self._down.start()

    def _fail(self, err):
        with self._lock:
            if self._err is None and not self._closed:
                self._err = err.args

    def _stdin_to_pair(self):
        while True:
            try:
                data = os.read(self.in_fd, CHUNK)
            except OSError as exc:
                self._fail(fail("closed_stdin", errno=errno_of(exc)))
                data = b""
            if not data:
                break
            self._in += len(data)
            try:
                self._sock.sendall(data)
            except OSError:
                return          # the engine closed its end: nobody to send to
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _pair_to_stdout(self):
        try:
            while True:
                try:
                    data = self._sock.recv(CHUNK)
                except OSError:
                    data = b""
                if not data:
                    break
                view = memoryview(data)
                while view:
                    try:
                        n = os.write(self.out_fd, view)
                    except BrokenPipeError:
                        return          # the reader is gone: nothing more can be delivered
                    except OSError as exc:
                        self._fail(fail("closed_stdout", errno=errno_of(exc)))
                        return
                    self._out += n
                    view = view[n:]
            if not self._closed:
                self._close_out()
        finally:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._done.set()

    def _close_out(self):
        """The reader of out_fd gets EOF once nothing refers to its pipe; the null device keeps
        out_fd valid for the rest of the process."""
        try:
            nul = os.open(os.devnull, os.O_WRONLY)
        except OSError as exc:
            self._fail(fail("internal", detail=f"opening {os.devnull}", errno=errno_of(exc)))
            return
        try:
            os.dup2(nul, self.out_fd)
        except OSError as exc:
            self._fail(fail("internal", detail="closing standard output", errno=errno_of(exc)))
        finally:
            os.close(nul)

    def take_peer(self):
        with self._lock:
            if self._peer is None:
                raise RuntimeError("the peer descriptor was already taken")
            peer, self._peer = self._peer, None
        return peer.detach()

    def wait(self, timeout=0.5):
        if self._closed:
            return True
        return waits.wait_event(self._done, timeout)

    def counts(self):
        return self._in, self._out

    def error(self):
        if not self._done.is_set():
            return None
        return self._err

    def close(self):
        with self._lock:
            if self._closed:
                return
            self._closed = True
            peer, self._peer = self._peer, None
        if peer is not None:
            peer.close()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        waits.join_thread(self._down, 2.0)
        self._sock.close()
