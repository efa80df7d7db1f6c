"""The way in to a container, hop by hop: one ordered pipeline (titles in ``_errors.HOPS``) that the
commands walk as far as they need, raising the typed az error of the first hop that fails, and that
``az webapp remote-connection doctor`` walks to the end, reporting each hop as working, working with
a warning, or broken. Both run the same hop functions, so a failure reads the same in either.

A hop is a function of the ``Walk`` (what the hops before it learned): it returns what it found (a
line, or an ``Outcome`` for a warning) and records what later hops need on the walk, or raises
``HopFailed`` with the typed az error (and, for the doctor, the detail and fix to show apart).
A new hop is a function here, a place in ``PIPELINE`` and a title in ``_errors.HOPS``; ``per_instance``
hops run once per instance, ``doctor_only`` ones only for the doctor (commands learn the same on the
way, or do not need it). Sockets, paramiko (which az ships) and the OpenSSH client's ``-G``/``-Q``
only: no POSIX-only call, the same on Linux, macOS and Windows. No secret is ever part of a result.
"""

import copy
import os
import shutil
import subprocess
import time
from types import SimpleNamespace
from typing import Any, Callable, NamedTuple, Optional, Union

from azure.cli.core.azclierror import InvalidArgumentValueError, ResourceNotFoundError, ValidationError
from azure.core.exceptions import AzureError
from knack.log import get_logger
from knack.util import CLIError

from azext_webapp import _kexinit, _termination, _walls, ssh
from azext_webapp._errors import (HOPS, containers_outcome, describe, doctor_command, first_line, instance_message,
                                  restart_advice, ssh_off, starting_message, stopped_message, tunnel_error,
                                  unreachable_message, windows_message)
from azext_webapp._restarts import RESTARTING_STATUS
from azext_webapp.ssh import SSH_PASSWORD, SSH_PORT, SSH_USER

logger = get_logger(__name__)

OK, WARN, FAIL, NOT_CHECKED = 'ok', 'warning', 'fail', 'not checked'
COMMAND_TIMEOUT = 30.0          # seconds for each SCM probe and for the handshake check
DOCTOR_TIMEOUT = 20.0
STARTING_POLL_INTERVAL = 1.0    # the reference polls GetStatus once a second ...
STARTING_MAX_WAIT = 60.0        # ... about 60 times
STARTING_PROGRESS_EVERY = 5.0
# An Authorization no SCM site accepts: the SCM host hop only needs an answer over verified TLS.
_NOBODY = 'Basic ZG9jdG9yOg=='  # base64("doctor:")
UNREACHABLE_MSG = 'Unable to connect to WebApp'   # GetStatus's usual msg when canReachPort is false
SCP_HINT = ('OpenSSH 9 and later run scp over SFTP, so plain `scp` fails too; `scp -O` (the original scp '
            'protocol) works')


class Outcome(NamedTuple):
    """A hop that works (OK) or works with a warning (WARN): what was found, and what to do."""
    status: str
    detail: str
    fix: str = ''


class HopFailed(Exception):
    """A hop that does not work. ``error``: the typed az error the commands raise; ``detail`` and
    ``fix``: what the doctor shows (by default the error's own line, and no separate fix)."""

    def __init__(self, error: Exception, detail: Optional[str] = None, fix: str = ''):
        super().__init__(str(error))
        self.error = error
        # an error of _errors.py may carry the two apart (a wall's)
        self.detail = detail or getattr(error, 'detail', None) or str(error)
        self.fix = fix or getattr(error, 'fix', '')


