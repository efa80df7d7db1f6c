"""Fixtures for the command tests: the extension wheel, az config dirs with it installed, and
helpers that run the real az (and OpenSSH) against the sandbox.

az is always run with its working directory outside the repository: `az` runs `python -m
azure.cli`, which puts the working directory first on sys.path, and the source tree's
`azext_webapp` would then shadow the installed extension.
"""
import contextlib
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AZ = os.path.join(ROOT, '.venv', 'bin', 'az')
SSH_PASSWORD = 'Docker!'
READY_RE = re.compile(r'^Port (\d+) is open$')

sys.path.insert(0, os.path.join(ROOT, 'tools'))
import build_index  # noqa: E402  pylint: disable=wrong-import-position


class AzRunner:
    """The real az for one AZURE_CONFIG_DIR (extensions in a shared AZURE_EXTENSION_DIR). prefix: what
    runs az (and execs it, so that its pid is az's), e.g. a private mount namespace (hosts_namespace)."""

    def __init__(self, env, cwd, prefix=()):
        self.env = env
        self.cwd = cwd
        self.prefix = list(prefix)

    def run(self, *args, timeout=120, check=False):
        proc = subprocess.run([*self.prefix, AZ, *args], env=self.env, cwd=self.cwd, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f'az {" ".join(args)} failed ({proc.returncode}):\n{proc.stderr}')
        return proc

    def popen(self, *args):
        return subprocess.Popen([*self.prefix, AZ, *args], env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)

    @contextlib.contextmanager
    def tunnel(self, *args, ready_timeout=60):
        """Start `az webapp remote-connection create ARGS` and wait for "Port N is open"."""
        proc = self.popen('webapp', 'remote-connection', 'create', *args)
        run = TunnelRun(proc)
        try:
            run.wait_ready(ready_timeout)
            yield run
        finally:
            run.finish()


class TunnelRun:
    """A running `az webapp remote-connection create`: its port, stdout lines, exit and stderr."""

    def __init__(self, proc):
        self.proc = proc
        self.port = None
        self.stdout_lines = []
        self.stderr = ''
        self.returncode = None
        # Drain stderr all along: --debug writes more than a pipe holds before the tunnel is ready.
        self._stderr_chunks = []
        self._stderr_reader = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_reader.start()

    def _drain_stderr(self):
        for chunk in iter(lambda: self.proc.stderr.read1(65536), b''):
            self._stderr_chunks.append(chunk)

    def stderr_so_far(self):
        return b''.join(self._stderr_chunks).decode(errors='replace')

    def wait_ready(self, timeout):
        """Read stdout (raw, unbuffered) until the whole ready block has arrived."""
        fd = self.proc.stdout.fileno()
        buffer = b''
        deadline = time.monotonic() + timeout
        while not any(line.startswith('Ctrl + C') for line in self.stdout_lines):
            remaining = deadline - time.monotonic()
            chunk = os.read(fd, 65536) if remaining > 0 and _readable(fd, min(remaining, 0.5)) else None
            if chunk == b'' or remaining <= 0:
                self.finish()
                raise AssertionError(f'no ready block (exit {self.returncode}); stdout:\n'
                                     + '\n'.join(self.stdout_lines) + '\nstderr:\n' + self.stderr)
            if not chunk:
                continue
            buffer += chunk
            *lines, buffer = buffer.split(b'\n')
            for line in lines:
                text = line.decode()
                self.stdout_lines.append(text)
                match = READY_RE.match(text)
                if match:
                    self.port = int(match.group(1))

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout=20):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self._collect()
            raise AssertionError('az did not exit in time; stderr:\n' + self.stderr) from None
        self._collect()
        self.returncode = self.proc.returncode
        return self.returncode

    def _collect(self):
        self.stdout_lines += self.proc.stdout.read().decode().splitlines()
        self._stderr_reader.join(timeout=10)
        self.stderr = self.stderr_so_far()

    def finish(self):
        if self.returncode is not None:
            return
        if self.proc.poll() is None:
            self.signal(signal.SIGINT)
        self.wait()


UNSHARE = '/usr/bin/unshare'


