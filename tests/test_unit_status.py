"""Fast tier: GetStatus's answer read as Kudu writes it and as other servers may (tunnel.status_of)."""
import json

import pytest

from azext_webapp.tunnel import ScmStatus, status_of


@pytest.mark.parametrize('body, expected', [
    ('{"port":2222,"state":"STARTED","canReachPort":true,"msg":"Success."}',
     ScmStatus('STARTED', True, 2222, 'Success.')),
    ('{"Port":"2222","State":"STARTING","CanReachPort":"false","Msg":null}', ScmStatus('STARTING', False, 2222, '')),
    ('{"port":null,"state":"STOPPED","canReachPort":"True"}', ScmStatus('STOPPED', True, None, '')),
    ('{"state":"STARTED"}', ScmStatus('STARTED', False, None, '')),
    ('{}', ScmStatus('', False, None, '')),
])
def test_getstatus_in_its_shapes(body, expected):
    assert status_of(json.loads(body)) == expected


@pytest.mark.parametrize('body', ['[]', '"STARTED"', '{"port": "two"}', '{"port": {}}'])
def test_what_is_no_getstatus_answer_is_an_error(body):
    with pytest.raises((ValueError, AttributeError, TypeError)):
        status_of(json.loads(body))


@pytest.mark.parametrize('body, reachable', [
    ('\ufeff{"state":"STARTED","canReachPort":true,"port":2222}'.encode('utf-8'), True),   # a .NET writer's BOM
    (b'{"state":"STARTED","canReachPort":false,"port":2222}', False),
])
def test_get_status_reads_the_body_past_a_byte_order_mark(monkeypatch, body, reachable):
    from azext_webapp import tunnel
    monkeypatch.setattr(tunnel, '_probe', lambda *args: ('app.scm.example', 443, body))
    assert tunnel.get_status('https://app.scm.example', 'Basic x').can_reach_port is reachable


def test_a_body_that_is_not_json_is_said_so(monkeypatch):
    from azext_webapp import tunnel
    monkeypatch.setattr(tunnel, '_probe', lambda *args: ('app.scm.example', 443, b'<html>maintenance</html>'))
    with pytest.raises(tunnel.TunnelError) as raised:
        tunnel.get_status('https://app.scm.example', 'Basic x')
    assert raised.value.reason == 'http_not_json'
