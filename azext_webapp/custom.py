"""The commands of ``az webapp remote-connection``: ``create``, ``close``, ``ssh``, ``ssh-config``,
``browse``, and ``exec`` and ``cp`` through the SCM site's exec channel (``doctor`` is ``_doctor.py``'s).

The flow follows azure-cli's ``create_tunnel`` (appservice module): ARM look-ups (``_arm.py``),
then a started and checked tunnel (``_connection.py``); failures become one line that says what to
do (``_errors.py``). Credentials never leave this process except in the Authorization header the
engine sends to the SCM site: they are not logged, not shown under --debug and not passed to any
other program.
"""

import contextlib
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, cast

from azure.cli.core.azclierror import CLIInternalError, ValidationError
from knack.log import get_logger

from azext_webapp import _background, _fanout, ssh
from azext_webapp._arm import Target, webssh_url
from azext_webapp._connection import locate, open_tunnel, resolve
from azext_webapp._hops import Walk
from azext_webapp._errors import debugging_message, describe, first_line
from azext_webapp._termination import Terminated, call_in_thread, raise_if_signalled, terminate_on
from azext_webapp.ssh import SSH_PASSWORD, SSH_PORT, SSH_USER

logger = get_logger(__name__)

Cmd = Any  # az's AzCliCommand: cli_ctx, its config and invocation data


def _target(resource_group_name: Optional[str], name: Optional[str], slot: Optional[str]) -> Target:
    # az requires --resource-group and --name unless --ids gives them (_validators.py fills them in)
    return Target(cast(str, resource_group_name), cast(str, name), slot)


def create_remote_connection(cmd: Cmd, resource_group_name: Optional[str] = None, name: Optional[str] = None,
                             port: Optional[int] = None, slot: Optional[str] = None, instance: Optional[str] = None,
                             timeout: Optional[int] = None, bind: str = '127.0.0.1', target_port: Optional[int] = None,
                             stdio: bool = False, background: bool = False, ready_file: Optional[str] = None,
                             ids: Optional[List[str]] = None  # pylint: disable=unused-argument
                             ) -> Optional[Dict[str, Any]]:
    # ids: resolved into resource_group_name, name, slot and the subscription by the validator.
    target = _target(resource_group_name, name, slot)
    if stdio:
        _stdio_connection(cmd, target, instance, target_port)
        return None
    if background:
        options = {'resource_group_name': target.resource_group, 'name': target.name, 'slot': slot,
                   'instance': instance, 'port': port, 'bind': bind, 'target_port': target_port, 'timeout': timeout}
        return _background_connection(cmd, options)
    ready: List[bool] = []
    # Signals are only recorded; the waits raise them (KeyboardInterrupt, Terminated): _termination.py.
    with terminate_on('SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK'):
        try:
            _remote_connection(cmd, target, port, instance, timeout, bind, target_port, ready, ready_file)
        except KeyboardInterrupt:
            if not ready:  # nothing was served: not a success, as a shell's 130 says
                logger.warning('Cancelled (Ctrl+C) before the tunnel was ready.')
                sys.exit(CTRL_C_STATUS)
            logger.warning('Closed (Ctrl+C).')
        except Terminated as ended:
            logger.warning('Closed (%s).', ended.signal_name)
    return None


CTRL_C_STATUS = 130  # 128 + SIGINT, what a shell reports for a program ended by Ctrl+C


@contextlib.contextmanager
def _stopped_by_signals(what: str, *signals: str) -> Iterator[None]:
    """Within the block signals are recorded (the waits raise them, _termination.py); the one that
    ends it is said, `Stopped (Ctrl+C): <what>`, and az exits with 128 + its number."""
    with terminate_on(*(signals or ('SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK'))):
        try:
            yield
        except KeyboardInterrupt:
            logger.warning('Stopped (Ctrl+C): %s', what)
            sys.exit(CTRL_C_STATUS)
        except Terminated as ended:
            logger.warning('Stopped (%s): %s', ended.signal_name, what)
            sys.exit(128 + ended.signum)


