"""One program run through the marker protocol (``_exec_marker``) on an open exec channel.

The calling thread reads the terminal's output (in quarter-second slices) and hands what the
program prints to sinks; the bytes the program reads (a local file or standard input) go out from a
thread of their own as base64 lines, once the program has started, with the channel's
back-pressure. Writes to the channel are whole chunks under one lock, so a Ctrl+C byte never lands
inside a base64 line. A recorded signal (_termination.py) is answered first: a Ctrl+C byte for the
program, a moment for it to report, then the signal is raised.
"""

import base64
import select
import threading
import time

from azext_webapp import _exec_marker as marker
from azext_webapp._termination import raise_if_signalled, signalled

START_TIMEOUT = 30.0            # seconds for the shell to answer the bootstrap, and the program to start
STOP_GRACE = 3.0                # after a Ctrl+C sent to the program: time to report before the signal is raised
INPUT_CHUNK = 48 * 1024         # bytes of input per base64 chunk (a multiple of 3)
RECV = 256 * 1024
SLICE = 0.25


class ExecFailure(Exception):
    """The program could not run or do its work: ``reason`` (a word the program printed with its F
    marker, or one of 'prepare', 'start-timeout', 'ended'), ``said`` (the shell's last words)."""

    def __init__(self, reason, said=''):
        super().__init__(reason)
        self.reason = reason
        self.said = said


class ProgramRun:
    """Run ``body`` (a program for ``_exec_marker.Session.program``) on ``sock``, a connected exec
    channel. ``out``/``err``: callables for the bytes printed before and after the E marker;
    ``source``: a binary file whose bytes the program reads (sent after S), or None;
    ``on_marker(letter, text)``: every marker line; ``sent(n)``: input bytes sent so far."""

    def __init__(self, sock, body, out, err=None, source=None, on_marker=None, sent=None):
        self.sock = sock
        self.body = body
        self.out = out
        self.err = err or (lambda data: None)
        self.source = source
        self.on_marker = on_marker or (lambda letter, text: None)
        self.sent = sent or (lambda n: None)
        self.session = marker.Session()
        self.ended = None           # the E marker's text (a command's exit status)
        self.started = False
        self.input_error = None
        self._lock = threading.Lock()
        self._feeder = None
        self._interrupted_at = None

    def _send(self, data):
        with self._lock:
            self.sock.sendall(data)

    def run(self):
        """Until the Z marker. Returns the E marker's text; raises ExecFailure, or the recorded
        signal once the program was interrupted (module docstring)."""
        self.sock.settimeout(None)      # blocking: the input thread's sendall must not time out
        self._send(self.session.bootstrap())
        deadline = time.monotonic() + START_TIMEOUT
        while self.session.phase != 'done':
            if signalled() is not None and not self._stopping():
                raise_if_signalled()
            if not self.started and time.monotonic() > deadline:
                raise ExecFailure('start-timeout', self.session.said())
            if self.input_error is not None:       # the program waits for input that will not come
                raise ExecFailure('input', str(self.input_error))
            try:
                if not select.select([self.sock], [], [], SLICE)[0]:
                    continue
                data = self.sock.recv(RECV)
            except OSError:
                data = b''
            if not data:
                raise_if_signalled()        # interrupted: the channel ended with the program
                raise ExecFailure('ended', self.session.said())
            for event in self.session.feed(data):
                self._event(*event)
        raise_if_signalled()                # interrupted, and the program reported: still the signal's end
        return self.ended

    def _stopping(self):
        """A signal was recorded: interrupt the program once; True while its report may come."""
        if self._interrupted_at is None:
            self._interrupted_at = time.monotonic()
            if self.started:
                try:
                    self._send(marker.INTERRUPT)
                except OSError:
                    return False
            else:
                return False
        return time.monotonic() - self._interrupted_at < STOP_GRACE

    def _event(self, kind, value):
        if kind == 'out':
            self.out(value)
        elif kind == 'err':
            self.err(value)
        else:
            self.on_marker(kind, value)
            if kind == marker.READY:
                self._send(self.session.program(self.body))
            elif kind == marker.STARTED:
                self.started = True
                if self.source is not None:
                    self._feeder = threading.Thread(target=self._feed, name='webapp-exec-input', daemon=True)
                    self._feeder.start()
            elif kind == marker.ENDED:
                self.ended = value
            elif kind == marker.FAILED:
                raise ExecFailure(value or 'prepare', self.session.said())

    def _feed(self):
        """The input as base64 lines, then Ctrl+D; stops when the program has ended."""
        total = 0
        try:
            while self.ended is None:
                chunk = _read_exactly(self.source, INPUT_CHUNK)
                if chunk:
                    self._send(marker.input_lines(chunk))
                    total += len(chunk)
                    self.sent(total)
                if len(chunk) < INPUT_CHUNK:
                    self._send(marker.END_OF_INPUT)     # after a line's end: end of file
                    return
        except OSError as err:      # the channel closed under us, or the local input failed
            self.input_error = err


def _read_exactly(source, n):
    """n bytes (fewer only at the end): a pipe's reads may be short, and base64 lines must hold
    multiples of 3 bytes except the last."""
    parts, got = [], 0
    while got < n:
        part = source.read(n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b''.join(parts)


def base64_stream():
    """A decoder for base64 text that arrives in pieces, with line breaks anywhere: feed(text) ->
    the bytes decoded so far."""
    pending = bytearray()

    def feed(text):
        pending.extend(text.translate(None, b'\r\n'))
        usable = len(pending) - len(pending) % 4
        data = base64.b64decode(bytes(pending[:usable])) if usable else b''
        del pending[:usable]
        return data
    return feed
