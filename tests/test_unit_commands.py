"""Fast tier: the commands' pure parts -- the error catalogue, the argument checks, the ssh argv
and the ssh_config block -- with no az process, no sandbox and no root."""
from types import SimpleNamespace

import pytest
from azure.cli.core.azclierror import (AzureConnectionError, AzureResponseError, ForbiddenError,
                                       InvalidArgumentValueError, RequiredArgumentMissingError,
                                       ResourceNotFoundError, UnauthorizedError)

from azext_webapp import _errors, _validators, ssh
from azext_webapp._arm import Target

APP = Target('rg', 'app', None)
SLOT = Target('rg', 'app', 'staging')
SCM = 'https://app.scm.example'


def _endpoint(auth_kind='Basic', target=APP, instance=None):
    return SimpleNamespace(target=target, scm_url=SCM, auth_kind=auth_kind, instance=instance)


# -- the error catalogue ------------------------------------------------------------------------

@pytest.mark.parametrize('reason,facts,detail,error_type,words', [
    ('tls_untrusted', {'host': 'app.scm.example', 'verify_code': 20, 'verify_text': 'unable to get local issuer '
                       'certificate', 'ca_bundle': True}, 'the certificate of app.scm.example is not trusted (unable '
     'to get local issuer certificate); checked against REQUESTS_CA_BUNDLE', AzureConnectionError,
     ['REQUESTS_CA_BUNDLE to a file with its CA']),
    ('tls_wrong_host', {'host': 'app.scm.example'}, 'the certificate of app.scm.example is issued for another host '
     'name', AzureConnectionError, ['DNS and proxy settings']),
    ('tls_ca_file', {'ca_file': '/nowhere.pem'}, 'cannot read the CA bundle /nowhere.pem (REQUESTS_CA_BUNDLE)',
     AzureConnectionError, ['readable file of PEM certificates']),
    ('dns_unknown_host', {'host': 'app.scm.example', 'port': 443}, 'cannot resolve the host name app.scm.example',
     AzureConnectionError, ['private endpoint']),
    ('proxy_auth_required', {'proxy': '10.0.0.1:3128', 'host': 'app.scm.example', 'port': 443, 'status': 407},
     'the proxy 10.0.0.1:3128 refused to CONNECT to app.scm.example:443 (HTTP 407); it wants credentials in '
     'HTTPS_PROXY', AzureConnectionError, ['http://user:password@host:port']),
    ('proxy_unreachable', {'proxy': '10.0.0.1:3128', 'host': 'app.scm.example', 'port': 443,
                           'errno': 'ECONNREFUSED'},
     'cannot reach the proxy 10.0.0.1:3128 (for app.scm.example:443; connection refused, ECONNREFUSED)',
     AzureConnectionError, ['HTTPS_PROXY']),
    ('connect_refused', {'host': 'app.scm.example', 'port': 443, 'errno': 'ECONNREFUSED'},
     'cannot connect to app.scm.example port 443 (connection refused)', AzureConnectionError,
     ['access restrictions']),
    ('connect_reset', {'host': 'app.scm.example', 'port': 443, 'phase': 'tls', 'errno': 'ECONNRESET'},
     'the connection to app.scm.example broke (connection reset, ECONNRESET) during the TLS handshake',
     AzureConnectionError, ['access restrictions']),
    ('timeout_handshake', {'host': 'app.scm.example', 'phase': 'upgrade', 'timeout_ms': 20000},
     'app.scm.example did not complete the WebSocket upgrade within 20 s', AzureConnectionError, ['network']),
    ('resource_fds', {'errno': 'EMFILE', 'limit': 1024, 'host': 'app.scm.example', 'phase': 'connect'},
     'out of file descriptors (EMFILE; open-file limit 1024) connecting to app.scm.example', AzureConnectionError,
     ['ulimit -n']),
    ('http_status', {'host': 'app.scm.example', 'status': 502, 'phase': 'upgrade',
                     'server_message': 'The app is restarting'},
     'app.scm.example answered HTTP 502 to the tunnel request; the server said "The app is restarting"',
     AzureResponseError, ['az webapp restart -g rg -n app']),
    ('http_status', {'host': 'app.scm.example', 'status': 404, 'phase': 'upgrade'},
     'app.scm.example answered HTTP 404 to the tunnel request', AzureResponseError,
     ['no tunnel endpoint', 'App Service on Linux']),
    ('protocol_masked', {'host': 'app.scm.example', 'phase': 'frame'},
     'app.scm.example sent a masked frame (servers never mask)', AzureResponseError, ['failed']),
])
def test_each_engine_failure_has_its_words_and_advice(reason, facts, detail, error_type, words):
    assert _errors.failure_detail(reason, facts) == detail
    error = _errors.tunnel_error(reason, facts, _endpoint())
    assert isinstance(error, error_type)
    text = str(error)
    assert detail in text and SCM in text and "app 'app'" in text
    assert all(word in text for word in words), text
    assert '\n' not in text