def _remote_connection(cmd: Cmd, target: Target, port: Optional[int], instance: Optional[str],
                       timeout: Optional[int], bind: str, target_port: Optional[int], ready: List[bool],
                       ready_file: Optional[str] = None) -> None:
    if ready_file:   # one left by an earlier run would tell a script waiting for it that this port is open
        _background.remove_file(ready_file)
    endpoint = call_in_thread(resolve, cmd, target, instance, target_port)
    with open_tunnel(endpoint, bind=bind, port=port, hold=True) as (engine, remote_port):
        ssh_options = _ssh_options_for(engine.port, bind, remote_port, endpoint)
        ssh_example = _print_ready(engine.port, bind, endpoint.debugging, target_port, remote_port, ssh_options)
        ready.append(True)
        registered = None
        if ready_file:
            from azure.cli.core.commands.client_factory import get_subscription_id
            record = _background.ready_record(engine.port, bind, target, instance, get_subscription_id(cmd.cli_ctx),
                                              ssh_example)
            _background.write_ready(ready_file, record)
            registered = _background.register(cmd.cli_ctx.config.config_dir, ready_file, record)
        try:
            _serve(engine, timeout)
        finally:
            for path in (ready_file, registered):
                if path:
                    _background.remove_file(path)


def _serve(engine: Any, timeout: Optional[int]) -> None:
    """Returns on --timeout; Ctrl+C (KeyboardInterrupt) and SIGTERM (Terminated) leave it by exception,
    raised by its wait."""
    serving_since = time.monotonic()
    engine.serve(timeout=timeout)
    if timeout and time.monotonic() - serving_since >= timeout - 0.5:
        logger.warning('Closing the tunnel: the --timeout of %d seconds has passed.', timeout)
    else:
        raise CLIInternalError('The tunnel stopped unexpectedly. Run the command again; add --debug to see '
                               'why, and report it if it happens again.')


