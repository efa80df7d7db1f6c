"""Regression tests for the native engine's trust defects (the C half): each drives the real module
against the sandbox SCM server (engine fixtures) or tests/hostile_server.py.

- signals answer every start-up wait (check(), http_get, Pump.wait) within half a second
- proxy credentials travel only as Proxy-Authorization on CONNECT and are never shown
- set_authorization: new handshakes use the new value, open WebSockets are untouched
- events carry the reason, its facts and remote_closed; a mid-stream reset or TLS error is a failure
- one writer, one pending buffer: Ping then Close while the socket is full
- a frame in the same TLS record as the 101 may hold 0x00
- out of file descriptors: no busy loop, error kind "resource", recovery
- stop() from two threads; start() after stop()
"""
import base64
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from azext_webapp import tunnel
from tests import engine_targets
from tests.engine_targets import wait_for
from tests.fixtures_engine import (BASIC_USER, CLOSER_PORT, ROOT, basic_auth, engine_module,
                                   free_port)
from tests.fixtures_engine import cli_env as _cli_env
from tests.connect_proxy import PROXY_PASSWORD, PROXY_USER, AuthProxy, proxy_auth_value
from tests.hostile_server import HELLO, ZERO_PAYLOAD

# The native engine only, whatever tunnel.py would pick (the C half of the fixes is under test).
_tunnel = engine_module("native")


@pytest.fixture(autouse=True)
def native_engine(monkeypatch):
    monkeypatch.setattr(tunnel, "_tunnel", _tunnel)
    monkeypatch.setenv("WEBAPP_ENGINE", "native")


def cli_env(scm, **extra):
    return _cli_env(scm, WEBAPP_ENGINE="native", **extra)


def _events(t, predicate, timeout=10):
    """Events polled until one matches predicate (all of them, in order)."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got += t.poll_events()
        if any(predicate(e) for e in got):
            break
        time.sleep(0.05)
    return got


def _echo(port, payload=b"echo-me", timeout=15):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        c.sendall(payload)
        return engine_targets.recv_exact(c, len(payload)) == payload


def _read_to_eof(conn, timeout=15):
    conn.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    return data


# ---------------------------------------------------------------------------------------------
# 2. Signals during start-up


class _SilentServer(engine_targets.AcceptingServer):
    """Accepts TCP on loopback and never sends a byte; notes when each client goes away."""

    def __init__(self):
        self.accepted = 0
        self.closed = threading.Event()
        super().__init__()

    def _handle(self, conn):
        self.accepted += 1
        threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn):
        with conn:
            try:
                while conn.recv(4096):
                    pass
            except OSError:
                pass
        self.closed.set()


SIGNAL_SCRIPT = r"""
import json, os, signal, sys, time
from azext_webapp import tunnel

class Interrupted(Exception):
    pass

def handler(signum, frame):
    raise Interrupted(signum)

url, what, how = sys.argv[1:4]
signal.signal(signal.SIGALRM, handler)
if how.startswith("recorded"):      # the extension's own handlers: they record, the wait raises
    signal.signal(signal.SIGINT, signal.default_int_handler)   # even if started in the background
    recording = tunnel.terminate_on("SIGINT", "SIGTERM")
    recording.__enter__()
else:
    signal.signal(signal.SIGTERM, handler)
auth = "Basic dXNlcjpwYXNzd29yZA=="
t = None
if what == "check":
    t = tunnel.Tunnel(url, auth)
    t.start()
if what == "pump_wait":
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    pump = tunnel._tunnel.Pump(in_r, out_w)
print("waiting", flush=True)
if how == "alarm":
    signal.setitimer(signal.ITIMER_REAL, 1.0)
started = time.monotonic()
try:
    if what == "check":
        t.check(timeout=30)
    elif what == "get_status":
        tunnel.get_status(url, auth, timeout=30)
    elif what == "warm_up":
        tunnel.warm_up(url, auth, timeout=30)
    elif what == "pump_wait":
        pump.wait(30)
    result = "returned"
except (Interrupted, tunnel.Terminated, KeyboardInterrupt):
    result = "interrupted"
except Exception as err:
    result = "error %s: %s" % (type(err).__name__, err)
print(json.dumps({"result": result, "after": time.monotonic() - started}), flush=True)
time.sleep(3)   # still alive: the abandoned handshake must be closed by now, not by exit
if t is not None:
    t.stop()
if what == "pump_wait":
    pump.close()
