"""Argument checks for ``az webapp remote-connection``; each error says what to do next."""

import ipaddress
import os

from azure.cli.core.azclierror import InvalidArgumentValueError, RequiredArgumentMissingError
from knack.log import get_logger

logger = get_logger(__name__)

DEFAULT_BIND = '127.0.0.1'


def validate_remote_connection_create(namespace):
    _validate_ids(namespace)
    _validate_one_instance(namespace, 'create opens one tunnel to one instance')
    _validate_port(namespace.port, '--port', allow_zero=True)
    _validate_port(namespace.target_port, '--target-port', allow_zero=False)
    _validate_timeout(namespace)
    _validate_stdio(namespace)
    _validate_background(namespace)
    _validate_bind(namespace)
    _validate_instance_and_slot(namespace)


def validate_remote_connection_close(namespace):
    chosen = [option for option, value in (('--port', namespace.port), ('--pid', namespace.pid),
                                           ('--all', namespace.close_all or None)) if value is not None]
    if len(chosen) != 1:
        raise RequiredArgumentMissingError(
            'Name the background tunnel to close with one of --port, --pid or --all'
            + (f', not {" and ".join(chosen)} together.' if chosen else '.'))
    _validate_port(namespace.port, '--port', allow_zero=False)
    if namespace.pid is not None and namespace.pid <= 0:
        raise InvalidArgumentValueError(f'--pid {namespace.pid} is not a process id. Use the pid '
                                        '`create --background` printed.')


def validate_remote_connection_ssh(namespace):
    _validate_ids(namespace)
    _validate_instance_and_slot(namespace)


def validate_remote_connection_ssh_config(namespace):
    _validate_ids(namespace)
    _validate_one_instance(namespace, 'a Host block leads to one instance')
    _validate_instance_and_slot(namespace)
    if namespace.host is not None and (not namespace.host.strip() or any(c.isspace() or c in '*?!,#"'
                                                                         for c in namespace.host)):
        raise InvalidArgumentValueError(
            f'--host {namespace.host!r} cannot name an ssh_config Host. Use one word without spaces, '
            'wildcards (* ? !), commas or quotes, such as my-app.')


def validate_remote_connection_browse(namespace):
    _validate_ids(namespace)
    _validate_one_instance(namespace, 'a browser page shows one instance')
    _validate_instance_and_slot(namespace)


def validate_remote_connection_exec(namespace):
    _validate_ids(namespace)
    _validate_instance_and_slot(namespace)
    _validate_shell(namespace)
    value = namespace.instance
    if value is not None and (value.strip().lower() == 'all' or ',' in value) and not namespace.command_args:
        raise InvalidArgumentValueError(
            f'--instance {value} runs one command on several instances, so it needs the command after `--` (for '
            f'example `--instance {value} -- uptime`). An interactive shell reaches one instance: name it with '
            '--instance NAME (list them with `az webapp list-instances`), or leave --instance out.')


def _validate_shell(namespace):
    if namespace.shell is not None and (not namespace.shell.startswith('/') or any(
            c.isspace() or not c.isprintable() for c in namespace.shell)):
        raise InvalidArgumentValueError(
            f'--shell {namespace.shell!r} is not an absolute path. Give the path of the shell in the container, '
            'such as /bin/sh or /bin/bash.')


def validate_remote_connection_cp(namespace):
    """SOURCE and DESTINATION: exactly one of them in the container (`:/path` or `APP:/path`); the
    APP part names the app when --name does not (or must agree with it)."""
    from azext_webapp._copy import parse_location
    if len(namespace.paths or []) != 2:
        raise InvalidArgumentValueError(
            f'cp takes two paths, SOURCE and DESTINATION ({len(namespace.paths or [])} given), for example '
            '`cp -g GROUP -n APP ./app.log :/home/LogFiles/`.')
    remote = [(which, parse_location(text)) for which, text in zip(('SOURCE', 'DESTINATION'), namespace.paths)]
    remote = [(which, location) for which, location in remote if location is not None]
    example = ('for example `cp -g GROUP -n APP ./app.log :/home/LogFiles/app.log` (upload) or `cp -g GROUP '
               'APP:/home/site/wwwroot/app.py .` (download)')
    if len(remote) != 1:
        words = 'Both are' if remote else 'Neither is'
        raise InvalidArgumentValueError(
            f'{words} a path in the container: name exactly one of SOURCE and DESTINATION as `:/path` or '
            f'`APP:/path`, {example}.')
    which, location = remote[0]
    if not location.path.startswith('/'):
        raise InvalidArgumentValueError(
            f'{which} {location!r} is not an absolute path in the container: write it as `:/path` or `APP:/path`, '
            f'{example}.')
    if location.app:
        if namespace.name and namespace.name != location.app and not getattr(namespace, 'ids', None):
            raise InvalidArgumentValueError(
                f'{which} names the app {location.app!r} but --name is {namespace.name!r}. Name one app: leave '
                f'--name out, or write the container path as `:{location.path}`.')
        namespace.name = namespace.name or location.app
    elif not namespace.name and not getattr(namespace, 'ids', None):
        raise InvalidArgumentValueError(
            f'{which} `:{location.path}` is in the container of the app named by --name (or --ids); give it, or '
            f'write `APP:{location.path}`.')
    _validate_ids(namespace)
    _validate_one_instance(namespace, 'cp copies to or from one instance')
    _validate_instance_and_slot(namespace)


