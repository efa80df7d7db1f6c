"""`az webapp remote-connection create`: every refusal is one clear line and a non-zero exit.

Each case is a real az run against the sandbox. az takes seconds to start, so the cases run
concurrently once per module (`outcomes`) and each test asserts on its own case.
"""
import concurrent.futures
import dataclasses
import re
import socket

import pytest

# case -> (az runner fixture, command arguments after `create`, pattern that the one line must contain)
CASES = {
    'unknown-group': ('webapp_az', ['-g', 'no-such-rg', '-n', 'linux-app'],
                      [r"Resource group 'no-such-rg' was not found", r'az group list']),
    'unknown-app': ('webapp_az', ['-n', 'no-such-app'],
                    [r"App 'no-such-app' was not found in resource group", r'az webapp list']),
    'unknown-slot': ('webapp_az', ['-n', 'slot-app', '--slot', 'nope'],
                     [r"Slot 'nope' of app 'slot-app' was not found", r'slot list']),
    'forbidden': ('webapp_az', ['-n', 'forbidden-app'],
                  [r'no permission', r'HTTP 403', r'Website Contributor']),
    'not-signed-in': ('signed_out_az', ['-n', 'linux-app'], [r'az login']),
    'windows-app': ('webapp_az', ['-n', 'windows-app'], [r'Windows App Service plan', r'Linux']),
    'stopped-app': ('webapp_az', ['-n', 'stopped-app'], [r'is stopped', r'az webapp start']),
    'stopped-slot-getstatus': ('webapp_az', ['-n', 'slot-app', '--slot', 'staging'],
                               [r"Slot 'staging' of app 'slot-app' is stopped",
                                r'az webapp start -g \S+ -n slot-app --slot staging']),
    'ssh-not-enabled': ('webapp_az', ['-n', 'nossh-app'],
                        [r'Nothing answers on container port 2222', r'SSH is not set up in the container',
                         r'or its sshd has stopped', r'az webapp restart',
                         r'Without sshd, `az webapp remote-connection exec -g sandbox-rg -n nossh-app` opens a shell']),
    'unknown-instance': ('webapp_az', ['-n', 'scaled-app', '--instance', 'scaled-app-i9'],
                         [r"Instance 'scaled-app-i9' is not an instance of app 'scaled-app'",
                          r'scaled-app-i0, scaled-app-i1', r'list-instances']),
    'invalid-port': ('webapp_az', ['-n', 'linux-app', '--port', '70000'],
                     [r'--port 70000 is not a valid TCP port']),
    'invalid-bind': ('webapp_az', ['-n', 'linux-app', '--bind', 'not-an-address'],
                     [r'--bind not-an-address is not an IP address']),
    'invalid-timeout': ('webapp_az', ['-n', 'linux-app', '--timeout', '-5'],
                        [r'--timeout -5 is not a positive number']),
    'busy-port': ('webapp_az', ['-n', 'linux-app', '--port', '{busy_port}'],
                  [r'^ERROR: Port {busy_port} on 127\.0\.0\.1 is already in use\. Choose another local port with '
                   r'--port, or leave --port out to use a free one\.$']),
    'bind-not-local': ('webapp_az', ['-n', 'linux-app', '--bind', '192.0.2.1'],  # TEST-NET-1: nobody's
                       [r'Cannot listen on --bind 192\.0\.2\.1: it is not an address of this machine',
                        r'127\.0\.0\.1', r'^(?!.*--port).*$']),
    'ids-of-another-type': ('webapp_az', ['--ids', '/subscriptions/0/resourceGroups/sandbox-rg/providers/'
                                          'Microsoft.Sql/servers/linux-app'],
                            [r'is not the resource ID of a web app or slot', r'az webapp show']),
    'untrusted-certificate': ('webapp_az', ['-n', 'badcert-app'], [r'(?i)certificate', r'REQUESTS_CA_BUNDLE']),
    'certificate-wrong-host': ('webapp_az', ['-n', 'wronghost-app'], [r'(?i)certificate', r'(?i)host']),
    'unreachable-scm-host': ('webapp_az', ['-n', 'debug-app'],
                             [r'(?i)connect', r'127\.0\.0\.1:{dead_port}', r'network']),
    'scm-401-basic': ('webapp_az', ['-n', 'scaled-app'],
                      [r'Basic auth', r'HTTP 401', r'publishing credentials']),
    'scm-401-bearer': ('webapp_az', ['-n', 'bearer-app'],
                       [r'Bearer auth', r'HTTP 401', r'az login', r'properties.allow=true']),
}

# Faults set on SCM sites for the duration of the module's runs.
FAULTS = {'scaled-app': {'refuse': 401}, 'bearer-app': {'refuse': 401}}


@pytest.fixture(scope='module')
def outcomes(request, sandbox):
    busy = socket.socket()
    busy.bind(('127.0.0.1', 0))
    busy.listen(1)
    busy_port = busy.getsockname()[1]
    dead = socket.socket()  # bound, never listening: connections to it are refused
    dead.bind(('127.0.0.1', 0))
    dead_port = dead.getsockname()[1]
    # The sandbox's ARM model is in this process: point debug-app's SCM host name at the dead port.
    sites = sandbox.arm.model.sites
    original = sites[('debug-app', None)]
    sites[('debug-app', None)] = dataclasses.replace(original, scm_host=f'127.0.0.1:{dead_port}')
    runners = {name: request.getfixturevalue(name) for name in {runner for runner, _, _ in CASES.values()}}
    for app, fault in FAULTS.items():
        sandbox.set_fault(app, fault)
    # ARM says Running, the SCM site's GetStatus says STOPPED.
    sandbox.set_state('slot-app', 'STOPPED', slot='staging')
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
            futures = {}
            for case, (runner, args, _) in CASES.items():
                args = [a.format(busy_port=busy_port, dead_port=dead_port) for a in args]
                group = [] if '-g' in args else ['-g', sandbox.resource_group]
                argv = ['webapp', 'remote-connection', 'create', *group, *args]
                futures[case] = pool.submit(runners[runner].run, *argv, timeout=120)
            results = {case: future.result() for case, future in futures.items()}
    finally:
        for app in FAULTS:
            sandbox.set_fault(app, None)
        sandbox.set_state('slot-app', 'STARTED', slot='staging')
        sites[('debug-app', None)] = original
        busy.close()
        dead.close()
    return results, {'busy_port': busy_port, 'dead_port': dead_port}


@pytest.mark.parametrize('case', sorted(CASES))
def test_refusal_is_one_clear_line(outcomes, case):
    results, ports = outcomes
    proc = results[case]
    patterns = [p.format(**ports) for p in CASES[case][2]]
    assert proc.returncode != 0, proc.stderr
    assert proc.stdout == ''
    assert 'Traceback' not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith('ERROR:')]
    assert len(errors) == 1, proc.stderr
    # Nothing but the error line (a warning such as "Waiting..." would also be acceptable, but
    # none of these cases should wait).
    assert proc.stderr.strip().splitlines() == errors, proc.stderr
    for pattern in patterns:
        assert re.search(pattern, errors[0]), f'{pattern!r} not in {errors[0]!r}'


def test_help_shows_examples(webapp_az):
    proc = webapp_az.run('webapp', 'remote-connection', 'create', '--help', check=True)
    assert 'Examples' in proc.stdout
    for text in ('21382 &', '--slot staging', '--instance', '--timeout 600', '--target-port'):
        assert text in proc.stdout
