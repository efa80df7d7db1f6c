"""The sandbox's browser SSH service (sandbox/webssh/, issue 16 part B), without a browser.

Directly (with the service's token, as the SCM server's /webssh/ proxy calls it) and through
the real SCM site over TLS with the site's Basic credentials. The page's own behaviour in Chromium
is tests/test_webssh_browser.py's.
"""
from __future__ import annotations

import http.client
import json
import re
import ssl
import time

import paramiko
import pytest
import websocket

from sandbox import Sandbox, procs
from sandbox.webssh import session as webssh_session

TIMEOUT = 30.0          # a bound for every wait, never a pause

# -- a terminal client ------------------------------------------------------------------------


class Term:
    """The page's side of /webssh/socket: collects output and JSON messages until told."""

    def __init__(self, ws: websocket.WebSocket):
        self.ws = ws
        self.output = bytearray()
        self.messages: list = []
        self.close_code = None

    def pump_until(self, done, timeout: float = TIMEOUT):
        """Read frames until done(self) or the socket closes; fails after timeout seconds."""
        deadline = time.monotonic() + timeout
        while not done(self):
            if self.close_code is not None:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"timed out; messages {self.messages}, output tail "
                            f"{bytes(self.output[-400:])!r}")
            self.ws.settimeout(left)
            try:
                op, data = self.ws.recv_data()
            except websocket.WebSocketConnectionClosedException:
                self.close_code = -1
                continue
            except websocket.WebSocketTimeoutException:
                continue        # the deadline check above says what was missing
            if op == websocket.ABNF.OPCODE_BINARY:
                self.output += data
            elif op == websocket.ABNF.OPCODE_TEXT:
                self.messages.append(json.loads(data))
            elif op == websocket.ABNF.OPCODE_CLOSE:
                self.close_code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
        return True

    # conditions
    def state(self, name):
        return lambda t: any(m.get("type") == "status" and m.get("state") == name
                             for m in t.messages)

    @staticmethod
    def errored(t):
        return any(m.get("type") == "error" for m in t.messages)

    @staticmethod
    def line(text):
        return lambda t: text in t.lines()

    def lines(self):
        # Bash's bracketed-paste toggles end in \r, so carriage returns split lines too.
        return [ln.strip() for ln in re.split(r"[\r\n]+", self.output.decode("utf-8", "replace"))]

    def error(self) -> str:
        self.pump_until(self.errored)
        return next(m["message"] for m in self.messages if m.get("type") == "error")

    def send(self, **message):
        self.ws.send(json.dumps(message))

    def run(self, command: str, expect_line: str):
        self.send(type="input", data=command + "\n")
        assert self.pump_until(self.line(expect_line)), (self.messages, bytes(self.output))

    def close(self):
        self.ws.close()


def _direct_headers(sb, app, instance, port, token=None):
    info = sb.app(app)
    return [f"X-Webssh-Token: {sb.webssh.token if token is None else token}",
            f"X-Webssh-Site: {info.site}", f"X-Webssh-Instance: {instance}",
            f"X-Webssh-Port: {port}"]


def direct_term(sb, app, instance=None, port=None, cols=80, rows=24, **kw) -> Term:
    """A terminal on the service itself, with what the proxy would add."""
    inst = instance or sb.app(app).instances[0]
    if port is None:
        port = inst.ports.get(2222, 0)
    where = f"127.0.0.1:{sb.webssh.port}"
    kw.setdefault("origin", f"https://{where}")
    ws = websocket.create_connection(f"ws://{where}/webssh/socket?cols={cols}&rows={rows}",
                                     header=_direct_headers(sb, app, inst, port), timeout=TIMEOUT,
                                     **kw)
    return Term(ws)


