"""`az webapp remote-connection doctor`: the real az with the extension wheel against every sandbox app;
each diagnosis names the hop that fails and how to fix it, stops there, and sets the exit status: 1 for a
broken hop only; a hop that works with a warning (no sftp subsystem) exits 0."""
import json

import pytest

from tests.test_command_tunnel import secrets_of

HOPS = ['arm', 'app', 'scm', 'credentials', 'status', 'websocket', 'banner', 'algorithms', 'login', 'sftp', 'exec']
SSH_HOPS = HOPS[:-1]    # the exec channel is the other way in: checked after each instance's hops


def doctor(webapp_az, *args, output=None):
    argv = ['webapp', 'remote-connection', 'doctor', '-g', 'sandbox-rg', *args]
    if output:
        argv += ['-o', output]
    return webapp_az.run(*argv, timeout=180)


def checks(webapp_az, *args):
    """(exit status, {(hop, instance): check}, [hops in order], result) from -o json."""
    result = doctor(webapp_az, *args, output='json')
    record = json.loads(result.stdout)
    table = {(c['hop'], c['instance']): c for c in record['checks']}
    return result.returncode, table, [c['hop'] for c in record['checks']], record, result


def statuses(record):
    return [(c['hop'], c['status']) for c in record['checks']]


def first_failure(record):
    return next(c for c in record['checks'] if c['status'] == 'fail')


def assert_stops_at(record, hop):
    failed = first_failure(record)
    assert failed['hop'] == hop, statuses(record)
    after = [c for c in record['checks'][record['checks'].index(failed) + 1:] if c['hop'] != 'exec']
    assert (hop == 'sftp' or after) and all(c['status'] == 'not checked' for c in after
                                            if c['instance'] == failed['instance'])
    return failed


@pytest.mark.root
def test_linux_app_every_hop_works_readable_table(webapp_az, sandbox_sshd):
    result = doctor(webapp_az, '-n', 'linux-app')
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Checking the way in to app 'linux-app' (resource group 'sandbox-rg'):"
    marks = [line.split()[0] for line in lines if line.startswith('  ') and not line.startswith('        ')]
    assert marks == ['OK'] * 11, result.stdout
    text = ' '.join(result.stdout.split())  # the details are wrapped to the terminal's width
    assert 'SSH-2.0-OpenSSH' in text
    assert 'OpenSSH here works with its defaults' in text
    assert "the portal's browser SSH too" in text
    assert 'sftp subsystem answers' in text
    assert lines[-1] == 'Every hop works.'
    for secret in secrets_of(sandbox_sshd, 'linux-app'):
        assert secret not in result.stdout + result.stderr


def warnings_of(record):
    return [c for c in record['checks'] if c['status'] == 'warning']


@pytest.mark.root
def test_seed_app_needs_cbc_and_has_no_sftp_a_warning_not_a_failure(webapp_az, sandbox_sshd):
    code, table, hops, record, result = checks(webapp_az, '-n', 'seed-app')
    assert code == 0 and hops == HOPS, statuses(record)
    assert record['healthy'] and record['verdict'] == 'warning'
    assert not [c for c in record['checks'] if c['status'] in ('fail', 'not checked')], statuses(record)
    algorithms = table[('algorithms', 'seed-app-i0')]
    assert algorithms['status'] == 'ok'
    assert 'offers ciphers aes128-cbc,3des-cbc,aes256-cbc; MACs hmac-sha1,hmac-sha1-96' in algorithms['detail']
    assert 'OpenSSH here needs -o Ciphers=+aes128-cbc' in algorithms['detail']
    assert "the portal's browser SSH too (aes128-cbc, hmac-sha1)" in algorithms['detail']
    assert table[('login', 'seed-app-i0')]['status'] == 'ok'
    assert warnings_of(record) == [table[('sftp', 'seed-app-i0')]]
    sftp = table[('sftp', 'seed-app-i0')]
    assert 'no sftp subsystem' in sftp['detail'] and 'ssh works' in sftp['detail'] and 'scp -O' in sftp['detail']
    assert 'Subsystem sftp internal-sftp' in sftp['fix']
    readable = doctor(webapp_az, '-n', 'seed-app')
    assert readable.returncode == 0, readable.stdout + readable.stderr
    assert 'WARN  sftp subsystem (sftp, scp)' in readable.stdout
    assert readable.stdout.splitlines()[-1] == ('Every hop works; 1 with a warning: sftp subsystem (sftp, scp) '
                                                '(seed-app-i0).')


