"""Fast tier: background tunnels without az (_background.py): the argv of the background process, how it
is detached on POSIX and on Windows (simulated), how close asks it to end on each, the registry, and
that a process which is not the tunnel that wrote a record is never signalled."""
import json
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import psutil
import pytest
from azure.cli.core.azclierror import (InvalidArgumentValueError, RequiredArgumentMissingError,
                                       UnclassifiedUserFault, ValidationError)

from azext_webapp import _background, _validators
from azext_webapp._arm import Target
from tests.test_unit_commands import _create_args

OPTIONS = {'resource_group_name': 'rg', 'name': 'app', 'slot': 'staging', 'instance': None, 'port': 2222,
           'bind': '127.0.0.1', 'target_port': None, 'timeout': 600}


def test_the_background_process_runs_the_same_create_with_its_ready_file():
    argv = _background.child_argv(OPTIONS, 'sub-id', '/cfg/webapp/tunnels/tunnel-1.json', ['--verbose'])
    assert argv[:3] == [sys.executable, '-P' if sys.version_info >= (3, 11) else '-I', '-m']
    assert argv[3:] == ['azure.cli', 'webapp', 'remote-connection', 'create', '-g', 'rg', '-n', 'app',
                        '--slot', 'staging', '--port', '2222', '--bind', '127.0.0.1', '--timeout', '600',
                        '--subscription', 'sub-id', '--ready-file', '/cfg/webapp/tunnels/tunnel-1.json', '--verbose']


@pytest.mark.parametrize('platform', ['linux', 'darwin', 'win32'])
def test_detached_on_each_platform(monkeypatch, tmp_path, platform):
    """POSIX: a session of its own. Windows: a process group of its own (close's Ctrl+Break reaches
    it, this console's Ctrl+C does not) and a console without a window. Output to the log, no stdin."""
    seen = {}

    def popen(argv, **kwargs):
        seen.update(kwargs, argv=argv)
        return SimpleNamespace(pid=1)
    monkeypatch.setattr(sys, 'platform', platform)
    monkeypatch.setattr(subprocess, 'Popen', popen)
    log = tmp_path / 'tunnel.log'
    _background.spawn(['az'], str(log), str(tmp_path))
    assert seen['stdin'] is subprocess.DEVNULL and seen['stdout'] == seen['stderr'] and seen['cwd'] == str(tmp_path)
    if platform == 'win32':
        assert seen['creationflags'] == 0x00000200 | 0x08000000 and 'start_new_session' not in seen
    else:
        assert seen['start_new_session'] is True and 'creationflags' not in seen
    assert oct(log.stat().st_mode & 0o777) == '0o600'


def test_close_asks_with_sigterm_on_posix(monkeypatch):
    sent = []
    monkeypatch.setattr(sys, 'platform', 'linux')
    monkeypatch.setattr(os, 'kill', lambda pid, sig: sent.append((pid, sig)))
    assert _background.interrupt(4321, 4300) is True
    assert sent == [(4321, signal.SIGTERM)]


class FakeHelper:
    """The Ctrl+Break helper's process as subprocess.Popen gives it; ends with `returncode`."""
    started = []

    def __init__(self, argv, **kwargs):
        self.started.append((argv, kwargs))
        self.returncode = None
        self.killed = False

    def poll(self):
        if self.returncode is None and not self.hangs:
            self.returncode = self.exit_status
        return self.returncode

    def kill(self):
        self.killed = True
        self.returncode = -9

    def wait(self):
        return self.returncode


def test_close_sends_ctrl_break_to_the_process_group_on_windows(monkeypatch):
    """The helper attaches to the console of the process that serves the tunnel (pid) and sends the
    event to the group the started process leads (with a venv's launcher, not the same process)."""
    FakeHelper.started, FakeHelper.hangs, FakeHelper.exit_status = [], False, 0
    monkeypatch.setattr(sys, 'platform', 'win32')
    monkeypatch.setattr(subprocess, 'Popen', FakeHelper)
    monkeypatch.setattr(os, 'kill', lambda *args: pytest.fail('no os.kill on Windows'))
    assert _background.interrupt(4321, 4300) is True
    argv, kwargs = FakeHelper.started[0]
    assert argv == [sys.executable, '-c', _background.CTRL_BREAK_HELPER, '4321', '4300']
    assert kwargs['creationflags'] == 0x08000000
    compile(_background.CTRL_BREAK_HELPER, 'helper', 'exec')
    assert 'AttachConsole(pid)' in argv[2] and 'GenerateConsoleCtrlEvent(1,group)' in argv[2]
    FakeHelper.exit_status = 1
    with pytest.raises(ValidationError, match='Ctrl\\+Break'):
        _background.interrupt(4321, 4321)


