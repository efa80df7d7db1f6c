"""The sandbox SCM server (sandbox/scm/scm-server, Contract 2) on the wire.

Byte-level checks of PROTOCOL.md section 2 against loopback targets run by
this module (echo, greeting, "say bye and close", source and sink), using the
small RFC 6455 client in tests/wsclient.py.  Also: reload, faults, shutdown,
1,000 concurrent tunnels, and 1 GiB each way to show the server is never
what limits a benchmark.
"""
from __future__ import annotations

import base64
import json
import os
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

from sandbox import pki
from sandbox.scm_process import ScmServer, ScmServerError
from tests.wsclient import (OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, ConnectionClosedError,
                            HandshakeError, WsClient, http_request)

TUNNEL = "/AppServiceTunnel/Tunnel.ashx"
V1 = TUNNEL + "?GetStatus"
V2 = TUNNEL + "?GetStatus&GetStatusAPIVer=2"
USER, PASSWORD = "$site-a", "publishing-password"
TOKEN = "token-a"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
BEARER = f"Bearer {TOKEN}"
HOST = "127.0.0.1"


# --------------------------------------------------------------------------- targets
class Target:
    """A loopback TCP server in one selector thread.

    mode: "echo"; "greet" (sends `greeting` on accept, then echoes);
    "bye" (sends `greeting` and closes).
    """

    def __init__(self, mode="echo", greeting=b""):
        self.mode, self.greeting = mode, greeting
        self.lsock = socket.socket()
        self.lsock.bind((HOST, 0))
        self.lsock.listen(2048)
        self.lsock.setblocking(False)
        self.port = self.lsock.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.lsock, selectors.EVENT_READ)
        self.accepted = 0
        self._stop = False
        self._r, self._w = socket.socketpair()
        self.sel.register(self._r, selectors.EVENT_READ)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop:
            for key, _ in self.sel.select():
                s = key.fileobj
                if s is self._r:
                    return
                if s is self.lsock:
                    try:
                        c, _ = s.accept()
                    except BlockingIOError:
                        continue
                    self.accepted += 1
                    c.setblocking(True)
                    if self.greeting:
                        c.sendall(self.greeting)
                    if self.mode == "bye":
                        c.close()
                        continue
                    c.setblocking(False)
                    self.sel.register(c, selectors.EVENT_READ)
                    continue
                try:
                    data = s.recv(1 << 16)
                except BlockingIOError:
                    continue
                except ConnectionError:
                    data = b""
                if not data:
                    self.sel.unregister(s)
                    s.close()
                    continue
                s.setblocking(True)     # echo: small and bounded in these tests
                s.sendall(data)
                s.setblocking(False)

    def close(self):
        self._stop = True
        self._w.send(b"x")
        self.thread.join(5)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self._w.close()


def dead_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def pkidir(tmp_path_factory):
    d = tmp_path_factory.mktemp("scm-pki")
    return d, pki.make_ca(d)


@pytest.fixture(scope="module")
def targets():
    t = {"echo": Target("echo"), "i0": Target("greet", b"instance-0\n"),
         "i1": Target("greet", b"instance-1\n"), "debug": Target("greet", b"debugger\n"),
         "bye": Target("bye", b"bye\n")}
    yield t
    for x in t.values():
        x.close()


def site(name, instances, **kw):
    s = {"name": name, "basic": [USER, PASSWORD], "bearer": [TOKEN], "state": "STARTED",
         "starting_until": 0, "default_port": 2222, "instances": instances, "fault": None}
    s.update(kw)
    return s


@pytest.fixture(scope="module")
def scm(tmp_path_factory, pkidir, targets):
    _, ca = pkidir
    dead = dead_port()
    sites = [
        site("site-a", [{"name": "a-i0", "ports": {"2222": targets["echo"].port}}]),
        site("stopped", [{"name": "s-i0", "ports": {}}], state="STOPPED"),
        site("starting", [{"name": "st-i0", "ports": {"2222": targets["echo"].port}}]),
        site("nossh", [{"name": "n-i0", "ports": {"2222": dead}}]),
        site("scaled", [{"name": "sc-i0", "ports": {"2222": targets["i0"].port}},
                        {"name": "sc-i1", "ports": {"2222": targets["i1"].port}}]),
        site("debug", [{"name": "d-i0", "ports": {"2222": targets["i0"].port, "9229": targets["debug"].port}}],
             default_port=9229),
        site("bearer-only", [{"name": "b-i0", "ports": {"2222": targets["echo"].port}}],
             basic=None),
        site("bye", [{"name": "bye-i0", "ports": {"2222": targets["bye"].port}}]),
        site("faulty", [{"name": "f-i0", "ports": {"2222": targets["echo"].port}}]),
    ]
    srv = ScmServer(tmp_path_factory.mktemp("scm"), sites, keepalive_seconds=1, ca=ca)
    srv.start()
    yield srv
    srv.stop()
    assert srv.returncode == 0, srv.log()


