"""Every failure becomes a typed, actionable exception without the credential in it."""
import socket

import pytest

from azext_webapp import tunnel
from tests.connect_proxy import AuthProxy
from tests.fixtures_engine import BASIC_USER, basic_auth, free_port

SECRET = "s3cret-never-shown"


def _assert_clean(err, authorization):
    text = str(err) + repr(err)
    assert authorization not in text and SECRET not in text
    assert "\n" not in str(err)


def test_wrong_basic_password_is_auth_error_naming_basic(make_tunnel):
    auth = basic_auth(BASIC_USER, SECRET)
    t = make_tunnel(authorization=auth)
    t.start()
    with pytest.raises(tunnel.AuthenticationError) as info:
        t.check()
    assert info.value.status == 401 and info.value.kind == "auth"
    assert "Basic" in str(info.value)
    _assert_clean(info.value, auth)
    assert auth not in repr(t)


def test_wrong_bearer_token_is_auth_error_naming_bearer(make_tunnel):
    auth = "Bearer " + SECRET
    t = make_tunnel(authorization=auth)
    t.start()
    with pytest.raises(tunnel.AuthenticationError) as info:
        t.check()
    assert "Bearer" in str(info.value)
    _assert_clean(info.value, auth)


def test_untrusted_ca_is_certificate_error(make_tunnel):
    t = make_tunnel(site="untrusted-site")
    t.start()
    with pytest.raises(tunnel.CertificateError) as info:
        t.check()
    assert "not trusted" in str(info.value) and "localhost" in str(info.value)


def test_wrong_host_name_is_certificate_error(make_tunnel):
    t = make_tunnel(site="wronghost-site")
    t.start()
    with pytest.raises(tunnel.CertificateError) as info:
        t.check()
    assert "another host name" in str(info.value) and "localhost" in str(info.value)


def test_verification_off_accepts_untrusted(make_tunnel, monkeypatch, caplog):
    monkeypatch.setenv("AZURE_CLI_DISABLE_CONNECTION_VERIFICATION", "1")
    monkeypatch.setattr(tunnel, "_verification_warned", False)   # warned once per process
    t = make_tunnel(site="untrusted-site")
    assert "verification is disabled" in caplog.text
    t.start()
    t.check()


def test_closed_port_is_connection_error(engine_env):
    t = tunnel.Tunnel(f"https://127.0.0.1:{free_port()}", basic_auth())
    try:
        t.start()
        with pytest.raises(tunnel.ConnectionFailedError) as info:
            t.check()
        assert info.value.kind == "connect"
    finally:
        t.stop()


def test_busy_local_port_names_the_port(make_tunnel):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        t = make_tunnel(port=port)
        with pytest.raises(tunnel.PortInUseError) as info:
            t.start()
        assert str(port) in str(info.value) and info.value.kind == "bind"


def test_refused_upgrade_is_http_error(make_tunnel):
    t = make_tunnel(site="refuse-site")
    t.start()
    with pytest.raises(tunnel.HTTPStatusError) as info:
        t.check()
    assert info.value.status == 502


def test_unresolvable_host_is_dns_error(engine_env):
    t = tunnel.Tunnel("https://no-such-host.invalid", basic_auth())
    try:
        t.start()
        with pytest.raises((tunnel.NameResolutionError, tunnel.TunnelTimeout)):
            t.check(timeout=10)
    finally:
        t.stop()


def test_failed_connection_is_reported_not_fatal(make_tunnel):
    t = make_tunnel(authorization=basic_auth(BASIC_USER, SECRET))
    t.start()
    with socket.create_connection(("127.0.0.1", t.port)) as c:
        c.settimeout(10)
        assert c.recv(10) == b""  # the local client is closed, the tunnel keeps listening
    events = []
    for _ in range(100):
        events += t.poll_events()
        if events:
            break
        t._engine.wait(0.1)
    assert events and events[0].kind == "failed" and "refused the credentials" in events[0].message
    assert t.running and t.stats()["failures"] == 1


def test_probes(engine_env):
    status = tunnel.get_status(engine_env.url(), basic_auth())
    assert status == tunnel.ScmStatus("STARTED", True, 2222, "")
    tunnel.warm_up(engine_env.url(), basic_auth())
    with pytest.raises(tunnel.AuthenticationError):
        tunnel.get_status(engine_env.url(), basic_auth(BASIC_USER, SECRET))
    with pytest.raises(tunnel.CertificateError):
        tunnel.warm_up(engine_env.url("untrusted-site"), basic_auth())
    with pytest.raises(tunnel.CertificateError) as info:
        tunnel.warm_up(engine_env.url("wronghost-site"), basic_auth())
    assert "another host name" in str(info.value)
    with pytest.raises(tunnel.ConnectionFailedError):
        tunnel.warm_up(f"https://127.0.0.1:{free_port()}", basic_auth())


def test_proxy_unreachable_is_proxy_error(engine_env, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(tunnel.ProxyError):
        tunnel.warm_up(engine_env.url(), basic_auth())
    t = tunnel.Tunnel(engine_env.url(), basic_auth())
    try:
        t.start()
        with pytest.raises(tunnel.ProxyError):
            t.check()
    finally:
        t.stop()


def test_no_proxy_bypasses_the_proxy(engine_env, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("NO_PROXY", "example.com,localhost")
    tunnel.warm_up(engine_env.url(), basic_auth())
    t = tunnel.Tunnel(engine_env.url(), basic_auth())
    try:
        t.start()
        t.check()
    finally:
        t.stop()


def test_lowercase_http_proxy_is_not_used_by_the_websocket(engine_env, monkeypatch):
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
    t = tunnel.Tunnel(engine_env.url(), basic_auth())
    try:
        t.start()
        t.check()
    finally:
        t.stop()


@pytest.mark.parametrize("host,no_proxy,expected", [
    ("a.example.com", "example.com", True), ("a.example.com", ".example.com", True),
    ("example.com", "example.com", True), ("badexample.com", "example.com", False),
    ("10.1.2.3", "10.0.0.0/8", True), ("10.1.2.3", "11.0.0.0/8", False), ("x", "*", True),
    ("localhost", "localhost:443", True), ("localhost", "localhost:8443", False),
])
def test_no_proxy_matching(host, no_proxy, expected):
    assert tunnel._no_proxy_matches(host, 443, no_proxy) is expected


@pytest.mark.parametrize("status", [200, 403])
def test_proxy_connect_is_used_and_a_refusal_is_proxy_error(engine_env, monkeypatch, status):
    proxy = AuthProxy(mode="open" if status == 200 else "refuse")
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    t = tunnel.Tunnel(engine_env.url(), basic_auth())
    try:
        t.start()
        if status == 200:
            t.check()
        else:
            with pytest.raises(tunnel.ProxyError) as info:
                t.check()
            assert "refused" in str(info.value) and "403" in str(info.value)
    finally:
        t.stop()
        proxy.close()
    assert proxy.requests and proxy.requests[0].startswith("CONNECT localhost:")
