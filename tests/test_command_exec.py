"""`az webapp remote-connection exec` end to end (issue 21): the real az with the extension wheel, the
sandbox's SCM sites and their exec channel (containers without sshd included), and a pseudo-terminal
for the interactive shell. Run again with the portable engine by `make test-portable`.

A command returns its standard output, standard error and exit status through the marker protocol;
several instances give prefixed lines or records and the worst status; an instance that cannot be
reached is a record; every refusal is one clear line; Ctrl+C and SIGTERM end the remote side; the
terminal is restored."""
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import pexpect
import pytest

from tests.fixtures_command import AZ
from tests.test_command_tunnel import secrets_of

pytestmark = pytest.mark.root

MARKER_LOOKALIKE = 'AZX' + '0' * 24 + 'E0'


@pytest.fixture
def exec_sandbox(sandbox):
    if sandbox.containers_unavailable_reason:
        pytest.skip(f'no containers for the exec channel: {sandbox.containers_unavailable_reason}')
    return sandbox


def az_exec(webapp_az, *args, remote=(), timeout=120):
    return webapp_az.run('webapp', 'remote-connection', 'exec', '-g', 'sandbox-rg', *args,
                         *(('--', *remote) if remote else ()), timeout=timeout)


def run_az(webapp_az, *args, stdin=subprocess.DEVNULL, input_bytes=None, timeout=120):
    """az with a standard input of our choice and bytes out (AzRunner.run gives text, no stdin)."""
    return subprocess.run([AZ, *args], env=webapp_az.env, cwd=webapp_az.cwd, stdin=None if input_bytes else stdin,
                          input=input_bytes, capture_output=True, timeout=timeout, check=False)


@contextlib.contextmanager
def container_gone(sandbox, instance):
    """Within the block the container of one instance is not there for the exec channel (its map
    entry names no process), as when that instance is being recycled."""
    path = os.path.join(sandbox.workdir, 'containers.json')
    with open(path, encoding='utf-8') as handle:
        original = handle.read()
    known = json.loads(original)
    known['instances'][instance] = 2 ** 22 + 1       # above pid_max's default: no such process
    with open(path, 'w', encoding='utf-8') as handle:
        json.dump(known, handle)
    try:
        yield
    finally:
        with open(path, 'w', encoding='utf-8') as handle:
            handle.write(original)


def test_a_command_gives_its_output_error_and_exit_status(webapp_az, exec_sandbox):
    result = az_exec(webapp_az, '-n', 'exec-app', '--instance', 'exec-app-i1',
                     remote=[f'hostname; echo to-err >&2; printf "%s\\n" {MARKER_LOOKALIKE}; exit 7'])
    assert result.returncode == 7, result.stderr
    assert result.stdout == f'exec-app-i1\n{MARKER_LOOKALIKE}\n'     # a marker of another run is output
    assert result.stderr == 'to-err\n'
    for secret in secrets_of(exec_sandbox, 'exec-app'):
        assert secret not in result.stdout + result.stderr


def test_an_app_with_sshd_a_slot_the_kudu_target_and_bearer_auth(webapp_az, exec_sandbox):
    assert az_exec(webapp_az, '-n', 'linux-app', remote=['hostname']).stdout == 'linux-app-i0\n'
    assert az_exec(webapp_az, '-n', 'slot-app', '--slot', 'staging', remote=['hostname']).stdout == \
        'slot-app-staging-i0\n'
    kudu = az_exec(webapp_az, '-n', 'exec-app', '--target', 'kudu', remote=['hostname'])
    assert kudu.returncode == 0 and kudu.stdout == 'exec-app-kudu\n', kudu.stderr
    bearer = az_exec(webapp_az, '-n', 'bearer-app', '--shell', '/bin/bash', remote=['echo $BASH_VERSION'])
    assert bearer.returncode == 0 and bearer.stdout.strip(), bearer.stderr
    assert exec_sandbox.bearer_token not in bearer.stdout + bearer.stderr


def test_binary_output_and_piped_input_are_byte_exact(webapp_az, exec_sandbox):
    data = os.urandom(3 * 1024 * 1024) + b'\x03\x04\r\n\x00'
    result = run_az(webapp_az, 'webapp', 'remote-connection', 'exec', '-g', 'sandbox-rg', '-n', 'exec-app', '--',
                    'cat', input_bytes=data)
    assert result.returncode == 0, result.stderr
    assert result.stdout == data