@pytest.mark.root
def test_nosftp_app_warns_at_sftp_and_says_scp_dash_o(webapp_az, sandbox_sshd):
    code, table, hops, record, result = checks(webapp_az, '-n', 'nosftp-app')
    assert code == 0 and record['verdict'] == 'warning', statuses(record)
    assert table[('algorithms', 'nosftp-app-i0')]['status'] == 'ok'
    assert 'OpenSSH here works with its defaults' in table[('algorithms', 'nosftp-app-i0')]['detail']
    (sftp,) = warnings_of(record)
    assert sftp['hop'] == 'sftp'
    assert "OpenSSH 9 and later run scp over SFTP, so plain `scp` fails too; `scp -O`" in sftp['detail']


@pytest.mark.root
def test_wrongpw_app_fails_at_root_login(webapp_az, sandbox_sshd):
    code, table, hops, record, result = checks(webapp_az, '-n', 'wrongpw-app')
    assert code == 1
    login = assert_stops_at(record, 'login')
    assert login['detail'] == "The container refused root's password 'Docker!'"
    assert 'chpasswd' in login['fix']
    assert table[('sftp', 'wrongpw-app-i0')]['status'] == 'not checked'


@pytest.mark.root
def test_port22_app_fails_at_getstatus_and_names_port_22(webapp_az, sandbox_sshd):
    code, table, hops, record, result = checks(webapp_az, '-n', 'port22-app')
    assert code == 1
    status = assert_stops_at(record, 'status')
    assert status['detail'] == 'GetStatus: state STARTED, canReachPort false, port 2222'
    assert 'sshd answers on container port 22 (SSH-2.0-OpenSSH' in status['fix']
    assert 'Set `Port 2222` in its sshd_config' in status['fix']


def test_nossh_app_fails_at_getstatus(webapp_az, sandbox):
    code, table, hops, record, result = checks(webapp_az, '-n', 'nossh-app')
    assert code == 1
    status = assert_stops_at(record, 'status')
    assert "Nothing answers on container port 2222 of app 'nossh-app'" in status['fix']
    assert 'a custom container needs sshd on port 2222' in status['fix']


def test_stopped_and_windows_apps_fail_at_the_app_hop(webapp_az, sandbox):
    code, _, _, record, _ = checks(webapp_az, '-n', 'stopped-app')
    assert code == 1 and record['checks'][0]['status'] == 'ok'
    app = assert_stops_at(record, 'app')
    assert "App 'stopped-app' is stopped" in app['detail'] and 'az webapp start -g sandbox-rg -n stopped-app' \
        in app['detail']
    code, _, _, record, _ = checks(webapp_az, '-n', 'windows-app')
    assert code == 1 and 'runs on a Windows App Service plan' in assert_stops_at(record, 'app')['detail']
    code, _, _, record, _ = checks(webapp_az, '-n', 'no-such-app')
    assert code == 1 and "App 'no-such-app' was not found" in assert_stops_at(record, 'app')['detail']


def test_forbidden_app_and_signed_out_fail_at_arm(webapp_az, signed_out_az, sandbox):
    code, _, hops, record, _ = checks(webapp_az, '-n', 'forbidden-app')
    assert code == 1 and hops == SSH_HOPS      # no instance to check the exec channel of
    arm = assert_stops_at(record, 'arm')
    assert 'You have no permission to read' in arm['detail'] and 'AuthorizationFailed' in arm['detail']
    out = signed_out_az.run('webapp', 'remote-connection', 'doctor', '-g', 'sandbox-rg', '-n', 'linux-app')
    assert out.returncode != 0
    assert 'az login' in out.stdout + out.stderr


def test_certificate_problems_fail_at_the_scm_hop(webapp_az, sandbox):
    code, _, _, record, _ = checks(webapp_az, '-n', 'badcert-app')
    assert code == 1
    scm = assert_stops_at(record, 'scm')
    assert 'Certificate check failed' in scm['detail'] and 'REQUESTS_CA_BUNDLE' in scm['detail']
    code, _, _, record, _ = checks(webapp_az, '-n', 'wronghost-app')
    assert code == 1 and 'DNS entry or a proxy' in assert_stops_at(record, 'scm')['detail']


