"""The engine contract's failures: every reason of azext_webapp/_reasons.def, provoked by a real fault
on loopback through each engine (the `engine` fixture runs every case on both), must come out as that
reason with exactly the expected facts -- the same for both engines, so that _errors.py words them
once. The few reasons nothing outside can provoke are listed with why; their words and typed errors
are checked directly (tests/test_unit_commands.py::test_every_reason_has_words_and_a_typed_error).

The engine modules are driven directly (Engine, http_get, Pump: the contract tunnel.py uses), except
for the reasons tunnel.py itself raises, which go through tunnel.py with the engine under test.
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from azext_webapp import _reasons, tunnel
from tests import engine_targets
from tests.connect_proxy import PROXY_PASSWORD, AuthProxy, proxy_auth_value
from tests.fixtures_engine import BASIC_USER, ROOT, basic_auth, engine_module, free_port
from tests.hostile_server import REFUSAL_MESSAGE

UNTRUSTED = {"verify_code": 20, "verify_text": "unable to get local issuer certificate", "ca_bundle": True}
BROADCAST = "255.255.255.255"      # no TCP connection goes there: the system refuses at once


class Faults:
    """The provokers: each returns the (reason, facts) an engine module gave for one real fault."""

    def __init__(self, name, scm, hostile):
        self.name, self.m, self.scm, self.hostile = name, engine_module(name), scm, hostile

    def engine(self, host="localhost", port=None, authorization=None, **kw):
        kw.setdefault("ca_file", self.scm.ca_file)
        return self.m.Engine(host, port or self.scm.ports["engine-site"], authorization or basic_auth(), **kw)

    def error(self, call):
        with pytest.raises(self.m.Error) as info:
            call()
        reason, facts = info.value.args
        return reason, facts

    def check(self, host="localhost", port=None, timeout=10.0, **kw):
        e = self.engine(host, port, **kw)
        try:
            e.start()
            return self.error(lambda: e.check(timeout))
        finally:
            e.stop()

    def hostile_check(self, behaviour, **kw):
        self.hostile.push(behaviour)
        return self.check(port=self.hostile.port, **kw)

    def event(self, behaviour, wait=15.0, **kw):
        """The failed event of one relayed connection whose WebSocket meets the hostile `behaviour`."""
        e = self.engine(port=self.hostile.port, **kw)
        try:
            port = e.start()
            self.hostile.push(behaviour)
            with socket.create_connection(("127.0.0.1", port), timeout=wait + 30) as c:
                c.sendall(b"SSH-2.0-reasons\r\n")
                try:
                    while c.recv(65536):
                        pass
                except OSError:
                    pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                failed = [ev for ev in e.poll_events() if ev[0] == "failed"]
                if failed:
                    return failed[0][5], failed[0][6]
                e.wait(0.2)
            pytest.fail(f"no failed event for {behaviour}")
        finally:
            e.stop()

    def probe(self, url, timeout=10.0, **kw):
        kw.setdefault("ca_file", self.scm.ca_file)
        return self.error(lambda: self.m.http_get(url, basic_auth(), timeout=timeout, **kw))

    def through_proxy(self, mode, proxy_auth=None):
        proxy = AuthProxy(mode=mode)
        try:
            return self.check(proxy=f"127.0.0.1:{proxy.port}", proxy_auth=proxy_auth), proxy.port
        finally:
            proxy.close()

    def pump(self, in_fd, out_fd, send=b""):
        """Pump.error() of a stdio pump whose standard input or output fails."""
        pump = self.m.Pump(in_fd, out_fd)
        try:
            peer = socket.socket(fileno=pump.take_peer())
            if send:
                peer.sendall(send)
            time.sleep(0.3)
            peer.close()
            for _ in range(50):
                if pump.wait(0.2):
                    break
            return pump.error()
        finally:
            pump.close()


@pytest.fixture
def faults(engine, engine_env, hostile):
    return Faults(engine, engine_env, hostile)


class Silent(engine_targets.AcceptingServer):
    """Accepts TCP and says nothing (a probe waits for its TLS handshake in vain)."""

    def __init__(self):
        self.held = []
        super().__init__()

    def _handle(self, conn):
        self.held.append(conn)


def _site(faults, site="engine-site"):
    return {"host": "localhost", "port": faults.scm.ports[site]}


def _hostile(faults, phase):
    return {"host": "localhost", "port": faults.hostile.port, "phase": phase}


def _proxy(faults, mode, **extra):
    (reason, facts), port = faults.through_proxy(mode, **extra)
    return reason, facts, f"127.0.0.1:{port}"


def _refused_port(faults):
    port = free_port()
    return faults.check("127.0.0.1", port), port


def _system_says(address, port):
    """The errno name the system gives a plain connect() to address (what the engines must report)."""
    with socket.socket() as s:
        try:
            s.connect((address, port))
        except OSError as exc:
            return _reasons.errno_name(exc.errno)
    pytest.skip(f"{address} is reachable here")


def _case_auth_refused(f):
    got = f.check(authorization=basic_auth(BASIC_USER, "wrong"))
    return got, ("auth_refused", {**_site(f), "phase": "upgrade", "status": 401})


def _case_auth_refused_with_a_message(f):
    expected = {**_hostile(f, "upgrade"), "status": 403, "server_message": REFUSAL_MESSAGE}
    return f.hostile_check("refuse_json"), ("auth_refused", expected)


def _case_http_status(f):
    return f.check(port=f.scm.ports["refuse-site"]), ("http_status", {**_site(f, "refuse-site"), "phase": "upgrade",
                                                                      "status": 502})


def _case_http_status_with_a_message(f):
    expected = {**_hostile(f, "upgrade"), "status": 503, "server_message": REFUSAL_MESSAGE}
    return f.hostile_check("refuse_text"), ("http_status", expected)


def _case_http_malformed(f):
    return f.hostile_check("not_http"), ("http_malformed", _hostile(f, "upgrade"))


def _case_http_too_large(f):
    return f.hostile_check("huge_headers"), ("http_too_large", {**_hostile(f, "upgrade"), "limit": 8192})


def _case_http_bad_accept(f):
    return f.hostile_check("bad_accept"), ("http_bad_accept", {**_hostile(f, "upgrade"), "status": 101})


def _case_http_not_json(f):
    f.hostile.push("plain_200")
    with pytest.raises(tunnel.HTTPStatusError) as info:
        tunnel.get_status(f"https://localhost:{f.hostile.port}", basic_auth())
    return (info.value.reason, info.value.facts), ("http_not_json", {**_hostile(f, "probe"), "status": 200})


def _case_tls_untrusted(f):
    return f.check(port=f.scm.ports["untrusted-site"]), ("tls_untrusted", {**_site(f, "untrusted-site"),
                                                                           "phase": "tls", **UNTRUSTED})


def _case_tls_untrusted_probe(f):
    return f.probe(f"https://localhost:{f.scm.ports['untrusted-site']}/api/settings"), \
        ("tls_untrusted", {**_site(f, "untrusted-site"), "phase": "probe", **UNTRUSTED})


def _case_tls_wrong_host(f):
    return f.check(port=f.scm.ports["wronghost-site"]), ("tls_wrong_host", {**_site(f, "wronghost-site"),
                                                                            "phase": "tls"})


def _case_tls_wrong_host_probe(f):
    return f.probe(f"https://localhost:{f.scm.ports['wronghost-site']}/api/settings"), \
        ("tls_wrong_host", {**_site(f, "wronghost-site"), "phase": "probe"})


def _case_tls_handshake(f):
    """A server that answers the TLS hello with plain HTTP."""
    server = _PlainHttp()
    try:
        return f.check("127.0.0.1", server.port), ("tls_handshake", {"host": "127.0.0.1", "port": server.port,
                                                                     "phase": "tls",
                                                                     "detail": "wrong version number"})
    finally:
        server.close()


def _case_tls_stream(f):
    return f.event("tls_garbage_mid_stream"), ("tls_stream", {**_hostile(f, "frame"),
                                                              "detail": _TLS_GARBAGE_TEXT})


def _case_tls_ca_file(f, tmp_path="/nonexistent/ca.pem"):
    return f.error(lambda: f.engine(ca_file=tmp_path)), ("tls_ca_file", {"ca_file": tmp_path})


def _case_dns_unknown_host(f):
    return f.check("no-such-host.invalid", 443), ("dns_unknown_host", {"host": "no-such-host.invalid", "port": 443,
                                                                       "phase": "connect"})


def _case_dns_unknown_host_probe(f):
    return f.probe("https://no-such-host.invalid/api/settings"), \
        ("dns_unknown_host", {"host": "no-such-host.invalid", "port": 443, "phase": "probe"})


def _case_proxy_unreachable(f):
    port = free_port()
    got = f.check(proxy=f"127.0.0.1:{port}")
    return got, ("proxy_unreachable", {**_site(f), "proxy": f"127.0.0.1:{port}", "phase": "connect",
                                       "errno": "ECONNREFUSED"})


def _case_proxy_unknown_host(f):
    got = f.check(proxy="no-such-proxy.invalid:3128")
    return got, ("proxy_unknown_host", {**_site(f), "proxy": "no-such-proxy.invalid:3128", "phase": "connect"})


def _case_proxy_refused(f):
    reason, facts, proxy = _proxy(f, "refuse")
    return (reason, facts), ("proxy_refused", {**_site(f), "proxy": proxy, "phase": "proxy", "status": 403})


def _case_proxy_auth_required(f):
    reason, facts, proxy = _proxy(f, "auth", proxy_auth=proxy_auth_value(password="wrong-" + PROXY_PASSWORD))
    return (reason, facts), ("proxy_auth_required", {**_site(f), "proxy": proxy, "phase": "proxy",
                                                     "status": 407})


def _case_proxy_closed(f):
    reason, facts, proxy = _proxy(f, "close")
    return (reason, facts), ("proxy_closed", {**_site(f), "proxy": proxy, "phase": "proxy"})


def _case_proxy_malformed(f):
    reason, facts, proxy = _proxy(f, "garbage")
    return (reason, facts), ("proxy_malformed", {**_site(f), "proxy": proxy, "phase": "proxy"})


def _case_proxy_url(f):
    os.environ["HTTPS_PROXY"] = "http://:3128"
    try:
        with pytest.raises(tunnel.ProxyError) as info:
            tunnel.Tunnel(f.scm.url(), basic_auth())
    finally:
        del os.environ["HTTPS_PROXY"]
    return (info.value.reason, info.value.facts), ("proxy_url", {})


def _case_proxy_scheme(f):
    os.environ["HTTPS_PROXY"] = "socks5://user:secret@proxy.corp:1080"
    try:
        with pytest.raises(tunnel.ProxyError) as info:
            tunnel.Tunnel(f.scm.url(), basic_auth())
    finally:
        del os.environ["HTTPS_PROXY"]
    return (info.value.reason, info.value.facts), ("proxy_scheme", {"proxy": "proxy.corp:1080", "detail": "socks5"})


def _case_connect_refused(f):
    got, port = _refused_port(f)
    return got, ("connect_refused", {"host": "127.0.0.1", "port": port, "phase": "connect", "errno": "ECONNREFUSED"})


def _case_connect_refused_probe(f):
    port = free_port()
    return f.probe(f"https://127.0.0.1:{port}/api/settings"), \
        ("connect_refused", {"host": "127.0.0.1", "port": port, "phase": "probe", "errno": "ECONNREFUSED"})


def _case_connect_unreachable(f):
    name = _system_says(BROADCAST, 443)
    return f.check(BROADCAST, 443), ("connect_unreachable", {"host": BROADCAST, "port": 443, "phase": "connect",
                                                             "errno": name})


def _case_connect_reset(f):
    return f.event("reset_mid_stream"), ("connect_reset", {**_hostile(f, "frame"), "errno": "ECONNRESET"})


def _case_connect_closed(f):
    return f.hostile_check("close_after_request"), ("connect_closed", _hostile(f, "upgrade"))


def _case_connect_closed_at_tls(f):
    return f.hostile_check("close_at_tls"), ("connect_closed", _hostile(f, "tls"))


def _case_bind_in_use(f):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        got = f.error(lambda: f.engine(bind_port=port).start())
    return got, ("bind_in_use", {"host": "127.0.0.1", "port": port})


def _case_bind_address(f):
    # TEST-NET-1: an address of nobody's, so of no interface here
    return f.error(lambda: f.engine(bind="192.0.2.1", bind_port=4000).start()), \
        ("bind_address", {"host": "192.0.2.1", "port": 4000, "errno": "EADDRNOTAVAIL"})


def _case_timeout_handshake(f):
    return f.event("no_http_answer", wait=40), ("timeout_handshake", {**_hostile(f, "upgrade"), "timeout_ms": 20000})


def _case_timeout_check(f):
    return f.hostile_check("no_http_answer", timeout=0.5), ("timeout_check", {"host": "localhost",
                                                                              "port": f.hostile.port,
                                                                              "timeout_ms": 500})


def _case_timeout_probe(f):
    silent = Silent()
    try:
        return f.probe(f"https://127.0.0.1:{silent.port}/api/settings", timeout=0.5), \
            ("timeout_probe", {"host": "127.0.0.1", "port": silent.port, "phase": "probe", "timeout_ms": 500})
    finally:
        silent.close()


def _case_closed_stopped(f):
    e = f.engine()
    e.start()
    e.stop()
    return f.error(e.start), ("closed_stopped", {})


def _case_closed_not_running(f):
    return f.error(lambda: f.engine().check(1.0)), ("closed_not_running", {})


def _case_closed_started(f):
    e = f.engine()
    try:
        e.start()
        return f.error(e.start), ("closed_started", {})
    finally:
        e.stop()


def _stdio_case(stream):
    """A directory as standard input (readable at once; read() says EISDIR) or as standard output
    ("writable" at once; write() says EBADF)."""
    def case(f):
        directory = os.open(ROOT, os.O_RDONLY)
        pipe_r, pipe_w = os.pipe()
        try:
            if stream == "stdin":
                return f.pump(directory, pipe_w), ("closed_stdin", {"errno": "EISDIR"})
            return f.pump(pipe_r, directory, send=b"to stdout"), ("closed_stdout", {"errno": "EBADF"})
        finally:
            for fd in (directory, pipe_r, pipe_w):
                os.close(fd)
    return case


def _frame_case(behaviour, reason, **extra):
    def case(f):
        return f.event(behaviour), (reason, {**_hostile(f, "frame"), **extra})
    return case


def _case_resource_fds(f):
    """socket() for the WebSocket finds no descriptor left under a lowered RLIMIT_NOFILE (a child process)."""
    script = r"""
