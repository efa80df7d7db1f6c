"""Signals are recorded by their handlers and raised by the waits (azext_webapp/_termination.py).

A handler that raises can land in any bytecode: the first tests deliver a signal exactly where the
old design broke a lock (inside threading.Condition.wait, after the lock was let go and before the
``try`` that takes it back), every time, and check that the wait still ends with the signal's own
exception and the lock is whole. The rest: what each signal becomes, SIGINT left ignored where a
shell ignores it, the platform's own set of signals (Windows: SIGBREAK, no SIGHUP; its lock waits
are not interrupted by Ctrl+C), and the helpers' waits. No build, no sandbox."""
import inspect
import signal
import sys
import threading
import time

import pytest

from azext_webapp import _fanout, _termination
from azext_webapp._portable import waits
from azext_webapp._termination import Terminated


def _signal_on_line(function, text, signum):
    """A trace function that raises signum in the main thread when function reaches the line that
    reads text: its handler runs right there, as a real signal's handler runs between two bytecodes."""
    lines, first = inspect.getsourcelines(function)
    numbers = [first + i for i, line in enumerate(lines) if line.strip() == text]
    assert numbers, f'{function.__qualname__} of this Python has no line {text!r}: choose another place'
    fired = []

    def local(frame, event, arg):  # pylint: disable=unused-argument
        if event == 'line' and frame.f_lineno == numbers[0] and not fired:
            fired.append(True)
            signal.raise_signal(signum)
        return local

    def tracer(frame, event, arg):  # pylint: disable=unused-argument
        return local if frame.f_code is function.__code__ else None
    return tracer, fired


@pytest.mark.parametrize('signum, expected', [(signal.SIGTERM, Terminated), (signal.SIGINT, KeyboardInterrupt)])
def test_a_signal_inside_condition_wait_leaves_the_lock_whole(signum, expected):
    """The defect: "RuntimeError: release unlocked lock" out of Event.wait when the handler raised
    between Condition.wait's release of the lock and its try."""
    event = threading.Event()
    tracer, fired = _signal_on_line(threading.Condition.wait, 'gotit = False', signum)
    with _termination.terminate_on('SIGINT', 'SIGTERM'):
        sys.settrace(tracer)
        try:
            started = time.monotonic()
            with pytest.raises(expected):
                waits.wait_event(event, 5)
        finally:
            sys.settrace(None)
        elapsed = time.monotonic() - started
    assert fired
    assert elapsed < 1.0, elapsed                 # the next slice raised it
    assert not event._cond._is_owned()  # pylint: disable=protected-access  # nobody holds it ...
    event.set()                                   # ... and it still works
    assert waits.wait_event(event, 1)


def test_a_signal_inside_a_lock_holding_call_does_not_interrupt_it():
    """A library call that holds a lock (a logging handler's emit) runs to its end; the signal is
    raised afterwards, by the wait."""
    lock = threading.Lock()
    finished = []

    def emit():
        with lock:
            signal.raise_signal(signal.SIGTERM)    # the handler runs inside the locked section
            finished.append(True)

    with _termination.terminate_on('SIGTERM'):
        emit()
        assert finished and not lock.locked()
        with pytest.raises(Terminated) as ended:
            waits.wait_event(threading.Event(), 5)
    assert ended.value.signal_name == 'SIGTERM'


def test_the_handler_only_records_and_each_signal_has_its_exception():
    with _termination.terminate_on('SIGINT', 'SIGTERM'):
        handler = signal.getsignal(signal.SIGTERM)
        assert handler(signal.SIGTERM, None) is None     # returns; raises nothing
        handler(signal.SIGINT, None)                     # a second signal: the first one decides
        for _ in range(2):                               # swallowed once, raised again by the next wait
            with pytest.raises(Terminated) as ended:
                _termination.raise_if_signalled()
        assert ended.value.signum == signal.SIGTERM
    _termination.raise_if_signalled()                    # forgotten with the block
    assert isinstance(_termination.signalled_error(signal.SIGINT), KeyboardInterrupt)
    assert isinstance(_termination.signalled_error(signal.SIGTERM), Terminated)
    assert Terminated(99999).signal_name == 'signal 99999'


