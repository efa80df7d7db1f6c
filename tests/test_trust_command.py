"""Trust, with the real az on the sandbox: SIGTERM always ends `create`, a tunnel left open
renews its Entra token, and failures after the tunnel is open are reported once, in words that
say what happened."""
import os
import signal
import subprocess
import time
from urllib.parse import quote

import pytest

from tests.connect_proxy import PROXY_PASSWORD, PROXY_USER, AuthProxy, proxy_auth_value
from tests.fixtures_command import AZ, AzRunner, _az_env, signal_cycles, ssh


@pytest.mark.slow
def test_hundred_sigterms_after_bursts_of_closing_connections_all_exit(webapp_az, rg):
    """100 start/SIGTERM cycles of `create`, each with 40 local connections closed at once and SIGTERM
    1-12 ms later: every one exits within 2 s, with status 0 and no traceback. Two run at a time.
    (`make soak` runs 1,000 of them, and 200 with Ctrl+C, on each engine: tests/soak_signals.py.)"""
    runner = AzRunner(dict(webapp_az.env, PYTHONFAULTHANDLER='1'), webapp_az.cwd)
    failures, _ = signal_cycles(runner, rg, signal.SIGTERM, 100)
    assert not failures, f'{len(failures)} of 100 cycles failed; the first:\n{failures[0]}'


def test_a_tunnel_left_open_renews_its_bearer_token(sandbox_sshd, extension_dir, tmp_path, az_home,
                                                    ssh_client_env):
    """Tokens that live 310 s (MSAL renews under 300 s left) and that the SCM site accepts for only
    20 s after issue: 30 s after the tunnel opened, a new connection still authenticates."""
    with sandbox_sshd.short_lived_tokens(lifetime=310, scm_seconds=20):
        config = str(tmp_path / 'az-short-tokens')
        sandbox_sshd.az_login(config)
        runner = AzRunner(_az_env(sandbox_sshd, config, extension_dir), az_home)
        with runner.tunnel('-g', sandbox_sshd.resource_group, '-n', 'bearer-app', '--verbose') as run:
            first = ssh(run.port, 'hostname', env=ssh_client_env)
            assert first.returncode == 0, first.stderr
            time.sleep(30)        # the token the tunnel started with is no longer accepted
            later = ssh(run.port, 'hostname', env=ssh_client_env)
            assert later.returncode == 0, later.stderr + run.stderr_so_far()
            assert later.stdout.strip() == 'bearer-app-i0'
            run.signal(signal.SIGINT)
            assert run.wait() == 0
    assert 'Renewed the Microsoft Entra token for new connections' in run.stderr
    assert 'refused' not in run.stderr and 'rejected' not in run.stderr


def test_credentials_refused_after_start_are_reported_once(webapp_az, sandbox_sshd, rg, ssh_client_env):
    with webapp_az.tunnel('-g', rg, '-n', 'linux-app') as run:
        assert ssh(run.port, 'true', env=ssh_client_env).returncode == 0
        sandbox_sshd.set_basic('linux-app', False)
        try:
            for _ in range(3):
                assert ssh(run.port, 'true', env=ssh_client_env).returncode != 0
        finally:
            sandbox_sshd.set_basic('linux-app', True)
        run.signal(signal.SIGINT)
        run.wait()
    warnings = [line for line in run.stderr.splitlines() if 'rejected Basic auth' in line]
    assert len(warnings) == 1, run.stderr
    assert 'A new connection failed' in warnings[0] and 'run the command again' in warnings[0], warnings[0]


def test_sshd_that_dies_after_start_is_reported_once_naming_the_cause(
        webapp_az, sandbox_sshd, rg, ssh_client_env):
    with webapp_az.tunnel('-g', rg, '-n', 'linux-app', '--instance', 'linux-app-i0') as run:
        assert ssh(run.port, 'true', env=ssh_client_env).returncode == 0
        with sandbox_sshd.sshd_down('linux-app'):
            for _ in range(3):
                assert ssh(run.port, 'true', env=ssh_client_env).returncode != 0
        run.signal(signal.SIGINT)
        run.wait()
    warnings = [line for line in run.stderr.splitlines() if 'stopped answering' in line]
    assert len(warnings) == 1, run.stderr
    assert "Container port 2222 of app 'linux-app' (instance 'linux-app-i0') stopped answering" in warnings[0]
    assert 'az webapp restart -g sandbox-rg -n linux-app' in warnings[0]


