"""The error catalogue: every failure of the commands as one line that says what happened and
what to do. Pure functions of facts; the words for the user are written here once, including those
for the tunnel engines' failures (a reason of _reasons.def and its facts), chosen by reason."""

import errno
import os

from azure.cli.core.azclierror import (AzureConnectionError, AzureResponseError, FileOperationError,
                                       ForbiddenError, InvalidArgumentValueError, ResourceNotFoundError,
                                       UnauthorizedError, ValidationError)

from azext_webapp._reasons import kind_of
from azext_webapp.ssh import SSH_PORT


def arm_error(err, target, action):
    status = err.status_code
    code = getattr(getattr(err, 'error', None), 'code', None) or ''
    message = first_line(getattr(getattr(err, 'error', None), 'message', None) or err.message or '')
    group = target.resource_group
    what = describe_action(action, target)
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


def describe_action(action, target):
    return f'{action or "read"} {describe(target)}'


def describe(target, capital=False):
    text = f"slot '{target.slot}' of app '{target.name}'" if target.slot else f"app '{target.name}'"
    return text[0].upper() + text[1:] if capital else text


def first_line(value):
    text = str(value).strip()
    return text.splitlines()[0].rstrip('.') if text else ''


def on_instance(instance):
    return f" (instance '{instance}')" if instance else ''


def restart_advice(target):
    slot = f' --slot {target.slot}' if target.slot else ''
    return (f'Review its logs with `az webapp log tail -g {target.resource_group} -n {target.name}{slot}`, '
            f'restart it with `az webapp restart -g {target.resource_group} -n {target.name}{slot}`, then run '
            'this command again.')


def stopped_message(target):
    return (f'{describe(target, True)} is stopped; it must be running before anything can connect to its container. '
            f'Start it with `az webapp start -g {target.resource_group} -n {target.name}'
            f'{" --slot " + target.slot if target.slot else ""}`, then run this command again '
            '(review start-up problems with `az webapp log tail`).')


def windows_message(target):
    return (f"{describe(target, True)} runs on a Windows App Service plan; remote connections need App Service "
            "on Linux (Only Linux App Service Plans supported). For a Windows app use the Kudu console of "
            "its SCM site instead.")


def instance_message(target, instance, names):
    known = ', '.join(names) or 'none'
    return (f"Instance '{instance}' is not an instance of {describe(target)} (instances: {known}). "
            'Instance names are case-sensitive; list them with `az webapp list-instances`.')


def starting_message(target, seconds):
    return (f'{describe(target, True)} did not finish starting within {int(seconds)} seconds. Review its start-up '
            f'logs with `az webapp log tail -g {target.resource_group} -n {target.name}`, then run this command '
            'again.')


def debugging_message(target, command):
    return (f'Remote debugging is enabled for {describe(target)}, so its tunnel leads to the debugger, not to '
            f'SSH; `az webapp remote-connection {command}` needs SSH. Turn remote debugging off '
            f'(`az webapp config set -g {target.resource_group} -n {target.name} --remote-debugging-enabled '
            'false`), or use `az webapp remote-connection create` for the debugger.')


def unreachable_message(endpoint, port, answered_before):
    """Nothing answers on the container port. answered_before: SSH reached this app before (a
    pinned host key), so its sshd stopped rather than was never set up."""
    target = endpoint.target
    if endpoint.debugging:
        return (f"The remote debugger of {describe(target)} does not answer on container port {port}. "
                'Make sure the app was started with remote debugging enabled, or turn remote debugging off '
                f'(`az webapp config set -g {target.resource_group} -n {target.name} --remote-debugging-enabled '
                'false`) to connect to SSH instead.')
    if port == SSH_PORT:
        where = f'container port {port} of {describe(target)}{on_instance(endpoint.instance)}'
        restart = restart_advice(target)
        if answered_before:
            return (f'SSH does not answer on {where}, though it did before (its host key is recorded): its sshd '
                    f'has probably stopped or the container is restarting. {restart} {exec_hint(target)}')
        return (f'Nothing answers on {where}. Either SSH is not set up in the container (a custom container '
                'needs sshd on port 2222, see https://go.microsoft.com/fwlink/?linkid=2132395, then a redeploy), '
                f'or its sshd has stopped. {restart} {exec_hint(target)}')
    return (f'Nothing answers on container port {port} of {describe(target)}. '
            'Check that the process listening on that port is running, or choose another with --target-port.')


def unavailable_note(status):
    """What a 502 or 503 from the SCM host most often means."""
    if status in (502, 503):
        return (" Azure's front end answers so while the app restarts (a deployment, `az webapp restart`, a "
                'crashed container) or cannot start.')
    return ''


def exec_hint(target):
    """Where sshd does not answer: the way in that needs none."""
    slot = f' --slot {target.slot}' if target.slot else ''
    return (f'Without sshd, `az webapp remote-connection exec -g {target.resource_group} -n {target.name}{slot}` '
            'opens a shell in the container (and runs commands, and `cp` copies files) through the SCM site.')


