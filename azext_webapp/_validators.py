"""Argument checks for ``az webapp remote-connection create``; each error says what to do next."""

import ipaddress

from azure.cli.core.azclierror import InvalidArgumentValueError
from knack.log import get_logger

logger = get_logger(__name__)

DEFAULT_BIND = '127.0.0.1'


def validate_remote_connection_create(namespace):
    _validate_port(namespace.port, '--port', allow_zero=True)
    _validate_port(namespace.target_port, '--target-port', allow_zero=False)
    _validate_timeout(namespace)
    _validate_bind(namespace)
    if namespace.instance is not None and not namespace.instance.strip():
        raise InvalidArgumentValueError(
            '--instance is empty. List the instance names with `az webapp list-instances`, or leave it out.')
    if namespace.slot is not None and not namespace.slot.strip():
        raise InvalidArgumentValueError(
            '--slot is empty. List the slots with `az webapp deployment slot list`, or leave it out.')


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