@pytest.fixture(scope="module")
def ctx(pkidir):
    _, ca = pkidir
    return ssl.create_default_context(cafile=str(ca.cert_path))


def get(scm, ctx, site_name, path, auth=BASIC, **headers):
    if auth:
        headers["Authorization"] = auth
    return http_request(HOST, scm.port(site_name), "GET", path, headers, ssl_context=ctx)


def ws(scm, ctx, site_name, auth=BASIC, path=TUNNEL, **headers):
    if auth:
        headers["Authorization"] = auth
    c = WsClient.connect(HOST, scm.port(site_name), path, headers, ssl_context=ctx)
    c.sock.settimeout(10)
    return c


# --------------------------------------------------------------------------- GetStatus
def test_ready_file_lists_every_site(scm):
    ready = json.loads(scm.ready_path.read_text())
    assert ready["pid"] == scm.pid
    assert ready["generation"] >= 1
    assert set(ready["sites"]) == set(scm.sites)
    assert all(v["port"] > 0 for v in ready["sites"].values())


def test_get_status_v2_started(scm, ctx):
    status, headers, body = get(scm, ctx, "site-a", V2)
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    assert body == b'{"port":2222,"state":"STARTED","canReachPort":true,"msg":""}'


def test_get_status_v1_started(scm, ctx):
    status, _, body = get(scm, ctx, "site-a", V1)
    assert (status, body) == (200, b"SUCCESS:2222")


def test_get_status_stopped(scm, ctx):
    assert get(scm, ctx, "stopped", V2)[2] == (
        b'{"port":2222,"state":"STOPPED","canReachPort":false,'
        b'"msg":"Unable to connect to WebApp"}')
    assert get(scm, ctx, "stopped", V1)[2] == b"FAILURE:2222:Unable to connect to WebApp"


def test_get_status_cannot_reach_port(scm, ctx):
    assert get(scm, ctx, "nossh", V2)[2] == (
        b'{"port":2222,"state":"STARTED","canReachPort":false,'
        b'"msg":"Unable to connect to WebApp"}')
    assert get(scm, ctx, "nossh", V1)[2] == b"FAILURE:2222:Unable to connect to WebApp"


def test_get_status_starting_then_started(scm, ctx):
    scm.update_site("starting", starting_until=time.time() + 1.0)
    assert get(scm, ctx, "starting", V2)[2] == (
        b'{"port":2222,"state":"STARTING","canReachPort":true,"msg":""}')
    time.sleep(1.1)
    assert get(scm, ctx, "starting", V2)[2] == (
        b'{"port":2222,"state":"STARTED","canReachPort":true,"msg":""}')


def test_get_status_reports_the_requested_port(scm, ctx):
    assert get(scm, ctx, "debug", V2)[2] == (
        b'{"port":9229,"state":"STARTED","canReachPort":true,"msg":""}')
    assert get(scm, ctx, "debug", V2, AppsvcTunnelPort="2222")[2] == (
        b'{"port":2222,"state":"STARTED","canReachPort":true,"msg":""}')
    assert get(scm, ctx, "site-a", V2, AppsvcTunnelPort="8080")[2] == (
        b'{"port":8080,"state":"STARTED","canReachPort":false,'
        b'"msg":"Unable to connect to WebApp"}')


@pytest.mark.parametrize("path", [TUNNEL, TUNNEL + "?foo=bar", "/appservicetunnel/TUNNEL.ashx",
                                  TUNNEL + "/more"])
def test_other_plain_requests_on_the_tunnel_path_are_400(scm, ctx, path):
    status, _, body = get(scm, ctx, "site-a", path)
    assert (status, body) == (400, b"")


def test_api_settings(scm, ctx):
    status, headers, body = get(scm, ctx, "site-a", "/api/settings")
    assert (status, body) == (200, b"{}")
    assert headers["content-type"].startswith("application/json")
    assert get(scm, ctx, "site-a", "/api/settings", auth=None)[0] == 401