"""


@pytest.mark.parametrize("what", ["check", "get_status", "warm_up", "pump_wait"])
@pytest.mark.parametrize("how", ["alarm", "sigterm", "recorded-sigterm", "recorded-sigint"])
def test_a_signal_ends_a_startup_wait_within_a_second(scm, what, how):
    """A raising handler (alarm, sigterm: a program of its own using the engine) and the extension's
    recording ones (recorded-*: the wait raises Terminated or KeyboardInterrupt between its slices)."""
    silent = _SilentServer()
    try:
        proc = subprocess.Popen([sys.executable, "-c", SIGNAL_SCRIPT, f"https://127.0.0.1:{silent.port}",
                                 what, how], cwd=ROOT, env=cli_env(scm), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "waiting", proc.stderr.read()
            if how != "alarm":
                time.sleep(1.0)
                proc.send_signal(signal.SIGINT if how.endswith("sigint") else signal.SIGTERM)
                sent = time.monotonic()
            ready, _, _ = select.select([proc.stdout], [], [], 15)
            assert ready, "no answer to the signal within 15 s"
            line = proc.stdout.readline()
            seen = time.monotonic()
            assert line, proc.stderr.read()
            result = json.loads(line)
            print(what, how, result)
            assert result["result"] == "interrupted", result
            if how == "alarm":
                assert result["after"] < 2.0, result   # the alarm fired at 1.0 s
            else:
                assert seen - sent < 1.0, seen - sent
            if what != "pump_wait":
                # the abandoned handshake / transfer is closed now, not when the process ends
                assert silent.accepted >= 1
                assert silent.closed.wait(1.5), "the abandoned connection is still open"
        finally:
            proc.kill()
            proc.communicate()
    finally:
        silent.close()


def test_engine_wait_answers_a_signal_with_a_long_timeout(scm):
    script = r"""
import signal, time
from azext_webapp import tunnel
class Interrupted(Exception): pass
def handler(*a): raise Interrupted()
signal.signal(signal.SIGALRM, handler)
e = tunnel._tunnel.Engine("localhost", 1, "Basic eA==")
e.start()
signal.setitimer(signal.ITIMER_REAL, 0.5)
started = time.monotonic()
try:
    e.wait(30)
except Interrupted:
    print("interrupted %.2f" % (time.monotonic() - started))
e.stop()
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=cli_env(scm), capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.startswith("interrupted"), out.stderr
    assert float(out.stdout.split()[1]) < 1.5


# ---------------------------------------------------------------------------------------------
# 3. Proxy credentials


