"""From an app to an open exec channel: ``wss://<scm-host>/exec/shell``, a shell in the container
(or in the SCM site's own, Kudu, container) behind a terminal, without sshd (PROTOCOL.md sections 7 and 8).

The tunnel's hops up to the credentials (``_hops.py``) give the SCM URL (a Linux app that is not
stopped; ``--instance`` checked) and the credential; ``tunnel.Channel`` opens the WebSocket with the
instance's ARRAffinity cookie and the terminal's size as its first frame; a refusal becomes one line
that says what to do (``_errors.exec_refused``), with the SCM site's own message when it gave one.
"""

import contextlib
import json
from urllib.parse import urlencode

from knack.log import get_logger

from azext_webapp import _hops

logger = get_logger(__name__)

EXEC_PATH = '/exec/shell'
OPEN_TIMEOUT = 30.0


def resolve_exec(cmd, target, instance=None, container=None):
    """The hops up to the credentials (_hops.py: the app on Linux, running, --instance one of its
    instances; SSH need not be on; the SCM credential, which the SCM site takes): the Walk an exec
    channel starts from. container: one of the app's site containers (ARM's), to run in instead of
    the main one."""
    walk = _hops.Walk(cmd, target, instance, ssh=False)
    _hops.walk(walk, until='credentials')
    if container is not None:
        walk.container = _site_container(walk, container)
    logger.info('Exec channel to %s with %s auth', walk.scm_url, walk.credential.kind)
    return walk


def _site_container(walk, name):
    """The name, once ARM lists it among the app's site containers; else a clear error."""
    from azure.core.exceptions import AzureError
    from azext_webapp import _walls
    from azext_webapp._errors import container_error
    try:
        found = _walls.site_containers(walk.client, walk.site.id)
    except AzureError as err:
        logger.info('Listing the site containers failed (%s): asking the SCM site anyway', err)
        return name
    if name in [c.name for c in found]:
        return name
    raise container_error(walk.target, name, found)


def shell_path(kudu=False, shell=None, container=None):
    """The request path: ``target=kudu`` first, then ``shell`` (what Azure's client sends); a site
    container as ``container`` before the shell (the sandbox's model, PROTOCOL.md section 9)."""
    query = (([('target', 'kudu')] if kudu else []) + ([('container', container)] if container else [])
             + ([('shell', shell)] if shell else []))
    return EXEC_PATH + ('?' + urlencode(query) if query else '')


def size_message(size):
    """The Text frame that tells the server the terminal's size (first, and on every resize)."""
    columns, rows = size
    return json.dumps({'width': int(columns), 'height': int(rows)})


@contextlib.contextmanager
def open_channel(endpoint, instance=None, kudu=False, shell=None, size=(80, 24)):
    """An open channel (``tunnel.Channel``) to the instance's shell; always closed on leaving.
    endpoint: a Walk past the credentials hop (``resolve_exec``)."""
    from azext_webapp._errors import exec_refused
    from azext_webapp._restarts import RESTARTING_STATUS
    tunnel = endpoint.tunnel
    path = shell_path(kudu, shell, getattr(endpoint, 'container', None))
    channel = None
    progress = None
    try:
        while True:
            channel = tunnel.Channel(endpoint.scm_url, endpoint.credential.authorization, path, instance=instance)
            try:
                channel.open(first_text=size_message(size), timeout=OPEN_TIMEOUT)
                break
            except tunnel.TunnelError as err:
                channel.close()
                channel = None
                # 502/503: the front end's answer while the app restarts; wait for it as ssh does
                restarting = err.reason == 'http_status' and (err.facts or {}).get('status') in RESTARTING_STATUS
                if not restarting or (progress and progress.waited() >= _hops.STARTING_MAX_WAIT):
                    raise exec_refused(err.reason, err.facts, endpoint, instance) from None
                progress = progress or _hops.StartupProgress(endpoint.target)
                progress.wait()
        logger.info('Exec channel open%s', f' to instance {instance}' if instance else '')
        yield channel
    finally:
        if channel is not None:
            channel.close()