class Walk:  # pylint: disable=too-many-instance-attributes
    """What the hops learn on the way in to one app (and instance). ``thorough``: the doctor's walk,
    which also looks where the commands need not (sshd on port 22, every instance) and does not wait
    for a starting app. ``authorization`` is dropped once an engine holds it; ``repr`` never shows it."""

    def __init__(self, cmd, target, instance=None, target_port=None, thorough=False, tunnel=None, ssh=True):
        self.cmd = cmd
        self.target = target
        self.instance = instance
        self.target_port = target_port
        self.thorough = thorough
        self.timeout = DOCTOR_TIMEOUT if thorough else COMMAND_TIMEOUT
        self.config_dir = cmd.cli_ctx.config.config_dir
        self.client: Any = None
        self.site: Any = None           # the SDK's Site once the arm hop ran
        self.missing = None
        self.scm_url: Any = None        # str once the app hop ran
        self.instances = []             # the app's instance names (thorough walks, or with --instance)
        self.debugging = False
        self.credential: Any = None     # _arm.Credential once the credentials hop ran
        self.authorization = None
        self.engine = None              # the tunnel of the instance hops
        self.remote_port = None         # the container port the tunnel leads to
        self.offer = self.transport = None
        self.ssh = ssh                  # the way in is SSH (False: the exec channel, which SSH off leaves open)
        self.container = None           # the exec channel's: one of the app's site containers (None: the main)
        self.ssh_blocked = False        # the doctor found SSH turned off: the hops that need it are not checked
        # Real Azure's walls (_walls.py): read from ARM by the app hop (access), or by the hop that
        # met a refusal (the rest), so that the words can name the wall.
        self.access: Optional[_walls.Access] = None
        self.private_endpoints = self.rights = self.scm_address = self.user = None
        self.containers: list = []
        self._tunnel = tunnel

    def __repr__(self):
        return f'<Walk {self.scm_url} auth={self.auth_kind} instance={self.instance}>'

    @property
    def tunnel(self):
        """azext_webapp.tunnel (loaded at first use: it picks the engine)."""
        if self._tunnel is None:
            from azext_webapp._connection import load_engine
            self._tunnel = load_engine()
        return self._tunnel

    @property
    def auth_kind(self):
        return self.credential.kind if self.credential else 'Basic'

    def for_instance(self, name):
        """The walk of one instance, from the app-wide hops' results (its own engine and SSH state)."""
        one = copy.copy(self)
        one.instance = name
        one.authorization = self.credential.authorization if self.credential else None
        one.engine = one.remote_port = one.offer = one.transport = None
        return one


# ---------------------------------------------------------------------------------------------
# The hops, in order


def arm(w):
    from azext_webapp._arm import arm_call, site_op, web_client
    try:
        w.client = web_client(w.cmd.cli_ctx)
        w.site = arm_call(w.target, None, site_op(w.client, 'get', w.target))
    except ResourceNotFoundError as err:  # allowed to look, nothing there: the app hop says so
        w.missing = err
        return f'signed in; allowed to look {w.target.name} up in resource group {w.target.resource_group}'
    except CLIError as err:  # not signed in, 401/403, ARM unreachable: the message says what to do
        raise HopFailed(err) from None
    return f'signed in; allowed to read {describe(w.target)}'


def app(w):
    """Found, on Linux, not stopped; its SCM host, instances (with --instance: that one among them) and
    whether remote debugging is on (the default tunnel port is then the debugger's)."""
    from azext_webapp._arm import arm_call, instance_names, scm_url_of, site_op
    target, site = w.target, w.site
    if w.missing is not None:
        raise HopFailed(w.missing)
    if not site.reserved:
        raise HopFailed(ValidationError(windows_message(target)))
    if (site.state or '').lower() == 'stopped':
        raise HopFailed(ValidationError(stopped_message(target)))
    try:
        w.scm_url = scm_url_of(site, target)
        if w.instance is not None or w.thorough:
            w.instances = instance_names(w.client, target)
        config = arm_call(target, 'read the configuration of', site_op(w.client, 'get_configuration', target))
    except CLIError as err:
        raise HopFailed(err) from None
    if w.instance is not None and w.instance not in w.instances:
        raise HopFailed(InvalidArgumentValueError(instance_message(target, w.instance, w.instances)))
    w.debugging = bool(getattr(config, 'remote_debugging_enabled', False))
    w.access = _walls.access_of(site, config)
    names = w.instances
    detail = (f'Linux, {site.state or "state unknown"}, SCM site {w.scm_url}, '
              f'{len(names)} instance{"s" if len(names) != 1 else ""}' + (f' ({", ".join(names)})' if names else ''))
    if not w.access.public:
        detail += '; public network access disabled (a private endpoint)'
    elif w.access.restricted:
        detail += ('; SCM access restrictions allow only '
                   + (', '.join(rule.source for rule in w.access.allowed) or 'no address'))
    if w.debugging:
        detail += ('; remote debugging is on, so `create` tunnels to the debugger by default and `ssh`/'
                   f'`ssh-config` refuse: these checks use container port {SSH_PORT}')
    return detail


