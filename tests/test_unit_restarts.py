"""Fast tier: what becomes of the connections an engine holds while the app restarts (_restarts.py), from
the GetStatus answers alone: a probe that plays a script, a release that records, no engine, no az."""
import threading
from types import SimpleNamespace

import pytest

from azext_webapp import _errors, _restarts
from azext_webapp._arm import Target
from azext_webapp._events import EventReporter
from azext_webapp._restarts import BACK, NOT_LISTENING, NOT_RESTARTING, RESTARTING, STOPPED, RestartWatch, verdict

APP = Target('rg', 'app', None)


class TunnelError(Exception):
    def __init__(self, reason, status=None):
        super().__init__(reason)
        self.reason, self.status = reason, status


def status(state, reachable=False):
    return SimpleNamespace(state=state, can_reach_port=reachable, port=2222)


def answer(item):
    def probe():
        if isinstance(item, Exception):
            raise item
        return item
    return probe


@pytest.mark.parametrize('item, seen, expected', [
    (TunnelError('http_status', 503), False, RESTARTING),
    (TunnelError('http_status', 502), False, RESTARTING),
    (TunnelError('http_status', 500), False, NOT_RESTARTING),
    (TunnelError('auth_refused', 401), True, NOT_RESTARTING),
    (status('STARTING'), False, RESTARTING),
    (status('Starting'), False, RESTARTING),
    (status('STARTED', True), True, BACK),
    (status('STARTED', False), True, RESTARTING),       # started, sshd not listening yet
    (status('STARTED', False), False, NOT_LISTENING),   # nothing says it restarts: nothing listens (yet)
    (status('STOPPED'), True, STOPPED),
])
def test_one_answer(item, seen, expected):
    assert verdict(answer(item), seen, TunnelError) == expected


