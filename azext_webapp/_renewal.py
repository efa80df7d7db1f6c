"""Keeps a long-running tunnel's Microsoft Entra token valid for its new connections.

Entra access tokens live 60-90 minutes; a tunnel may stay open all afternoon. Each new WebSocket
authenticates on its own, so the engine is handed a fresh token before the old one expires. The
token comes from az's own credential (MSAL and its cache), on a Python thread of its own: the
engine's threads never wait for it, and neither does Ctrl+C.

MSAL hands out its cached token until less than five minutes of it remain, and a new one after
that; so the renewal asks again at shrinking intervals as that point approaches, and the engine
always holds a token with minutes to spare.
"""
import threading
import time

from knack.log import get_logger

logger = get_logger(__name__)

MSAL_REFRESH_WINDOW = 300.0     # seconds before expiry from which MSAL returns a new token
SHORTEST_WAIT = 5.0
LONGEST_WAIT = 600.0
RETRY_AFTER_FAILURE = 30.0


def next_wait(expires_on, now):
    """Seconds until the next request for a token: half the time left before MSAL renews,
    within [SHORTEST_WAIT, LONGEST_WAIT]."""
    return min(LONGEST_WAIT, max(SHORTEST_WAIT, (expires_on - now - MSAL_REFRESH_WINDOW) / 2))


class TokenRenewal:
    """Runs ``fetch() -> (authorization, expires_on)`` on a timer and hands every new value to
    ``apply(authorization)``. A failure is reported once, with what to do, and retried."""

    def __init__(self, fetch, apply, expires_on, clock=time.time):
        self._fetch = fetch
        self._apply = apply
        self._clock = clock
        self.expires_on = float(expires_on)
        self.renewals = 0
        self._failure_reported = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name='webapp-token-renewal', daemon=True)

    def __repr__(self):
        return f'<TokenRenewal expires_on={int(self.expires_on)} renewals={self.renewals}>'

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def _run(self):
        wait = next_wait(self.expires_on, self._clock())
        while not self._stopping.wait(wait):
            wait = self.renew_once()

    def renew_once(self):
        """One request for a token; returns the seconds to wait before the next."""
        try:
            authorization, expires_on = self._fetch()
        except Exception as err:  # pylint: disable=broad-except
            self._report_failure(err)
            return RETRY_AFTER_FAILURE
        if expires_on > self.expires_on:
            self._apply(authorization)
            self.expires_on = float(expires_on)
            self.renewals += 1
            self._failure_reported = False
            logger.info('Renewed the Microsoft Entra token for new connections (valid until %s).',
                        _clock_time(self.expires_on))
        return next_wait(self.expires_on, self._clock())

    def _report_failure(self, err):
        if self._failure_reported:
            return
        self._failure_reported = True
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        logger.warning('Could not renew the Microsoft Entra token of this tunnel (%s). Open connections stay '
                       'open, but new ones will be refused after %s. Sign in again with `az login`; the tunnel '
                       'keeps trying and uses the new sign-in by itself.', first_line, _clock_time(self.expires_on))


def _clock_time(epoch):
    return time.strftime('%H:%M:%S', time.localtime(epoch))