def test_create_against_a_dead_sshd_says_both_causes_or_the_one_the_facts_show(webapp_az, sandbox_sshd, rg):
    """Without a pinned host key nothing shows whether SSH ever worked: both causes. With one, the
    container answered before: its sshd stopped (not "enable SSH and redeploy")."""
    known_hosts = os.path.join(webapp_az.env['AZURE_CONFIG_DIR'], 'webapp', 'known_hosts')
    os.makedirs(os.path.dirname(known_hosts), exist_ok=True)
    saved = open(known_hosts, encoding='utf-8').read() if os.path.exists(known_hosts) else None
    alias = sandbox_sshd.app('linux-app').scm_host.replace(':', '.')
    create = ('webapp', 'remote-connection', 'create', '-g', rg, '-n', 'linux-app')
    try:
        with sandbox_sshd.sshd_down('linux-app'):
            with open(known_hosts, 'w', encoding='utf-8') as handle:
                handle.write(f'other.host {PINNED_KEY}\n')
            never = webapp_az.run(*create)
            with open(known_hosts, 'a', encoding='utf-8') as handle:
                handle.write(f'{_hashed(alias)} {PINNED_KEY}\n')
            before = webapp_az.run(*create)
    finally:
        if saved is None:
            os.remove(known_hosts)
        else:
            with open(known_hosts, 'w', encoding='utf-8') as handle:
                handle.write(saved)
    assert never.returncode != 0 and before.returncode != 0
    assert 'Either SSH is not set up in the container' in never.stderr and 'or its sshd has stopped' in never.stderr
    assert 'Enable SSH in your custom container' not in never.stderr
    assert 'though it did before' in before.stderr and 'not set up' not in before.stderr
    assert 'az webapp restart -g sandbox-rg -n linux-app' in before.stderr


PINNED_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOeGd6nP8hqY6rNzyvBG4tX5X1rU2y8xMXxZ9K6nFqZs'


def _hashed(name):
    """A known_hosts name as HashKnownHosts writes it (Debian's ssh_config turns it on)."""
    import base64
    import hashlib
    import hmac
    salt = os.urandom(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f'|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}'


# -- proxy credentials ------------------------------------------------------------------------


def _through_proxy(runner, proxy, password=PROXY_PASSWORD):
    url = f'http://{quote(PROXY_USER, safe="")}:{quote(password, safe="")}@127.0.0.1:{proxy.port}'
    env = dict(runner.env, HTTPS_PROXY=url)
    for name in ('NO_PROXY', 'no_proxy'):
        env.pop(name, None)
    return AzRunner(env, runner.cwd)


def _proxy_secrets(password=PROXY_PASSWORD):
    return [password, quote(password, safe=''), proxy_auth_value(password=password).split()[1]]


def _command_logs(runner):
    root = os.path.join(runner.env['AZURE_CONFIG_DIR'], 'commands')
    for directory, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(directory, name), encoding='utf-8', errors='replace') as handle:
                yield name, handle.read()


def test_proxy_with_a_password_carries_the_tunnel_and_shows_no_secret(webapp_az, sandbox_sshd, rg,
                                                                      ssh_client_env):
    proxy = AuthProxy()
    try:
        runner = _through_proxy(webapp_az, proxy)
        with runner.tunnel('-g', rg, '-n', 'linux-app', '--verbose') as run:
            result = ssh(run.port, 'hostname', env=ssh_client_env)
            assert result.returncode == 0, result.stderr + run.stderr_so_far()
            run.signal(signal.SIGINT)
            assert run.wait() == 0
    finally:
        proxy.close()
    scm_port = sandbox_sshd.app('linux-app').scm_host.rsplit(':', 1)[1]
    tunnelled = [head for head in proxy.requests if head.startswith(f'CONNECT 127.0.0.1:{scm_port} ')]
    assert len(tunnelled) >= 3, proxy.requests          # warm-up, GetStatus, check, the ssh session
    assert all(f'Proxy-Authorization: {proxy_auth_value()}\r\n' in head for head in tunnelled)
    text = '\n'.join(run.stdout_lines) + run.stderr
    assert not [secret for secret in _proxy_secrets() if secret in text], text


def test_proxy_refusing_the_scm_site_is_named_by_host_and_port_only(webapp_az, sandbox, rg):
    scm_port = sandbox.app('linux-app').scm_host.rsplit(':', 1)[1]
    proxy = AuthProxy(refuse_ports=[scm_port])
    try:
        runner = _through_proxy(webapp_az, proxy)
        result = runner.run('webapp', 'remote-connection', 'create', '-g', rg, '-n', 'linux-app')
    finally:
        proxy.close()
    assert result.returncode != 0
    error = [line for line in result.stderr.splitlines() if line.startswith('ERROR:')]
    assert error and f'127.0.0.1:{proxy.port}' in error[0] and '403' in error[0], result.stderr
    leaks = [secret for secret in _proxy_secrets() if secret in result.stdout + result.stderr]
    logs = list(_command_logs(runner))
    assert any('remote-connection create' in text for _, text in logs), [name for name, _ in logs]
    leaks += [name for name, text in logs for secret in _proxy_secrets() if secret in text]
    assert not leaks, leaks


def test_raising_the_open_file_limit_is_said_under_verbose(webapp_az, rg):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 1024:
        pytest.skip(f'the hard open-file limit is {hard}: nothing to raise')

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 1024), hard))

    result = subprocess.run([AZ, 'webapp', 'remote-connection', 'create', '-g', rg, '-n', 'linux-app',
                             '--timeout', '1', '--verbose'], env=webapp_az.env, cwd=webapp_az.cwd,
                            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                            preexec_fn=low_limit)  # pylint: disable=subprocess-popen-preexec-fn
    assert result.returncode == 0, result.stderr
    assert f"Raised this process's open-file limit from {min(soft, 1024)} to" in result.stderr
