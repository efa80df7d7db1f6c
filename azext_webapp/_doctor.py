"""``az webapp remote-connection doctor``: every hop between this machine and the container's sshd,
checked in order; the first that fails stops the check (of that instance) and says how to fix it.

Hops (titles in ``_errors.HOPS``, shared with the tunnel's warnings after start): ARM sign-in and
read permission; the app (found, Linux, running); the SCM host (resolves, certificate verifies);
the SCM credentials (Basic or Bearer); then per instance: GetStatus; the WebSocket upgrade; an SSH
banner through the tunnel; the container's algorithms (its KEXINIT) against this machine's OpenSSH
and the portal's browser SSH; root login with ``Docker!``; the sftp subsystem; and, whatever
those found, the exec channel (``_exec_doctor``: the way in without sshd).

What fails is said in the words the other commands use for the same failure (``_errors.py``).
Sockets, paramiko (which az ships) and the OpenSSH client's ``-G``/``-Q`` only: no POSIX-only call,
so it runs the same on Linux, macOS and Windows. No secret is ever part of a result.
"""

import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

from azure.cli.core.azclierror import ResourceNotFoundError
from knack.log import get_logger
from knack.util import CLIError

from azext_webapp import _kexinit, ssh
from azext_webapp._errors import (HOPS, HOP_TITLES, auth_error, describe, doctor_command, first_line,
                                  restart_advice, stopped_message, tunnel_error, unreachable_message)
from azext_webapp.ssh import SSH_PASSWORD, SSH_PORT, SSH_USER

logger = get_logger(__name__)

OK, FAIL, WARN, NOT_CHECKED = 'ok', 'fail', 'warning', 'not checked'
TIMEOUT = 20.0
# An Authorization no SCM site accepts: the SCM host hop only needs an answer over verified TLS.
_NOBODY = 'Basic ZG9jdG9yOg=='  # base64("doctor:")
INSTANCE_HOPS = ('status', 'websocket', 'banner', 'algorithms', 'login', 'sftp')
SCP_HINT = ('OpenSSH 9 and later run scp over SFTP, so plain `scp` fails too; `scp -O` (the original scp '
            'protocol) works')


class _Failed(Exception):
    def __init__(self, detail, fix=''):
        super().__init__(detail)
        self.detail = detail
        self.fix = fix


class Report:
    """The checks so far, in order: dicts with hop, title, instance, status, detail, fix."""

    def __init__(self):
        self.checks = []

    def add(self, hop, status, detail, fix='', instance=None):
        self.checks.append({'hop': hop, 'title': HOP_TITLES[hop], 'instance': instance, 'status': status,
                            'detail': detail, 'fix': fix or None})

    def rest_not_checked(self, hops, instance=None):
        for hop in hops:
            self.add(hop, NOT_CHECKED, 'not checked: an earlier hop failed', instance=instance)

    @property
    def failed(self):
        return any(check['status'] == FAIL for check in self.checks)

    def as_dict(self, target, instance):
        return {'app': target.name, 'slot': target.slot, 'resourceGroup': target.resource_group,
                'instance': instance, 'healthy': not self.failed, 'checks': self.checks}


def diagnose(cmd, target, instance=None):
    """Run every hop; a :class:`Report`."""
    report = Report()
    hops = [hop for hop, _ in HOPS]
    try:
        state = _shared_hops(cmd, target, instance, report)
    except _Stop as stop:
        report.rest_not_checked(hops[hops.index(stop.hop) + 1:])
        return report
    from azext_webapp import _exec_doctor
    for name in state.instances:
        _instance_hops(state, name, report)
        report.add('exec', *_exec_doctor.check(state, name), instance=name)
    return report


class _Stop(Exception):
    def __init__(self, hop):
        super().__init__(hop)
        self.hop = hop


def _run(report, hop, check, instance=None):
    """check() -> detail (ok), or (status, detail, fix); _Failed -> a failed hop, then _Stop."""
    try:
        outcome = check()
    except _Failed as failed:
        report.add(hop, FAIL, failed.detail, failed.fix, instance)
        raise _Stop(hop) from None
    except Exception as err:  # pylint: disable=broad-except
        logger.debug('The %s check failed unexpectedly', hop, exc_info=True)
        report.add(hop, FAIL, f'unexpected {type(err).__name__}: {first_line(err)}',
                   'Run the command again with --debug to see where; report it if it persists.', instance)
        raise _Stop(hop) from None
    if isinstance(outcome, tuple):
        report.add(hop, outcome[0], outcome[1], outcome[2], instance)
    else:
        report.add(hop, OK, outcome, instance=instance)
    return outcome


