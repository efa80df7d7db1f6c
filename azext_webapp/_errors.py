"""The error catalogue: every failure of the commands as one line that says what happened and
what to do. Pure functions of facts; the advice for the user is written here once."""

from azure.cli.core.azclierror import (AzureConnectionError, AzureResponseError, FileOperationError,
                                       ForbiddenError, InvalidArgumentValueError, ResourceNotFoundError,
                                       UnauthorizedError, ValidationError)

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


def exec_hint(target):
    """Where sshd does not answer: the way in that needs none."""
    slot = f' --slot {target.slot}' if target.slot else ''
    return (f'Without sshd, `az webapp remote-connection exec -g {target.resource_group} -n {target.name}{slot}` '
            'opens a shell in the container (and runs commands, and `cp` copies files) through the SCM site.')


def exec_refused(kind, status, detail, server_message, endpoint, instance=None):
    """The exec channel's WebSocket was not opened: the engine's failure, and what the SCM site
    said about it (the JSON Message of its answer) when it said anything."""
    target, scm_url = endpoint.target, endpoint.scm_url
    site = f'The SCM site {scm_url} of {describe(target)}{on_instance(instance)}'
    message = first_line(server_message) if server_message else ''
    said = f' It said: {message}.' if message else ''
    ssh_instead = ('`az webapp remote-connection ssh` works instead where the container runs sshd on port '
                   f'{SSH_PORT}.')
    if kind == 'auth' and status == 403 and message:
        return ForbiddenError(f'{site} refused the exec channel (HTTP 403): {message}. If the exec channel is turned '
                              f'off for this app, ask an owner of the app; {ssh_instead}')
    if kind == 'http' and status == 404:
        return ResourceNotFoundError(f'{site} has no exec channel (HTTP 404 for /exec/shell).{said} {ssh_instead}')
    if kind == 'http':
        return AzureResponseError(f'{site} refused the exec channel: {detail}.{said} Try again in a minute; if it '
                                  f'persists, restart the app (`az webapp restart -g {target.resource_group} -n '
                                  f'{target.name}`).')
    error = tunnel_error(kind, status, detail, endpoint)
    return type(error)(f'{error}{said}') if said else error


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
        return ValidationError(f'{path} is a directory in {where}; cp copies one file at a time (name the file, or '
                               'a directory that does not hold a directory of the same name).')
    if word == 'nodir':
        return ResourceNotFoundError(f'The directory of {path} does not exist in {where}; create it first '
                                     f'(`az webapp remote-connection exec ... -- mkdir -p DIR`).')
    if word == 'denied':
        return ValidationError(f'Permission denied for {path} in {where}.')
    if word in ('write', 'move'):
        return FileOperationError(f'Could not write {path} in {where}: {detail or "write failed"} (a full disk or '
                                  'quota?). Nothing was replaced.')
    if word in ('size', 'checksum'):
        return FileOperationError(f'The copy of {path} arrived damaged in {where} ({word} differs); nothing was '
                                  'replaced. Run the command again.')
    return FileOperationError(f'Could not read {path} in {where}.')


def tunnel_error(kind, status, detail, endpoint):
    """The typed az error for an engine failure of this kind (at start, or of a connection later)."""
    target, scm_url = endpoint.target, endpoint.scm_url
    if kind == 'auth':
        return auth_error(status, endpoint.auth_kind, target, scm_url)
    if kind == 'bind':
        return bind_error(detail, None, None, None)
    site = f'the SCM site {scm_url} of {describe(target)}'
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
    if kind == 'resource':
        return AzureConnectionError(
            f'Cannot open another connection to {site}: {detail}. Close connections you no longer need, or '
            'raise the open-file limit of the shell that runs az (`ulimit -n`).')
    if kind in ('connect', 'proxy', 'timeout', 'closed'):
        return AzureConnectionError(
            f'Cannot reach {site}: {detail}. Check your network connection, proxy settings (HTTPS_PROXY, '
            "NO_PROXY) and the access restrictions of the app's SCM site.")
    if kind == 'http' and status == 404:
        return AzureResponseError(
            f'{site[0].upper()}{site[1:]} has no tunnel endpoint: {detail}. Is this the SCM (Kudu) host of an '
            'App Service on Linux app? Check the app with `az webapp show -g '
            f'{target.resource_group} -n {target.name} --query "[kind, reserved]"`.')
    if kind == 'http':
        return AzureResponseError(
            f'{site[0].upper()}{site[1:]} refused the tunnel: {detail}. Try again in a minute; if it persists, '
            f'restart the app (`az webapp restart -g {target.resource_group} -n {target.name}`).')
    return AzureResponseError(f'The tunnel to {site} failed: {detail}.')


