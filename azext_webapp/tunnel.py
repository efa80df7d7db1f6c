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
import ipaddress
import json
import logging
import os
import socket
import sys
import threading
import time
import urllib.parse
from typing import (Any, Callable, Dict, List, NamedTuple, Optional, Protocol, Sequence, Tuple, Type,
                    runtime_checkable)

from azext_webapp import _errors, _native, _reasons
from azext_webapp._termination import Terminated, raise_if_signalled, terminate_on


# ---------------------------------------------------------------------------------------------
# The engine contract: what both engine modules (native azext_webapp._tunnel, portable
# azext_webapp._portable) provide, and all this module uses of them (docs/ARCHITECTURE.md,
# Contract 1). Failures are ``Error(reason, facts)``: a reason of _reasons.def and a dict of facts.

Facts = Dict[str, object]
# (kind, conn_id, peer, bytes_up, bytes_down, reason, facts, remote_closed): "opened" | "closed" |
# "failed" | "held"; reason "" and facts None unless it failed (or was held for a refusal).
EventTuple = Tuple[str, int, str, int, int, str, Optional[Facts], bool]


@runtime_checkable
class Engine(Protocol):
    """One tunnel: a local listener (or adopted sockets) relayed to the SCM site's WebSocket."""

    # positional-only (/): the native methods take no keywords
    def start(self) -> int: ...  # the bound port (0 without a listener)
    def check(self, timeout: float = 15.0, /) -> None: ...
    def adopt(self, fd: int, /) -> int: ...  # the connection's id
    def send_text(self, conn_id: int, text: str, /) -> None: ...
    def stop(self) -> None: ...
    def stats(self) -> Dict[str, int]: ...
    def running(self) -> bool: ...
    def wait(self, timeout: float = -1.0, /) -> bool: ...
    def poll_events(self) -> List[EventTuple]: ...
    def set_authorization(self, value: str, /) -> None: ...
    def release(self, retry: bool, /) -> None: ...


@runtime_checkable
class Pump(Protocol):
    """stdio mode: standard input and output to one socket the engine adopts."""

    def take_peer(self) -> int: ...
    def wait(self, timeout: float = 0.5, /) -> bool: ...
    def counts(self) -> Tuple[int, int]: ...
    def error(self) -> Optional[Tuple[str, Facts]]: ...
    def close(self) -> None: ...


class EngineFactory(Protocol):
    def __call__(self, host: str, port: int, authorization: str, bind: str = ..., bind_port: int = ...,
                 instance: Optional[str] = ..., target_port: int = ..., ping_interval: float = ...,
                 ca_file: Optional[str] = ..., verify: bool = ..., proxy: Optional[str] = ...,
                 proxy_auth: Optional[str] = ..., listen: bool = ..., path: Optional[str] = ...,
                 hold: bool = ...) -> Engine: ...


class PumpFactory(Protocol):
    def __call__(self, in_fd: int, out_fd: int) -> Pump: ...


class HttpGet(Protocol):
    def __call__(self, url: str, authorization: str, instance: Optional[str] = ..., ca_file: Optional[str] = ...,
                 verify: bool = ..., proxy: Optional[str] = ..., proxy_auth: Optional[str] = ...,
                 timeout: float = ...) -> Tuple[int, bytes]: ...


@runtime_checkable
class EngineModule(Protocol):
    """An engine module. ``Error`` is raised with ``args == (reason, facts)``; the vocabulary
    (``REASONS`` as (reason, kind) pairs, ``KINDS``, ``PHASES``, ``FACTS`` and the caps) is
    _reasons.def's, which the native module compiles in and the portable one reads."""

    # read-only members (a module's attributes): properties, so that a subtype's value conforms
    @property
    def Error(self) -> Type[Exception]: ...
    @property
    def Engine(self) -> EngineFactory: ...
    @property
    def Pump(self) -> PumpFactory: ...
    @property
    def http_get(self) -> HttpGet: ...
    @property
    def RING_CAP(self) -> int: ...
    @property
    def FRAME_MAX(self) -> int: ...
    @property
    def REASONS(self) -> Tuple[Tuple[str, str], ...]: ...
    @property
    def KINDS(self) -> Tuple[str, ...]: ...
    @property
    def PHASES(self) -> Tuple[str, ...]: ...
    @property
    def FACTS(self) -> Tuple[str, ...]: ...
    @property
    def SERVER_MESSAGE_MAX(self) -> int: ...
    @property
    def BODY_SCAN(self) -> int: ...
    @property
    def REFUSAL_SECS(self) -> int: ...
    @property
    def TEXTS_MAX(self) -> int: ...