def _validate_ids(namespace):
    """--ids: one app or slot ID becomes --resource-group, --name, --slot and the subscription."""
    ids = getattr(namespace, 'ids', None)
    if not ids:
        missing = [option for option, value in (('--resource-group', namespace.resource_group_name),
                                                ('--name', namespace.name)) if not value]
        if missing:
            raise RequiredArgumentMissingError(
                f'({" ".join(missing)} | --ids) are required: name the app with --resource-group and --name, '
                'or give its resource ID with --ids.')
        return
    from azure.mgmt.core.tools import is_valid_resource_id, parse_resource_id
    if len(ids) != 1:
        raise InvalidArgumentValueError(
            f'--ids has {len(ids)} resource IDs, but the command works on one app or slot. Give one ID, or run '
            'the command once per app.')
    parts = parse_resource_id(ids[0]) if is_valid_resource_id(ids[0]) else {}
    is_site = (parts.get('namespace', '').lower() == 'microsoft.web' and parts.get('type', '').lower() == 'sites'
               and parts.get('child_type_1', 'slots').lower() == 'slots' and 'child_type_2' not in parts)
    if not is_site or not parts.get('resource_group'):
        raise InvalidArgumentValueError(
            f'--ids {ids[0]} is not the resource ID of a web app or slot. Use the ID that '
            '`az webapp show -g GROUP -n APP --query id -o tsv` prints (for a slot, '
            '`az webapp deployment slot list -g GROUP -n APP --query [].id -o tsv`).')
    for option, value in (('--resource-group', namespace.resource_group_name), ('--name', namespace.name),
                          ('--slot', namespace.slot)):
        if value:
            logger.warning("option '%s' will be ignored due to use of '--ids'.", option)
    namespace.resource_group_name = parts['resource_group']
    namespace.name = parts['name']
    namespace.slot = parts.get('child_name_1')
    cmd = getattr(namespace, 'cmd', None)
    if cmd is not None and parts.get('subscription'):
        cmd.cli_ctx.data['subscription_id'] = parts['subscription']


def _validate_one_instance(namespace, why):
    value = namespace.instance
    if value is not None and (value.strip().lower() == 'all' or ',' in value):
        raise InvalidArgumentValueError(
            f'--instance {value}: {why}. Name one instance (list them with `az webapp list-instances`); to run a '
            'command on several instances at once, use `az webapp remote-connection ssh --instance all -- CMD`.')


def validate_remote_connection_doctor(namespace):
    _validate_ids(namespace)
    _validate_instance_and_slot(namespace)


def _validate_instance_and_slot(namespace):
    if namespace.instance is not None and not namespace.instance.strip():
        raise InvalidArgumentValueError(
            '--instance is empty. List the instance names with `az webapp list-instances`, or leave it out.')
    if namespace.slot is not None and not namespace.slot.strip():
        raise InvalidArgumentValueError(
            '--slot is empty. List the slots with `az webapp deployment slot list`, or leave it out.')


def _validate_stdio(namespace):
    if not namespace.stdio:
        return
    given = [option for option, value in (('--port', namespace.port), ('--timeout', namespace.timeout),
                                          ('--bind', None if namespace.bind == DEFAULT_BIND else namespace.bind))
             if value is not None]
    if given:
        raise InvalidArgumentValueError(
            f'--stdio relays standard input and output and opens no local port, so {", ".join(given)} '
            'cannot be used with it. Leave them out, or leave out --stdio to listen on a port.')


def _validate_background(namespace):
    if namespace.stdio and (namespace.background or namespace.ready_file):
        option = '--background' if namespace.background else '--ready-file'
        raise InvalidArgumentValueError(
            f'--stdio relays standard input and output and opens no local port, so {option} cannot be used '
            'with it.')
    if namespace.background and namespace.ready_file:
        raise InvalidArgumentValueError(
            '--background keeps the tunnel\'s record in its own place (`az webapp remote-connection close` finds '
            'it there), so --ready-file cannot be used with it. With -o json, --background prints the record.')
    if namespace.ready_file:
        directory = os.path.dirname(os.path.abspath(namespace.ready_file))
        if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
            raise InvalidArgumentValueError(
                f'--ready-file {namespace.ready_file}: the directory {directory} does not exist or cannot be '
                'written to.')
        if os.path.isdir(namespace.ready_file):
            raise InvalidArgumentValueError(
                f'--ready-file {namespace.ready_file} is a directory: give the path of a file for the tunnel to '
                'write once its port is open.')
        namespace.ready_file = os.path.abspath(namespace.ready_file)


def _validate_port(value, option, allow_zero):
    if value is None:
        return
    low = 0 if allow_zero else 1
    if not low <= value <= 65535:
        hint = ' or 0 (or leave it out) for a free port' if allow_zero else ''
        raise InvalidArgumentValueError(
            f'{option} {value} is not a valid TCP port. Use a number from 1 to 65535{hint}.')


