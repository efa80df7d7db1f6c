"""`az webapp remote-connection browse` without az or a sandbox: the page's URL, and what counts as
an opened browser on each platform (az's open_page_in_browser answers differently on each)."""
import webbrowser
from types import SimpleNamespace

import pytest
from azure.cli.core import util as az_util
from azure.cli.core.azclierror import InvalidArgumentValueError

from azext_webapp import custom, _validators


@pytest.mark.parametrize('scm_url, instance, url', [
    ('https://app.scm.azurewebsites.net', None, 'https://app.scm.azurewebsites.net/webssh/host'),
    ('https://app-staging.scm.azurewebsites.net/', None, 'https://app-staging.scm.azurewebsites.net/webssh/host'),
    ('https://app.scm.azurewebsites.net', 'ab12cd', 'https://app.scm.azurewebsites.net/webssh/host?instance=ab12cd'),
    ('https://app.scm.azurewebsites.net', 'a b&c=d/e',
     'https://app.scm.azurewebsites.net/webssh/host?instance=a%20b%26c%3Dd%2Fe'),
])
def test_webssh_url(scm_url, instance, url):
    assert custom.webssh_url(scm_url, instance) == url


def _platform(monkeypatch, can_launch, opened):
    calls = []

    def open_page(url):
        calls.append(url)
        if isinstance(opened, Exception):
            raise opened
        return opened

    monkeypatch.setattr(az_util, 'can_launch_browser', lambda: can_launch)
    monkeypatch.setattr(az_util, 'open_page_in_browser', open_page)
    return calls


@pytest.mark.parametrize('platform, opened, expected', [
    ('linux or windows: webbrowser.open found a browser', True, True),
    ('linux or windows: webbrowser.open found none', False, False),
    ('wsl: powershell.exe Start-Process succeeded', 0, True),
    ('wsl: powershell.exe failed', 1, False),
    ('macos: `open` was started', SimpleNamespace(pid=1), True),
    ('a browser program that cannot start', FileNotFoundError('no such file'), False),
])
def test_open_in_browser_per_platform(monkeypatch, platform, opened, expected):
    calls = _platform(monkeypatch, True, opened)
    assert custom.open_in_browser('https://x/webssh/host') is expected, platform
    assert calls == ['https://x/webssh/host']


def test_no_browser_is_not_tried(monkeypatch):
    calls = _platform(monkeypatch, False, True)
    assert custom.open_in_browser('https://x/webssh/host') is False
    assert calls == []


def test_browser_from_the_BROWSER_variable_gets_the_url(monkeypatch, tmp_path):
    """On Linux, az asks Python's webbrowser, which runs $BROWSER: the URL is its one argument."""
    seen = tmp_path / 'seen'
    script = tmp_path / 'browser'
    script.write_text(f'#!/bin/sh\nprintf %s "$1" > {seen}\n')
    script.chmod(0o755)
    monkeypatch.setenv('BROWSER', str(script))
    monkeypatch.delenv('DISPLAY', raising=False)
    monkeypatch.setattr(webbrowser, '_tryorder', None)  # re-read $BROWSER
    monkeypatch.setattr(webbrowser, '_browsers', {})
    monkeypatch.setattr(az_util, '_get_platform_info', lambda: ('linux', 'test'))
    monkeypatch.setattr(az_util, 'is_wsl', lambda: False)
    assert custom.open_in_browser('https://x/webssh/host?instance=a') is True
    assert seen.read_text() == 'https://x/webssh/host?instance=a'


@pytest.mark.parametrize('instance', ['all', 'a,b', ' '])
def test_browse_takes_one_instance(instance):
    namespace = SimpleNamespace(resource_group_name='rg', name='app', slot=None, ids=None, instance=instance)
    with pytest.raises(InvalidArgumentValueError, match='--instance'):
        _validators.validate_remote_connection_browse(namespace)