def _background_connection(cmd: Cmd, options: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """--background: the same tunnel in a process of its own (_background.py); returns once its port
    is open. With --output, its record is the result; otherwise what to do next is printed."""
    from azure.cli.core.commands.client_factory import get_subscription_id
    given = cmd.cli_ctx.data.get('safe_params') or []
    verbosity = [flag for flag in ('--verbose', '--debug', '--only-show-errors') if flag in given]
    with terminate_on('SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK'):
        try:
            record = _background.start(cmd.cli_ctx.config.config_dir, options, get_subscription_id(cmd.cli_ctx),
                                       verbosity)
        except KeyboardInterrupt:
            logger.warning('Cancelled (Ctrl+C) before the tunnel was ready.')
            sys.exit(CTRL_C_STATUS)
        except Terminated as ended:
            logger.warning('Cancelled (%s) before the tunnel was ready.', ended.signal_name)
            sys.exit(128 + ended.signum)
    if _output_given(cmd):
        return record
    port = record['port']
    lines = [f"Port {port} is open, in the background (pid {record['pid']}); its output goes to {record['log']}"]
    if record.get('ssh'):
        lines += [f'SSH is available {{ username: {SSH_USER}, password: {SSH_PASSWORD} }}',
                  f"For example: {record['ssh']}"]
    else:
        lines.append(f"Connect your client to {_host_port(_client_host(record['bind']), port)}")
    lines.append(f'Close it with: az webapp remote-connection close --port {port}')
    print('\n'.join(lines), flush=True)
    return None


def close_remote_connection(cmd: Cmd, port: Optional[int] = None, pid: Optional[int] = None,
                            close_all: bool = False) -> None:
    """End background tunnels of this az configuration (create --background), cleanly, and wait for them."""
    chosen = _background.choose(cmd.cli_ctx.config.config_dir, port, pid, close_all)
    if not chosen:
        logger.warning('No background tunnel of this az configuration is running.')
        return
    failures: List[str] = []
    with terminate_on('SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK'):
        for entry in chosen:    # one that does not end does not keep the others open
            try:
                closed = _background.close(entry)
            except ValidationError as err:
                failures.append(str(err))
                continue
            if closed:
                logger.warning('Closed the %s on %s.', 'background tunnel' if entry.log else 'tunnel', entry.describe())
            elif entry.log:
                logger.warning('The background tunnel on %s had already ended; its output: %s', entry.describe(),
                               entry.log)
            else:
                logger.warning('The tunnel on %s had already ended.', entry.describe())
    if failures:
        raise ValidationError(' '.join(failures))


def _stdio_connection(cmd: Cmd, target: Target, instance: Optional[str], target_port: Optional[int]) -> None:
    """--stdio (OpenSSH's ProxyCommand): standard input and output are the one connection, relayed
    by native threads through one WebSocket; only tunnel bytes go to stdout. Ends when either side
    ends (stdin EOF closes the WebSocket; the WebSocket's end closes stdout)."""
    # ssh ends its ProxyCommand with SIGHUP: close the WebSocket cleanly, and quietly.
    with terminate_on('SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK'):
        try:
            endpoint = call_in_thread(resolve, cmd, target, instance, target_port)
            with open_tunnel(endpoint, listen=False, hold=True) as (engine, _):
                engine.relay_stdio(sys.stdin.fileno(), sys.stdout.fileno())
        except (KeyboardInterrupt, Terminated):
            pass


def ssh_remote_connection(cmd: Cmd, resource_group_name: Optional[str] = None, name: Optional[str] = None,
                          slot: Optional[str] = None, instance: Optional[str] = None,
                          ssh_args: Optional[List[str]] = None,
                          ids: Optional[List[str]] = None) -> None:  # pylint: disable=unused-argument
    wanted = _fanout.wanted_instances(instance)
    if wanted:
        _fanout.check_command(instance, *ssh.split_ssh_args(ssh_args))
    ssh_path = _ssh_program('ssh')
    target = _target(resource_group_name, name, slot)
    if wanted:
        return _ssh_every_instance(cmd, target, wanted, ssh_path, ssh_args)
    endpoint = resolve(cmd, target, instance)
    if endpoint.debugging:
        raise ValidationError(debugging_message(target, 'ssh'))
    known_hosts = ssh.known_hosts_file(cmd.cli_ctx.config.config_dir)
    alias = ssh.host_key_alias(endpoint.scm_url, instance)
    options, _ = ssh.split_ssh_args(ssh_args)
    _warn_if_askpass_unsupported(ssh_path, options)
    with open_tunnel(endpoint) as (engine, _):
        argv = ssh.ssh_argv(ssh_path, engine.port, alias, known_hosts, ssh_args)
        with ssh.AskpassDir(wanted=not ssh.has_own_identity(options)) as askpass:
            code = _run_owning_terminal(argv, ssh.ssh_env(askpass.path))
        if code == 255 and ssh.host_key_changed(engine.port, alias, known_hosts):
            raise ValidationError(
                f'Refused: the SSH host key of {describe(target)} is not the one recorded in {known_hosts} '
                f'(as {alias}). Someone may be intercepting the connection, or the container was rebuilt '
                'with new host keys. If you know why it changed, remove the old key with '
                f'`ssh-keygen -R {alias} -f {known_hosts}` and run the command again.')
        if code == 255:  # ssh's own failure (not the remote command's status): name the tool that finds the hop
            from azext_webapp._errors import doctor_command
            logger.warning('ssh could not connect or log in (exit status 255). `%s` checks every hop, from the '
                           "tunnel to the container's algorithms, root login and sftp.",
                           doctor_command(target, instance))
    if code:
        sys.exit(code)
    return None


def _ssh_every_instance(cmd: Cmd, target: Target, wanted: List[str], ssh_path: str,
                        ssh_args: Optional[List[str]]) -> None:
    """--instance all / NAME,NAME with a command: see _fanout. With an explicit --output the records
    are printed in that format; either way az exits with the worst instance's status."""
    names = _fanout.choose_instances(cmd, target, wanted)
    endpoint = resolve(cmd, target)
    if endpoint.debugging:
        raise ValidationError(debugging_message(target, 'ssh'))
    known_hosts = ssh.known_hosts_file(cmd.cli_ctx.config.config_dir)
    structured = _output_given(cmd)
    with _stopped_by_signals('the command was ended on every instance.', 'SIGINT', 'SIGTERM', 'SIGBREAK'):
        results, worst = _fanout.run(endpoint, names, ssh_path, ssh_args, known_hosts, structured)
    _print_records(cmd, results, structured)
    if worst:
        sys.exit(worst)


def _print_records(cmd: Cmd, results: List[dict], structured: bool) -> None:
    """A fan-out's records, with an explicit --output. Printed here, as az would print a result
    (--query applied by its own handler), because az cannot also exit with a status of ours after
    printing a returned result."""
    if not structured or cmd.cli_ctx.invocation.data['output'] == 'none':
        return
    from knack.events import EVENT_INVOKER_FILTER_RESULT
    from knack.util import CommandResultItem
    event_data = {'result': results}
    cmd.cli_ctx.raise_event(EVENT_INVOKER_FILTER_RESULT, event_data=event_data)
    output = cmd.cli_ctx.output
    output.out(CommandResultItem(event_data['result']),
               formatter=output.get_formatter(cmd.cli_ctx.invocation.data['output']), out_file=sys.stdout)
    sys.stdout.flush()


def _output_given(cmd: Cmd) -> bool:
    """Whether --output/-o was on the command line (az's default format is json either way)."""
    given = cmd.cli_ctx.data.get('safe_params') or []
    return any(param in ('-o', '--output') for param in given)


def _ssh_program(name: str) -> str:
    path = ssh.find_ssh(name)
    if not path:
        raise ValidationError(
            f'The OpenSSH client ({name}) was not found on PATH. Install it ({ssh.install_hint()}), or open a '
            'tunnel with `az webapp remote-connection create` and connect with the client you have.')
    return path


def _warn_if_askpass_unsupported(ssh_path: str, options: List[str]) -> None:
    """Older OpenSSH (Windows 10 ships 8.1) ignores SSH_ASKPASS_REQUIRE: say so before ssh asks."""
    if not ssh.has_own_identity(options):
        message = ssh.askpass_unsupported_message(ssh.openssh_version(ssh_path))
        if message:
            logger.warning(message)


def _run_owning_terminal(argv: List[str], env: Mapping[str, str]) -> int:
    """Run argv in our process group (so it gets the terminal's signals and owns the terminal) and
    return its exit status. Ctrl+C belongs to the child: our handler only keeps az alive until the
    child ends (a Python handler, unlike SIG_IGN, is not inherited through exec). SIGTERM and SIGHUP
    sent to az are passed on."""
    logger.info('Running %s', ' '.join(argv))
    child: Optional['subprocess.Popen[bytes]'] = None

    def forward(signum: int, frame: Optional[FrameType]) -> None:  # pylint: disable=unused-argument
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    handlers = {signal.SIGINT: lambda signum, frame: None, signal.SIGTERM: forward}
    if hasattr(signal, 'SIGHUP'):  # not on Windows
        handlers[signal.SIGHUP] = forward
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        child = subprocess.Popen(argv, env=env)  # pylint: disable=consider-using-with
        return _exit_status(child.wait())  # a signal runs its handler, then the wait goes on (PEP 475)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode  # killed by signal N: as a shell says


def ssh_config_remote_connection(cmd: Cmd, resource_group_name: Optional[str] = None, name: Optional[str] = None,
                                 slot: Optional[str] = None, instance: Optional[str] = None,
                                 host: Optional[str] = None, file: Optional[str] = None,
                                 ids: Optional[List[str]] = None) -> None:  # pylint: disable=unused-argument
    target = _target(resource_group_name, name, slot)
    app = locate(cmd, target, instance)
    scm_url = app.scm_url
    if app.debugging:  # its ProxyCommand would reach the debugger
        raise ValidationError(debugging_message(target, 'ssh-config'))
    _warn_about_walls(app)
    host = host or (f'{name}-{slot}' if slot else name)
    config_dir = cmd.cli_ctx.config.config_dir
    known_hosts = ssh.known_hosts_file(config_dir)
    from azure.cli.core.commands.client_factory import get_subscription_id
    block = ssh.config_block(host, resource_group_name, name, ssh.host_key_alias(scm_url, instance), known_hosts,
                             slot=slot, instance=instance, subscription=get_subscription_id(cmd.cli_ctx),
                             config_dir=config_dir)
    if not file:
        print(block, end='', flush=True)
        return
    try:
        outcome, ours = ssh.update_config_file(file, block, host)
    except ssh.ConfigFileError as err:
        raise ValidationError(str(err)) from None
    logger.warning("%s the Host block '%s' in %s (included from the top of %s, so that its settings take "
                   "effect before any Host * or Match block). Connect with: ssh %s", _OUTCOME_WORDS[outcome], host,
                   ours, file, host)


_OUTCOME_WORDS = {'added': 'Added', 'updated': 'Updated', 'unchanged': 'Already up to date:'}


def _ssh_options_for(port: int, bind: str, remote_port: Optional[int], endpoint: Walk) -> List[str]:
    """The -o options the printed ssh line needs, learned from the container's own KEXINIT through
    the tunnel: none when OpenSSH's defaults match (the built-in images), `Ciphers=+aes128-cbc` for
    a container configured as the documentation says (CBC ciphers only)."""
    if remote_port != SSH_PORT:
        return []
    from azext_webapp import _kexinit
    from azext_webapp._errors import doctor_command
    try:
        offer = _kexinit.probe(port, host=_client_host(bind), timeout=5.0)
    except _kexinit.ProbeError as err:
        logger.info('Could not read the SSH server\'s offer through the tunnel: %s', err)
        return []
    options = _kexinit.extra_options(offer)
    if options is None:
        logger.warning('The SSH server in the container offers no cipher and MAC that OpenSSH supports '
                       '(ciphers: %s; MACs: %s). Run `%s` for what to change.', ','.join(offer.ciphers),
                       ','.join(offer.macs), doctor_command(endpoint.target, endpoint.instance))
        return []
    return [f'-o {keyword}={value}' for keyword, value in options]


def _print_ready(port: int, bind: str, debugging: bool, target_port: Optional[int], remote_port: Optional[int],
                 ssh_options: Sequence[str] = ()) -> Optional[str]:
    """Prints what the open tunnel is for; returns the ssh command it shows, when it leads to SSH."""
    host = _client_host(bind)
    example: Optional[str] = None
    if debugging and not target_port:
        lines = [f'Port {port} is open',
                 f'Remote debugging is enabled: this tunnel is for the debugger (container port {remote_port}), '
                 'not for SSH',
                 f'Attach your debugger to {_host_port(host, port)}']
    elif remote_port != SSH_PORT:
        lines = [f'Port {port} is open',
                 f'The tunnel leads to container port {remote_port}',
                 f'Connect your client to {_host_port(host, port)}']
    else:
        example = _ssh_example(port, bind, ssh_options)
        lines = [f'Port {port} is open',
                 f'SSH is available {{ username: {SSH_USER}, password: {SSH_PASSWORD} }}',
                 f'Start your favorite client and connect to port {port}',
                 f'For example: {example}']
        if ssh_options:
            lines.append(f'(the container offers only algorithms OpenSSH leaves out by default; give scp and '
                         f'sftp the same {" ".join(ssh_options)})')
        if debugging:
            lines.insert(1, f'Remote debugging is enabled, but --target-port {SSH_PORT} leads this tunnel to SSH '
                            f'(container port {SSH_PORT}), not to the debugger')
    lines.append('Ctrl + C to close')
    # User output, like the reference's; flushed so that `az ... &` and pipes show it at once.
    print('\n'.join(lines), flush=True)
    return example


def _ssh_example(port: int, bind: str, ssh_options: Sequence[str]) -> str:
    """The ssh command line for this tunnel, with the options the container needs."""
    options = ''.join(f'{option} ' for option in ssh_options)
    return f'ssh {options}{SSH_USER}@{_client_host(bind)} -p {port}'


def _client_host(bind: str) -> str:
    if bind in ('0.0.0.0', ''):
        return '127.0.0.1'
    if bind == '::':
        return '::1'
    return bind


def _host_port(host: str, port: int) -> str:
    return f'[{host}]:{port}' if ':' in host else f'{host}:{port}'


def browse_remote_connection(cmd: Cmd, resource_group_name: Optional[str] = None, name: Optional[str] = None,
                             slot: Optional[str] = None, instance: Optional[str] = None,
                             ids: Optional[List[str]] = None) -> None:  # pylint: disable=unused-argument
    target = _target(resource_group_name, name, slot)
    app = locate(cmd, target, instance)
    _warn_about_walls(app)
    url = webssh_url(app.scm_url, instance)
    if open_in_browser(url):
        logger.warning('Opened %s in your browser: sign in to the SCM site there if it asks.', url)
        return
    logger.warning('No browser can be opened from here: open this URL in a browser where you can sign in '
                   'to Azure.')
    print(url)


def _warn_about_walls(app: Walk) -> None:
    """ssh-config and browse prepare connections without making one: what will stop them from this
    machine (a private endpoint, access restrictions) or for this account (no right to publish, which
    the SCM site asks of a Microsoft Entra sign-in: the browser's, and a token's), said before they
    fail. A look-up that fails says nothing: the connection's own error will."""
    from azure.core.exceptions import AzureError
    from knack.util import CLIError
    from azext_webapp import _walls
    from azext_webapp._errors import access_warning, rights_warning
    warning = access_warning(app)
    if warning:
        logger.warning(warning)
    try:
        app.rights = _walls.rights(app.client, app.site.id, app.target.slot)
    except (AzureError, CLIError) as err:
        logger.debug('Reading your permissions on the app failed: %s', err)
        return
    warning = rights_warning(app)
    if warning:
        logger.warning(warning)


def open_in_browser(url: str) -> bool:
    """Whether the default browser was asked to open url. az decides how per platform (webbrowser,
    macOS `open`, powershell.exe under WSL) and whether there is a browser at all ($BROWSER counts)."""
    from azure.cli.core.util import can_launch_browser, open_page_in_browser
    if not can_launch_browser():
        return False
    try:
        opened = open_page_in_browser(url)
    except OSError as err:
        logger.info('Could not start a browser: %s', err)
        return False
    if isinstance(opened, bool):  # webbrowser.open (Windows, Linux)
        return opened
    if isinstance(opened, int):  # powershell.exe's exit status (WSL)
        return opened == 0
    return True  # a started `open` process (macOS)


def exec_remote_connection(cmd: Cmd, resource_group_name: Optional[str] = None, name: Optional[str] = None,
                           slot: Optional[str] = None, instance: Optional[str] = None, target: str = 'app',
                           shell: Optional[str] = None, command_args: Optional[List[str]] = None,
                           container: Optional[str] = None,
                           ids: Optional[List[str]] = None) -> None:  # pylint: disable=unused-argument
    """A shell, or a command with its output and exit status, through the SCM site's exec channel:
    no sshd needed (see _exec_shell, _exec_command)."""
    from azext_webapp._exec_channel import resolve_exec
    from azext_webapp._exec_command import command_line
    app = _target(resource_group_name, name, slot)
    kudu = (target or 'app').lower() == 'kudu'
    if kudu and container:
        raise ValidationError('--container names one of the app\'s containers; the SCM site\'s own (--target kudu) '
                              'has none: leave out one of them.')
    wanted = _fanout.wanted_instances(instance)
    if wanted:
        _exec_every_instance(cmd, app, wanted, kudu, shell, command_line(command_args or []), container)
        return
    endpoint = resolve_exec(cmd, app, instance, container)
    # a recorded signal interrupts the remote side first, then ends the command
    with _stopped_by_signals('the remote side was ended.'):
        if command_args:
            code = _exec_command(endpoint, instance, kudu, shell, command_line(command_args))
        else:
            code = _exec_shell(endpoint, instance, kudu, shell)
    if code:
        sys.exit(code)


def _exec_command(endpoint: Walk, instance: Optional[str], kudu: bool, shell: Optional[str], command: str) -> int:
    from azext_webapp._exec_command import local_input, run_one
    return run_one(endpoint, instance, kudu, shell, command, _writer(sys.stdout), _writer(sys.stderr),
                   source=local_input())


def _writer(stream: Any) -> Any:
    target = getattr(stream, 'buffer', None)

    def write(data: bytes) -> None:
        if target is not None:
            target.write(data)
            target.flush()
        else:  # a text-only stream (tests replacing sys.stdout)
            stream.write(data.decode('utf-8', 'replace'))
            stream.flush()
    return write


def _exec_shell(endpoint: Walk, instance: Optional[str], kudu: bool, shell: Optional[str]) -> int:
    import os
    from azext_webapp import _exec_terminal
    from azext_webapp._exec_channel import open_channel
    from azext_webapp._exec_shell import interactive
    no_terminal = ValidationError(
        'An interactive shell needs a terminal on standard input and output. To run a command instead, give it '
        'after `--` (for example `-- ls /home`): its output and exit status come back.')
    if not (os.isatty(0) and os.isatty(1)):
        raise no_terminal
    terminal = _exec_terminal.for_platform()()
    with open_channel(endpoint, instance, kudu, shell, terminal.size()) as channel:
        logger.warning('Connected to %s%s through its SCM site. Every key goes to the remote shell, Ctrl+C '
                       'included: `exit` ends the session; Enter then ~. leaves it from here.',
                       describe(endpoint.target), f' (instance {instance})' if instance else '')
        try:
            with terminal:
                why = interactive(channel, terminal)
        except _exec_terminal.NoTerminalError:
            raise no_terminal from None
        failure = channel.failure()
    if why == 'signal':
        raise_if_signalled()
    if why == 'remote' and failure is not None:
        logger.warning('The connection to the shell broke: %s', first_line(failure))
    return 0


def _exec_every_instance(cmd: Cmd, app: Target, wanted: List[str], kudu: bool, shell: Optional[str],
                         command: str, container: Optional[str] = None) -> None:
    """exec --instance all / NAME,NAME -- CMD: at most _exec_command.MAX_PARALLEL at once; records
    with an explicit --output; az exits with the worst status."""
    from azext_webapp._exec_channel import resolve_exec
    from azext_webapp._exec_command import ExecFanOut
    names = _fanout.choose_instances(cmd, app, wanted)
    endpoint = resolve_exec(cmd, app, container=container)
    structured = _output_given(cmd)
    with _stopped_by_signals('the command was ended on every instance.'):
        results = ExecFanOut(endpoint, names, kudu, shell, command, not structured).run()
    _print_records(cmd, results, structured)
    worst = _fanout.worst(results)
    if worst:
        sys.exit(worst)


def cp_remote_connection(cmd: Cmd, paths: List[str], resource_group_name: Optional[str] = None,
                         name: Optional[str] = None, slot: Optional[str] = None, instance: Optional[str] = None,
                         container: Optional[str] = None, recursive: bool = False,
                         ids: Optional[List[str]] = None) -> None:  # pylint: disable=unused-argument
    """A file (or with recursive, a directory) to or from the container through the exec channel
    (see _copy)."""
    from azext_webapp import _copy
    from azext_webapp._exec_channel import resolve_exec
    app = _target(resource_group_name, name, slot)
    source, destination = paths
    remote_source, remote_destination = _copy.parse_location(source), _copy.parse_location(destination)
    endpoint = resolve_exec(cmd, app, instance, container)
    with _stopped_by_signals('nothing was copied.'):
        if remote_destination is not None:
            _copy.upload(endpoint, instance, source, remote_destination.path, recursive)
        elif remote_source is not None:
            _copy.download(endpoint, instance, remote_source.path, destination, recursive)
