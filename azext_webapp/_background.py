"""Tunnels in the background, for scripts and CI: ``create --background`` and ``close``.

``create --background`` runs the same ``create`` in a process of its own, detached from the terminal
(POSIX: a session of its own; Windows: a process group of its own, with a console that no window
shows), its output going to a log file, and returns once that process says its port is open. It says
so through its ``--ready-file``: a record (port, pid, app, ...) written when the port is open, which
for a background tunnel is also its entry in the registry of this az configuration's background
tunnels, ``<az config dir>/webapp/tunnels/<name>.json``, its log beside it (``<name>.log``). The
tunnel removes its entry when it ends; its log stays, for the reason.

A tunnel started in the foreground with ``--ready-file PATH`` (``az ... &`` in a script) writes its
record there and also an entry of its own in the registry (``readyFile`` names PATH, no log, no
process group), so that ``close`` ends it too; on Windows, where a console process is ended cleanly
only through a process group of its own, close says to use Ctrl+C instead.

``close --port N | --pid P | --all`` finds the entry, checks that the process is still the one that
wrote it (its pid and its start time, so that a pid the system has given to another program is never
signalled), ends it as the tunnel ends cleanly (SIGTERM; on Windows Ctrl+Break to its process group,
which a helper attached to the tunnel's console sends), waits for it to exit, and removes its files.

On Windows the process started is not always the one that writes the record: a virtual environment's
python.exe is a launcher that runs the real interpreter as its child (in the launcher's process
group). So the record names both: ``pid``, the process that serves the tunnel (whose start time is
checked), and ``processGroup``, the process started here, whose id is the group's.
"""
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from typing import Any, Dict, List, NamedTuple, Optional

from azure.cli.core.azclierror import InvalidArgumentValueError, UnclassifiedUserFault, ValidationError
from knack.log import get_logger

from azext_webapp import _termination
from azext_webapp.ssh import az_invocation, write_atomically

logger = get_logger(__name__)

START_MAX_WAIT = 300.0   # a tunnel that says neither "ready" nor why within this is stopped
CLOSE_WAIT = 10.0        # a tunnel ends in well under a second; after this, say it did not
# Two readings of one process's start time, in two processes, differ by up to a second: Linux derives
# it from the boot time, which /proc/stat gives in whole seconds and NTP moves. A pid the system hands
# to another program within two seconds of the tunnel's start is not a case to guard against.
SAME_START = 2.0
STOP_WAIT = 3.0          # a tunnel that never became ready: its grace after SIGTERM, before SIGKILL
# Windows' process creation flags (subprocess has the names on Windows only)
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000
# A process group's Ctrl+Break reaches it through its console only: this helper leaves its own
# console, attaches to the tunnel's, ignores the event itself and sends it (CTRL_BREAK_EVENT = 1).
CTRL_BREAK_HELPER = ('import ctypes,sys;k=ctypes.windll.kernel32;pid,group=map(int,sys.argv[1:3]);'
                     'k.FreeConsole();ok=k.AttachConsole(pid) and k.SetConsoleCtrlHandler(None,True) and '
                     'k.GenerateConsoleCtrlEvent(1,group);sys.exit(0 if ok else 1)')


def registry_dir(config_dir: str) -> str:
    return os.path.join(config_dir, 'webapp', 'tunnels')


def process_started(pid: int) -> Optional[float]:
    """When the process started (psutil, which az depends on), or None when it does not run (an exited
    process its parent has not reaped yet included)."""
    import psutil
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


# ---------------------------------------------------------------------------------------------
# The tunnel's side: its ready record


def ready_record(port: int, bind: str, target: Any, instance: Optional[str], subscription: Optional[str],
                 ssh_command: Optional[str]) -> Dict[str, Any]:
    """What --ready-file holds once the port is open (and `create --background -o json` shows)."""
    pid = os.getpid()
    return {'port': port, 'bind': bind, 'pid': pid, 'processStarted': process_started(pid),
            'resourceGroup': target.resource_group, 'name': target.name, 'slot': target.slot,
            'instance': instance, 'subscription': subscription, 'ssh': ssh_command,
            'started': time.strftime('%Y-%m-%dT%H:%M:%S%z')}


def write_ready(path: str, record: Dict[str, Any]) -> None:
    """Atomically: a reader sees the whole record or none."""
    write_atomically(path, json.dumps(record, indent=2))


def register(config_dir: str, ready_file: str, record: Dict[str, Any]) -> Optional[str]:
    """The registry entry of a tunnel started in the foreground with --ready-file, so that close finds
    it; None for the background process, whose ready file is its entry already."""
    directory = registry_dir(config_dir)
    if os.path.dirname(os.path.abspath(ready_file)) == os.path.abspath(directory):
        return None
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, f'tunnel-{secrets.token_hex(6)}.json')
    write_ready(path, dict(record, readyFile=ready_file, processGroup=None))
    return path


