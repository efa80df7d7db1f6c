"""The marker protocol: running a program of ours in the shell of an exec channel and reading its
answer, though the channel is a terminal that sends no exit status (docs/PROTOCOL.md section 4).

Nothing here does I/O: ``Session`` makes the bytes to type and reads the terminal's output.

1. The bootstrap line is typed at the shell's prompt (the terminal echoes it)::

       command -v base64 >/dev/null && stty -echo -opost -ixon -iexten icanon isig 2>/dev/null &&
       printf '%s%s\\n' 'AZX<first half>' '<second half>R' && exec /bin/sh -c 'eval "$(base64 -d)"';
       printf '%s%s\\n' 'AZX<first half>' '<second half>F'

   The marker, ``AZX`` and a random 24-digit hex nonce per run, is printed from two halves, so the
   echoed line never holds it; output that merely looks like a marker (another nonce) is data.
   ``-echo``: nothing typed afterwards comes back; ``-opost``: output bytes arrive untranslated (no
   CR before LF); ``icanon``: input is read a line at a time, so base64 lines pass unchanged and
   Ctrl+D at a line's start is end of file for whoever reads; ``isig``: a Ctrl+C byte is SIGINT for
   the program running (base64 never contains one).
2. At ``<marker>R`` the program goes as base64 lines ending in Ctrl+D; ``/bin/sh`` runs it (the
   non-interactive one reads it: an interactive shell's job control could stop a reader of the
   terminal in a command substitution).
   ``<marker>F`` instead: the container lacks base64 or stty (or /bin/sh).
3. The program prints marker lines of its own, each ``<marker><letter><text>\\n``: ``S`` (started;
   what follows is the answer), ``E<text>`` (the answer ended: for a command, its exit status), ``Z``
   (all done), ``F<reason>`` (it could not do what was asked). Between ``E`` and ``Z`` come the
   command's standard error bytes (collected in a temporary file while it ran: standard output
   streams, standard error arrives when the command has ended, and their interleaving is lost).
   The program's variables hold the marker's halves only, so ``ps`` shows no marker either.

``command_program`` is the program for a command: its standard input is /dev/null, or what the
caller sends after ``S`` as base64 lines ended by Ctrl+D (``input_lines``, ``END_OF_INPUT``) through
a FIFO, whose reader is killed when the command ends so a command that does not read never waits
for the local input's end; its standard output is a pipe (as under ``ssh host CMD``, not the
terminal); Ctrl+C sent to the terminal interrupts it and the program still reports (status 130).
"""

import base64
import secrets
import shlex

MARKER_PREFIX = b'AZX'
LINE = 1024                 # base64 characters per line typed: the terminal takes 4,095 at most
END_OF_INPUT = b'\x04'      # Ctrl+D at a line's start: end of file for the reader
INTERRUPT = b'\x03'         # Ctrl+C: SIGINT for the foreground program (isig)
MARKER_LINE_MAX = 512       # the longest marker line accepted (letter and text)
PRELUDE_KEPT = 2048         # what the shell said before the marker, for a message when it fails

READY, FAILED, STARTED, ENDED, DONE = 'R', 'F', 'S', 'E', 'Z'


class ProtocolError(Exception):
    """The terminal's output broke the marker protocol."""


def new_nonce():
    return secrets.token_hex(12)


def input_lines(data):
    """Bytes as base64 lines for a reader that decodes until Ctrl+D. Feed multiples of 3 bytes
    except at the end, so that the decoded stream has no padding in the middle."""
    text = base64.b64encode(data)
    return b''.join(text[i:i + LINE] + b'\n' for i in range(0, len(text), LINE))


