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


def wait_event(event, timeout):
    """True once ``event`` is set, False when the timeout passed first."""
    deadline = deadline_of(timeout)
    while True:
        left = _remaining(deadline)
        if left is not None and left <= 0:
            return event.is_set()
        if event.wait(SLICE if left is None else min(SLICE, left)):
            return True


def wait_future(future, timeout):
    """True once the concurrent.futures.Future is done, False when the timeout passed first."""
    deadline = deadline_of(timeout)
    while True:
        left = _remaining(deadline)
        if left is not None and left <= 0:
            return future.done()
        try:
            future.exception(SLICE if left is None else min(SLICE, left))
            return True
        except concurrent.futures.TimeoutError:
            continue
        except concurrent.futures.CancelledError:
            return True


def join_thread(thread, timeout):
    deadline = deadline_of(timeout)
    while thread.is_alive():
        left = _remaining(deadline)
        if left is not None and left <= 0:
            return False
        thread.join(SLICE if left is None else min(SLICE, left))
    return True