def ssh_setting(w):
    """SSH turned on for the app (ARM's properties.sshEnabled); when it is off, whether an Azure
    Policy keeps it so. Only where the way in is SSH: a tunnel to another port, and the exec channel,
    do not need it."""
    enabled = getattr(w.site, 'ssh_enabled', None)
    if enabled is not False:
        return 'on (sshEnabled true)' if enabled else 'on (ARM does not report sshEnabled: an older stamp)'
    leads_to_ssh = w.target_port == ssh.SSH_PORT or (w.target_port is None and not w.debugging) or w.thorough
    if not w.ssh or not leads_to_ssh:
        return Outcome(OK, 'off (sshEnabled false), which this connection does not need')
    policies, unread = [], None
    try:
        policies = _walls.ssh_policies(w.client, w.site.id)
    except (AzureError, CLIError) as err:
        unread = err
    detail, fix = ssh_off(w.target, w.site.id, policies, unread)
    raise HopFailed(ValidationError(f'{detail}. {fix}'), detail, fix)


def scm(w):
    """Reachable over verified TLS: any answer will do, a refusal of nobody's credentials included,
    but for 403, the front end's refusal of this machine before it looks at any credential."""
    tunnel = w.tunnel
    try:
        tunnel.warm_up(w.scm_url, _NOBODY, timeout=w.timeout)
    except tunnel.TunnelError as err:
        if err.kind not in ('auth', 'http') or err.status == 403:
            raise HopFailed(scm_failure(w, err)) from None
    return f'{w.scm_url.split("://", 1)[-1]} resolves, answers over TLS and its certificate verifies'


def scm_failure(w, err):
    """The typed error of an SCM site's failure (a TunnelError), once ARM has told what it can about
    the wall behind it: the private endpoint (the host does not resolve, cannot be reached, or the
    public front end refuses) and the caller's right to publish (a refused token)."""
    facts = err.facts or {}
    refused = err.reason == 'auth_refused' and facts.get('status') == 403
    access = w.access
    try:
        if access is not None and not access.public and (refused or err.kind in ('dns', 'connect', 'timeout')):
            if w.private_endpoints is None:
                w.private_endpoints = _walls.private_endpoints(w.client, w.site.id)
            if err.kind in ('connect', 'timeout') and facts.get('host'):
                w.scm_address = _address_of(facts['host'])
        elif refused and w.auth_kind == 'Bearer' and not (access and access.restricted) and w.rights is None:
            w.rights = _walls.rights(w.client, w.site.id, w.target.slot)
            w.user = _signed_in_user(w.cmd)
    except (AzureError, CLIError) as lookup:  # the words without the ARM facts are still right
        logger.debug('Looking up what refused the SCM site failed: %s', lookup)
    return tunnel_error(err.reason, err.facts, w)


def _address_of(host):
    import socket
    try:
        return socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0]
    except (OSError, IndexError):
        return None


def _signed_in_user(cmd):
    from azure.cli.core._profile import Profile
    try:
        return Profile(cli_ctx=cmd.cli_ctx).get_current_account_user()
    except (CLIError, KeyError):
        return None


def credentials(w):
    """The credential the reference would choose (ARM), and the SCM site taking it: GET /api/settings
    with it, which also wakes the SCM site as the reference does."""
    from azext_webapp._arm import scm_credential
    tunnel = w.tunnel
    try:
        w.credential = scm_credential(w.cmd.cli_ctx, w.client, w.target)
    except CLIError as err:
        raise HopFailed(err) from None
    w.authorization = w.credential.authorization
    logger.info('Authenticating to the SCM site %s with %s auth', w.scm_url, w.credential.kind)
    try:
        tunnel.warm_up(w.scm_url, w.authorization, timeout=w.timeout)
    except tunnel.TunnelError as err:
        if err.kind not in ('http', 'timeout') or (err.kind == 'timeout' and w.access and not w.access.public):
            raise HopFailed(scm_failure(w, err)) from None
        if not w.thorough:  # GetStatus comes next and says what is wrong
            return Outcome(WARN, f'Waking the SCM site of {describe(w.target)} did not answer as expected '
                                 f'({first_line(err)}); probing anyway.')
        try:
            tunnel.get_status(w.scm_url, w.authorization, timeout=w.timeout)
        except tunnel.TunnelError as again:
            raise HopFailed(scm_failure(w, again)) from None
    if w.credential.kind == 'Basic':
        return "Basic auth with the app's publishing credentials accepted"
    return 'Bearer auth with the Microsoft Entra token of your az sign-in accepted (Basic auth is disabled for SCM)'


