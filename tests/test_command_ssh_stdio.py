"""stdio mode without OpenSSH in the middle: what the sshd sends is all that reaches stdout, and each
way the relay can end (the WebSocket ends while stdin stays open; ssh's SIGHUP) ends the process
with status 0 and nothing on stderr."""
import os
import signal
import subprocess
import sys

import pytest

from tests.fixtures_command import AZ

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.root


def banner_of(proc):
    line = proc.stdout.readline()
    assert line.startswith(b'SSH-2.0-OpenSSH'), line + proc.stderr.read()
    return line


def test_websocket_end_closes_stdout_while_stdin_stays_open(sandbox_sshd):
    info = sandbox_sshd.app('linux-app')
    env = dict(os.environ, WEBAPP_SCM_USER=info.basic_user, WEBAPP_SCM_PASSWORD=info.basic_password,
               REQUESTS_CA_BUNDLE=sandbox_sshd.ca_file)
    proc = subprocess.Popen([sys.executable, '-m', 'azext_webapp.tunnel', info.scm_url, '--stdio'], cwd=ROOT,
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        banner_of(proc)
        proc.stdin.write(b'not an SSH client\r\n')  # sshd refuses and closes: the WebSocket ends
        proc.stdin.flush()
        rest = proc.stdout.read()  # EOF, although our end of stdin is still open
        assert proc.wait(timeout=15) == 0
        assert b'SSH-2.0' not in rest
        assert proc.stderr.read() == b''
    finally:
        proc.stdin.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_az_stdio_sighup_from_ssh_ends_quietly(webapp_az, sandbox_sshd):
    proc = subprocess.Popen([AZ, 'webapp', 'remote-connection', 'create', '-g', 'sandbox-rg', '-n', 'linux-app',
                             '--stdio'], env=webapp_az.env, cwd=webapp_az.cwd, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        banner_of(proc)
        proc.send_signal(signal.SIGHUP)  # what ssh sends its ProxyCommand when it exits
        assert proc.wait(timeout=15) == 0
        assert proc.stdout.read() == b''
        assert proc.stderr.read() == b''
    finally:
        proc.stdin.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
