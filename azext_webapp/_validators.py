"""Argument checks for ``az webapp remote-connection``; each error says what to do next."""

import ipaddress

from azure.cli.core.azclierror import InvalidArgumentValueError
from knack.log import get_logger

logger = get_logger(__name__)

DEFAULT_BIND = '127.0.0.1'


def validate_remote_connection_create(namespace):
    _validate_port(namespace.port, '--port', allow_zero=True)
    _validate_port(namespace.target_port, '--target-port', allow_zero=False)
    _validate_timeout(namespace)
    _validate_stdio(namespace)
    _validate_bind(namespace)
    _validate_instance_and_slot(namespace)


def validate_remote_connection_ssh(namespace):
    _validate_instance_and_slot(namespace)


def validate_remote_connection_ssh_config(namespace):
    _validate_instance_and_slot(namespace)
    if namespace.host is not None and (not namespace.host.strip() or any(c.isspace() or c in '*?!,#"'
                                                                         for c in namespace.host)):
        raise InvalidArgumentValueError(
            f'--host {namespace.host!r} cannot name an ssh_config Host. Use one word without spaces, '
            'wildcards (* ? !), commas or quotes, such as my-app.')


def validate_remote_connection_doctor(namespace):
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
    if not address.is_loopback:
        logger.warning('Listening on %s: other machines that can reach this address can use the tunnel '
                       'to reach the container. Use --bind 127.0.0.1 to keep it local.', address)