def containers(w):
    """The app's site containers (ARM) and their states (the SCM site's /api/sitecontainers): a
    sidecar that does not run is a warning (the main container is what the way in reaches)."""
    from azure.core.exceptions import ResourceNotFoundError as SdkNotFound
    try:
        found = _walls.site_containers(w.client, w.site.id)
    except SdkNotFound:  # a stamp without site containers
        found = []
    except (AzureError, CLIError) as err:
        return Outcome(WARN, f'not read: ARM did not list the site containers ({first_line(err)})')
    unread = ''
    if found:
        try:
            status = w.tunnel.site_containers(w.scm_url, w.authorization, timeout=w.timeout)
            found = _walls.with_states(found, status)
        except w.tunnel.TunnelError as err:
            unread = f' (their states unknown: {first_line(err)})'
    w.containers = found
    detail, fix = containers_outcome(w.target, found)
    return Outcome(WARN, detail + unread, fix) if fix else detail + unread


class StartupProgress:
    """A wait for a (re)starting app, as the reference waits: a poll a second (a recorded signal
    ends it), 'Waiting for APP to start up...' at once and how long every few seconds."""

    def __init__(self, target):
        self.target = target
        self.started = time.monotonic()
        self.next_progress = self.started

    def waited(self):
        return time.monotonic() - self.started

    def wait(self):
        waited = self.waited()
        if time.monotonic() >= self.next_progress:
            if waited < 1:
                logger.warning('Waiting for %s to start up...', describe(self.target))
            else:
                logger.warning('Still starting after %d seconds...', int(waited))
            self.next_progress += STARTING_PROGRESS_EVERY
        _termination.sleep(STARTING_POLL_INTERVAL)


def status(w):
    """GetStatus: STARTED, and something answers on the container port. A command waits for a
    starting app (about a minute, as the reference does), and for one whose SCM site answers 502 or
    503, as the front end does while the app restarts, and then until its container port answers
    (STARTED may come a moment before sshd listens); the doctor says it is starting."""
    tunnel, target = w.tunnel, w.target
    progress = StartupProgress(target)
    waiting = False     # the app was (re)starting when first asked
    while True:
        try:
            result = tunnel.get_status(w.scm_url, w.authorization, instance=w.instance, timeout=w.timeout)
        except tunnel.TunnelError as err:
            if w.thorough or err.reason != 'http_status' or err.status not in RESTARTING_STATUS:
                raise HopFailed(scm_failure(w, err)) from None
            logger.debug('GetStatus: HTTP %s (the app is restarting)', err.status)
            result, front_end_error = None, err
        state = (result.state or '').upper() if result else 'RESTARTING'
        if result:
            logger.debug('GetStatus: state=%s canReachPort=%s port=%s', state, result.can_reach_port, result.port)
        reachable = result is not None and (result.can_reach_port or bool(w.target_port and
                                                                          w.target_port != result.port))
        if state == 'STARTED' and (reachable or not waiting):
            break
        if state == 'STOPPED':
            raise HopFailed(ValidationError(stopped_message(target)))
        waited = progress.waited()
        if (w.thorough or waited >= STARTING_MAX_WAIT) and state == 'STARTED':
            break           # started, but nothing answers: said below
        if waited >= STARTING_MAX_WAIT and result is None:     # the front end's answer never changed
            raise HopFailed(scm_failure(w, front_end_error))
        if w.thorough or waited >= STARTING_MAX_WAIT:
            raise HopFailed(ValidationError(starting_message(target, STARTING_MAX_WAIT)),
                            f'{describe(target, True)} is {state or "in an unknown state"} (GetStatus)',
                            f'Wait a minute and run `{doctor_command(target, w.instance)}` again. If it stays so: '
                            f'{restart_advice(target)}')
        waiting = True
        progress.wait()
    if reachable:
        w.remote_port = w.target_port or result.port
        detail = f'state STARTED, canReachPort true, port {result.port}'
        if w.thorough and result.port and result.port != SSH_PORT:  # remote debugging: the debugger's port
            detail += f' (the default tunnel port; SSH on {SSH_PORT} is what the next hops check)'
        return detail
    message = unreachable_message(w, result.port or SSH_PORT, ssh_answered_before(w))
    fix = message
    elsewhere = _ssh_on_port_22(w) if w.thorough else None
    if elsewhere:
        fix = (f'Nothing answers on container port {SSH_PORT}, but sshd answers on container port 22 ({elsewhere}): '
               'the image runs sshd on the wrong port. Set `Port 2222` in its sshd_config (as the documentation '
               'shows, https://go.microsoft.com/fwlink/?linkid=2132395), rebuild and redeploy.')
    # what the SCM site said, shown as it is (SSH turned off since ARM was read says so: section 9)
    unusual = result.msg and result.msg != UNREACHABLE_MSG
    said = f' The SCM site said: "{first_line(result.msg)}".' if unusual else ''
    raise HopFailed(ValidationError(f'{message}{said} `{doctor_command(target, w.instance)}` checks every hop.'),
                    f'GetStatus: state STARTED, canReachPort {str(result.can_reach_port).lower()}, port {result.port}'
                    + (f', msg "{first_line(result.msg)}"' if unusual else ''),
                    fix + said)