def exec_refused(reason, facts, endpoint, instance=None):
    """The exec channel's WebSocket was not opened: the engine's reason and facts, and what the SCM
    site said about it (its body's Message, the server_message fact) when it said anything."""
    target, scm_url = endpoint.target, endpoint.scm_url
    site = f'The SCM site {scm_url} of {describe(target)}{on_instance(instance)}'
    message = first_line(facts.get('server_message') or '')
    said = f' It said: {message}.' if message else ''
    status = facts.get('status')
    ssh_instead = ('`az webapp remote-connection ssh` works instead where the container runs sshd on port '
                   f'{SSH_PORT}.')
    wall = wall_error(reason, facts, endpoint)
    if wall is not None:
        return wall
    container = getattr(endpoint, 'container', None)
    if container and reason == 'http_status' and status in (400, 404, 409):
        return ValidationError(
            f"{site} refused the exec channel into the container '{container}' (HTTP {status}).{said} "
            f"`{doctor_command(target)}` lists the app's containers and their states. Where the SCM site does not "
            'let you choose a container, leave out --container: the exec channel leads to the main container.')
    if kind_of(reason) == 'auth' and status == 403 and message:
        return ForbiddenError(f'{site} refused the exec channel (HTTP 403): {message}. If the exec channel is turned '
                              f'off for this app, ask an owner of the app; {ssh_instead}')
    if reason == 'http_status' and status == 404:
        return ResourceNotFoundError(f'{site} has no exec channel (HTTP 404 for /exec/shell).{said} {ssh_instead}')
    if reason == 'http_status':
        return AzureResponseError(f'{site} refused the exec channel (HTTP {status}).{said}{unavailable_note(status)} '
                                  'Try again in a minute; if '
                                  f'it persists, restart the app (`az webapp restart -g {target.resource_group} -n '
                                  f'{target.name}`).')
    return tunnel_error(reason, facts, endpoint)


def exec_failure(reason, said, target, instance=None):
    """The shell behind the exec channel could not run the command (the marker protocol's F, or
    no answer): what it lacks, with its last words."""
    where = f'the container of {describe(target)}{on_instance(instance)}'
    words = ' '.join(said.split())[-300:]
    heard = f' The shell said: "{words}".' if words else ''
    if reason == 'prepare':
        return ValidationError(f'The shell in {where} cannot run commands for az: it needs /bin/sh, base64 and stty '
                               f'(coreutils or busybox).{heard}')
    if reason == 'start-timeout':
        return AzureConnectionError(f'The shell in {where} did not answer within 30 seconds.{heard} If the image has '
                                    'no /bin/sh at that path, name its shell with --shell.')
    if reason == 'input':
        return FileOperationError(f'Could not send the input to {where}: {words}.')
    if reason in ('mktemp', 'mkfifo'):
        return ValidationError(f'Could not create a temporary file in {where} ({reason} failed in /tmp: full or '
                               'read-only?).')
    return AzureConnectionError(f'The exec channel to {where} ended before the command finished.{heard} The '
                                'container may have restarted; run the command again.')


def copy_error(reason, path, target, instance=None):
    """cp's container side could not do its part (the F marker's reason and detail)."""
    where = f'the container of {describe(target)}{on_instance(instance)}'
    word, _, detail = reason.partition(' ')
    detail = first_line(detail)
    if word == 'nofile':
        return ResourceNotFoundError(f'{path} does not exist in {where}.')
    if word == 'isdir':
        return ValidationError(f'{path} is a directory in {where}: add --recursive to copy it with all it holds '
                               '(or name a file, or a directory that does not hold a directory of the same name).')
    if word == 'nodir':
        return ResourceNotFoundError(f'The directory of {path} does not exist in {where}; create it first '
                                     f'(`az webapp remote-connection exec ... -- mkdir -p DIR`).')
    if word == 'denied':
        return ValidationError(f'Permission denied for {path} in {where}.')
    if word == 'notdir':
        return ValidationError(f'{path} is a file in {where}, not a directory: a directory is copied to a path '
                               'that is a directory or does not exist yet.')
    if word == 'notar':
        return ValidationError(f'{where[0].upper()}{where[1:]} has no tar, which --recursive needs: copy the files '
                               'one at a time, or add tar to the image.')
    if word == 'pack':
        return FileOperationError(f'Could not pack {path} in {where}: {detail or "tar failed"}.')
    if word in ('write', 'move'):
        return FileOperationError(f'Could not write {path} in {where}: {detail or "write failed"} (a full disk or '
                                  'quota?). Nothing was replaced.')
    if word in ('size', 'checksum'):
        return FileOperationError(f'The copy of {path} arrived damaged in {where} ({word} differs); nothing was '
                                  'replaced. Run the command again.')
    return FileOperationError(f'Could not read {path} in {where}.')


