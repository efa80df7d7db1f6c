"""From an app to a running, checked tunnel: the hops of _hops.py up to the credentials (``resolve``),
then the engine, its container's readiness (GetStatus) and one real handshake (``open_tunnel``), token
renewal, connections that wait out a restart of the app (``_restarts``), and what the tunnel says about
its connections once open."""

import contextlib
import signal
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional, Tuple

from azure.cli.core.azclierror import CLIInternalError, UnclassifiedUserFault
from knack.log import get_logger

from azext_webapp import _hops
from azext_webapp._errors import bind_error, first_line, restart_words, tunnel_error
from azext_webapp._events import EventReporter
from azext_webapp._renewal import TokenRenewal
from azext_webapp._restarts import PROBE_TIMEOUT, RestartWatch
from azext_webapp.ssh import SSH_PORT

if TYPE_CHECKING:
    from azext_webapp._arm import Target
    from azext_webapp.tunnel import Tunnel

logger = get_logger(__name__)


def resolve(cmd: Any, target: 'Target', instance: Optional[str] = None,
            target_port: Optional[int] = None) -> _hops.Walk:
    """The hops up to the SCM site accepting the credentials: a Walk (the endpoint every tunnel to
    this app starts from). The engine is loaded first, so that a forced one that cannot load fails
    before any request."""
    walk = _hops.Walk(cmd, target, instance, target_port, tunnel=load_engine())
    _hops.walk(walk, until='credentials')
    return walk


def locate(cmd: Any, target: 'Target', instance: Optional[str] = None) -> _hops.Walk:
    """The hops up to the app's SSH setting (found, on Linux, running, SSH turned on; its SCM URL,
    remote debugging and the SCM site's network walls), without a request to the SCM site."""
    walk = _hops.Walk(cmd, target, instance)
    _hops.walk(walk, until='ssh')
    return walk


def load_engine() -> ModuleType:
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
def open_tunnel(endpoint: _hops.Walk, bind: str = '127.0.0.1', port: Optional[int] = None,
                listen: bool = True, hold: bool = False) -> Iterator[Tuple['Tunnel', Optional[int]]]:
    """Start the engine (a busy --port fails before any waiting), then the instance's hops: the
    container ready (GetStatus) and one real handshake; yield (engine, container port); always stop.
    endpoint: the Walk of resolve() (or of one instance of it). hold: connections the SCM site turns
    away while the app restarts wait for it (for a caller whose waits deliver the engine's events:
    serve(), relay_stdio())."""
    tunnel = endpoint.tunnel
    engine = renewal = watch = None
    try:
        try:
            options = {'bind': bind, 'port': port or 0} if listen else {'listen': False}
            reporter = event_reporter(endpoint)
            engine = tunnel.Tunnel(scm_url=endpoint.scm_url, authorization=endpoint.authorization,
                                   instance=endpoint.instance, target_port=endpoint.target_port,
                                   on_event=reporter, hold=hold, **options)
            engine.start()
        except tunnel.TunnelError as err:
            if err.kind == 'bind' and listen:
                from azext_webapp._validators import address_problem
                raise bind_error(err.reason, err.facts, address_problem(bind)) from None
            raise tunnel_error(err.reason, err.facts, endpoint) from None
        if listen:
            logger.info('Listening on %s port %d', bind, engine.port)
        if hold:
            watch = restart_watch(endpoint, engine)
            reporter.on_held = watch.held
        endpoint.engine = engine
        _hops.walk(endpoint, start='status', until='websocket')
        endpoint.authorization = None
        credential = endpoint.credential
        if credential.renew:
            def renewed(authorization: str) -> None:
                engine.set_authorization(authorization)
                credential.authorization = authorization    # the restart watch's probes too
            renewal = TokenRenewal(credential.renew, renewed, credential.expires_on).start()
        yield engine, endpoint.remote_port
    finally:
        if renewal is not None:
            renewal.stop()
        if watch is not None:
            watch.stop()
        if engine is not None:
            stop_tunnel(engine)


def restart_watch(endpoint: _hops.Walk, engine: 'Tunnel') -> RestartWatch:
    """What becomes of the connections the engine holds while the app restarts (_restarts.py)."""
    tunnel, credential = endpoint.tunnel, endpoint.credential

    def probe() -> Any:
        return tunnel.get_status(endpoint.scm_url, credential.authorization, instance=endpoint.instance,
                                 timeout=PROBE_TIMEOUT)

    def say(what: str, seconds: float) -> str:
        return restart_words(endpoint.target, endpoint.instance, what, seconds)

    return RestartWatch(engine.release, probe, say, tunnel.TunnelError)


def stop_tunnel(engine: 'Tunnel') -> None:
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


def event_reporter(endpoint: _hops.Walk) -> EventReporter:
    """One warning per reason of failure once the tunnel is open, naming the instance, in the words
    `az webapp remote-connection doctor` uses for the hop that failed (the error the same failure
    gives at start, under the doctor's title for its hop)."""
    from azext_webapp._errors import after_start_warning, hop_of, silent_container_message
    target = endpoint.target

    def failure_warning(reason: str, facts: Dict[str, Any]) -> str:
        error = tunnel_error(reason, facts, endpoint)
        return after_start_warning(hop_of(reason), endpoint.instance, str(error), target)

    def silent_container() -> str:
        port = endpoint.target_port or SSH_PORT
        return after_start_warning('banner', endpoint.instance,
                                   silent_container_message(target, endpoint.instance, port), target)

    return EventReporter(failure_warning, silent_container)