def ssh_answered_before(w):
    """Whether an SSH session through this extension ever reached this app (instance): its host key
    is pinned in our known_hosts."""
    alias = ssh.host_key_alias(w.scm_url, w.instance)
    return ssh.known_host(ssh.known_hosts_path(w.config_dir), alias)


def _ssh_on_port_22(w):
    """The banner of an sshd on container port 22 (the image's default), or None."""
    tunnel = w.tunnel
    try:
        with tunnel.Tunnel(scm_url=w.scm_url, authorization=w.authorization, instance=w.instance, target_port=22,
                           bind='127.0.0.1', port=0) as other:
            return _kexinit.probe(other.port, timeout=5.0).banner
    except (tunnel.TunnelError, _kexinit.ProbeError):
        return None


def websocket(w):
    """One real WebSocket upgrade. A command's tunnel is already listening (a busy --port fails before
    any wait); the doctor opens one of its own to the container's SSH port."""
    tunnel = w.tunnel
    try:
        if w.engine is None:
            w.engine = tunnel.Tunnel(scm_url=w.scm_url, authorization=w.authorization, instance=w.instance,
                                     target_port=SSH_PORT, bind='127.0.0.1', port=0)
            w.engine.start()
        w.engine.check(timeout=w.timeout)
    except tunnel.TunnelError as err:
        raise HopFailed(scm_failure(w, err)) from None
    return f'HTTP 101 from {w.scm_url}{tunnel.TUNNEL_PATH}'


def banner(w):
    try:
        w.offer = _kexinit.probe(w.engine.port, timeout=w.timeout)
    except _kexinit.ProbeError as err:
        if err.kind == 'silent':
            raise HopFailed(ValidationError(unreachable_message(w, SSH_PORT, False)),
                            f'the tunnel opened, but container port {SSH_PORT} closed it without a byte',
                            unreachable_message(w, SSH_PORT, False)) from None
        if err.kind == 'not-ssh':
            raise _failed(f'container port {SSH_PORT} answers, but not with SSH ({err})',
                          f'Something other than sshd listens on port {SSH_PORT} in the container; make sshd '
                          'listen there (Port 2222 in sshd_config) and move the other program.') from None
        raise _failed(f'{err.banner or "no banner"}; then {err}',
                      'The SSH server did not finish its greeting. ' + restart_advice(w.target)) from None
    return w.offer.banner


def algorithms_hop(w):
    return algorithms(w.offer, local_openssh(), w.scm_url)