# ---------------------------------------------------------------------------------------------
# Engine failures: a reason of _reasons.def and its facts, worded here and nowhere else

_PHASE_WORDS = {'connect': 'the TCP connection', 'proxy': "the proxy's answer to CONNECT",
                'tls': 'the TLS handshake', 'upgrade': 'the WebSocket upgrade', 'frame': 'the open WebSocket',
                'probe': 'the request', 'accept': 'accepting a local connection'}
_ERRNO_WORDS = {'ECONNREFUSED': 'connection refused', 'ECONNRESET': 'connection reset', 'EPIPE': 'broken pipe',
                'ENETUNREACH': 'network unreachable', 'EHOSTUNREACH': 'host unreachable', 'ETIMEDOUT': 'timed out',
                'ECONNABORTED': 'connection aborted', 'EADDRNOTAVAIL': 'not an address of this machine',
                'EACCES': 'permission denied', 'EPERM': 'not permitted', 'EBADF': 'bad file descriptor',
                'EIO': 'input/output error'}


def _errno_words(facts, default=''):
    """'connection refused, ECONNREFUSED': the system's words for the fact's errno name, and the name."""
    name = facts.get('errno')
    if not name:
        return default
    words = _ERRNO_WORDS.get(name)
    if words is None and isinstance(getattr(errno, name, None), int):
        words = os.strerror(getattr(errno, name))
        words = None if words.startswith('Unknown') else words[0].lower() + words[1:]
    return f'{words}, {name}' if words else name


def _seconds(milliseconds):
    return f'{milliseconds / 1000:g} s'


def _said(facts):
    message = facts.get('server_message')
    return f'; the server said "{message}"' if message else ''


def _phase(facts, default='the handshake'):
    return _PHASE_WORDS.get(facts.get('phase'), default)


def _resource_where(facts):
    if facts.get('phase') == 'accept':
        return ' accepting a local connection; it waits until one is free'
    return f" connecting to {facts['host']}" if facts.get('host') else ''


def _fds(facts):
    if facts.get('errno') == 'ENFILE':
        return "out of file descriptors (ENFILE; the system's file table is full)"
    limit = f"; open-file limit {facts['limit']}" if facts.get('limit') else ''
    return f'out of file descriptors ({facts.get("errno") or "EMFILE"}{limit})'


