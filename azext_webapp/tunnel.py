"""The tunnel: a local TCP listener whose every connection is relayed over its own WebSocket to
``wss://{scm-host}/AppServiceTunnel/Tunnel.ashx`` (Contract 1 in docs/ARCHITECTURE.md).

The work is done by the native engine ``azext_webapp._tunnel`` on its own thread with the GIL
released; this module reads the environment the way ``az`` does (CA bundle, verification switch,
proxy), turns native errors into typed exceptions and runs the standalone entry point::

    python -m azext_webapp.tunnel https://<scm-host>[:port] [--port N] [--bind ADDR]
                                  [--instance NAME] [--target-port N] [--stdio]

(``--stdio``: no listener; standard input and output are the one connection, for OpenSSH's
ProxyCommand, relayed by a native thread: ``Tunnel(listen=False)`` + ``relay_stdio()``)

with credentials from ``WEBAPP_SCM_USER`` + ``WEBAPP_SCM_PASSWORD`` (Basic) or ``WEBAPP_SCM_TOKEN``
(Bearer). The Authorization value is never logged, shown in ``repr`` or put into an exception.
"""
import base64
import collections
import ipaddress
import json
import logging
import os
import sys
import threading
import time
import urllib.parse

from azext_webapp import _native
from azext_webapp._termination import Terminated, raise_if_terminated, terminate_on  # noqa: F401


def _select_engine():
    """(engine module, "native" or "portable", one line saying why that one).

    The native engine (azext_webapp/_native/<platform>/) where it loads, else the portable one
    (azext_webapp/_portable/, the standard library only): both implement the same contract.
    WEBAPP_ENGINE=native|portable forces one; forcing native where it cannot load raises its
    EngineUnavailableError (an ImportError with one line to show). Test hook (tests/sanitize.py):
    WEBAPP_TUNNEL_NATIVE_DIR names the azext_webapp directory of another build tree, e.g. the
    ASan+UBSan one in .build-asan/azext_webapp. Only the directory is taken from the environment."""
    forced = (os.environ.get("WEBAPP_ENGINE") or "").strip().lower()
    if forced not in ("", "auto", "native", "portable"):
        raise _native.EngineUnavailableError(
            f"WEBAPP_ENGINE must be native or portable (or unset), not {forced!r}")
    if forced == "portable":
        from azext_webapp import _portable
        return _portable, "portable", "WEBAPP_ENGINE=portable"
    try:
        module = _native.load_engine(os.environ.get("WEBAPP_TUNNEL_NATIVE_DIR") or None)
    except _native.EngineUnavailableError as err:
        if forced == "native":
            raise
        from azext_webapp import _portable
        return _portable, "portable", err.reason
    if forced == "native":
        return module, "native", "WEBAPP_ENGINE=native"
    return module, "native", f"the native engine loads on this platform ({_native.platform_tag()})"


_tunnel, ENGINE, ENGINE_REASON = _select_engine()

# Under az's logger namespace ("cli.", as knack's get_logger names it), so that --verbose shows this
# module's info lines; the standalone entry logs through the root logger all the same.
logger = logging.getLogger("cli." + __name__)

TUNNEL_PATH = "/AppServiceTunnel/Tunnel.ashx"

TunnelEvent = collections.namedtuple("TunnelEvent", "kind conn_id peer bytes_up bytes_down message error_kind status remote_closed")
ScmStatus = collections.namedtuple("ScmStatus", "state can_reach_port port msg")


class TunnelError(Exception):
    """Base of every tunnel failure: ``kind``, ``status`` (int or None), ``host``; for a refused
    upgrade, ``server_message``: what the server said about it (its JSON ``Message``), or None."""
    kind = "internal"

    def __init__(self, message, status=None, host=None, server_message=None):
        super().__init__(message)
        self.status = status
        self.host = host
        self.server_message = server_message


class AuthenticationError(TunnelError):
    kind = "auth"


class HTTPStatusError(TunnelError):
    kind = "http"


class CertificateError(TunnelError):
    kind = "tls"


class NameResolutionError(TunnelError):
    kind = "dns"


class ProxyError(TunnelError):
    kind = "proxy"


class ConnectionFailedError(TunnelError):
    kind = "connect"


