"""`az webapp remote-connection browse`: the real az with the extension wheel against the sandbox.
It opens the SCM site's /webssh/host in the default browser ($BROWSER here), or prints the URL where no
browser can be opened; the URL is the page the sandbox serves behind the site's own sign-in."""
import ssl
import stat
import urllib.error
import urllib.request

import pytest

NO_BROWSER = {'BROWSER': None, 'DISPLAY': None, 'WAYLAND_DISPLAY': None}


def browse(webapp_az, *args, env=None):
    runner_env = dict(webapp_az.env)
    for key, value in {**NO_BROWSER, **(env or {})}.items():
        if value is None:
            runner_env.pop(key, None)
        else:
            runner_env[key] = value
    saved, webapp_az.env = webapp_az.env, runner_env
    try:
        return webapp_az.run('webapp', 'remote-connection', 'browse', '-g', 'sandbox-rg', *args, timeout=120)
    finally:
        webapp_az.env = saved


def fetch(sandbox, url, authorization=None):
    context = ssl.create_default_context(cafile=sandbox.ca_file)
    request = urllib.request.Request(url, headers={'Authorization': authorization} if authorization else {})
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ''


def test_without_a_browser_prints_the_page_url(webapp_az, sandbox):
    app = sandbox.app('linux-app')
    result = browse(webapp_az, '-n', 'linux-app')
    assert result.returncode == 0, result.stderr
    assert result.stdout == f'{app.scm_url}/webssh/host\n'
    assert 'No browser can be opened from here' in result.stderr


def test_the_printed_url_is_the_sign_in_protected_terminal_page(webapp_az, sandbox):
    app = sandbox.app('linux-app')
    url = browse(webapp_az, '-n', 'linux-app').stdout.strip()
    status, page = fetch(sandbox, url, app.basic_authorization)
    assert status == 200 and 'xterm' in page
    assert fetch(sandbox, url)[0] == 401


def test_opens_the_default_browser(webapp_az, sandbox, tmp_path):
    seen = tmp_path / 'opened'
    browser = tmp_path / 'browser'
    browser.write_text(f'#!/bin/sh\nprintf "%s" "$1" > "{seen}"\n')
    browser.chmod(browser.stat().st_mode | stat.S_IXUSR)
    instance = sandbox.app('scaled-app').instances[1]
    result = browse(webapp_az, '-n', 'scaled-app', '--instance', instance, env={'BROWSER': str(browser)})
    assert result.returncode == 0, result.stderr
    url = f'{sandbox.app("scaled-app").scm_url}/webssh/host?instance={instance}'
    assert seen.read_text() == url
    assert result.stdout == ''
    assert f'Opened {url} in your browser' in result.stderr


def test_a_browser_that_fails_falls_back_to_printing(webapp_az, sandbox):
    result = browse(webapp_az, '-n', 'linux-app', env={'BROWSER': 'false'})
    assert result.returncode == 0, result.stderr
    assert result.stdout == f'{sandbox.app("linux-app").scm_url}/webssh/host\n'


def test_slot_has_its_own_scm_host(webapp_az, sandbox):
    result = browse(webapp_az, '-n', 'slot-app', '--slot', 'staging')
    assert result.returncode == 0, result.stderr
    assert result.stdout == f'{sandbox.app("slot-app", "staging").scm_url}/webssh/host\n'


def test_ids_of_a_slot(webapp_az, sandbox):
    result = browse(webapp_az, '--ids', sandbox.site_id('slot-app', 'staging'))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f'{sandbox.app("slot-app", "staging").scm_url}/webssh/host\n'


@pytest.mark.parametrize('args, words', [
    (['-n', 'scaled-app', '--instance', 'nope'], ["Instance 'nope' is not an instance", 'scaled-app-i0']),
    (['-n', 'scaled-app', '--instance', 'all'], ['a browser page shows one instance']),
    (['-n', 'windows-app'], ['Windows App Service plan']),
    (['-n', 'stopped-app'], ['stopped']),
    (['-n', 'no-such-app'], ['no-such-app']),
])
def test_refusals_say_what_to_do(webapp_az, args, words):
    result = browse(webapp_az, *args)
    assert result.returncode != 0 and result.stdout == ''
    for word in words:
        assert word in result.stderr, result.stderr


def test_help_has_examples(webapp_az):
    result = webapp_az.run('webapp', 'remote-connection', 'browse', '--help')
    assert result.returncode == 0
    assert '/webssh/host' in result.stdout and 'Examples' in result.stdout
    assert '--instance' in result.stdout