# reason -> facts -> what happened, one line with no advice (the callers add what to do)
_DETAIL = {
    'auth_refused': lambda f: f"{f['host']} refused the credentials (HTTP {f.get('status', 401)}){_said(f)}",
    'http_status': lambda f: (f"{f['host']} answered HTTP {f.get('status', 0)} to "
                              f"{f.get('path') or 'a probe' if f.get('phase') == 'probe' else 'the tunnel request'}"
                              f"{_said(f)}"),
    'http_malformed': lambda f: f"{f['host']} sent a malformed HTTP answer",
    'http_too_large': lambda f: f"{f['host']} sent an oversized HTTP answer (over {f.get('limit', 0)} bytes)",
    'http_bad_accept': lambda f: f"{f['host']} answered the upgrade without a valid Sec-WebSocket-Accept",
    'http_not_json': lambda f: (f"{f['host']} answered {f.get('path') or 'GetStatus'} with something that is not "
                                "its JSON"),
    'tls_untrusted': lambda f: (f"the certificate of {f['host']} is not trusted ({f.get('verify_text', 'unknown')})"
                                + ('; checked against REQUESTS_CA_BUNDLE' if f.get('ca_bundle') else '')),
    'tls_wrong_host': lambda f: f"the certificate of {f['host']} is issued for another host name",
    'tls_handshake': lambda f: f"TLS handshake with {f['host']} failed: {f.get('detail', 'protocol error')}",
    'tls_stream': lambda f: f"TLS failure with {f['host']}: {f.get('detail', 'protocol error')}",
    'tls_ca_file': lambda f: f"cannot read the CA bundle {f.get('ca_file')} (REQUESTS_CA_BUNDLE)",
    'tls_ca_store': lambda f: 'cannot load the system CA store',
    'dns_unknown_host': lambda f: f"cannot resolve the host name {f['host']}",
    'proxy_unreachable': lambda f: (f"cannot reach the proxy {f['proxy']} (for {f['host']}:{f.get('port')}"
                                    + (f'; {_errno_words(f)}' if f.get('errno') else '') + ')'),
    'proxy_unknown_host': lambda f: f"cannot resolve the proxy {f['proxy']} (for {f['host']}:{f.get('port')})",
    'proxy_refused': lambda f: (f"the proxy {f['proxy']} refused to CONNECT to {f['host']}:{f.get('port')} "
                                f"(HTTP {f.get('status', 0)})"),
    'proxy_auth_required': lambda f: (f"the proxy {f['proxy']} refused to CONNECT to {f['host']}:{f.get('port')} "
                                      f"(HTTP {f.get('status', 407)}); it wants credentials in HTTPS_PROXY"),
    'proxy_closed': lambda f: (f"the proxy {f['proxy']} closed the connection to {f['host']}:{f.get('port')} "
                               'before it answered'),
    'proxy_malformed': lambda f: f"the proxy {f['proxy']} sent a malformed answer",
    'proxy_url': lambda f: (f"HTTPS_PROXY is not a proxy URL of the form http://host:port "
                            f"(host {f.get('host') or 'missing'})"),
    'proxy_scheme': lambda f: (f"only http:// proxies are supported for the tunnel (HTTPS_PROXY is "
                               f"{f.get('detail')}://{f.get('proxy')})"),
    'connect_refused': lambda f: f"cannot connect to {f['host']} port {f.get('port')} (connection refused)",
    'connect_unreachable': lambda f: (f"cannot connect to {f['host']} port {f.get('port')} "
                                      f"({_errno_words(f, 'unreachable')})"),
    'connect_reset': lambda f: (f"the connection to {f['host']} broke ({_errno_words(f, 'reset')})"
                                + ('' if f.get('phase') in (None, 'frame') else f' during {_phase(f)}')),
    'connect_closed': lambda f: f"{f['host']} closed the connection during {_phase(f)}",
    'connect_failed': lambda f: f"request to {f['host']} failed: {f.get('detail', 'unknown error')}",
    'bind_in_use': lambda f: f"port {f.get('port')} on {f['host']} is already in use",
    'bind_address': lambda f: f"cannot listen on {f['host']}: {f.get('detail') or _errno_words(f, 'unusable')}",
    'bind_failed': lambda f: f"cannot listen on {f['host']} port {f.get('port')}: {_errno_words(f, 'failed')}",
    'timeout_handshake': lambda f: (f"{f['host']} did not complete {_phase(f)} within "
                                    f"{_seconds(f.get('timeout_ms', 0))}"),
    'timeout_check': lambda f: f"no answer from {f['host']} within {_seconds(f.get('timeout_ms', 0))}",
    'timeout_probe': lambda f: f"no answer from {f['host']} within {_seconds(f.get('timeout_ms', 0))}",
    'closed_stopped': lambda f: 'this tunnel was stopped; open a new one',
    'closed_not_running': lambda f: 'the tunnel is not running',
    'closed_started': lambda f: 'the tunnel was already started',
    'closed_replaced': lambda f: 'another check() replaced this one',
    'closed_silent': lambda f: f"{f['host']} stopped answering",
    'closed_stdin': lambda f: f"reading standard input failed ({_errno_words(f, 'unknown error')})",
    'closed_stdout': lambda f: f"writing standard output failed ({_errno_words(f, 'unknown error')})",
    'closed_abandoned': lambda f: 'the request was abandoned',
    'protocol_reserved_bits': lambda f: f"{f['host']} sent a frame with reserved bits set",
    'protocol_masked': lambda f: f"{f['host']} sent a masked frame (servers never mask)",
    'protocol_opcode': lambda f: f"{f['host']} sent a frame with unknown opcode {f.get('opcode', 0)}",
    'protocol_control': lambda f: f"{f['host']} sent an invalid control frame",
    'protocol_fragment': lambda f: f"{f['host']} sent WebSocket fragments out of order",
    'protocol_close': lambda f: f"{f['host']} sent a Close frame with an invalid code or reason",
    'protocol_too_large': lambda f: (f"{f['host']} sent a frame of {f.get('size', 0)} bytes "
                                     f"(at most {f.get('limit', 0)} accepted)"),
    'resource_fds': lambda f: _fds(f) + _resource_where(f),
    'resource_memory': lambda f: ('out of memory' + (f" ({f['errno']})" if f.get('errno') not in (None, 'ENOMEM')
                                                     else '') + _resource_where(f)),
    'internal': lambda f: (f"internal failure: {f.get('detail', 'unknown')}"
                           + (f" ({_errno_words(f)})" if f.get('errno') else '')),
}


class _Known(dict):
    """Facts a reason should carry but did not (an older or newer engine): said as "?"."""

    def __missing__(self, key):
        return '?'


def failure_detail(reason, facts, scheme=None):
    """What happened, in one line: the engines' reason and facts worded (tunnel.TunnelError's text).
    scheme: Basic or Bearer, the credential an auth_refused refused."""
    facts = _Known(facts or {})
    facts.setdefault('host', 'the SCM host')
    words = _DETAIL.get(reason)
    if words is None:  # a reason of a newer engine than these words
        return f"{reason} ({', '.join(f'{key}={value}' for key, value in sorted(facts.items()))})"
    text = words(facts)
    if reason == 'auth_refused' and scheme:
        text += f'; {scheme} authentication was used'
    return ' '.join(text.split())