def login(w):
    w.transport = _login(w.engine.port)
    if w.transport is None:  # only az's SSH library and the container have nothing in common
        target = w.target
        return Outcome(WARN, 'not checked: paramiko (the SSH library az ships) cannot negotiate with the container '
                             f"(its ciphers: {','.join(w.offer.ciphers)})",
                       f'Log in with OpenSSH instead: `az webapp remote-connection ssh -g {target.resource_group} '
                       f'-n {target.name}{" --slot " + target.slot if target.slot else ""}`.')
    return f"logged in as {SSH_USER} with the password '{SSH_PASSWORD}'"


def sftp(w):
    """A missing sftp subsystem is a warning: ssh works, and so does `scp -O`."""
    if w.transport is None:
        return Outcome(WARN, 'not checked: no login (see above)')
    import paramiko
    try:
        client = paramiko.SFTPClient.from_transport(w.transport)
        client.close()
    except (paramiko.SSHException, OSError, EOFError):
        return Outcome(WARN, "The container's sshd has no sftp subsystem: ssh works, sftp fails, and " + SCP_HINT,
                       'Add `Subsystem sftp internal-sftp` to the image\'s sshd_config (then rebuild and redeploy), '
                       'or use `scp -O`.')
    return 'sftp subsystem answers: sftp and scp work'


class Hop(NamedTuple):
    name: str                                           # its title: _errors.HOP_TITLES[name]
    check: Callable[[Walk], Union[str, Outcome]]
    per_instance: bool = False
    doctor_only: bool = False
    # The doctor goes on past a broken SSH gate (SSH turned off): only the hops that need SSH are
    # then not checked; the SCM site, the credentials and the containers still are.
    ssh_gate: bool = False
    needs_ssh: bool = False


PIPELINE = (
    Hop('arm', arm),
    Hop('app', app),
    Hop('ssh', ssh_setting, ssh_gate=True),
    # commands learn the same from the credentials hop's first request: one round trip less
    Hop('scm', scm, doctor_only=True),
    Hop('credentials', credentials),
    Hop('containers', containers, doctor_only=True),
    Hop('status', status, per_instance=True, needs_ssh=True),
    Hop('websocket', websocket, per_instance=True, needs_ssh=True),
    Hop('banner', banner, per_instance=True, doctor_only=True, needs_ssh=True),
    Hop('algorithms', algorithms_hop, per_instance=True, doctor_only=True, needs_ssh=True),
    Hop('login', login, per_instance=True, doctor_only=True, needs_ssh=True),
    Hop('sftp', sftp, per_instance=True, doctor_only=True, needs_ssh=True),
)
assert tuple(hop.name for hop in PIPELINE) == tuple(name for name, _ in HOPS)


def walk(w, start=None, until=None, report=None):
    """Run the hops from ``start`` to ``until`` (names; the first and last by default), in order.

    A command (no report) skips the doctor's hops and raises the typed error of the first hop that
    fails; a warning is only logged. The doctor passes a report: every outcome goes in it, a failure
    marks every later hop not checked (for this instance) and the walk returns False; but a broken
    SSH gate marks only the hops that need SSH (``w.ssh_blocked``, which the instances' walks inherit)
    and the walk goes on."""
    names = [hop.name for hop in PIPELINE]
    first = names.index(start) if start else 0
    last = names.index(until) if until else len(names) - 1
    for index in range(first, last + 1):
        hop = PIPELINE[index]
        if hop.doctor_only and report is None:
            continue
        where = w.instance if hop.per_instance else None
        if report is not None and hop.needs_ssh and getattr(w, 'ssh_blocked', False):
            report.add(hop.name, NOT_CHECKED, 'not checked: SSH is turned off for the app', instance=where)
            continue
        try:
            outcome = hop.check(w)
        except HopFailed as failed:
            if report is None:
                raise failed.error from None
            outcome = Outcome(FAIL, failed.detail, failed.fix)
        except Exception as err:  # pylint: disable=broad-except
            if report is None:
                raise
            logger.debug('The %s check failed unexpectedly', hop.name, exc_info=True)
            outcome = Outcome(FAIL, f'unexpected {type(err).__name__}: {first_line(err)}',
                              'Run the command again with --debug to see where; report it if it persists.')
        if not isinstance(outcome, Outcome):
            outcome = Outcome(OK, outcome)
        if report is None:
            if outcome.status == WARN:
                logger.info('%s', outcome.detail)
            continue
        report.add(hop.name, outcome.status, outcome.detail, outcome.fix, where)
        if outcome.status == FAIL and hop.ssh_gate:
            w.ssh_blocked = True
        elif outcome.status == FAIL:
            report.rest_not_checked(names[index + 1:], where)
            return False
    return True


