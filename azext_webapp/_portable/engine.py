"""The portable engine: ``Engine`` (tn_engine.c's counterpart) with its asyncio event loop on a thread
of its own. Python's main thread only waits (in slices, see waits.py); every socket, timer and
WebSocket lives on the loop thread, which other threads reach through call_soon_threadsafe /
run_coroutine_threadsafe only.
"""
import asyncio
import collections
import itertools
import logging
import re
import socket
import threading

from . import limits, waits
from .connect import Route, tls_context
from .errors import Error, check_header_value, check_proxy, errno_of as _errno_of, fail, resource_error
from .listener import open_listener
from .relay import Local, Relay
from .sizes import EVENTS_MAX, FRAME_MAX, HS_SECS, TEXTS_MAX

logger = logging.getLogger("azext_webapp.tunnel.portable")
_PATH = re.compile(r"/[!-~]{0,2047}")   # an absolute request path of printable ASCII, as tn_module.c checks


class _Core:
    """What the loop thread's relays share: settings, counters, the event queue."""

    def __init__(self, engine, host, port, instance, target_port, ping_interval, route, path, hold=False):
        self.engine = engine
        self.loop = None
        self.host, self.port = host, port
        self.instance, self.target_port = instance, target_port
        self.path = path
        self.ping_interval = ping_interval
        # a WebSocket paused by back-pressure cannot read its pong: generous hang-up (tn_engine.c)
        self.hangup = ping_interval + max(300.0, ping_interval)
        self.route = route
        self.stats = {"open": 0, "total": 0, "bytes_up": 0, "bytes_down": 0, "failures": 0}
        self.relays = set()
        self.by_id = {}                # id -> live Relay (send_text), an adopted one from adopt() on
        self.hold = hold                # hold what a restarting app turns away (relay.py)
        self.held = set()
        self.stopping = False
        self._ids = itertools.count(1)  # adopt() takes ids on the caller's thread: next() is atomic

    def new_id(self):
        return next(self._ids)

    def authorization(self):
        return self.engine._authorization_text()  # pylint: disable=protected-access

    def emit(self, relay, kind):
        """False when the event queue was full and the event is counted as dropped."""
        err = relay.err if kind in ("failed", "held") else None
        event = (kind, relay.id, relay.peer, relay.bytes_up, relay.bytes_down,
                 err.reason if err else "", dict(err.facts) if err else None,
                 bool(relay.remote_closed) if kind != "opened" else False)
        return self.engine._push_event(event)  # pylint: disable=protected-access


