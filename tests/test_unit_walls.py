"""Units of real Azure's walls (_walls.py's facts, _errors.py's words), without az or a sandbox: policy
rules and initiatives with their parameters, access restrictions as ARM describes them, RBAC action
patterns, the SCM site's container states, and the words each fact chooses."""
import types

import pytest
from azure.cli.core.azclierror import AzureConnectionError, ForbiddenError

from azext_webapp import _errors, _walls

SITE = '/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app'
SSH_RULE = {'if': {'allOf': [{'field': 'type', 'equals': 'Microsoft.Web/sites'},
                             {'field': 'Microsoft.Web/sites/sshEnabled', 'notEquals': 'false'}]},
            'then': {'effect': "[parameters('effect')]"}}


class FakeArm:
    """client.send_request for arm_get: path (without the query) -> JSON."""

    def __init__(self, answers):
        self.answers, self.asked = answers, []

    def send_request(self, request):
        path = request.url.split('?', 1)[0]
        self.asked.append(request.url)
        doc = self.answers[path]
        return types.SimpleNamespace(raise_for_status=lambda: None, json=lambda: doc)


def definition(rule, display='App Service apps should disable SSH', default='Audit'):
    return {'name': 'd', 'properties': {'displayName': display, 'policyRule': rule,
                                        'parameters': {'effect': {'type': 'String', 'defaultValue': default}}}}


def assignments(*items):
    return {'value': [{'id': f'{SITE}/providers/Microsoft.Authorization/policyAssignments/{name}', 'name': name,
                       'properties': {'displayName': name.upper(), 'policyDefinitionId': defid, 'scope': '/sub',
                                      'parameters': params, **extra}}
                      for name, defid, params, extra in items]}


ASSIGNED = f'{SITE}/providers/Microsoft.Authorization/policyAssignments'


def test_a_deny_assignment_of_the_built_in_rule_blocks():
    arm = FakeArm({ASSIGNED: assignments(('deny', '/providers/Microsoft.Authorization/policyDefinitions/d',
                                          {'effect': {'value': 'Deny'}}, {})),
                   '/providers/Microsoft.Authorization/policyDefinitions/d': definition(SSH_RULE)})
    [policy] = _walls.ssh_policies(arm, SITE)
    assert policy == _walls.SshPolicy('DENY', f'{ASSIGNED}/deny', '/sub', 'App Service apps should disable SSH',
                                      'deny', True)
    assert policy.blocks and '$filter=atScope()' in arm.asked[0]


@pytest.mark.parametrize('params, extra, effect, blocks', [
    ({}, {}, 'audit', False),                                            # the definition's default
    ({'effect': {'value': 'Disabled'}}, {}, 'disabled', False),
    ({'effect': {'value': 'Deny'}}, {'enforcementMode': 'DoNotEnforce'}, 'deny', False),
    ({'effect': {'value': 'Modify'}}, {}, 'modify', True),
])
def test_parameters_defaults_and_enforcement(params, extra, effect, blocks):
    arm = FakeArm({ASSIGNED: assignments(('a', '/defs/d', params, extra)), '/defs/d': definition(SSH_RULE)})
    [policy] = _walls.ssh_policies(arm, SITE)
    assert (policy.effect, policy.blocks) == (effect, blocks)


def test_an_initiative_passes_its_parameters_down_and_other_rules_are_ignored():
    other = definition({'if': {'field': 'Microsoft.Web/sites/httpsOnly', 'equals': 'false'},
                        'then': {'effect': 'deny'}}, display='HTTPS only')
    initiative = {'properties': {'parameters': {'sshEffect': {'defaultValue': 'Audit'}},
                                 'policyDefinitions': [
                                     {'policyDefinitionId': '/defs/https', 'parameters': {}},
                                     {'policyDefinitionId': '/defs/ssh',
                                      'parameters': {'effect': {'value': "[parameters('sshEffect')]"}}}]}}
    arm = FakeArm({ASSIGNED: assignments(('baseline', '/providers/Microsoft.Authorization/policySetDefinitions/b',
                                          {'sshEffect': {'value': 'Deny'}}, {})),
                   '/providers/Microsoft.Authorization/policySetDefinitions/b': initiative,
                   '/defs/https': other, '/defs/ssh': definition(SSH_RULE)})
    [policy] = _walls.ssh_policies(arm, SITE)
    assert (policy.assignment, policy.effect, policy.blocks) == ('BASELINE', 'deny', True)


def rule(source, action='Allow', name='r'):
    return types.SimpleNamespace(name=name, ip_address=source if '/' in source or source == 'Any' else None,
                                 tag='ServiceTag' if '/' not in source and source != 'Any' else 'Default',
                                 vnet_subnet_resource_id=None, action=action)


