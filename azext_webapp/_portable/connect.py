"""The way to the SCM host: resolve, TCP (every address in turn), HTTP CONNECT through a proxy, and
TLS verified against a CA file or the system store, with the host name checked (tn_conn.c and
tn_tls.c's counterpart). Used by the WebSocket links and by the probes.

``HeadProtocol`` is the asyncio protocol both build on: TLS on memory BIOs, and header blocks
(the proxy's answer, the 101, a probe's answer) collected for ``await expect_head(...)``.
"""
import asyncio
import socket
import ssl
import time

from .codec import HeadCollector, status_of
from .errors import Error, errno_of, fail, resource_error, tls_failure
from .sizes import TLS_READ

_DNS_TTL = 10.0   # seconds a resolution is reused (1,000 connections opened at once resolve once)


def tls_context(ca_file, verify):
    """The client TLS context: TLS 1.2+, REQUESTS_CA_BUNDLE replacing the system store (as requests
    does), host names checked; nothing verified only when the user turned verification off."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if ca_file:
        try:
            ctx.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError, ValueError):
            raise fail("tls_ca_file", ca_file=ca_file) from None
        return ctx
    try:
        ctx.load_default_certs()
        if not ctx.cert_store_stats().get("x509_ca"):
            _load_certifi(ctx)   # e.g. python.org's macOS build, whose OpenSSL store is empty
    except (OSError, ssl.SSLError, ValueError):
        raise fail("tls_ca_store") from None
    return ctx


def _load_certifi(ctx):
    try:
        import certifi  # azure-cli carries it (through requests)
    except ImportError:
        return
    ctx.load_verify_locations(cafile=certifi.where())


def split_hostport(text, default_port=80):
    """'host:port' or '[v6]:port' -> (host, port)."""
    text = text.rpartition("@")[2]
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    return host, int(port) if port.isdigit() else default_port


READ_MIN, READ_MAX = 16 * 1024, TLS_READ
READ_BULK = 256 * 1024        # a connection's read_max when few are open (see relay.py)


class HeadProtocol(asyncio.BufferedProtocol):
    """A TCP connection with TLS of its own and header blocks collected on request.

    TLS runs on memory BIOs here rather than through loop.start_tls(): one layer fewer per message
    (asyncio's TLS protocol is a state machine with its own buffers and flow control), nothing private
    of asyncio touched, and the same code on the selector loop (POSIX) and the proactor loop (Windows).
    The read buffer starts small (an idle connection holds 16 KiB) and grows while reads fill it, up
    to ``read_max``.

    While a header block is expected (the proxy's answer, the 101, a probe's answer) it is collected
    for ``await expect_head(...)``; afterwards ``on_bytes`` gets what arrives. Subclasses hear of the
    end through ``ended()`` (EOF or close_notify: a clean end) and ``lost(exc)`` (the connection is
    gone; exc says why, None for a clean close)."""

    def __init__(self):
        self.transport = None
        self._collector = None
        self._head = None            # future of (head, rest) while a header block is expected
        self._lost_why = None        # Error for an end while a header block is expected
        self._buf = bytearray(READ_MIN)
        self._view = memoryview(self._buf)
        self.read_max = READ_MAX
        self._tls = self._bio_in = self._bio_out = None
        self._handshake = None       # future while the TLS handshake runs
        self._tls_error = None
        self._paused = False

    def connection_made(self, transport):
        self.transport = transport

    # -- TLS ------------------------------------------------------------------------------------
    def start_tls(self, context, server_hostname):
        """Begin the TLS handshake; the returned future is done when it completes (or failed)."""
        self._bio_in, self._bio_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._bio_in, self._bio_out, server_side=False,
                                     server_hostname=server_hostname)
        self._handshake = asyncio.get_running_loop().create_future()
        self._step_handshake()
        return self._handshake

    def _step_handshake(self):
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, ValueError) as exc:
            self._flush()            # the alert, so the server knows why
            self._end_handshake(exc)
            return
        self._flush()
        self._end_handshake(None)
        if self._bio_in.pending:
            self._decrypt()

    def _end_handshake(self, exc):
        fut, self._handshake = self._handshake, None
        if fut is not None and not fut.done():
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)

    def send(self, data):
        """Write application data (encrypted once TLS is up)."""
        if self.transport is None or self.transport.is_closing():
            return
        if self._tls is None:
            self.transport.write(data)
            return
        try:
            self._tls.write(data)
        except ssl.SSLError as exc:
            self._fail_tls(exc)
            return
        self._flush()

    def _flush(self):
        out = self._bio_out.read()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    def _fail_tls(self, exc):
        self._tls_error = exc
        if self.transport is not None:
            self.transport.abort()

    def _decrypt(self):
        if self._paused or self._tls is None:
            return
        chunks, eof = [], False
        try:
            while True:
                chunk = self._tls.read(READ_BULK)
                if not chunk:
                    eof = True
                    break
                chunks.append(chunk)
                if not self._bio_in.pending and not self._tls.pending():
                    break            # all of it: no SSLWantReadError to raise and catch
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            eof = True
        except ssl.SSLError as exc:
            if chunks:
                self.data_received(b"".join(chunks))
            self._fail_tls(exc)
            return
        if self._bio_out.pending:    # TLS 1.3 post-handshake messages
            self._flush()
        if chunks:
            self.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if eof:                      # close_notify: a clean end from the server
            self.ended()
            self.transport.close()

    # -- reading ---------------------------------------------------------------------------------
    def get_buffer(self, sizehint):
        return self._view

    def buffer_updated(self, nbytes):
        full = nbytes == len(self._buf)
        data = self._view[:nbytes]
        if self._tls is None:
            self.data_received(bytes(data))
        else:
            self._bio_in.write(data)
            if self._handshake is not None:
                self._step_handshake()
            else:
                self._decrypt()
        if full and len(self._buf) < self.read_max:    # a busy connection: read more at once
            self._resize(min(len(self._buf) * 4, self.read_max))

    def _resize(self, size):
        self._buf = bytearray(size)
        self._view = memoryview(self._buf)

    def shrink(self):
        """An idle connection gives its large read buffer back."""
        if len(self._buf) > READ_MIN:
            self._resize(READ_MIN)

    def pause_reading(self):
        if not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self):
        if self._paused:
            self._paused = False
            self.transport.resume_reading()
            if self._tls is not None and self._bio_in.pending:
                asyncio.get_running_loop().call_soon(self._decrypt)   # what arrived before the pause

    # -- header blocks ---------------------------------------------------------------------------
    def expect_head(self, collector, lost_why):
        self._collector = collector
        self._lost_why = lost_why
        self._head = asyncio.get_running_loop().create_future()
        return self._head

    def data_received(self, data):
        if self._head is None:
            self.on_bytes(data)
            return
        try:
            done = self._collector.feed(data)
        except Error as err:
            self._finish_head(exc=err)
            return
        if done is not None:
            self._finish_head(result=done)

    def _finish_head(self, result=None, exc=None):
        fut, self._head, self._collector = self._head, None, None
        if fut is not None and not fut.done():
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)

    # -- ends --------------------------------------------------------------------------------------
    def eof_received(self):
        if self._handshake is not None:
            self._end_handshake(ConnectionResetError("the server closed the connection"))
        else:
            self.ended()
        return False                 # the transport closes; lost() follows

    def connection_lost(self, exc):
        exc = exc or self._tls_error
        if self._handshake is not None:
            self._end_handshake(exc or ConnectionResetError("the server closed the connection"))
        if self._head is not None:
            self._finish_head(exc=self._lost_why)
        self.lost(exc)
        # gone: give back the TLS session and the read buffer now, not when the garbage collector
        # gets to this protocol's reference cycles (a busy tunnel would hold hundreds of them)
        self._tls = self._bio_in = self._bio_out = None
        self._buf = bytearray()
        self._view = memoryview(self._buf)

    def ended(self):
        """EOF from the server (overridden); while a header block is expected, a failure."""
        if self._head is not None:
            self._finish_head(exc=self._lost_why)

    def lost(self, exc):  # pragma: no cover - overridden
        pass

    def on_bytes(self, data):  # pragma: no cover - overridden
        pass


class Route:
    """Where a connection goes and how: host, port, proxy (host:port text or None), proxy_auth
    (the Proxy-Authorization value or None), the TLS context and the resolver cache."""

    def __init__(self, host, port, proxy, proxy_auth, ssl_context, ca_file=None, probe=False):
        self.host, self.port = host, port
        self.ca_file = ca_file
        self.proxy = proxy
        self.proxy_addr = split_hostport(proxy) if proxy else None
        self.proxy_auth = proxy_auth
        self.ssl_context = ssl_context
        self.probe = probe            # a probe's failures are in phase "probe", as tn_probe.c's are
        self._dns = {}

    # -- the facts of a failure
    def where(self, phase):
        """host, port and phase, as tn_conn.c / tn_tls.c / tn_probe.c report them."""
        return {"host": self.host, "port": self.port, "phase": "probe" if self.probe else phase}

    def resource(self, exc, phase):
        return resource_error(exc, **self.where(phase))

    def unreachable(self, dns, exc=None):
        """No TCP connection: to the proxy, or the SCM host did not resolve or refused (exc: why)."""
        where = self.where("connect")
        name = None if dns else errno_of(exc)
        if self.proxy:
            return fail("proxy_unknown_host" if dns else "proxy_unreachable", proxy=self.proxy, errno=name,
                        **where)
        if dns:
            return fail("dns_unknown_host", **where)
        return fail("connect_refused" if name == "ECONNREFUSED" else "connect_unreachable", errno=name, **where)

    async def resolve(self, loop):
        host, port = self.proxy_addr or (self.host, self.port)
        cached = self._dns.get((host, port))
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG)
        except socket.gaierror as exc:
            if cached and getattr(socket, "EAI_SYSTEM", None) == exc.errno:
                return cached[1]    # the resolver itself failed (out of descriptors): what it said last
            infos = None
        except OSError as exc:
            if cached:
                return cached[1]
            raise self.resource(exc, "connect") or self.unreachable(dns=True) from None
        if not infos:
            raise self.unreachable(dns=True)
        addrs = [(info[0], info[4]) for info in infos]
        self._dns[(host, port)] = (time.monotonic() + _DNS_TTL, addrs)
        return addrs

    async def warm(self, loop):
        """Resolve ahead of the first connection (errors are the first connection's to report)."""
        try:
            await self.resolve(loop)
        except (Error, OSError):
            pass

    async def open(self, loop, protocol, step):
        """TCP (+ CONNECT) + TLS to the host, with ``protocol`` (a HeadProtocol) attached; returns the
        TCP transport (application data goes through ``protocol.send``). ``step(name)`` is told each
        step ("tcp", "proxy", "tls") as it begins."""
        step("tcp")
        transport = None
        failure = last = None
        for family, addr in await self.resolve(loop):
            try:
                transport, _ = await loop.create_connection(lambda: protocol, addr[0], addr[1],
                                                            family=family)
                break
            except OSError as exc:
                last = exc          # tn_conn.c reports the last address's errno
                failure = self.resource(exc, "connect") or failure
        if transport is None:
            raise failure or self.unreachable(dns=False, exc=last)
        try:
            if self.proxy:
                step("proxy")
                await self._connect_through_proxy(transport, protocol)
            step("tls")
            try:
                await protocol.start_tls(self.ssl_context, self.host)
            except (ConnectionError, OSError, ValueError) as exc:   # ssl.SSLError among them
                raise self.resource(exc, "tls") or tls_failure(exc, self.ca_file, **self.where("tls")) \
                    from None
            return transport
        except BaseException:
            transport.abort()
            raise

    async def _connect_through_proxy(self, transport, protocol):
        target = f"{self.host}:{self.port}"
        request = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        if self.proxy_auth:
            request += f"Proxy-Authorization: {self.proxy_auth}\r\n"
        head = protocol.expect_head(self.proxy_collector(), fail("proxy_closed", **self.proxy_where()))
        protocol.send((request + "\r\n").encode("latin-1"))
        del request
        answer, _ = await head
        self.check_proxy_answer(answer)

    def proxy_where(self) -> dict:
        return dict(self.where("proxy"), proxy=self.proxy)

    def proxy_collector(self) -> HeadCollector:
        """The proxy's answer to CONNECT is collected as a header block (tn_conn_proxy_answer)."""
        malformed = fail("proxy_malformed", **self.proxy_where())
        return HeadCollector(malformed, malformed)

    def check_proxy_answer(self, answer: bytes) -> None:
        """Raise Error unless the proxy's header block says 200 (what follows it is the tunnel's)."""
        where = self.proxy_where()
        status = status_of(answer)
        if status is None or status < 100:
            raise fail("proxy_malformed", **where)
        if status != 200:
            raise fail("proxy_auth_required" if status == 407 else "proxy_refused", status=status, **where)
