"""One browser terminal: a WebSocket (websocket.py) joined to an SSH shell (session.py).

Messages (issue 16's contract): the page sends text frames of JSON, {"type":"input","data":s}
and {"type":"resize","cols":C,"rows":R}; the service sends terminal output as binary frames and
JSON text frames {"type":"status","state":S,"message":m} (S: connecting, connected, closed) and
{"type":"error","message":m}, after which it closes.
"""
from __future__ import annotations

import json
import threading

from . import session as session_mod
from .websocket import CLOSE_ERROR, CLOSE_NORMAL, OP_BINARY, WebSocket

MAX_COLS, MAX_ROWS = 1000, 500
CLOSE_WAIT_SECONDS = 5.0      # for the browser to answer our close frame


def clamp_size(cols, rows, default=(80, 24)):
    """A terminal size the page asked for, or the default when it is not a sane one."""
    try:
        c, r = int(cols), int(rows)
    except (TypeError, ValueError):
        return default
    if not (1 <= c <= MAX_COLS and 1 <= r <= MAX_ROWS):
        return default
    return c, r


class Bridge:
    def __init__(self, ws: WebSocket, port: int, instance: str, cols: int, rows: int, log):
        self.ws = ws
        self.port = port
        self.instance = instance
        self.size = (cols, rows)
        self.log = log
        self.shell = None
        self._ended = threading.Event()
        self._input_done = threading.Event()

    def _status(self, state: str, message: str):
        self.ws.send_text(json.dumps({"type": "status", "state": state, "message": message}))

    def _error(self, message: str):
        self.log(f"session on {self.instance}: {message}")
        self.ws.send_text(json.dumps({"type": "error", "message": message}))
        self.ws.close(CLOSE_ERROR, "error")

    def stop(self):
        """From another thread (service shutdown): end the session and its socket."""
        self._ended.set()
        shell = self.shell
        if shell is not None:
            shell.close()
        self.ws.close(1001, "the web SSH service is stopping")
        self.ws.abort()

    def run(self):
        """Runs on the connection's thread until either side ends."""
        self._status("connecting", f"Connecting to port {session_mod.CONTAINER_PORT} of instance "
                                   f"{self.instance}...")
        try:
            self.shell = session_mod.Shell(self.port, self.instance, *self.size)
        except session_mod.SessionError as e:
            self._error(str(e))
            self.ws.drain(CLOSE_WAIT_SECONDS)
            return
        if self._ended.is_set():        # stopped while logging in
            self.shell.close()
            return
        self.log(f"session on {self.instance}: shell open")
        self._status("connected", f"Connected to instance {self.instance} as "
                                  f"{session_mod.USER}.")
        reader = threading.Thread(target=self._pump_output, name=f"webssh-out-{self.instance}",
                                  daemon=True)
        reader.start()
        try:
            self._pump_input()
        finally:
            self._input_done.set()
            self._ended.set()
            self.shell.close()      # wakes the reader if the browser left first
            reader.join()

    def _pump_input(self):
        while True:
            msg = self.ws.recv()
            if msg is None:
                return
            kind, payload = msg
            if kind == OP_BINARY:           # raw keystrokes: accepted, though the page sends JSON
                self.shell.send(payload)
                continue
            try:
                m = json.loads(payload)
            except ValueError:
                continue
            if not isinstance(m, dict):
                continue
            if m.get("type") == "input" and isinstance(m.get("data"), str):
                self.shell.send(m["data"].encode("utf-8"))
            elif m.get("type") == "resize":
                cols, rows = clamp_size(m.get("cols"), m.get("rows"), default=(0, 0))
                if cols:
                    self.shell.resize(cols, rows)

    def _pump_output(self):
        while True:
            data = self.shell.recv()
            if not data:
                break
            if not self.ws.send_binary(data):
                break
        if self._ended.is_set():        # the browser left or the service stops: nothing to say
            return
        state, message = self.shell.ended_message()
        if state == "error":
            self._error(message)
        else:
            self.log(f"session on {self.instance}: {message}")
            self._status("closed", message)
            self.ws.close(CLOSE_NORMAL, "session ended")
        # The browser answers our close, which ends the input side; if it does not, this does.
        if not self._input_done.wait(CLOSE_WAIT_SECONDS):
            self.ws.abort()