def test_a_ctrl_break_helper_that_hangs_is_ended_and_said(monkeypatch):
    FakeHelper.started, FakeHelper.hangs = [], True
    monkeypatch.setattr(sys, 'platform', 'win32')
    monkeypatch.setattr(_background, 'CLOSE_WAIT', 0.2)
    helpers = []
    monkeypatch.setattr(subprocess, 'Popen', lambda *a, **k: helpers.append(FakeHelper(*a, **k)) or helpers[-1])
    with pytest.raises(ValidationError, match='did not finish within 0 seconds'):
        _background.interrupt(4321, 4321)
    assert helpers[0].killed


@pytest.mark.parametrize('error, result', [(ProcessLookupError, False), (PermissionError, ValidationError)])
def test_a_tunnel_gone_or_not_ours_to_signal_on_posix(monkeypatch, error, result):
    def kill(pid, sig):
        raise error()
    monkeypatch.setattr(sys, 'platform', 'linux')
    monkeypatch.setattr(os, 'kill', kill)
    if result is ValidationError:
        with pytest.raises(ValidationError, match='runs as another user'):
            _background.interrupt(4321, 4321)
    else:
        assert _background.interrupt(4321, 4321) is result


def write_entry(config_dir, stem, **record):
    directory = _background.registry_dir(str(config_dir))
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f'{stem}.json')
    _background.write_ready(path, record)
    return path


def this_process(**extra):
    me = psutil.Process()
    return dict({'pid': me.pid, 'processStarted': me.create_time(), 'port': 40001, 'name': 'app'}, **extra)


def test_the_registry_knows_what_still_runs(tmp_path):
    running = write_entry(tmp_path, 'a', **this_process())
    write_entry(tmp_path, 'b', **this_process(port=40002, processStarted=1.0))     # the pid was reused
    with open(os.path.join(_background.registry_dir(str(tmp_path)), 'c.json'), 'w', encoding='utf-8') as handle:
        handle.write('{"half a record')
    found = _background.entries(str(tmp_path))
    assert [(entry.record['port'], entry.running) for entry in found] == [(40001, True), (40002, False)]
    assert found[0].path == running and found[0].log == running[:-5] + '.log'
    assert found[0].describe() == f"port 40001 (pid {os.getpid()}, app 'app')"


def test_choose_by_port_or_pid_and_a_clear_error_otherwise(tmp_path):
    write_entry(tmp_path, 'a', **this_process())
    assert [e.record['port'] for e in _background.choose(str(tmp_path), port=40001)] == [40001]
    assert [e.record['port'] for e in _background.choose(str(tmp_path), pid=os.getpid())] == [40001]
    with pytest.raises(InvalidArgumentValueError) as info:
        _background.choose(str(tmp_path), port=40009)
    assert str(info.value) == ('No background tunnel of this az configuration has port 40009 (`close` ends only '
                               'tunnels started with `az webapp remote-connection create --background` or '
                               '`--ready-file`). Running: '
                               f"port 40001 (pid {os.getpid()}, app 'app').")
    assert _background.choose(str(tmp_path / 'none'), everything=True) == []


def test_a_record_of_another_process_is_removed_never_signalled(tmp_path, monkeypatch):
    path = write_entry(tmp_path, 'a', **this_process(processStarted=1.0))
    monkeypatch.setattr(_background, 'interrupt', lambda pid, group: pytest.fail('signalled a process not ours'))
    entry, = _background.entries(str(tmp_path))
    assert _background.close(entry) is False
    assert not os.path.exists(path)


def test_a_tunnel_that_does_not_end_is_said_not_killed(tmp_path, monkeypatch):
    write_entry(tmp_path, 'a', **this_process())
    monkeypatch.setattr(_background, 'interrupt', lambda pid, group: True)
    monkeypatch.setattr(_background, 'CLOSE_WAIT', 0.2)
    entry, = _background.entries(str(tmp_path))
    with pytest.raises(ValidationError, match=f'did not end within 0 seconds.*kill {os.getpid()}'):
        _background.close(entry)


def test_the_ready_record(tmp_path):
    record = _background.ready_record(40001, '127.0.0.1', Target('rg', 'app', None), 'app-i0', 'sub',
                                      'ssh root@127.0.0.1 -p 40001')
    assert record['pid'] == os.getpid() and abs(record['processStarted'] - psutil.Process().create_time()) < 0.01
    assert {key: record[key] for key in ('port', 'resourceGroup', 'name', 'slot', 'instance', 'subscription')} == \
        {'port': 40001, 'resourceGroup': 'rg', 'name': 'app', 'slot': None, 'instance': 'app-i0', 'subscription': 'sub'}
    path = tmp_path / 'ready.json'
    _background.write_ready(str(path), record)
    assert json.loads(path.read_text()) == record and os.listdir(tmp_path) == ['ready.json']