def tunnel_error(reason, facts, endpoint):
    """The typed az error for an engine failure (at start, or of a connection later), with what to
    do about it, chosen by reason; a wall of real Azure's when the walk's facts name one."""
    target, scm_url = endpoint.target, endpoint.scm_url
    kind = kind_of(reason)
    detail = failure_detail(reason, facts)
    wall = wall_error(reason, facts, endpoint)
    if wall is not None:
        return wall
    if kind == 'auth':
        return auth_error(facts.get('status'), endpoint.auth_kind, target, scm_url, facts.get('server_message'))
    if kind == 'bind':
        return bind_error(reason, facts, None)
    site = f'the SCM site {scm_url} of {describe(target)}'
    if reason == 'tls_wrong_host':
        return AzureConnectionError(
            f'Certificate check failed for {site}: {detail}. Something between you and the app (a DNS entry or '
            'a proxy) answers for it; check your DNS and proxy settings (HTTPS_PROXY, NO_PROXY).')
    if reason in ('tls_ca_file', 'tls_ca_store'):
        return AzureConnectionError(
            f'Cannot check the certificate of {site}: {detail}. Set REQUESTS_CA_BUNDLE to a readable file of '
            'PEM certificates, or unset it to use the system store.')
    if kind == 'tls':
        return AzureConnectionError(
            f'Certificate check failed for {site}: {detail}. If a proxy or private certificate authority '
            'signs this certificate, set REQUESTS_CA_BUNDLE to a file with its CA certificate.')
    if kind == 'dns':
        return AzureConnectionError(
            f'Cannot reach {site}: {detail}. Check your network connection; an app with a private endpoint '
            'can only be reached from a network that resolves its SCM host.')
    if kind == 'resource':
        return AzureConnectionError(
            f'Cannot open another connection to {site}: {detail}. Close connections you no longer need, or '
            'raise the open-file limit of the shell that runs az (`ulimit -n`).')
    if reason in ('proxy_auth_required', 'proxy_url', 'proxy_scheme'):
        return AzureConnectionError(
            f'Cannot reach {site}: {detail}. Set HTTPS_PROXY to http://host:port, with the proxy\'s user and '
            'password when it wants them (http://user:password@host:port), or leave the SCM host out with '
            'NO_PROXY.')
    if kind in ('connect', 'proxy', 'timeout', 'closed'):
        return AzureConnectionError(
            f'Cannot reach {site}: {detail}. Check your network connection, proxy settings (HTTPS_PROXY, '
            "NO_PROXY) and the access restrictions of the app's SCM site.")
    if kind == 'http' and facts.get('status') == 404:
        return AzureResponseError(
            f'{site[0].upper()}{site[1:]} has no tunnel endpoint: {detail}. Is this the SCM (Kudu) host of an '
            'App Service on Linux app? Check the app with `az webapp show -g '
            f'{target.resource_group} -n {target.name} --query "[kind, reserved]"`.')
    if kind == 'http':
        return AzureResponseError(
            f'{site[0].upper()}{site[1:]} refused the tunnel: {detail}.{unavailable_note(facts.get("status"))} '
            'Try again in a minute; if it persists, '
            f'restart the app (`az webapp restart -g {target.resource_group} -n {target.name}`).')
    return AzureResponseError(f'The tunnel to {site} failed: {detail}.')


# ---------------------------------------------------------------------------------------------
# Real Azure's walls (_walls.py has the facts; docs/PROTOCOL.md section 9 what the SCM site answers)

ROLE_HINT = 'Website Contributor, Contributor or Owner'


def _app_args(target):
    return f'-g {target.resource_group} -n {target.name}{" --slot " + target.slot if target.slot else ""}'


def ssh_on_command(target):
    """What turns SSH on for an app (Azure CLI 2.91 has no flag of its own for it)."""
    return f'az webapp update {_app_args(target)} --set sshEnabled=true'


def ssh_off(target, site_id, policies, unread=None):
    """(detail, fix) for an app whose SSH setting (sshEnabled) is off. policies: _walls.SshPolicy
    list (blocking ones first); unread: why the policy assignments could not be read."""
    detail = (f'SSH is turned off for {describe(target)}: its SSH setting (sshEnabled) is false, so its SCM site '
              "refuses SSH (the tunnel to port 2222, `ssh`, ssh-config's connections, the portal's browser SSH)")
    blocking = [p for p in policies if p.blocks]
    if blocking:
        policy = blocking[0]
        detail += (f', and the Azure Policy assignment "{policy.assignment}" keeps it off: its rule '
                   f'"{policy.definition}" has the effect {policy.effect.capitalize()}, so turning SSH on '
                   f'(`{ssh_on_command(target)}`) is refused (RequestDisallowedByPolicy)')
        fix = (f'The assignment is made at {policy.scope}: only someone who may change policy there (an Owner or '
               'Resource Policy Contributor of that scope) can let this app have SSH, with an exemption '
               f'(`az policy exemption create --name allow-ssh-{target.name} --policy-assignment '
               f'{policy.assignment_id} --scope {site_id} --exemption-category Waiver`) or by changing the '
               f'assignment. Ask them; until then SSH stays off for this app. {_exec_without_ssh(target)}')
        return detail, fix
    fix = (f'Turn it on with `{ssh_on_command(target)}` (or in the portal: Configuration, General settings, SSH), '
           'then run this command again.')
    audits = [p for p in policies if p.effect.startswith('audit')]
    if audits:
        fix += (f' The policy assignment "{audits[0].assignment}" only audits SSH: turning it on is allowed, and '
                'reported as not compliant.')
    if unread:
        fix += f' (Whether an Azure Policy forbids turning it on could not be read: {first_line(unread)}.)'
    return detail, f'{fix} {_exec_without_ssh(target)}'