def _validate_timeout(namespace):
    if namespace.timeout is not None and namespace.timeout <= 0:
        raise InvalidArgumentValueError(
            f'--timeout {namespace.timeout} is not a positive number of seconds. '
            'Give the number of seconds the tunnel should stay open, or leave it out to run until Ctrl+C.')


def _validate_bind(namespace):
    if namespace.bind is None:
        namespace.bind = DEFAULT_BIND
        return
    try:
        address = ipaddress.ip_address(namespace.bind.strip('[]'))
    except ValueError:
        raise InvalidArgumentValueError(
            f'--bind {namespace.bind} is not an IP address. Use a local address such as 127.0.0.1 or ::1.'
        ) from None
    namespace.bind = str(address)
    problem = address_problem(namespace.bind)
    if problem:
        raise InvalidArgumentValueError(
            f'Cannot listen on --bind {namespace.bind}: it is not an address of this machine ({problem}). Use one '
            'of its addresses: 127.0.0.1 or ::1 (this machine only), or 0.0.0.0 (every IPv4 address).')
    if not address.is_loopback:
        logger.warning('Listening on %s: other machines that can reach this address can use the tunnel '
                       'to reach the container. Use --bind 127.0.0.1 to keep it local.', address)


def address_problem(bind):
    """Why nothing can listen on the address bind (on any port), or None when something can."""
    import socket
    try:
        infos = socket.getaddrinfo(bind, 0, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.bind(infos[0][4])
    except OSError as err:
        return (err.strerror or str(err)).rstrip('.')
    return None


SSH_COMMAND = 'webapp remote-connection ssh'
# az's own options on every command (knack strips none of them before parsing).
_GLOBAL_FLAGS = {'--debug', '--verbose', '--only-show-errors', '--help', '-h'}
_GLOBAL_WITH_VALUE = {'--output', '-o', '--query', '--subscription'}
_OUTPUT_FORMATS = {'json', 'jsonc', 'yaml', 'yamlc', 'table', 'tsv', 'none'}


def hint_ssh_options(cli_ctx, **kwargs):
    """Before az parses `az webapp remote-connection ssh ...`: ssh's own options typed without `--`
    (-L 8080:localhost:80, -v, -i KEY, -o Option=value) would become az's "unrecognized arguments"
    (or be read as az's -i/--instance, -o/--output); say where they go instead."""
    args = list(kwargs.get('args') or [])
    if [arg.lower() for arg in args[:3]] != SSH_COMMAND.split():
        return
    before = args[3:args.index('--')] if '--' in args else args[3:]
    subparser = getattr(getattr(getattr(cli_ctx, 'invocation', None), 'parser', None), 'subparser_map', {})
    subparser = subparser.get(SSH_COMMAND) if isinstance(subparser, dict) else None
    actions = getattr(subparser, '_option_string_actions', {}) if subparser is not None else {}
    stray = _stray_ssh_options(before, actions)
    if not stray:
        return
    from azure.cli.core.azclierror import UnrecognizedArgumentError
    words = ' '.join(stray)
    raise UnrecognizedArgumentError(
        f"{words}: az reads the words before `--` as its own arguments. Put ssh's options and the remote command "
        f'after `--`, e.g. `az webapp remote-connection ssh -g GROUP -n APP -- {words}`.')


def _stray_ssh_options(words, actions):
    """The words az would not read as the ssh command's own options (with their values)."""
    stray = []
    i = 0
    while i < len(words):
        word = words[i]
        option = word.split('=', 1)[0] if word.startswith('--') else word
        action = actions.get(option)
        takes_value = (action.nargs != 0) if action is not None else option in _GLOBAL_WITH_VALUE
        known = action is not None or option in _GLOBAL_FLAGS or option in _GLOBAL_WITH_VALUE
        if not word.startswith('-') or word == '-':
            i += 1
            continue
        value = word.split('=', 1)[1] if '=' in word and word.startswith('--') else (
            words[i + 1] if i + 1 < len(words) else '')
        consumed = 1 if '=' in word and word.startswith('--') else 2
        if known and not takes_value:
            i += 1
        elif known and option in ('-o', '--output') and value not in _OUTPUT_FORMATS:
            stray += words[i:i + consumed]  # ssh's -o Option=value
            i += consumed
        elif known and option in ('-i', '--instance') and _looks_like_a_key_file(value):
            stray += words[i:i + consumed]  # ssh's -i KEY
            i += consumed
        elif known:
            i += consumed
        else:
            stray.append(word)  # and its value, when it has one, is the next word
            if len(word) == 2 and word[1] in 'BbcDEeFIiJLlmOoPpQRSWw' and i + 1 < len(words):
                stray.append(words[i + 1])
                i += 1
            i += 1
    return stray


def _looks_like_a_key_file(value):
    import os
    return bool(value) and ('/' in value or '\\' in value or value.startswith('~')
                            or os.path.isfile(os.path.expanduser(value)))