def _failed(detail, fix):
    """A doctor-only hop's failure (the commands never walk it): its detail and fix."""
    return HopFailed(ValidationError(f'{detail}. {fix}'), detail, fix)


# ---------------------------------------------------------------------------------------------
# Algorithms


def local_openssh(ssh_path=None, run=subprocess.run):
    """This machine's OpenSSH client: its default and supported ciphers and MACs, or None without
    one. ``ssh -G`` (with no config file) prints the defaults, ``ssh -Q`` what the build supports."""
    ssh_path = ssh_path or shutil.which('ssh')
    if not ssh_path:
        return None

    def query(*args):
        try:
            proc = run([ssh_path, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=10,
                       check=False)
        except (OSError, subprocess.SubprocessError):
            return ''
        return proc.stdout if proc.returncode == 0 else ''
    effective = dict(line.split(' ', 1) for line in query('-G', '-F', os.devnull, 'doctor.invalid').splitlines()
                     if ' ' in line)
    defaults_ciphers = tuple(effective.get('ciphers', '').split(',')) if effective.get('ciphers') else None
    defaults_macs = tuple(effective.get('macs', '').split(',')) if effective.get('macs') else None
    return SimpleNamespace(path=ssh_path,
                           ciphers=defaults_ciphers or _kexinit.OPENSSH_DEFAULT_CIPHERS,
                           macs=defaults_macs or _kexinit.OPENSSH_DEFAULT_MACS,
                           supported_ciphers=tuple(query('-Q', 'cipher').split()) or _kexinit.DOCUMENTED_CIPHERS,
                           supported_macs=tuple(query('-Q', 'mac').split()) or _kexinit.DOCUMENTED_MACS)


def algorithms(offer, client, scm_url=None):
    """The algorithms hop: OK, a warning when only the portal's browser SSH cannot talk to the
    container, HopFailed when this machine's OpenSSH cannot. scm_url: the app's SCM site, whose
    browser SSH page the warning names."""
    offered = f"offers ciphers {','.join(offer.ciphers)}; MACs {','.join(offer.macs)}"
    client = client or SimpleNamespace(ciphers=_kexinit.OPENSSH_DEFAULT_CIPHERS, macs=_kexinit.OPENSSH_DEFAULT_MACS,
                                       supported_ciphers=_kexinit.DOCUMENTED_CIPHERS,
                                       supported_macs=_kexinit.DOCUMENTED_MACS, path=None)
    options = _kexinit.extra_options(
        offer, client.ciphers, client.macs,
        supported_ciphers=[name for name in _kexinit.DOCUMENTED_CIPHERS if name in client.supported_ciphers],
        supported_macs=[name for name in _kexinit.DOCUMENTED_MACS if name in client.supported_macs])
    if options is None:
        raise _failed(f'The container {offered}: none that this OpenSSH client supports',
                      'Add algorithms both sides know to the image\'s sshd_config, e.g. `Ciphers aes128-ctr,aes256-ctr,'
                      'aes128-cbc,3des-cbc,aes256-cbc` and `MACs hmac-sha2-256,hmac-sha1,hmac-sha1-96` (the ctr '
                      'ciphers and hmac-sha1 also serve the portal\'s browser SSH), then rebuild and redeploy.')
    local = ('OpenSSH here works with its defaults' if not options else
             'OpenSSH here needs ' + ' '.join(f'-o {k}={v}' for k, v in options) + ' (`ssh` and `ssh-config` add '
             'it; `create` prints it in its ssh line)')
    portal = _kexinit.negotiated(_kexinit.PORTAL_CIPHERS, _kexinit.PORTAL_MACS, offer)
    if portal[0] is None or portal[1] is None:
        return Outcome(WARN, f'The container {offered}. {local}; the portal\'s browser SSH does not (it offers '
                             f'ciphers {",".join(_kexinit.PORTAL_CIPHERS)} and MACs {",".join(_kexinit.PORTAL_MACS)})',
                       f'For the browser SSH ({browser_ssh(scm_url)}), add aes128-ctr or aes128-cbc to Ciphers and '
                       'hmac-sha1 to MACs in the image\'s sshd_config.')
    handshake_gap = _portal_handshake_gap(offer)
    if handshake_gap:
        return Outcome(WARN, f'The container {offered}. {local}; the portal\'s browser SSH does not: '
                             f'{handshake_gap[0]}',
                       f'For the browser SSH ({browser_ssh(scm_url)}), {handshake_gap[1]}')
    return f'The container {offered}. {local}; the portal\'s browser SSH too ({portal[0]}, {portal[1]})'


def browser_ssh(scm_url=None):
    """Where the portal's browser SSH is: the app's own page (its SCM host is ARM's, whatever the cloud)."""
    from azext_webapp._arm import webssh_url
    page = webssh_url(scm_url) if scm_url else 'https://<scm-host>/webssh/host'
    return f'SSH in the portal, {page}, `az webapp remote-connection browse`'


def _portal_handshake_gap(offer):
    """(what, fix) when the portal's client shares no key exchange or host key type with the container.
    An empty list (not read) is no evidence either way."""
    if offer.kex and not set(offer.kex) & set(_kexinit.PORTAL_KEX):
        return (f"the container's key exchanges ({','.join(offer.kex)}) include none of its "
                f"{','.join(_kexinit.PORTAL_KEX)}",
                'add ecdh-sha2-nistp256 to KexAlgorithms in the image\'s sshd_config.')
    if offer.host_keys and not set(offer.host_keys) & set(_kexinit.PORTAL_HOST_KEYS):
        return (f"the container's host keys ({','.join(offer.host_keys)}) include none of the types it "
                f"knows ({','.join(_kexinit.PORTAL_HOST_KEYS)})",
                'give the image an ECDSA host key (`ssh-keygen -A` makes one; HostKey /etc/ssh/ssh_host_ecdsa_key).')
    return None


# ---------------------------------------------------------------------------------------------
# Login (paramiko, which az itself depends on)


def _login(port):
    """An authenticated paramiko Transport through the tunnel; None when paramiko and the container
    share no algorithms (OpenSSH may still: the algorithms hop said so)."""
    try:
        import paramiko
    except ImportError:
        raise _failed('not checked: paramiko is not available in the Python that runs az',
                      f"Try `ssh {SSH_USER}@127.0.0.1 -p PORT` through `az webapp remote-connection create`.") from None
    import socket
    try:
        sock = socket.create_connection(('127.0.0.1', port), timeout=DOCTOR_TIMEOUT)
    except OSError as err:
        raise _failed(f'cannot connect to the tunnel: {err}', 'Run the command again.') from None
    transport = paramiko.Transport(sock)
    transport.banner_timeout = transport.auth_timeout = DOCTOR_TIMEOUT
    try:
        transport.start_client(timeout=DOCTOR_TIMEOUT)
        transport.auth_password(SSH_USER, SSH_PASSWORD)
    except paramiko.BadAuthenticationType as err:
        transport.close()
        raise _failed(f"The container's sshd does not take passwords (it allows: {', '.join(err.allowed_types)})",
                      'Set `PasswordAuthentication yes` in the image\'s sshd_config, or connect with your own key: '
                      '`az webapp remote-connection ssh ... -- -i KEY`.') from None
    except paramiko.AuthenticationException:
        transport.close()
        raise _failed(f"The container refused {SSH_USER}'s password '{SSH_PASSWORD}'",
                      f"Set it in the image (`echo \"{SSH_USER}:{SSH_PASSWORD}\" | chpasswd` in the Dockerfile) with "
                      '`PermitRootLogin yes` and `PasswordAuthentication yes` in sshd_config, then rebuild and '
                      'redeploy; or connect with your own password or key (`-- -i KEY`).') from None
    except paramiko.IncompatiblePeer:
        transport.close()
        return None
    except (paramiko.SSHException, OSError, EOFError) as err:
        transport.close()
        raise _failed(f'SSH negotiation failed: {first_line(err) or type(err).__name__}',
                      'Run `az webapp remote-connection ssh ... -- -v` to see where it stops.') from None
    return transport