def _exec_without_ssh(target):
    return (f'Meanwhile `az webapp remote-connection exec {_app_args(target)}` still opens a shell in the container '
            '(and runs commands; `cp` copies files): the exec channel needs no SSH.')


def wall_error(reason, facts, endpoint):
    """The error of a wall the walk's facts name for this engine failure, or None: a private endpoint
    (the SCM host does not resolve, or resolves to an address this machine cannot reach, or the
    public front end refuses), access restrictions (403 Ip Forbidden), or no right to publish (403
    to a Bearer token). endpoint.access: _walls.Access (None: not read); endpoint.private_endpoints,
    endpoint.rights and endpoint.scm_address: looked up by the hop that met the failure."""
    access = getattr(endpoint, 'access', None)
    kind, status = kind_of(reason), facts.get('status')
    refused = reason == 'auth_refused' and status == 403
    if access is not None and not access.public and (refused or kind in ('dns', 'connect', 'timeout')):
        return _private_endpoint_error(reason, facts, endpoint)
    if access is not None and access.restricted and refused:
        return _restricted_error(endpoint)
    rights = getattr(endpoint, 'rights', None)
    if refused and endpoint.auth_kind == 'Bearer' and rights is not None and not rights.publish:
        return _rights_error(endpoint)
    return None


def _split(error_type, detail, fix):
    """A typed error whose line is what happened and what to do; the doctor shows them apart."""
    error = error_type(f'{detail}. {fix}')
    error.detail, error.fix = detail, fix
    return error


def _private_endpoint_error(reason, facts, endpoint):
    target, host = endpoint.target, facts.get('host') or endpoint.scm_url.split('://', 1)[-1]
    endpoints = getattr(endpoint, 'private_endpoints', None) or []
    named = ', '.join(f'{e.name} ({", ".join(e.addresses)})' if e.addresses else e.name for e in endpoints)
    through = f'its private endpoint {named}' if named else 'a private endpoint'
    kind = kind_of(reason)
    if kind == 'dns':
        what, error = f'{host} does not resolve from this machine', AzureConnectionError
    elif kind in ('connect', 'timeout'):
        address = getattr(endpoint, 'scm_address', None)
        what = (f'{host} resolves here to {address}' if address else f'{host} resolves here') + \
            f', but this machine cannot reach it ({failure_detail(reason, facts)})'
        error = AzureConnectionError
    else:
        what = (f'{host} answered from the public front end with HTTP 403 (Ip Forbidden): this network resolves '
                'it to its public address')
        error = ForbiddenError
    return _split(
        error,
        f'The SCM site of {describe(target)} is reachable only through {through}: public network access to the '
        f'app is disabled, and {what}',
        'Run the command from a machine in the app\'s virtual network, or in a network peered with it (or joined '
        'to it by VPN or ExpressRoute), whose DNS resolves the host to the private endpoint (the private DNS zone '
        'privatelink.azurewebsites.net). Or, where your organisation allows it, open the SCM site to your address '
        f'alone: `az webapp update {_app_args(target)} --set publicNetworkAccess=Enabled`, then '
        f'`{_allow_me(target, True)}`.')


def _allow_me(target, scm_site):
    return (f'az webapp config access-restriction add {_app_args(target)} --rule-name allow-me --action Allow '
            f'--ip-address <your public IP address>/32 --priority 300{" --scm-site true" if scm_site else ""}')


def _restricted_error(endpoint):
    target, access = endpoint.target, endpoint.access
    allowed = access.allowed
    rules = ('allow only ' + ', '.join(f'{r.name} ({r.source})' for r in allowed) if allowed
             else 'allow no address')
    whose = "the main site's access restrictions, which its SCM site uses," if access.use_main else \
        'its access restrictions'
    if access.use_main:
        add = (f'`{_allow_me(target, False)}` (the main site\'s rules, which also open the app to you), or give the '
               f'SCM site rules of its own: `az webapp config access-restriction set {_app_args(target)} '
               f'--use-same-restrictions-for-scm-site false`, then `{_allow_me(target, True)}`')
    else:
        add = f'`{_allow_me(target, True)}`'
    return _split(
        ForbiddenError,
        f'The SCM site {endpoint.scm_url} of {describe(target)} refused this machine\'s address (HTTP 403 Ip '
        f'Forbidden): {whose} {rules} and deny the rest',
        f'Add your public address to the SCM site\'s rules, if you may change the app: {add}; or run the command '
        f'from a network the rules allow. `az webapp config access-restriction show {_app_args(target)}` lists '
        'them.')