def test_a_command_never_reads_the_terminal_or_waits_for_input_it_does_not_read(webapp_az, exec_sandbox):
    # standard input /dev/null: a command that reads gets end of file at once
    result = az_exec(webapp_az, '-n', 'exec-app', remote=['cat; echo read-$((2*3))'])
    assert (result.returncode, result.stdout) == (0, 'read-6\n'), result.stderr
    # an input pipe that never ends: a command that does not read it still returns
    proc = subprocess.Popen([AZ, 'webapp', 'remote-connection', 'exec', '-g', 'sandbox-rg', '-n', 'exec-app', '--',
                             'echo', 'quick'], env=webapp_az.env, cwd=webapp_az.cwd, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.wait(timeout=60)               # standard input still open
        out, err = proc.stdout.read(), proc.stderr.read()
    finally:
        proc.stdin.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out) == (0, b'quick\n'), err


def test_every_instance_prefixed_lines_and_the_worst_status(webapp_az, exec_sandbox):
    result = az_exec(webapp_az, '-n', 'exec-app', '--instance', 'all',
                     remote=['hostname; echo e >&2; [ "$(hostname)" = exec-app-i0 ] || exit 4'])
    assert result.returncode == 4, result.stderr
    assert sorted(result.stdout.splitlines()) == ['exec-app-i0: exec-app-i0', 'exec-app-i1: exec-app-i1']
    assert sorted(result.stderr.splitlines()) == ['exec-app-i0: e', 'exec-app-i1: e']


def test_records_and_an_instance_that_cannot_be_reached(webapp_az, exec_sandbox):
    with container_gone(exec_sandbox, 'exec-app-i1'):
        result = az_exec(webapp_az, '-n', 'exec-app', '--instance', 'exec-app-i0,exec-app-i1', '-o', 'json',
                         remote=['hostname'])
    assert result.returncode == 255, result.stderr
    records = {r['instance']: r for r in json.loads(result.stdout)}
    assert set(records['exec-app-i0']) == {'instance', 'exitStatus', 'stdout', 'stderr', 'seconds', 'error'}
    assert (records['exec-app-i0']['exitStatus'], records['exec-app-i0']['stdout']) == (0, 'exec-app-i0\n')
    assert records['exec-app-i0']['error'] is None
    assert records['exec-app-i1']['exitStatus'] == 255
    assert 'Cannot reach the container of instance exec-app-i1' in records['exec-app-i1']['error']


def test_a_flood_of_100_mib_is_whole_and_memory_stays_bounded(webapp_az, exec_sandbox):
    # az as a grandchild: its own peak memory is the only child of the wrapper that measures it
    wrapper = ('import resource, subprocess, sys\n'
               'p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)\n'
               'n = 0\n'
               'for block in iter(lambda: p.stdout.read(1 << 20), b""):\n'
               '    n += block.count(b"x")\n'
               'print(p.wait(), n, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n')
    result = subprocess.run([sys.executable, '-c', wrapper, AZ, 'webapp', 'remote-connection', 'exec', '-g',
                             'sandbox-rg', '-n', 'exec-app', '--', "head -c 104857600 /dev/zero | tr '\\0' x"],
                            env=webapp_az.env, cwd=webapp_az.cwd, capture_output=True, text=True, timeout=300,
                            check=False)
    code, count, peak_kib = (int(word) for word in result.stdout.split())
    assert (code, count) == (0, 100 * 1024 * 1024), result.stderr
    assert peak_kib < 200 * 1024, f'az held {peak_kib} KiB for 100 MiB of output'