def _az_failure(err):
    return _Failed(str(err))


def _shared_hops(cmd, target, instance, report):
    from azext_webapp._arm import arm_call, scm_basic_policy, scm_credential, scm_url_of, site_op, web_client
    from azext_webapp._connection import load_engine
    state = SimpleNamespace(target=target, cmd=cmd, tunnel=None, scm_url=None, credential=None, debugging=False,
                            instances=[instance], config_dir=cmd.cli_ctx.config.config_dir)
    site = {}

    def arm():
        try:
            client = web_client(cmd.cli_ctx)
            site['value'] = arm_call(target, None, site_op(client, 'get', target))
        except ResourceNotFoundError:
            site['missing'] = sys.exc_info()[1]
            return f'signed in; allowed to look {target.name} up in resource group {target.resource_group}'
        except CLIError as err:  # not signed in, 401/403, ARM unreachable: the message says what to do
            raise _Failed(str(err)) from None
        site['client'] = client
        return f'signed in; allowed to read {describe(target)}'
    _run(report, 'arm', arm)

    def app():
        if 'missing' in site:
            raise _Failed(str(site['missing']))
        value, client = site['value'], site['client']
        if not value.reserved:
            raise _Failed(f'{describe(target, True)} runs on a Windows App Service plan; remote connections need '
                          'App Service on Linux. For a Windows app use the Kudu console of its SCM site instead.')
        if (value.state or '').lower() == 'stopped':
            raise _Failed(stopped_message(target))
        try:
            state.scm_url = scm_url_of(value, target)
            names = [item.name for item in arm_call(target, 'list the instances of',
                                                    site_op(client, 'list_instance_identifiers', target))]
            config = arm_call(target, 'read the configuration of', site_op(client, 'get_configuration', target))
        except CLIError as err:
            raise _az_failure(err) from None
        if instance is not None and instance not in names:
            raise _Failed(f"Instance '{instance}' is not an instance of {describe(target)} (instances: "
                          f"{', '.join(names) or 'none'}). Instance names are case-sensitive; list them with "
                          '`az webapp list-instances`.')
        if instance is None and len(names) > 1:
            state.instances = names
        elif instance is None and names:
            state.instances = [names[0]]
        state.debugging = bool(getattr(config, 'remote_debugging_enabled', False))
        state.client = client
        detail = f'Linux, {value.state or "state unknown"}, SCM site {state.scm_url}, ' + (
            f'{len(names)} instance{"s" if len(names) != 1 else ""}' + (f' ({", ".join(names)})' if names else ''))
        if state.debugging:
            detail += ('; remote debugging is on, so `create` tunnels to the debugger by default and `ssh`/'
                       f'`ssh-config` refuse: these checks use container port {SSH_PORT}')
        return detail
    _run(report, 'app', app)

    tunnel = state.tunnel = load_engine()
    endpoint = SimpleNamespace(target=target, scm_url=state.scm_url, auth_kind='Basic', instance=None,
                               debugging=False)

    def scm():
        try:
            tunnel.warm_up(state.scm_url, _NOBODY, timeout=TIMEOUT)
        except tunnel.TunnelError as err:
            if err.kind not in ('auth', 'http'):  # anything that answers over verified TLS will do
                raise _Failed(str(tunnel_error(err.kind, err.status, first_line(err), endpoint))) from None
        host = state.scm_url.split('://', 1)[-1]
        return f'{host} resolves, answers over TLS and its certificate verifies'
    _run(report, 'scm', scm)

    def credentials():
        try:
            basic = scm_basic_policy(state.client, target)
            state.credential = scm_credential(cmd.cli_ctx, state.client, target)
        except CLIError as err:
            raise _az_failure(err) from None
        endpoint.auth_kind = state.credential.kind
        try:
            tunnel.get_status(state.scm_url, state.credential.authorization, timeout=TIMEOUT)
        except tunnel.TunnelError as err:
            if err.kind == 'auth':
                raise _Failed(str(auth_error(err.status, state.credential.kind, target, state.scm_url))) from None
            raise _Failed(str(tunnel_error(err.kind, err.status, first_line(err), endpoint))) from None
        if state.credential.kind == 'Basic':
            return "Basic auth with the app's publishing credentials accepted"
        return ('Bearer auth with the Microsoft Entra token of your az sign-in accepted'
                + ('' if basic else ' (Basic auth is disabled for SCM)'))
    _run(report, 'credentials', credentials)
    return state