def _select_engine() -> Tuple[EngineModule, str, str]:
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


class TunnelEvent(NamedTuple):
    """What happened to one connection: an engine event (EventTuple) with its failure's reason and
    facts, and, derived from them, its kind, HTTP status and one line in _errors.py's words."""
    kind: str
    conn_id: int
    peer: str
    bytes_up: int
    bytes_down: int
    reason: str
    facts: Optional[Facts]
    remote_closed: bool

    @property
    def error_kind(self) -> str:
        return _reasons.kind_of(self.reason) if self.reason else ""

    @property
    def status(self) -> int:
        return int((self.facts or {}).get("status", 0))  # type: ignore[call-overload]

    @property
    def message(self) -> str:
        return _errors.failure_detail(self.reason, self.facts or {}) if self.reason else ""


class ScmStatus(NamedTuple):
    """GetStatus (v2): the container's state, whether the SCM site reaches its port, which port."""
    state: str
    can_reach_port: bool
    port: Optional[int]
    msg: str


class TunnelError(Exception):
    """Base of every tunnel failure: ``reason`` and ``facts`` (_reasons.def), ``kind``, ``status``
    (int or None), ``host``; ``str()`` is one line of what happened, in _errors.py's words.
    ``scheme`` (Basic or Bearer) is the caller's fact: which credential an auth failure refused."""
    kind = "internal"

    def __init__(self, reason: str, facts: Optional[Facts] = None, scheme: Optional[str] = None):
        self.reason = reason
        self.facts: Facts = dict(facts or {})
        self.scheme = scheme
        super().__init__(_errors.failure_detail(reason, self.facts, scheme))

    @property
    def status(self) -> Optional[int]:
        return self.facts.get("status") or None  # type: ignore[return-value]

    @property
    def host(self) -> Optional[str]:
        return self.facts.get("host")  # type: ignore[return-value]

    @property
    def server_message(self) -> Optional[str]:
        """What a refusing server said (its body's JSON Message, or its first text line), or None."""
        return self.facts.get("server_message") or None  # type: ignore[return-value]


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


def failure(reason: str, facts: Optional[Facts] = None, scheme: Optional[str] = None) -> TunnelError:
    """The typed error of this reason's kind."""
    return _ERRORS.get(_reasons.kind_of(reason), TunnelError)(reason, facts, scheme)


def _typed(engine_error: Exception, scheme: Optional[str] = None) -> TunnelError:
    reason, facts = engine_error.args
    return failure(reason, facts, scheme)


# ---------------------------------------------------------------------------------------------
# Settings from the environment, as az reads them


def _parse_scm_url(scm_url: str) -> Tuple[str, int]:
    parts = urllib.parse.urlsplit(scm_url if "://" in scm_url else "https://" + scm_url)
    if parts.scheme != "https":
        raise ValueError(f"the SCM URL must start with https:// (got {scm_url!r})")
    if not parts.hostname:
        raise ValueError(f"the SCM URL has no host name (got {scm_url!r})")
    return parts.hostname, parts.port or 443


_verification_warned = False


def _tls_settings() -> Tuple[Optional[str], bool]:
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
        raise failure("tls_ca_file", _reasons.facts(ca_file=ca_file))
    return ca_file, True


def _env(*names: str) -> Optional[str]:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _no_proxy_matches(host: str, port: int, no_proxy: str) -> bool:
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


class ProxySetting(NamedTuple):
    """The HTTPS proxy for one host: ``address`` is host:port (the only part ever shown);
    ``authorization`` the Proxy-Authorization value built from the URL's user and password, or
    None. ``repr`` never shows the credentials."""
    address: str
    authorization: Optional[str]

    def __repr__(self) -> str:
        return f"ProxySetting(address={self.address!r}, authorization={'<hidden>' if self.authorization else None})"


def _proxy_for(host: str, port: int) -> Optional[ProxySetting]:
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
        raise failure("proxy_url", _reasons.facts(host=proxy_host))
    if parts.scheme not in ("http", ""):
        raise failure("proxy_scheme", _reasons.facts(proxy=_host_port(proxy_host, proxy_port), detail=parts.scheme))
    address = _host_port(proxy_host, proxy_port)
    authorization = None
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")
    return ProxySetting(address, authorization)


