"""Termination is a state no `except` can eat (issue: SIGTERM sometimes swallowed, az never exits).

The handler once raised an ordinary Exception; landing inside an `except Exception` (the guard
around an event callback, a logging handler) it was dropped and the tunnel served on. Then it
raised a BaseException, which could land inside a lock's wait and break the lock. Now it only
records the signal and serve()'s wait raises it. These tests make the signal land exactly in those
places, every time, on both engines."""
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from azext_webapp import _termination
from tests.fixtures_engine import ROOT, cli_env


def _open_and_close(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10):
        pass


def _serve_until_terminated(tunnel_, timeout=10, expected=_termination.Terminated):
    started = time.monotonic()
    with pytest.raises(expected) as ended:
        tunnel_.serve(timeout=timeout)
    return ended.value, time.monotonic() - started


@pytest.mark.parametrize("signum, expected", [(signal.SIGTERM, _termination.Terminated),
                                              (signal.SIGINT, KeyboardInterrupt)])
def test_a_signal_inside_an_event_callback_ends_serve(make_tunnel, signum, expected):
    fired = []

    def on_event(event):  # pylint: disable=unused-argument
        if not fired:                           # once: later events come after the handler is gone
            fired.append(event)
            os.kill(os.getpid(), signum)        # the handler runs here, inside Tunnel._deliver

    with _termination.terminate_on("SIGINT", "SIGTERM"):
        t = make_tunnel(on_event=on_event)
        t.start()
        _open_and_close(t.port)
        _, elapsed = _serve_until_terminated(t, expected=expected)
    assert fired
    assert elapsed < 2, elapsed


def test_sigterm_inside_a_catch_all_callback_still_ends_serve(make_tunnel):
    """Code that catches BaseException around the signal has nothing to catch (the handler only
    records), and the tunnel does not forget the signal."""
    swallowed, fired = [], []

    def on_event(event):  # pylint: disable=unused-argument
        if not fired:
            fired.append(event)
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
            except BaseException as err:  # pylint: disable=broad-except
                swallowed.append(err)

    with _termination.terminate_on("SIGTERM"):
        t = make_tunnel(on_event=on_event)
        t.start()
        _open_and_close(t.port)
        ended, elapsed = _serve_until_terminated(t)
    assert fired and not swallowed
    assert ended.signum == signal.SIGTERM
    assert elapsed < 2, elapsed


def test_sigterm_inside_a_logging_handler_ends_serve(make_tunnel):
    class SignalOnEmit(logging.Handler):
        fired = False

        def emit(self, record):
            if "connection" in record.getMessage() and not self.fired:
                self.fired = True
                os.kill(os.getpid(), signal.SIGTERM)

    log = logging.getLogger("webapp-test-events")
    handler = SignalOnEmit()
    log.addHandler(handler)
    log.propagate = False
    try:
        with _termination.terminate_on("SIGTERM"):
            t = make_tunnel(on_event=lambda event: log.warning("connection %s", event.kind))
            t.start()
            _open_and_close(t.port)
            _, elapsed = _serve_until_terminated(t)
    finally:
        log.removeHandler(handler)
    assert elapsed < 2, elapsed


def test_leaving_terminate_on_restores_the_handler_and_forgets_the_signal():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(_termination.Terminated):
        with _termination.terminate_on("SIGTERM", "SIGNOTONTHISPLATFORM"):
            os.kill(os.getpid(), signal.SIGTERM)
            _termination.sleep(1)
    assert signal.getsignal(signal.SIGTERM) is before
    _termination.raise_if_signalled()   # nothing recorded any more


def test_standalone_sigterm_during_the_handshake_check_exits_cleanly(engine_env):
    """An SCM site that accepts TCP and never answers: SIGTERM while check() waits ends the
    standalone entry within a second, with status 0, not by the signal's default action."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "-m", "azext_webapp.tunnel", f"https://localhost:{port}"],
                                cwd=ROOT, env=cli_env(engine_env), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        silent.settimeout(20)
        held = None
        try:
            held, _ = silent.accept()     # kept open and silent
            time.sleep(0.3)        # inside check() by now: the TLS handshake waits for an answer
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=10)
            elapsed = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if held is not None:
                held.close()
    assert proc.returncode == 0, (proc.returncode, err.decode())
    assert elapsed < 1.0, elapsed
    assert b"Port" not in out
