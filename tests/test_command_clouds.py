"""Another cloud's host names, end to end: gov-app's SCM host is gov-app.scm.azurewebsites.us (Azure
Government's suffix), because its ARM hostNameSslStates says so, and its certificate names that host
only (not 127.0.0.1). The real az runs in a mount namespace of its own where a private hosts file,
bind-mounted over /etc/hosts, resolves the name to loopback: the machine's /etc/hosts is never touched,
and both engines (and libcurl's probes) resolve through getaddrinfo, which reads the file. create, ssh,
doctor, browse, exec and cp all reach the app by that name (the Makefile's test-portable runs this file
again with the portable engine)."""
import json
import os

import pytest

from azext_webapp import ssh as webapp_ssh
from tests.fixtures_command import UNSHARE, AzRunner, hosts_namespace, ssh

pytestmark = pytest.mark.root

SUFFIX = 'azurewebsites.us'


@pytest.fixture(scope='module')
def gov_az(webapp_az, sandbox, tmp_path_factory):
    """The signed-in az with the extension, resolving the sandbox's other-cloud names to loopback."""
    if not sandbox.sshd_available:
        pytest.skip(f'sandbox without sshd instances: {sandbox.sshd_unavailable_reason}')
    if not os.access(UNSHARE, os.X_OK):
        pytest.skip(f'{UNSHARE} is missing (Debian: util-linux)')
    hosts = tmp_path_factory.mktemp('hosts') / 'hosts'
    with open('/etc/hosts', encoding='utf-8') as machine:
        hosts.write_text(machine.read().rstrip('\n') + '\n' + sandbox.hosts_entries())
    return AzRunner(webapp_az.env, webapp_az.cwd, prefix=hosts_namespace(hosts))


@pytest.fixture(scope='module')
def gov(sandbox):
    app = sandbox.app('gov-app')
    assert app.scm_url.startswith(f'https://gov-app.scm.{SUFFIX}:')
    return app


def test_arm_names_the_government_scm_host_and_only_the_namespace_resolves_it(gov_az, gov):
    shown = json.loads(gov_az.run('webapp', 'show', '-g', 'sandbox-rg', '-n', 'gov-app', '-o', 'json',
                                  check=True).stdout)
    repository = [state['name'] for state in shown['hostNameSslStates'] if state['hostType'] == 'Repository']
    assert repository == [gov.scm_host]
    assert shown['defaultHostName'] == f'gov-app.{SUFFIX}'
    with open('/etc/hosts', encoding='utf-8') as machine:
        assert SUFFIX not in machine.read()


def test_create_tunnels_to_the_government_host(gov_az, gov, ssh_client_env):
    with gov_az.tunnel('-g', 'sandbox-rg', '-n', 'gov-app', '--verbose') as run:
        result = ssh(run.port, 'hostname', env=ssh_client_env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ['gov-app-i0']
    assert f'Authenticating to the SCM site {gov.scm_url} with Basic auth' in run.stderr
    assert 'azurewebsites.net' not in run.stderr + '\n'.join(run.stdout_lines)


def test_ssh_pins_the_key_under_the_government_host(gov_az, gov):
    result = gov_az.run('webapp', 'remote-connection', 'ssh', '-g', 'sandbox-rg', '-n', 'gov-app', '--', 'hostname',
                        timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['gov-app-i0']
    alias = webapp_ssh.host_key_alias(gov.scm_url)
    assert alias.startswith(f'gov-app.scm.{SUFFIX}.')
    known_hosts = os.path.join(gov_az.env['AZURE_CONFIG_DIR'], 'webapp', 'known_hosts')
    assert webapp_ssh.stored_keys(alias, known_hosts)


def test_ssh_config_names_the_government_host(gov_az, gov):
    block = gov_az.run('webapp', 'remote-connection', 'ssh-config', '-g', 'sandbox-rg', '-n', 'gov-app',
                       check=True).stdout
    assert f'HostKeyAlias {webapp_ssh.host_key_alias(gov.scm_url)}' in block
    assert 'azurewebsites.net' not in block


def test_doctor_checks_every_hop_by_the_government_name(gov_az, gov):
    result = gov_az.run('webapp', 'remote-connection', 'doctor', '-g', 'sandbox-rg', '-n', 'gov-app', '-o', 'json',
                        timeout=180)
    record = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    details = {check['hop']: check['detail'] for check in record['checks']}
    assert all(check['status'] == 'ok' for check in record['checks']), record
    assert {'arm', 'app', 'scm', 'credentials', 'status', 'websocket', 'banner', 'login', 'exec'} <= set(details)
    assert f'{gov.scm_url}/exec/shell' in details['exec']
    assert f'SCM site {gov.scm_url}' in details['app']
    assert details['scm'].startswith(f'{gov.scm_host} resolves, answers over TLS and its certificate verifies')
    assert 'azurewebsites.net' not in result.stdout


def test_browse_prints_the_government_page(gov_az, gov):
    env = {key: value for key, value in gov_az.env.items() if key not in ('BROWSER', 'DISPLAY', 'WAYLAND_DISPLAY')}
    runner = AzRunner(env, gov_az.cwd, prefix=gov_az.prefix)
    result = runner.run('webapp', 'remote-connection', 'browse', '-g', 'sandbox-rg', '-n', 'gov-app',
                        '--instance', 'gov-app-i0')
    assert result.returncode == 0, result.stderr
    assert result.stdout == f'https://{gov.scm_host}/webssh/host?instance=gov-app-i0\n'


def test_exec_and_cp_reach_the_government_host(gov_az, gov, tmp_path):
    ran = gov_az.run('webapp', 'remote-connection', 'exec', '-g', 'sandbox-rg', '-n', 'gov-app', '--', 'hostname',
                     timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ['gov-app-i0']
    local = tmp_path / 'note.txt'
    local.write_bytes(b'to the government cloud\n')
    up = gov_az.run('webapp', 'remote-connection', 'cp', '-g', 'sandbox-rg', '-n', 'gov-app', str(local),
                    ':/tmp/note.txt', timeout=120)
    assert up.returncode == 0, up.stderr
    back = tmp_path / 'back.txt'
    down = gov_az.run('webapp', 'remote-connection', 'cp', '-g', 'sandbox-rg', 'gov-app:/tmp/note.txt', str(back),
                      timeout=120)
    assert down.returncode == 0, down.stderr
    assert back.read_bytes() == local.read_bytes()