def test_sigint_ignored_by_a_shell_stays_ignored():
    """`az ... &` from a non-interactive shell starts with SIGINT ignored: Ctrl+C in that terminal
    is not for it. SIGTERM is still recorded."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with _termination.terminate_on('SIGINT', 'SIGTERM'):
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM).__name__ == '_record_signal'
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.mark.skipif(not hasattr(signal, 'SIGHUP'), reason='no SIGHUP on Windows')
def test_sighup_ignored_by_nohup_stays_ignored():
    """`nohup az webapp remote-connection create &`: a closing terminal must not end the tunnel."""
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with _termination.terminate_on('SIGINT', 'SIGTERM', 'SIGHUP'):
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)


def test_windows_signals_sigbreak_without_sighup(monkeypatch):
    """Windows has SIGBREAK (Ctrl+Break) and no SIGHUP: the block takes the ones there are; a SIGBREAK
    ends the waits as Terminated, like SIGTERM. (SIGUSR2 stands in for SIGBREAK's number here.)"""
    monkeypatch.delattr(signal, 'SIGHUP', raising=False)
    monkeypatch.setattr(signal, 'SIGBREAK', signal.SIGUSR2, raising=False)
    before = signal.getsignal(signal.SIGUSR2)
    with _termination.terminate_on('SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK'):
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2):
            assert signal.getsignal(signum).__name__ == '_record_signal'
        signal.raise_signal(signal.SIGUSR2)
        with pytest.raises(Terminated) as ended:
            waits.wait_event(threading.Event(), 5)
    assert ended.value.signum == signal.SIGUSR2
    assert signal.getsignal(signal.SIGUSR2) == before


def test_windows_lock_waits_not_interrupted_by_ctrl_c_still_end_within_a_slice():
    """On Windows a lock wait goes on through Ctrl+C: Python runs the handler only when the slice
    comes back. Modelled by an event whose wait runs the handler at the end of its slice."""
    class WindowsEvent:
        def __init__(self):
            self.slices = []

        def wait(self, seconds):
            self.slices.append(seconds)
            time.sleep(seconds)
            if len(self.slices) == 3:       # Ctrl+C pressed during the third slice
                signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
            return False

        def is_set(self):
            return False

    event = WindowsEvent()
    with _termination.terminate_on('SIGINT'):
        with pytest.raises(KeyboardInterrupt):
            waits.wait_event(event, 30)
    assert len(event.slices) == 3 and max(event.slices) <= _termination.SLICE


def test_a_stop_is_not_interrupted():
    """The waits that finish a stop ignore the record: a signal while closing must not leave the
    engine's thread behind."""
    done = threading.Event()
    worker = threading.Thread(target=done.wait, args=(0.5,))
    worker.start()
    with _termination.terminate_on('SIGTERM'):
        signal.raise_signal(signal.SIGTERM)
        assert waits.join_thread(worker, None)
        assert waits.wait_event(done, 0.1, interruptible=False) is False
        with pytest.raises(Terminated):
            waits.wait_event(done, 0.1)


def test_sleep_ends_within_a_slice_of_a_signal():
    threading.Timer(0.3, signal.raise_signal, (signal.SIGTERM,)).start()
    with _termination.terminate_on('SIGTERM'):
        started = time.monotonic()
        with pytest.raises(Terminated):
            _termination.sleep(30)
    assert time.monotonic() - started < 0.3 + 2 * _termination.SLICE + 0.3
    started = time.monotonic()
    _termination.sleep(0.05)
    assert time.monotonic() - started >= 0.05


def test_call_in_thread_returns_raises_and_is_left_behind_on_a_signal():
    assert _termination.call_in_thread(lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(ValueError, match='from the thread'):
        _termination.call_in_thread(lambda: (_ for _ in ()).throw(ValueError('from the thread')))
    never = threading.Event()
    threading.Timer(0.3, signal.raise_signal, (signal.SIGINT,)).start()
    with _termination.terminate_on('SIGINT'):
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            _termination.call_in_thread(never.wait)       # a call that never returns by itself
    assert time.monotonic() - started < 0.3 + 2 * _termination.SLICE + 0.3
    never.set()


def test_fan_out_ends_every_instance_on_a_signal(monkeypatch):
    """The fan-out's main thread waits in slices: a recorded SIGTERM ends it, and each instance's
    own wait (here: a model of open_tunnel's) ends with it."""
    ended = []

    def one(self, name):  # pylint: disable=unused-argument
        try:
            waits.wait_event(threading.Event(), 30)     # an instance still starting up
        finally:
            ended.append(name)

    monkeypatch.setattr(_fanout.FanOut, '_one', one)
    fan_out = _fanout.SshFanOut(None, ['i0', 'i1'], 'ssh', [], 'known_hosts', True, None)
    threading.Timer(0.3, signal.raise_signal, (signal.SIGTERM,)).start()
    with _termination.terminate_on('SIGTERM'):
        started = time.monotonic()
        with pytest.raises(Terminated):
            fan_out.run()
    assert time.monotonic() - started < 0.3 + 2 * _termination.SLICE + 0.5
    assert sorted(ended) == ['i0', 'i1'] and fan_out.cancelled.is_set()
