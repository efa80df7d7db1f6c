"""From an app to a running, checked tunnel: the engine, the SCM site's readiness (GetStatus), one
real handshake, token renewal, and what the tunnel says about its connections once open."""

import contextlib
import signal
import threading
import time

from azure.cli.core.azclierror import CLIInternalError, UnclassifiedUserFault, ValidationError
from knack.log import get_logger

from azext_webapp import ssh
from azext_webapp._arm import arm_call, locate, scm_credential, site_op, web_client
from azext_webapp._errors import (bind_error, describe, doctor_command, first_line, stopped_message, tunnel_error,
                                  unreachable_message)
from azext_webapp._events import EventReporter
from azext_webapp._renewal import TokenRenewal
from azext_webapp.ssh import SSH_PORT

logger = get_logger(__name__)

PROBE_TIMEOUT = 30.0            # seconds for each SCM probe and for the handshake check
STARTING_POLL_INTERVAL = 1.0    # the reference polls GetStatus once a second ...
STARTING_MAX_WAIT = 60.0        # ... about 60 times
STARTING_PROGRESS_EVERY = 5.0


class Endpoint:  # pylint: disable=too-few-public-methods
    """Everything needed to open tunnels to one app. ``authorization`` is dropped once the engine
    holds it; ``repr`` never shows it."""

    def __init__(self, tunnel, target, scm_url, credential, instance, target_port, debugging, config_dir):
        self.tunnel = tunnel
        self.target = target
        self.scm_url = scm_url
        self.authorization = credential.authorization
        self.auth_kind = credential.kind
        self.credential = credential
        self.config_dir = config_dir
        self.instance = instance
        self.target_port = target_port
        self.debugging = debugging

    def __repr__(self):
        return f'<Endpoint {self.scm_url} auth={self.auth_kind} instance={self.instance}>'


def resolve(cmd, target, instance=None, target_port=None):
    """ARM: the Linux app's SCM URL, the instance check, remote debugging, the SCM credentials."""
    tunnel = load_engine()
    client = web_client(cmd.cli_ctx)
    scm_url = locate(client, target, instance)
    config = arm_call(target, 'read the configuration of', site_op(client, 'get_configuration', target))
    debugging = bool(getattr(config, 'remote_debugging_enabled', False))
    credential = scm_credential(cmd.cli_ctx, client, target)
    logger.info('Authenticating to the SCM site %s with %s auth', scm_url, credential.kind)
    return Endpoint(tunnel, target, scm_url, credential, instance, target_port, debugging,
                    cmd.cli_ctx.config.config_dir)


def load_engine():
    from azext_webapp._native import EngineUnavailableError
    try:
        from azext_webapp import tunnel
    except EngineUnavailableError as err:  # WEBAPP_ENGINE=native where the native engine cannot load
        raise UnclassifiedUserFault(str(err)) from None
    except ImportError as err:
        raise CLIInternalError(
            f'The tunnel engine of the webapp extension could not be loaded ({first_line(err)}). Reinstall '
            'the extension with `az extension remove --name webapp` and `az extension add --name webapp`.') from None
    logger.info('Tunnel engine: %s (%s)', tunnel.ENGINE, tunnel.ENGINE_REASON)
    return tunnel


@contextlib.contextmanager
def open_tunnel(endpoint, bind='127.0.0.1', port=None, listen=True):
    """Start the engine (a busy --port fails before any waiting), wake the SCM site, wait until
    GetStatus is ready, make one real handshake; yield (engine, container port); always stop."""
    tunnel, target = endpoint.tunnel, endpoint.target
    engine = renewal = None
    try:
        try:
            options = {'bind': bind, 'port': port or 0} if listen else {'listen': False}
            engine = tunnel.Tunnel(scm_url=endpoint.scm_url, authorization=endpoint.authorization,
                                   instance=endpoint.instance, target_port=endpoint.target_port,
                                   on_event=event_reporter(endpoint), **options)
            engine.start()
            if listen:
                logger.info('Listening on %s port %d', bind, engine.port)
            wake_scm(tunnel, endpoint.scm_url, endpoint.authorization, target)
            remote_port = wait_until_ready(endpoint)
            endpoint.authorization = None
            engine.check(timeout=PROBE_TIMEOUT)
        except tunnel.TunnelError as err:
            if err.kind == 'bind' and listen:
                from azext_webapp._validators import address_problem
                raise bind_error(err.reason, err.facts, address_problem(bind)) from None
            raise tunnel_error(err.reason, err.facts, endpoint) from None
        if endpoint.credential.renew:
            renewal = TokenRenewal(endpoint.credential.renew, engine.set_authorization,
                                   endpoint.credential.expires_on).start()
        yield engine, remote_port
    finally:
        if renewal is not None:
            renewal.stop()
        if engine is not None:
            stop_tunnel(engine)