class Session:
    """One run of a program through the marker protocol (see the module docstring)."""

    def __init__(self, nonce=None):
        self.nonce = nonce or new_nonce()
        self.marker = MARKER_PREFIX + self.nonce.encode('ascii')
        half = len(self.nonce) // 2
        self._halves = ('AZX' + self.nonce[:half], self.nonce[half:])
        self._buf = bytearray()
        self.phase = 'prelude'          # prelude -> out (after S) -> err (after E) -> done (after Z)
        self.prelude = bytearray()      # the last PRELUDE_KEPT bytes before S

    # -- what to type ---------------------------------------------------------------------------
    def bootstrap(self):
        first = shlex.quote(self._halves[0])
        ready, failed = shlex.quote(self._halves[1] + READY), shlex.quote(self._halves[1] + FAILED)
        return ("command -v base64 >/dev/null && stty -echo -opost -ixon -iexten icanon isig 2>/dev/null && "
                f"printf '%s%s\\n' {first} {ready} && exec /bin/sh -c 'eval \"$(base64 -d)\"'; "
                f"printf '%s%s\\n' {first} {failed}\n").encode('ascii')

    def program(self, body):
        """The program to send at READY: the script as base64 lines and Ctrl+D."""
        return input_lines(self.script(body).encode('utf-8')) + END_OF_INPUT

    def script(self, body):
        """The prologue (marker halves in ``a`` and ``b``, which a body must leave alone; ``m
        LETTER[TEXT]`` prints a marker line), then body."""
        first, second = (shlex.quote(half) for half in self._halves)
        return (f"a={first} b={second}\n"
                "m() { printf '%s%s%s\\n' \"$a\" \"$b\" \"$1\"; }\n" + body)

    # -- what the terminal says ------------------------------------------------------------------
    def feed(self, data):
        """Events in the output so far: ('out', bytes) before E, ('err', bytes) between E and Z, and
        one (letter, text) per marker line. Bytes that may be the start of a marker are held back
        until the next call decides; before S everything but markers is the shell's own talk."""
        buf = self._buf
        buf += data
        events = []
        while self.phase != 'done':
            at = buf.find(self.marker)
            if at < 0:
                keep = _partial_suffix(buf, self.marker)
                self._data(events, buf[:len(buf) - keep])
                del buf[:len(buf) - keep]
                break
            self._data(events, buf[:at])
            end = buf.find(b'\n', at + len(self.marker))
            if end < 0:
                if len(buf) - at > len(self.marker) + MARKER_LINE_MAX:
                    raise ProtocolError('a marker line without an end')
                del buf[:at]
                break
            # before stty (the F of the bootstrap) the terminal still turns LF into CR LF
            line = bytes(buf[at + len(self.marker):end]).decode('ascii', 'replace').removesuffix('\r')
            del buf[:end + 1]
            letter, text = line[:1], line[1:]
            events.append((letter, text))
            self.phase = {STARTED: 'out', ENDED: 'err', DONE: 'done'}.get(letter, self.phase)
        return events

    def _data(self, events, data):
        if not data:
            return
        if self.phase == 'out':
            events.append(('out', bytes(data)))
        elif self.phase == 'err':
            events.append(('err', bytes(data)))
        elif self.phase == 'prelude':
            self.prelude += data
            del self.prelude[:-PRELUDE_KEPT]

    def said(self):
        """The shell's last words before the program started, as one readable line."""
        return _readable(bytes(self.prelude))


def _partial_suffix(buf, marker):
    """How many bytes at the end of buf could begin the marker."""
    for k in range(min(len(marker) - 1, len(buf)), 0, -1):
        if buf.endswith(marker[:k]):
            return k
    return 0


def _readable(data):
    """Terminal output as plain text: escape sequences and control characters dropped."""
    import re
    text = data.decode('utf-8', 'replace')
    text = re.sub(r'\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)?|\x1b[@-Z\\-_]', '', text)
    return ' '.join(''.join(ch if ch.isprintable() else ' ' for ch in text).split())


def command_program(command, shell='/bin/sh', with_input=False):
    """The body that runs ``command`` (one string, run by ``shell -c``) and reports its standard
    output, exit status and standard error (module docstring)."""
    lines = [f'c={shlex.quote(command)} s_={shlex.quote(shell)}',
             'd=$(mktemp -d 2>/dev/null) || { m Fmktemp; exit 1; }',
             "trap 'rm -rf \"$d\"' EXIT",
             "trap 'exit 129' HUP",
             "trap 'exit 143' TERM",
             'trap : INT',
             'exec 4>&1 5<&0']
    if with_input:
        lines += ['mkfifo "$d/i" 2>/dev/null || { m Fmkfifo; exit 1; }',
                  'base64 -d <&5 >"$d/i" 2>/dev/null & p=$!',
                  'i="$d/i"']
    else:
        lines += ['i=/dev/null']
    lines += ['m S',
              's=$( { { "$s_" -c "$c" <"$i" 2>"$d/e" 3>&- 4>&- 5<&-; echo $? >&3; } | cat >&4; } 3>&1 ); t=$?',
              '[ -n "$s" ] || s=$t']
    if with_input:
        lines += ['kill $p 2>/dev/null']
    lines += ['m "E$s"', 'cat "$d/e"', 'm Z', '']
    return '\n'.join(lines)