def test_unknown_path_is_404(scm, ctx):
    assert get(scm, ctx, "site-a", "/nothing")[0] == 404


# --------------------------------------------------------------------------- auth
BAD_AUTH = [None, "Basic " + base64.b64encode(f"{USER}:wrong".encode()).decode(),
            "Basic " + base64.b64encode(b"nobody:" + PASSWORD.encode()).decode(),
            "Basic !!!notbase64", "Bearer wrong-token", "Bearer ", "Token " + TOKEN]


@pytest.mark.parametrize("auth", BAD_AUTH)
def test_bad_auth_is_401_with_challenge(scm, ctx, auth):
    for path in (V2, V1, TUNNEL):
        status, headers, body = get(scm, ctx, "site-a", path, auth=auth)
        assert status == 401
        assert headers["www-authenticate"] == 'Basic realm="site"'
        assert body == b""
    with pytest.raises(HandshakeError) as e:
        ws(scm, ctx, "site-a", auth=auth)
    assert e.value.status == 401
    assert e.value.headers["www-authenticate"] == 'Basic realm="site"'


@pytest.mark.parametrize("auth", [BASIC, BEARER, "bearer " + TOKEN, "basic " + BASIC[6:]])
def test_basic_and_bearer_accepted(scm, ctx, auth):
    assert get(scm, ctx, "site-a", V1, auth=auth)[2] == b"SUCCESS:2222"
    with ws(scm, ctx, "site-a", auth=auth) as c:
        c.send_binary(b"ping?")
        assert c.recv_bytes(5) == b"ping?"


def test_basic_disabled_accepts_only_bearer(scm, ctx):
    assert get(scm, ctx, "bearer-only", V1, auth=BASIC)[0] == 401
    with pytest.raises(HandshakeError) as e:
        ws(scm, ctx, "bearer-only", auth=BASIC)
    assert e.value.status == 401
    assert get(scm, ctx, "bearer-only", V1, auth=BEARER)[2] == b"SUCCESS:2222"
    with ws(scm, ctx, "bearer-only", auth=BEARER) as c:
        c.send_binary(b"x")
        assert c.recv_bytes(1) == b"x"


# --------------------------------------------------------------------------- tunnel
def test_echo_binary_and_text_frames(scm, ctx):
    with ws(scm, ctx, "site-a") as c:
        c.send_binary(b"\x00\x01binary")
        assert c.recv_bytes(8) == b"\x00\x01binary"
        c.send_text("text is written raw")
        f = c.recv_data()
        assert (f.opcode, f.payload) == (OP_BINARY, b"text is written raw")
        big = os.urandom(300_000)
        c.send_binary(big)
        assert c.recv_bytes(len(big)) == big


def test_arr_affinity_routes_to_instances(scm, ctx):
    for cookie, want in [("ARRAffinity=sc-i0", b"instance-0\n"),
                         ("ARRAffinity=sc-i1", b"instance-1\n"),
                         ("other=1; ARRAffinity=sc-i1; more=2", b"instance-1\n"),
                         ("ARRAffinity=unknown", b"instance-0\n"), (None, b"instance-0\n")]:
        headers = {"Cookie": cookie} if cookie else {}
        with ws(scm, ctx, "scaled", **headers) as c:
            assert c.recv_bytes(len(want)) == want, cookie


def test_appsvc_tunnel_port_and_default_port(scm, ctx):
    with ws(scm, ctx, "debug") as c:                 # default_port 9229
        assert c.recv_bytes(9) == b"debugger\n"
    with ws(scm, ctx, "debug", AppsvcTunnelPort="2222") as c:
        assert c.recv_bytes(11) == b"instance-0\n"
    with ws(scm, ctx, "debug", AppsvcTunnelPort="4444") as c:   # no such port
        f = c.recv_data()
        assert (f.opcode, f.close_code, f.close_reason) == (OP_CLOSE, 1011,
                                                            "Connection failure.")


def test_appsvc_tunnel_buffer_sets_message_size(scm, ctx):
    with ws(scm, ctx, "site-a", AppsvcTunnelBuffer="1000") as c:
        c.send_binary(b"y" * 5000)
        got = bytearray()
        while len(got) < 5000:
            f = c.recv_data()
            assert f.opcode == OP_BINARY and len(f.payload) <= 1000
            got += f.payload
        assert got == b"y" * 5000


