"""The engine's waits, always in slices of at most ``_termination.SLICE``: between them a signal the
extension recorded (``azext_webapp/_termination.py``: the handlers only record) is raised, so that a
wait ends within a slice of Ctrl+C or SIGTERM on any thread and the exception leaves from here, never
from inside a lock's wait. On Windows a lock wait is not interrupted by Ctrl+C at all; the slices are
what keeps Ctrl+C prompt there. The waits that finish what was begun (a stop's join, a start's
hand-over from the loop thread, a pump's close) pass ``interruptible=False``."""
import concurrent.futures
import time

from .. import _termination


def _remaining(deadline):
    return None if deadline is None else deadline - time.monotonic()


def deadline_of(timeout):
    """None (forever) for a negative or None timeout, else the monotonic deadline."""
    return None if timeout is None or timeout < 0 else time.monotonic() + timeout


def _in_slices(timeout, block, done, interruptible):
    """True once block(seconds) says so, False when the timeout passed first (then done() decides).
    block waits at most the seconds it is given, so the caller's thread runs every SLICE."""
    deadline = deadline_of(timeout)
    while True:
        if interruptible:
            _termination.raise_if_signalled()
        left = _remaining(deadline)
        if left is not None and left <= 0:
            return done()
        if block(_termination.SLICE if left is None else min(_termination.SLICE, left)):
            return True


def wait_event(event, timeout, interruptible=True):
    """True once ``event`` is set, False when the timeout passed first."""
    return _in_slices(timeout, event.wait, event.is_set, interruptible)


def wait_future(future, timeout):
    """True once the concurrent.futures.Future is done (or cancelled), False when the timeout passed first."""
    return _in_slices(timeout, lambda seconds: bool(concurrent.futures.wait([future], seconds).done), future.done,
                      True)


def join_thread(thread, timeout):
    """True once the thread has ended, False when the timeout passed first. Not interruptible: it
    finishes a stop."""
    def ended():
        return not thread.is_alive()

    def block(seconds):
        thread.join(seconds)
        return ended()
    return _in_slices(timeout, block, ended, False)