def remove_file(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _read(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path, encoding='utf-8') as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get('pid'), int) else None


# ---------------------------------------------------------------------------------------------
# create --background


def child_argv(options: Dict[str, Any], subscription: Optional[str], ready_file: str,
               verbosity: List[str]) -> List[str]:
    """The foreground `create` the background process runs: the same app and options, this
    subscription, and --ready-file; never a credential."""
    argv = az_invocation() + ['webapp', 'remote-connection', 'create', '-g', options['resource_group_name'],
                              '-n', options['name']]
    for option, key in (('--slot', 'slot'), ('--instance', 'instance'), ('--port', 'port'), ('--bind', 'bind'),
                        ('--target-port', 'target_port'), ('--timeout', 'timeout')):
        if options.get(key) is not None:
            argv += [option, str(options[key])]
    if subscription:
        argv += ['--subscription', subscription]
    return argv + ['--ready-file', ready_file] + verbosity


def spawn(argv: List[str], log_path: str, cwd: str) -> 'subprocess.Popen[bytes]':
    """Detached from this terminal: POSIX, a session of its own (no controlling terminal, so neither
    Ctrl+C nor a closing terminal reaches it); Windows, a process group of its own (Ctrl+C in this
    console does not reach it; close's Ctrl+Break does) and a console no window shows."""
    descriptor = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        options: Dict[str, Any] = {'stdin': subprocess.DEVNULL, 'stdout': descriptor, 'stderr': descriptor,
                                   'cwd': cwd, 'close_fds': True}
        if sys.platform == 'win32':
            options['creationflags'] = CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW
        else:
            options['start_new_session'] = True
        return subprocess.Popen(argv, **options)  # pylint: disable=consider-using-with
    finally:
        os.close(descriptor)


def start(config_dir: str, options: Dict[str, Any], subscription: Optional[str],
          verbosity: List[str]) -> Dict[str, Any]:
    """Start the tunnel in the background; its ready record (with `log`) once its port is open.
    Its failure before that is raised with the tunnel's own words. A recorded signal (Ctrl+C) stops
    it and is raised."""
    directory = registry_dir(config_dir)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    stem = os.path.join(directory, f'tunnel-{secrets.token_hex(6)}')
    ready_file, log_path = stem + '.json', stem + '.log'
    child = spawn(child_argv(options, subscription, ready_file, verbosity), log_path, directory)
    try:
        record = _wait_ready(child, ready_file, log_path)
        record['processGroup'] = child.pid
        write_ready(ready_file, record)
    except BaseException as err:
        _stop_child(child)
        remove_file(ready_file)
        if not isinstance(err, TimedOut):   # its failure is said in full; a time-out's message names the log
            remove_file(log_path)
        raise
    record['log'] = log_path
    return record


class TimedOut(UnclassifiedUserFault):
    """The background tunnel said neither "ready" nor why within START_MAX_WAIT."""


def _wait_ready(child: 'subprocess.Popen[bytes]', ready_file: str, log_path: str) -> Dict[str, Any]:
    deadline = time.monotonic() + START_MAX_WAIT
    while True:
        # The file's name is new and only this child writes it; its pid is the launcher's child on
        # Windows (see the module docstring), so it is not compared with child.pid.
        record = _read(ready_file)
        if record is not None:
            return record
        if child.poll() is not None:
            raise UnclassifiedUserFault(_failure_of(log_path, child.returncode))
        if time.monotonic() > deadline:
            raise TimedOut(f'The background tunnel did not open its port within {int(START_MAX_WAIT)} seconds, so '
                           f'it was stopped. Its output: {log_path}')
        _termination.sleep(0.1)


def _failure_of(log_path: str, status: int) -> str:
    """Why the background tunnel ended before its port was open: its own error lines."""
    try:
        with open(log_path, encoding='utf-8', errors='replace') as handle:
            lines = handle.read().splitlines()
    except OSError:
        lines = []
    errors = [line[len('ERROR: '):] for line in lines if line.startswith('ERROR: ')]
    if errors:
        return ' '.join(errors)
    shown = ' | '.join(line for line in lines[-5:] if line.strip()) or 'no output'
    return f'The background tunnel ended (exit status {status}) before its port was open: {shown}'


def _stop_child(child: 'subprocess.Popen[bytes]') -> None:
    """The tunnel that never became ready: ended with what it started (on Windows the launcher's
    interpreter), within STOP_WAIT, and reaped. It is ours: we hold its handle. This runs while a
    recorded signal unwinds, so its waits are bounded rather than sliced."""
    import psutil
    try:
        processes = [psutil.Process(child.pid)]
        processes += processes[0].children(recursive=True)
    except psutil.Error:
        processes = []
    for process in processes:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(processes, timeout=STOP_WAIT)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=STOP_WAIT)
    try:
        child.wait(timeout=STOP_WAIT)
    except subprocess.TimeoutExpired:
        logger.warning('The background tunnel (pid %d) did not end; end it with your system\'s tools.', child.pid)