@pytest.mark.root
def test_bearer_app_uses_the_entra_token(webapp_az, sandbox_sshd):
    code, table, _, record, result = checks(webapp_az, '-n', 'bearer-app')
    assert code == 0, statuses(record)
    assert table[('credentials', None)]['detail'] == ('Bearer auth with the Microsoft Entra token of your az '
                                                      'sign-in accepted (Basic auth is disabled for SCM)')
    assert sandbox_sshd.bearer_token not in result.stdout + result.stderr


@pytest.mark.root
def test_scaled_app_every_instance_on_its_own(webapp_az, sandbox_sshd):
    code, table, _, record, _ = checks(webapp_az, '-n', 'scaled-app')
    assert code == 0, statuses(record)
    for instance in ('scaled-app-i0', 'scaled-app-i1'):
        assert all(table[(hop, instance)]['status'] == 'ok' for hop in HOPS[4:])
    code, _, _, record, _ = checks(webapp_az, '-n', 'scaled-app', '--instance', 'scaled-app-i1')
    assert code == 0 and {c['instance'] for c in record['checks'][4:]} == {'scaled-app-i1'}
    code, _, _, record, _ = checks(webapp_az, '-n', 'scaled-app', '--instance', 'nope')
    assert code == 1 and "Instance 'nope' is not an instance" in assert_stops_at(record, 'app')['detail']


@pytest.mark.root
def test_one_instance_failing_among_several(webapp_az, sandbox_sshd):
    with sandbox_sshd.sshd_down('scaled-app', instance='scaled-app-i1'):
        code, table, _, record, _ = checks(webapp_az, '-n', 'scaled-app')
    assert code == 1
    assert all(table[(hop, 'scaled-app-i0')]['status'] == 'ok' for hop in HOPS[4:]), statuses(record)
    assert table[('status', 'scaled-app-i1')]['status'] == 'fail'
    assert "(instance 'scaled-app-i1')" in table[('status', 'scaled-app-i1')]['fix']
    assert all(table[(hop, 'scaled-app-i1')]['status'] == 'not checked' for hop in SSH_HOPS[5:])
    assert table[('exec', 'scaled-app-i1')]['status'] == 'ok'      # the way in without sshd still works


@pytest.mark.root
def test_debug_app_checks_ssh_and_says_why(webapp_az, sandbox_sshd):
    code, table, _, record, _ = checks(webapp_az, '-n', 'debug-app')
    assert code == 0, statuses(record)
    assert 'remote debugging is on' in table[('app', None)]['detail']
    assert table[('status', 'debug-app-i0')]['detail'] == ('state STARTED, canReachPort true, port 9229 (the default '
                                                           'tunnel port; SSH on 2222 is what the next hops check)')
    assert table[('banner', 'debug-app-i0')]['detail'].startswith('SSH-2.0-OpenSSH')


@pytest.mark.root
def test_slot_and_websocket_refused(webapp_az, sandbox_sshd):
    code, _, _, record, _ = checks(webapp_az, '-n', 'slot-app', '--slot', 'staging')
    assert code == 0, statuses(record)
    sandbox_sshd.set_fault('linux-app', {'refuse': 401})
    try:
        code, _, _, record, _ = checks(webapp_az, '-n', 'linux-app')
    finally:
        sandbox_sshd.set_fault('linux-app', None)
    assert code == 1
    websocket = assert_stops_at(record, 'websocket')
    assert 'rejected Basic auth' in websocket['detail']


def test_starting_app_fails_at_getstatus_until_it_is_up(webapp_az, sandbox):
    sandbox.hold_starting('starting-app', 60)
    try:
        code, _, _, record, _ = checks(webapp_az, '-n', 'starting-app')
    finally:
        sandbox.hold_starting('starting-app', 0)
    assert code == 1
    status = assert_stops_at(record, 'status')
    assert status['detail'] == "App 'starting-app' is STARTING (GetStatus)"


