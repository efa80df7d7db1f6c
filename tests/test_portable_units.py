"""The portable engine's parts on their own (azext_webapp/_portable): the WebSocket codec and its
masking, the header collector, the error wording, and the branches for Windows and macOS, run here
by simulating the platform (sys.platform, os.name) and asserting what gets built or called."""
import errno
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

from azext_webapp import _reasons
from azext_webapp._portable import codec, connect, errors, limits, listener, pump, waits
from azext_webapp._portable.errors import Error
from sandbox import wscodec
from tests.fixtures_engine import engine_and_why

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _mask_bytewise(payload, key):
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


# -- codec: masking and frames ---------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 8, 125, 126, 127, 65535, 65536, 65537, 200003])
def test_mask_equals_the_bytewise_definition(n):
    payload, key = os.urandom(n), os.urandom(4)
    assert codec.mask(payload, key) == _mask_bytewise(payload, key)
    assert codec.mask(codec.mask(payload, key), key) == payload


def _python_lines_run(function, *args):
    """How many lines of Python run in function (and what it calls) for these arguments."""
    lines = 0

    def tracer(frame, event, arg):
        nonlocal lines
        if event == "line":
            lines += 1
        return tracer

    sys.settrace(tracer)
    try:
        function(*args)
    finally:
        sys.settrace(None)
    return lines


def test_mask_works_on_the_whole_buffer_not_byte_by_byte():
    """A 64 KiB frame is masked in as many Python steps as a 4-byte one: one integer XOR, not a
    per-byte loop (which would cap the portable engine near 10 MB/s; `make bench` measures it)."""
    key = b"\x01\x02\x03\x04"
    small = _python_lines_run(codec.mask, os.urandom(5), key)
    large = _python_lines_run(codec.mask, os.urandom(65537), key)
    assert large == small


def _unframe(data):
    """(fin, opcode, payload) of one client frame, read by the sandbox's own codec (masked, or it fails)."""
    (found,), rest = wscodec.split_frames(data, masked=True)
    assert rest == b""
    return found.fin, found.opcode, found.payload


@pytest.mark.parametrize("n,header", [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)])
def test_frame_lengths_use_the_shortest_form(n, header):
    payload = os.urandom(n)
    data = codec.frame(codec.OP_BINARY, payload)
    assert len(data) == header + 4 + n
    assert _unframe(data) == (True, codec.OP_BINARY, payload)


def test_frames_use_fresh_mask_keys():
    keys = {codec.frame(codec.OP_BINARY, b"x")[2:6] for _ in range(64)}
    assert len(keys) > 60


def test_data_is_split_into_frames_of_at_most_frame_max():
    data = os.urandom(3 * codec.FRAME_MAX + 5)
    frames, rest = wscodec.split_frames(codec.data_frames(data), masked=True)
    payloads = [f.payload for f in frames]
    assert rest == b"" and {(f.fin, f.opcode) for f in frames} == {(True, codec.OP_BINARY)}
    assert [len(p) for p in payloads] == [codec.FRAME_MAX] * 3 + [5]
    assert b"".join(payloads) == data