def _instance_hops(state, instance, report):
    tunnel, target = state.tunnel, state.target
    authorization = state.credential.authorization
    endpoint = SimpleNamespace(target=target, scm_url=state.scm_url, auth_kind=state.credential.kind,
                               instance=instance, debugging=False)
    engine = transport = None
    hops = list(INSTANCE_HOPS)
    try:
        def status():
            try:
                result = tunnel.get_status(state.scm_url, authorization, instance=instance, timeout=TIMEOUT)
            except tunnel.TunnelError as err:
                raise _Failed(str(tunnel_error(err.kind, err.status, first_line(err), endpoint))) from None
            reported = (result.state or '').upper()
            if reported == 'STOPPED':
                raise _Failed(stopped_message(target))
            if reported != 'STARTED':
                raise _Failed(f'{describe(target, True)} is {reported or "in an unknown state"} (GetStatus)',
                              f'Wait a minute and run `{doctor_command(target, instance)}` again. If it stays so: '
                              f'{restart_advice(target)}')
            if not result.can_reach_port:
                alias = ssh.host_key_alias(state.scm_url, instance)
                before = ssh.known_host(ssh.known_hosts_path(state.config_dir), alias)
                message = unreachable_message(endpoint, result.port or SSH_PORT, before)
                elsewhere = _ssh_on_port_22(tunnel, state, authorization, instance)
                if elsewhere:
                    message = (f'Nothing answers on container port {SSH_PORT}, but sshd answers on container port '
                               f'22 ({elsewhere}): the image runs sshd on the wrong port. Set `Port 2222` in its '
                               'sshd_config (as the documentation shows, https://go.microsoft.com/fwlink/?linkid='
                               '2132395), rebuild and redeploy.')
                raise _Failed(f'GetStatus: state STARTED, canReachPort false, port {result.port}', message)
            detail = f'state STARTED, canReachPort true, port {result.port}'
            if result.port and result.port != SSH_PORT:  # remote debugging: the debugger's port
                detail += f' (the default tunnel port; SSH on {SSH_PORT} is what the next hops check)'
            return detail
        _run(report, 'status', status, instance)
        hops.remove('status')

        def websocket():
            nonlocal engine
            try:
                engine = tunnel.Tunnel(scm_url=state.scm_url, authorization=authorization, instance=instance,
                                       target_port=SSH_PORT, bind='127.0.0.1', port=0)
                engine.start()
                engine.check(timeout=TIMEOUT)
            except tunnel.TunnelError as err:
                raise _Failed(str(tunnel_error(err.kind, err.status, first_line(err), endpoint))) from None
            return f'HTTP 101 from {state.scm_url}/AppServiceTunnel/Tunnel.ashx'
        _run(report, 'websocket', websocket, instance)
        hops.remove('websocket')

        offer = {}

        def banner():
            try:
                offer['value'] = _kexinit.probe(engine.port, timeout=TIMEOUT)
            except _kexinit.ProbeError as err:
                if err.kind == 'silent':
                    raise _Failed(f'the tunnel opened, but container port {SSH_PORT} closed it without a byte',
                                  unreachable_message(endpoint, SSH_PORT, False)) from None
                if err.kind == 'not-ssh':
                    raise _Failed(f'container port {SSH_PORT} answers, but not with SSH ({err})',
                                  f'Something other than sshd listens on port {SSH_PORT} in the container; make sshd '
                                  'listen there (Port 2222 in sshd_config) and move the other program.') from None
                raise _Failed(f'{err.banner or "no banner"}; then {err}',
                              'The SSH server did not finish its greeting. ' + restart_advice(target)) from None
            return offer['value'].banner
        _run(report, 'banner', banner, instance)
        hops.remove('banner')

        _run(report, 'algorithms', lambda: algorithms(offer['value'], local_openssh()), instance)
        hops.remove('algorithms')

        def login():
            nonlocal transport
            transport = _login(engine.port)
            if transport is None:  # only az's SSH library and the container have nothing in common
                return (WARN, f'not checked: paramiko (the SSH library az ships) cannot negotiate with the container '
                              f"(its ciphers: {','.join(offer['value'].ciphers)})",
                        f'Log in with OpenSSH instead: `az webapp remote-connection ssh -g {target.resource_group} '
                        f'-n {target.name}{" --slot " + target.slot if target.slot else ""}`.')
            return f"logged in as {SSH_USER} with the password '{SSH_PASSWORD}'"
        _run(report, 'login', login, instance)
        hops.remove('login')

        if transport is None:
            report.add('sftp', WARN, 'not checked: no login (see above)', instance=instance)
        else:
            _run(report, 'sftp', lambda: _sftp(transport), instance)
        hops.remove('sftp')
    except _Stop as stop:
        report.rest_not_checked(hops[1:] if hops and hops[0] == stop.hop else hops, instance)
    finally:
        if transport is not None:
            transport.close()
        if engine is not None:
            engine.stop()


