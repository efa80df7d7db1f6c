"""Waits of Python's main thread: always in slices of at most half a second, so that signal handlers
(Ctrl+C's KeyboardInterrupt, SIGTERM, Windows' Ctrl+Break) run between them and their exceptions
propagate out of the wait. On Windows a lock wait is not interrupted by Ctrl+C at all; the slices
are what keeps Ctrl+C prompt there."""
import concurrent.futures
import time

SLICE = 0.5


def _remaining(deadline):
    return None if deadline is None else deadline - time.monotonic()


def deadline_of(timeout):
    """None (forever) for a negative or None timeout, else the monotonic deadline."""
    return None if timeout is None or timeout < 0 else time.monotonic() + timeout


def _in_slices(timeout, block, done):
    """True once block(seconds) says so, False when the timeout passed first (then done() decides).
    block waits at most the seconds it is given, so the caller's thread runs every SLICE."""
    deadline = deadline_of(timeout)
    while True:
        left = _remaining(deadline)
        if left is not None and left <= 0:
            return done()
        if block(SLICE if left is None else min(SLICE, left)):
            return True


def wait_event(event, timeout):
    """True once ``event`` is set, False when the timeout passed first."""
    return _in_slices(timeout, event.wait, event.is_set)


def wait_future(future, timeout):
    """True once the concurrent.futures.Future is done (or cancelled), False when the timeout passed first."""
    return _in_slices(timeout, lambda seconds: bool(concurrent.futures.wait([future], seconds).done), future.done)


def join_thread(thread, timeout):
    """True once the thread has ended, False when the timeout passed first."""
    def ended():
        return not thread.is_alive()

    def block(seconds):
        thread.join(seconds)
        return ended()
    return _in_slices(timeout, block, ended)