def test_accept_key_is_rfc_6455s_example():
    assert codec.accept_for("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_upgrade_request_carries_the_tunnel_headers():
    req = codec.upgrade_request("app.scm.example", 443, "Basic c2VjcmV0", "a2V5", "app-i1", 9229).decode()
    assert req.startswith("GET /AppServiceTunnel/Tunnel.ashx HTTP/1.1\r\nHost: app.scm.example\r\n")
    for line in ("Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: a2V5", "Sec-WebSocket-Version: 13",
                 "Authorization: Basic c2VjcmV0", "Cookie: ARRAffinity=app-i1", "AppsvcTunnelPort: 9229"):
        assert f"\r\n{line}\r\n" in req
    assert req.endswith("\r\n\r\n")
    plain = codec.upgrade_request("h", 8443, "Bearer t", "k").decode()
    assert "Host: h:8443\r\n" in plain and "Cookie" not in plain and "AppsvcTunnelPort" not in plain


def _parse(stream, step=None):
    data, controls = [], []
    parser = codec.FrameParser("scm.example", lambda v: data.append(bytes(v)),
                               lambda op, p: controls.append((op, p)), port=443)
    step = step or len(stream) or 1
    for i in range(0, len(stream), step):
        parser.feed(stream[i:i + step])
    return b"".join(data), controls


@pytest.mark.parametrize("step", [None, 1, 3, 7, 4096])
def test_parser_hands_on_data_and_control_frames_however_split(step):
    big = os.urandom(70000)
    stream = (wscodec.frame(codec.OP_BINARY, b"hello") + wscodec.frame(codec.OP_PING, b"p1")
              + wscodec.frame(codec.OP_BINARY, big) + wscodec.frame(codec.OP_PONG, b"")
              + wscodec.frame(codec.OP_BINARY, b"") + wscodec.frame(codec.OP_CLOSE, b"\x03\xf3bye")
              + wscodec.frame(codec.OP_BINARY, b"after close"))
    data, controls = _parse(stream, step)
    assert data == b"hello" + big
    assert controls == [(codec.OP_PING, b"p1"), (codec.OP_PONG, b""), (codec.OP_CLOSE, b"\x03\xf3bye")]


@pytest.mark.parametrize("stream,reason,extra", [
    (bytes([0x83, 0x01]) + b"x", "protocol_opcode", {"opcode": 3}),
    (bytes([0xC2, 0x01]) + b"x", "protocol_reserved_bits", {}),
    (bytes([0x82, 0x81]) + b"\x01\x02\x03\x04x", "protocol_masked", {}),
    (bytes([0x82, 0x7F]) + (1 << 63).to_bytes(8, "big"), "protocol_too_large",
     {"size": 1 << 63, "limit": 16 << 20}),
    (bytes([0x09, 0x7E]) + (300).to_bytes(2, "big"), "protocol_control", {}),
    (bytes([0x09, 0x05]) + b"xxxxx", "protocol_control", {}),     # a fragmented ping
])
def test_parser_rejects_what_a_server_must_not_send(stream, reason, extra):
    with pytest.raises(Error) as info:
        _parse(stream)
    assert info.value.args == (reason, {"host": "scm.example", "port": 443, "phase": "frame", **extra})


def test_head_collector_finds_the_end_keeps_the_rest_and_refuses_nul_and_oversize():
    c = codec.upgrade_collector("h", 443)
    assert c.feed(b"HTTP/1.1 101 OK\r\nA: b\r") is None
    assert c.feed(b"\n\r\n\x82\x00") == (b"HTTP/1.1 101 OK\r\nA: b\r\n\r\n", b"\x82\x00")
    with pytest.raises(Error) as info:
        codec.upgrade_collector("h", 443).feed(b"HTTP/1.1 101\0 OK\r\n\r\n")
    assert info.value.args == ("http_malformed", {"host": "h", "port": 443, "phase": "upgrade"})
    c = codec.upgrade_collector("h", 443)
    with pytest.raises(Error) as info:
        for _ in range(100):
            c.feed(b"X-Long: " + b"y" * 200 + b"\r\n")
    assert info.value.args == ("http_too_large", {"host": "h", "port": 443, "phase": "upgrade", "limit": 8192})


def test_check_upgrade_classifies_answers():
    key = codec.new_key()
    good = f"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: {codec.accept_for(key)}\r\n\r\n".encode()
    codec.check_upgrade(good, b"", key, "h", 443)
    cases = [(b"HTTP/1.1 401 Unauthorized\r\n\r\n", b"", ("auth_refused", {"status": 401})),
             (b"HTTP/1.1 403 Forbidden\r\n\r\n", b'{"Message": "IP blocked"}',
              ("auth_refused", {"status": 403, "server_message": "IP blocked"})),
             (b"HTTP/1.1 502 Bad Gateway\r\n\r\n", b"Bad gateway\r\nmore",
              ("http_status", {"status": 502, "server_message": "Bad gateway"})),
             (b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: wrong\r\n\r\n", b"",
              ("http_bad_accept", {"status": 101})),
             (b"SSH-2.0-what\r\n\r\n", b"", ("http_malformed", {}))]
    for head, body, (reason, facts) in cases:
        with pytest.raises(Error) as info:
            codec.check_upgrade(head, body, key, "h", 443)
        assert info.value.args == (reason, {"host": "h", "port": 443, "phase": "upgrade", **facts})


def test_error_is_a_reason_and_its_facts():
    err = errors.fail("http_status", host="h", status=404, detail="", port=0)
    assert err.args == ("http_status", {"host": "h", "status": 404}) and err.reason == "http_status"
    limit = errors.fd_limit()
    assert errors.resource_error(OSError(24, "Too many open files"), host="h").args == \
        ("resource_fds", {"errno": "EMFILE", "host": "h", **({"limit": limit} if limit else {})})
    assert errors.resource_error(MemoryError()).args == ("resource_memory", {"errno": "ENOMEM"})
    assert errors.resource_error(ConnectionRefusedError()) is None


@pytest.mark.parametrize("body,message", [
    (b'{"Code": "Forbidden", "Message": "IP\\tblocked \\u2013 ask the owner\\n"}', "IP blocked \u2013 ask the owner"),
    (b"\xef\xbb\xbf \r\n Service\x07 Unavailable \r\nsecond line", "Service Unavailable"),
    (b"<html><body>403</body></html>", None),
    (b'{"error": {"code": "x"}}', None),
    (b"", None),
    (b"x" * 300, "x" * 200),
    ("\u00e9".encode() * 101, "\u00e9" * 100),         # cut at a character, not inside one
])
def test_server_message_is_one_bounded_line(body, message):
    from azext_webapp import _reasons
    assert _reasons.server_message(body) == message


def test_errno_names_are_the_same_on_every_platform(monkeypatch):
    """Windows names socket errors WSAE... (10061 is WSAECONNREFUSED): the facts say ECONNREFUSED."""
    from azext_webapp import _reasons
    assert _reasons.errno_name(errno.ECONNREFUSED) == "ECONNREFUSED"
    monkeypatch.setitem(errno.errorcode, 10061, "WSAECONNREFUSED")
    assert _reasons.errno_name(10061) == "ECONNREFUSED"
    assert _reasons.errno_name(0) is None and _reasons.errno_name(None) is None


def test_proxy_address_forms():
    assert connect.split_hostport("proxy.corp:3128") == ("proxy.corp", 3128)
    assert connect.split_hostport("[2001:db8::1]:8080") == ("2001:db8::1", 8080)
    assert connect.split_hostport("proxy.corp") == ("proxy.corp", 80)


def test_read_buffer_grows_while_reads_fill_it_and_shrinks_when_idle():
    proto = connect.HeadProtocol()
    got = []
    proto.on_bytes = got.append
    assert len(proto.get_buffer(-1)) == connect.READ_MIN
    for size in (connect.READ_MIN, 4 * connect.READ_MIN, connect.READ_MAX):
        buf = proto.get_buffer(-1)
        buf[:size] = b"x" * size
        proto.buffer_updated(size)
    assert len(proto.get_buffer(-1)) == connect.READ_MAX
    assert b"".join(got) == b"x" * (connect.READ_MIN * 5 + connect.READ_MAX)
    proto.shrink()
    assert len(proto.get_buffer(-1)) == connect.READ_MIN


def test_frames_that_arrive_before_the_relay_takes_the_101_are_kept():
    """The 101's future resolves on the next loop turn; what the server sends meanwhile (a container
    that speaks first) waits for the parser instead of being dropped."""
    import types
    from azext_webapp._portable import relay
    owner = types.SimpleNamespace(rx_seen=False, ws_gone=False)
    link = owner.link = relay.Link(owner)
    link.on_bytes(b"\x82\x03bye")
    link.on_bytes(b"\x88\x02\x03\xf3")
    assert link.early == [b"\x82\x03bye", b"\x88\x02\x03\xf3"]


# -- TLS settings ------------------------------------------------------------------------------------

def test_tls_context_verifies_unless_told_not_to(tmp_path):
    ctx = connect.tls_context(None, True)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    off = connect.tls_context(None, False)
    assert off.verify_mode == ssl.CERT_NONE and not off.check_hostname
    with pytest.raises(Error) as info:
        connect.tls_context(str(tmp_path / "missing.pem"), True)
    assert info.value.args == ("tls_ca_file", {"ca_file": str(tmp_path / "missing.pem")})


def test_an_empty_system_store_falls_back_to_certifi(monkeypatch, tmp_path):
    """python.org's macOS Python has an empty OpenSSL store: certifi (which az carries) fills in."""
    certifi = pytest.importorskip("certifi")
    loaded = []
    monkeypatch.setattr(ssl.SSLContext, "load_default_certs", lambda self, purpose=None: None)
    real = ssl.SSLContext.load_verify_locations
    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations",
                        lambda self, cafile=None, **kw: loaded.append(cafile) or real(self, cafile=cafile, **kw))
    connect.tls_context(None, True)
    assert loaded == [certifi.where()]