class PortInUseError(TunnelError):
    kind = "bind"


class TunnelTimeout(TunnelError):
    kind = "timeout"


class TunnelClosedError(TunnelError):
    kind = "closed"


class ResourceLimitError(TunnelError):
    kind = "resource"


_ERRORS = {cls.kind: cls for cls in (AuthenticationError, HTTPStatusError, CertificateError,
                                     NameResolutionError, ProxyError, ConnectionFailedError,
                                     PortInUseError, TunnelTimeout, TunnelClosedError, ResourceLimitError)}


def _typed(native_error, host):
    kind, status, message = native_error.args
    return _ERRORS.get(kind, TunnelError)(message, status=status or None, host=host)


# ---------------------------------------------------------------------------------------------
# Settings from the environment, as az reads them


def _parse_scm_url(scm_url):
    parts = urllib.parse.urlsplit(scm_url if "://" in scm_url else "https://" + scm_url)
    if parts.scheme != "https":
        raise ValueError(f"the SCM URL must start with https:// (got {scm_url!r})")
    if not parts.hostname:
        raise ValueError(f"the SCM URL has no host name (got {scm_url!r})")
    return parts.hostname, parts.port or 443


_verification_warned = False


def _tls_settings():
    """(ca_file or None, verify) from REQUESTS_CA_BUNDLE / AZURE_CLI_DISABLE_CONNECTION_VERIFICATION.
    The warning about disabled verification is given once per process, not once per probe."""
    global _verification_warned  # pylint: disable=global-statement
    if os.environ.get("AZURE_CLI_DISABLE_CONNECTION_VERIFICATION"):
        if not _verification_warned:
            _verification_warned = True
            logger.warning("Certificate verification is disabled (AZURE_CLI_DISABLE_CONNECTION_VERIFICATION "
                           "is set): the tunnel cannot tell the real SCM site from an impostor.")
        return None, False
    ca_file = os.environ.get("REQUESTS_CA_BUNDLE") or None
    if ca_file and not os.path.isfile(ca_file):
        raise CertificateError(f"REQUESTS_CA_BUNDLE names {ca_file}, which is not a readable file")
    return ca_file, True


