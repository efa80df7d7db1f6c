"""``az webapp remote-connection create``: ARM look-ups, auth choice, GetStatus, then the tunnel.

The flow follows azure-cli's ``create_tunnel`` (appservice module) and PROTOCOL.md section 1;
the relay itself is the native engine behind ``azext_webapp.tunnel``. Credentials never leave
this process except in the Authorization header the engine sends to the SCM site: they are not
logged, not shown under --debug and not passed to any other program.
"""

import base64
import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections import namedtuple

from azure.cli.core.azclierror import (AzureConnectionError, AzureResponseError, CLIInternalError, ForbiddenError,
                                       InvalidArgumentValueError, ResourceNotFoundError, UnauthorizedError,
                                       UnclassifiedUserFault, ValidationError)
from knack.log import get_logger

logger = get_logger(__name__)

# The built-in images' sshd (seed document): root with a well-known password, reachable only
# through the tunnel.
SSH_USER = 'root'
SSH_PASSWORD = 'Docker!'
SSH_PORT = 2222

PROBE_TIMEOUT = 30.0            # seconds for each SCM probe and for the handshake check
STARTING_POLL_INTERVAL = 1.0    # the reference polls GetStatus once a second ...
STARTING_MAX_WAIT = 60.0        # ... about 60 times
STARTING_PROGRESS_EVERY = 5.0

AUTH_BASIC = 'Basic'
AUTH_BEARER = 'Bearer'

# What the command works on: the app (and slot) as named on the command line.
_Target = namedtuple('_Target', 'resource_group name slot')


class _Terminated(Exception):
    """Raised from the SIGTERM handler (and SIGHUP's, with --stdio) so that the main thread leaves the wait."""


def create_remote_connection(cmd, resource_group_name, name, port=None, slot=None, instance=None,
                             timeout=None, bind='127.0.0.1', target_port=None, stdio=False):
    target = _Target(resource_group_name, name, slot)
    if stdio:
        _stdio_connection(cmd, target, instance, target_port)
        return
    with _sigterm_raises():
        try:
            _remote_connection(cmd, target, port, instance, timeout, bind, target_port)
        except KeyboardInterrupt:
            logger.warning('Closed (Ctrl+C).')
        except _Terminated:
            logger.warning('Closed (SIGTERM).')