def test_refusals_are_one_clear_line(webapp_az, exec_sandbox):
    result = az_exec(webapp_az, '-n', 'noexec-app', remote=['true'])
    assert result.returncode == 1
    assert 'refused the exec channel (HTTP 403): The exec endpoint is disabled for this app' in result.stderr
    assert 'remote-connection ssh' in result.stderr and 'Traceback' not in result.stderr
    result = az_exec(webapp_az, '-n', 'windows-app', remote=['true'])
    assert result.returncode == 1 and 'runs on a Windows App Service plan' in result.stderr
    result = az_exec(webapp_az, '-n', 'stopped-app', remote=['true'])
    assert result.returncode == 1 and "App 'stopped-app' is stopped" in result.stderr
    result = az_exec(webapp_az, '-n', 'exec-app', '--instance', 'nope', remote=['true'])
    assert result.returncode == 1 and "Instance 'nope' is not an instance of app 'exec-app'" in result.stderr
    result = az_exec(webapp_az, '-n', 'exec-app', '--shell', 'bin/sh', remote=['true'])
    assert result.returncode == 1 and 'is not an absolute path' in result.stderr
    result = az_exec(webapp_az, '-n', 'exec-app', '--shell', '/no/such/shell', remote=['true'], timeout=90)
    assert result.returncode == 1 and 'Traceback' not in result.stderr, result.stderr
    result = az_exec(webapp_az, '-n', 'exec-app', '--instance', 'all')
    assert result.returncode == 1 and 'needs the command after `--`' in result.stderr


def test_a_refusal_of_the_sites_own_words(webapp_az, exec_sandbox):
    exec_sandbox.set_fault('exec-app', {'refuse_exec': 503, 'message': 'Exec is down for maintenance.'})
    try:
        result = az_exec(webapp_az, '-n', 'exec-app', remote=['true'])
    finally:
        exec_sandbox.set_fault('exec-app', None)
    assert result.returncode == 1
    assert 'refused the exec channel' in result.stderr and 'It said: Exec is down for maintenance.' in result.stderr