def test_a_tunnel_that_ends_before_it_is_ready_is_said_in_its_own_words(tmp_path):
    log = tmp_path / 'tunnel.log'
    log.write_text('WARNING: Waiting for app to start up...\nERROR: App \'x\' was not found.\n')
    assert _background._failure_of(str(log), 3) == "App 'x' was not found."  # pylint: disable=protected-access
    log.write_text('Traceback (most recent call last):\nboom\n')
    said = _background._failure_of(str(log), 1)  # pylint: disable=protected-access
    assert said == 'The background tunnel ended (exit status 1) before its port was open: Traceback (most recent ' \
                   'call last): | boom'
    assert isinstance(_background.TimedOut('x'), UnclassifiedUserFault)


@pytest.mark.parametrize('given, words', [
    (dict(stdio=True, background=True), '--stdio relays standard input and output and opens no local port, so '
                                        '--background cannot be used with it.'),
    (dict(stdio=True, ready_file='x.json'), 'so --ready-file cannot be used'),
    (dict(background=True, ready_file='x.json'), '--background keeps the tunnel\'s record in its own place'),
    (dict(ready_file='/no/such/dir/x.json'), 'the directory /no/such/dir does not exist'),
])
def test_create_refuses_what_does_not_go_together(given, words):
    with pytest.raises(InvalidArgumentValueError, match=words.replace('(', r'\(').replace(')', r'\)')):
        _validators.validate_remote_connection_create(_create_args(**given))


def test_a_ready_file_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    given = _create_args(ready_file='ready.json')
    _validators.validate_remote_connection_create(given)
    assert given.ready_file == str(tmp_path / 'ready.json')


@pytest.mark.parametrize('port, pid, close_all, error', [
    (None, None, False, RequiredArgumentMissingError),
    (2222, 12, False, RequiredArgumentMissingError),
    (None, 12, True, RequiredArgumentMissingError),
    (70000, None, False, InvalidArgumentValueError),
    (None, -3, False, InvalidArgumentValueError),
    (2222, None, False, None), (None, 12, False, None), (None, None, True, None),
])
def test_close_takes_exactly_one_way_to_name_the_tunnel(port, pid, close_all, error):
    given = SimpleNamespace(port=port, pid=pid, close_all=close_all)
    if error is None:
        _validators.validate_remote_connection_close(given)
        return
    with pytest.raises(error):
        _validators.validate_remote_connection_close(given)


def test_an_exited_process_not_yet_reaped_has_ended():
    """A tunnel whose parent has not reaped it yet (a zombie) has ended: close does not wait for it."""
    import time
    child = subprocess.Popen(['true'])  # pylint: disable=consider-using-with
    try:
        deadline = time.monotonic() + 10
        while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _background.process_started(child.pid) is None
        assert _background.process_started(os.getpid()) == psutil.Process().create_time()
    finally:
        child.wait()


def test_a_start_time_read_a_second_apart_is_the_same_process(tmp_path):
    """Linux derives a start time from the boot time, which moves by a second between two readers."""
    write_entry(tmp_path, 'a', **this_process(processStarted=psutil.Process().create_time() - 1.0))
    entry, = _background.entries(str(tmp_path))
    assert entry.running


def test_a_tunnel_that_ended_between_the_look_and_the_signal_has_ended(tmp_path, monkeypatch):
    path = write_entry(tmp_path, 'a', **this_process())
    monkeypatch.setattr(_background, 'interrupt', lambda pid, group: False)
    entry, = _background.entries(str(tmp_path))
    assert _background.close(entry) is False and not os.path.exists(path)


def test_the_group_to_signal_is_the_process_started(tmp_path, monkeypatch):
    write_entry(tmp_path, 'a', **this_process(processGroup=1234))
    asked = []
    monkeypatch.setattr(_background, 'interrupt', lambda pid, group: asked.append((pid, group)) or True)
    monkeypatch.setattr(_background, 'CLOSE_WAIT', 0.1)
    entry, = _background.entries(str(tmp_path))
    with pytest.raises(ValidationError):
        _background.close(entry)            # this process does not end, which is what close then says
    assert asked == [(os.getpid(), 1234)]


def test_the_ready_record_of_a_launchers_child_is_taken(tmp_path, monkeypatch):
    """On Windows a venv's python.exe starts the interpreter that writes the record: another pid."""
    ready, log = tmp_path / 'tunnel.json', tmp_path / 'tunnel.log'
    child = SimpleNamespace(pid=4300, poll=lambda: None, returncode=None)
    _background.write_ready(str(ready), {'pid': 4321, 'port': 40001})
    assert _background._wait_ready(child, str(ready), str(log))['pid'] == 4321  # pylint: disable=protected-access


