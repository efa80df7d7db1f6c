"""Browser SSH (issue 16) in a real headless Chromium: the SCM site's /webssh/host page, as a person
uses it, signing in with the site's credentials and typing into the terminal.

One sandbox (the session's) and one browser for the module; each test opens its page in a fresh
browser context (no cookies or remembered passwords from the others). The browser verifies the
sandbox's certificates against its test CA (sandbox/browser.py), as it would any site's.
"""
from __future__ import annotations

import json
import re

import pytest

from sandbox.browser import Browser, chromium_unavailable_reason

pytestmark = pytest.mark.root          # the pages reach real sshds

CONNECT_SECONDS = 30
OUTPUT_SECONDS = 15
# The portal's browser SSH client offers only these (docs: custom images must accept one of each).
PORTAL_CIPHERS = ("aes128-cbc", "3des-cbc", "aes256-cbc", "aes128-ctr", "aes256-ctr", "aes192-ctr")


@pytest.fixture(scope="module")
def browser(sandbox):
    reason = chromium_unavailable_reason()
    if reason:
        pytest.skip(reason)
    if not sandbox.sshd_available:
        pytest.skip(f"sandbox without sshd instances: {sandbox.sshd_unavailable_reason}")
    with Browser(ca_file=sandbox.ca_file, width=1000, height=700) as b:
        yield b


def page_url(app, instance: str | None = None) -> str:
    return f"{app.scm_url}/webssh/host" + (f"?instance={instance}" if instance else "")


def describe(page):
    """What the terminal showed (for failure messages)."""
    def text():
        state = page.evaluate("window.webssh ? JSON.stringify({state: webssh.state, error: "
                              "webssh.error, instance: webssh.instance, size: webssh.size()}) "
                              ": 'no window.webssh'")
        screen = page.evaluate("window.webssh ? webssh.screenText() : ''") or ""
        return f"webssh: {state}\nterminal:\n{screen[-3000:]}"
    return text


def open_terminal(browser, app, instance=None, *, user=None, password=None, headers=None):
    """The page, signed in (Basic with the app's credentials unless told otherwise, or the given
    headers), its terminal connected. The caller closes it."""
    page = browser.new_page()
    try:
        if headers:
            page.extra_headers(headers)
        else:
            page.basic_auth(user or app.basic_user, password or app.basic_password)
        status = page.goto(page_url(app, instance))
        assert status == 200, f"{page_url(app, instance)} answered {status}: {page.text()[:500]}"
        page.wait_for("window.webssh && window.webssh.state === 'connected'",
                      timeout=CONNECT_SECONDS, describe=describe(page))
        # Type once the shell shows its prompt, as a person would.
        page.wait_for("/[#$]$/.test(webssh.screenText().trimEnd())", timeout=OUTPUT_SECONDS,
                      describe=describe(page))
        focus_terminal(page)
        return page
    except BaseException:
        page.close()
        raise