def test_every_reason_has_words_and_a_typed_error():
    """Every reason of _reasons.def, with the facts it lists (and with none): one line, and an az error."""
    from azext_webapp import _reasons, tunnel
    sample = {'host': 'app.scm.example', 'port': 443, 'status': 418, 'proxy': '10.0.0.1:3128', 'phase': 'tls',
              'errno': 'EIO', 'verify_code': 20, 'verify_text': 'x', 'ca_bundle': True, 'ca_file': '/ca.pem',
              'limit': 1, 'size': 2, 'opcode': 3, 'timeout_ms': 1500, 'server_message': 'said', 'detail': 'why',
              'path': '/api/settings'}
    assert set(sample) == set(_reasons.FACTS)
    for reason, entry in _reasons.REASONS.items():
        assert reason.startswith(entry.kind), reason
        assert reason in _errors._DETAIL, reason  # pylint: disable=protected-access
        for facts in (sample, {}):
            text = _errors.failure_detail(reason, facts)
            assert text and '\n' not in text and not text.startswith(f'{reason} ('), (reason, text)
            assert '\n' not in str(_errors.tunnel_error(reason, facts, _endpoint()))
        assert isinstance(tunnel.failure(reason, sample), tunnel.TunnelError)
        assert tunnel.failure(reason, sample).kind in (entry.kind, 'internal')


def test_a_reason_of_a_newer_engine_is_still_one_line():
    assert _errors.failure_detail('tls_quantum', {'host': 'h'}) == 'tls_quantum (host=h)'


@pytest.mark.parametrize('status,code,action,target,error_type,words', [
    (404, 'ResourceGroupNotFound', None, APP, ResourceNotFoundError, ["Resource group 'rg'", 'az group list']),
    (404, 'ResourceNotFound', None, APP, ResourceNotFoundError, ["App 'app' was not found", 'az webapp list']),
    (404, 'ResourceNotFound', None, SLOT, ResourceNotFoundError, ["Slot 'staging'", 'deployment slot list']),
    (401, 'InvalidAuthenticationToken', None, APP, UnauthorizedError, ['az login']),
    (403, 'AuthorizationFailed', 'list the instances of', APP, ForbiddenError,
     ["list the instances of app 'app'", 'AuthorizationFailed', 'Website Contributor']),
    (500, 'InternalError', None, APP, AzureResponseError, ['HTTP 500 InternalError']),
])
def test_arm_failures(status, code, action, target, error_type, words):
    err = SimpleNamespace(status_code=status, error=SimpleNamespace(code=code, message='boom'), message='boom')
    error = _errors.arm_error(err, target, action)
    assert isinstance(error, error_type)
    assert all(word in str(error) for word in words), str(error)


def test_nothing_answering_on_2222_names_both_causes_unless_ssh_worked_before():
    never = _errors.unreachable_message(SimpleNamespace(target=APP, instance='i0', debugging=False), 2222, False)
    before = _errors.unreachable_message(SimpleNamespace(target=APP, instance='i0', debugging=False), 2222, True)
    assert 'Either SSH is not set up' in never and 'or its sshd has stopped' in never and "(instance 'i0')" in never
    assert 'though it did before' in before and 'not set up' not in before
    assert 'az webapp restart -g rg -n app' in before


# -- argument checks ----------------------------------------------------------------------------

def _create_args(**given):
    args = dict(resource_group_name='rg', name='app', slot=None, ids=None, instance=None, port=None,
                target_port=None, timeout=None, stdio=False, bind=None, background=False, ready_file=None)
    args.update(given)
    return SimpleNamespace(**args)


@pytest.mark.parametrize('given,words', [
    ({'port': 70000}, '--port 70000 is not a valid TCP port'),
    ({'target_port': 0}, '--target-port 0 is not a valid TCP port'),
    ({'timeout': -5}, '--timeout -5 is not a positive number'),
    ({'bind': 'not-an-address'}, '--bind not-an-address is not an IP address'),
    ({'bind': '192.0.2.1'}, 'it is not an address of this machine'),
    ({'stdio': True, 'port': 2000}, '--stdio relays standard input and output'),
    ({'instance': 'all'}, 'create opens one tunnel to one instance'),
    ({'instance': '  '}, '--instance is empty'),
])
def test_create_refuses_bad_arguments_with_what_to_do(given, words):
    with pytest.raises(InvalidArgumentValueError) as err:
        _validators.validate_remote_connection_create(_create_args(**given))
    assert words in str(err.value)


def test_create_needs_an_app():
    with pytest.raises(RequiredArgumentMissingError) as err:
        _validators.validate_remote_connection_create(_create_args(resource_group_name=None, name=None))
    assert '--ids' in str(err.value)