def config(scm=(), main=(), use_main=False, scm_default=None, main_default=None):
    return types.SimpleNamespace(scm_ip_security_restrictions=list(scm), ip_security_restrictions=list(main),
                                 scm_ip_security_restrictions_use_main=use_main,
                                 scm_ip_security_restrictions_default_action=scm_default,
                                 ip_security_restrictions_default_action=main_default)


def test_access_as_arm_describes_it():
    site = types.SimpleNamespace(public_network_access=None)
    assert not _walls.access_of(site, config([rule('Any', name='Allow all')])).restricted
    restricted = _walls.access_of(site, config([rule('203.0.113.0/24', name='office'), rule('Any', 'Deny')]))
    assert restricted.restricted and restricted.default_action == 'Deny'     # read from the Allow rule
    assert restricted.allowed == (_walls.Rule('office', '203.0.113.0/24', 'Allow'),)
    main = _walls.access_of(site, config(main=[rule('198.51.100.7/32', name='me')], use_main=True,
                                         main_default='Deny'))
    assert main.use_main and main.allowed[0].source == '198.51.100.7/32'
    assert _walls.access_of(site, config(scm_default='Deny')).restricted      # no rule at all: nobody
    assert not _walls.access_of(types.SimpleNamespace(public_network_access='Disabled'), config()).public


@pytest.mark.parametrize('granted, denied, slot, publish', [
    (['*'], [], None, True),
    (['*/read'], [], None, False),
    (['Microsoft.Web/sites/*'], [], None, True),
    (['microsoft.web/sites/publish/action'], [], None, True),     # case does not matter
    (['Microsoft.Web/sites/publish/Action'], [], 'staging', False),  # a slot has its own action
    (['*'], ['Microsoft.Web/*'], None, False),
])
def test_the_publish_right(granted, denied, slot, publish):
    arm = FakeArm({f'{SITE}/providers/Microsoft.Authorization/permissions': {
        'value': [{'actions': granted, 'notActions': denied}]}})
    assert _walls.rights(arm, SITE, slot).publish is publish


def test_container_states_are_read_loosely():
    listed = [_walls.SiteContainer('main', 'app:1', True), _walls.SiteContainer('otel', 'otel:1', False)]
    states = _walls.with_states(listed, [{'containerName': 'otel', 'status': 'Stopped', 'statusMessage': 'exit 2'},
                                         'noise', {'name': 'main', 'state': 'Running'}])
    assert [(c.name, c.state, c.message) for c in states] == [('main', 'Running', ''), ('otel', 'Stopped', 'exit 2')]
    assert _walls.with_states(listed, {'not': 'a list'}) == listed
    detail, fix = _errors.containers_outcome(TARGET, states)
    assert detail == 'main (main, app:1): Running; otel (sidecar, otel:1): Stopped - exit 2'
    assert fix.startswith('otel is not running') and '--container-name otel' in fix


TARGET = types.SimpleNamespace(resource_group='rg', name='app', slot=None)


def walk(**facts):
    base = dict(target=TARGET, scm_url='https://app.scm.example', auth_kind='Basic', access=None, rights=None,
                private_endpoints=None, scm_address=None, site=types.SimpleNamespace(id=SITE), user='me@example')
    return types.SimpleNamespace(**{**base, **facts})


def test_ssh_off_words_audit_and_unread():
    audit = _walls.SshPolicy('Watch SSH', 'id', '/sub', 'App Service apps should disable SSH', 'audit', True)
    detail, fix = _errors.ssh_off(TARGET, SITE, [audit], unread=RuntimeError('HTTP 403 AuthorizationFailed'))
    assert 'sshEnabled) is false' in detail and 'keeps it off' not in detail
    assert fix.startswith('Turn it on with `az webapp update -g rg -n app --set sshEnabled=true`')
    assert '"Watch SSH" only audits SSH' in fix and 'could not be read: HTTP 403 AuthorizationFailed' in fix
    slot = types.SimpleNamespace(resource_group='rg', name='app', slot='staging')
    assert 'az webapp update -g rg -n app --slot staging --set sshEnabled=true' in _errors.ssh_off(slot, SITE, [])[1]


def test_restrictions_through_the_main_sites_rules():
    access = _walls.Access(True, (_walls.Rule('office', '203.0.113.0/24', 'Allow'),), 'Deny', True)
    error = _errors.tunnel_error('auth_refused', {'host': 'h', 'status': 403}, walk(access=access))
    assert isinstance(error, ForbiddenError)
    assert "the main site's access restrictions, which its SCM site uses, allow only office" in error.detail
    assert '--use-same-restrictions-for-scm-site false' in error.fix
    assert '--priority 300`' in error.fix     # the main site's own rule: no --scm-site


