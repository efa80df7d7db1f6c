"""Real Azure's walls (issue 23): SSH turned off, an Azure Policy that keeps it off, SCM access
restrictions, a private endpoint, no right to publish with Basic auth disabled, and sidecars. Each
wall is a sandbox app that answers as Azure does (docs/PROTOCOL.md section 9); every command run
against it with the real az says which wall it is and what to do, in one line, and the doctor
names it with the fix.

az takes seconds to start, so the runs go concurrently once per module (`outcomes`), and each test
asserts on its own run.
"""
import concurrent.futures
import contextlib
import json
import re
import socket
import subprocess
import threading

import pytest

from tests.fixtures_command import AZ, ssh, ssh_env
from tests.test_command_browse import NO_BROWSER

SSH_ON = r'az webapp update -g sandbox-rg -n {app} --set sshEnabled=true'
SSH_OFF = [r'SSH is turned off for app', r'sshEnabled\) is false',
           r'Meanwhile `az webapp remote-connection exec -g sandbox-rg -n \S+` still opens a shell in the container',
           r'the exec channel needs no SSH']
POLICY = [r'Azure Policy assignment "Deny SSH on App Service" keeps it off',
          r'"App Service apps should disable SSH" has the effect Deny', r'RequestDisallowedByPolicy',
          r'Resource Policy Contributor', r'az policy exemption create --name allow-ssh-sshpolicy-app '
          r'--policy-assignment /subscriptions/\S+/sites/sshpolicy-app/providers/Microsoft.Authorization/'
          r'policyAssignments/deny-ssh-on-app-service --scope /subscriptions/\S+/sites/sshpolicy-app']
RESTRICTED = [r'HTTP 403 Ip Forbidden', r'its access restrictions allow only office-0 \(203\.0\.113\.0/24\)',
              r'az webapp config access-restriction add -g sandbox-rg -n restricted-app --rule-name allow-me '
              r'--action Allow --ip-address <your public IP address>/32 --priority 300 --scm-site true']
PRIVATE = [r'reachable only through its private endpoint private-app-pe \(10\.20\.0\.5\)',
           r'public network access to the app is disabled', r'privatelink\.azurewebsites\.net', r'peered',
           r'--set publicNetworkAccess=Enabled', r'--scm-site true']
NO_RIGHTS = [r'HTTP 403', r'do not include Microsoft\.Web/sites/publish/Action', r'they allow: \*/read',
             r'Website Contributor', r'az role assignment create --assignee \S+ --role "Website Contributor" '
             r'--scope /subscriptions/\S+/sites/noentra-app']