def _use_proxy(monkeypatch, port, password=PROXY_PASSWORD, user=PROXY_USER):
    from urllib.parse import quote
    monkeypatch.setenv("HTTPS_PROXY", f"http://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)


def _secrets_absent(text, password=PROXY_PASSWORD):
    from urllib.parse import quote
    for secret in (password, quote(password, safe=""), proxy_auth_value(password=password).split()[1],
                   "p@ss", "w:rd"):
        assert secret not in text, f"{secret!r} shown in: {text}"


def test_proxy_credentials_with_at_percent_colon_work_for_the_tunnel_and_the_probes(
        engine_env, monkeypatch, make_tunnel):
    proxy = AuthProxy()
    try:
        _use_proxy(monkeypatch, proxy.port)
        t = make_tunnel()
        t.start()
        t.check()
        assert _echo(t.port, b"through the proxy")
        assert tunnel.get_status(engine_env.url(), basic_auth()).state == "STARTED"
        tunnel.warm_up(engine_env.url(), basic_auth())
        assert len(proxy.requests) >= 4
        for head in proxy.requests:
            assert head.startswith("CONNECT localhost:"), head
            assert f"Proxy-Authorization: {proxy_auth_value()}\r\n" in head, head
            assert "Authorization: Basic " + base64.b64encode(b"x").decode() not in head
            # the SCM credential never goes to the proxy (it travels inside TLS)
            assert basic_auth() not in head
    finally:
        proxy.close()


@pytest.mark.parametrize("case", ["wrong_password_407", "refused_403", "unreachable"])
def test_proxy_errors_name_host_and_port_never_the_password(engine_env, monkeypatch, make_tunnel, case):
    proxy = AuthProxy(mode="refuse" if case == "refused_403" else "auth")
    port = free_port() if case == "unreachable" else proxy.port
    password = "wrong-" + PROXY_PASSWORD if case == "wrong_password_407" else PROXY_PASSWORD
    try:
        _use_proxy(monkeypatch, port, password=password)
        where = f"127.0.0.1:{port}"
        t = make_tunnel()
        t.start()
        with pytest.raises(tunnel.ProxyError) as info:
            t.check()
        texts = [str(info.value) + repr(info.value)]
        assert where in str(info.value), str(info.value)
        if case != "unreachable":
            assert ("407" if case == "wrong_password_407" else "403") in str(info.value)
        # a relayed connection fails the same way, in its event
        with socket.create_connection(("127.0.0.1", t.port)) as c:
            assert _read_to_eof(c) == b""
        events = _events(t, lambda e: e.kind == "failed")
        failed = [e for e in events if e.kind == "failed"]
        assert failed and failed[0].error_kind == "proxy", events
        assert where in failed[0].message
        texts.append(repr(events))
        for probe in (tunnel.get_status, tunnel.warm_up):
            with pytest.raises(tunnel.ProxyError) as info:
                probe(engine_env.url(), basic_auth())
            assert where in str(info.value), str(info.value)
            texts.append(str(info.value) + repr(info.value))
        for text in texts:
            _secrets_absent(text, password)
    finally:
        proxy.close()


def test_engine_proxy_takes_host_and_port_only(engine_env):
    secret = "user:" + PROXY_PASSWORD
    with pytest.raises(ValueError) as info:
        _tunnel.Engine("localhost", 443, basic_auth(), proxy=f"{secret}@127.0.0.1:3128")
    assert PROXY_PASSWORD not in str(info.value)
    with pytest.raises(ValueError) as info:
        _tunnel.http_get("https://localhost/", basic_auth(), proxy=f"{secret}@127.0.0.1:3128")
    assert PROXY_PASSWORD not in str(info.value)
    with pytest.raises(ValueError):
        _tunnel.Engine("localhost", 443, basic_auth(), proxy="127.0.0.1:3128", proxy_auth="Basic x\r\nX: y")


# ---------------------------------------------------------------------------------------------
# 4. set_authorization


def test_set_authorization_applies_to_new_handshakes_only(make_tunnel):
    t = make_tunnel()
    t.start()
    t.check()
    with socket.create_connection(("127.0.0.1", t.port)) as kept:
        kept.sendall(b"open before")
        assert engine_targets.recv_exact(kept, 11) == b"open before"
        t.poll_events()
        t._engine.set_authorization(basic_auth(BASIC_USER, "a-wrong-password"))
        with socket.create_connection(("127.0.0.1", t.port)) as refused:
            refused.sendall(b"x")
            assert _read_to_eof(refused) == b""
        events = _events(t, lambda e: e.kind == "failed")
        failed = [e for e in events if e.kind == "failed"]
        assert failed, events
        assert failed[0].error_kind == "auth" and failed[0].status == 401, failed
        assert "a-wrong-password" not in repr(events)
        with pytest.raises(tunnel.AuthenticationError) as info:
            t.check()
        assert info.value.status == 401
        # the connection opened before the change is untouched
        kept.sendall(b"still open")
        assert engine_targets.recv_exact(kept, 10) == b"still open"
        t._engine.set_authorization(basic_auth())
        t.check()
        assert _echo(t.port, b"works again")
        kept.sendall(b"and still")
        assert engine_targets.recv_exact(kept, 9) == b"and still"


def test_set_authorization_races_with_new_connections(make_tunnel):
    """From another thread while handshakes run (the TSan pass checks the locking)."""
    t = make_tunnel()
    t.start()
    stop = threading.Event()

    def renew():
        while not stop.is_set():
            t._engine.set_authorization(basic_auth())
            t._engine.set_authorization("Bearer engine-token")
    renewer = threading.Thread(target=renew)
    renewer.start()
    try:
        for i in range(20):
            assert _echo(t.port, b"renewed %d" % i)
    finally:
        stop.set()
        renewer.join()
    with pytest.raises(ValueError):
        t._engine.set_authorization("Basic x\r\nInjected: 1")
    with pytest.raises(TypeError):
        t._engine.set_authorization(None)


# ---------------------------------------------------------------------------------------------
# 5. Events: reason, facts, remote_closed


def test_event_fields_for_a_local_close_and_a_server_close(make_tunnel):
    t = make_tunnel()
    t.start()
    assert _echo(t.port)
    events = _events(t, lambda e: e.kind in ("closed", "failed"))
    assert len(events[-1]) == 8
    end = events[-1]
    assert (end.kind, end.reason, end.facts, end.remote_closed) == ("closed", "", None, False), events
    opened = [e for e in events if e.kind == "opened"]
    assert opened and (opened[0].reason, opened[0].facts, opened[0].remote_closed) == ("", None, False)

    # the container ends: the SCM server closes with 1011, the normal end, from the server side
    t2 = make_tunnel(target_port=CLOSER_PORT)
    t2.start()
    with socket.create_connection(("127.0.0.1", t2.port)) as c:
        assert _read_to_eof(c) == b"bye\n"
    events = _events(t2, lambda e: e.kind in ("closed", "failed"))
    end = events[-1]
    assert (end.kind, end.reason, end.facts, end.remote_closed) == ("closed", "", None, True), events


@pytest.fixture
def hostile_tunnel(hostile, engine_env):
    t = tunnel.Tunnel(f"https://localhost:{hostile.port}", basic_auth())
    t.start()
    yield t
    t.stop()


@pytest.mark.parametrize("behaviour,kind,error_kind", [
    ("reset_mid_stream", "failed", "connect"),
    ("tls_garbage_mid_stream", "failed", "tls"),
    ("close_1011", "closed", ""),
])
def test_a_mid_stream_end_from_the_server_is_reported_for_what_it_is(hostile_tunnel, hostile,
                                                                     behaviour, kind, error_kind):
    t = hostile_tunnel
    hostile.push(behaviour)
    with socket.create_connection(("127.0.0.1", t.port)) as c:
        c.sendall(b"SSH-2.0-test\r\n")
        assert engine_targets.recv_exact(c, len(HELLO)) == HELLO
        assert _read_to_eof(c) == b""
    events = _events(t, lambda e: e.kind in ("closed", "failed"))
    end = [e for e in events if e.kind in ("closed", "failed")]
    assert len(end) == 1, events
    end = end[0]
    print(behaviour, end)
    assert (end.kind, end.error_kind, end.remote_closed) == (kind, error_kind, True), end
    if kind == "failed":
        assert "localhost" in end.message and t.stats()["failures"] == 1
    assert t.running and _echo(t.port)


# ---------------------------------------------------------------------------------------------
# 6. One writer, one pending buffer


def test_ping_then_close_while_the_upload_fills_the_socket(hostile_tunnel, hostile):
    t = hostile_tunnel
    hostile.push("ping_close_when_full")
    c = socket.create_connection(("127.0.0.1", t.port))
    block = os.urandom(1 << 20)

    def upload():
        try:
            while True:
                c.sendall(block)
        except OSError:
            pass
    uploader = threading.Thread(target=upload, daemon=True)
    uploader.start()
    try:
        assert wait_for(lambda: any(b == "ping_close_when_full" for b, _ in hostile.served), 40)
    finally:
        c.close()
        uploader.join(10)
    outcome = [o for b, o in hostile.served if b == "ping_close_when_full"][-1]
    print(outcome)
    assert outcome.startswith("frames ok"), outcome
    assert "1 pong(s)" in outcome, outcome
    assert t.running and _echo(t.port)


def test_link_writer_queues_a_pong_and_a_close_behind_a_pending_write(tmp_path):
    """The same rule, made exact: tn_link.c and tn_ws.c on a model of a socket and OpenSSL's
    retry rule (native/test/tn_link_test.c), with the flush filling the socket to the byte so that
    the pong meets a full socket and the close comes right after it."""
    exe = tmp_path / "tn_link_test"
    native = ROOT / "native"
    lws = subprocess.run(["pkg-config", "--cflags", "libwebsockets"], capture_output=True, text=True,
                         check=True).stdout.split()
    flags = ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-g", "-O1",
             "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    subprocess.run(["gcc", *flags, *lws, "-I", str(native), str(native / "test" / "tn_link_test.c"),
                    *(str(native / f) for f in ("tn_link.c", "tn_ws.c", "tn_ring.c", "tn_err.c")), "-lcrypto",
                    "-o", str(exe)], check=True)
    # its own ASan runtime: not the one a sanitizer pass preloads into Python
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "TSAN_OPTIONS")}
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "link ok" in proc.stdout