def _env(*names):
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _no_proxy_matches(host, port, no_proxy):
    """requests/curl semantics: '*', exact names, domain suffixes ('.x.com' or 'x.com'), IPs/CIDRs."""
    host = host.lower().strip("[]")
    try:
        host_ip = ipaddress.ip_address(host)
    except ValueError:
        host_ip = None
    for entry in no_proxy.replace(" ", "").split(","):
        if not entry:
            continue
        if entry == "*":
            return True
        entry = entry.lower()
        name, _, eport = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if eport and eport.isdigit() and int(eport) != port:
            continue
        if host_ip is not None:
            try:
                if host_ip in ipaddress.ip_network(name.strip("[]"), strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


class ProxySetting(collections.namedtuple("ProxySetting", "address authorization")):
    """The HTTPS proxy for one host: ``address`` is host:port (the only part ever shown);
    ``authorization`` the Proxy-Authorization value built from the URL's user and password, or
    None. ``repr`` never shows the credentials."""
    __slots__ = ()

    def __repr__(self):
        return f"ProxySetting(address={self.address!r}, authorization={'<hidden>' if self.authorization else None})"


def _proxy_for(host, port):
    """The ProxySetting of the HTTPS proxy for host (HTTPS_PROXY, NO_PROXY), or None.

    The user and password of ``http://user:pass@host:port`` are percent-decoded (so a password may
    hold ``@``, ``:`` or ``%`` written as ``%40``, ``%3A``, ``%25``) and travel only in the
    Proxy-Authorization header of the CONNECT request; every message names host:port."""
    proxy = _env("HTTPS_PROXY", "https_proxy")
    if not proxy:
        return None
    no_proxy = _env("NO_PROXY", "no_proxy")
    if no_proxy and _no_proxy_matches(host, port, no_proxy):
        return None
    parts = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
    try:
        proxy_host, proxy_port = parts.hostname or "", parts.port or 80
    except ValueError:
        proxy_host, proxy_port = "", 0
    if not proxy_host or not proxy_port:
        raise ProxyError(f"HTTPS_PROXY is not a proxy URL of the form http://host:port "
                         f"(host {proxy_host or 'missing'})")
    if parts.scheme not in ("http", ""):
        raise ProxyError(f"only http:// proxies are supported for the tunnel (HTTPS_PROXY is "
                         f"{parts.scheme}://{_host_port(proxy_host, proxy_port)})")
    address = _host_port(proxy_host, proxy_port)
    authorization = None
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")
    return ProxySetting(address, authorization)


def _proxy_arguments(host, port):
    """The engine's proxy and proxy_auth arguments for host."""
    proxy = _proxy_for(host, port)
    return {"proxy": proxy.address if proxy else None, "proxy_auth": proxy.authorization if proxy else None}


def _host_port(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _scheme_of(authorization):
    return "Bearer" if authorization[:6].lower() == "bearer" else "Basic"


# Each tunnelled connection holds two descriptors; 1,000 at once need more than the usual soft
# limit of 1,024. The soft limit is raised to the hard one (at most 65,536), once per process.
FD_LIMIT_CAP = 65536
_fd_limit_checked = False


def _raise_fd_limit():
    global _fd_limit_checked  # pylint: disable=global-statement
    if _fd_limit_checked:
        return
    _fd_limit_checked = True
    try:
        import resource  # POSIX only; Windows has no such per-process limit on sockets
    except ImportError:
        return
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = FD_LIMIT_CAP if hard == resource.RLIM_INFINITY else min(hard, FD_LIMIT_CAP)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            logger.info("Raised this process's open-file limit from %d to %d (two per tunnelled connection)",
                        soft, want)
    except (OSError, ValueError) as err:
        logger.info("Could not raise the open-file limit (%s); connections beyond it will fail", err)


# ---------------------------------------------------------------------------------------------
# The tunnel


class Tunnel:
    """A local listener relaying every connection to the SCM tunnel endpoint (see module doc)."""

    def __init__(self, scm_url, authorization, bind="127.0.0.1", port=0, instance=None,
                 target_port=None, ping_interval=30.0, on_event=None, listen=True, path=TUNNEL_PATH):
        self.host, self.scm_port = _parse_scm_url(scm_url)
        self.scm_url = f"https://{self.host}" + ("" if self.scm_port == 443 else f":{self.scm_port}")
        self.bind = bind or "127.0.0.1"
        self.instance = instance
        self.target_port = target_port
        self.path = path
        self.on_event = on_event
        self.auth_scheme = _scheme_of(authorization)
        ca_file, verify = _tls_settings()
        _raise_fd_limit()
        try:
            self._engine = _tunnel.Engine(self.host, self.scm_port, authorization, bind=self.bind,
                                          bind_port=int(port or 0), instance=instance,
                                          target_port=int(target_port or 0),
                                          ping_interval=float(ping_interval), ca_file=ca_file,
                                          verify=verify, listen=bool(listen),
                                          **_path_argument(path), **_proxy_arguments(self.host, self.scm_port))
        except _tunnel.Error as err:
            raise _typed(err, self.host) from None
        self._lock = threading.Lock()
        self._started = False
        self._stopped = False
        self.port = None

    def __repr__(self):
        return (f"<Tunnel {self.bind}:{self.port} -> {self.scm_url}{self.path.split('?')[0]} "
                f"auth={self.auth_scheme} started={self._started} stopped={self._stopped}>")

    def __enter__(self):
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        """Bind (a busy port raises PortInUseError) and start the native service thread."""
        with self._lock:
            if self._started:
                return self.port
            try:
                self.port = self._engine.start()
            except _tunnel.Error as err:
                raise _typed(err, self.host) from None
            self._started = True
            return self.port

    def check(self, timeout=15.0):
        """One real WebSocket handshake with the endpoint, then closed; raises a typed error."""
        try:
            self._engine.check(float(timeout))
        except _tunnel.Error as err:
            raise _typed(err, self.host) from None

    def adopt(self, fd):
        """Relay an already-connected socket as one more local connection (the engine owns fd);
        returns its connection id."""
        try:
            return self._engine.adopt(fd)
        except _tunnel.Error as err:
            raise _typed(err, self.host) from None

    def send_text(self, conn_id, text):
        """A Text frame on connection conn_id: once its WebSocket is open, before the local data
        not yet sent by then; dropped when the connection is gone or ending."""
        try:
            self._engine.send_text(conn_id, text)
        except _tunnel.Error as err:
            raise _typed(err, self.host) from None

    def refused(self, event):
        """The typed error of a "failed" event, with what the server said when it refused the
        upgrade (the answer's JSON Message) as ``server_message``."""
        error = _typed(_tunnel.Error(event.error_kind, event.status, event.message), self.host)
        error.server_message = server_message(self._engine.refusal(event.conn_id))
        return error

    def relay_stdio(self, in_fd=0, out_fd=1, poll_interval=0.5):
        """stdio mode (OpenSSH's ProxyCommand): relay in_fd and out_fd through one WebSocket until
        either side ends (in_fd's EOF closes the WebSocket; the WebSocket's end closes out_fd).
        The bytes move on a native thread; this thread only waits, with signal handlers running.
        Returns (bytes read from in_fd, bytes written to out_fd)."""
        try:
            pump = _tunnel.Pump(in_fd, out_fd)
        except _tunnel.Error as err:
            raise _typed(err, self.host) from None
        try:
            self.adopt(pump.take_peer())
            while not pump.wait(poll_interval):
                raise_if_terminated()
                self._deliver(self.poll_events())
            self._deliver(self.poll_events())
            early = pump.error()
            if early:
                logger.warning("stdio relay: %s", early[2])
            return pump.counts()
        finally:
            pump.close()

    def set_authorization(self, authorization):
        """New connections authenticate with this value from now on (a renewed token); open ones
        are untouched."""
        try:
            self._engine.set_authorization(authorization)
        except _tunnel.Error as err:
            raise _typed(err, self.host) from None
        self.auth_scheme = _scheme_of(authorization)

    def stop(self):
        """Close every connection and join the native thread. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._engine.stop()
        self._deliver(self.poll_events())

    def stats(self):
        """{'open', 'total', 'bytes_up', 'bytes_down', 'failures'}; never blocks."""
        return self._engine.stats()

    @property
    def running(self):
        return self._engine.running()

    def poll_events(self):
        return [TunnelEvent(*ev) for ev in self._engine.poll_events()]

    def wait(self, timeout):
        """Block up to timeout seconds for events or the engine's end; signal handlers run meanwhile."""
        return self._engine.wait(timeout)

    def _deliver(self, events):
        if not self.on_event:
            return
        for ev in events:
            try:
                self.on_event(ev)
            except Exception:  # pylint: disable=broad-except
                logger.exception("on_event callback failed")

    def serve(self, timeout=None):
        """Block, delivering events to on_event, until stop() or the timeout. Signal handlers
        (Ctrl+C -> KeyboardInterrupt) run promptly: the engine's wait returns on any signal, and a
        termination signal recorded by terminate_on() raises Terminated within half a second even
        if something swallowed the handler's exception."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._engine.running():
            raise_if_terminated()
            slice_ = 0.5
            if deadline is not None:
                slice_ = min(slice_, deadline - time.monotonic())
                if slice_ <= 0:
                    break
            self._engine.wait(slice_)
            self._deliver(self.poll_events())
        self._deliver(self.poll_events())
        raise_if_terminated()


class Channel:
    """One WebSocket to another endpoint of the SCM site (``/exec/shell``), seen as a local socket.

    ``open()`` starts an engine without a listener, adopts one end of a socket pair and waits for
    the upgrade's answer: a refusal raises the typed error, with ``server_message`` when the site
    said why. Then bytes written to ``sock`` go out as Binary frames, the server's Text and Binary
    frames arrive on ``sock`` as one byte stream in order, and ``send_text()`` sends a Text frame;
    the engine's thread moves the bytes with back-pressure both ways. The server's end of the
    WebSocket is EOF on ``sock`` (``failure()`` then says whether it broke). Nothing is checked
    beforehand with a handshake of its own: the channel's own upgrade is the check."""

    def __init__(self, scm_url, authorization, path, instance=None, ping_interval=30.0):
        self._tunnel = Tunnel(scm_url, authorization, instance=instance, ping_interval=ping_interval,
                              listen=False, path=path)
        self.host = self._tunnel.host
        self.sock = None
        self.conn_id = None
        self._events = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def open(self, first_text=None, timeout=30.0, cancelled=None):
        """Connect; ``first_text`` is the first frame the server gets (before any byte of sock).
        ``cancelled()``, asked twice a second while the upgrade is awaited, gives up with
        TunnelClosedError when it returns True (a signal the caller recorded)."""
        import socket
        self._tunnel.start()
        ours, theirs = socket.socketpair()
        try:
            self.conn_id = self._tunnel.adopt(theirs.detach())
            if first_text is not None:
                self._tunnel.send_text(self.conn_id, first_text)
            self._wait_for("opened", timeout, cancelled)
        except BaseException:
            ours.close()
            raise
        self.sock = ours
        return self

    def send_text(self, text):
        self._tunnel.send_text(self.conn_id, text)

    def failure(self):
        """After EOF on sock: the typed error when the WebSocket broke rather than ended, else None."""
        self._take_events()
        failed = [ev for ev in self._events if ev.kind == "failed"]
        return self._tunnel.refused(failed[0]) if failed else None

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self._tunnel.stop()

    def _take_events(self):
        self._events += [ev for ev in self._tunnel.poll_events() if ev.conn_id == self.conn_id]

    def _wait_for(self, kind, timeout, cancelled):
        deadline = time.monotonic() + timeout
        while True:
            if cancelled is not None and cancelled():
                raise TunnelClosedError("cancelled while the WebSocket upgrade was awaited", host=self.host)
            self._take_events()
            for ev in self._events:
                if ev.kind == "failed":
                    raise self._tunnel.refused(ev)
                if ev.kind == "closed":
                    raise ConnectionFailedError(f"{self.host} closed the connection during the WebSocket upgrade",
                                                host=self.host)
                if ev.kind == kind:
                    return
            raise_if_terminated()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TunnelTimeout(f"{self.host} did not answer the WebSocket upgrade within {int(timeout)} s",
                                    host=self.host)
            self._tunnel.wait(min(0.5, left))


def _path_argument(path):
    """The engine's path argument: none for the tunnel's own path (the engines' default)."""
    return {} if path == TUNNEL_PATH else {"path": path}


def server_message(answer, limit=400):
    """What an HTTP answer that refused an upgrade says about why, as one line: the ``Message`` of a
    JSON body (as Azure's SCM sites write it), else a plain-text body's first line; None when there
    is nothing to show (no answer, an empty or HTML body). ``answer``: head and body as received."""
    if not answer:
        return None
    head, _, body = answer.partition(b"\r\n\r\n")
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields.setdefault(name.strip().lower().decode("latin-1"), value.strip().decode("latin-1"))
    if fields.get("transfer-encoding", "").lower().endswith("chunked"):
        body = _dechunked(body)
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        found = next((value for key, value in doc.items() if key.lower() == "message"), None)
        text = str(found) if found else ""
    elif doc is not None or "html" in fields.get("content-type", "").lower() or text.startswith("<"):
        return None
    text = " ".join(text.split())
    return (text[:limit - 3] + "...") if len(text) > limit else (text or None)


def _dechunked(body):
    """A chunked body's data (what arrived of it)."""
    out = bytearray()
    while body:
        size_line, sep, rest = body.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0].strip() or b"x", 16)
        except ValueError:
            break
        if not sep or size <= 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# Probes (libcurl, GIL released, same TLS and proxy settings)