# case -> (command and its arguments after -g, the exit status, patterns of the one ERROR or WARNING line)
CASES = {
    'sshoff-create': (['create', '-n', 'sshoff-app'], 1, [*SSH_OFF, SSH_ON.format(app='sshoff-app')]),
    'sshoff-ssh': (['ssh', '-n', 'sshoff-app', '--', 'true'], 1, [*SSH_OFF, SSH_ON.format(app='sshoff-app')]),
    'sshoff-ssh-config': (['ssh-config', '-n', 'sshoff-app'], 1, [*SSH_OFF, SSH_ON.format(app='sshoff-app')]),
    'sshoff-browse': (['browse', '-n', 'sshoff-app'], 1, [*SSH_OFF, r"the portal's browser SSH"]),
    'sshpolicy-create': (['create', '-n', 'sshpolicy-app'], 1, [*SSH_OFF, *POLICY]),
    'sshpolicy-ssh': (['ssh', '-n', 'sshpolicy-app', '--', 'true'], 1, [*SSH_OFF, *POLICY]),
    'sshpolicy-ssh-config': (['ssh-config', '-n', 'sshpolicy-app'], 1, POLICY),
    'sshpolicy-browse': (['browse', '-n', 'sshpolicy-app'], 1, POLICY),
    'restricted-create': (['create', '-n', 'restricted-app'], 1, RESTRICTED),
    'restricted-ssh': (['ssh', '-n', 'restricted-app', '--', 'true'], 1, RESTRICTED),
    'restricted-stdio': (['create', '-n', 'restricted-app', '--stdio'], 1, RESTRICTED),
    'restricted-ssh-config': (['ssh-config', '-n', 'restricted-app'], 0,
                              [r'^WARNING: The SCM site of app .restricted-app. has access restrictions: it allows '
                               r'only office-0 \(203\.0\.113\.0/24\)', r'HTTP 403',
                               r'az webapp remote-connection doctor -g sandbox-rg -n restricted-app']),
    'restricted-browse': (['browse', '-n', 'restricted-app'], 0,
                          [r'^WARNING: The SCM site of app .restricted-app. has access restrictions']),
    'private-create': (['create', '-n', 'private-app'], 1,
                       [*PRIVATE, r'private-app\.scm\.privatelink\.sandbox\.invalid does not resolve from this '
                                  r'machine']),
    'private-ssh': (['ssh', '-n', 'private-app', '--', 'true'], 1, [*PRIVATE, r'does not resolve']),
    'private-ssh-config': (['ssh-config', '-n', 'private-app'], 0,
                           [r'^WARNING: Public network access to app .private-app. is disabled',
                            r'private endpoint', r'peered']),
    'private-browse': (['browse', '-n', 'private-app'], 0, [r'^WARNING: Public network access']),
    'noentra-create': (['create', '-n', 'noentra-app'], 1, NO_RIGHTS),
    'noentra-ssh': (['ssh', '-n', 'noentra-app', '--', 'true'], 1, NO_RIGHTS),
    'noentra-stdio': (['create', '-n', 'noentra-app', '--stdio'], 1, NO_RIGHTS),
    'noentra-ssh-config': (['ssh-config', '-n', 'noentra-app'], 0,
                           [r'^WARNING: Your roles on app .noentra-app. do not include Microsoft\.Web/sites/publish/'
                            r'Action', r'Website Contributor']),
    'noentra-browse': (['browse', '-n', 'noentra-app'], 0,
                       [r'^WARNING: Your roles on app .noentra-app. do not include', r"the browser's"]),
    # the exec channel: the same walls but SSH turned off, which it does not need
    'restricted-exec': (['exec', '-n', 'restricted-app', '--', 'true'], 1, RESTRICTED),
    'restricted-cp': (['cp', '-n', 'restricted-app', ':/etc/hostname', '{tmp}/restricted'], 1, RESTRICTED),
    'private-exec': (['exec', '-n', 'private-app', '--', 'true'], 1, [*PRIVATE, r'does not resolve']),
    'private-cp': (['cp', '-n', 'private-app', ':/etc/hostname', '{tmp}/private'], 1, [*PRIVATE, r'does not resolve']),
    'noentra-exec': (['exec', '-n', 'noentra-app', '--', 'true'], 1, NO_RIGHTS),
    'noentra-cp': (['cp', '-n', 'noentra-app', ':/etc/hostname', '{tmp}/noentra'], 1, NO_RIGHTS),
    'sidecar-unknown': (['exec', '-n', 'sidecar-app', '--container', 'nope', '--', 'true'], 1,
                        [r"App 'sidecar-app' has no container 'nope': its containers are main \(main\), otel, cache"]),
    'sidecar-failed': (['exec', '-n', 'sidecar-app', '--container', 'cache', '--', 'true'], 1,
                       [r"refused the exec channel into the container 'cache' \(HTTP 409\)",
                        r"It said: The container 'cache' of instance sidecar-app-i0 is not running \(its state: "
                        r'Failed\)', r'az webapp remote-connection doctor -g sandbox-rg -n sidecar-app',
                        r'leave out --container']),
    'sidecar-none': (['exec', '-n', 'linux-app', '--container', 'otel', '--', 'true'], 1,
                     [r"App 'linux-app' has no site containers \(sidecars\), so there is no container 'otel'"]),
    'sidecar-kudu': (['exec', '-n', 'sidecar-app', '--target', 'kudu', '--container', 'otel'], 1,
                     [r"the SCM site's own \(--target kudu\) has none"]),
}
# app -> (the hop that fails, patterns of its detail and fix)
DOCTOR = {
    'sshoff-app': ('ssh', [*SSH_OFF, SSH_ON.format(app='sshoff-app')]),
    'sshpolicy-app': ('ssh', POLICY),
    'restricted-app': ('scm', RESTRICTED),
    'private-app': ('scm', [*PRIVATE, r'does not resolve from this machine']),
    'noentra-app': ('credentials', NO_RIGHTS),
}