# ---------------------------------------------------------------------------------------------
# 7. A frame in the 101's record


def test_a_frame_with_nul_bytes_in_the_record_of_the_101_is_delivered(hostile_tunnel, hostile):
    t = hostile_tunnel
    hostile.push("frame_in_101")
    with socket.create_connection(("127.0.0.1", t.port), timeout=15) as c:
        c.sendall(b"SSH-2.0-test\r\n")
        assert engine_targets.recv_exact(c, len(ZERO_PAYLOAD)) == ZERO_PAYLOAD
    assert not [e for e in t.poll_events() if e.kind == "failed"]


# ---------------------------------------------------------------------------------------------
# 8. Out of file descriptors


FD_SCRIPT = r"""
import json, os, resource, sys, time
from azext_webapp import tunnel
t = tunnel.Tunnel(sys.argv[1], sys.argv[2])
t.start()
time.sleep(0.5)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
in_use = len(os.listdir("/proc/self/fd")) - 1
limit = in_use + int(sys.argv[4])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
print(json.dumps({"port": t.port, "limit": limit}), flush=True)
sys.stdin.readline()    # the parent has opened its connections
time.sleep(0.5)
before = resource.getrusage(resource.RUSAGE_SELF)
time.sleep(2.0)
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
events = [tuple(e) for e in t.poll_events()]
print(json.dumps({"cpu": cpu, "events": events}), flush=True)
sys.stdin.readline()    # the parent closed its connections: descriptors are free again
if sys.argv[4] == "1":  # no room for a WebSocket even then: the limit goes back up
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
t.serve(timeout=float(sys.argv[3]))
t.stop()
"""


