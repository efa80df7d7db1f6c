"""The SCM server's /webssh/ proxy (issue 16, part A) on the wire.

The web SSH service is stood in for by a stub in this module (a loopback socket server that
records every request head it gets and answers plainly, with a WebSocket 101 and then an echo,
or not at all), so these tests check only what the C server does: auth (credentials, the
session cookie), instance choice, the headers it adds and strips, the raw pass-through both
ways, and its errors and shutdown.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
import selectors
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field

import pytest

from sandbox import pki, wscodec
from sandbox.scm_process import ScmServer
from tests.test_scm_server import dead_port

HOST = "127.0.0.1"
USER, PASSWORD = "$site-a", "publishing-password"
TOKEN = "token-a"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
BEARER = f"Bearer {TOKEN}"
SERVICE_TOKEN = "5e1f" * 16
COOKIE_RE = re.compile(r"WebsshSession=(\d+)\.([0-9a-f]{64}); Path=/webssh; Max-Age=\d+; Secure; HttpOnly; "
                       r"SameSite=Strict")


# --------------------------------------------------------------------------- the stub service
@dataclass
class Seen:
    line: str
    headers: list = field(default_factory=list)     # (name, value) as received

    def get(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]


class Stub:
    """The web SSH service's stand-in; every connection gets a thread.

    GET/POST /webssh/big?size=N: reads the body, answers X-Body-Sha256 and N pattern bytes;
    /webssh/nohead: closes without a word; /webssh/continue: 100 Continue, then reads the
    body and answers; an Upgrade: websocket request: 101, then echoes bytes; else 200 text.
    """

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.bind((HOST, 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.accepted = 0
        self.seen: list[Seen] = []
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            conn.settimeout(30)
            head, rest = wscodec.recv_head(conn.recv)
            if head is None:
                return
            lines = head.decode("latin-1").split("\r\n")
            seen = Seen(lines[0], [(k, v.strip()) for k, _, v in
                                   (ln.partition(":") for ln in lines[1:])])
            self.seen.append(seen)
            path = lines[0].split(" ")[1]
            if (seen.get("upgrade") or [""])[0].lower() == "websocket":
                conn.sendall(wscodec.answer_101(seen.get("sec-websocket-key")[0]) + rest)
                while data := conn.recv(1 << 16):
                    conn.sendall(data)
            elif path.startswith("/webssh/nohead"):
                return
            elif path.startswith(("/webssh/big", "/webssh/continue")):
                if path.startswith("/webssh/continue"):
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                length = int((seen.get("content-length") or ["0"])[0])
                body = bytearray(rest)
                while len(body) < length:
                    data = conn.recv(1 << 20)
                    if not data:
                        return
                    body += data
                size = int(path.partition("size=")[2] or 0)
                conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n"
                             f"X-Body-Sha256: {hashlib.sha256(body).hexdigest()}\r\n"
                             "Connection: close\r\n\r\n".encode())
                conn.sendall(pattern(size))
            else:
                body = f"stub saw {path}".encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: %d\r\nConnection: keep-alive\r\n\r\n" % len(body)
                             + body)

    def close(self):
        self._stop = True
        self.thread.join(5)
        self.lsock.close()


def pattern(n: int) -> bytes:
    return (bytes(range(251)) * (n // 251 + 1))[:n]


# --------------------------------------------------------------------------- the client side
@dataclass
class Response:
    status: int
    headers: list
    body: bytes
    closed: bool            # the server ended the connection after the response

    def get(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]


def _connect(port, ctx):
    raw = socket.create_connection((HOST, port), timeout=10)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(raw, server_hostname=HOST)


def _recv(sock, n=1 << 18):
    try:
        return sock.recv(n)
    except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionResetError):
        return b""


def _read_head(sock, buf: bytearray):
    while b"\r\n\r\n" not in buf:
        data = _recv(sock, 4096)
        if not data:
            raise ConnectionError(f"stream ended inside the head: {bytes(buf)!r}")
        buf += data
    end = buf.index(b"\r\n\r\n")
    head = bytes(buf[:end])
    del buf[:end + 4]
    return wscodec.parse_head(head)


def request(scm, ctx, site, path, headers=(), method="GET", body=b"", check_closed=True):
    """One request with exactly these headers (plus Host); reads the answer and (check_closed)
    whether the connection ends after it."""
    sock = _connect(scm.port(site), ctx)
    with sock:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {site}.scm.sandbox.invalid"]
        lines += [f"{k}: {v}" for k, v in headers]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        buf = bytearray()
        status, hdrs = _read_head(sock, buf)
        while status == 100:
            status, hdrs = _read_head(sock, buf)
        length = int(([v for k, v in hdrs if k.lower() == "content-length"] or ["0"])[0])
        while len(buf) < length:
            data = _recv(sock)
            assert data, "stream ended inside the body"
            buf += data
        sock.settimeout(5)
        closed = check_closed and len(buf) == length and _recv(sock) == b""
        return Response(status, hdrs, bytes(buf[:length]), closed)


def upgrade(scm, ctx, site, path="/webssh/socket", headers=()):
    """A WebSocket handshake through the proxy; (sock, status, headers, bytes after the head)."""
    sock = _connect(scm.port(site), ctx)
    key = wscodec.new_key()
    sock.sendall(wscodec.upgrade_request(path, f"{site}.scm.sandbox.invalid", key,
                                         [("Origin", f"https://{site}.scm.sandbox.invalid"), *headers]))
    buf = bytearray()
    status, hdrs = _read_head(sock, buf)
    if status == 101:
        assert dict((k.lower(), v) for k, v in hdrs)["sec-websocket-accept"] == wscodec.accept_key(key)
    return sock, status, hdrs, buf


def recv_exact(sock, n, buf=None):
    out = bytearray(buf or b"")
    while len(out) < n:
        data = _recv(sock)
        assert data, f"stream ended after {len(out)} of {n} bytes"
        out += data
    return bytes(out)


# --------------------------------------------------------------------------- fixtures
def site(name, instances, **kw):
    s = {"name": name, "basic": [USER, PASSWORD], "bearer": [TOKEN], "state": "STARTED",
         "starting_until": 0, "default_port": 2222, "instances": instances, "fault": None}
    s.update(kw)
    return s


SITES = [
    site("site-a", [{"name": "a-i0", "ports": {"2222": 31001}}]),
    site("site-b", [{"name": "b-i0", "ports": {"2222": 31002}}]),
    site("scaled", [{"name": "sc-i0", "ports": {"2222": 31010}},
                    {"name": "sc-i1", "ports": {"2222": 31011, "8080": 31012}}]),
    site("noport", [{"name": "n-i0", "ports": {"8080": 31020}}]),
    site("bearer-only", [{"name": "bo-i0", "ports": {"2222": 31030}}], basic=None),
]


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return pki.make_ca(tmp_path_factory.mktemp("webssh-pki"))


@pytest.fixture(scope="module")
def ctx(ca):
    return ssl.create_default_context(cafile=str(ca.cert_path))


@pytest.fixture(scope="module")
def stub():
    s = Stub()
    yield s
    s.close()


@pytest.fixture(scope="module")
def scm(tmp_path_factory, ca, stub):
    srv = ScmServer(tmp_path_factory.mktemp("scm-webssh"), SITES, ca=ca,
                    webssh_port=stub.port, webssh_token=SERVICE_TOKEN)
    srv.start()
    yield srv
    srv.stop()
    assert srv.returncode == 0, srv.log()


def session_cookie(resp) -> str:
    (set_cookie,) = resp.get("set-cookie")
    m = COOKIE_RE.fullmatch(set_cookie)
    assert m, set_cookie
    return set_cookie.split(";")[0]


def assert_refused(resp, stub, accepted_before):
    assert resp.status == 401
    assert resp.get("www-authenticate") == ['Basic realm="site"']
    assert resp.get("content-type")[0].startswith("text/plain")
    assert resp.body and resp.closed
    assert resp.get("connection") == ["close"]
    assert not resp.get("set-cookie")
    assert stub.accepted == accepted_before, "a refused request reached the service"


# --------------------------------------------------------------------------- plain requests
def test_plain_get_reaches_the_service_with_its_headers_and_without_secrets(scm, ctx, stub):
    line = "/webssh/host?x=%41&y=a%20b+c"
    before = len(stub.seen)
    r = request(scm, ctx, "site-a", line, [
        ("Authorization", BASIC), ("Cookie", "ARRAffinity=a-i0; other=1"),
        ("X-Webssh-Token", "forged"), ("x-webssh-port", "22"), ("X-Webssh-Site", "elsewhere"),
        ("X-Forwarded-Proto", "http"), ("Connection", "keep-alive"), ("X-Custom", "kept  as is"),
        ("Proxy-Authorization", "Basic c2VjcmV0")])
    assert (r.status, r.body) == (200, b"stub saw /webssh/host?x=%41&y=a%20b+c")
    assert len(stub.seen) == before + 1
    seen = stub.seen[-1]
    assert seen.line == f"GET {line} HTTP/1.1"          # raw, not decoded
    assert seen.get("host") == ["site-a.scm.sandbox.invalid"]
    assert seen.get("x-webssh-token") == [SERVICE_TOKEN]
    assert seen.get("x-webssh-site") == ["site-a"]
    assert seen.get("x-webssh-instance") == ["a-i0"]
    assert seen.get("x-webssh-port") == ["31001"]
    assert seen.get("x-forwarded-proto") == ["https"]
    assert seen.get("connection") == ["close"]
    assert seen.get("x-custom") == ["kept  as is"]
    for secret in ("authorization", "proxy-authorization", "cookie"):
        assert not seen.get(secret), secret
    # the answer: the service's, with the session cookie, and the connection ends after it
    assert COOKIE_RE.fullmatch(r.get("set-cookie")[0])
    expiry = int(COOKIE_RE.fullmatch(r.get("set-cookie")[0]).group(1))
    assert abs(expiry - (time.time() + 8 * 3600)) < 120
    assert r.get("connection") == ["close"]
    assert r.get("content-type") == ["text/plain"]
    assert r.closed


def test_paths_are_matched_decoded_and_case_insensitively(scm, ctx, stub):
    for path in ("/webssh", "/WebSSH/Host", "/%77ebssh/host", "/webssh/"):
        before = len(stub.seen)
        r = request(scm, ctx, "site-a", path, [("Authorization", BASIC)])
        assert r.status == 200, path
        assert stub.seen[before].line == f"GET {path} HTTP/1.1"
    for path in ("/websshx", "/web%73shx", "/x/webssh/host"):
        accepted = stub.accepted
        r = request(scm, ctx, "site-a", path, [("Authorization", BASIC)], check_closed=False)
        assert r.status == 404 and stub.accepted == accepted, path


def test_bearer_is_accepted_and_gets_a_session(scm, ctx):
    for auth in (BEARER, "bearer " + TOKEN):
        r = request(scm, ctx, "site-a", "/webssh/host", [("Authorization", auth)])
        assert r.status == 200
        session_cookie(r)
    r = request(scm, ctx, "bearer-only", "/webssh/host", [("Authorization", BEARER)])
    assert r.status == 200


BAD_AUTH = [None, "Basic " + base64.b64encode(f"{USER}:wrong".encode()).decode(),
            "Basic " + base64.b64encode(b"nobody:" + PASSWORD.encode()).decode(),
            "Basic !!!notbase64", "Bearer wrong-token", "Token " + TOKEN]


@pytest.mark.parametrize("auth", BAD_AUTH)
def test_missing_or_wrong_credentials_are_401_and_never_reach_the_service(scm, ctx, stub, auth):
    accepted = stub.accepted
    headers = [("Authorization", auth)] if auth else []
    assert_refused(request(scm, ctx, "site-a", "/webssh/host", headers), stub, accepted)
    sock, status, hdrs, _ = upgrade(scm, ctx, "site-a", headers=headers)
    sock.close()
    assert status == 401 and ("WWW-Authenticate", 'Basic realm="site"') in hdrs
    assert stub.accepted == accepted


def test_basic_on_a_bearer_only_site_is_401(scm, ctx, stub):
    accepted = stub.accepted
    assert_refused(request(scm, ctx, "bearer-only", "/webssh/host", [("Authorization", BASIC)]),
                   stub, accepted)


# --------------------------------------------------------------------------- the session cookie
def test_the_session_cookie_alone_signs_in_on_its_own_site(scm, ctx, stub):
    cookie = session_cookie(request(scm, ctx, "site-a", "/webssh/host",
                                    [("Authorization", BASIC)]))
    r = request(scm, ctx, "site-a", "/webssh/static/page.js",
                [("Cookie", f"theme=dark; {cookie}; ARRAffinity=a-i0")])
    assert (r.status, r.body) == (200, b"stub saw /webssh/static/page.js")
    assert not r.get("set-cookie"), "only a sign-in with credentials issues a session"
    assert not stub.seen[-1].get("cookie")
    # a second Cookie header works too
    r = request(scm, ctx, "site-a", "/webssh/host", [("Cookie", "a=1"), ("Cookie", cookie)])
    assert r.status == 200
    # and the terminal's WebSocket
    sock, status, hdrs, _ = upgrade(scm, ctx, "site-a", headers=[("Cookie", cookie)])
    with sock:
        assert status == 101
        sock.sendall(b"hello")
        assert recv_exact(sock, 5) == b"hello"
    # not on another site, although its credentials are the same
    accepted = stub.accepted
    assert_refused(request(scm, ctx, "site-b", "/webssh/host", [("Cookie", cookie)]), stub,
                   accepted)


def _tampered(cookie: str):
    name, _, value = cookie.partition("=")
    expiry, _, mac = value.partition(".")
    flip = "0" if mac[-1] != "0" else "1"
    yield f"{name}={expiry}.{mac[:-1]}{flip}"               # another MAC
    yield f"{name}={int(expiry) + 3600}.{mac}"               # a later expiry
    yield f"{name}=0{expiry}.{mac}"                          # the same number, other digits
    yield f"{name}={expiry}.{mac.upper()}"
    yield f"{name}={expiry}.{mac}0"
    yield f"{name}={expiry}{mac}"
    yield f"{name}={expiry}."
    yield f"{name}="
    yield f"websshsession={value}"                           # cookie names are case-sensitive
    yield f"{name}={int(time.time()) - 10}.{mac}"


def test_a_tampered_cookie_is_401(scm, ctx, stub):
    cookie = session_cookie(request(scm, ctx, "site-a", "/webssh/host",
                                    [("Authorization", BASIC)]))
    for bad in _tampered(cookie):
        accepted = stub.accepted
        assert_refused(request(scm, ctx, "site-a", "/webssh/host", [("Cookie", bad)]), stub,
                       accepted)
    # still valid itself
    assert request(scm, ctx, "site-a", "/webssh/host", [("Cookie", cookie)]).status == 200


def test_an_expired_cookie_is_401(tmp_path, ca, ctx, stub):
    with ScmServer(tmp_path, SITES[:1], ca=ca, webssh_port=stub.port, webssh_token=SERVICE_TOKEN,
                   webssh_session_seconds=1) as s:
        r = request(s, ctx, "site-a", "/webssh/host", [("Authorization", BASIC)])
        cookie = session_cookie(r)
        expiry = int(cookie.split("=")[1].split(".")[0])
        assert expiry - time.time() <= 1.5
        assert request(s, ctx, "site-a", "/webssh/host", [("Cookie", cookie)]).status == 200
        time.sleep(max(0.0, expiry - time.time()) + 1.1)
        accepted = stub.accepted
        assert_refused(request(s, ctx, "site-a", "/webssh/host", [("Cookie", cookie)]), stub,
                       accepted)


def test_a_session_does_not_outlive_the_server_process(tmp_path, ca, ctx, stub):
    kw = dict(ca=ca, webssh_port=stub.port, webssh_token=SERVICE_TOKEN)
    with ScmServer(tmp_path / "one", SITES[:1], **kw) as s:
        cookie = session_cookie(request(s, ctx, "site-a", "/webssh/host",
                                        [("Authorization", BASIC)]))
    with ScmServer(tmp_path / "two", SITES[:1], **kw) as s:
        assert request(s, ctx, "site-a", "/webssh/host", [("Cookie", cookie)]).status == 401


# --------------------------------------------------------------------------- instances
def test_instance_query_affinity_and_default(scm, ctx, stub):
    cases = [("/webssh/host?instance=sc-i1", [], "sc-i1", "31011"),
             ("/webssh/host?cols=80&INSTANCE=SC-I1&rows=24", [], "sc-i1", "31011"),
             ("/webssh/host?instance=sc%2Di1", [], "sc-i1", "31011"),
             ("/webssh/host", [("Cookie", "ARRAffinity=sc-i1")], "sc-i1", "31011"),
             ("/webssh/host?instance=sc-i0", [("Cookie", "ARRAffinity=sc-i1")], "sc-i0", "31010"),
             ("/webssh/host", [], "sc-i0", "31010"),
             ("/webssh/host?instance=", [], "sc-i0", "31010")]
    for path, headers, name, port in cases:
        r = request(scm, ctx, "scaled", path, [("Authorization", BASIC), *headers])
        assert r.status == 200, path
        seen = stub.seen[-1]
        assert seen.line == f"GET {path} HTTP/1.1"
        assert (seen.get("x-webssh-instance"), seen.get("x-webssh-port")) == ([name], [port]), path


def test_no_port_2222_mapped_sends_port_0(scm, ctx, stub):
    assert request(scm, ctx, "noport", "/webssh/host", [("Authorization", BASIC)]).status == 200
    assert stub.seen[-1].get("x-webssh-port") == ["0"]
    assert stub.seen[-1].get("x-webssh-instance") == ["n-i0"]


def test_unknown_instance_is_404_naming_the_instances(scm, ctx, stub):
    accepted = stub.accepted
    r = request(scm, ctx, "scaled", "/webssh/host?instance=nope", [("Authorization", BASIC)])
    assert r.status == 404 and r.closed
    assert r.get("content-type")[0].startswith("text/plain")
    assert r.body.decode().strip() == "No instance named nope; this app's instances: sc-i0, sc-i1"
    sock, status, _, _ = upgrade(scm, ctx, "scaled", "/webssh/socket?instance=nope",
                                 [("Authorization", BASIC)])
    sock.close()
    assert status == 404
    assert stub.accepted == accepted


# --------------------------------------------------------------------------- errors
@pytest.fixture(scope="module")
def scm_without_webssh(tmp_path_factory, ca):
    with ScmServer(tmp_path_factory.mktemp("scm-no-webssh"), SITES[:1], ca=ca) as s:
        yield s


def test_without_webssh_in_the_config_it_is_404_as_before(scm_without_webssh, ctx):
    s = scm_without_webssh
    assert request(s, ctx, "site-a", "/webssh/host", [("Authorization", BASIC)],
                   check_closed=False).status == 404
    assert request(s, ctx, "site-a", "/webssh/host", check_closed=False).status == 401
    sock, status, _, _ = upgrade(s, ctx, "site-a", headers=[("Authorization", BASIC)])
    sock.close()
    assert status == 404


def test_service_not_listening_is_502(tmp_path, ca, ctx):
    with ScmServer(tmp_path, SITES[:1], ca=ca, webssh_port=dead_port(),
                   webssh_token=SERVICE_TOKEN) as s:
        r = request(s, ctx, "site-a", "/webssh/host", [("Authorization", BASIC)])
        assert r.status == 502 and r.closed
        assert r.get("content-type")[0].startswith("text/plain")
        assert r.body.decode().strip() == "The web SSH service is not running"
        sock, status, _, _ = upgrade(s, ctx, "site-a", headers=[("Authorization", BASIC)])
        sock.close()
        assert status == 502
        # still unauthenticated first
        assert request(s, ctx, "site-a", "/webssh/host").status == 401


def test_reload_applies_the_webssh_key(tmp_path, ca, ctx, stub):
    with ScmServer(tmp_path, SITES[:1], ca=ca, webssh_port=dead_port(),
                   webssh_token="old") as s:
        assert request(s, ctx, "site-a", "/webssh/host", [("Authorization", BASIC)]).status == 502
        s.webssh_port, s.webssh_token = stub.port, SERVICE_TOKEN
        s.reload()
        assert request(s, ctx, "site-a", "/webssh/host", [("Authorization", BASIC)]).status == 200
        assert stub.seen[-1].get("x-webssh-token") == [SERVICE_TOKEN]
        s.webssh_port = s.webssh_token = None
        s.reload()
        assert request(s, ctx, "site-a", "/webssh/host", [("Authorization", BASIC)],
                       check_closed=False).status == 404


@pytest.mark.parametrize("webssh,message", [
    ('[]', "webssh: expected null or an object"),
    ('{"token": "t"}', "webssh.port"),
    ('{"port": 0, "token": "t"}', "webssh.port"),
    ('{"port": 1}', "webssh.token"),
    ('{"port": 1, "token": ""}', "webssh.token"),
    ('{"port": 1, "token": "a b"}', "webssh.token: visible ASCII"),
    ('{"port": 1, "token": "a\\r\\nX-Webssh-Port: 2"}', "webssh.token: visible ASCII"),
    ('{"port": 1, "token": "t", "session_seconds": 0}', "webssh.session_seconds"),
])
def test_bad_webssh_config_exits_1_with_a_reason(tmp_path, webssh, message):
    from sandbox.scm_process import build
    cfg = tmp_path / "c.json"
    cfg.write_text('{"ready_file": "/tmp/x", "webssh": %s, "sites": [{"name": "a", "cert": "c", '
                   '"key": "k", "instances": [{"name": "i", "ports": {}}]}]}' % webssh)
    binary = os.environ.get("SCM_SERVER_BINARY") or str(build())
    r = subprocess.run([binary, str(cfg)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert message in r.stderr, r.stderr


def test_service_closing_without_an_answer_is_502(scm, ctx):
    r = request(scm, ctx, "site-a", "/webssh/nohead", [("Authorization", BASIC)])
    assert r.status == 502 and r.closed
    assert not r.get("set-cookie")


@pytest.mark.parametrize("bad", ["X-Webssh-Port : 22", " X-Webssh-Port: 22",
                                 "X-Foo: a\nX-Webssh-Port: 22", "X-Foo: a\rX-Webssh-Port: 22"])
def test_a_head_that_could_hide_a_header_is_400(scm, ctx, stub, bad):
    accepted = stub.accepted
    sock = _connect(scm.port("site-a"), ctx)
    with sock:
        sock.sendall(("GET /webssh/host HTTP/1.1\r\nHost: x\r\nAuthorization: " + BASIC +
                      "\r\nX-A: 1\r\n" + bad + "\r\n\r\n").encode())
        status, _ = _read_head(sock, bytearray())
    assert status == 400
    assert stub.accepted == accepted


# --------------------------------------------------------------------------- pass-through
def test_websocket_upgrade_passes_through_both_ways(scm, ctx, stub):
    sock, status, hdrs, early = upgrade(scm, ctx, "site-a", "/webssh/socket?cols=80&rows=24",
                                        [("Authorization", BASIC)])
    with sock:
        assert status == 101
        names = [k.lower() for k, _ in hdrs]
        assert names[0] == "set-cookie", "the cookie goes right after the status line"
        assert COOKIE_RE.fullmatch(hdrs[0][1])
        assert ("Connection", "Upgrade") in hdrs and ("Upgrade", "websocket") in hdrs
        seen = stub.seen[-1]
        assert seen.line == "GET /webssh/socket?cols=80&rows=24 HTTP/1.1"
        assert seen.get("connection") == ["Upgrade"] and seen.get("upgrade") == ["websocket"]
        assert seen.get("sec-websocket-version") == ["13"] and seen.get("sec-websocket-key")
        assert seen.get("origin") == ["https://site-a.scm.sandbox.invalid"]
        assert seen.get("x-webssh-token") == [SERVICE_TOKEN]
        assert not seen.get("authorization")
        # raw bytes, not frames: the proxy leaves the WebSocket alone
        for chunk in (b"\x81\x85abcd\x00\x01\x02\x03\x04", b"x", os.urandom(70000)):
            sock.sendall(chunk)
            assert recv_exact(sock, len(chunk), early) == chunk
            early = b""
        # idle, then on: no idle time-out on a terminal's socket
        time.sleep(1.0)
        sock.sendall(b"still here")
        assert recv_exact(sock, 10) == b"still here"


def test_megabytes_both_ways(scm, ctx, stub):
    # a plain request: a 4 MiB body up, a 3 MB answer down
    body = os.urandom(4 << 20)
    r = request(scm, ctx, "site-a", "/webssh/big?size=3000000",
                [("Authorization", BASIC), ("Content-Length", str(len(body))),
                 ("Content-Type", "application/octet-stream")], method="POST", body=body)
    assert r.status == 200
    assert r.get("x-body-sha256") == [hashlib.sha256(body).hexdigest()]
    assert r.body == pattern(3000000)
    assert stub.seen[-1].get("content-length") == [str(len(body))]
    # a WebSocket stream: 6 MiB echoed while it is still being sent
    data = os.urandom(6 << 20)
    sock, status, _, early = upgrade(scm, ctx, "site-a", headers=[("Authorization", BASIC)])
    with sock:
        assert status == 101
        got = pump(sock, data, early)
    assert got == data


def pump(sock, data: bytes, early=b"", timeout=60.0) -> bytes:
    """Sends data while reading as much back, on one thread: an SSL object is not for two."""
    sock.setblocking(False)
    got, sent = bytearray(early), 0
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ)
        while len(got) < len(data):
            assert time.monotonic() < deadline, f"{sent} sent, {len(got)} back"
            if sent < len(data):
                try:
                    # after a want-write, the same bytes again (OpenSSL's rule)
                    sent += sock.send(data[sent:sent + 65536])
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    pass
            try:
                while True:
                    chunk = sock.recv(1 << 18)
                    assert chunk, f"stream ended after {len(got)} of {len(data)} bytes"
                    got += chunk
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            sel.modify(sock, selectors.EVENT_READ |
                       (selectors.EVENT_WRITE if sent < len(data) else 0))
            sel.select(0.05)
    return bytes(got)


def test_100_continue_then_the_answer_with_the_cookie(scm, ctx, stub):
    body = b"z" * 1000
    sock = _connect(scm.port("site-a"), ctx)
    with sock:
        sock.sendall(("POST /webssh/continue?size=5 HTTP/1.1\r\nHost: x\r\nAuthorization: "
                      f"{BASIC}\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n")
                     .encode())
        buf = bytearray()
        status, hdrs = _read_head(sock, buf)
        assert (status, hdrs) == (100, [])
        sock.sendall(body)
        status, hdrs = _read_head(sock, buf)
        assert status == 200
        assert [k.lower() for k, _ in hdrs][:2] == ["set-cookie", "connection"]
        assert dict(hdrs)["X-Body-Sha256"] == hashlib.sha256(body).hexdigest()
        assert recv_exact(sock, 5, buf) == pattern(5)


# --------------------------------------------------------------------------- shutdown
def test_sigterm_with_a_proxied_websocket_open_exits_at_once(tmp_path, ca, ctx, stub):
    s = ScmServer(tmp_path, SITES[:1], ca=ca, webssh_port=stub.port,
                  webssh_token=SERVICE_TOKEN).start()
    try:
        sock, status, _, _ = upgrade(s, ctx, "site-a", headers=[("Authorization", BASIC)])
        with sock:
            assert status == 101
            sock.sendall(b"x")
            assert recv_exact(sock, 1) == b"x"
            t0 = time.monotonic()
            s.proc.send_signal(signal.SIGTERM)
            assert s.proc.wait(5) == 0
            # not the 1.5 s drain's limit: the proxy saw the stop at once
            assert time.monotonic() - t0 < 1.0
            sock.settimeout(5)
            assert _recv(sock) == b""
    finally:
        s.stop()