def test_keepalive_ping_and_pong(scm, ctx, tmp_path, pkidir, targets):
    with ws(scm, ctx, "site-a") as c:               # module server: ping every 1 s
        f = c.recv_frame()
        assert (f.opcode, f.payload) == (OP_PING, b"")
        c.pong()
        c.send_binary(b"still there")
        assert c.recv_bytes(11) == b"still there"
    _, ca = pkidir
    sites = [site("p", [{"name": "p0", "ports": {"2222": targets["echo"].port}}])]
    with ScmServer(tmp_path, sites, keepalive_seconds=1, keepalive_kind="pong", ca=ca) as s2:
        with ws(s2, ctx, "p") as c:
            f = c.recv_frame()
            assert (f.opcode, f.payload) == (OP_PONG, b"")


def test_1011_after_target_eof(scm, ctx):
    with ws(scm, ctx, "bye") as c:
        assert c.recv_bytes(4) == b"bye\n"
        f = c.recv_data()
        assert (f.opcode, f.close_code, f.close_reason) == (OP_CLOSE, 1011,
                                                            "Connection failure.")


def test_client_close_is_answered_with_1011(scm, ctx):
    c = ws(scm, ctx, "site-a")
    reply = c.close(1000)
    assert reply is not None and reply.close_code == 1011


def test_unreachable_target_closes_with_1011(scm, ctx):
    with ws(scm, ctx, "nossh") as c:
        f = c.recv_data()
        assert (f.opcode, f.close_code) == (OP_CLOSE, 1011)


def test_path_is_case_insensitive_for_upgrade_and_other_paths_404(scm, ctx):
    with ws(scm, ctx, "site-a", path="/appservicetunnel/tunnel.ashx?x=1") as c:
        c.send_binary(b"ok")
        assert c.recv_bytes(2) == b"ok"
    with pytest.raises(HandshakeError) as e:
        ws(scm, ctx, "site-a", path="/elsewhere")
    assert e.value.status == 404


# --------------------------------------------------------------------------- faults
@pytest.mark.parametrize("code", [401, 403, 502])
def test_fault_refuse(scm, ctx, code):
    scm.update_site("faulty", fault={"refuse": code})
    try:
        with pytest.raises(HandshakeError) as e:
            ws(scm, ctx, "faulty")
        assert e.value.status == code and e.value.body == b""
        assert ("www-authenticate" in e.value.headers) == (code == 401)
        assert get(scm, ctx, "faulty", V1)[2] == b"SUCCESS:2222"   # probes unaffected
    finally:
        scm.update_site("faulty", fault=None)
    with ws(scm, ctx, "faulty") as c:
        c.send_binary(b"ok")
        assert c.recv_bytes(2) == b"ok"


def test_fault_drop_after_bytes(scm, ctx):
    scm.update_site("faulty", fault={"drop_after_bytes": 150})
    try:
        with ws(scm, ctx, "faulty") as c:
            c.send_binary(b"a" * 100)       # 100 up, then 50 of the echo down
            got = bytearray()
            with pytest.raises(ConnectionClosedError):
                while True:
                    f = c.recv_data()
                    assert f.opcode == OP_BINARY, "a drop sends no close frame"
                    got += f.payload
            assert got == b"a" * 50
    finally:
        scm.update_site("faulty", fault=None)


def test_fault_stall_after_bytes(scm, ctx):
    scm.update_site("faulty", fault={"stall_after_bytes": 150})
    try:
        with ws(scm, ctx, "faulty") as c:
            c.send_binary(b"b" * 100)
            assert c.recv_bytes(50) == b"b" * 50
            c.send_binary(b"more")
            deadline = time.monotonic() + 2.5
            while (left := deadline - time.monotonic()) > 0:
                c.sock.settimeout(left)
                try:
                    f = c.recv_frame()
                except (socket.timeout, ssl.SSLError):
                    break
                # keep-alive pings (every 1 s here) may still come; data must not
                assert f.opcode == OP_PING, f
    finally:
        scm.update_site("faulty", fault=None)


# --------------------------------------------------------------------------- reload
def test_reload_rejects_bad_config_and_keeps_settings(scm, ctx):
    with pytest.raises(ScmServerError, match="fault"):
        scm.update_site("faulty", fault={"explode": 1})
    scm.update_site("faulty", fault=None)
    assert get(scm, ctx, "faulty", V1)[2] == b"SUCCESS:2222"