def _ssh_on_port_22(tunnel, state, authorization, instance):
    """The banner of an sshd on container port 22 (the image's default), or None."""
    try:
        with tunnel.Tunnel(scm_url=state.scm_url, authorization=authorization, instance=instance, target_port=22,
                           bind='127.0.0.1', port=0) as other:
            return _kexinit.probe(other.port, timeout=5.0).banner
    except (tunnel.TunnelError, _kexinit.ProbeError):
        return None


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


def algorithms(offer, client):
    """The algorithms hop: OK, (WARN, detail, fix) when only the portal's browser SSH cannot talk to
    the container, _Failed when this machine's OpenSSH cannot."""
    offered = f"offers ciphers {','.join(offer.ciphers)}; MACs {','.join(offer.macs)}"
    client = client or SimpleNamespace(ciphers=_kexinit.OPENSSH_DEFAULT_CIPHERS, macs=_kexinit.OPENSSH_DEFAULT_MACS,
                                       supported_ciphers=_kexinit.DOCUMENTED_CIPHERS,
                                       supported_macs=_kexinit.DOCUMENTED_MACS, path=None)
    options = _kexinit.extra_options(
        offer, client.ciphers, client.macs,
        supported_ciphers=[name for name in _kexinit.DOCUMENTED_CIPHERS if name in client.supported_ciphers],
        supported_macs=[name for name in _kexinit.DOCUMENTED_MACS if name in client.supported_macs])
    if options is None:
        raise _Failed(f'The container {offered}: none that this OpenSSH client supports',
                      'Add algorithms both sides know to the image\'s sshd_config, e.g. `Ciphers aes128-ctr,aes256-ctr,'
                      'aes128-cbc,3des-cbc,aes256-cbc` and `MACs hmac-sha2-256,hmac-sha1,hmac-sha1-96` (the ctr '
                      'ciphers and hmac-sha1 also serve the portal\'s browser SSH), then rebuild and redeploy.')
    local = ('OpenSSH here works with its defaults' if not options else
             'OpenSSH here needs ' + ' '.join(f'-o {k}={v}' for k, v in options) + ' (`ssh` and `ssh-config` add '
             'it; `create` prints it in its ssh line)')
    portal = _kexinit.negotiated(_kexinit.PORTAL_CIPHERS, _kexinit.PORTAL_MACS, offer)
    if portal[0] is None or portal[1] is None:
        return (WARN, f'The container {offered}. {local}; the portal\'s browser SSH does not (it offers ciphers '
                      f'{",".join(_kexinit.PORTAL_CIPHERS)} and MACs {",".join(_kexinit.PORTAL_MACS)})',
                f'For the browser SSH ({BROWSER_SSH}), add aes128-ctr or aes128-cbc to Ciphers and hmac-sha1 to MACs '
                'in the image\'s sshd_config.')
    handshake_gap = _portal_handshake_gap(offer)
    if handshake_gap:
        return (WARN, f'The container {offered}. {local}; the portal\'s browser SSH does not: {handshake_gap[0]}',
                f'For the browser SSH ({BROWSER_SSH}), {handshake_gap[1]}')
    return f'The container {offered}. {local}; the portal\'s browser SSH too ({portal[0]}, {portal[1]})'


BROWSER_SSH = 'SSH in the portal, https://<app>.scm.azurewebsites.net/webssh/host, `az webapp remote-connection browse`'


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
# Login and sftp (paramiko, which az itself depends on)