def bind_error(detail, bind, port, address_problem):
    """The local listener could not start. detail: the engine's words; address_problem: why this
    machine cannot listen on the --bind address at all (None when it can, so the port is at fault)."""
    if 'already in use' in detail:
        where = f'Port {port} on {bind} is already in use' if port else detail.split(';')[0].rstrip('.')
        return InvalidArgumentValueError(
            f'{where[0].upper()}{where[1:]}. Choose another local port with --port, or leave --port out to use a '
            'free one.')
    if address_problem:
        return InvalidArgumentValueError(
            f'Cannot listen on --bind {bind}: it is not an address of this machine ({address_problem}). Use one '
            'of its addresses: 127.0.0.1 or ::1 (this machine only), or 0.0.0.0 (every IPv4 address).')
    return InvalidArgumentValueError(
        f'{detail.split(";")[0].rstrip(".")}. Choose another local port with --port, or leave --port out to use '
        'a free one.')


# The hops between this machine and the container's sshd, in the order `az webapp remote-connection
# doctor` checks them. The doctor's table and the tunnel's warnings after start use these words.
HOPS = (
    ('arm', 'Signed in and allowed to read the app (Azure Resource Manager)'),
    ('app', 'App found, on Linux, running'),
    ('scm', 'SCM host resolves and its certificate verifies'),
    ('credentials', 'SCM site accepts the credentials'),
    ('status', 'Container port answers (GetStatus)'),
    ('websocket', 'WebSocket upgrade to the tunnel'),
    ('banner', 'SSH banner through the tunnel'),
    ('algorithms', "Container's SSH algorithms (this OpenSSH, the portal's browser SSH)"),
    ('login', "Root login with the password 'Docker!'"),
    ('sftp', 'sftp subsystem (sftp, scp)'),
    ('exec', 'Exec channel, no sshd needed (exec, cp)'),
)
HOP_TITLES = dict(HOPS)

# The hop an engine failure of this kind belongs to.
_HOP_OF_KIND = {'auth': 'credentials', 'tls': 'scm', 'dns': 'scm', 'connect': 'scm', 'proxy': 'scm',
                'timeout': 'scm', 'resource': 'scm', 'closed': 'websocket', 'http': 'websocket'}


def hop_of_kind(kind):
    return _HOP_OF_KIND.get(kind, 'websocket')


def doctor_command(target, instance=None):
    slot = f' --slot {target.slot}' if target.slot else ''
    one = f' --instance {instance}' if instance else ''
    return f'az webapp remote-connection doctor -g {target.resource_group} -n {target.name}{slot}{one}'


def after_start_warning(hop, instance, text, target):
    """A failure of new connections once the tunnel is open, in the doctor's words for its hop."""
    return (f"A new connection failed{on_instance(instance)} at the hop '{HOP_TITLES[hop]}'. {text} "
            f'(`{doctor_command(target, instance)}` checks every hop.)')


def silent_container_message(target, instance, port):
    """Nothing answered on the container port of a tunnel that worked (doctor: the banner hop)."""
    return (f'Container port {port} of {describe(target)}{on_instance(instance)} stopped answering: new '
            'connections are closed before it sends a byte. It answered when the tunnel opened, so the '
            'process behind it (sshd for SSH) has probably stopped or the container restarted. '
            f'{restart_advice(target)}')


def auth_error(status, auth_kind, target, scm_url):
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
    if status == 403:
        return ForbiddenError(f'{what}. {advice}')
    return UnauthorizedError(f'{what}. {advice}')
