"""``http_get``: one HTTPS GET for the status probes (tn_probe.c's counterpart), over the same
resolve / proxy / TLS path as the WebSockets, its failures in phase "probe" as tn_probe.c's. It runs on a
worker thread with an event loop of its own; the calling thread waits in slices, so a signal
(Ctrl+C, SIGTERM) ends the wait within one and abandons the request."""
import asyncio
import threading
import urllib.parse

from . import waits
from .codec import HeadCollector, header_value, status_of
from .connect import HeadProtocol, Route, tls_context
from .errors import Error, check_header_value, check_proxy, fail, resource_error
from .sizes import PROBE_BODY_MAX as BODY_MAX   # a status answer is tiny


class _Answer(HeadProtocol):
    def __init__(self, where):
        super().__init__()
        self.where = where        # host, port, phase: the facts of a failure
        self.body = bytearray()
        self.want = None          # Content-Length, or None: until EOF / the last chunk
        self.chunked = False
        self.done = None

    def read_body(self, rest, want, chunked):
        self.want, self.chunked = want, chunked
        self.done = asyncio.get_running_loop().create_future()
        early, self.body = bytes(self.body), bytearray()   # what came after the head's own chunk
        self.on_bytes(rest + early)
        return self.done

    def on_bytes(self, data):
        self.body += data
        if len(self.body) > BODY_MAX + 65536:
            self._finish(fail("http_too_large", limit=BODY_MAX, **self.where))
        elif self.want is not None and len(self.body) >= self.want:
            self._finish()
        elif self.chunked and self.body.endswith(b"0\r\n\r\n") and _dechunk(self.body) is not None:
            self._finish()

    def _finish(self, exc=None):
        if self.done is not None and not self.done.done():
            if exc is not None:
                self.done.set_exception(exc)
            else:
                self.done.set_result(None)

    def ended(self):
        if self._head is not None:
            super().ended()
            return
        self._finish()

    def lost(self, exc):
        self._finish()


def _dechunk(data):
    out = bytearray()
    pos = 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            return None
        try:
            size = int(bytes(data[pos:end]).split(b";")[0].strip() or b"0", 16)
        except ValueError:
            return None
        if size == 0:
            return bytes(out)
        out += data[end + 2:end + 2 + size]
        pos = end + 2 + size + 2
        if pos > len(data):
            return None


async def _get(route, path, authorization, instance):
    loop = asyncio.get_running_loop()
    host = route.host
    where = route.where("probe")
    answer = _Answer(where)
    tls = await route.open(loop, answer, lambda step: None)
    try:
        hostport = host if route.port == 443 else f"{host}:{route.port}"
        head = answer.expect_head(HeadCollector(fail("http_too_large", limit=BODY_MAX, **where),
                                                fail("http_malformed", **where)),
                                  fail("connect_closed", **where))
        request = (f"GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: azext-webapp-tunnel\r\n"
                   f"Accept: */*\r\nAuthorization: {authorization}\r\n"
                   + (f"Cookie: ARRAffinity={instance}\r\n" if instance else "")
                   + "Connection: close\r\n\r\n")
        answer.send(request.encode("latin-1"))
        del request
        raw, rest = await head
        status = status_of(raw)
        if status is None:
            raise fail("http_malformed", **where)
        length = header_value(raw, "Content-Length")
        chunked = "chunked" in (header_value(raw, "Transfer-Encoding") or "").lower()
        want = int(length) if length and length.strip().isdigit() and not chunked else None
        if want == 0 or status in (204, 304):
            return status, b""
        await answer.read_body(rest, want, chunked)
        body = bytes(answer.body)
        if chunked:
            body = _dechunk(body) or b""
        elif want is not None:
            body = body[:want]
        if len(body) > BODY_MAX:
            raise fail("http_too_large", limit=BODY_MAX, **where)
        return status, body
    finally:
        tls.abort()


def http_get(url, authorization, instance=None, ca_file=None, verify=True, proxy=None, proxy_auth=None,
             timeout=30.0):
    """GET url -> (status, body); raises Error (dns, connect, tls, proxy, timeout, ...)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or 443
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    check_header_value(authorization, "Authorization")
    check_header_value(proxy_auth, "Proxy-Authorization")
    check_header_value(instance, "instance")
    check_proxy(proxy)
    timeout = 0.001 if float(timeout) <= 0 else float(timeout)
    route = Route(host, port, proxy or None, proxy_auth or None, tls_context(ca_file, verify), ca_file=ca_file,
                  probe=True)
    outcome = {}
    finished = threading.Event()
    state = {}

    async def run():
        state["loop"] = asyncio.get_running_loop()
        state["task"] = asyncio.current_task()
        return await asyncio.wait_for(_get(route, path, authorization, instance), timeout)

    def worker():
        try:
            outcome["result"] = asyncio.run(run())
        except asyncio.TimeoutError:
            outcome["error"] = fail("timeout_probe", timeout_ms=int(timeout * 1000), **route.where("probe"))
        except Error as err:
            outcome["error"] = err
        except asyncio.CancelledError:
            outcome["error"] = fail("closed_abandoned")
        except Exception as exc:  # pylint: disable=broad-except
            outcome["error"] = resource_error(exc, **route.where("probe")) or fail(
                "connect_failed", detail=" ".join(str(exc).split()) or exc.__class__.__name__,
                **route.where("probe"))
        finally:
            finished.set()

    thread = threading.Thread(target=worker, daemon=True, name="webapp-tunnel-probe")
    thread.start()
    try:
        waits.wait_event(finished, None)
    except BaseException:
        loop, task = state.get("loop"), state.get("task")
        if loop is not None and task is not None:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:
                pass
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
