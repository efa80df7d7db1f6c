"""Fast tier: the pure parts of the trust fixes (no sandbox, no root, no network)."""
import base64
import logging
import threading

import pytest

from azext_webapp import _renewal, ssh, tunnel
from azext_webapp._events import EventReporter


# -- token renewal ------------------------------------------------------------------------------

@pytest.mark.parametrize('left,expected', [
    (4500, 600),      # a fresh 75-minute token: look again in 10 minutes
    (400, 50),        # half the time to MSAL's renewal point
    (301, 5),         # never more often than every 5 s
    (100, 5),         # past the point: MSAL hands out a new one, ask now-ish
])
def test_next_wait_closes_in_on_msal_renewal(left, expected):
    assert _renewal.next_wait(1000 + left, 1000) == expected


def test_renewal_applies_only_a_later_token_and_reports_failure_once(caplog):
    answers = [('Bearer same', 1000.0), RuntimeError('AADSTS700082: refresh token expired'),
               RuntimeError('again'), ('Bearer fresh', 5000.0)]
    applied = []

    def fetch():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    renewal = _renewal.TokenRenewal(fetch, applied.append, expires_on=1000.0, clock=lambda: 900.0)
    with caplog.at_level(logging.INFO):
        assert renewal.renew_once() == _renewal.SHORTEST_WAIT      # same expiry: nothing applied
        assert renewal.renew_once() == _renewal.RETRY_AFTER_FAILURE
        assert renewal.renew_once() == _renewal.RETRY_AFTER_FAILURE
        renewal.renew_once()
    assert applied == ['Bearer fresh']
    assert renewal.expires_on == 5000.0 and renewal.renewals == 1
    failures = [r for r in caplog.records if 'Could not renew' in r.getMessage()]
    assert len(failures) == 1 and 'AADSTS700082' in failures[0].getMessage()
    assert 'az login' in failures[0].getMessage()
    assert all('Bearer' not in r.getMessage() for r in caplog.records)


def test_renewal_thread_stops_promptly():
    fetched = threading.Event()
    renewal = _renewal.TokenRenewal(lambda: fetched.set() or ('Bearer x', 0), lambda value: None,
                                    expires_on=0, clock=lambda: 10_000.0).start()
    assert fetched.wait(_renewal.SHORTEST_WAIT + 2)
    renewal.stop()
    assert not renewal._thread.is_alive()  # pylint: disable=protected-access
    assert 'Bearer' not in repr(renewal)


# -- events after start -------------------------------------------------------------------------

def _event(kind, reason='', facts=None, bytes_down=0, remote_closed=False):
    return tunnel.TunnelEvent(kind, 7, '127.0.0.1:5000', 10, bytes_down, reason, facts, remote_closed)


def test_each_reason_of_failure_is_warned_once(caplog):
    reporter = EventReporter(lambda reason, facts: f"{reason} {facts.get('status')}", lambda: 'silent container')
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            reporter(_event('failed', 'auth_refused', {'host': 'h', 'status': 401}))
            reporter(_event('closed', remote_closed=True))
        reporter(_event('failed', 'tls_untrusted', {'host': 'h'}))
        reporter(_event('closed', remote_closed=False))            # the local client hung up
        reporter(_event('closed', remote_closed=True, bytes_down=5))  # a session that ended
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ['auth_refused 401', 'silent container', 'tls_untrusted None']
    assert len([r for r in caplog.records if r.levelno == logging.INFO]) == 9
    failed = [r.getMessage() for r in caplog.records if 'failed:' in r.getMessage()]
    assert failed[0] == 'Connection 7 from 127.0.0.1:5000 failed: h refused the credentials (HTTP 401)'


def test_an_event_derives_kind_status_and_words_from_reason_and_facts():
    event = _event('failed', 'proxy_refused', {'proxy': 'p:1', 'host': 'h', 'port': 443, 'status': 403})
    assert (event.error_kind, event.status) == ('proxy', 403)
    assert event.message == 'the proxy p:1 refused to CONNECT to h:443 (HTTP 403)'
    assert (_event('closed').error_kind, _event('closed').status, _event('closed').message) == ('', 0, '')


# -- proxy settings -----------------------------------------------------------------------------