@contextlib.contextmanager
def _sigterm_raises(signals=(signal.SIGTERM,)):
    def on_signal(signum, frame):  # pylint: disable=unused-argument
        raise _Terminated()

    previous = {sig: signal.signal(sig, on_signal) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _remote_connection(cmd, target, port, instance, timeout, bind, target_port):
    endpoint = _resolve(cmd, target, instance, target_port)
    with _open_tunnel(endpoint, bind=bind, port=port) as (engine, remote_port):
        _print_ready(engine.port, bind, endpoint.debugging, target_port, remote_port)
        # Returns on --timeout; Ctrl+C (KeyboardInterrupt) and SIGTERM (_Terminated) leave it by exception.
        serving_since = time.monotonic()
        engine.serve(timeout=timeout)
        if timeout and time.monotonic() - serving_since >= timeout - 0.5:
            logger.warning('Closing the tunnel: the --timeout of %d seconds has passed.', timeout)
        else:
            raise CLIInternalError('The tunnel stopped unexpectedly. Run the command again; add --debug to see '
                                   'why, and report it if it happens again.')


# ---------------------------------------------------------------------------------------------
# The flow every command shares: app -> SCM URL and credentials (ARM), then a started engine whose
# endpoint answers (GetStatus ready, one handshake).


class _Endpoint:  # pylint: disable=too-few-public-methods
    """Everything needed to open tunnels to one app. ``authorization`` is dropped once the engine
    holds it; ``repr`` never shows it."""

    def __init__(self, tunnel, target, scm_url, authorization, auth_kind, instance, target_port, debugging):
        self.tunnel = tunnel
        self.target = target
        self.scm_url = scm_url
        self.authorization = authorization
        self.auth_kind = auth_kind
        self.instance = instance
        self.target_port = target_port
        self.debugging = debugging

    def __repr__(self):
        return f'<_Endpoint {self.scm_url} auth={self.auth_kind} instance={self.instance}>'


def _resolve(cmd, target, instance=None, target_port=None):
    """ARM: the Linux app's SCM URL, the instance check, remote debugging, the SCM credentials."""
    tunnel = _load_engine()
    client = _web_client(cmd.cli_ctx)
    scm_url = _locate(client, target, instance)
    config = _arm(target, 'read the configuration of', _site_op(client, 'get_configuration', target))
    debugging = bool(getattr(config, 'remote_debugging_enabled', False))
    authorization, auth_kind = _scm_authorization(cmd.cli_ctx, client, target)
    logger.info('Authenticating to the SCM site %s with %s auth', scm_url, auth_kind)
    return _Endpoint(tunnel, target, scm_url, authorization, auth_kind, instance, target_port, debugging)


def _locate(client, target, instance):
    """The SCM URL of a Linux app that is not stopped (the checks the reference makes first), and
    the check that --instance names one of its instances."""
    scm_url = _linux_scm_url(client, target)
    if instance is not None:
        _check_instance(client, target, instance)
    return scm_url


def _linux_scm_url(client, target):
    site = _arm(target, None, _site_op(client, 'get', target))
    if not site.reserved:
        raise ValidationError(
            f"{_describe(target, True)} runs on a Windows App Service plan; remote connections need App Service "
            "on Linux (Only Linux App Service Plans supported). For a Windows app use the Kudu console of "
            "its SCM site instead.")
    if (site.state or '').lower() == 'stopped':
        raise ValidationError(_stopped_message(target))
    return _scm_url(site, target)


@contextlib.contextmanager
def _open_tunnel(endpoint, bind='127.0.0.1', port=None, listen=True):
    """Start the engine (a busy --port fails before any waiting), wake the SCM site, wait until
    GetStatus is ready, make one real handshake; yield (engine, container port); always stop."""
    tunnel, target = endpoint.tunnel, endpoint.target
    engine = None
    try:
        try:
            options = {'bind': bind, 'port': port or 0} if listen else {'listen': False}
            engine = tunnel.Tunnel(scm_url=endpoint.scm_url, authorization=endpoint.authorization,
                                   instance=endpoint.instance, target_port=endpoint.target_port,
                                   on_event=_log_event, **options)
            engine.start()
            if listen:
                logger.info('Listening on %s port %d', bind, engine.port)
            _wake_scm(tunnel, endpoint.scm_url, endpoint.authorization, target)
            remote_port = _wait_until_ready(tunnel, endpoint.scm_url, endpoint.authorization, target,
                                            endpoint.instance, endpoint.target_port, endpoint.debugging)
            endpoint.authorization = None
            engine.check(timeout=PROBE_TIMEOUT)
        except tunnel.TunnelError as err:
            raise _tunnel_error(err, endpoint.auth_kind, target, endpoint.scm_url) from None
        yield engine, remote_port
    finally:
        if engine is not None:
            _stop(engine)


def _stdio_connection(cmd, target, instance, target_port):
    """--stdio (OpenSSH's ProxyCommand): standard input and output are the one connection, relayed
    by native threads through one WebSocket; only tunnel bytes go to stdout. Ends when either side
    ends (stdin EOF closes the WebSocket; the WebSocket's end closes stdout)."""
    endpoint = _resolve(cmd, target, instance, target_port)
    # ssh ends its ProxyCommand with SIGHUP: close the WebSocket cleanly, and quietly.
    with _sigterm_raises((signal.SIGTERM, signal.SIGHUP)):
        try:
            with _open_tunnel(endpoint, listen=False) as (engine, _):
                engine.relay_stdio(sys.stdin.fileno(), sys.stdout.fileno())
        except (KeyboardInterrupt, _Terminated):
            pass


# ---------------------------------------------------------------------------------------------
# az webapp remote-connection ssh: the system OpenSSH through a tunnel that lives as long as it


def ssh_remote_connection(cmd, resource_group_name, name, slot=None, instance=None, ssh_args=None):
    from azext_webapp import ssh
    ssh_path = _ssh_program('ssh')
    target = _Target(resource_group_name, name, slot)
    endpoint = _resolve(cmd, target, instance)
    if endpoint.debugging:
        raise ValidationError(_debugging_message(target, 'ssh'))
    known_hosts = ssh.known_hosts_file(cmd.cli_ctx.config.config_dir)
    alias = ssh.host_key_alias(endpoint.scm_url, instance)
    options, _ = ssh.split_ssh_args(ssh_args)
    with _open_tunnel(endpoint) as (engine, _):
        argv = ssh.ssh_argv(ssh_path, engine.port, alias, known_hosts, ssh_args)
        with ssh.AskpassDir(wanted=not ssh.has_own_identity(options)) as askpass:
            code = _run_owning_terminal(argv, ssh.ssh_env(askpass.path))
        if code == 255 and ssh.host_key_changed(engine.port, alias, known_hosts):
            raise ValidationError(
                f'Refused: the SSH host key of {_describe(target)} is not the one recorded in {known_hosts} '
                f'(as {alias}). Someone may be intercepting the connection, or the container was rebuilt '
                'with new host keys. If you know why it changed, remove the old key with '
                f'`ssh-keygen -R {alias} -f {known_hosts}` and run the command again.')
    if code:
        sys.exit(code)


def _ssh_program(name):
    path = shutil.which(name)
    if not path:
        raise ValidationError(
            f'The OpenSSH client ({name}) was not found on PATH. Install it (Debian/Ubuntu: '
            '`apt-get install openssh-client`), or open a tunnel with `az webapp remote-connection create` '
            'and connect with the client you have.')
    return path


def _run_owning_terminal(argv, env):
    """Run argv in our process group (so it gets the terminal's signals and owns the terminal) and
    return its exit status. Ctrl+C belongs to the child: our handler only keeps az alive until the
    child ends (a Python handler, unlike SIG_IGN, is not inherited through exec). SIGTERM and SIGHUP
    sent to az are passed on."""
    logger.info('Running %s', ' '.join(argv))
    child = None

    def forward(signum, frame):  # pylint: disable=unused-argument
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    handlers = {signal.SIGINT: lambda signum, frame: None, signal.SIGTERM: forward, signal.SIGHUP: forward}
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        child = subprocess.Popen(argv, env=env)  # pylint: disable=consider-using-with
        return _exit_status(child.wait())  # a signal runs its handler, then the wait goes on (PEP 475)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _exit_status(returncode):
    return 128 - returncode if returncode < 0 else returncode  # killed by signal N: as a shell says


def _debugging_message(target, command):
    return (f'Remote debugging is enabled for {_describe(target)}, so its tunnel leads to the debugger, not to '
            f'SSH; `az webapp remote-connection {command}` needs SSH. Turn remote debugging off '
            f'(`az webapp config set -g {target.resource_group} -n {target.name} --remote-debugging-enabled '
            'false`), or use `az webapp remote-connection create` for the debugger.')


# ---------------------------------------------------------------------------------------------
# az webapp remote-connection ssh-config


def ssh_config_remote_connection(cmd, resource_group_name, name, slot=None, instance=None, host=None,
                                 file=None):
    from azext_webapp import ssh
    target = _Target(resource_group_name, name, slot)
    scm_url = _locate(_web_client(cmd.cli_ctx), target, instance)
    host = host or (f'{name}-{slot}' if slot else name)
    known_hosts = ssh.known_hosts_file(cmd.cli_ctx.config.config_dir)
    block = ssh.config_block(host, resource_group_name, name, ssh.host_key_alias(scm_url, instance), known_hosts,
                             slot=slot, instance=instance)
    if not file:
        print(block, end='', flush=True)
        return
    outcome = ssh.update_config_file(file, block, host)
    logger.warning("%s the Host block '%s' in %s. Connect with: ssh %s", _OUTCOME_WORDS[outcome], host, file,
                   host)


_OUTCOME_WORDS = {'added': 'Added', 'updated': 'Updated', 'unchanged': 'Already up to date:'}


def _load_engine():
    from azext_webapp._native import EngineUnavailableError
    try:
        from azext_webapp import tunnel
    except EngineUnavailableError as err:  # no build for this platform, or a system library missing
        raise UnclassifiedUserFault(str(err)) from None
    except ImportError as err:
        raise CLIInternalError(
            f'The tunnel engine of the webapp extension could not be loaded ({_first_line(err)}). It is built '
            'for 64-bit x86 Linux (glibc) with OpenSSL 3 and libcurl installed; reinstall the extension with '
            '`az extension remove --name webapp` and `az extension add --name webapp`.') from None
    return tunnel


# ---------------------------------------------------------------------------------------------
# ARM (Microsoft.Web) through the SDK client az ships


def _web_client(cli_ctx):
    from azure.cli.command_modules.appservice._client_factory import web_client_factory
    return web_client_factory(cli_ctx)


def _site_op(client, operation, target, **kwargs):
    """A call of ``client.web_apps.<operation>`` (or its ``_slot`` form) for the target."""
    if target.slot:
        method = getattr(client.web_apps, operation + '_slot')
        return lambda: method(target.resource_group, target.name, target.slot, **kwargs)
    method = getattr(client.web_apps, operation)
    return lambda: method(target.resource_group, target.name, **kwargs)


def _arm(target, action, call):
    """Run an ARM call; turn its failures into one line that says what to do.

    action: what the call does, completed by the target ("read the configuration of"); None for
    reading the site itself."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError
    try:
        return call()
    except HttpResponseError as err:
        raise _arm_error(err, target, action) from None
    except ServiceRequestError as err:
        raise AzureConnectionError(
            f'Cannot reach Azure Resource Manager to {_action(action, target)}: {_first_line(err)}. '
            'Check your network connection and proxy settings (HTTPS_PROXY).') from None


def _arm_error(err, target, action):
    status = err.status_code
    code = getattr(getattr(err, 'error', None), 'code', None) or ''
    message = _first_line(getattr(getattr(err, 'error', None), 'message', None) or err.message or '')
    group = target.resource_group
    what = _action(action, target)
    if status == 404:
        if code == 'ResourceGroupNotFound':
            return ResourceNotFoundError(
                f"Resource group '{group}' was not found in the current subscription. Check the name with "
                "`az group list -o table`, or choose the subscription with --subscription.")
        if action is None and target.slot:
            return ResourceNotFoundError(
                f"Slot '{target.slot}' of app '{target.name}' was not found in resource group '{group}'. "
                f"List the slots with `az webapp deployment slot list -g {group} -n {target.name}`.")
        if action is None:
            return ResourceNotFoundError(
                f"App '{target.name}' was not found in resource group '{group}'. "
                f"List the apps with `az webapp list -g {group} --query [].name -o tsv`.")
        return ResourceNotFoundError(f'Could not {what}: {message or "not found"}.')
    if status == 401:
        return UnauthorizedError(
            f'Azure Resource Manager rejected your sign-in when trying to {what} (HTTP 401). '
            'Sign in again with `az login`.')
    if status == 403:
        return ForbiddenError(
            f"You have no permission to {what} (HTTP 403{', ' + code if code else ''}). "
            'Ask an owner of the app for a role such as Website Contributor, or sign in with another '
            'account (`az login`) or subscription (--subscription).')
    return AzureResponseError(
        f'Azure Resource Manager could not {what}: HTTP {status} {code + " " if code else ""}{message}'.rstrip())


def _action(action, target):
    return f'{action or "read"} {_describe(target)}'


def _scm_url(site, target):
    """The SCM (Kudu) host from the Repository host-name state: right for slots, ASEs and clouds."""
    for state in site.host_name_ssl_states or []:
        if (state.host_type or '').lower() == 'repository' and state.name:
            return 'https://' + state.name
    raise ResourceNotFoundError(
        f'{_describe(target, True)} has no SCM (Repository) host name, so it cannot be reached for a remote '
        'connection. Check the app in the Azure portal.')


def _check_instance(client, target, instance):
    instances = _arm(target, 'list the instances of', _site_op(client, 'list_instance_identifiers', target))
    names = [item.name for item in instances]
    if instance not in names:
        known = ', '.join(names) if names else 'none'
        raise InvalidArgumentValueError(
            f"Instance '{instance}' is not an instance of {_describe(target)} (instances: {known}). "
            'Instance names are case-sensitive; list them with `az webapp list-instances`.')


def _scm_authorization(cli_ctx, client, target):
    """The Authorization header value for the SCM site and its kind, as the reference chooses it."""
    policy = _scm_basic_policy(client, target)
    if policy:
        # logging_enable=False: az's --debug trace would print the response body, which holds the
        # publishing password.
        list_credentials = _site_op(client, 'begin_list_publishing_credentials', target, logging_enable=False)
        user_password = _arm(target, 'read the publishing credentials of', lambda: list_credentials().result())
        raw = f'{user_password.publishing_user_name}:{user_password.publishing_password}'.encode('utf-8')
        return 'Basic ' + base64.b64encode(raw).decode('ascii'), AUTH_BASIC
    return 'Bearer ' + _entra_token(cli_ctx), AUTH_BEARER


def _scm_basic_policy(client, target):
    from azure.core.exceptions import ResourceNotFoundError as SdkNotFound

    def allowed():
        try:
            return bool(_site_op(client, 'get_scm_allowed', target)().allow)
        except SdkNotFound:
            return True  # no policy resource (older stamps): SCM accepts Basic auth

    return _arm(target, 'read the SCM basic-auth policy of', allowed)


def _entra_token(cli_ctx):
    from azure.cli.core._profile import Profile
    from azure.cli.core.commands.client_factory import get_subscription_id
    token, _, _ = Profile(cli_ctx=cli_ctx).get_raw_token(subscription=get_subscription_id(cli_ctx))
    return token[1]


# ---------------------------------------------------------------------------------------------
# SCM probes


def _wake_scm(tunnel, scm_url, authorization, target):
    """GET /api/settings wakes the SCM site, as the reference does; only hard failures stop here."""
    try:
        tunnel.warm_up(scm_url, authorization, timeout=PROBE_TIMEOUT)
    except tunnel.TunnelError as err:
        if err.kind in ('http', 'timeout'):
            logger.info('Waking the SCM site of %s did not answer as expected (%s); probing anyway.',
                        _describe(target), _first_line(err))
            return
        raise


def _wait_until_ready(tunnel, scm_url, authorization, target, instance, target_port, debugging):
    """Poll GetStatus (v2) with the reference's outcomes; returns the container port reported."""
    started = time.monotonic()
    next_progress = started
    while True:
        status = tunnel.get_status(scm_url, authorization, instance=instance, timeout=PROBE_TIMEOUT)
        state = (status.state or '').upper()
        logger.debug('GetStatus: state=%s canReachPort=%s port=%s', state, status.can_reach_port, status.port)
        if state == 'STARTED':
            if status.can_reach_port or (target_port and target_port != status.port):
                return target_port or status.port
            raise ValidationError(_unreachable_message(target, status.port, debugging))
        if state == 'STOPPED':
            raise ValidationError(_stopped_message(target))
        waited = time.monotonic() - started
        if waited >= STARTING_MAX_WAIT:
            raise ValidationError(
                f'{_describe(target, True)} did not finish starting within {int(STARTING_MAX_WAIT)} seconds. '
                f'Review its start-up logs with `az webapp log tail -g {target.resource_group} -n {target.name}`'
                ', then run this command again.')
        if time.monotonic() >= next_progress:
            if waited < 1:
                logger.warning('Waiting for %s to start up...', _describe(target))
            else:
                logger.warning('Still starting after %d seconds...', int(waited))
            next_progress += STARTING_PROGRESS_EVERY
        time.sleep(STARTING_POLL_INTERVAL)


def _unreachable_message(target, port, debugging):
    if debugging:
        return (f"The remote debugger of {_describe(target)} does not answer on container port {port}. "
                'Make sure the app was started with remote debugging enabled, or turn remote debugging off '
                f'(`az webapp config set -g {target.resource_group} -n {target.name} --remote-debugging-enabled '
                'false`) to connect to SSH instead.')
    if port == SSH_PORT:
        return (f'SSH is not enabled for {_describe(target)}: nothing answers on container port {port}. '
                'Enable SSH in your custom container (sshd on port 2222, see '
                'https://go.microsoft.com/fwlink/?linkid=2132395), redeploy, then run this command again.')
    return (f'Nothing answers on container port {port} of {_describe(target)}. '
            'Check that the process listening on that port is running, or choose another with --target-port.')


def _stopped_message(target):
    return (f'{_describe(target, True)} is stopped; it must be running before it can accept SSH connections. '
            f'Start it with `az webapp start -g {target.resource_group} -n {target.name}'
            f'{" --slot " + target.slot if target.slot else ""}`, then run this command again '
            '(review start-up problems with `az webapp log tail`).')


# ---------------------------------------------------------------------------------------------
# Engine errors -> one actionable line


def _tunnel_error(err, auth_kind, target, scm_url):
    kind = err.kind
    detail = _first_line(err)
    if kind == 'auth':
        return _auth_error(err.status, auth_kind, target, scm_url)
    if kind == 'bind':
        return InvalidArgumentValueError(
            f'{detail}. Choose another local port with --port, or leave --port out to use a free one.')
    site = f'the SCM site {scm_url} of {_describe(target)}'
    if kind == 'tls' and 'another host' in detail:
        return AzureConnectionError(
            f'Certificate check failed for {site}: {detail}. Something between you and the app (a DNS entry or '
            'a proxy) answers for it; check your DNS and proxy settings (HTTPS_PROXY, NO_PROXY).')
    if kind == 'tls':
        return AzureConnectionError(
            f'Certificate check failed for {site}: {detail}. If a proxy or private certificate authority '
            'signs this certificate, set REQUESTS_CA_BUNDLE to a file with its CA certificate.')
    if kind == 'dns':
        return AzureConnectionError(
            f'Cannot reach {site}: {detail}. Check your network connection; an app with a private endpoint '
            'can only be reached from a network that resolves its SCM host.')
    if kind in ('connect', 'proxy', 'timeout', 'closed'):
        return AzureConnectionError(
            f'Cannot reach {site}: {detail}. Check your network connection, proxy settings (HTTPS_PROXY, '
            "NO_PROXY) and the access restrictions of the app's SCM site.")
    if kind == 'http':
        return AzureResponseError(
            f'{site[0].upper()}{site[1:]} refused the tunnel: {detail}. Try again in a minute; if it persists, '
            f'restart the app (`az webapp restart -g {target.resource_group} -n {target.name}`).')
    return AzureResponseError(f'The tunnel to {site} failed: {detail}.')


def _auth_error(status, auth_kind, target, scm_url):
    enable_basic = (f'az resource update -g {target.resource_group} --namespace Microsoft.Web --resource-type '
                    f'basicPublishingCredentialsPolicies --parent sites/{target.name}'
                    f'{"/slots/" + target.slot if target.slot else ""} --name scm --set properties.allow=true')
    if auth_kind == AUTH_BASIC:
        what = (f"The SCM site {scm_url} rejected Basic auth with the app's publishing credentials "
                f"(HTTP {status or 401})")
        advice = ('If the credentials were just reset or Basic auth was just disabled for SCM, run the command '
                  'again (without Basic auth it signs in with your Microsoft Entra token); otherwise check the '
                  "SCM site's access restrictions.")
    else:
        what = (f'The SCM site {scm_url} rejected the Microsoft Entra token of your az sign-in '
                f'(Bearer auth, HTTP {status or 401})')
        advice = ('Sign in again with `az login` with an account that has a role such as Website Contributor on '
                  f'the app, or enable Basic auth for SCM: `{enable_basic}`.')
    if status == 403:
        return ForbiddenError(f'{what}. {advice}')
    return UnauthorizedError(f'{what}. {advice}')


# ---------------------------------------------------------------------------------------------
# Running the tunnel


def _print_ready(port, bind, debugging, target_port, remote_port):
    host = _client_host(bind)
    if debugging:
        lines = [f'Port {port} is open',
                 f'Remote debugging is enabled: this tunnel is for the debugger (container port {remote_port}), '
                 'not for SSH',
                 f'Attach your debugger to {_host_port(host, port)}']
    elif target_port and target_port != SSH_PORT:
        lines = [f'Port {port} is open',
                 f'The tunnel leads to container port {target_port}',
                 f'Connect your client to {_host_port(host, port)}']
    else:
        lines = [f'Port {port} is open',
                 f'SSH is available {{ username: {SSH_USER}, password: {SSH_PASSWORD} }}',
                 f'Start your favorite client and connect to port {port}',
                 f'For example: ssh {SSH_USER}@{host} -p {port}']
    lines.append('Ctrl + C to close')
    # User output, like the reference's; flushed so that `az ... &` and pipes show it at once.
    print('\n'.join(lines), flush=True)


def _client_host(bind):
    if bind in ('0.0.0.0', ''):
        return '127.0.0.1'
    if bind == '::':
        return '::1'
    return bind


def _host_port(host, port):
    return f'[{host}]:{port}' if ':' in host else f'{host}:{port}'


def _stop(engine):
    # A second Ctrl+C or SIGTERM while closing must not interrupt the clean stop (< 1 s).
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        engine.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    for event in engine.poll_events():
        _log_event(event)
    stats = engine.stats()
    logger.info('Tunnel closed: %d connections, %d bytes sent, %d bytes received, %d failed',
                stats.get('total', 0), stats.get('bytes_up', 0), stats.get('bytes_down', 0),
                stats.get('failures', 0))


def _log_event(event):
    """--verbose logs each connection: who, when, how many bytes; never payloads or credentials."""
    if event.kind == 'opened':
        logger.info('Connection %d from %s opened', event.conn_id, event.peer)
    elif event.kind == 'closed':
        logger.info('Connection %d from %s closed: %d bytes sent, %d bytes received',
                    event.conn_id, event.peer, event.bytes_up, event.bytes_down)
    else:
        logger.warning('Connection %d from %s failed: %s', event.conn_id, event.peer, event.message)


def _describe(target, capital=False):
    text = f"slot '{target.slot}' of app '{target.name}'" if target.slot else f"app '{target.name}'"
    return text[0].upper() + text[1:] if capital else text


def _first_line(value):
    text = str(value).strip()
    return text.splitlines()[0].rstrip('.') if text else ''