@pytest.fixture(scope='module')
def outcomes(webapp_az, sandbox, tmp_path_factory):
    env = dict(webapp_az.env)
    for key in NO_BROWSER:
        env.pop(key, None)
    runner = type(webapp_az)(env, webapp_az.cwd)
    tmp = tmp_path_factory.mktemp('walls')
    jobs = {case: ['webapp', 'remote-connection', argv[0], '-g', sandbox.resource_group,
                   *[a.format(tmp=tmp) for a in argv[1:]]]
            for case, (argv, _, _) in CASES.items()}
    jobs.update({f'doctor-{app}': ['webapp', 'remote-connection', 'doctor', '-g', sandbox.resource_group,
                                   '-n', app, '-o', 'json'] for app in (*DOCTOR, 'sidecar-app')})
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = {case: pool.submit(runner.run, *argv, timeout=180) for case, argv in jobs.items()}
        return {case: future.result() for case, future in futures.items()}


@pytest.mark.parametrize('case', sorted(CASES))
def test_every_command_names_the_wall_and_the_way_out(outcomes, case):
    proc, (argv, code, patterns) = outcomes[case], CASES[case]
    assert proc.returncode == code, proc.stderr
    assert 'Traceback' not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    if argv[0] == 'browse' and not code:  # then the URL, on standard output, as without a wall
        assert lines[1:] == ['WARNING: No browser can be opened from here: open this URL in a browser where you '
                             'can sign in to Azure.'] and '/webssh/host' in proc.stdout, proc.stderr
        lines = lines[:1]
    said = [line for line in lines if line.startswith(('ERROR:', 'WARNING:'))]
    assert len(said) == 1 and lines == said, proc.stderr
    if code:
        assert said[0].startswith('ERROR:') and proc.stdout == ''
    for pattern in patterns:
        assert re.search(pattern, said[0]), f'{pattern!r} not in {said[0]!r}'
    # never the bare refusal the engines report
    assert not re.search(r'refused the credentials|Cannot reach the SCM site|cannot resolve the host name '
                         r'private-app', said[0]), said[0]


@pytest.mark.parametrize('app', sorted(DOCTOR))
def test_the_doctor_names_the_wall_with_its_fix(outcomes, app):
    proc = outcomes[f'doctor-{app}']
    hop, patterns = DOCTOR[app]
    assert proc.returncode == 1, proc.stderr
    record = json.loads(proc.stdout)
    assert record['verdict'] == 'fail'
    failed = next(c for c in record['checks'] if c['status'] == 'fail')
    assert failed['hop'] == hop, [(c['hop'], c['status']) for c in record['checks']]
    shown = f"{failed['detail']} {failed['fix'] or ''}"
    for pattern in patterns:
        assert re.search(pattern, shown), f'{pattern!r} not in {shown!r}'
    after = record['checks'][record['checks'].index(failed) + 1:]
    exec_hop = [c for c in after if c['hop'] == 'exec']
    after = [c for c in after if c['hop'] != 'exec']
    if hop == 'ssh':  # the rest of the way is still checked, but for what needs SSH
        checked = [(c['hop'], c['status']) for c in after[:3]]
        assert checked == [('scm', 'ok'), ('credentials', 'ok'), ('containers', 'ok')], after
        after = after[3:]
        assert [c['status'] for c in exec_hop] == ['ok'], exec_hop    # the way in without SSH
    else:
        assert exec_hop == []       # the app-wide hops stopped: no instance to check
    assert after and all(c['status'] == 'not checked' for c in after)