def wake_scm(tunnel, scm_url, authorization, target):
    """GET /api/settings wakes the SCM site, as the reference does; only hard failures stop here."""
    try:
        tunnel.warm_up(scm_url, authorization, timeout=PROBE_TIMEOUT)
    except tunnel.TunnelError as err:
        if err.kind in ('http', 'timeout'):
            logger.info('Waking the SCM site of %s did not answer as expected (%s); probing anyway.',
                        describe(target), first_line(err))
            return
        raise


def wait_until_ready(endpoint):
    """Poll GetStatus (v2) with the reference's outcomes; returns the container port reported."""
    tunnel, target, target_port = endpoint.tunnel, endpoint.target, endpoint.target_port
    started = time.monotonic()
    next_progress = started
    while True:
        status = tunnel.get_status(endpoint.scm_url, endpoint.authorization, instance=endpoint.instance,
                                   timeout=PROBE_TIMEOUT)
        state = (status.state or '').upper()
        logger.debug('GetStatus: state=%s canReachPort=%s port=%s', state, status.can_reach_port, status.port)
        if state == 'STARTED':
            if status.can_reach_port or (target_port and target_port != status.port):
                return target_port or status.port
            raise ValidationError(unreachable_message(endpoint, status.port, ssh_answered_before(endpoint))
                                  + f' `{doctor_command(target, endpoint.instance)}` checks every hop.')
        if state == 'STOPPED':
            raise ValidationError(stopped_message(target))
        waited = time.monotonic() - started
        if waited >= STARTING_MAX_WAIT:
            raise ValidationError(
                f'{describe(target, True)} did not finish starting within {int(STARTING_MAX_WAIT)} seconds. '
                f'Review its start-up logs with `az webapp log tail -g {target.resource_group} -n {target.name}`'
                ', then run this command again.')
        if time.monotonic() >= next_progress:
            if waited < 1:
                logger.warning('Waiting for %s to start up...', describe(target))
            else:
                logger.warning('Still starting after %d seconds...', int(waited))
            next_progress += STARTING_PROGRESS_EVERY
        time.sleep(STARTING_POLL_INTERVAL)


def ssh_answered_before(endpoint):
    """Whether an SSH session through this extension ever reached this app (instance): its host key
    is pinned in our known_hosts."""
    alias = ssh.host_key_alias(endpoint.scm_url, endpoint.instance)
    return ssh.known_host(ssh.known_hosts_path(endpoint.config_dir), alias)


def stop_tunnel(engine):
    # A second Ctrl+C or SIGTERM while closing must not interrupt the clean stop (< 1 s). Only the
    # main thread may set handlers (and only it receives signals): a fan-out's threads just stop.
    in_main = threading.current_thread() is threading.main_thread()
    signals = (signal.SIGINT, signal.SIGTERM) if in_main else ()
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in signals}
    try:
        engine.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    stats = engine.stats()
    logger.info('Tunnel closed: %d connections, %d bytes sent, %d bytes received, %d failed',
                stats.get('total', 0), stats.get('bytes_up', 0), stats.get('bytes_down', 0),
                stats.get('failures', 0))


def event_reporter(endpoint):
    """One warning per kind of failure once the tunnel is open, naming the instance, in the words
    `az webapp remote-connection doctor` uses for the hop that failed (the error the same failure
    gives at start, under the doctor's title for its hop)."""
    from azext_webapp._errors import after_start_warning, hop_of, silent_container_message
    target = endpoint.target

    def failure_warning(reason, facts):
        error = tunnel_error(reason, facts, endpoint)
        return after_start_warning(hop_of(reason), endpoint.instance, str(error), target)

    def silent_container():
        port = endpoint.target_port or SSH_PORT
        return after_start_warning('banner', endpoint.instance,
                                   silent_container_message(target, endpoint.instance, port), target)

    return EventReporter(failure_warning, silent_container)