@pytest.mark.parametrize('sig, status, word', [(signal.SIGINT, 130, 'Ctrl+C'), (signal.SIGTERM, 143, 'SIGTERM')])
def test_ctrl_c_and_sigterm_end_the_remote_command(webapp_az, exec_sandbox, sig, status, word):
    tag = f'sleep {61 + status % 7}'
    proc = subprocess.Popen([AZ, 'webapp', 'remote-connection', 'exec', '-g', 'sandbox-rg', '-n', 'exec-app', '--',
                             f'echo started; {tag}; echo never'], env=webapp_az.env, cwd=webapp_az.cwd,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        assert proc.stdout.readline() == b'started\n'
        started = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == status and time.monotonic() - started < 8, err
    assert b'never' not in out and f'Stopped ({word})'.encode() in err
    left = az_exec(webapp_az, '-n', 'exec-app', remote=[f'ps -eo args | grep -c "^{tag}$"; ls -a /tmp'])
    count, *listing = left.stdout.split()
    assert count == '0', left.stdout                           # the remote command ended
    assert len([name for name in listing if name.startswith('tmp.')]) == 1     # only this run's own


def test_ctrl_c_ends_the_command_on_every_instance(webapp_az, exec_sandbox):
    proc = subprocess.Popen([AZ, 'webapp', 'remote-connection', 'exec', '-g', 'sandbox-rg', '-n', 'exec-app',
                             '--instance', 'all', '--', 'echo started; sleep 71; echo never'], env=webapp_az.env,
                            cwd=webapp_az.cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        started = sorted(proc.stdout.readline() for _ in range(2))
        assert started == [b'exec-app-i0: started\n', b'exec-app-i1: started\n']
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130 and b'never' not in out, err
    assert b'Stopped (Ctrl+C): the command was ended on every instance' in err
    left = az_exec(webapp_az, '-n', 'exec-app', '--instance', 'all', remote=['ps -eo args | grep -c "^sleep 71$"'])
    assert sorted(left.stdout.splitlines()) == ['exec-app-i0: 0', 'exec-app-i1: 0'], left.stdout


def _interactive(webapp_az, *args, dimensions=(30, 100)):
    """A shell that runs az under a terminal and records `stty -a` before and after."""
    script = ('stty -a > before.txt; ' + AZ + ' webapp remote-connection exec -g sandbox-rg -n exec-app '
              + ' '.join(args) + '; echo "az-exit=$?"; stty -a > after.txt')
    return pexpect.spawn('/bin/sh', ['-c', script], env=webapp_az.env, cwd=webapp_az.cwd, timeout=60,
                         encoding='utf-8', dimensions=dimensions)


def _terminal_restored(webapp_az):
    """`stty -a` after az as before it (but for the window's size, which the test changes)."""
    def settings(name):
        with open(os.path.join(webapp_az.cwd, name), encoding='utf-8') as handle:
            return re.sub(r'rows \d+; columns \d+;', '', handle.read())
    return settings('before.txt') == settings('after.txt')


def test_interactive_shell_resize_ctrl_c_and_exit_restore_the_terminal(webapp_az, exec_sandbox):
    child = _interactive(webapp_az, '--shell', '/bin/bash', '--instance', 'exec-app-i1')
    try:
        child.expect_exact('Connected to')
        child.sendline("PS1='P''S> '")
        child.expect_exact('PS> ')
        child.sendline('stty size; hostname')
        child.expect_exact('30 100')
        child.expect_exact('exec-app-i1')
        child.setwinsize(40, 120)            # SIGWINCH to az: the remote terminal follows
        deadline = time.monotonic() + 10
        while True:
            child.sendline('stty size')
            if child.expect_exact(['40 120', '30 100']) == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert child.after == '40 120'
        child.sendline('sleep 30; echo slept')
        time.sleep(1)
        started = time.monotonic()
        child.sendcontrol('c')               # to the remote sleep, not to az
        child.expect_exact('PS> ')
        assert time.monotonic() - started < 10
        child.sendline('echo alive-$((20+1))')
        child.expect_exact('alive-21')
        child.sendline('exit')
        child.expect_exact('az-exit=0')
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert 'slept' not in child.before
    assert _terminal_restored(webapp_az)


def test_interactive_shell_ended_by_sigterm_or_the_escape_restores_the_terminal(webapp_az, exec_sandbox):
    child = _interactive(webapp_az)
    try:
        child.expect_exact('Connected to')
        child.sendline('echo ready-$((1+1))')
        child.expect_exact('ready-2')
        child.sendline('')
        child.send('~.')                     # Enter, then ~.: leave from this side
        child.expect_exact('az-exit=0')
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert _terminal_restored(webapp_az)
    child = _interactive(webapp_az)
    try:
        child.expect_exact('Connected to')
        child.sendline('echo ready-$((2+2))')
        child.expect_exact('ready-4')
        az = subprocess.run(['pgrep', '-P', str(child.pid)], capture_output=True, text=True, check=True)
        os.kill(int(az.stdout.split()[0]), signal.SIGTERM)     # az, the child of the shell under the terminal
        child.expect_exact('az-exit=143')
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert _terminal_restored(webapp_az)


def test_an_interactive_shell_needs_a_terminal(webapp_az, exec_sandbox):
    result = az_exec(webapp_az, '-n', 'exec-app')
    assert result.returncode == 1
    assert 'An interactive shell needs a terminal' in result.stderr and 'after `--`' in result.stderr


def test_ssh_and_doctor_point_to_exec_where_sshd_does_not_answer(webapp_az, exec_sandbox):
    result = webapp_az.run('webapp', 'remote-connection', 'create', '-g', 'sandbox-rg', '-n', 'exec-app',
                           timeout=120)
    assert result.returncode != 0
    assert '`az webapp remote-connection exec -g sandbox-rg -n exec-app` opens a shell' in result.stderr
    doctor = webapp_az.run('webapp', 'remote-connection', 'doctor', '-g', 'sandbox-rg', '-n', 'exec-app', '-o',
                           'json', timeout=180)
    checks = {(c['hop'], c['instance']): c for c in json.loads(doctor.stdout)['checks']}
    assert checks[('status', 'exec-app-i0')]['status'] == 'fail'
    for instance in ('exec-app-i0', 'exec-app-i1'):   # the detail says why, should one ever warn
        assert checks[('exec', instance)]['status'] == 'ok', checks[('exec', instance)]
    doctor = webapp_az.run('webapp', 'remote-connection', 'doctor', '-g', 'sandbox-rg', '-n', 'noexec-app', '-o',
                           'json', timeout=180)
    exec_check = [c for c in json.loads(doctor.stdout)['checks'] if c['hop'] == 'exec'][0]
    assert exec_check['status'] == 'warning' and exec_check['detail'].startswith('refused:')
    assert 'The exec endpoint is disabled for this app' in exec_check['detail']