def direct_get(sb, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", sb.webssh.port, timeout=TIMEOUT)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


def token_headers(sb, app="linux-app"):
    info = sb.app(app)
    return {"X-Webssh-Token": sb.webssh.token, "X-Webssh-Site": info.site,
            "X-Webssh-Instance": info.instances[0], "X-Webssh-Port": "0"}


# -- the page and its files -------------------------------------------------------------------

def test_page_and_its_files_are_served(sandbox):
    status, headers, body = direct_get(sandbox, "/webssh/host", token_headers(sandbox))
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert 'content="linux-app-i0"' in page and 'id="status"' in page
    for name, kind, marker in (("xterm.js", "javascript", b"Terminal"),
                               ("xterm.css", "css", b".xterm"),
                               ("webssh.js", "javascript", b"window.webssh"),
                               ("webssh.css", "css", b"#terminal")):
        assert f'"static/{name}"' in page
        status, headers, body = direct_get(sandbox, f"/webssh/static/{name}",
                                           token_headers(sandbox))
        assert status == 200 and kind in headers["Content-Type"] and marker in body, name


def test_page_escapes_what_it_is_told(sandbox):
    headers = dict(token_headers(sandbox), **{"X-Webssh-Instance": '"><script>x()</script>'})
    status, _, body = direct_get(sandbox, "/webssh/host", headers)
    assert status == 200 and b"<script>x()" not in body and b"&lt;script&gt;" in body


@pytest.mark.parametrize("token", [None, "", "0" * 64])
@pytest.mark.parametrize("path", ["/webssh/host", "/webssh/static/xterm.js", "/webssh/socket",
                                  "/webssh/nothing"])
def test_without_the_token_everything_is_forbidden(sandbox, token, path):
    headers = {} if token is None else {"X-Webssh-Token": token}
    status, _, body = direct_get(sandbox, path, headers)
    assert status == 403, body


@pytest.mark.parametrize("path", ["/webssh/", "/webssh/nothing", "/webssh/static/host.html",
                                  "/webssh/static/../server.py", "/webssh/static/%2e%2e/server.py",
                                  "/webssh/host/extra", "/other"])
def test_unknown_paths_are_not_found(sandbox, path):
    status, _, _ = direct_get(sandbox, path, token_headers(sandbox))
    assert status == 404


def test_socket_without_upgrade_is_a_bad_request(sandbox):
    headers = dict(token_headers(sandbox), Origin=f"https://127.0.0.1:{sandbox.webssh.port}")
    status, _, _ = direct_get(sandbox, "/webssh/socket", headers)
    assert status == 400


@pytest.mark.parametrize("origin", ["https://evil.example", "http://127.0.0.1:{port}", None])
def test_socket_refuses_another_origin(sandbox, origin):
    kw = {"suppress_origin": True} if origin is None else {
        "origin": origin.format(port=sandbox.webssh.port)}
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        direct_term(sandbox, "linux-app", **kw)
    assert e.value.status_code == 403


# -- the terminal -----------------------------------------------------------------------------

def test_hostname_is_the_instance_and_the_session_ends_with_the_shell(sandbox_sshd):
    term = direct_term(sandbox_sshd, "linux-app")
    try:
        assert term.pump_until(term.state("connected"))
        term.run("hostname", "linux-app-i0")
        term.send(type="input", data="exit\n")
        term.pump_until(lambda t: t.close_code is not None)
        closed = [m for m in term.messages if m.get("state") == "closed"]
        assert closed and "exited with status 0" in closed[0]["message"]
        assert term.close_code == 1000 and not any(m["type"] == "error" for m in term.messages)
    finally:
        term.close()


def test_initial_size_and_resize_reach_stty(sandbox_sshd):
    term = direct_term(sandbox_sshd, "seed-app", cols=91, rows=17)
    try:
        term.run("stty size", "17 91")
        term.send(type="resize", cols=123, rows=45)
        term.run("stty size", "45 123")
    finally:
        term.close()


def test_each_instance_of_a_scaled_app(sandbox_sshd):
    for inst in sandbox_sshd.app("scaled-app").instances:
        term = direct_term(sandbox_sshd, "scaled-app", instance=inst)
        try:
            term.run("hostname", inst.name)
        finally:
            term.close()


def test_a_container_without_the_portals_algorithms(sandbox_sshd):
    term = direct_term(sandbox_sshd, "modern-app")
    message = term.error()
    for name in webssh_session.CIPHERS + webssh_session.MACS:
        assert name in message
    assert "modern-app-i0" in message and "sshd_config" in message
    assert "chacha20-poly1305@openssh.com" in message       # what its sshd offers instead
    term.pump_until(lambda t: t.close_code is not None)
    assert term.close_code == 1011 and not term.state("connected")(term)


def test_a_refused_password(sandbox_sshd):
    message = direct_term(sandbox_sshd, "wrongpw-app").error()
    assert "refused the password for root" in message and "wrongpw-app-i0" in message
    assert "Docker!" not in message


@pytest.mark.parametrize("app", ["nossh-app", "port22-app"])
def test_nothing_listening_on_2222(sandbox, app):
    message = direct_term(sandbox, app).error()
    assert f"Nothing is listening on port 2222 of instance {app}-i0" in message


def test_a_lost_connection_says_so(sandbox_sshd):
    term = direct_term(sandbox_sshd, "linux-app")
    try:
        assert term.pump_until(term.state("connected"))
        # The shell's parent is sshd's process for this connection: killing it drops the TCP.
        term.send(type="input", data="kill -9 $PPID\n")
        message = term.error()
        assert "connection to instance linux-app-i0 was lost" in message
    finally:
        term.close()


@pytest.mark.parametrize("cipher", webssh_session.CIPHERS)
def test_each_offered_cipher_works_here(sandbox_sshd, cipher):
    """paramiko with this cryptography still has every cipher the portal offers (3des-cbc
    lives in cryptography's 'decrepit' corner). The images' sshd takes all six but only two of
    the three MACs (hmac-md5-96 has no sshd here to try against)."""
    port = sandbox_sshd.app("linux-app").instances[0].ssh_port
    t = paramiko.Transport(("127.0.0.1", port))
    try:
        t.get_security_options().ciphers = (cipher,)
        t.get_security_options().digests = ("hmac-sha1-96",)
        t.start_client(timeout=TIMEOUT)
        assert t.remote_cipher == cipher and t.local_cipher == cipher
        t.auth_password("root", "Docker!")
        assert t.is_authenticated()
    finally:
        t.close()


def test_service_and_its_terminals_stop_with_the_sandbox(tmp_path):
    sb = Sandbox(str(tmp_path / "sb"))
    with sb:
        pid = sb.webssh.pid
        assert procs.alive(pid)
        term = direct_term(sb, "linux-app") if sb.sshd_available else None
        if term is not None:
            assert term.pump_until(term.state("connected"))
    assert procs.wait_until(lambda: not procs.alive(pid), TIMEOUT)
    if term is not None:
        term.pump_until(lambda t: t.close_code is not None)
        assert term.close_code in (1001, -1)
        term.close()


# -- through the SCM site ---------------------------------------------------------------------

def scm_term(sb, app, authorization, query="", origin=None, slot=None) -> Term:
    info = sb.app(app, slot)
    ws = websocket.create_connection(
        f"wss://{info.scm_host}/webssh/socket?cols=80&rows=24{query}",
        header=[f"Authorization: {authorization}"], timeout=TIMEOUT,
        origin=origin or f"https://{info.scm_host}",
        sslopt={"ca_certs": sb.ca_file, "cert_reqs": ssl.CERT_REQUIRED})
    return Term(ws)


def test_scm_site_serves_the_page_behind_its_auth(sandbox):
    from tests.fixtures_sandbox import scm_call
    app = sandbox.app("scaled-app")
    status, _, _ = scm_call(app, "/webssh/host", None, cafile=sandbox.ca_file)
    assert status == 401
    status, headers, body = scm_call(app, "/webssh/host", app.basic_authorization,
                                     cafile=sandbox.ca_file)
    assert status == 200 and b'content="scaled-app-i0"' in body
    assert "WebsshSession=" in headers.get("Set-Cookie", "")
    status, _, body = scm_call(app, "/webssh/host?instance=SCALED-APP-I1",
                               app.basic_authorization, cafile=sandbox.ca_file)
    assert status == 200 and b'content="scaled-app-i1"' in body
    status, _, body = scm_call(app, "/webssh/static/xterm.js", app.basic_authorization,
                               cafile=sandbox.ca_file)
    assert status == 200 and b"Terminal" in body


def test_scm_site_socket_picks_the_instance(sandbox_sshd):
    app = sandbox_sshd.app("scaled-app")
    for query, expected in (("", "scaled-app-i0"), ("&instance=scaled-app-i1", "scaled-app-i1")):
        term = scm_term(sandbox_sshd, "scaled-app", app.basic_authorization, query)
        try:
            term.run("hostname", expected)
            term.send(type="resize", cols=100, rows=33)
            term.run("stty size", "33 100")
        finally:
            term.close()


def test_scm_site_socket_refusals(sandbox_sshd):
    app = sandbox_sshd.app("linux-app")
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        scm_term(sandbox_sshd, "linux-app", "Basic " + "eDp5" * 2)
    assert e.value.status_code == 401
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        scm_term(sandbox_sshd, "linux-app", app.basic_authorization, origin="https://evil.example")
    assert e.value.status_code == 403
    modern = sandbox_sshd.app("modern-app")
    message = scm_term(sandbox_sshd, "modern-app", modern.basic_authorization).error()
    assert "aes128-cbc" in message and "hmac-sha1" in message


def test_a_container_with_only_an_ed25519_host_key(sandbox, tmp_path):
    """The portal's client knows ECDSA (and ssh-rsa) host keys only: an sshd with nothing but an
    Ed25519 key fails there, and here, with what to add."""
    import socket
    import threading
    key = paramiko.Ed25519Key.from_private_key_file(_ed25519_key(tmp_path))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_one():
        conn, _ = listener.accept()
        server = paramiko.Transport(conn)
        server.add_server_key(key)
        try:
            server.start_server(server=paramiko.ServerInterface())
        except (paramiko.SSHException, EOFError, OSError):
            pass
        finally:
            server.close()

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    try:
        message = direct_term(sandbox, "linux-app", port=port).error()
    finally:
        listener.close()
        thread.join(TIMEOUT)
    assert "has no host key of a type the web SSH accepts" in message
    assert "ecdsa-sha2-nistp256" in message and "ssh-keygen -A" in message


def _ed25519_key(tmp_path) -> str:
    import subprocess
    path = str(tmp_path / "ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
    return path


@pytest.mark.parametrize("app, slot", [("slot-app", "staging"), ("debug-app", None), ("seed-app", None)])
def test_scm_site_socket_on_a_slot_a_debugging_app_and_the_documented_image(sandbox_sshd, app, slot):
    """A slot is its own SCM site with its own instances; an app with remote debugging on still
    gets SSH (port 2222), not its debugger; the documentation's sshd_config (CBC only) works."""
    info = sandbox_sshd.app(app, slot)
    term = scm_term(sandbox_sshd, app, info.basic_authorization, slot=slot)
    try:
        term.run("hostname", info.instances[0].name)
    finally:
        term.close()