def test_start_records_the_group_beside_the_pid(tmp_path, monkeypatch):
    class Child:
        pid = 4300
        returncode = None

        def poll(self):
            return None

    def spawn(argv, log_path, cwd):
        _background.write_ready(argv[argv.index('--ready-file') + 1], {'pid': 4321, 'port': 40001})
        return Child()
    monkeypatch.setattr(_background, 'spawn', spawn)
    record = _background.start(str(tmp_path), OPTIONS, 'sub', [])
    assert record['pid'] == 4321 and record['processGroup'] == 4300
    stored, = _background.entries(str(tmp_path))
    assert stored.record['processGroup'] == 4300 and record['log'] == stored.log


def test_a_tunnel_that_never_became_ready_is_ended_with_what_it_started_and_reaped(monkeypatch):
    """Its own children too (a venv launcher's interpreter on Windows), SIGKILL after the grace."""
    import time
    script = ('import signal,subprocess,sys,time;signal.signal(signal.SIGTERM,signal.SIG_IGN);'
              'subprocess.Popen([sys.executable,"-c","import time;time.sleep(60)"]);print(flush=True);time.sleep(60)')
    argv = [sys.executable, '-c', script]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE)  # pylint: disable=consider-using-with
    child.stdout.readline()
    grandchild = psutil.Process(child.pid).children()[0]
    monkeypatch.setattr(_background, 'STOP_WAIT', 0.5)
    started = time.monotonic()
    _background._stop_child(child)  # pylint: disable=protected-access
    assert child.returncode is not None

    def ended():
        try:
            return not grandchild.is_running() or grandchild.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True
    deadline = time.monotonic() + 5      # SIGKILL takes effect a moment after it is sent
    while not ended() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ended()
    assert time.monotonic() - started < _background.STOP_WAIT + 2
    child.stdout.close()


def test_a_directory_is_no_ready_file(tmp_path):
    with pytest.raises(InvalidArgumentValueError, match='is a directory'):
        _validators.validate_remote_connection_create(_create_args(ready_file=str(tmp_path)))


def test_close_all_goes_on_past_one_that_does_not_end(monkeypatch, caplog):
    from azext_webapp import custom
    stuck = _background.Entry('/cfg/a.json', {'pid': 11, 'port': 40001, 'name': 'a'}, True)
    fine = _background.Entry('/cfg/b.json', {'pid': 12, 'port': 40002, 'name': 'b'}, True)
    closed = []

    def close(entry):
        closed.append(entry.record['port'])
        if entry is stuck:
            raise ValidationError('The background tunnel on port 40001 did not end within 10 seconds.')
        return True
    monkeypatch.setattr(_background, 'choose', lambda *args: [stuck, fine])
    monkeypatch.setattr(_background, 'close', close)
    cmd = SimpleNamespace(cli_ctx=SimpleNamespace(config=SimpleNamespace(config_dir='/cfg')))
    with pytest.raises(ValidationError, match='port 40001 did not end'):
        custom.close_remote_connection(cmd, close_all=True)
    assert closed == [40001, 40002]
    assert "Closed the background tunnel on port 40002 (pid 12, app 'b')." in caplog.text


def test_a_foreground_tunnel_with_a_ready_file_is_registered_for_close(tmp_path):
    """`create --ready-file PATH &`: close finds it; the background process, whose ready file is its
    registry entry, is not registered twice."""
    config = tmp_path / 'config'
    ready = tmp_path / 'ready.json'
    record = this_process()
    path = _background.register(str(config), str(ready), record)
    entry, = _background.entries(str(config))
    assert entry.path == path and entry.running and entry.log is None
    assert entry.record['readyFile'] == str(ready) and entry.record['processGroup'] is None
    inside = os.path.join(_background.registry_dir(str(config)), 'tunnel-abc.json')
    assert _background.register(str(config), inside, record) is None
    assert len(_background.entries(str(config))) == 1


def test_close_ends_a_foreground_tunnel_on_posix_and_says_why_not_on_windows(tmp_path, monkeypatch):
    config = tmp_path / 'config'
    _background.register(str(config), str(tmp_path / 'ready.json'), this_process())
    entry, = _background.entries(str(config))
    signalled = []
    monkeypatch.setattr(sys, 'platform', 'linux')
    monkeypatch.setattr(os, 'kill', lambda pid, sig: signalled.append((pid, sig)))
    monkeypatch.setattr(_background, 'CLOSE_WAIT', 0.1)
    with pytest.raises(ValidationError) as raised:     # this process does not end: what close then says
        _background.close(entry)
    assert signalled == [(os.getpid(), signal.SIGTERM)] and 'Its output' not in str(raised.value)
    monkeypatch.setattr(sys, 'platform', 'win32')
    monkeypatch.setattr(subprocess, 'Popen', lambda *a, **k: pytest.fail('no Ctrl+Break without a group'))
    with pytest.raises(ValidationError, match='started without --background: on Windows it ends cleanly only '
                                              'with Ctrl\\+C'):
        _background.close(entry)