def hosts_namespace(hosts_file):
    """A prefix (AzRunner's) that runs a program in a mount namespace of its own where hosts_file is
    /etc/hosts: names resolve there as that file says, and the machine's /etc/hosts stays as it is.
    unshare and sh exec in turn, so the program keeps their pid. Root only."""
    return [UNSHARE, '--mount', '--propagation', 'private', '--', '/bin/sh', '-c',
            'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts_file)]


CLOSED_BY = {signal.SIGTERM: 'Closed (SIGTERM).', signal.SIGINT: 'Closed (Ctrl+C).'}


def burst_of_closing_connections(port, count=40):
    conns = [socket.create_connection(('127.0.0.1', port), timeout=10) for _ in range(count)]
    time.sleep(0.2)       # let their WebSockets open, so that closing them makes events
    for conn in conns:
        conn.close()


def signal_cycle(runner, rg, sig, verbose, rng):
    """One start/signal cycle of `create`: ready, 40 local connections closed at once, the signal
    1-12 ms later. Returns (None or what went wrong, seconds from the signal to the exit). Right: an
    exit within 2 s, status 0, the closing line, no traceback."""
    args = ['-g', rg, '-n', 'linux-app'] + (['--verbose'] if verbose else [])
    with runner.tunnel(*args) as run:
        burst_of_closing_connections(run.port)
        time.sleep(rng.uniform(0.001, 0.012))
        sent = time.monotonic()
        run.signal(sig)
        try:
            run.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            run.signal(signal.SIGABRT)    # PYTHONFAULTHANDLER: its stacks go to stderr
            run.wait()
            return f'no exit within 2 s of {sig.name} (verbose={verbose}); stderr:\n{run.stderr}', None
        elapsed = time.monotonic() - sent
        run.wait()
        if run.returncode != 0 or CLOSED_BY[sig] not in run.stderr or 'Traceback' in run.stderr:
            return f'exit {run.returncode} after {elapsed:.2f} s (verbose={verbose}); stderr:\n{run.stderr}', elapsed
    return None, elapsed


def signal_cycles(runner, rg, sig, cycles, seeds=(1, 2)):
    """signal_cycle `cycles` times, len(seeds) at a time (every third with --verbose). Returns the
    failures and the exit latencies in seconds."""
    failures, latencies, lock = [], [], threading.Lock()

    def worker(seed, count):
        rng = random.Random(seed)
        for i in range(count):
            failure, elapsed = signal_cycle(runner, rg, sig, verbose=i % 3 == 0, rng=rng)
            with lock:
                if failure:
                    failures.append(failure)
                if elapsed is not None:
                    latencies.append(elapsed)

    shares = [cycles // len(seeds) + (i < cycles % len(seeds)) for i in range(len(seeds))]
    workers = [threading.Thread(target=worker, args=(seed, share)) for seed, share in zip(seeds, shares)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return failures, latencies


def _readable(stream, timeout):
    return bool(select.select([stream], [], [], timeout)[0])


def ssh_env(tmp_dir):
    """Environment for OpenSSH clients: the password comes from an askpass script."""
    askpass = os.path.join(tmp_dir, 'askpass.sh')
    if not os.path.exists(askpass):
        with open(askpass, 'w', encoding='utf-8') as handle:
            handle.write(f"#!/bin/sh\necho '{SSH_PASSWORD}'\n")
        os.chmod(askpass, 0o700)
    env = dict(os.environ)
    env.update(SSH_ASKPASS=askpass, SSH_ASKPASS_REQUIRE='force', DISPLAY=env.get('DISPLAY', ':0'))
    return env


SSH_OPTIONS = ['-F', '/dev/null', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
               '-o', 'LogLevel=ERROR', '-o', 'PreferredAuthentications=password,keyboard-interactive',
               '-o', 'PubkeyAuthentication=no', '-o', 'NumberOfPasswordPrompts=1', '-o', 'ConnectTimeout=20']


def ssh_command(port, *remote, host='127.0.0.1'):
    return ['ssh', *SSH_OPTIONS, '-p', str(port), f'root@{host}', *remote]


def ssh(port, *remote, env, timeout=60, host='127.0.0.1'):
    return subprocess.run(ssh_command(port, *remote, host=host), env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


def sftp_popen(port, commands, env, workdir):
    """sftp reading its commands from stdin (-b would force BatchMode, which disables askpass)."""
    path = os.path.join(workdir, 'sftp-commands')
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write('\n'.join(commands) + '\nbye\n')
    with open(path, 'rb') as commands_in:
        return subprocess.Popen(['sftp', *SSH_OPTIONS, '-P', str(port), 'root@127.0.0.1'], env=env,
                                stdin=commands_in, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture(scope='session')
def webapp_wheel(tmp_path_factory):
    """The extension wheel as setup.py builds it: universal (py3-none-any), with the native engine
    for this platform in azext_webapp/_native/<platform>/."""
    out = str(tmp_path_factory.mktemp('wheel'))
    return build_index.build_wheel(out)


@pytest.fixture(scope='session')
def az_home(tmp_path_factory):
    """A working directory outside the repository for every az process."""
    return str(tmp_path_factory.mktemp('az-cwd'))


@pytest.fixture(scope='session')
def extension_dir(sandbox, webapp_wheel, tmp_path_factory, az_home):
    """An AZURE_EXTENSION_DIR with the wheel installed once (`az extension add --source`)."""
    ext_dir = str(tmp_path_factory.mktemp('cliextensions'))
    config = str(tmp_path_factory.mktemp('az-install'))
    env = _az_env(sandbox, config, ext_dir)
    AzRunner(env, az_home).run('extension', 'add', '--source', webapp_wheel, '--yes', check=True, timeout=300)
    return ext_dir


def _az_env(sandbox, config_dir, ext_dir):
    env = dict(sandbox.az_env(config_dir))
    env['AZURE_EXTENSION_DIR'] = ext_dir
    env['AZURE_CORE_ONLY_SHOW_ERRORS'] = 'false'
    env.pop('PYTHONPATH', None)
    return env


@pytest.fixture(scope='session')
def webapp_az(sandbox, extension_dir, tmp_path_factory, az_home):
    """The real az, signed in to the sandbox, with the extension installed."""
    config = str(tmp_path_factory.mktemp('az-signed-in'))
    sandbox.az_login(config)
    return AzRunner(_az_env(sandbox, config, extension_dir), az_home)


@pytest.fixture(scope='session')
def signed_out_az(sandbox, extension_dir, tmp_path_factory, az_home):
    """The real az with the sandbox cloud set up but nobody signed in."""
    config = str(tmp_path_factory.mktemp('az-signed-out'))
    sandbox.az_login(config)
    runner = AzRunner(_az_env(sandbox, config, extension_dir), az_home)
    runner.run('logout', check=True)
    return runner


@pytest.fixture(scope='session')
def ssh_client_env(tmp_path_factory):
    if not shutil.which('ssh') or not shutil.which('sftp'):
        pytest.skip('OpenSSH client (ssh, sftp) is not installed')
    return ssh_env(str(tmp_path_factory.mktemp('ssh')))


@pytest.fixture
def rg(sandbox):
    return sandbox.resource_group