def _proxy_arguments(host: str, port: int) -> Dict[str, Optional[str]]:
    """The engine's proxy and proxy_auth arguments for host."""
    proxy = _proxy_for(host, port)
    return {"proxy": proxy.address if proxy else None, "proxy_auth": proxy.authorization if proxy else None}


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _scheme_of(authorization: str) -> str:
    return "Bearer" if authorization[:6].lower() == "bearer" else "Basic"


# Each tunnelled connection holds two descriptors; 1,000 at once need more than the usual soft
# limit of 1,024. The soft limit is raised to the hard one (at most 65,536), once per process.
FD_LIMIT_CAP = 65536
_fd_limit_checked = False


def _raise_fd_limit() -> None:
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

    def __init__(self, scm_url: str, authorization: str, bind: str = "127.0.0.1", port: int = 0,
                 instance: Optional[str] = None, target_port: Optional[int] = None, ping_interval: float = 30.0,
                 on_event: Optional[Callable[[TunnelEvent], None]] = None, listen: bool = True,
                 path: str = TUNNEL_PATH, hold: bool = False) -> None:
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
                                          verify=verify, listen=bool(listen), hold=bool(hold),
                                          **_path_argument(path), **_proxy_arguments(self.host, self.scm_port))
        except _tunnel.Error as err:
            raise _typed(err, self.auth_scheme) from None
        self._lock = threading.Lock()
        self._started = False
        self._stopped = False
        self.port = 0   # the bound port, once start() has bound it

    def __repr__(self) -> str:
        return (f"<Tunnel {self.bind}:{self.port} -> {self.scm_url}{self.path.split('?')[0]} "
                f"auth={self.auth_scheme} started={self._started} stopped={self._stopped}>")

    def __enter__(self) -> "Tunnel":
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> int:
        """Bind (a busy port raises PortInUseError) and start the native service thread."""
        with self._lock:
            if self._started:
                return self.port
            try:
                self.port = self._engine.start()
            except _tunnel.Error as err:
                raise _typed(err, self.auth_scheme) from None
            self._started = True
            return self.port

    def check(self, timeout: float = 15.0) -> None:
        """One real WebSocket handshake with the endpoint, then closed; raises a typed error."""
        try:
            self._engine.check(float(timeout))
        except _tunnel.Error as err:
            raise _typed(err, self.auth_scheme) from None

    def adopt(self, fd: int) -> int:
        """Relay an already-connected socket as one more local connection (the engine owns fd);
        returns its connection id."""
        try:
            return self._engine.adopt(fd)
        except _tunnel.Error as err:
            raise _typed(err, self.auth_scheme) from None

    def send_text(self, conn_id: int, text: str) -> None:
        """A Text frame on connection conn_id: once its WebSocket is open, before the local data
        not yet sent by then; dropped when the connection is gone or ending."""
        try:
            self._engine.send_text(conn_id, text)
        except _tunnel.Error as err:
            raise _typed(err, self.auth_scheme) from None

    def event_error(self, event: TunnelEvent) -> TunnelError:
        """The typed error of a "failed" event (a refusal's server_message among its facts)."""
        return failure(event.reason, event.facts, self.auth_scheme)

    def relay_stdio(self, in_fd: int = 0, out_fd: int = 1, poll_interval: float = 0.5) -> Tuple[int, int]:
        """stdio mode (OpenSSH's ProxyCommand): relay in_fd and out_fd through one WebSocket until
        either side ends (in_fd's EOF closes the WebSocket; the WebSocket's end closes out_fd).
        The bytes move on a native thread; this thread only waits, and a recorded signal ends the
        wait (Terminated, KeyboardInterrupt). Returns (bytes read from in_fd, bytes written to out_fd)."""
        try:
            pump = _tunnel.Pump(in_fd, out_fd)
        except _tunnel.Error as err:
            raise _typed(err, self.auth_scheme) from None
        try:
            self.adopt(pump.take_peer())
            while not pump.wait(poll_interval):
                raise_if_signalled()
                self._deliver(self.poll_events())
            self._deliver(self.poll_events())
            early = pump.error()
            if early:
                logger.warning("stdio relay: %s", _errors.failure_detail(*early))
            return pump.counts()
        finally:
            pump.close()

    def set_authorization(self, authorization: str) -> None:
        """New connections authenticate with this value from now on (a renewed token); open ones
        are untouched."""
        try:
            self._engine.set_authorization(authorization)
        except _tunnel.Error as err:
            raise _typed(err, self.auth_scheme) from None
        self.auth_scheme = _scheme_of(authorization)

    def release(self, retry: bool) -> None:
        """hold=True: the connections held ("held" events) retry on a new WebSocket, what their
        clients sent first, or (False) end as they would have without hold."""
        self._engine.release(bool(retry))

    def stop(self) -> None:
        """Close every connection and join the native thread. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._engine.stop()
        self._deliver(self.poll_events())

    def stats(self) -> Dict[str, int]:
        """{'open', 'total', 'bytes_up', 'bytes_down', 'failures'}; never blocks."""
        return self._engine.stats()

    @property
    def running(self) -> bool:
        return self._engine.running()

    def poll_events(self) -> List[TunnelEvent]:
        return [TunnelEvent(*ev) for ev in self._engine.poll_events()]

    def wait(self, timeout: float) -> bool:
        """Block up to timeout seconds for events or the engine's end; a recorded signal ends the
        wait (KeyboardInterrupt, Terminated)."""
        return self._engine.wait(timeout)

    def _deliver(self, events: Sequence[TunnelEvent]) -> None:
        if not self.on_event:
            return
        for ev in events:
            try:
                self.on_event(ev)
            except Exception:  # pylint: disable=broad-except
                logger.exception("on_event callback failed")

    def serve(self, timeout: Optional[float] = None) -> None:
        """Block, delivering events to on_event, until stop() or the timeout. A signal recorded by
        terminate_on() (Ctrl+C, SIGTERM) ends it within a wait slice, as KeyboardInterrupt or
        Terminated raised here, between two waits; raised again should a callback swallow it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._engine.running():
            raise_if_signalled()
            slice_ = 0.5
            if deadline is not None:
                slice_ = min(slice_, deadline - time.monotonic())
                if slice_ <= 0:
                    break
            self._engine.wait(slice_)
            self._deliver(self.poll_events())
        self._deliver(self.poll_events())
        raise_if_signalled()


