"""The local terminal of an interactive exec session, one class per platform, chosen once.

Both put the terminal in a mode where every key goes to the remote shell (Ctrl+C included) and
restore it on leaving the ``with`` block, however it is left. ``keys(timeout)`` returns the bytes
typed (or b''); ``write(data)`` shows the remote output; ``size()`` is (columns, rows);
``resized()`` says whether the window changed since the last call.

- POSIX: termios raw mode on standard input (restored with TCSADRAIN), SIGWINCH recorded by a
  handler that only sets a flag, output written as bytes (the terminal decodes UTF-8 itself).
- Windows (as the Azure CLI's ``az webapp exec`` does it): the console's processed input turned off
  so Ctrl+C is a key, ENABLE_VIRTUAL_TERMINAL_PROCESSING on for output so the remote's escape
  sequences render; keys from msvcrt (special keys mapped to their escape sequences, Backspace to
  DEL, surrogate pairs joined); output decoded as one incremental UTF-8 stream (a character split
  across two frames is written once whole); the window size polled once a second.
"""

import codecs
import os
import sys
import time

STD_INPUT_HANDLE, STD_OUTPUT_HANDLE = -10, -11
ENABLE_PROCESSED_INPUT = 0x0001
ENABLE_VIRTUAL_TERMINAL_PROCESSING = 0x0004
RESIZE_POLL = 1.0       # seconds between size checks where there is no SIGWINCH

# msvcrt's code after a 0x00 or 0xE0 prefix -> the escape sequence a terminal sends for that key.
WINDOWS_KEYS = {
    72: b'\x1b[A', 80: b'\x1b[B', 77: b'\x1b[C', 75: b'\x1b[D',           # arrows
    71: b'\x1b[H', 79: b'\x1b[F', 82: b'\x1b[2~', 83: b'\x1b[3~',         # Home End Insert Delete
    73: b'\x1b[5~', 81: b'\x1b[6~',                                      # Page Up, Page Down
    59: b'\x1bOP', 60: b'\x1bOQ', 61: b'\x1bOR', 62: b'\x1bOS',          # F1-F4
    63: b'\x1b[15~', 64: b'\x1b[17~', 65: b'\x1b[18~', 66: b'\x1b[19~',  # F5-F8
    67: b'\x1b[20~', 68: b'\x1b[21~', 133: b'\x1b[23~', 134: b'\x1b[24~',  # F9-F12
    115: b'\x1b[1;5D', 116: b'\x1b[1;5C', 141: b'\x1b[1;5A', 145: b'\x1b[1;5B',  # Ctrl+arrows
}


class NoTerminalError(Exception):
    """Standard input (or output) is not a terminal."""


def for_platform(system=None):
    """The terminal class for this platform (``platform.system()`` unless given)."""
    if system is None:
        import platform
        system = platform.system()
    return WindowsTerminal if system == 'Windows' else PosixTerminal


def _size_of(fd, fallback=(80, 24)):
    try:
        size = os.get_terminal_size(fd)
        return size.columns, size.lines
    except (OSError, ValueError):
        return fallback


class PosixTerminal:
    """See the module docstring."""

    def __init__(self, in_fd=0, out_fd=1, termios_module=None, signal_module=None, select_module=None):
        if termios_module is None:
            import termios as termios_module  # pylint: disable=import-error
        if signal_module is None:
            import signal as signal_module
        if select_module is None:
            import select as select_module
        self.in_fd, self.out_fd = in_fd, out_fd
        self._termios, self._signal, self._select = termios_module, signal_module, select_module
        self._saved = None
        self._winch = None
        self._resized = False

    def __enter__(self):
        if not os.isatty(self.in_fd):
            raise NoTerminalError('standard input is not a terminal')
        self._saved = self._termios.tcgetattr(self.in_fd)
        winch = getattr(self._signal, 'SIGWINCH', None)
        if winch is not None:
            self._winch = (winch, self._signal.signal(winch, self._on_winch))
        try:
            self._termios.tcsetattr(self.in_fd, self._termios.TCSAFLUSH, raw_mode(self._saved, self._termios))
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc):
        self._restore()

    def _restore(self):
        if self._saved is not None:
            self._termios.tcsetattr(self.in_fd, self._termios.TCSADRAIN, self._saved)
            self._saved = None
        if self._winch is not None:
            signum, handler = self._winch
            self._signal.signal(signum, handler if handler is not None else self._signal.SIG_DFL)
            self._winch = None

    def _on_winch(self, signum, frame):  # pylint: disable=unused-argument
        self._resized = True

    def resized(self):
        resized, self._resized = self._resized, False
        return resized

    def size(self):
        return _size_of(self.out_fd if os.isatty(self.out_fd) else self.in_fd)

    def keys(self, timeout):
        try:
            ready, _, _ = self._select.select([self.in_fd], [], [], timeout)
        except InterruptedError:     # SIGWINCH during the wait (PEP 475 retries others)
            return b''
        if not ready:
            return b''
        data = os.read(self.in_fd, 4096)
        if not data:
            raise EOFError('standard input ended')
        return data

    def write(self, data):
        view = memoryview(data)
        while view:
            written = os.write(self.out_fd, view)
            view = view[written:]


