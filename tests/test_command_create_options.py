"""`az webapp remote-connection create`: --ids like ssh and ssh-config, Ctrl+C before the tunnel is
ready is not a success, and what --help says about --timeout. The real az on the sandbox."""
import signal
import time

from tests.fixtures_command import ssh


def test_ids_of_a_slot_reach_the_slot_in_its_subscription(webapp_az, sandbox, ssh_client_env):
    ids = sandbox.site_id('slot-app', 'staging')
    with webapp_az.tunnel('--ids', ids) as run:
        result = ssh(run.port, 'hostname', env=ssh_client_env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == 'slot-app-staging-i0'
    assert run.returncode == 0, run.stderr
    # The subscription in the ID is the one used, whatever the default is.
    other = sandbox.site_id('linux-app').replace(sandbox.subscription, '00000000-0000-0000-0000-000000000000')
    wrong = webapp_az.run('webapp', 'remote-connection', 'create', '--ids', other)
    assert wrong.returncode != 0 and '00000000-0000-0000-0000-000000000000' in wrong.stderr, wrong.stderr
    neither = webapp_az.run('webapp', 'remote-connection', 'create', '-n', 'linux-app')
    assert neither.returncode != 0 and '(--resource-group | --ids) are required' in neither.stderr


def test_ctrl_c_before_the_tunnel_is_ready_exits_non_zero(webapp_az, sandbox):
    sandbox.hold_starting('starting-app', 30)
    try:
        proc = webapp_az.popen('webapp', 'remote-connection', 'create', '-g', sandbox.resource_group, '-n',
                               'starting-app')
        stderr = b''
        deadline = time.monotonic() + 60
        while b'Waiting for' not in stderr and time.monotonic() < deadline:
            stderr += proc.stderr.read1(4096)
        assert b"Waiting for app 'starting-app' to start up..." in stderr, stderr
        proc.send_signal(signal.SIGINT)
        out, rest = proc.communicate(timeout=15)
    finally:
        sandbox.hold_starting('starting-app', 0)
    stderr = (stderr + rest).decode()
    assert proc.returncode == 130, stderr
    assert out == b''  # no ready block: nothing was ever served
    assert 'Cancelled (Ctrl+C) before the tunnel was ready.' in stderr
    assert 'Traceback' not in stderr


def test_help_says_timeout_cuts_open_sessions_and_shows_ids(webapp_az):
    text = ' '.join(webapp_az.run('webapp', 'remote-connection', 'create', '--help', check=True).stdout.split())
    assert 'ending the sessions still open through it' in text
    assert 'not an idle time-out' in text
    assert 'remote-connection create --ids' in text


def test_help_of_ssh_and_ssh_config_shows_the_new_options(webapp_az):
    text = ' '.join(webapp_az.run('webapp', 'remote-connection', 'ssh', '--help', check=True).stdout.split())
    assert '--instance all -- df -h /home' in text and '--instance INSTANCE1,INSTANCE2 -o json -- uptime' in text
    assert "the exit status is the worst instance's" in text
    config = ' '.join(webapp_az.run('webapp', 'remote-connection', 'ssh-config', '--help', check=True).stdout.split())
    assert 'FILE.az-webapp' in config and 'never replaced' in config