@pytest.mark.parametrize('url,user,password', [
    ('http://alice:s3cret@proxy.corp:3128', 'alice', 's3cret'),
    ('http://alice:p%40ss%3Aw%25rd@proxy.corp:3128', 'alice', 'p@ss:w%rd'),
    ('http://alice:p@ss:w@proxy.corp:3128', 'alice', 'p@ss:w'),
    ('http://dom%5Calice:pw@proxy.corp:3128', 'dom\\alice', 'pw'),
])
def test_proxy_credentials_travel_apart_from_the_address(monkeypatch, url, user, password):
    monkeypatch.setenv('HTTPS_PROXY', url)
    monkeypatch.delenv('NO_PROXY', raising=False)
    monkeypatch.delenv('no_proxy', raising=False)
    setting = tunnel._proxy_for('site.scm.example', 443)  # pylint: disable=protected-access
    assert setting.address == 'proxy.corp:3128'
    assert base64.b64decode(setting.authorization.split()[1]).decode() == f'{user}:{password}'
    assert password not in repr(setting) and setting.authorization not in repr(setting)


def test_proxy_errors_name_host_and_port_only(monkeypatch):
    monkeypatch.setenv('HTTPS_PROXY', 'socks5://alice:s3cret@proxy.corp:1080')
    with pytest.raises(tunnel.ProxyError) as err:
        tunnel._proxy_for('site.scm.example', 443)  # pylint: disable=protected-access
    assert 'proxy.corp:1080' in str(err.value) and 's3cret' not in str(err.value)
    monkeypatch.setenv('HTTPS_PROXY', 'http://alice:s3cret@proxy.corp:notaport')
    with pytest.raises(tunnel.ProxyError) as err:
        tunnel._proxy_for('site.scm.example', 443)  # pylint: disable=protected-access
    assert 's3cret' not in str(err.value)


def test_ipv6_proxy_address_is_bracketed(monkeypatch):
    monkeypatch.setenv('HTTPS_PROXY', 'http://[::1]:8080')
    assert tunnel._proxy_for('x.example', 443).address == '[::1]:8080'  # pylint: disable=protected-access


def test_verification_warning_is_given_once_per_process(monkeypatch, caplog):
    monkeypatch.setenv('AZURE_CLI_DISABLE_CONNECTION_VERIFICATION', '1')
    monkeypatch.setattr(tunnel, '_verification_warned', False)
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            assert tunnel._tls_settings() == (None, False)  # pylint: disable=protected-access
    assert len([r for r in caplog.records if 'verification is disabled' in r.getMessage()]) == 1


# -- known_hosts look-up ------------------------------------------------------------------------

def test_known_host_finds_plain_and_hashed_entries(tmp_path):
    import hashlib
    import hmac
    salt = b'0123456789abcdefghij'
    digest = hmac.new(salt, b'app.scm.example', hashlib.sha1).digest()
    hashed = f'|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}'
    path = tmp_path / 'known_hosts'
    path.write_text(f'# comment\nother,plain.example ssh-ed25519 AAAA\n{hashed} ssh-ed25519 AAAA\n')
    assert ssh.known_host(str(path), 'plain.example')
    assert ssh.known_host(str(path), 'app.scm.example')
    assert not ssh.known_host(str(path), 'app2.scm.example')
    assert not ssh.known_host(str(tmp_path / 'missing'), 'plain.example')


def test_no_open_file_limit_to_raise_on_windows(monkeypatch):
    """Windows has no `resource` module: the limit step is skipped, nothing else changes."""
    monkeypatch.setitem(__import__('sys').modules, 'resource', None)     # import resource -> ImportError
    monkeypatch.setattr(tunnel, '_fd_limit_checked', False)
    tunnel._raise_fd_limit()  # pylint: disable=protected-access
    assert tunnel._fd_limit_checked  # pylint: disable=protected-access


def test_terminate_on_takes_only_the_signals_this_platform_has(monkeypatch):
    """On Windows there is no SIGHUP; SIGBREAK exists there only."""
    import signal
    monkeypatch.delattr(signal, 'SIGHUP', raising=False)
    from azext_webapp import _termination
    with _termination.terminate_on('SIGTERM', 'SIGHUP', 'SIGBREAK'):
        assert signal.getsignal(signal.SIGTERM).__name__ == '_record_signal'