def focus_terminal(page):
    """Click into the terminal, as a person would before typing (the page focuses it itself;
    this only makes sure)."""
    box = page.evaluate("(() => { const r = document.getElementById('terminal')"
                        ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
    page.click(*box)


def run(page, command: str, line_matches: str, timeout: float = OUTPUT_SECONDS) -> str:
    """Type a command and Enter; wait until the terminal shows a whole line matching the regular
    expression `line_matches` (so the echoed command line, which holds it too, does not count)."""
    page.type_text(command)
    page.press_enter()
    js = ("(() => { const re = new RegExp(%s); return webssh.screenText().split('\\n')"
          ".map(l => l.trimEnd()).find(l => re.test(l)) || null; })()"
          % json.dumps(f"^{line_matches}$"))
    return page.wait_for(js, timeout=timeout, describe=describe(page))


def no_terminal(page) -> bool:
    return page.evaluate("!window.webssh && !document.querySelector('.xterm')")


# -- the page, the shell, the instance -------------------------------------------------------

def test_page_connects_and_hostname_shows_the_instance(sandbox, browser):
    app = sandbox.app("linux-app")
    page = open_terminal(browser, app)
    try:
        instance = app.instance_names[0]
        assert page.evaluate("webssh.instance") == instance
        assert instance in page.evaluate("document.getElementById('status').textContent")
        assert run(page, "hostname", re.escape(instance)) == instance
        assert page.evaluate("webssh.error") is None
    finally:
        page.close()


@pytest.mark.parametrize("which", [None, 0, 1], ids=["default", "instance0", "instance1"])
def test_instance_query_picks_the_instance(sandbox, browser, which):
    app = sandbox.app("scaled-app")
    assert len(app.instance_names) == 2
    chosen = app.instance_names[which] if which is not None else None
    expected = chosen or app.instance_names[0]
    page = open_terminal(browser, app, chosen)
    try:
        assert page.evaluate("webssh.instance") == expected
        assert run(page, "hostname", re.escape(expected)) == expected
    finally:
        page.close()


def test_window_resize_reaches_stty_size(sandbox, browser):
    app = sandbox.app("linux-app")
    page = open_terminal(browser, app)
    try:
        before = page.evaluate("webssh.size()")
        assert before["cols"] > 0 and before["rows"] > 0, before
        assert run(page, "stty size", f"{before['rows']} {before['cols']}")

        page.set_window_size(640, 420)
        after = page.wait_for(
            "(() => { const s = webssh.size(); return (s.cols !== %d || s.rows !== %d) && s; })()"
            % (before["cols"], before["rows"]), timeout=10, describe=describe(page))
        assert after["cols"] < before["cols"] and after["rows"] < before["rows"], (before, after)
        # The remote pty has the new size: a line "rows cols" of the new numbers, which the
        # first `stty size` could not have printed.
        assert run(page, "stty size", f"{after['rows']} {after['cols']}")
    finally:
        page.close()


# -- refused ----------------------------------------------------------------------------------

def test_missing_credentials_are_refused(sandbox, browser):
    app = sandbox.app("linux-app")
    with browser.new_page() as page:
        page.basic_auth(None)           # the sign-in dialog dismissed
        assert page.goto(page_url(app)) == 401
        assert page.auth_challenges >= 1, "the browser was never asked for a password"
        assert no_terminal(page), page.text()[:500]


def test_wrong_password_is_refused(sandbox, browser):
    app = sandbox.app("linux-app")
    with browser.new_page() as page:
        page.basic_auth(app.basic_user, app.basic_password + "x")
        assert page.goto(page_url(app)) == 401
        assert no_terminal(page), page.text()[:500]


def test_basic_is_refused_where_the_site_allows_only_bearer(sandbox, browser):
    app = sandbox.app("bearer-app")
    with browser.new_page() as page:
        page.basic_auth(app.basic_user, app.basic_password)
        assert page.goto(page_url(app)) == 401
        assert no_terminal(page), page.text()[:500]


def test_bearer_token_opens_the_shell(sandbox, browser):
    app = sandbox.app("bearer-app")
    page = open_terminal(browser, app, headers={"Authorization": f"Bearer {sandbox.bearer_token}"})
    try:
        instance = app.instance_names[0]
        assert run(page, "hostname", re.escape(instance)) == instance
    finally:
        page.close()


# -- a container without the portal's algorithms ---------------------------------------------

def test_modern_only_sshd_shows_the_algorithm_error_in_the_page(sandbox, browser):
    app = sandbox.app("modern-app")
    with browser.new_page() as page:
        page.basic_auth(app.basic_user, app.basic_password)
        assert page.goto(page_url(app)) == 200
        page.wait_for("window.webssh && window.webssh.state === 'error'", timeout=CONNECT_SECONDS,
                      describe=describe(page))
        error = page.evaluate("webssh.error")
        status = page.evaluate("document.getElementById('status').textContent")
        # What the portal offers, what the container's sshd accepts, and the fix's directive.
        for word in (*PORTAL_CIPHERS, "hmac-sha1", "chacha20-poly1305@openssh.com", "Ciphers"):
            assert word in error, f"{word!r} not in the error: {error}"
        assert error.splitlines()[0] in status, (error, status)
        assert "sshd_config" in error, error


# -- the session cookie and the instance's name -----------------------------------------------

def test_the_session_cookie_signs_in_a_second_tab(sandbox, browser):
    """Signed in once, the browser needs no credentials for the page or its WebSocket: the SCM
    site's WebsshSession cookie (Secure, HttpOnly, SameSite=Strict, /webssh only) carries it."""
    app = sandbox.app("bearer-app")     # the token goes on the first page's requests only
    first = open_terminal(browser, app, headers={"Authorization": f"Bearer {sandbox.bearer_token}"})
    try:
        session = [c for c in first.cookies() if c["name"] == "WebsshSession"]
        assert len(session) == 1, first.cookies()
        cookie = session[0]
        assert (cookie["secure"], cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == \
            (True, True, "Strict", "/webssh"), cookie
        assert "WebsshSession" not in first.evaluate("document.cookie")
        with browser.new_page(beside=first) as second:
            second.basic_auth(None)     # a sign-in dialog would be dismissed
            assert second.goto(page_url(app)) == 200, second.text()[:500]
            assert second.auth_challenges == 0
            second.wait_for("window.webssh && window.webssh.state === 'connected'",
                            timeout=CONNECT_SECONDS, describe=describe(second))
    finally:
        first.close()


def test_an_unknown_instance_is_named_with_the_apps_instances(sandbox, browser):
    app = sandbox.app("scaled-app")
    with browser.new_page() as page:
        page.basic_auth(app.basic_user, app.basic_password)
        assert page.goto(page_url(app, "no-such-instance")) == 404
        text = page.text()
        assert "no-such-instance" in text and all(i in text for i in app.instance_names), text
        assert no_terminal(page), text[:500]