def raw_mode(attrs, termios_module):
    """tty.setraw's settings on a copy of tcgetattr's list: no echo, no line editing, no signals
    from keys (Ctrl+C is a byte for the remote side), no output processing, reads of one byte."""
    t = termios_module
    mode = [list(item) if isinstance(item, list) else item for item in attrs]
    mode[0] &= ~(t.BRKINT | t.ICRNL | t.INPCK | t.ISTRIP | t.IXON)
    mode[1] &= ~t.OPOST
    mode[2] = (mode[2] & ~(t.CSIZE | t.PARENB)) | t.CS8
    mode[3] &= ~(t.ECHO | t.ICANON | t.IEXTEN | t.ISIG)
    mode[6][t.VMIN] = 1
    mode[6][t.VTIME] = 0
    return mode


class WindowsTerminal:
    """See the module docstring. ``kernel32`` and ``msvcrt`` are the real ones unless given."""

    def __init__(self, kernel32=None, msvcrt_module=None, stdout=None, clock=time.monotonic, sleep=time.sleep):
        import ctypes
        if kernel32 is None:
            kernel32 = ctypes.windll.kernel32  # pylint: disable=no-member
        if msvcrt_module is None:
            import msvcrt as msvcrt_module  # pylint: disable=import-error
        self._ctypes = ctypes
        self._kernel32, self._msvcrt = kernel32, msvcrt_module
        self._stdout = stdout or sys.stdout
        self._clock, self._sleep = clock, sleep
        self._decoder = codecs.getincrementaldecoder('utf-8')('replace')
        self._restore_modes = []
        self._size = None
        self._checked = clock()

    def _mode(self, which):
        handle = self._kernel32.GetStdHandle(which)
        mode = self._ctypes.c_uint32()
        if not self._kernel32.GetConsoleMode(handle, self._ctypes.byref(mode)):
            return handle, None
        return handle, mode.value

    def __enter__(self):
        handle, mode = self._mode(STD_INPUT_HANDLE)
        if mode is None:
            raise NoTerminalError('standard input is not a console')
        if not self._kernel32.SetConsoleMode(handle, mode & ~ENABLE_PROCESSED_INPUT):
            raise NoTerminalError('the console input mode cannot be changed')
        self._restore_modes.append((handle, mode))
        out, out_mode = self._mode(STD_OUTPUT_HANDLE)
        if out_mode is not None and self._kernel32.SetConsoleMode(out, out_mode | ENABLE_VIRTUAL_TERMINAL_PROCESSING):
            self._restore_modes.append((out, out_mode))
        self._size = self.size()
        return self

    def __exit__(self, *exc):
        while self._restore_modes:
            handle, mode = self._restore_modes.pop()
            self._kernel32.SetConsoleMode(handle, mode)

    def size(self):
        return _size_of(1)      # the console window behind standard output

    def resized(self):
        now = self._clock()
        if now - self._checked < RESIZE_POLL:
            return False
        self._checked = now
        size = self.size()
        changed, self._size = size != self._size, size
        return changed

    def keys(self, timeout):
        deadline = self._clock() + timeout
        while not self._msvcrt.kbhit():
            if self._clock() >= deadline:
                return b''
            self._sleep(0.05)
        keys = bytearray()
        while self._msvcrt.kbhit():
            keys += self._key(self._msvcrt.getwch())
        return bytes(keys)

    def _key(self, char):
        if char == '\x08':              # Backspace: a Unix shell expects DEL
            return b'\x7f'
        if char in ('\x00', '\xe0'):    # a special key: its code follows
            return WINDOWS_KEYS.get(ord(self._msvcrt.getwch()), b'')
        if 0xD800 <= ord(char) <= 0xDBFF and self._msvcrt.kbhit():     # a surrogate pair (emoji)
            char += self._msvcrt.getwch()
            char = char.encode('utf-16-le', 'surrogatepass').decode('utf-16-le', 'replace')
        return char.encode('utf-8', 'replace')

    def write(self, data):
        text = self._decoder.decode(bytes(data))
        if not text:
            return
        try:
            self._stdout.write(text)
        except UnicodeEncodeError:
            encoding = getattr(self._stdout, 'encoding', None) or 'utf-8'
            self._stdout.write(text.encode(encoding, 'replace').decode(encoding, 'replace'))
        self._stdout.flush()
