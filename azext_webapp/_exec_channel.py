"""From an app to an open exec channel: ``wss://<scm-host>/exec/shell``, a shell in the container
(or in the SCM site's own, Kudu, container) behind a terminal, without sshd (PROTOCOL.md section 4).

ARM gives the SCM URL (a Linux app that is not stopped; ``--instance`` checked) and the credential,
as for the tunnel; ``tunnel.Channel`` opens the WebSocket with the instance's ARRAffinity cookie and
the terminal's size as its first frame; a refusal becomes one line that says what to do
(``_errors.exec_refused``), with the SCM site's own message when it gave one.
"""

import contextlib
import json
from urllib.parse import urlencode

from knack.log import get_logger

from azext_webapp._arm import locate, scm_credential, web_client
from azext_webapp._connection import load_engine

logger = get_logger(__name__)

EXEC_PATH = '/exec/shell'
OPEN_TIMEOUT = 30.0
TARGETS = ('app', 'kudu')


class ExecEndpoint:  # pylint: disable=too-few-public-methods
    """Where exec channels of one app go; ``repr`` never shows the credential."""

    def __init__(self, tunnel, target, scm_url, credential):
        self.tunnel = tunnel
        self.target = target
        self.scm_url = scm_url
        self.credential = credential

    @property
    def auth_kind(self):
        return self.credential.kind

    def __repr__(self):
        return f'<ExecEndpoint {self.scm_url} auth={self.credential.kind}>'


def resolve_exec(cmd, target, instance=None):
    """ARM: the Linux app's SCM URL (instance checked) and the SCM credential."""
    tunnel = load_engine()
    client = web_client(cmd.cli_ctx)
    scm_url = locate(client, target, instance)
    credential = scm_credential(cmd.cli_ctx, client, target)
    logger.info('Exec channel to %s with %s auth', scm_url, credential.kind)
    return ExecEndpoint(tunnel, target, scm_url, credential)


def shell_path(kudu=False, shell=None):
    """The request path: ``target=kudu`` first, then ``shell`` (what Azure's client sends)."""
    query = ([('target', 'kudu')] if kudu else []) + ([('shell', shell)] if shell else [])
    return EXEC_PATH + ('?' + urlencode(query) if query else '')


def size_message(size):
    """The Text frame that tells the server the terminal's size (first, and on every resize)."""
    columns, rows = size
    return json.dumps({'width': int(columns), 'height': int(rows)})


@contextlib.contextmanager
def open_channel(endpoint, instance=None, kudu=False, shell=None, size=(80, 24), stop=None):
    """An open channel (``tunnel.Channel``) to the instance's shell; always closed on leaving. A
    signal recorded in ``stop`` while the upgrade is awaited raises ``_exec_run.Stopped``."""
    from azext_webapp._errors import exec_refused
    from azext_webapp._exec_run import Stopped
    tunnel = endpoint.tunnel
    cancelled = None if stop is None else (lambda: stop.signum is not None)
    channel = None
    try:
        try:
            channel = tunnel.Channel(endpoint.scm_url, endpoint.credential.authorization, shell_path(kudu, shell),
                                     instance=instance)
            channel.open(first_text=size_message(size), timeout=OPEN_TIMEOUT, cancelled=cancelled)
        except tunnel.TunnelError as err:
            if cancelled is not None and cancelled():
                raise Stopped() from None
            raise exec_refused(err.kind, err.status, str(err), err.server_message, endpoint, instance) from None
        logger.info('Exec channel open%s', f' to instance {instance}' if instance else '')
        yield channel
    finally:
        if channel is not None:
            channel.close()