# -- Windows and macOS branches (simulated) -------------------------------------------------------------

class _FakeResource:
    RLIMIT_NOFILE, RLIM_INFINITY = 7, -1

    def __init__(self, soft, hard, refuse_above=None):
        self.limits, self.refuse_above, self.calls = (soft, hard), refuse_above, []

    def getrlimit(self, which):
        return self.limits

    def setrlimit(self, which, value):
        self.calls.append(value)
        if self.refuse_above is not None and value[0] > self.refuse_above:
            raise ValueError("not allowed")
        self.limits = value


def test_fd_limit_raised_to_the_hard_limit_on_linux(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    fake = _FakeResource(1024, 524288)
    assert limits.raise_fd_limit(fake) == 65536 and fake.calls == [(65536, 524288)]
    fake = _FakeResource(1024, 4096)
    assert limits.raise_fd_limit(fake) == 4096 and fake.calls == [(4096, 4096)]


def test_fd_limit_on_macos_falls_back_to_open_max(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    fake = _FakeResource(256, _FakeResource.RLIM_INFINITY, refuse_above=10240)
    assert limits.raise_fd_limit(fake) == 10240
    assert fake.calls == [(65536, -1), (10240, -1)]


def test_fd_limit_is_left_alone_on_windows(monkeypatch):
    monkeypatch.setattr(os, "name", "nt")
    fake = _FakeResource(512, 8192)
    assert limits.raise_fd_limit(fake) is None and fake.calls == []


class _FakeSocket:
    def __init__(self):
        self.options = []

    def setsockopt(self, level, name, value):
        self.options.append((level, name, value))


def test_listener_options_per_platform(monkeypatch):
    posix = _FakeSocket()
    monkeypatch.setattr(os, "name", "posix")
    listener.set_listener_options(posix)
    assert posix.options == [(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)]
    # Windows: SO_REUSEADDR would let another program bind the same port; exclusive use instead
    monkeypatch.setattr(os, "name", "nt")
    monkeypatch.setattr(socket, "SO_EXCLUSIVEADDRUSE", -5, raising=False)
    windows = _FakeSocket()
    listener.set_listener_options(windows)
    assert windows.options == [(socket.SOL_SOCKET, -5, 1)]


def test_busy_port_facts_name_port_and_address():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(Error) as info:
            listener.open_listener("127.0.0.1", port)
    assert info.value.args == ("bind_in_use", {"host": "127.0.0.1", "port": port})
    with pytest.raises(Error) as info:
        listener.open_listener("no-such-host.invalid", 0)
    assert info.value.args[0] == "bind_address" and info.value.args[1]["host"] == "no-such-host.invalid"
    assert info.value.args[1]["detail"]     # the resolver's words: e.g. "Name or service not known"


def test_pump_points_stdout_at_the_platforms_null_device(monkeypatch):
    """After the WebSocket ended, out_fd is re-pointed at os.devnull (NUL on Windows, /dev/null on
    POSIX) so that its reader sees EOF; no path is hard-coded."""
    opened, duped = [], []
    monkeypatch.setattr(os, "devnull", "nul")
    monkeypatch.setattr(os, "open", lambda path, flags: opened.append((path, flags)) or 99)
    monkeypatch.setattr(os, "dup2", lambda a, b: duped.append((a, b)))
    monkeypatch.setattr(os, "close", lambda fd: None)
    p = pump.Pump.__new__(pump.Pump)
    p.out_fd, p._err, p._closed, p._lock = 1, None, False, threading.Lock()
    p._close_out()
    assert opened == [("nul", os.O_WRONLY)] and duped == [(99, 1)] and p._err is None


def test_pump_relays_pipes_through_a_socket_pair():
    """The Windows way (threads, os.read/os.write, socket.socketpair) is the only way: shown with pipes."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    p = pump.Pump(in_r, out_w)
    peer = socket.socket(fileno=p.take_peer())
    try:
        with pytest.raises(RuntimeError):
            p.take_peer()
        os.write(in_w, b"to the engine")
        assert peer.recv(100) == b"to the engine"
        peer.sendall(b"to stdout")
        assert os.read(out_r, 100) == b"to stdout"
        os.close(in_w)
        in_w = None
        assert peer.recv(100) == b""          # stdin EOF reaches the engine's side as EOF
        peer.close()
        assert p.wait(5)
        assert os.read(out_r, 100) == b""     # stdout was pointed at the null device: EOF
        assert p.counts() == (13, 9) and p.error() is None
    finally:
        p.close()
        for fd in (in_r, in_w, out_r, out_w):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass


def test_main_thread_waits_in_half_second_slices(monkeypatch):
    """Windows does not interrupt a lock wait for Ctrl+C: every wait must come back to Python at
    least twice a second."""
    asked = []

    class Event:
        def __init__(self, set_on_call):
            self.set_on_call = set_on_call

        def wait(self, timeout):
            asked.append(timeout)
            time.sleep(timeout / 100)
            return len(asked) == self.set_on_call

        def is_set(self):
            return False
    assert waits.wait_event(Event(5), None) is True
    assert len(asked) == 5 and all(t <= 0.5 for t in asked)
    asked.clear()
    assert waits.wait_event(Event(0), 0.01) is False
    assert asked and all(t <= 0.5 for t in asked)


def test_signal_handler_exception_propagates_out_of_a_wait():
    import signal

    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted()
    old = signal.signal(signal.SIGUSR1, handler)
    try:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        started = time.monotonic()
        with pytest.raises(Interrupted):
            waits.wait_event(threading.Event(), 30)
        assert time.monotonic() - started < 1.5
    finally:
        signal.signal(signal.SIGUSR1, old)


POSIX_ONLY = ("fcntl", "termios", "resource", "pwd", "grp", "tty", "pty")

IMPORT_WITHOUT_POSIX_MODULES = r'''
import builtins, sys
blocked = set(sys.argv[1].split(","))
real = builtins.__import__
def guarded(name, *a, **kw):
    if name.split(".")[0] in blocked:
        raise ImportError(f"No module named {name!r} (simulated Windows)")
    return real(name, *a, **kw)
builtins.__import__ = guarded
for name in blocked:
    sys.modules.pop(name, None)
import os
from azext_webapp import _portable
engine = _portable.Engine("localhost", 443, "Basic x", bind_port=0)
port = engine.start()
assert port > 0 and engine.running()
engine.stop()
print("ok", sorted(m for m in blocked if m in sys.modules))
'''


def test_the_portable_engine_needs_no_posix_only_module():
    """Imported and started with fcntl, termios, resource, pwd, grp unimportable, as on Windows."""
    proc = subprocess.run([sys.executable, "-c", IMPORT_WITHOUT_POSIX_MODULES, ",".join(POSIX_ONLY)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok []"


def test_no_posix_only_call_in_the_portable_sources():
    package = os.path.join(ROOT, "azext_webapp", "_portable")
    for name in sorted(os.listdir(package)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(package, name), encoding="utf-8") as handle:
            text = handle.read()
        for needle in ("import fcntl", "import termios", "getuid", "geteuid", "SIGHUP", "/tmp", "/dev/null\"",
                       "os.fork", "MSG_NOSIGNAL", "pipe2", "accept4"):
            assert needle not in text, f"{name}: {needle}"


# -- engine selection in tunnel.py --------------------------------------------------------------------

def _select(monkeypatch, forced, loads):
    """tunnel._select_engine with a native engine that loads (a stand-in module: the fast tier has no
    build) or one that does not (a platform without a build)."""
    import types
    from azext_webapp import _native, tunnel

    def load_engine(package_dir=None, tag=None):  # pylint: disable=unused-argument
        if loads:
            return types.ModuleType("azext_webapp._tunnel")
        raise _native.EngineUnavailableError(_native.no_build_message("windows_x86_64", ["linux_x86_64_gnu"]),
                                             "windows_x86_64", "no native build for this platform (windows_x86_64)")
    monkeypatch.setattr(_native, "load_engine", load_engine)
    if forced is None:
        monkeypatch.delenv("WEBAPP_ENGINE", raising=False)
    else:
        monkeypatch.setenv("WEBAPP_ENGINE", forced)
    return tunnel._select_engine()


def test_engine_selection(monkeypatch):
    module, name, reason = _select(monkeypatch, None, loads=True)
    assert name == "native" and module.__name__ == "azext_webapp._tunnel" and "loads on this platform" in reason
    module, name, reason = _select(monkeypatch, None, loads=False)
    assert name == "portable" and module.__name__ == "azext_webapp._portable"
    assert reason == "no native build for this platform (windows_x86_64)"
    module, name, reason = _select(monkeypatch, "portable", loads=True)
    assert (name, reason) == ("portable", "WEBAPP_ENGINE=portable")
    assert _select(monkeypatch, "native", loads=True)[1:] == ("native", "WEBAPP_ENGINE=native")
    from azext_webapp import _native
    with pytest.raises(_native.EngineUnavailableError) as info:
        _select(monkeypatch, "native", loads=False)
    assert str(info.value).startswith("webapp's tunnel engine has no build for this platform (windows_x86_64)")
    assert "portable" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(_native.EngineUnavailableError, match="WEBAPP_ENGINE must be native or portable"):
        _select(monkeypatch, "fast", loads=True)


def test_the_running_tunnel_module_says_which_engine_and_why():
    """The portable half (the native half needs the build: tests/test_engine_native.py)."""
    assert engine_and_why("portable") == ["portable", "WEBAPP_ENGINE=portable"]


def test_a_refused_upgrades_body_ends_at_its_length_its_last_chunk_or_4_kib():
    head = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\n"
    body = codec.BodyCollector(head)
    assert body.feed(b"abc") is None
    assert body.feed(b"de and more") == (b"abcde", b"")
    chunked = codec.BodyCollector(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert chunked.feed(b"3;x=1\r\nabc\r\n") is None
    assert chunked.feed(b"a\r\n0123456789\r\n0\r\n\r\n") == (b"abc0123456789", b"")
    assert codec.BodyCollector(b"HTTP/1.1 401 x\r\nContent-Length: 0\r\n\r\n").feed(b"") is not None
    endless = codec.BodyCollector(b"HTTP/1.1 403 x\r\nContent-Length: 99999999999999999999\r\n\r\n")
    assert endless.feed(b"y" * 4095) is None
    assert len(endless.feed(b"yy")[0]) == _reasons.BODY_SCAN


def test_upgrade_request_to_another_path():
    req = codec.upgrade_request("h", 443, "Basic x", "k", "app-i0", 0, "/exec/shell?shell=%2Fbin%2Fsh").decode()
    assert req.startswith("GET /exec/shell?shell=%2Fbin%2Fsh HTTP/1.1\r\n")
    assert "Cookie: ARRAffinity=app-i0\r\n" in req and "AppsvcTunnelPort" not in req


def test_a_held_event_the_queue_cannot_take_holds_nothing():
    """A "held" event dropped from a full queue would leave its connection held forever (Python
    releases only what it heard of): the relay is not held and ends as without hold."""
    from types import SimpleNamespace
    from azext_webapp import _portable
    from azext_webapp._portable import relay as relay_module
    engine = _portable.Engine("localhost", 443, "Basic x", bind_port=0)
    engine._events.extend([None] * _portable.EVENTS_MAX)  # pylint: disable=protected-access
    assert engine._push_event(("closed",)) is False and engine._dropped == 1  # pylint: disable=protected-access
    emitted = []
    core = SimpleNamespace(emit=lambda relay, kind: emitted.append(kind) or False, held=set())
    held = relay_module.Relay._hold(SimpleNamespace(core=core, held=False))  # pylint: disable=protected-access
    assert held is False and emitted == ["held"] and core.held == set()