class Channel:
    """One WebSocket to another endpoint of the SCM site (``/exec/shell``), seen as a local socket.

    ``open()`` starts an engine without a listener, adopts one end of a socket pair and waits for
    the upgrade's answer: a refusal raises the typed error, its facts holding the site's
    ``server_message`` when it said why. Then bytes written to ``sock`` go out as Binary frames, the
    server's Text and Binary frames arrive on ``sock`` as one byte stream in order, and
    ``send_text()`` sends a Text frame; the engine's thread moves the bytes with back-pressure both
    ways. The server's end of the WebSocket is EOF on ``sock`` (``failure()`` then says whether it
    broke). Nothing is checked beforehand with a handshake of its own: the channel's own upgrade is
    the check. A recorded signal ends the wait for the upgrade, as every wait."""

    def __init__(self, scm_url: str, authorization: str, path: str, instance: Optional[str] = None,
                 ping_interval: float = 30.0) -> None:
        self._tunnel = Tunnel(scm_url, authorization, instance=instance, ping_interval=ping_interval,
                              listen=False, path=path)
        self.sock: Optional["socket.socket"] = None
        self.conn_id = 0
        self._events: List[TunnelEvent] = []

    def __enter__(self) -> "Channel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self, first_text: Optional[str] = None, timeout: float = 30.0) -> "Channel":
        """Connect; ``first_text`` is the first frame the server gets (before any byte of sock)."""
        self._tunnel.start()
        ours, theirs = socket.socketpair()
        try:
            self.conn_id = self._tunnel.adopt(theirs.detach())
            if first_text is not None:
                self._tunnel.send_text(self.conn_id, first_text)
            self._wait_for_upgrade(timeout)
        except BaseException:
            ours.close()
            raise
        self.sock = ours
        return self

    def send_text(self, text: str) -> None:
        self._tunnel.send_text(self.conn_id, text)

    def failure(self) -> Optional[TunnelError]:
        """After EOF on sock: the typed error when the WebSocket broke rather than ended, else None."""
        self._take_events()
        failed = [ev for ev in self._events if ev.kind == "failed"]
        return self._tunnel.event_error(failed[0]) if failed else None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self._tunnel.stop()

    def _take_events(self) -> None:
        self._events += [ev for ev in self._tunnel.poll_events() if ev.conn_id == self.conn_id]

    def _wait_for_upgrade(self, timeout: float) -> None:
        where = _reasons.facts(host=self._tunnel.host, port=self._tunnel.scm_port, phase="upgrade")
        deadline = time.monotonic() + timeout
        while True:
            self._take_events()
            for ev in self._events:
                if ev.kind == "failed":
                    raise self._tunnel.event_error(ev)
                if ev.kind == "closed":
                    raise failure("connect_closed", where)
                if ev.kind == "opened":
                    return
            raise_if_signalled()
            left = deadline - time.monotonic()
            if left <= 0:
                raise failure("timeout_handshake", dict(where, timeout_ms=int(timeout * 1000)))
            self._tunnel.wait(min(0.5, left))