@pytest.mark.root
def test_the_doctor_lists_the_sidecars_and_warns_of_one_that_does_not_run(outcomes, sandbox_sshd):
    proc = outcomes['doctor-sidecar-app']
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads(proc.stdout)
    assert record['verdict'] == 'warning', proc.stdout
    check = next(c for c in record['checks'] if c['hop'] == 'containers')
    assert check['status'] == 'warning'
    assert check['detail'] == ('main (main, sandbox/app:1.0): Running; otel (sidecar, '
                               'otel/opentelemetry-collector:0.98.0): Running; cache (sidecar, redis:7.2): Failed - '
                               'The container exited with code 1; restarting')
    assert check['fix'].startswith('cache is not running. See why with `az webapp sitecontainers log -g sandbox-rg '
                                   '-n sidecar-app --container-name cache`')
    others = [(c['hop'], c['status']) for c in record['checks'] if c['hop'] != 'containers']
    assert [hop for hop, _ in others] == ['arm', 'app', 'ssh', 'scm', 'credentials', 'status', 'websocket', 'banner',
                                          'algorithms', 'login', 'sftp', 'exec']
    assert {status for _, status in others} == {'ok'}, others


# ---------------------------------------------------------------------------------------------
# The private endpoint's other faces, in namespaces the tests make: the SCM host resolving to the
# private endpoint's address from a network without a route to it, and to the public front end.

HOSTS_RUN = 'mount --bind "$0" /etc/hosts && exec "$@"'   # a private /etc/hosts for one az run


def _hosts_file(tmp_path, sandbox, address):
    name = sandbox.app('private-app').scm_host.rsplit(':', 1)[0]
    path = tmp_path / f'hosts-{address}'
    path.write_text(f'127.0.0.1 localhost\n{address} {name}\n')
    return str(path)


@pytest.fixture
def isolated_network(sandbox, tmp_path):
    """A network namespace with only its loopback, where 10.20.0.5 has no route (a connect fails at
    once, nothing leaves the machine), and the sandbox's ARM relayed to the same port on that
    loopback: sockets made by a thread inside the namespace stay in it."""
    from tests.fixtures_hardening import NetNs, netns_unavailable_reason
    reason = netns_unavailable_reason()
    if reason:
        pytest.skip(reason)
    ns = NetNs(f'walls-{tmp_path.name[-12:]}')
    relay = None
    try:
        subprocess.run(ns.argv('ip', 'link', 'set', 'lo', 'up'), check=True, capture_output=True)
        listener = ns.call(socket.create_server, ('127.0.0.1', sandbox.arm.port))
        relay = Relay(listener, ('127.0.0.1', sandbox.arm.port))
        yield ns
    finally:
        if relay:
            relay.close()
        ns.delete()


class Relay:
    """Accepts on a listener (of any namespace) and relays each connection to an address of this
    thread's namespace."""

    def __init__(self, listener, upstream):
        self.listener, self.upstream = listener, upstream
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(self.upstream)
            for src, dst in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self):
        self.listener.close()


def _az(webapp_az, prefix, *args):
    return subprocess.run([*prefix, AZ, 'webapp', 'remote-connection', *args, '-g', 'sandbox-rg', '-n', 'private-app'],
                          env=webapp_az.env, cwd=webapp_az.cwd, capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)


@pytest.mark.root
def test_private_endpoint_address_unreachable_from_here(webapp_az, sandbox, isolated_network, tmp_path):
    hosts = _hosts_file(tmp_path, sandbox, '10.20.0.5')
    proc = _az(webapp_az, isolated_network.argv('sh', '-c', HOSTS_RUN, hosts), 'create')
    assert proc.returncode == 1 and proc.stdout == '', proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('ERROR: '), proc.stderr
    for pattern in [*PRIVATE, r'private-app\.scm\.privatelink\.sandbox\.invalid resolves here to 10\.20\.0\.5, but '
                              r'this machine cannot reach it \(cannot connect to \S+ port \d+ \(network unreachable, '
                              r'ENETUNREACH\)\)']:
        assert re.search(pattern, lines[0]), f'{pattern!r} not in {lines[0]!r}'


