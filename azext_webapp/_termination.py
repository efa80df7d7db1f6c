"""Termination signals as a state that no ``except`` can eat.

A signal handler that only raises can lose its exception: raised inside an ``except Exception``
guard (an event callback's, a logging handler's), it is logged or dropped and the wait it should
have ended goes on. Here the handler records the signal first, then raises a BaseException; every
wait of the tunnel calls :func:`raise_if_terminated` at least twice a second, so a swallowed
termination is raised again where nothing catches it.

No engine is imported here: ``az`` installs the handlers before it loads one.
"""
import contextlib
import signal


class Terminated(BaseException):
    """A termination signal arrived (SIGTERM; SIGHUP for a ProxyCommand; SIGBREAK on Windows).

    A BaseException, so that no ``except Exception`` (an event callback's guard, a logging handler)
    can eat it; and should anything still swallow it, the signal stays recorded and every wait of
    :class:`azext_webapp.tunnel.Tunnel` raises it again within half a second."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum

    @property
    def signal_name(self):
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"


class _Termination:  # pylint: disable=too-few-public-methods
    signum = None


_termination = _Termination()


def raise_if_terminated():
    """Raise Terminated again when a termination signal was received inside terminate_on()."""
    if _termination.signum is not None:
        raise Terminated(_termination.signum)


@contextlib.contextmanager
def terminate_on(*names):
    """Within the block, each named signal this platform has (e.g. "SIGTERM", "SIGHUP") is recorded
    and raises Terminated in the main thread. Leaving the block restores the handlers and forgets
    the signal."""
    def on_signal(signum, frame):  # pylint: disable=unused-argument
        _termination.signum = signum
        raise Terminated(signum)

    signums = [getattr(signal, name) for name in names if hasattr(signal, name)]
    previous = {signum: signal.signal(signum, on_signal) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        _termination.signum = None
