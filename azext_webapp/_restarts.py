"""A tunnel left open across an app restart: new connections wait while the app comes back, then go
through.

While an app restarts, its SCM site first answers every request with the front end's 502 or 503, then
GetStatus reads STARTING (or STARTED with canReachPort false) while the container starts, and a
WebSocket to the container port is accepted and closed at once, before a byte, until its sshd listens
(docs/PROTOCOL.md section 2, "Restarts"). The engine holds such a connection instead of ending it
(``hold=True``, Contract 1: its client stays connected, what the client sent is kept) and says so with
a "held" event. ``RestartWatch`` decides, from GetStatus, what becomes of the held connections: on a
thread of its own it asks once a second (each answer within ``PROBE_TIMEOUT``) and

- while the site restarts (502/503, STARTING, or STARTED with canReachPort false once either was
  seen), says once per restart that the instance is restarting, and asks again;
- once the container answers (STARTED, canReachPort true), lets them retry, and says it is back;
- when this is no restart (the app is stopped, nothing has listened for ``SETTLE_PROBES`` answers and
  nothing says it is starting, or the probe fails otherwise), lets them end as they would have: the
  tunnel's usual warnings say why. Nothing listening gets a few answers because a restart can show
  STARTED before the container's sshd listens, without a STARTING the probe saw;
- after ``MAX_WAIT`` seconds of one restart, ends them (their clients see the connection close) and
  says so; the listener stays, and the next connection waits anew.

Its thread only probes, waits and calls ``release``, which any thread may; it ends at ``stop()`` within
a wait slice. A signal recorded for the main thread ends its probe too (``_termination``); the main
thread then ends the tunnel.
"""
import threading
import time
from typing import Any, Callable, Optional, Type

from knack.log import get_logger

from azext_webapp import _termination

logger = get_logger(__name__)

MAX_WAIT = 120.0        # seconds one restart may take before the waiting connections are closed
INTERVAL = 1.0          # between two GetStatus probes, as the reference polls a starting app
PROBE_TIMEOUT = 10.0
RESTARTING_STATUS = (502, 503)  # the front end's answers while the site restarts
STOP_WAIT = 0.5
SETTLE_PROBES = 3       # answers of "started, nothing listens" before the connections end

RESTARTING, BACK, NOT_RESTARTING, STOPPED = 'restarting', 'back', 'not restarting', 'stopped'
NOT_LISTENING = 'not listening'


def verdict(probe: Callable[[], Any], restart_seen: bool, tunnel_error: Type[Exception]) -> str:
    """What one GetStatus says about a restart. restart_seen: an earlier answer of this restart did."""
    try:
        status = probe()
    except tunnel_error as err:
        if getattr(err, 'reason', None) == 'http_status' and getattr(err, 'status', None) in RESTARTING_STATUS:
            return RESTARTING
        logger.info('GetStatus while connections wait: %s', err)
        return NOT_RESTARTING
    state = (status.state or '').upper()
    logger.debug('GetStatus while connections wait: state=%s canReachPort=%s', state, status.can_reach_port)
    if state == 'STARTING':
        return RESTARTING
    if state == 'STOPPED':
        return STOPPED
    if status.can_reach_port:
        return BACK
    return RESTARTING if restart_seen else NOT_LISTENING


class RestartWatch:
    """See the module docstring. release(retry) is the engine's; probe() -> ScmStatus raises the
    tunnel's errors (tunnel_error); say(what, seconds) words one of 'restarting', 'back', 'gave up',
    'stopped', 'failed' (_errors.restart_words)."""

    def __init__(self, release: Callable[[bool], None], probe: Callable[[], Any], say: Callable[[str, float], str],
                 tunnel_error: Type[Exception], max_wait: float = MAX_WAIT, interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._release = release
        self._probe = probe
        self._say = say
        self._tunnel_error = tunnel_error
        self.max_wait = max_wait
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._held = 0                  # "held" events seen, ever
        self._thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()

    def held(self, event: Any) -> None:  # pylint: disable=unused-argument
        """A connection was held (the engine's "held" event, on the thread that delivers events)."""
        with self._lock:
            self._held += 1
            if self._thread is not None or self._stopping.is_set():
                return
            self._thread = threading.Thread(target=self._run, name='webapp-restart-watch', daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """No more decisions (the tunnel is being stopped, which ends what is held). A probe under way
        is not waited for beyond a slice: the engine ignores a late release once stopped."""
        self._stopping.set()
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=STOP_WAIT)

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    seen = self._held
                self._one_restart()
                with self._lock:
                    if self._held == seen or self._stopping.is_set():
                        self._thread = None
                        return
                # held meanwhile, perhaps after the release reached the engine: look again
        except (KeyboardInterrupt, _termination.Terminated):
            pass    # a recorded signal, raised by a probe's wait: the main thread ends the tunnel
        except Exception:  # pylint: disable=broad-except  # a thread's last guard: nothing is left held
            logger.warning('%s', self._say('failed', 0.0))
            logger.debug('The restart watch failed', exc_info=True)
            self._release(False)
        with self._lock:
            self._thread = None

    def _one_restart(self) -> None:
        """Probe until the held connections may go, then release them (one way or the other)."""
        started = self._clock()
        said = False
        not_listening = 0
        while not self._stopping.is_set():
            outcome = verdict(self._probe, said, self._tunnel_error)
            waited = self._clock() - started
            if outcome == BACK:
                if said:
                    logger.warning('%s', self._say('back', waited))
                self._release(True)
                return
            if outcome == NOT_LISTENING:
                not_listening += 1
                if not_listening < SETTLE_PROBES:
                    self._stopping.wait(self._interval)
                    continue
                outcome = NOT_RESTARTING
            if outcome in (NOT_RESTARTING, STOPPED):
                if outcome == STOPPED:
                    logger.warning('%s', self._say('stopped', waited))
                self._release(False)
                return
            if not said:
                said = True
                logger.warning('%s', self._say('restarting', self.max_wait))
            if waited + self._interval > self.max_wait:
                logger.warning('%s', self._say('gave up', self.max_wait))
                self._release(False)
                return
            self._stopping.wait(self._interval)