def _probe(scm_url, path, authorization, instance, timeout):
    host, port = _parse_scm_url(scm_url)
    base = f"https://{host}" + ("" if port == 443 else f":{port}")
    ca_file, verify = _tls_settings()
    try:
        status, body = _tunnel.http_get(base + path, authorization, instance=instance, ca_file=ca_file,
                                        verify=verify, timeout=float(timeout), **_proxy_arguments(host, port))
    except _tunnel.Error as err:
        raise _typed(err, host) from None
    if status in (401, 403):  # the engines' words for the same answer at the upgrade
        raise AuthenticationError(f"{host} refused the credentials (HTTP {status}); {_scheme_of(authorization)} "
                                  "authentication was used", status=status, host=host)
    if status != 200:
        raise HTTPStatusError(f"{host} answered HTTP {status} to {path.split('?')[0]}", status=status, host=host)
    return host, body


def get_status(scm_url, authorization, instance=None, timeout=30.0):
    """GetStatus v2 -> ScmStatus(state, can_reach_port, port, msg)."""
    host, body = _probe(scm_url, TUNNEL_PATH + "?GetStatus&GetStatusAPIVer=2", authorization, instance,
                        timeout)
    try:
        doc = json.loads(body.decode("utf-8"))
        return ScmStatus(str(doc.get("state", "")), bool(doc.get("canReachPort", False)),
                         int(doc["port"]) if doc.get("port") is not None else None, str(doc.get("msg", "")))
    except (ValueError, KeyError, AttributeError, TypeError):
        raise HTTPStatusError(f"{host} answered GetStatus with something that is not its JSON",
                              status=200, host=host) from None


