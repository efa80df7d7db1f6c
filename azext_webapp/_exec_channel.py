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


def resolve_exec(cmd, target, instance=None):
    """The hops up to the credentials (_hops.py: the app on Linux, running, --instance one of its
    instances; the SCM credential, which the SCM site takes): the Walk an exec channel starts from."""
    walk = _hops.Walk(cmd, target, instance)
    _hops.walk(walk, until='credentials')
    logger.info('Exec channel to %s with %s auth', walk.scm_url, walk.credential.kind)
    return walk


def shell_path(kudu=False, shell=None):
    """The request path: ``target=kudu`` first, then ``shell`` (what Azure's client sends)."""
    query = ([('target', 'kudu')] if kudu else []) + ([('shell', shell)] if shell else [])
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
    tunnel = endpoint.tunnel
    channel = None
    try:
        try:
            channel = tunnel.Channel(endpoint.scm_url, endpoint.credential.authorization, shell_path(kudu, shell),
                                     instance=instance)
            channel.open(first_text=size_message(size), timeout=OPEN_TIMEOUT)
        except tunnel.TunnelError as err:
            raise exec_refused(err.reason, err.facts, endpoint, instance) from None
        logger.info('Exec channel open%s', f' to instance {instance}' if instance else '')
        yield channel
    finally:
        if channel is not None:
            channel.close()