import json, os, resource, sys, time
from tests.fixtures_engine import engine_module, basic_auth
m = engine_module(sys.argv[1])
e = m.Engine("127.0.0.1", int(sys.argv[2]), basic_auth(), verify=False)
e.start()
time.sleep(0.5)                 # the engine's own start-up (the portable one resolves ahead) is over
limit = len(os.listdir("/proc/self/fd")) - 1
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
while True:                     # a descriptor closed meanwhile left a hole below the limit: fill it
    try:
        os.open(os.devnull, os.O_RDONLY)
    except OSError:
        break
try:
    e.check(10)
    outcome = None
except m.Error as err:
    outcome = [err.args[0], err.args[1], limit]
finally:
    # descriptors again before any thread ends: glibc opens libgcc_s for that the first time
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
print(json.dumps(outcome))
e.stop()
"""
    port = f.scm.ports["engine-site"]
    proc = subprocess.run([sys.executable, "-c", script, f.name, str(port)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr
    reason, facts, limit = json.loads(proc.stdout)
    return (reason, facts), ("resource_fds", {"host": "127.0.0.1", "port": port, "phase": "connect",
                                              "errno": "EMFILE", "limit": limit})


class _PlainHttp(engine_targets.AcceptingServer):
    """Answers whatever arrives, the TLS hello included, with plain HTTP."""

    def _handle(self, conn):
        threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    @staticmethod
    def _answer(conn):
        with conn:
            try:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass


# A record of noise where application data belongs (tls_garbage_mid_stream): what OpenSSL says of it.
_TLS_GARBAGE_TEXT = "decryption failed or bad record mac"

CASES = {
    "auth_refused": _case_auth_refused,
    "auth_refused/server_message": _case_auth_refused_with_a_message,
    "http_status": _case_http_status,
    "http_status/server_message": _case_http_status_with_a_message,
    "http_malformed": _case_http_malformed,
    "http_too_large": _case_http_too_large,
    "http_bad_accept": _case_http_bad_accept,
    "http_not_json": _case_http_not_json,
    "tls_untrusted": _case_tls_untrusted,
    "tls_untrusted/probe": _case_tls_untrusted_probe,
    "tls_wrong_host": _case_tls_wrong_host,
    "tls_wrong_host/probe": _case_tls_wrong_host_probe,
    "tls_handshake": _case_tls_handshake,
    "tls_stream": _case_tls_stream,
    "tls_ca_file": _case_tls_ca_file,
    "dns_unknown_host": _case_dns_unknown_host,
    "dns_unknown_host/probe": _case_dns_unknown_host_probe,
    "proxy_unreachable": _case_proxy_unreachable,
    "proxy_unknown_host": _case_proxy_unknown_host,
    "proxy_refused": _case_proxy_refused,
    "proxy_auth_required": _case_proxy_auth_required,
    "proxy_closed": _case_proxy_closed,
    "proxy_malformed": _case_proxy_malformed,
    "proxy_url": _case_proxy_url,
    "proxy_scheme": _case_proxy_scheme,
    "connect_refused": _case_connect_refused,
    "connect_refused/probe": _case_connect_refused_probe,
    "connect_unreachable": _case_connect_unreachable,
    "connect_reset": _case_connect_reset,
    "connect_closed": _case_connect_closed,
    "connect_closed/tls": _case_connect_closed_at_tls,
    "bind_in_use": _case_bind_in_use,
    "bind_address": _case_bind_address,
    "timeout_handshake": pytest.param(_case_timeout_handshake, marks=pytest.mark.slow),
    "timeout_check": _case_timeout_check,
    "timeout_probe": _case_timeout_probe,
    "closed_stopped": _case_closed_stopped,
    "closed_not_running": _case_closed_not_running,
    "closed_started": _case_closed_started,
    "closed_stdin": _stdio_case("stdin"),
    "closed_stdout": _stdio_case("stdout"),
    "protocol_reserved_bits": _frame_case("reserved_bits", "protocol_reserved_bits"),
    "protocol_masked": _frame_case("masked_frame", "protocol_masked"),
    "protocol_opcode": _frame_case("bad_opcode", "protocol_opcode", opcode=3),
    "protocol_control": _frame_case("bad_control", "protocol_control"),
    "protocol_fragment": _frame_case("stray_continuation", "protocol_fragment"),
    "protocol_close": _frame_case("close_1005", "protocol_close"),
    "protocol_too_large": _frame_case("len_2_63", "protocol_too_large", size=1 << 63, limit=16 << 20),
    "resource_fds": _case_resource_fds,
}

# What nothing outside the process can provoke, and why; their words and typed errors are checked
# directly, and where only one engine has the path that is said too.
NOT_PROVOKED = {
    "tls_ca_store": "the system's CA store always loads (an empty one loads too, and then nothing verifies)",
    "connect_failed": "a probe's catch-all for a library failure no fault here produces",
    "bind_failed": "bind() failing otherwise (EACCES for ports below 1024) needs a user without privileges; "
                   "the tests run as root",
    "closed_replaced": "native engine only: a second check() while the first runs, from another thread; the "
                       "portable engine runs them side by side",
    "closed_silent": "needs the hang-up time without a byte: ping interval + at least 300 s",
    "closed_abandoned": "portable engine only, and never raised: the signal handler's exception that "
                        "abandons the probe is",
    "resource_memory": "out of memory cannot be caused from outside without taking the test process with it",
    "internal": "failures of libraries and of the engine itself (a mutex, a thread, an lws context)",
}


def test_every_reason_is_provoked_or_explained():
    provoked = {name.split("/")[0] for name in CASES}
    assert provoked.isdisjoint(NOT_PROVOKED)
    assert provoked | set(NOT_PROVOKED) == set(_reasons.REASONS)


def test_the_engine_compiles_in_the_same_vocabulary(engine):
    module = engine_module(engine)
    assert module.REASONS == tuple((r.name, r.kind) for r in _reasons.REASONS.values())
    assert (module.KINDS, module.PHASES, module.FACTS) == (_reasons.KINDS, _reasons.PHASES, _reasons.FACTS)
    assert (module.SERVER_MESSAGE_MAX, module.BODY_SCAN) == (_reasons.SERVER_MESSAGE_MAX, _reasons.BODY_SCAN)


@pytest.mark.parametrize("case", [pytest.param(*p.values, marks=p.marks, id=name) if hasattr(p, "values")
                                  else pytest.param(p, id=name) for name, p in CASES.items()])
def test_a_fault_gives_its_reason_and_facts(faults, case):
    got, expected = case(faults)
    assert got == expected
    assert set(got[1]) <= set(_reasons.FACTS)
