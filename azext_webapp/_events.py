"""What the tunnel says about its connections once it is open.

--verbose shows one line per connection (who, how many bytes; never payloads or credentials).
Without it, a tunnel that stops working must still say so: each reason of failure is reported once,
as a warning that names the app, the instance and the likely cause, however many connections
then fail the same way.
"""
from knack.log import get_logger

logger = get_logger(__name__)

# A WebSocket the server ended before the container sent a single byte: nothing answered on the
# container port (the SCM site accepts the upgrade first, then closes when it cannot connect).
CONTAINER_SILENT = 'container-silent'


class EventReporter:  # pylint: disable=too-few-public-methods
    """Callable for the tunnel's on_event.

    describe(reason, facts) -> the warning for a failed connection of that reason;
    silent_container() -> the warning for a container port that no longer answers;
    on_held(event): a connection the engine holds (_restarts.RestartWatch.held), or None."""

    def __init__(self, describe, silent_container, on_held=None):
        self._describe = describe
        self._silent_container = silent_container
        self.on_held = on_held
        self._reported = set()

    def __call__(self, event):
        if event.kind == 'opened':
            logger.info('Connection %d from %s opened', event.conn_id, event.peer)
            return
        if event.kind == 'held':
            logger.info('Connection %d from %s waits: %s', event.conn_id, event.peer,
                        event.message or 'the container port closed it before a byte')
            if self.on_held is not None:
                self.on_held(event)
            return
        if event.kind == 'closed':
            logger.info('Connection %d from %s closed: %d bytes sent, %d bytes received',
                        event.conn_id, event.peer, event.bytes_up, event.bytes_down)
            if event.remote_closed and event.bytes_down == 0:
                self._once(CONTAINER_SILENT, self._silent_container)
            return
        logger.info('Connection %d from %s failed: %s', event.conn_id, event.peer, event.message)
        reason, facts = event.reason or 'internal', event.facts or {}
        self._once((reason, event.status), lambda: self._describe(reason, facts))

    def _once(self, key, text):
        if key in self._reported:
            return
        self._reported.add(key)
        logger.warning('%s', text())