@pytest.mark.parametrize("where", ["accept", "socket"])
def test_out_of_file_descriptors_backs_off_reports_resource_and_recovers(scm, where):
    """accept: room for exactly one relayed connection (two descriptors); it stays open, so the
    next accept() fails with EMFILE while connections wait in the backlog (the busy loop).
    socket: room for the accepted connection only; the WebSocket's socket() fails (the host is
    an address, so resolving needs no descriptor)."""
    url = scm.url() if where == "accept" else scm.url(host="127.0.0.1")
    spare = "2" if where == "accept" else "1"
    # the certificate names localhost, not the address
    env = cli_env(scm, **({} if where == "accept" else {"AZURE_CLI_DISABLE_CONNECTION_VERIFICATION": "1"}))
    proc = subprocess.Popen([sys.executable, "-c", FD_SCRIPT, url, basic_auth(), "30", spare], cwd=ROOT,
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    conns = []
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        info = json.loads(line)
        port = info["port"]
        for _ in range(12):
            c = socket.create_connection(("127.0.0.1", port), timeout=10)
            c.sendall(b"hello")
            conns.append(c)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        report = json.loads(line)
        print(f"limit {info['limit']}: {report['cpu']:.3f} CPU s in 2 s;", report["events"][:6])
        assert report["cpu"] < 0.5, report["cpu"]
        failed = [e for e in report["events"] if e[0] == "failed"]
        assert failed, report["events"]
        resource_failures = [e for e in failed if e[5] == "resource_fds"]       # (..., reason, facts, ...)
        assert resource_failures, failed
        facts = resource_failures[0][6]
        assert facts["errno"] == "EMFILE" and facts["limit"] == info["limit"], facts
        assert not [e for e in failed if e[5].startswith(("connect_", "dns_"))], failed
        if where == "accept":   # the one that fitted works meanwhile
            assert [e for e in report["events"] if e[0] == "opened"], report["events"]
        for c in conns:
            c.close()
        conns = []
        proc.stdin.write("go\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 20
        while True:
            try:
                assert _echo(port, b"descriptors are free again", timeout=5)
                break
            except (AssertionError, EOFError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        for c in conns:
            c.close()
        proc.kill()
        proc.communicate()


# ---------------------------------------------------------------------------------------------
# 9. stop() and start()


def test_stop_from_two_threads_at_once(engine_env):
    for _ in range(30):
        e = _tunnel.Engine("localhost", engine_env.ports["engine-site"], basic_auth(),
                           ca_file=engine_env.ca_file)
        e.start()
        barrier = threading.Barrier(3)
        errors = []

        def stop():
            try:
                barrier.wait()
                e.stop()
            except Exception as err:  # pylint: disable=broad-except
                errors.append(err)
        threads = [threading.Thread(target=stop) for _ in range(3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(10)
        assert not errors and not any(th.is_alive() for th in threads)
        assert not e.running()
        e.stop()


def test_start_after_stop_says_the_tunnel_was_stopped(engine_env):
    e = _tunnel.Engine("localhost", engine_env.ports["engine-site"], basic_auth(), ca_file=engine_env.ca_file)
    e.start()
    with pytest.raises(_tunnel.Error) as info:
        e.start()
    assert info.value.args == ("closed_started", {})
    e.stop()
    with pytest.raises(_tunnel.Error) as info:
        e.start()
    assert info.value.args == ("closed_stopped", {})
    never = _tunnel.Engine("localhost", engine_env.ports["engine-site"], basic_auth())
    never.stop()
    with pytest.raises(_tunnel.Error) as info:
        never.start()
    assert info.value.args == ("closed_stopped", {})