@pytest.mark.root
def test_warnings_after_start_use_the_doctors_words(webapp_az, sandbox_sshd, ssh_client_env):
    import signal
    from tests.fixtures_command import ssh
    sandbox_sshd.set_fault('linux-app', {'refuse': 401})
    try:
        _, _, _, record, _ = checks(webapp_az, '-n', 'linux-app')
    finally:
        sandbox_sshd.set_fault('linux-app', None)
    refused = assert_stops_at(record, 'websocket')['detail']
    with webapp_az.tunnel('-g', 'sandbox-rg', '-n', 'linux-app') as run:
        sandbox_sshd.set_fault('linux-app', {'refuse': 401})
        try:
            assert ssh(run.port, 'true', env=ssh_client_env).returncode != 0
        finally:
            sandbox_sshd.set_fault('linux-app', None)
        with sandbox_sshd.sshd_down('linux-app'):
            assert ssh(run.port, 'true', env=ssh_client_env).returncode != 0
        run.signal(signal.SIGINT)
        run.wait()
    warnings = [line for line in run.stderr.splitlines() if 'A new connection failed' in line]
    assert len(warnings) == 2, run.stderr
    assert "at the hop 'SCM site accepts the credentials'. " + refused in warnings[0]
    assert "at the hop 'SSH banner through the tunnel'. Container port 2222 of app 'linux-app'" in warnings[1]
    for warning in warnings:
        assert warning.endswith('(`az webapp remote-connection doctor -g sandbox-rg -n linux-app` checks every hop.)')


@pytest.mark.root
@pytest.mark.parametrize('app', ['linux-app', 'bearer-app'])
def test_no_secret_under_debug(webapp_az, sandbox_sshd, app):
    result = doctor(webapp_az, '-n', app, '--debug', '--verbose')
    assert result.returncode == 0, result.stderr[-3000:]
    for secret in secrets_of(sandbox_sshd, app):
        assert secret not in result.stdout + result.stderr


@pytest.mark.root
def test_query_on_the_json_record_and_the_exit_status(webapp_az, sandbox_sshd):
    result = webapp_az.run('webapp', 'remote-connection', 'doctor', '-g', 'sandbox-rg', '-n', 'seed-app', '-o', 'tsv',
                           '--query', "checks[?status=='warning'].hop", timeout=180)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['sftp']
    result = webapp_az.run('webapp', 'remote-connection', 'doctor', '-g', 'sandbox-rg', '-n', 'wrongpw-app', '-o',
                           'tsv', '--query', "checks[?status=='fail'].hop", timeout=180)
    assert result.returncode == 1, result.stderr
    assert result.stdout.split() == ['login']


@pytest.mark.root
def test_modern_app_works_here_but_not_in_the_portal(webapp_az, sandbox_sshd):
    code, table, _, record, _ = checks(webapp_az, '-n', 'modern-app')
    assert code == 0, statuses(record)  # a warning is not a failure
    algorithms = table[('algorithms', 'modern-app-i0')]
    assert algorithms['status'] == 'warning'
    assert "OpenSSH here works with its defaults; the portal's browser SSH does not" in algorithms['detail']
    assert 'add aes128-ctr or aes128-cbc to Ciphers and hmac-sha1 to MACs' in algorithms['fix']
    assert table[('sftp', 'modern-app-i0')]['status'] == 'ok'
    readable = doctor(webapp_az, '-n', 'modern-app')
    assert readable.returncode == 0 and "WARN  Container's SSH algorithms" in readable.stdout


def test_ids_of_a_slot(webapp_az, sandbox):
    result = webapp_az.run('webapp', 'remote-connection', 'doctor', '--ids', sandbox.site_id('slot-app', 'staging'),
                           '-o', 'json', timeout=180)
    record = json.loads(result.stdout)
    assert record['app'] == 'slot-app' and record['slot'] == 'staging'
    assert sandbox.app('slot-app', 'staging').scm_host in record['checks'][2]['detail'], result.stderr


def test_ids_of_a_production_app(webapp_az, sandbox):
    result = webapp_az.run('webapp', 'remote-connection', 'doctor', '--ids', sandbox.site_id('linux-app'),
                           '-o', 'json', timeout=180)
    record = json.loads(result.stdout)
    assert record['app'] == 'linux-app' and not record['slot'], result.stderr