class Engine:
    """See the module docstring and docs/ARCHITECTURE.md (Contract 1: the engine module)."""

    def __init__(self, host, port, authorization, bind="127.0.0.1", bind_port=0, instance=None,
                 target_port=0, ping_interval=30.0, ca_file=None, verify=True, proxy=None, proxy_auth=None,
                 listen=True, path=None, hold=False):
        if not isinstance(host, str) or not isinstance(authorization, str):
            raise TypeError("host and authorization must be str")
        port, bind_port, target_port = int(port), int(bind_port or 0), int(target_port or 0)
        if not 0 < port <= 65535 or not 0 <= bind_port <= 65535 or not 0 <= target_port <= 65535:
            raise ValueError("port out of range")
        check_header_value(authorization, "Authorization")
        check_header_value(proxy_auth, "Proxy-Authorization")
        check_header_value(instance, "instance")
        check_proxy(proxy)
        if path is not None and not _PATH.fullmatch(path):
            raise ValueError("path must be an absolute request path of printable ASCII without spaces")
        ping = float(ping_interval)
        ping = 30.0 if ping <= 0 else max(1.0, min(ping, 30000.0))
        self._bind = bind if listen else None
        self._bind_port = bind_port
        self._auth_lock = threading.Lock()
        self._auth = bytearray(authorization.encode("latin-1"))
        route = Route(host, port, proxy or None, proxy_auth or None, tls_context(ca_file, verify), ca_file=ca_file)
        self._core = _Core(self, host, port, instance or None, target_port, ping, route, path, bool(hold))
        self._events = collections.deque()
        self._events_lock = threading.Lock()
        self._dropped = 0
        self._wake = threading.Event()
        self._state_lock = threading.Lock()
        self._state = "new"            # new -> running -> stopped
        self._thread = None
        self._loop = None
        self._server = None
        self._listener = None
        self._checks = set()
        self._accept_failed_at = float("-inf")
        self._texts_lock = threading.Lock()
        self._texts_waiting = 0         # send_text() bytes the loop has not handed on yet
        self.port = 0

    def __repr__(self):
        return f"<azext_webapp._portable.Engine {self._core.host}:{self._core.port} {self._state}>"

    # -- credentials -------------------------------------------------------------------------------
    def _authorization_text(self):
        with self._auth_lock:
            return self._auth.decode("latin-1")

    def set_authorization(self, value):
        """New handshakes (connections and check()) send this value from now on; the old one is wiped."""
        if not isinstance(value, str):
            raise TypeError("authorization must be str")
        check_header_value(value, "Authorization")
        fresh = bytearray(value.encode("latin-1"))
        with self._auth_lock:
            old, self._auth = self._auth, fresh
            old[:] = bytes(len(old))

    # -- events ------------------------------------------------------------------------------------
    def _push_event(self, event):
        with self._events_lock:
            queued = len(self._events) < EVENTS_MAX
            if queued:
                self._events.append(event)
            else:
                self._dropped += 1      # never block the loop thread
        self._wake.set()
        return queued

    def poll_events(self):
        with self._events_lock:
            events = list(self._events)
            self._events.clear()
        return events

    def wait(self, timeout=-1.0):
        """True when woken by events or stop(), False on timeout; signal handlers run meanwhile."""
        woken = waits.wait_event(self._wake, timeout)
        if woken:
            self._wake.clear()
        return woken

    def stats(self):
        return dict(self._core.stats)

    def running(self):
        return self._state == "running" and not self._core.stopping and \
            self._thread is not None and self._thread.is_alive()

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self):
        with self._state_lock:
            if self._state == "stopped":
                raise fail("closed_stopped")
            if self._state != "new":
                raise fail("closed_started")
            if self._bind is not None:
                self._listener = open_listener(self._bind, self._bind_port)
                self.port = self._listener.getsockname()[1]
            limits.raise_fd_limit()
            self._loop = asyncio.new_event_loop()
            self._core.loop = self._loop
            ready = threading.Event()
            failure = []
            self._thread = threading.Thread(target=self._run, args=(ready, failure), daemon=True,
                                            name="webapp-tunnel-engine")
            self._thread.start()
            waits.wait_event(ready, None, interruptible=False)    # the loop thread sets it at once
            if failure:
                self._state = "stopped"
                waits.join_thread(self._thread, 5)
                raise failure[0]
            self._state = "running"
            return self.port

    def _run(self, ready, failure):
        loop = self._loop
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(self._loop_exception)
        try:
            if self._listener is not None:
                self._server = loop.run_until_complete(
                    loop.create_server(self._accepted, sock=self._listener, backlog=1024))
        except Exception as exc:  # pylint: disable=broad-except
            failure.append(resource_error(exc) or fail("internal", detail="watching the listening socket",
                                                       errno=_errno_of(exc)))
            self._listener.close()
            loop.close()
            ready.set()
            return
        ready.set()
        loop.create_task(self._core.route.warm(loop))
        try:
            loop.run_forever()
        finally:
            self._core.stopping = True
            try:
                self._teardown(loop)
            finally:
                loop.close()
                self._wake.set()

    @staticmethod
    def _teardown(loop):
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.wait(tasks, timeout=1.0))
        loop.run_until_complete(asyncio.sleep(0))      # the aborted transports' connection_lost
        try:
            loop.run_until_complete(asyncio.wait_for(loop.shutdown_default_executor(), 1.0))
        except (asyncio.TimeoutError, RuntimeError):
            pass

    def _loop_exception(self, loop, context):  # pylint: disable=unused-argument
        """asyncio's unexpected errors go to the debug log: never to the user's terminal, and never
        with a header value (none is ever in a context). An accept() out of descriptors is a
        failure the user hears of (asyncio itself retries the listener a second later)."""
        exc = context.get("exception")
        logger.debug("tunnel engine: %s%s", context.get("message", ""), f" ({exc!r})" if exc else "")
        err = resource_error(exc) if exc is not None else None
        if err is not None and "accept" in str(context.get("message", "")) and not self._core.stopping:
            # asyncio retries the listener a second later (3.11 tries the whole backlog first):
            # one event per second at most, however many accept() calls failed
            now = loop.time()
            if now - self._accept_failed_at >= 1.0:
                self._accept_failed_at = now
                core = self._core
                core.stats["failures"] += 1
                where = {"host": self._bind, "port": self.port, "phase": "accept"}
                err = resource_error(exc, **where)
                self._push_event(("failed", core.new_id(), f"{self._bind}:{self.port}", 0, 0, err.reason,
                                  err.facts, False))

    def _accepted(self):
        core = self._core
        return Local(Relay(core, core.new_id()))

    def stop(self):
        """Close everything and join the loop thread; idempotent and safe from several threads."""
        with self._state_lock:
            state, self._state = self._state, "stopped"
            if state != "running":
                if state == "new" and self._listener is not None:
                    self._listener.close()
                self._wipe_authorization()
                return
            try:
                self._loop.call_soon_threadsafe(self._shutdown)
            except RuntimeError:
                pass      # the loop already ended
            waits.join_thread(self._thread, None)
            self._wipe_authorization()
            self._wake.set()

    def _wipe_authorization(self):
        with self._auth_lock:
            self._auth[:] = bytes(len(self._auth))

    def _shutdown(self):
        core = self._core
        core.stopping = True
        if self._server is not None:
            self._server.close()
        for relay in list(core.relays):
            relay.abort()
        for fut in list(self._checks):
            if not fut.done():
                fut.set_exception(fail("closed_stopped"))
        self._loop.call_soon(self._loop.stop)

    def release(self, retry, /):
        """The connections held retry (True) or end as they would have (False); the loop thread acts on it."""
        retry = bool(retry)
        if not self.running():
            return
        try:
            self._loop.call_soon_threadsafe(self._release, retry)
        except RuntimeError:
            pass      # the loop already ended: nothing is held any more

    def _release(self, retry):
        if self._core.stopping:     # stop() ends what is held; a late word changes nothing
            return
        for relay in list(self._core.held):
            relay.release(retry)

    # -- check, adopt --------------------------------------------------------------------------------
    def check(self, timeout=15.0):
        """One real WebSocket handshake to the endpoint, then closed; raises Error."""
        timeout = float(timeout)
        timeout = 0.001 if timeout <= 0 else min(timeout, 3600.0)
        if not self.running():
            raise fail("closed_not_running")
        try:
            future = asyncio.run_coroutine_threadsafe(self._check(), self._loop)
        except RuntimeError:
            raise fail("closed_not_running") from None
        try:
            done = waits.wait_future(future, timeout)
        except BaseException:
            future.cancel()       # a signal: abandon the handshake
            raise
        if not done:
            future.cancel()
            raise fail("timeout_check", host=self._core.host, port=self._core.port, timeout_ms=int(timeout * 1000))
        try:
            future.result(0)
        except Error:
            raise
        except BaseException as exc:  # cancelled by stop()
            if self._core.stopping:
                raise fail("closed_stopped") from None
            raise fail("internal", detail=f"check: {exc.__class__.__name__}") from None

    async def _check(self):
        core = self._core
        result = core.loop.create_future()
        self._checks.add(result)
        relay = Relay(core, 0, check=result)
        relay.start()
        try:
            await result
        except asyncio.CancelledError:
            relay.abort()
            raise
        finally:
            self._checks.discard(result)

    def adopt(self, fd):
        """Relay an already connected socket; the engine owns fd from here on (closed on failure).
        Returns its connection id (its events, send_text)."""
        fd = int(fd)
        if fd < 0:
            raise ValueError("adopt() needs an open file descriptor")
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            _close_fd(fd)
            raise resource_error(exc) or fail("internal", detail="adopting the connection",
                                              errno=_errno_of(exc)) from None
        if not self.running():
            sock.close()
            raise fail("closed_not_running")
        conn_id = self._core.new_id()
        try:
            self._loop.call_soon_threadsafe(self._adopt, sock, conn_id)
        except RuntimeError:
            sock.close()
            raise fail("closed_not_running") from None
        return conn_id

    def _adopt(self, sock, conn_id):
        core = self._core
        if core.stopping:
            sock.close()
            return
        relay = Relay(core, conn_id, peer="stdio")     # a send_text() right after adopt() finds it
        task = core.loop.create_task(core.loop.connect_accepted_socket(lambda: Local(relay), sock))

        def adopted(t):
            if t.cancelled() or t.exception() is not None:
                sock.close()
                core.by_id.pop(conn_id, None)
                core.stats["failures"] += 1
        task.add_done_callback(adopted)

    def send_text(self, conn_id, text):
        """A Text frame on connection conn_id: sent once its WebSocket is open, before the local data
        queued by then; dropped when the connection is gone or ending (tn_engine_send_text)."""
        data = text.encode("utf-8")
        if len(data) > FRAME_MAX:
            raise ValueError(f"a text frame holds at most {FRAME_MAX} bytes")
        if not self.running():
            raise fail("closed_not_running")
        with self._texts_lock:
            if self._texts_waiting + len(data) > TEXTS_MAX:     # a caller far ahead of the loop
                raise fail("resource_memory", limit=TEXTS_MAX)
            self._texts_waiting += len(data)
        try:
            self._loop.call_soon_threadsafe(self._send_text, int(conn_id), data)
        except RuntimeError:
            raise fail("closed_not_running") from None

    def _send_text(self, conn_id, data):
        with self._texts_lock:
            self._texts_waiting -= len(data)
        relay = self._core.by_id.get(conn_id)
        if relay is not None:
            relay.send_text(data)


def _close_fd(fd):
    import os
    try:
        os.close(fd)
    except OSError:
        pass


__all__ = ["Engine", "HS_SECS"]