@pytest.mark.parametrize('resource_id,slot', [
    ('/subscriptions/s1/resourceGroups/g1/providers/Microsoft.Web/sites/a1', None),
    ('/subscriptions/s1/resourceGroups/g1/providers/Microsoft.Web/sites/a1/slots/staging', 'staging'),
])
def test_ids_of_an_app_or_a_slot(resource_id, slot):
    args = _create_args(resource_group_name=None, name=None, ids=[resource_id])
    _validators.validate_remote_connection_create(args)
    assert (args.resource_group_name, args.name, args.slot, args.bind) == ('g1', 'a1', slot, '127.0.0.1')


def test_ids_of_something_else_is_refused():
    args = _create_args(ids=['/subscriptions/s1/resourceGroups/g1/providers/Microsoft.Storage/storageAccounts/x'])
    with pytest.raises(InvalidArgumentValueError) as err:
        _validators.validate_remote_connection_create(args)
    assert 'is not the resource ID of a web app or slot' in str(err.value)


# -- ssh argv and the ssh_config block ----------------------------------------------------------

def test_ssh_argv_puts_pinning_first_and_the_command_last():
    argv = ssh.ssh_argv('/usr/bin/ssh', 40022, 'app.scm.example', '/cfg/webapp/known_hosts',
                        ['-v', '-L', '8080:localhost:80', '--', 'uname', '-a'])
    assert argv[:7] == ['/usr/bin/ssh', '-o', 'HostKeyAlias=app.scm.example', '-o',
                        'UserKnownHostsFile=/cfg/webapp/known_hosts', '-o', 'StrictHostKeyChecking=accept-new']
    assert argv[7:9] == ['-p', '40022']
    assert argv[-3:] == ['root@127.0.0.1', 'uname', '-a']
    assert '-L' in argv and argv[argv.index('-L') + 1] == '8080:localhost:80'
    assert 'Ciphers=+aes128-cbc,aes256-cbc' in argv
    assert 'Docker!' not in ' '.join(argv)


def test_ssh_argv_keeps_the_users_own_user():
    argv = ssh.ssh_argv('ssh', 1, 'a', 'k', ['-l', 'bob', '--', 'id'])
    assert argv[-2:] == ['127.0.0.1', 'id']
    assert ssh.has_own_identity(['-i', 'key']) and ssh.has_own_identity(['-o', 'IdentityFile=k'])
    assert not ssh.has_own_identity(['-v'])


def test_host_key_alias_per_app_port_and_instance():
    assert ssh.host_key_alias('https://app.scm.example') == 'app.scm.example'
    assert ssh.host_key_alias('https://127.0.0.1:4443') == '127.0.0.1.4443'
    assert ssh.host_key_alias('https://app.scm.example', 'i0') == 'i0.app.scm.example'


def test_config_block_has_no_secret_and_pins_the_key():
    block = ssh.config_block('app', 'rg', 'app', 'app.scm.example', '/cfg/webapp/known_hosts', slot='staging')
    lines = block.splitlines()
    assert lines[0] == ssh.BLOCK_BEGIN.format(host='app') and lines[-1] == ssh.BLOCK_END.format(host='app')
    assert '    User root' in lines and '    HostKeyAlias app.scm.example' in lines
    proxy = next(line for line in lines if line.startswith('    ProxyCommand '))
    assert 'webapp remote-connection create' in proxy and '--stdio' in proxy and '--slot staging' in proxy
    assert 'Docker!' not in proxy


def test_merge_block_replaces_in_place_and_appends_otherwise():
    block = ssh.config_block('app', 'rg', 'app', 'alias', 'kh')
    first = ssh.merge_block('Host other\n    User bob\n', block, 'app')
    assert first.startswith('Host other\n') and first.endswith(block)
    newer = block.replace('alias', 'alias2')
    assert ssh.merge_block(first, newer, 'app') == first.replace(block, newer)


def test_the_architecture_document_lists_every_reason():
    """docs/ARCHITECTURE.md's reason table stays the table of _reasons.def."""
    import os
    from azext_webapp import _reasons
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'docs', 'ARCHITECTURE.md')
    with open(path, encoding='utf-8') as handle:
        text = handle.read()
    assert [reason for reason in _reasons.REASONS if f'`{reason}`' not in text] == []


def test_every_help_entry_is_yaml_with_a_summary_and_each_command_examples():
    """What `az ... --help` renders: a YAML typo shows up there only, so it is read here first."""
    import yaml
    from azext_webapp import _help  # noqa: F401  # pylint: disable=unused-import  # fills knack's helps
    from knack.help_files import helps
    ours = {name: text for name, text in helps.items() if name.startswith('webapp')}
    assert 'webapp remote-connection cp' in ours
    for name, text in ours.items():
        entry = yaml.safe_load(text)
        assert entry['short-summary'], name
        if entry['type'] == 'command':
            assert entry.get('examples'), name
            assert all(example['name'] and example['text'] for example in entry['examples']), name
