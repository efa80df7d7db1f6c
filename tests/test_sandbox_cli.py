"""The sandbox as a tool: `python -m sandbox` fills its extension index when it starts (so the real
`az extension add --name webapp` works on the route its summary prints), and faults and states are
set from another shell with `python -m sandbox fault|state|basic ...`."""
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from sandbox import control

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AZ = os.path.join(REPO, '.venv', 'bin', 'az')


def test_parse_fault():
    assert control.parse_fault('refuse=401') == {'refuse': 401}
    assert control.parse_fault('drop_after_bytes=1000') == {'drop_after_bytes': 1000}
    assert control.parse_fault('none') is None
    with pytest.raises(ValueError):
        control.parse_fault('explode=1')


def test_parse_fault_refuse_exec():
    assert control.parse_fault('refuse_exec=503') == {'refuse_exec': 503}
    assert control.parse_fault('refuse_exec=429:Too many: slow down') == {
        'refuse_exec': 429, 'message': 'Too many: slow down'}
    with pytest.raises(ValueError):
        control.parse_fault('refuse_exec=x:y')


def test_a_command_without_a_running_sandbox_says_so(tmp_path):
    result = subprocess.run([sys.executable, '-m', 'sandbox', 'fault', 'linux-app', 'refuse=401', '--workdir',
                             str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f'no sandbox workdir at {tmp_path}' in result.stderr


@pytest.fixture(scope='module')
def running_sandbox(tmp_path_factory):
    """`python -m sandbox --workdir D --no-sshd --login` as a user starts it; the environment its
    summary's export lines give."""
    workdir = str(tmp_path_factory.mktemp('sandbox-cli'))
    proc = subprocess.Popen([sys.executable, '-m', 'sandbox', '--workdir', workdir, '--no-sshd', '--login'],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    lines = []
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError('the sandbox ended early:\n' + ''.join(lines) + proc.stderr.read())
            lines.append(line)
            if 'Ctrl+C stops everything' in line:
                break
        env = dict(os.environ)
        for line in lines:
            if line.strip().startswith('export '):
                key, _, value = line.strip()[len('export '):].partition('=')
                env[key] = shlex.split(value)[0]
        for key in ('HTTPS_PROXY', 'https_proxy', 'PYTHONPATH'):
            env.pop(key, None)
        env['AZURE_EXTENSION_DIR'] = str(tmp_path_factory.mktemp('cli-extensions'))
        yield workdir, env, ''.join(lines)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)


def az(env, *args, timeout=300):
    return subprocess.run([AZ, *args], env=env, cwd=env['AZURE_EXTENSION_DIR'], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


def test_extension_index_filled_and_faults_from_the_command_line(running_sandbox):
    workdir, env, summary = running_sandbox
    assert 'az extension add --name webapp' in summary
    assert f'python -m sandbox fault linux-app refuse=401 --workdir {workdir}' in summary
    index = json.load(open(os.path.join(workdir, 'extensions', 'index.json'), encoding='utf-8'))
    assert index['extensions']['webapp']
    added = az(env, 'extension', 'add', '--name', 'webapp', '--yes')
    assert added.returncode == 0, added.stderr
    assert az(env, 'extension', 'show', '--name', 'webapp', '--query', 'name', '-o', 'tsv').stdout.strip() == 'webapp'

    def sandbox(*args):
        return subprocess.run([sys.executable, '-m', 'sandbox', *args, '--workdir', workdir], cwd=REPO,
                              capture_output=True, text=True, timeout=60)

    def doctor(app):
        result = az(env, 'webapp', 'remote-connection', 'doctor', '-g', 'sandbox-rg', '-n', app, '-o', 'json')
        record = json.loads(result.stdout)
        return next(c for c in record['checks'] if c['status'] == 'fail')

    stopped = sandbox('state', 'linux-app', 'STOPPED')
    assert stopped.returncode == 0 and stopped.stdout.strip() == 'linux-app: SCM state STOPPED', stopped.stderr
    failed = doctor('linux-app')
    assert failed['hop'] == 'status' and "App 'linux-app' is stopped" in failed['detail']
    assert sandbox('state', 'linux-app', 'STARTED').returncode == 0
    basic = sandbox('basic', 'linux-app', 'off')
    assert basic.stdout.strip() == 'linux-app: Basic auth refused by SCM'
    failed = doctor('linux-app')
    assert failed['hop'] == 'credentials' and 'rejected Basic auth' in failed['detail']
    assert sandbox('basic', 'linux-app', 'on').returncode == 0
    assert doctor('linux-app')['hop'] == 'status'   # without sshd: nothing answers on 2222
    refused = sandbox('fault', 'no-such-app', 'refuse=401')
    assert refused.returncode == 1 and "no sandbox app 'no-such-app'" in refused.stderr
    assert sandbox('fault', 'linux-app', 'refuse=502').stdout.strip() == 'linux-app: fault {"refuse": 502}'
    assert sandbox('fault', 'linux-app', 'none').returncode == 0
    down = sandbox('sshd', 'scaled-app', 'down', '--instance', 'scaled-app-i1')
    assert down.stdout.strip() == 'scaled-app instance scaled-app-i1: container port 2222 does not answer', down.stderr
    assert sandbox('sshd', 'scaled-app', 'up', '--instance', 'scaled-app-i1').returncode == 0
    restarted = sandbox('restart', 'restart-app', '3')
    assert restarted.stdout.strip() == ('restart-app: restarting; its SCM site answers 503 for 1 s, its containers '
                                        'are back in 3 s'), restarted.stderr