# ---------------------------------------------------------------------------------------------
# close


class Entry(NamedTuple):
    """One background tunnel of the registry: its record, where it is kept, whether it still runs."""
    path: str
    record: Dict[str, Any]
    running: bool

    @property
    def log(self) -> Optional[str]:
        """Its output's file; None for a tunnel started in the foreground (its output went there)."""
        return None if self.record.get('readyFile') else self.path[:-len('.json')] + '.log'

    def describe(self) -> str:
        record = self.record
        slot = f" slot '{record['slot']}' of" if record.get('slot') else ''
        return f"port {record.get('port')} (pid {record['pid']},{slot} app '{record.get('name')}')"


def entries(config_dir: str) -> List[Entry]:
    """The registry, in port order; `running` only where pid and start time still match."""
    directory = registry_dir(config_dir)
    try:
        names = sorted(name for name in os.listdir(directory) if name.endswith('.json'))
    except OSError:
        return []
    found = []
    for name in names:
        path = os.path.join(directory, name)
        record = _read(path)
        if record is not None:
            found.append(Entry(path, record, _same_process(record)))
    return sorted(found, key=lambda entry: (entry.record.get('port') or 0, entry.record['pid']))


def _same_process(record: Dict[str, Any]) -> bool:
    started, recorded = process_started(record['pid']), record.get('processStarted')
    return started is not None and isinstance(recorded, (int, float)) and abs(started - recorded) < SAME_START


def choose(config_dir: str, port: Optional[int] = None, pid: Optional[int] = None,
           everything: bool = False) -> List[Entry]:
    """The entries close acts on; a port or pid that is no background tunnel of ours is an error."""
    known = entries(config_dir)
    if everything:
        return known
    chosen = [entry for entry in known if (port is not None and entry.record.get('port') == port)
              or (pid is not None and entry.record['pid'] == pid)]
    if chosen:
        return chosen
    what = f'port {port}' if port is not None else f'pid {pid}'
    running = [entry.describe() for entry in known if entry.running]
    raise InvalidArgumentValueError(
        f'No background tunnel of this az configuration has {what} (`close` ends only tunnels started with '
        '`az webapp remote-connection create --background` or `--ready-file`). '
        + (f'Running: {"; ".join(running)}.' if running else 'None is running.'))


def close(entry: Entry) -> bool:
    """End one background tunnel and remove its files: True when it was running and has ended, False
    when it had already ended. A process that no longer is the one that wrote the entry is never
    signalled."""
    if not entry.running:
        remove_file(entry.path)
        return False
    pid = entry.record['pid']
    if not interrupt(pid, entry.record.get('processGroup', pid)):
        remove_file(entry.path)
        return False
    deadline = time.monotonic() + CLOSE_WAIT
    while _same_process(entry.record):
        if time.monotonic() > deadline:
            output = f' Its output: {entry.log}.' if entry.log else ''
            raise ValidationError(
                f'The background tunnel on {entry.describe()} did not end within {int(CLOSE_WAIT)} seconds.{output} '
                f'End it with your system\'s tools (kill {pid}).')
        _termination.sleep(0.05)
    remove_file(entry.path)
    if entry.log:
        remove_file(entry.log)
    return True


def interrupt(pid: int, group: Optional[int]) -> bool:
    """How the tunnel is asked to end cleanly: SIGTERM to pid; on Windows, Ctrl+Break to its process
    group (group: the id of the process that leads it; None for a tunnel started in the foreground,
    which has none of its own), through a helper attached to pid's console. False when the process
    had ended meanwhile."""
    if sys.platform == 'win32':
        if group is None:
            raise ValidationError(f'The tunnel with pid {pid} was started without --background: on Windows it '
                                  'ends cleanly only with Ctrl+C (or Ctrl+Break) in the console that runs it.')
        _send_ctrl_break(pid, group)
        return True
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    except PermissionError as err:
        raise ValidationError(f'Not allowed to end the background tunnel (pid {pid}): it runs as another user. '
                              'Run close as that user.') from err
    return True


def _send_ctrl_break(pid: int, group: int) -> None:
    helper = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, '-c', CTRL_BREAK_HELPER, str(pid), str(group)], stdin=subprocess.DEVNULL,
        creationflags=CREATE_NO_WINDOW)
    deadline = time.monotonic() + CLOSE_WAIT
    try:
        while helper.poll() is None:
            if time.monotonic() > deadline:
                raise ValidationError(f'Could not send Ctrl+Break to the background tunnel (pid {pid}): the helper '
                                      f'did not finish within {int(CLOSE_WAIT)} seconds.')
            _termination.sleep(0.05)
    finally:
        if helper.poll() is None:
            helper.kill()
            helper.wait()
    if helper.returncode != 0:
        raise ValidationError(f'Could not send Ctrl+Break to the background tunnel (pid {pid}).')
