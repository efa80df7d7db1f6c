"""Signals as a recorded state that the waits, not the handlers, turn into an exception.

A handler that raises can land in any bytecode of any library: between a lock's acquire and the
``try`` that would release it (inside ``threading.Condition.wait``, a logging handler), it leaves
that lock broken ("release unlocked lock"); inside an ``except Exception`` guard it is eaten. So the
handlers that :func:`terminate_on` installs only record the signal number in a plain attribute (no
lock, no I/O, no exception). Every wait of the commands and of both engines runs in slices of at
most :data:`SLICE` seconds and calls :func:`raise_if_signalled` between them, which raises at that
known point: ``KeyboardInterrupt`` for SIGINT, :class:`Terminated` for the others. The record stays
until the block ends, so an exception something swallows is raised again by the next wait.

No engine is imported here: the portable engine imports this module and the native one looks it up
between its slices; ``az`` installs the handlers before it loads either.
"""
import contextlib
import signal
import threading
import time
from types import FrameType
from typing import Callable, Iterator, List, Optional, TypeVar

T = TypeVar('T')

# The longest a wait goes without looking at the record: the native engine's TN_TIME_SLICE_MS.
SLICE = 0.2


class Terminated(BaseException):
    """A termination signal arrived (SIGTERM; SIGHUP for a ProxyCommand; SIGBREAK on Windows).

    A BaseException, so that no ``except Exception`` (an event callback's guard, a logging handler)
    can eat it; and should anything still swallow it, the signal stays recorded and the next wait
    raises it again."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"


class _Record:  # pylint: disable=too-few-public-methods
    signum: Optional[int] = None


_record = _Record()


def _record_signal(signum: int, frame: Optional[FrameType]) -> None:  # pylint: disable=unused-argument
    """The handler: an attribute store, which cannot fail or block wherever the main thread is."""
    if _record.signum is None:  # the first signal decides how the command ends
        _record.signum = signum


def signalled_error(signum: int) -> BaseException:
    """What a wait raises for a recorded signal: KeyboardInterrupt for Ctrl+C, as Python's own
    handler would, else Terminated."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def signalled() -> Optional[int]:
    """The recorded signal's number, or None: for a loop that answers a signal before it raises it
    (the exec channel first interrupts the remote command)."""
    return _record.signum


def raise_if_signalled() -> None:
    """Raise the recorded signal's exception (see signalled_error); nothing when none was recorded.
    Called by every wait between its slices, from any thread (the fan-out's threads end too)."""
    signum = _record.signum
    if signum is not None:
        raise signalled_error(signum)


def sleep(seconds: float) -> None:
    """time.sleep that a recorded signal ends within SLICE."""
    deadline = time.monotonic() + seconds
    while True:
        raise_if_signalled()
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(SLICE, left))


def call_in_thread(function: Callable[..., T], *args: object) -> T:
    """function(*args) on a daemon thread while the calling thread waits in slices: for calls into
    libraries (Resource Manager's SDK) that cannot be given a slice of their own. A recorded signal
    ends the wait and leaves the call behind (a daemon thread does not hold the process open);
    otherwise its result is returned or its exception raised here."""
    results: List[T] = []
    errors: List[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            results.append(function(*args))
        except BaseException as err:  # pylint: disable=broad-except  # raised again by the caller
            errors.append(err)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True, name='webapp-call').start()
    while not done.wait(SLICE):
        raise_if_signalled()
    if errors:
        raise errors[0]
    return results[0]


def _installable(signum: int) -> bool:
    # A background job of a non-interactive shell starts with SIGINT ignored, so that Ctrl+C in that
    # terminal is not meant for it; Python leaves it ignored, and so does this. `nohup` ignores
    # SIGHUP so that a closing terminal does not end the program: that stays too.
    hangup = getattr(signal, 'SIGHUP', None)
    return not (signum in (signal.SIGINT, hangup) and signal.getsignal(signum) == signal.SIG_IGN)


@contextlib.contextmanager
def terminate_on(*names: str) -> Iterator[None]:
    """Within the block, each named signal this platform has ("SIGINT", "SIGTERM", "SIGHUP",
    "SIGBREAK"; others are skipped) is recorded for the waits to raise (see the module doc). Leaving
    the block restores the handlers and forgets the signal. Main thread only, as signal.signal."""
    signums = [getattr(signal, name) for name in names if hasattr(signal, name)]
    previous = {signum: signal.signal(signum, _record_signal) for signum in signums if _installable(signum)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        _record.signum = None