def warm_up(scm_url, authorization, timeout=30.0):
    """GET /api/settings: wakes the SCM site, as the reference client does."""
    _probe(scm_url, "/api/settings", authorization, None, timeout)


# ---------------------------------------------------------------------------------------------
# Standalone entry point


def _authorization_from_env():
    token = os.environ.get("WEBAPP_SCM_TOKEN")
    user, password = os.environ.get("WEBAPP_SCM_USER"), os.environ.get("WEBAPP_SCM_PASSWORD")
    if token:
        return "Bearer " + token
    if user and password is not None:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return None


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(
        prog="python -m azext_webapp.tunnel",
        description="Open a local port tunnelled to an App Service SCM site. Credentials come from the "
                    "environment: WEBAPP_SCM_USER + WEBAPP_SCM_PASSWORD (Basic) or WEBAPP_SCM_TOKEN (Bearer).")
    parser.add_argument("scm_url", help="https://<scm-host>[:port]")
    parser.add_argument("--port", type=int, default=0, help="local port (default: a free one)")
    parser.add_argument("--bind", default="127.0.0.1", help="local address (default 127.0.0.1)")
    parser.add_argument("--instance", help="instance name (ARRAffinity cookie)")
    parser.add_argument("--target-port", type=int, help="container port (AppsvcTunnelPort)")
    parser.add_argument("--ping-interval", type=float, default=30.0, help=argparse.SUPPRESS)
    parser.add_argument("--stdio", action="store_true",
                        help="relay standard input and output (OpenSSH ProxyCommand) instead of listening")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(message)s", level=logging.WARNING)

    authorization = _authorization_from_env()
    if not authorization:
        print("error: set WEBAPP_SCM_USER and WEBAPP_SCM_PASSWORD (Basic) or WEBAPP_SCM_TOKEN (Bearer)",
              file=sys.stderr)
        return 2

    def on_event(ev):
        if ev.kind == "failed":
            print(f"connection {ev.conn_id} from {ev.peer} failed: {ev.message}", file=sys.stderr, flush=True)

    # From the first moment: a SIGTERM while the handshake is checked must end the process cleanly
    # too, not by the signal's default action. ssh ends a ProxyCommand with SIGHUP.
    signals = ("SIGTERM", "SIGHUP", "SIGBREAK") if args.stdio else ("SIGTERM", "SIGBREAK")
    tunnel = None
    with terminate_on(*signals):
        try:
            tunnel = Tunnel(args.scm_url, authorization, bind=args.bind, port=args.port, instance=args.instance,
                            target_port=args.target_port, ping_interval=args.ping_interval, on_event=on_event,
                            listen=not args.stdio)
            del authorization
            tunnel.start()
            tunnel.check()
            if args.stdio:  # nothing but tunnel bytes on stdout
                tunnel.relay_stdio(sys.stdin.fileno(), sys.stdout.fileno())
                return 0
            print(f"Port {tunnel.port} is open", flush=True)
            tunnel.serve()
        except (KeyboardInterrupt, Terminated):
            pass
        except (TunnelError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            return 1
        finally:
            if tunnel is not None:
                started = time.monotonic()
                tunnel.stop()
                logger.info("stopped in %.3f s", time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