def test_reload_changes_credentials(scm, ctx):
    scm.update_site("faulty", bearer=["new-token"], basic=None)
    try:
        assert get(scm, ctx, "faulty", V1, auth=BEARER)[0] == 401
        assert get(scm, ctx, "faulty", V1, auth=BASIC)[0] == 401
        assert get(scm, ctx, "faulty", V1, auth="Bearer new-token")[0] == 200
    finally:
        scm.update_site("faulty", bearer=[TOKEN], basic=[USER, PASSWORD])


# --------------------------------------------------------------------------- process
def test_sigterm_exits_0_with_open_tunnels(tmp_path, pkidir, ctx, targets):
    _, ca = pkidir
    sites = [site("t", [{"name": "t0", "ports": {"2222": targets["echo"].port}}])]
    s = ScmServer(tmp_path, sites, ca=ca).start()
    c = ws(s, ctx, "t")
    c.send_binary(b"x")
    assert c.recv_bytes(1) == b"x"
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(5) == 0
    f = c.recv_data()           # the tunnel still ends with the SCM's close
    assert (f.opcode, f.close_code) == (OP_CLOSE, 1011)
    c.abort()
    s.stop()


def test_sigint_exits_0(tmp_path, pkidir, targets):
    _, ca = pkidir
    sites = [site("t", [{"name": "t0", "ports": {"2222": targets["echo"].port}}])]
    s = ScmServer(tmp_path, sites, ca=ca).start()
    s.proc.send_signal(signal.SIGINT)
    assert s.proc.wait(5) == 0
    s.stop()