def _login(port):
    """An authenticated paramiko Transport through the tunnel; None when paramiko and the container
    share no algorithms (OpenSSH may still: the algorithms hop said so)."""
    try:
        import paramiko
    except ImportError:
        raise _Failed('not checked: paramiko is not available in the Python that runs az',
                      f"Try `ssh {SSH_USER}@127.0.0.1 -p PORT` through `az webapp remote-connection create`.") from None
    import socket
    try:
        sock = socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT)
    except OSError as err:
        raise _Failed(f'cannot connect to the tunnel: {err}') from None
    transport = paramiko.Transport(sock)
    transport.banner_timeout = transport.auth_timeout = TIMEOUT
    try:
        transport.start_client(timeout=TIMEOUT)
        transport.auth_password(SSH_USER, SSH_PASSWORD)
    except paramiko.BadAuthenticationType as err:
        transport.close()
        raise _Failed(f"The container's sshd does not take passwords (it allows: {', '.join(err.allowed_types)})",
                      'Set `PasswordAuthentication yes` in the image\'s sshd_config, or connect with your own key: '
                      '`az webapp remote-connection ssh ... -- -i KEY`.') from None
    except paramiko.AuthenticationException:
        transport.close()
        raise _Failed(f"The container refused {SSH_USER}'s password '{SSH_PASSWORD}'",
                      f"Set it in the image (`echo \"{SSH_USER}:{SSH_PASSWORD}\" | chpasswd` in the Dockerfile) with "
                      '`PermitRootLogin yes` and `PasswordAuthentication yes` in sshd_config, then rebuild and '
                      'redeploy; or connect with your own password or key (`-- -i KEY`).') from None
    except paramiko.IncompatiblePeer:
        transport.close()
        return None
    except (paramiko.SSHException, OSError, EOFError) as err:
        transport.close()
        raise _Failed(f'SSH negotiation failed: {first_line(err) or type(err).__name__}',
                      'Run `az webapp remote-connection ssh ... -- -v` to see where it stops.') from None
    return transport


def _sftp(transport):
    import paramiko
    try:
        client = paramiko.SFTPClient.from_transport(transport)
        client.close()
    except (paramiko.SSHException, OSError, EOFError):
        raise _Failed("The container's sshd has no sftp subsystem: sftp fails, and " + SCP_HINT,
                      'Add `Subsystem sftp internal-sftp` to the image\'s sshd_config (then rebuild and redeploy), '
                      'or use `scp -O`.') from None
    return 'sftp subsystem answers: sftp and scp work'


# ---------------------------------------------------------------------------------------------
# Output


_MARKS = {OK: 'OK', FAIL: 'FAIL', WARN: 'WARN', NOT_CHECKED: '--'}


def render(result, width=100):
    """The readable table: one line per hop, then what failed and how to fix it."""
    import textwrap
    target = SimpleNamespace(name=result['app'], slot=result['slot'], resource_group=result['resourceGroup'])
    lines = [f"Checking the way in to {describe(target)} (resource group '{target.resource_group}'):", '']
    instances = [c['instance'] for c in result['checks'] if c['instance']]
    several = len(set(instances)) > 1
    for check in result['checks']:
        where = f" [{check['instance']}]" if several and check['instance'] else ''
        lines.append(f"  {_MARKS[check['status']]:<4}  {check['title']}{where}")
        if check['status'] in (OK, FAIL, WARN) and check['detail']:
            lines += textwrap.wrap(check['detail'], width, initial_indent=' ' * 8, subsequent_indent=' ' * 8,
                                   break_on_hyphens=False, break_long_words=False)
        if check['fix']:
            lines += textwrap.wrap('Fix: ' + check['fix'], width, initial_indent=' ' * 8, subsequent_indent=' ' * 13,
                                   break_on_hyphens=False, break_long_words=False)
    lines.append('')
    failed = [c for c in result['checks'] if c['status'] == FAIL]
    if failed:
        lines.append(f"{len(failed)} hop{'s' if len(failed) > 1 else ''} failed: "
                     + '; '.join(c['title'] + (f" ({c['instance']})" if c['instance'] else '') for c in failed)
                     + '.')
    else:
        lines.append('Every hop works.')
    return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------
# The command


def doctor_remote_connection(cmd, resource_group_name=None, name=None, slot=None, instance=None,
                             ids=None):  # pylint: disable=unused-argument
    """`az webapp remote-connection doctor`: the readable table unless --output asks for a format;
    exit status 1 when a hop fails."""
    from azext_webapp._arm import Target
    target = Target(resource_group_name, name, slot)
    report = diagnose(cmd, target, instance)
    result = report.as_dict(target, instance)
    fmt = cmd.cli_ctx.invocation.data.get('output') or 'json'
    if _output_given(cmd) and fmt != 'table':
        # az formats the record (and applies --query); the exit status is set once it is printed.
        if report.failed:
            from knack.events import EVENT_CLI_SUCCESSFUL_EXECUTE

            def fail(cli_ctx, **kwargs):  # pylint: disable=unused-argument
                sys.exit(1)
            cmd.cli_ctx.register_event(EVENT_CLI_SUCCESSFUL_EXECUTE, fail)
        return result
    print(render(result, width=_width()), flush=True)
    if report.failed:
        sys.exit(1)
    return None


def _output_given(cmd):
    """Whether --output/-o was on the command line (az's default format is json either way)."""
    return any(param in ('-o', '--output') for param in cmd.cli_ctx.data.get('safe_params') or [])


def _width():
    return max(60, min(120, shutil.get_terminal_size((100, 24)).columns - 2))