@pytest.mark.root
@pytest.mark.parametrize('command', ['create', 'doctor'])
def test_private_endpoint_refused_by_the_public_front_end(webapp_az, sandbox, tmp_path, command):
    hosts = _hosts_file(tmp_path, sandbox, '127.0.0.1')
    proc = _az(webapp_az, ['unshare', '-m', 'sh', '-c', HOSTS_RUN, hosts], command,
               *(['-o', 'json'] if command == 'doctor' else []))
    assert proc.returncode == 1, proc.stderr
    if command == 'doctor':
        failed = next(c for c in json.loads(proc.stdout)['checks'] if c['status'] == 'fail')
        assert failed['hop'] == 'scm'
        said = failed['detail'] + ' ' + (failed['fix'] or '')
    else:
        said = proc.stderr.strip()
        assert said.startswith('ERROR: ') and len(said.splitlines()) == 1, proc.stderr
    for pattern in [*PRIVATE, r'private-app\.scm\.privatelink\.sandbox\.invalid answered from the public front end '
                              r'with HTTP 403 \(Ip Forbidden\)']:
        assert re.search(pattern, said), f'{pattern!r} not in {said!r}'


@pytest.mark.root
def test_the_fix_turns_ssh_on_and_the_policy_refuses_it(webapp_az, sandbox_sshd, tmp_path):
    """The command the SSH-off error gives, run as it is: SSH works afterwards; where the policy
    denies it, ARM refuses it as the error said it would."""
    turned = webapp_az.run(*SSH_ON.format(app='sshoff-app').split()[1:], '--query', 'sshEnabled')
    try:
        assert turned.returncode == 0 and turned.stdout.strip() == 'true', turned.stderr
        with webapp_az.tunnel('-g', 'sandbox-rg', '-n', 'sshoff-app') as run:
            out = ssh(run.port, 'hostname', env=ssh_env(str(tmp_path)))
        assert out.returncode == 0 and out.stdout.strip() == 'sshoff-app-i0', out.stderr
    finally:
        sandbox_sshd.set_ssh('sshoff-app', False)
    refused = webapp_az.run(*SSH_ON.format(app='sshpolicy-app').split()[1:])
    assert refused.returncode != 0 and 'RequestDisallowedByPolicy' in refused.stderr
    assert 'Deny SSH on App Service' in refused.stderr


@pytest.mark.root
def test_exec_gets_in_where_ssh_is_off_and_into_a_sidecar(webapp_az, sandbox_sshd, tmp_path):
    for args, hostname in ((['-n', 'sshoff-app'], 'sshoff-app-i0'), (['-n', 'sshpolicy-app'], 'sshpolicy-app-i0'),
                           (['-n', 'sidecar-app', '--container', 'otel'], 'sidecar-app-i0-otel'),
                           (['-n', 'sidecar-app', '--container', 'main'], 'sidecar-app-i0')):
        run = webapp_az.run('webapp', 'remote-connection', 'exec', '-g', 'sandbox-rg', *args, '--', 'hostname')
        assert run.returncode == 0 and run.stdout.strip() == hostname, run.stderr
    local = tmp_path / 'into-the-sidecar'
    local.write_bytes(b'to otel only\n')
    copy = webapp_az.run('webapp', 'remote-connection', 'cp', '-g', 'sandbox-rg', '-n', 'sidecar-app', '--container',
                         'otel', str(local), ':/tmp/')
    assert copy.returncode == 0, copy.stderr
    for container, seen in (('otel', 'to otel only'), ('main', 'absent')):   # each container's own /tmp
        run = webapp_az.run('webapp', 'remote-connection', 'exec', '-g', 'sandbox-rg', '-n', 'sidecar-app',
                            '--container', container, '--', 'cat /tmp/into-the-sidecar 2>/dev/null || echo absent')
        assert run.returncode == 0 and run.stdout.strip() == seen, run.stderr


def test_ssh_turned_off_after_arm_was_read_shows_what_the_scm_site_said(webapp_az, sandbox):
    """ARM still says SSH is on (a change on its way): the SCM site's own word is shown."""
    sandbox.set_ssh('linux-app', False)
    sandbox.arm.model.sites[('linux-app', None)].ssh_enabled = True
    try:
        proc = webapp_az.run('webapp', 'remote-connection', 'create', '-g', 'sandbox-rg', '-n', 'linux-app')
    finally:
        sandbox.set_ssh('linux-app', True)
    assert proc.returncode == 1, proc.stderr
    # 'Nothing answers' or, where an earlier test pinned the app's host key, 'SSH does not answer ... before'
    assert 'answer on container port 2222' in proc.stderr.replace('answers on', 'answer on'), proc.stderr
    assert 'The SCM site said: "SSH is disabled for this app".' in proc.stderr