class Script:
    """Plays GetStatus answers in order (the last one again and again), on a clock of its own: each
    probe is one second later."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.now = 0.0
        self.probes = 0

    def probe(self):
        self.probes += 1
        self.now += 1.0
        item = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer(item)()

    def clock(self):
        return self.now


def run(script, max_wait=120.0, held=1):
    """The releases and the words a watch gave for `held` connections held at once."""
    releases, words, done = [], [], threading.Event()

    def release(retry):
        releases.append(retry)
        done.set()

    def say(what, seconds):
        words.append((what, int(seconds)))
        return f'{what} {int(seconds)}'
    watch = RestartWatch(release, script.probe, say, TunnelError, max_wait=max_wait, interval=0.0,
                         clock=script.clock)
    for _ in range(held):
        watch.held(object())
    assert done.wait(10)
    watch.stop()
    return releases, words


def test_a_restart_is_said_once_and_the_connections_go_through_when_it_is_back():
    script = Script(TunnelError('http_status', 503), TunnelError('http_status', 503), status('STARTING'),
                    status('STARTED', False), status('STARTED', True))
    releases, words = run(script, held=3)
    assert releases == [True]
    assert words == [('restarting', 120), ('back', 5)]


def test_nothing_listening_and_nothing_restarting_ends_them_after_a_few_answers_quietly():
    script = Script(status('STARTED', False))
    releases, words = run(script)
    assert releases == [False] and words == [] and script.probes == _restarts.SETTLE_PROBES


def test_an_sshd_that_listens_a_moment_after_started_lets_them_through():
    """A restart the probe first sees as "started, nothing listens" (sshd starts after the app)."""
    releases, words = run(Script(status('STARTED', False), status('STARTED', False), status('STARTED', True)))
    assert releases == [True] and words == []


def test_nothing_listening_then_starting_is_a_restart():
    releases, words = run(Script(status('STARTED', False), status('STARTING'), status('STARTED', False),
                                 status('STARTED', False), status('STARTED', False), status('STARTED', True)))
    assert releases == [True] and words == [('restarting', 120), ('back', 6)]


def test_a_watch_that_fails_closes_what_it_held_and_says_so(caplog):
    releases, ended = [], threading.Event()

    def release(retry):
        releases.append(retry)
        ended.set()

    def probe():
        raise ValueError('a bug')
    watch = RestartWatch(release, probe, lambda what, seconds: f'said {what}', TunnelError, interval=0.0)
    watch.held(object())
    assert ended.wait(5)
    watch.stop()
    assert releases == [False]
    assert 'said failed' in [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']


def test_back_at_the_first_answer_retries_quietly():
    releases, words = run(Script(status('STARTED', True)))
    assert releases == [True] and words == []


def test_a_stopped_app_ends_them_and_says_so():
    releases, words = run(Script(status('STARTING'), status('STOPPED')))
    assert releases == [False] and words == [('restarting', 120), ('stopped', 2)]


def test_any_other_failure_ends_them_as_they_would_have_ended():
    releases, words = run(Script(TunnelError('http_status', 503), TunnelError('auth_refused', 401)))
    assert releases == [False] and words == [('restarting', 120)]


def test_the_bound_ends_the_wait():
    script = Script(status('STARTING'))
    releases, words = run(script, max_wait=30.0)
    assert releases == [False]
    assert words == [('restarting', 30), ('gave up', 30)]
    assert script.now <= 31


def test_held_again_after_the_release_is_looked_at_again():
    """A connection held while the release was on its way, or right after it: a second look."""
    calls = []
    releases = []
    second = threading.Event()

    def probe():
        calls.append(1)
        if len(calls) == 1:
            watch.held(object())        # held meanwhile
        return status('STARTED', True)

    def release(retry):
        releases.append(retry)
        if len(releases) == 2:
            second.set()
    watch = RestartWatch(release, probe, lambda what, seconds: what, TunnelError, interval=0.0)
    watch.held(object())
    assert second.wait(10)
    watch.stop()
    assert releases == [True, True] and len(calls) == 2


def test_stop_ends_the_watch_and_later_holds_start_nothing():
    gate = threading.Event()
    releases = []

    def probe():
        gate.wait(5)
        return status('STARTING')
    watch = RestartWatch(releases.append, probe, lambda what, seconds: what, TunnelError, interval=0.01)
    watch.held(object())
    gate.set()
    watch.stop()
    watch.held(object())
    assert watch._thread is None or not watch._thread.is_alive()  # pylint: disable=protected-access
    assert releases == []


def test_a_recorded_signal_raised_by_a_probe_ends_the_watch_quietly():
    from azext_webapp._termination import Terminated
    ended = threading.Event()

    def probe():
        ended.set()
        raise Terminated(15)
    watch = RestartWatch(lambda retry: None, probe, lambda what, seconds: what, TunnelError, interval=0.0)
    watch.held(object())
    assert ended.wait(5)
    watch.stop()
    assert watch._thread is None  # pylint: disable=protected-access


def test_the_words():
    slot = Target('rg', 'app', 'staging')
    assert _errors.restart_words(APP, 'app-i0', 'restarting', 120) == (
        "Instance 'app-i0' of app 'app' is restarting: new connections wait until it answers again (at most "
        "120 seconds), then go through.")
    assert _errors.restart_words(APP, None, 'back', 14.7) == (
        "The instance of app 'app' this tunnel reaches is back after 14 seconds: the connections that waited go "
        "through.")
    assert 'az webapp log tail -g rg -n app --slot staging' in _errors.restart_words(slot, None, 'gave up', 120)
    assert 'within 120 seconds' in _errors.restart_words(slot, None, 'gave up', 120)
    assert 'az webapp start -g rg -n app --slot staging' in _errors.restart_words(slot, None, 'stopped', 3)
    assert 'Could not tell whether app \'app\' restarts' in _errors.restart_words(APP, None, 'failed', 0)


def test_the_reporter_hands_held_connections_to_the_watch_and_warns_of_nothing(caplog):
    handed = []
    reporter = EventReporter(lambda reason, facts: 'failed', lambda: 'silent', on_held=handed.append)
    event = SimpleNamespace(kind='held', conn_id=3, peer='127.0.0.1:5', message='', reason='', facts=None,
                            remote_closed=True, bytes_down=0)
    reporter(event)
    assert handed == [event]
    assert not [r for r in caplog.records if r.levelname == 'WARNING']


def test_the_bounds_are_the_documented_ones():
    assert _restarts.MAX_WAIT == 120 and _restarts.INTERVAL == 1.0 and _restarts.RESTARTING_STATUS == (502, 503)
