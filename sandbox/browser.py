"""Headless Chromium driven over the DevTools protocol on a pipe, for the sandbox's browser pages.

    with Browser(ca_file=sb.ca_file) as browser:
        page = browser.new_page(width=1000, height=650)
        page.basic_auth(app.basic_user, app.basic_password)
        status = page.goto(app.scm_url + "/webssh/host")
        page.wait_for("window.webssh && window.webssh.state === 'connected'", timeout=20)
        page.type_text("hostname"); page.press_enter()
        page.screenshot("/tmp/page.png")

Debian's chromium runs with `--remote-debugging-pipe`: commands go in on its fd 3 and responses and
events come out on its fd 4, each a JSON message ended by a NUL byte. No port is opened, so nothing
else on the machine can drive it, and nothing is fetched from the network: every host name but the
ones mapped to 127.0.0.1 resolves to nothing.

Certificate checks stay on. The browser's profile and HOME are a throw-away directory whose NSS
database (~/.pki/nssdb, made with certutil from libnss3-tools) trusts the sandbox's test CA, as a user
would import a company CA; a certificate from any other CA fails as it would for them.

The browser dies with this process (PR_SET_PDEATHSIG, and it exits by itself when its pipe closes);
close() asks it to quit, kills its process group after a bound, and removes the directory.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from . import procs

__all__ = ["Browser", "Page", "BrowserError", "chromium_unavailable_reason", "find_chromium"]

# Flags that keep a throw-away headless browser from doing anything on its own: no first-run UI,
# no background fetches (component updates, safe browsing lists, metrics), no keyring prompts.
_QUIET_FLAGS = [
    "--no-first-run", "--no-default-browser-check", "--disable-gpu",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--no-pings", "--metrics-recording-only",
    # (Not --disable-crashpad-for-testing: with it, Fetch never pauses a request and every load
    # that asks for a password hangs. Crashpad's handlers are found by close() instead.)
    "--disable-crash-reporter",
    "--mute-audio", "--password-store=basic", "--use-mock-keychain", "--disable-dev-shm-usage",
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider",
    # A page in a background tab would have its timers throttled; our one page must keep running.
    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]


class BrowserError(RuntimeError):
    """The browser failed, answered a command with an error, or a wait ran out."""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_unavailable_reason() -> str | None:
    """Why Browser cannot run here (None: it can)."""
    if find_chromium() is None:
        return "chromium is not installed (Debian package chromium; `make deps` installs it)"
    if shutil.which("certutil") is None:
        return "certutil is not installed (Debian package libnss3-tools; `make deps` installs it)"
    return None


def _high_fd(fd: int) -> int:
    """A copy of fd numbered 10 or above (close-on-exec), the original closed: the launch below
    moves the pipe ends to 3 and 4, which must not be one of the ends themselves."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Browser:
    """One headless Chromium. Use as a context manager, or start() and close()."""

    def __init__(self, ca_file: str | None = None, *, map_hosts=(), width: int = 1000,
                 height: int = 700, chromium: str | None = None, timeout: float = 30.0,
                 keep_dir: bool = False):
        """ca_file: PEM of a CA the browser trusts (the sandbox's test CA).
        map_hosts: host names resolved to 127.0.0.1 (everything else resolves to nothing).
        width, height: the first window's size. timeout: default bound on each command."""
        self.ca_file = ca_file
        self.map_hosts = list(map_hosts)
        self.size = (width, height)
        self.chromium = chromium or find_chromium()
        self.timeout = timeout
        self.keep_dir = keep_dir
        self.dir: str | None = None
        self.proc: subprocess.Popen | None = None
        self._cmd_w = self._resp_r = None
        self._lock = threading.Lock()           # one writer at a time on the command pipe
        self._cond = threading.Condition()      # guards _replies, _events, _dead
        self._replies: dict = {}
        self._unawaited: set = set()            # ids of commands sent by post() alone
        self.unawaited_errors: list = []
        self._events: list = []                 # (seq, message) of every event, in order
        self._seq = 0
        self._next_id = 0
        self._handlers: list = []               # callables(message) run on the reader thread
        self._dead: str | None = None           # why the pipe ended
        self._reader: threading.Thread | None = None
        self._pages: list = []

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> "Browser":
        return self.start()

    def __exit__(self, *exc):
        self.close()

    @property
    def log_path(self) -> str:
        return os.path.join(self.dir, "chromium.log")

    def log_tail(self, limit: int = 3000) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-limit:]
        except (OSError, TypeError):
            return ""

    def start(self) -> "Browser":
        reason = chromium_unavailable_reason() if self.chromium is None else None
        if reason:
            raise BrowserError(reason)
        self.dir = tempfile.mkdtemp(prefix="chromium-")
        try:
            self._launch()
        except BaseException:
            self.close()
            raise
        return self

    def _make_home(self) -> dict:
        home = os.path.join(self.dir, "home")
        nssdb = os.path.join(home, ".pki", "nssdb")
        os.makedirs(nssdb, mode=0o700)
        env = {k: v for k, v in os.environ.items()
               if k not in ("LD_PRELOAD", "DISPLAY", "WAYLAND_DISPLAY", "http_proxy", "https_proxy",
                            "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy")}
        env.update(HOME=home, XDG_CONFIG_HOME=os.path.join(home, ".config"),
                   XDG_CACHE_HOME=os.path.join(home, ".cache"))
        db = f"sql:{nssdb}"
        self._certutil(["-N", "-d", db, "--empty-password"], env)
        if self.ca_file:
            # "C,,": a CA trusted to issue server certificates (not e-mail or code signing).
            self._certutil(["-A", "-d", db, "-n", "webapp sandbox test CA", "-t", "C,,",
                            "-i", self.ca_file], env)
        return env

    @staticmethod
    def _certutil(args, env):
        r = subprocess.run(["certutil", *args], env=env, capture_output=True, text=True,
                           timeout=30, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise BrowserError(f"certutil {' '.join(args)} failed ({r.returncode}): "
                               f"{(r.stdout + r.stderr).strip()}")

    def _launch(self):
        env = self._make_home()
        rules = [f"MAP {h} 127.0.0.1" for h in self.map_hosts]
        rules.append("MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1")
        args = ["--headless=new", "--remote-debugging-pipe",
                f"--user-data-dir={os.path.join(self.dir, 'profile')}",
                f"--host-resolver-rules={', '.join(rules)}",
                f"--window-size={self.size[0]},{self.size[1]}", *_QUIET_FLAGS]
        if os.geteuid() == 0:
            # Chromium refuses to start its sandbox as root; the pages it loads here are our own.
            args.append("--no-sandbox")
        args.append("about:blank")
        cmd_r, cmd_w = os.pipe()
        resp_r, resp_w = os.pipe()
        cmd_r, cmd_w, resp_r, resp_w = map(_high_fd, (cmd_r, cmd_w, resp_r, resp_w))
        self._cmd_w, self._resp_r = cmd_w, resp_r
        # The browser wants the pipe on exactly fds 3 and 4: bash puts the ends there and execs
        # it (doing it in a preexec_fn could clobber the pipe subprocess reports exec errors on).
        shell = (f'exec 3<&{cmd_r} 4>&{resp_w} {cmd_r}<&- {resp_w}>&-; exec "$0" "$@"')
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                ["/bin/bash", "-c", shell, self.chromium, *args], env=env, cwd=self.dir,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(cmd_r, resp_w), start_new_session=True,
                preexec_fn=procs._pdeathsig_preexec(os.getpid()))
        finally:
            log.close()
            os.close(cmd_r)
            os.close(resp_w)
        self._reader = threading.Thread(target=self._read_loop, name="chromium-pipe", daemon=True)
        self._reader.start()
        version = self.send("Browser.getVersion", timeout=max(self.timeout, 60))
        self.version = version.get("product", "")

    def close(self, timeout: float = 10.0):
        """Ask the browser to quit; kill its process group when it has not after `timeout`."""
        if self.proc is not None:
            if self.proc.poll() is None and self._dead is None:
                try:
                    self.send("Browser.close", timeout=timeout)
                except BrowserError:
                    pass            # it may end the pipe before answering; the wait decides
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
            # Renderers and helpers share its process group; whatever is left goes too. Crashpad's
            # handlers start sessions of their own: they are known by our profile in their argv.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            for pid in self._strays():
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for fd in (self._cmd_w, self._resp_r):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._cmd_w = self._resp_r = None
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None
        if self.dir and not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _strays(self) -> list:
        """Processes (other than zombies) whose command line names this browser's directory."""
        if not self.dir:
            return []
        mark = self.dir.encode()
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if mark in cmdline and procs.alive(int(entry)):
                found.append(int(entry))
        return found

    # -- the pipe ---------------------------------------------------------------------------
    def _read_loop(self):
        buf = b""
        why = "the browser closed its DevTools pipe"
        try:
            while True:
                chunk = os.read(self._resp_r, 1 << 16)
                if not chunk:
                    break
                buf += chunk
                while b"\0" in buf:
                    raw, buf = buf.split(b"\0", 1)
                    self._dispatch(json.loads(raw))
        except (OSError, TypeError) as e:
            why = f"reading the DevTools pipe failed: {e}"
        with self._cond:
            self._dead = why
            self._cond.notify_all()

    def _dispatch(self, msg: dict):
        if "id" in msg:
            with self._cond:
                if msg["id"] in self._unawaited:
                    # Nobody waits for this answer; an error in it is kept for failure reports.
                    self._unawaited.discard(msg["id"])
                    if "error" in msg:
                        self.unawaited_errors.append(msg["error"])
                    return
                self._replies[msg["id"]] = msg
                self._cond.notify_all()
            return
        with self._cond:
            self._seq += 1
            self._events.append((self._seq, msg))
            self._cond.notify_all()
        for handler in list(self._handlers):
            handler(msg)

    def _write(self, msg: dict, awaited: bool = True) -> int:
        with self._lock:
            self._next_id += 1
            msg = dict(msg, id=self._next_id)
            if not awaited:
                with self._cond:
                    self._unawaited.add(msg["id"])
            data = json.dumps(msg).encode() + b"\0"
            if self._cmd_w is None:
                raise BrowserError("the browser is closed")
            try:
                while data:
                    data = data[os.write(self._cmd_w, data):]
            except OSError as e:
                raise BrowserError(f"writing to the browser failed: {e}; its log:\n"
                                   f"{self.log_tail()}") from None
            return msg["id"]

    def post(self, method: str, params: dict | None = None, session: str | None = None,
             awaited: bool = False) -> int:
        """Send a command without waiting for its answer (safe from an event handler)."""
        msg = {"method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        return self._write(msg, awaited)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float | None = None) -> dict:
        """Send a command and wait (bounded) for its result."""
        mid = self.post(method, params, session, awaited=True)
        reply = self._wait_until(lambda: self._replies.pop(mid, None), timeout,
                                 dead=lambda why: f"{method}: {why}; its log:\n{self.log_tail()}",
                                 late=f"{method}: no answer from the browser")
        if "error" in reply:
            raise BrowserError(f"{method} failed: {reply['error'].get('message')} "
                               f"{reply['error'].get('data', '')}".rstrip())
        return reply.get("result", {})

    def mark(self) -> int:
        """The sequence number of the last event so far (wait_event(after=...) looks later)."""
        with self._cond:
            return self._seq

    def wait_event(self, method: str, *, session: str | None = None, after: int = 0,
                   match=lambda params: True, timeout: float | None = None) -> dict:
        """The params of the first event `method` after sequence `after` that `match`es."""
        seen = after

        def first_match():
            nonlocal seen
            for seq, msg in self._events:
                if seq <= seen:
                    continue
                seen = seq
                if (msg.get("method") == method and (session is None or msg.get("sessionId") == session)
                        and match(msg.get("params", {}))):
                    return msg.get("params", {})
            return None

        return self._wait_until(first_match, timeout, dead=lambda why: f"waiting for {method}: {why}",
                                late=f"no {method} event")

    def _wait_until(self, found, timeout, *, dead, late):
        """found() under the lock until it returns something other than None; a dead browser or
        the deadline raise BrowserError with dead(reason) or late + the time waited."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        with self._cond:
            while True:
                value = found()
                if value is not None:
                    return value
                left = deadline - time.monotonic()
                if self._dead:
                    raise BrowserError(dead(self._dead))
                if left <= 0:
                    raise BrowserError(f"{late} within {limit} s")
                self._cond.wait(left)

    def events(self, method: str, session: str | None = None, after: int = 0) -> list:
        with self._cond:
            return [m.get("params", {}) for s, m in self._events if s > after
                    and m.get("method") == method and (session is None or m.get("sessionId") == session)]

    # -- pages ------------------------------------------------------------------------------
    def new_page(self, width: int | None = None, height: int | None = None, *,
                 isolated: bool = True, beside: "Page | None" = None) -> "Page":
        """A new window with a blank page, attached with its own session. isolated: in a
        browser context of its own, like a fresh private window: no cookies, no remembered
        passwords from other pages (dropped when the page closes). beside: in that page's
        context instead, sharing its cookies, like a second tab."""
        width, height = width or self.size[0], height or self.size[1]
        params = {"url": "about:blank", "newWindow": True, "width": width, "height": height}
        context, owned = None, False
        if beside is not None:
            context = beside.context_id
        elif isolated:
            context = self.send("Target.createBrowserContext",
                                {"disposeOnDetach": True})["browserContextId"]
            owned = True
        if context:
            params["browserContextId"] = context
        target = self.send("Target.createTarget", params)["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target,
                                                      "flatten": True})["sessionId"]
        page = Page(self, target, session, context, owns_context=owned)
        self._pages.append(page)
        page._setup()
        return page


class Page:
    """One tab: navigation, JavaScript, keyboard, window size, screenshots, HTTP auth."""

    def __init__(self, browser: Browser, target_id: str, session_id: str,
                 context_id: str | None = None, owns_context: bool = False):
        self.browser = browser
        self.context_id = context_id
        self._owns_context = owns_context
        self.target_id = target_id
        self.session = session_id
        self.frame_id: str | None = None
        self._credentials: tuple | None = None
        self._auth_tried: set = set()
        self.auth_challenges = 0        # 401s with WWW-Authenticate the browser asked us about
        self.console: list = []         # console messages and uncaught exceptions, as text

    def send(self, method: str, params: dict | None = None, timeout: float | None = None) -> dict:
        return self.browser.send(method, params, session=self.session, timeout=timeout)

    def _setup(self):
        self.browser._handlers.append(self._on_event)
        for domain in ("Page", "Runtime", "Network"):
            self.send(f"{domain}.enable")
        # A headless page has no focus unless emulated: without it the terminal gets no keys.
        self.send("Emulation.setFocusEmulationEnabled", {"enabled": True})
        self.frame_id = self.send("Page.getFrameTree")["frameTree"]["frame"]["id"]

    def _on_event(self, msg: dict):
        """On the reader thread: answer the browser's auth questions and paused requests (they
        wait for us, so they cannot wait for a test's next call)."""
        if msg.get("sessionId") != self.session:
            return
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Fetch.requestPaused":
            self.browser.post("Fetch.continueRequest", {"requestId": params["requestId"]},
                              self.session)
        elif method == "Fetch.authRequired":
            self.auth_challenges += 1
            rid = params["requestId"]
            # One try per request: a refused password must end in the 401 page, not a loop.
            if self._credentials and rid not in self._auth_tried:
                self._auth_tried.add(rid)
                user, password = self._credentials
                answer = {"response": "ProvideCredentials", "username": user, "password": password}
            else:
                answer = {"response": "CancelAuth"}
            self.browser.post("Fetch.continueWithAuth",
                              {"requestId": rid, "authChallengeResponse": answer}, self.session)
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console.append(f"console.{params.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            self.console.append("exception: " + (d.get("exception", {}).get("description")
                                                 or d.get("text", "")))

    # -- HTTP auth ----------------------------------------------------------------------------
    def basic_auth(self, user: str | None, password: str | None = None):
        """Answer HTTP auth challenges with these credentials, as a person would type them into
        the browser's sign-in dialog (None: cancel the dialog, which shows the 401 page).
        The browser then sends them itself on later requests to the same site and path."""
        self._credentials = (user, password) if user is not None else None
        self._auth_tried.clear()
        self.send("Fetch.enable", {"handleAuthRequests": True,
                                   "patterns": [{"urlPattern": "*", "requestStage": "Request"}]})

    def extra_headers(self, headers: dict):
        """Headers sent with every request of this page (e.g. Authorization: Bearer ...)."""
        self.send("Network.setExtraHTTPHeaders", {"headers": headers})

    def cookies(self) -> list:
        """The cookies this page's browser context holds (HttpOnly ones too)."""
        params = {"browserContextId": self.context_id} if self.context_id else {}
        return self.browser.send("Storage.getCookies", params).get("cookies", [])

    # -- navigation ---------------------------------------------------------------------------
    def goto(self, url: str, timeout: float = 30.0) -> int | None:
        """Load url and wait for its load event; returns the HTTP status of the document."""
        mark = self.browser.mark()
        nav = self.send("Page.navigate", {"url": url}, timeout=timeout)
        loader = nav.get("loaderId")

        def responses():
            return [p for p in self.browser.events("Network.responseReceived", self.session, mark)
                    if p.get("type") == "Document" and p.get("frameId") == self.frame_id
                    and (loader is None or p.get("loaderId") == loader)]
        # An HTTP error status with an empty body also comes back as an errorText
        # (net::ERR_HTTP_RESPONSE_CODE_FAILURE) over the browser's own error page: that is still
        # an answer from the server, and its status is what the caller asked for.
        if nav.get("errorText") and not responses():
            raise BrowserError(f"loading {url} failed: {nav['errorText']}")
        self.browser.wait_event("Page.loadEventFired", session=self.session, after=mark,
                                timeout=timeout)
        docs = responses()
        if not docs:
            if not url.startswith(("http:", "https:")):
                return None         # about:blank and the like come from no server
            raise BrowserError(f"loading {url}: no response for the document")
        return int(docs[-1]["response"]["status"])

    # -- JavaScript ---------------------------------------------------------------------------
    def evaluate(self, expression: str, timeout: float | None = None):
        """The value of a JavaScript expression (awaited when it is a promise), as JSON."""
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                           "awaitPromise": True, "userGesture": True},
                      timeout=timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise BrowserError(f"{expression!r} threw: "
                               f"{d.get('exception', {}).get('description') or d.get('text')}")
        return r.get("result", {}).get("value")

    def text(self) -> str:
        """What the page shows, as text (for failure messages)."""
        try:
            return self.evaluate("document.body ? document.body.innerText : ''", timeout=5) or ""
        except BrowserError as e:
            return f"(could not read the page: {e})"

    def wait_for(self, expression: str, timeout: float = 20.0, describe=None, interval: float = 0.1):
        """Poll a JavaScript expression until it is truthy; returns its value. On timeout, fails
        with what the page showed (describe(): more details, e.g. the terminal's text)."""
        deadline = time.monotonic() + timeout
        last_error = None
        while True:
            try:
                value = self.evaluate(expression, timeout=max(1.0, deadline - time.monotonic()))
                if value:
                    return value
            except BrowserError as e:
                last_error = e
            if time.monotonic() >= deadline:
                detail = ""
                if describe is not None:
                    try:
                        detail = f"\n{describe()}"
                    except BrowserError as e:
                        detail = f"\n(describe failed: {e})"
                console = "\n".join(self.console[-20:])
                raise BrowserError(
                    f"waited {timeout} s for {expression!r}"
                    + (f" (last error: {last_error})" if last_error else "")
                    + f"\nthe page showed:\n{self.text()[-2000:]}{detail}"
                    + (f"\nits console:\n{console}" if console else ""))
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))

    # -- keyboard -----------------------------------------------------------------------------
    def type_text(self, text: str):
        """Type text key by key: each character as keydown + keypress + keyup, which is what a
        terminal such as xterm.js listens to (a bare text insertion would not reach it)."""
        for ch in text:
            if ch in "\r\n":
                self.press_enter()
                continue
            self.send("Input.dispatchKeyEvent", {"type": "keyDown", "key": ch, "text": ch,
                                                 "unmodifiedText": ch})
            self.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": ch})

    def press_enter(self):
        key = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13,
               "nativeVirtualKeyCode": 13}
        self.send("Input.dispatchKeyEvent", {"type": "keyDown", "text": "\r", **key})
        self.send("Input.dispatchKeyEvent", {"type": "keyUp", **key})

    def click(self, x: float, y: float):
        """A left click at (x, y) in CSS pixels of the viewport."""
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y,
                                                   "button": "left" if kind != "mouseMoved" else "none",
                                                   "clickCount": 1 if kind != "mouseMoved" else 0})

    # -- window -------------------------------------------------------------------------------
    def set_window_size(self, width: int, height: int):
        """Resize the page's browser window (the page gets a 'resize' event, as when a person
        drags the window's corner)."""
        window = self.browser.send("Browser.getWindowForTarget",
                                   {"targetId": self.target_id})["windowId"]
        self.browser.send("Browser.setWindowBounds", {"windowId": window, "bounds": {
            "width": width, "height": height, "windowState": "normal"}})

    def viewport(self) -> tuple:
        return tuple(self.evaluate("[window.innerWidth, window.innerHeight]"))

    def screenshot(self, path: str) -> str:
        """Save what the page shows as a PNG; returns path."""
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

    def close(self):
        if self not in self.browser._pages:
            return
        self.browser._pages.remove(self)
        if self._on_event in self.browser._handlers:
            self.browser._handlers.remove(self._on_event)
        try:
            self.browser.send("Target.closeTarget", {"targetId": self.target_id}, timeout=10)
            if self._owns_context:
                self.browser.send("Target.disposeBrowserContext",
                                  {"browserContextId": self.context_id}, timeout=10)
        except BrowserError:
            pass            # a browser that is gone has closed the page too

    def __enter__(self) -> "Page":
        return self

    def __exit__(self, *exc):
        self.close()