def _path_argument(path: str) -> Dict[str, str]:
    """The engine's path argument: none for the tunnel's own path (the engines' default)."""
    return {} if path == TUNNEL_PATH else {"path": path}


# ---------------------------------------------------------------------------------------------
# Probes (libcurl, GIL released, same TLS and proxy settings)


def _probe(scm_url: str, path: str, authorization: str, instance: Optional[str],
           timeout: float) -> Tuple[str, int, bytes]:
    host, port = _parse_scm_url(scm_url)
    base = f"https://{host}" + ("" if port == 443 else f":{port}")
    ca_file, verify = _tls_settings()
    try:
        status, body = _tunnel.http_get(base + path, authorization, instance=instance, ca_file=ca_file,
                                        verify=verify, timeout=float(timeout), **_proxy_arguments(host, port))
    except _tunnel.Error as err:
        raise _typed(err, _scheme_of(authorization)) from None
    if status != 200:  # the same reasons as the same answer to the upgrade
        raise failure("auth_refused" if status in (401, 403) else "http_status",
                      _reasons.facts(host=host, port=port, status=status, phase="probe", path=path.split("?")[0],
                                     server_message=_reasons.server_message(body)),
                      _scheme_of(authorization))
    return host, port, body


def get_status(scm_url: str, authorization: str, instance: Optional[str] = None,
               timeout: float = 30.0) -> ScmStatus:
    """GetStatus v2 -> ScmStatus(state, can_reach_port, port, msg)."""
    host, port, body = _probe(scm_url, TUNNEL_PATH + "?GetStatus&GetStatusAPIVer=2", authorization, instance,
                              timeout)
    try:
        return status_of(json.loads(body.decode("utf-8-sig")))
    except (ValueError, KeyError, AttributeError, TypeError):
        raise failure("http_not_json", _reasons.facts(host=host, port=port, status=200, phase="probe")) from None


def status_of(doc: Any) -> ScmStatus:
    """GetStatus's JSON as Kudu writes it ({"port": 2222, "state": "STARTED", "canReachPort": true,
    "msg": ...}), and as other servers may: keys in any case, a boolean or port written as a string.
    Raises ValueError, AttributeError or TypeError for what is not such an object."""
    fields = {str(key).lower(): value for key, value in doc.items()}
    reachable = fields.get("canreachport", False)
    if isinstance(reachable, str):
        reachable = reachable.strip().lower() in ("true", "1", "yes")
    port = fields.get("port")
    return ScmStatus(str(fields.get("state") or ""), bool(reachable), int(port) if port not in (None, "") else None,
                     str(fields.get("msg") or ""))


def warm_up(scm_url: str, authorization: str, timeout: float = 30.0) -> None:
    """GET /api/settings: wakes the SCM site, as the reference client does."""
    _probe(scm_url, "/api/settings", authorization, None, timeout)


def site_containers(scm_url: str, authorization: str, instance: Optional[str] = None,
                    timeout: float = 30.0) -> Any:
    """GET /api/sitecontainers: the app's containers and their states, as the SCM site has them
    (the JSON as it is: its shape is not published; docs/PROTOCOL.md section 9)."""
    host, port, body = _probe(scm_url, "/api/sitecontainers", authorization, instance, timeout)
    try:
        return json.loads(body.decode("utf-8"))
    except ValueError:
        raise failure("http_not_json", _reasons.facts(host=host, port=port, status=200, phase="probe",
                                                      path="/api/sitecontainers")) from None


# ---------------------------------------------------------------------------------------------
# Standalone entry point


def _authorization_from_env() -> Optional[str]:
    token = os.environ.get("WEBAPP_SCM_TOKEN")
    user, password = os.environ.get("WEBAPP_SCM_USER"), os.environ.get("WEBAPP_SCM_PASSWORD")
    if token:
        return "Bearer " + token
    if user and password is not None:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
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

    def on_event(ev: TunnelEvent) -> None:
        if ev.kind == "failed":
            print(f"connection {ev.conn_id} from {ev.peer} failed: {ev.message}", file=sys.stderr, flush=True)

    # From the first moment: a SIGTERM while the handshake is checked must end the process cleanly
    # too, not by the signal's default action. ssh ends a ProxyCommand with SIGHUP.
    signals = ("SIGINT", "SIGTERM", "SIGBREAK") + (("SIGHUP",) if args.stdio else ())
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
