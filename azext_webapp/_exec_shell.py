"""The interactive shell of ``az webapp remote-connection exec`` (no command): the local terminal
(``_exec_terminal``) joined to an open exec channel until either side ends.

A thread shows what the channel sends; the main thread sends keys and the terminal's size on every
resize, and looks a few times a second for the channel's end and for a recorded signal
(_termination.py), which it leaves to its caller to raise once the terminal is restored. Every key
goes to the remote shell, Ctrl+C included; Enter then ``~.`` leaves from this side (as in ssh), for
a shell that no longer answers. The terminal is restored however the session ends.
"""

import socket
import threading

from knack.log import get_logger

from azext_webapp._exec_channel import size_message
from azext_webapp._termination import signalled

logger = get_logger(__name__)

KEY_WAIT = 0.25


class Escape:
    """ssh's escape at the start of a line: ``~.`` leaves, ``~~`` types one ``~``, a ``~`` followed
    by anything else is typed as it is."""

    def __init__(self):
        self.line_start = True
        self.tilde = False

    def filter(self, keys):
        """(bytes for the remote side, whether to leave)."""
        out = bytearray()
        for byte in keys:
            key = bytes((byte,))
            if self.tilde:
                self.tilde = False
                if key == b'.':
                    return bytes(out), True
                out += b'~' if key == b'~' else b'~' + key
            elif self.line_start and key == b'~':
                self.tilde = True
                continue
            else:
                out += key
            self.line_start = key in (b'\r', b'\n')
        return bytes(out), False


def interactive(channel, terminal):
    """Run the session until the remote side ends, ``~.``, local input's end or a recorded signal.
    Returns why it ended: 'remote', 'escape', 'eof' or 'signal'."""
    closed = threading.Event()
    sock = channel.sock

    def show():
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                terminal.write(data)
        except OSError:
            pass
        finally:
            closed.set()

    reader = threading.Thread(target=show, name='webapp-exec-output', daemon=True)
    reader.start()
    escape = Escape()
    why = 'remote'
    try:
        while not closed.is_set():
            if signalled() is not None:
                why = 'signal'
                break
            if terminal.resized():
                channel.send_text(size_message(terminal.size()))
            try:
                keys = terminal.keys(KEY_WAIT)
            except EOFError:
                why = 'eof'
                break
            keys, leave = escape.filter(keys)
            if keys:
                sock.sendall(keys)
            if leave:
                why = 'escape'
                break
    except OSError:         # the channel went away while a key was being sent
        why = 'remote'
    finally:
        try:
            sock.shutdown(socket.SHUT_RDWR)     # the reader wakes; the engine closes the WebSocket
        except OSError:
            pass
        reader.join(1.0)
    return why