def test_a_401_is_still_the_credentials_and_other_403s_too():
    access = _walls.Access(True, (_walls.Rule('office', '203.0.113.0/24', 'Allow'),), 'Deny', False)
    error = _errors.tunnel_error('auth_refused', {'host': 'h', 'status': 401}, walk(access=access))
    assert 'rejected Basic auth' in str(error)
    rights = _walls.Rights(True, _walls.PUBLISH_ACTION, ('*',))
    error = _errors.tunnel_error('auth_refused', {'host': 'h', 'status': 403}, walk(auth_kind='Bearer', rights=rights))
    assert 'rejected the Microsoft Entra token' in str(error)


def test_private_endpoint_words_for_each_face():
    closed = _walls.Access(False, (), 'Allow', False)
    endpoints = [_walls.PrivateEndpoint('pe', ('10.0.0.4',))]
    dns = _errors.tunnel_error('dns_unknown_host', {'host': 'app.scm.example', 'port': 443},
                               walk(access=closed, private_endpoints=endpoints))
    assert isinstance(dns, AzureConnectionError) and 'private endpoint pe (10.0.0.4)' in dns.detail
    assert 'app.scm.example does not resolve from this machine' in dns.detail
    timeout = _errors.tunnel_error('timeout_probe', {'host': 'app.scm.example', 'port': 443, 'timeout_ms': 30000},
                                   walk(access=closed, scm_address='10.0.0.4'))
    assert 'resolves here to 10.0.0.4, but this machine cannot reach it (no answer from' in timeout.detail
    assert 'through a private endpoint:' in timeout.detail     # not listed (the look-up failed)
    tls = _errors.tunnel_error('tls_untrusted', {'host': 'h'}, walk(access=closed))
    assert 'Certificate check failed' in str(tls)                 # not every failure is the wall


@pytest.mark.parametrize('enabled, target_port, debugging, thorough, ssh, fails', [
    (True, None, False, False, True, False),
    (None, None, False, False, True, False),          # an older API version does not say: on
    (False, None, False, False, True, True),           # create, ssh, ssh-config, browse
    (False, 2222, True, False, True, True),            # --target-port 2222 on a debugging app
    (False, None, True, False, True, False),           # create's tunnel to the debugger
    (False, 9229, False, False, True, False),          # create --target-port to another port
    (False, 9229, False, True, True, True),            # the doctor checks SSH
    (False, None, False, False, False, False),         # the exec channel needs no SSH
])
def test_the_ssh_hop_stops_only_ways_in_that_need_ssh(monkeypatch, enabled, target_port, debugging, thorough, ssh,
                                                      fails):
    from azext_webapp import _hops
    monkeypatch.setattr(_walls, 'ssh_policies', lambda client, site_id: [])
    w = types.SimpleNamespace(site=types.SimpleNamespace(ssh_enabled=enabled, id=SITE), target_port=target_port,
                              debugging=debugging, thorough=thorough, ssh=ssh, client=None, target=TARGET)
    if fails:
        with pytest.raises(_hops.HopFailed) as failed:
            _hops.ssh_setting(w)
        assert failed.value.fix.startswith('Turn it on with') and str(failed.value.error).startswith('SSH is turned')
    else:
        _hops.ssh_setting(w)


def test_exec_into_a_site_container():
    from azext_webapp import _exec_channel
    assert _exec_channel.shell_path(shell='/bin/sh', container='otel') == '/exec/shell?container=otel&shell=%2Fbin%2Fsh'
    assert _exec_channel.shell_path(kudu=True) == '/exec/shell?target=kudu'
    containers = [_walls.SiteContainer('main', 'app:1', True), _walls.SiteContainer('otel', 'otel:1', False)]
    assert str(_errors.container_error(TARGET, 'Otel', containers)) == (
        "App 'app' has no container 'Otel': its containers are main (main), otel (names are case-sensitive).")
    assert 'has no site containers (sidecars)' in str(_errors.container_error(TARGET, 'otel', []))
    refused = _errors.exec_refused('http_status', {'host': 'h', 'status': 409, 'server_message': 'not running'},
                                   walk(container='otel'))
    assert "into the container 'otel' (HTTP 409). It said: not running." in str(refused)
    assert 'leave out --container' in str(refused)
    plain = _errors.exec_refused('http_status', {'host': 'h', 'status': 409}, walk(container=None))
    assert 'into the container' not in str(plain)


def test_exec_names_the_walls_too():
    access = _walls.Access(True, (_walls.Rule('office', '203.0.113.0/24', 'Allow'),), 'Deny', False)
    refused = _errors.exec_refused('auth_refused', {'host': 'h', 'status': 403}, walk(access=access, container=None))
    assert isinstance(refused, ForbiddenError) and 'HTTP 403 Ip Forbidden' in str(refused)