def test_server_dies_with_its_launcher(tmp_path, pkidir):
    _, ca = pkidir
    code = f"""
import sys, os
sys.path.insert(0, {os.getcwd()!r})
from sandbox import pki
from sandbox.scm_process import ScmServer
ca = pki.Ca("sandbox-ca", pki.Path({str(ca.cert_path)!r}), pki.Path({str(ca.key_path)!r}))
s = ScmServer({str(tmp_path)!r}, [{{"name": "x", "instances": [{{"name": "x0", "ports": {{}}}}]}}], ca=ca).start()
print(s.pid, flush=True)
os._exit(0)         # no clean-up at all: the pipe must do it
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, cwd=os.getcwd())
    assert out.returncode == 0, out.stderr
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        # it is not our child: a zombie would be reaped by init
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(")")[-1].split()[0] == "Z":
                break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("scm-server outlived its launcher")


def test_start_failure_reports_the_server_log(tmp_path, pkidir):
    sites = [site("bad", [{"name": "b0", "ports": {}}], cert="/nonexistent.crt",
                  key="/nonexistent.key")]
    with pytest.raises(ScmServerError, match="bad") as e:
        ScmServer(tmp_path, sites).start()
    assert "exited with status 1" in str(e.value)


BAD_CONFIGS = [
    ("", "bad JSON"),
    ("{", "bad JSON"),
    ('{"ready_file": "/tmp/x", "sites": []}', "sites"),
    ('{"ready_file": "/tmp/x", "sites": [1]}', "sites[]"),
    ('{"ready_file": "/tmp/x", "sites": [{"name": "a"}]}', "cert"),
    ('{"ready_file": "/tmp/x", "sites": [{"name": "a", "cert": "c", "key": "k", '
     '"instances": []}]}', "instances"),
    ('{"ready_file": "/tmp/x", "sites": [{"name": "a", "cert": "c", "key": "k", '
     '"instances": [{"name": "i", "ports": {"x": 1}}]}]}', "container port"),
    ('{"ready_file": "/tmp/x", "sites": [{"name": "a", "cert": "c", "key": "k", '
     '"state": "RUNNING", "instances": [{"name": "i", "ports": {}}]}]}', "state"),
    ('{"ready_file": "/tmp/x", "sites": [{"name": "a", "cert": "c", "key": "k", '
     '"fault": {"refuse": 99}, "instances": [{"name": "i", "ports": {}}]}]}', "refuse"),
    ('{"ready_file": "/tmp/x", "keepalive_kind": "both", "sites": []}', "keepalive_kind"),
    ('{"ready_file": "/tmp/\\ud800", "sites": []}', "surrogate"),
    ('{"ready_file": "/tmp/x", "sites": [],}', "bad JSON"),
    ('[' * 100 + ']' * 100, "nesting"),
    ('{"a": 1e999}', "bad number"),
]


def _binary() -> str:
    from sandbox.scm_process import build
    return os.environ.get("SCM_SERVER_BINARY") or str(build())


@pytest.mark.parametrize("text,message", BAD_CONFIGS)
def test_bad_config_exits_1_with_a_reason(tmp_path, text, message):
    cfg = tmp_path / "c.json"
    cfg.write_text(text)
    r = subprocess.run([_binary(), str(cfg)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert message in r.stderr, r.stderr


def test_usage():
    r = subprocess.run([_binary()], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "usage: scm-server CONFIG.json" in r.stderr


# --------------------------------------------------------------------------- scale
def test_1200_concurrent_tunnels(scm, ctx):
    n = 1200
    clients = []
    try:
        # handshakes in parallel, as a client's burst of connections would be
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(32) as pool:
            futures = [pool.submit(ws, scm, ctx, "site-a") for _ in range(n)]
            for f in futures:
                clients.append(f.result())
        for i, c in enumerate(clients):
            c.send_binary(b"%06d" % i)
        for i, c in enumerate(clients):
            assert c.recv_bytes(6) == b"%06d" % i
    finally:
        for c in clients:
            c.abort()


def _stream_source(lsock, total, chunk):
    conn, _ = lsock.accept()
    buf = memoryview(os.urandom(chunk))
    left = total
    try:
        while left > 0:
            n = min(left, chunk)
            conn.sendall(buf[:n])
            left -= n
    finally:
        conn.close()


def _stream_sink(lsock, total, result):
    conn, _ = lsock.accept()
    buf = bytearray(1 << 20)
    got = 0
    while got < total:
        n = conn.recv_into(buf)
        if not n:
            break
        got += n
    result["bytes"] = got
    result["t"] = time.perf_counter()
    conn.sendall(b"done")
    conn.close()


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.slow
def test_throughput_1gib_each_way(tmp_path, pkidir, ctx, capsys):
    """1 GiB down (container -> client) and 1 GiB up through one tunnel; prints MB/s."""
    _, ca = pkidir
    total = 1 << 30
    lsock = socket.socket()
    lsock.bind((HOST, 0))
    lsock.listen(4)
    port = lsock.getsockname()[1]
    sites = [site("fast", [{"name": "f0", "ports": {"2222": port}}])]
    results = {}
    with ScmServer(tmp_path, sites, ca=ca) as s:
        # down
        th = threading.Thread(target=_stream_source, args=(lsock, total, 1 << 20), daemon=True)
        th.start()
        c = WsClient.connect(HOST, s.port("fast"), TUNNEL, {"Authorization": BASIC},
                             ssl_context=ctx, mask_key=b"\0\0\0\0")
        c.sock.settimeout(30)
        t0, cpu0 = time.perf_counter(), _cpu_seconds(s.pid)
        got = 0
        sizes = set()
        while True:
            f = c.recv_data()
            if f.opcode == OP_CLOSE:
                assert f.close_code == 1011
                break
            got += len(f.payload)
            sizes.add(len(f.payload))
        elapsed = time.perf_counter() - t0
        down, down_cpu = total / elapsed / 1e6, (_cpu_seconds(s.pid) - cpu0) / elapsed
        c.abort()
        th.join(10)
        assert got == total
        assert max(sizes) <= 65536
        # up
        res = {}
        th = threading.Thread(target=_stream_sink, args=(lsock, total, res), daemon=True)
        th.start()
        c = WsClient.connect(HOST, s.port("fast"), TUNNEL, {"Authorization": BASIC},
                             ssl_context=ctx, mask_key=b"\0\0\0\0")
        c.sock.settimeout(30)
        from tests.wsclient import encode_frame
        frame = encode_frame(OP_BINARY, os.urandom(1 << 16), mask_key=b"\0\0\0\0")
        t0, cpu0 = time.perf_counter(), _cpu_seconds(s.pid)
        for _ in range(total >> 16):
            c.sock.sendall(frame)
        assert c.recv_bytes(4) == b"done"
        elapsed = res["t"] - t0
        up, up_cpu = total / elapsed / 1e6, (_cpu_seconds(s.pid) - cpu0) / elapsed
        c.abort()
        th.join(10)
        assert res["bytes"] == total
    lsock.close()
    # The server's CPU share shows its headroom: below 100 % it is not the limit.
    results = (f"scm-server throughput, 1 GiB each way: down {down:.0f} MB/s "
               f"(server CPU {down_cpu:.0%}), up {up:.0f} MB/s (server CPU {up_cpu:.0%})")
    with capsys.disabled():
        print("\n" + results)