def _rights_error(endpoint):
    target, rights = endpoint.target, endpoint.rights
    granted = ', '.join(rights.actions) or 'nothing'
    assignee = getattr(endpoint, 'user', None) or '<your sign-in>'
    site_id = getattr(endpoint.site, 'id', None) or '<the app\'s resource ID>'
    return _split(
        ForbiddenError,
        f'The SCM site {endpoint.scm_url} of {describe(target)} refused the Microsoft Entra token of your az sign-in '
        f'(HTTP 403): your roles on the app do not include {rights.action}, which the SCM site asks of a token '
        f'(they allow: {granted}), and Basic auth is disabled for its SCM site',
        f'Roles that include it: {ROLE_HINT}. Ask an Owner or User Access Administrator of the app for one: '
        f'`az role assignment create --assignee {assignee} --role "Website Contributor" --scope {site_id}` (it '
        'takes effect within minutes), then run this command again.')


def access_warning(endpoint):
    """ssh-config and browse do not reach the SCM site themselves: what will stop the connections
    they prepare, from this machine, or None."""
    access = getattr(endpoint, 'access', None)
    target = endpoint.target
    if access is None:
        return None
    if not access.public:
        return (f'Public network access to {describe(target)} is disabled: its SCM site is reachable only through '
                'its private endpoint, from the app\'s virtual network or a network peered with it. From anywhere '
                f'else the connection will fail; `{doctor_command(target)}` checks it from here.')
    if access.restricted:
        allowed = ', '.join(f'{r.name} ({r.source})' for r in access.allowed) or 'no address'
        return (f'The SCM site of {describe(target)} has access restrictions: it allows only {allowed}. From '
                f'anywhere else the connection will fail with HTTP 403; `{doctor_command(target)}` checks it from '
                'here.')
    return None


def container_error(target, name, containers):
    """exec/cp --container NAME that ARM does not list among the app's site containers."""
    if not containers:
        return InvalidArgumentValueError(
            f'{describe(target, True)} has no site containers (sidecars), so there is no container '
            f"'{name}' to choose: leave out --container, and the exec channel leads to its container.")
    return InvalidArgumentValueError(
        f"{describe(target, True)} has no container '{name}': its containers are "
        f'{", ".join(c.name + (" (main)" if c.main else "") for c in containers)} (names are case-sensitive).')


def rights_warning(endpoint):
    """ssh-config and browse: the caller's roles lack the SCM site's action, or None."""
    rights = getattr(endpoint, 'rights', None)
    if rights is None or rights.publish:
        return None
    return (f'Your roles on {describe(endpoint.target)} do not include {rights.action} (they allow: '
            f'{", ".join(rights.actions) or "nothing"}): its SCM site refuses your Microsoft Entra sign-in (the '
            f"browser's, and az's token where Basic auth is disabled). Roles that include it: {ROLE_HINT}; ask an "
            'Owner or User Access Administrator of the app for one.')


def containers_outcome(target, containers):
    """(detail, fix) of the containers hop: the app's site containers and their states; fix only
    when a container does not run."""
    if not containers:
        return 'one container (no site containers, so no sidecars)', ''
    listed = '; '.join(f'{c.name} ({"main" if c.main else "sidecar"}, {c.image}): '
                       f'{c.state or "state unknown"}{" - " + first_line(c.message) if c.message else ""}'
                       for c in containers)
    down = [c for c in containers if c.state and c.state.lower() != 'running']
    if not down:
        return listed, ''
    return listed, (f'{", ".join(c.name for c in down)} {"is" if len(down) == 1 else "are"} not running. See why with '
                    f'`az webapp sitecontainers log {_app_args(target)} --container-name {down[0].name}`; '
                    f'`az webapp restart {_app_args(target)}` restarts every container.')


def bind_error(reason, facts, address_problem):
    """The local listener could not start. address_problem: why this machine cannot listen on the
    --bind address at all (None when it can, so the port is at fault)."""
    bind, port = facts.get('host'), facts.get('port')
    choose = 'Choose another local port with --port, or leave --port out to use a free one.'
    if reason == 'bind_in_use':
        return InvalidArgumentValueError(f'Port {port} on {bind} is already in use. {choose}')
    if address_problem:
        return InvalidArgumentValueError(
            f'Cannot listen on --bind {bind}: it is not an address of this machine ({address_problem}). Use one '
            'of its addresses: 127.0.0.1 or ::1 (this machine only), or 0.0.0.0 (every IPv4 address).')
    detail = failure_detail(reason, facts)
    return InvalidArgumentValueError(f'{detail[0].upper()}{detail[1:]}. {choose}')


# The hops between this machine and the container's sshd, in the order `az webapp remote-connection
# doctor` checks them. The doctor's table and the tunnel's warnings after start use these words.
HOPS = (
    ('arm', 'Signed in and allowed to read the app (Azure Resource Manager)'),
    ('app', 'App found, on Linux, running'),
    ('ssh', 'SSH turned on for the app (its SSH setting, Azure Policy)'),
    ('scm', 'SCM host reachable from here (DNS, access restrictions, private endpoint, certificate)'),
    ('credentials', 'SCM site accepts the credentials'),
    ('containers', "App's containers (main, sidecars)"),
    ('status', 'Container port answers (GetStatus)'),
    ('websocket', 'WebSocket upgrade to the tunnel'),
    ('banner', 'SSH banner through the tunnel'),
    ('algorithms', "Container's SSH algorithms (this OpenSSH, the portal's browser SSH)"),
    ('login', "Root login with the password 'Docker!'"),
    ('sftp', 'sftp subsystem (sftp, scp)'),
)
# Not a hop of that way but the other way in, which the doctor checks for every instance after them.
EXEC_HOP = ('exec', 'Exec channel, no sshd needed (exec, cp)')
HOP_TITLES = dict(HOPS + (EXEC_HOP,))

# The hop an engine failure of this kind belongs to.
_HOP_OF_KIND = {'auth': 'credentials', 'tls': 'scm', 'dns': 'scm', 'connect': 'scm', 'proxy': 'scm',
                'timeout': 'scm', 'resource': 'scm', 'closed': 'websocket', 'http': 'websocket'}


def hop_of(reason):
    """The hop a failure of this reason belongs to."""
    return _HOP_OF_KIND.get(kind_of(reason), 'websocket')


def doctor_command(target, instance=None):
    slot = f' --slot {target.slot}' if target.slot else ''
    one = f' --instance {instance}' if instance else ''
    return f'az webapp remote-connection doctor -g {target.resource_group} -n {target.name}{slot}{one}'


def after_start_warning(hop, instance, text, target):
    """A failure of new connections once the tunnel is open, in the doctor's words for its hop."""
    return (f"A new connection failed{on_instance(instance)} at the hop '{HOP_TITLES[hop]}'. {text} "
            f'(`{doctor_command(target, instance)}` checks every hop.)')


def restart_words(target, instance, what, seconds):
    """What a tunnel says about a restart of the instance it reaches (_restarts.py): 'restarting',
    'back', 'gave up' (after `seconds`), 'stopped' or 'failed' (the watch itself)."""
    who = (f"Instance '{instance}' of {describe(target)}" if instance else
           f'The instance of {describe(target)} this tunnel reaches')
    slot = f' --slot {target.slot}' if target.slot else ''
    if what == 'restarting':
        return (f'{who} is restarting: new connections wait until it answers again (at most {int(seconds)} '
                'seconds), then go through.')
    if what == 'back':
        return f'{who} is back after {int(seconds)} seconds: the connections that waited go through.'
    if what == 'gave up':
        return (f'{who} did not come back within {int(seconds)} seconds: the connections that waited were closed, '
                'and new ones wait again. See why it does not start with '
                f'`az webapp log tail -g {target.resource_group} -n {target.name}{slot}`.')
    if what == 'failed':
        return (f'Could not tell whether {describe(target)} restarts, so the connections that waited for it were '
                'closed; new connections are tried as usual. Run the command with --debug to see why, and report '
                'it.')
    return (f'{describe(target, True)} was stopped: the connections that waited were closed. Start it with '
            f'`az webapp start -g {target.resource_group} -n {target.name}{slot}`; new connections go through once '
            'it runs.')


def silent_container_message(target, instance, port):
    """Nothing answered on the container port of a tunnel that worked (doctor: the banner hop)."""
    return (f'Container port {port} of {describe(target)}{on_instance(instance)} stopped answering: new '
            'connections are closed before it sends a byte. It answered when the tunnel opened, so the '
            'process behind it (sshd for SSH) has probably stopped or the container restarted. '
            f'{restart_advice(target)}')


def auth_error(status, auth_kind, target, scm_url, server_message=None):
    enable_basic = (f'az resource update -g {target.resource_group} --namespace Microsoft.Web --resource-type '
                    f'basicPublishingCredentialsPolicies --parent sites/{target.name}'
                    f'{"/slots/" + target.slot if target.slot else ""} --name scm --set properties.allow=true')
    if auth_kind == 'Basic':
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
    said = f' It said: "{server_message}".' if server_message else ''
    if status == 403:
        return ForbiddenError(f'{what}.{said} {advice}')
    return UnauthorizedError(f'{what}.{said} {advice}')
