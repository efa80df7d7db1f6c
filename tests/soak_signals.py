"""`make soak` (not `make test`: about half an hour): start/signal cycles of the real
`az webapp remote-connection create` on the sandbox, on each engine — 1,000 ending with SIGTERM and
200 with Ctrl+C (SIGINT, once ready), each after a burst of 40 local connections closed at once, two
cycles at a time (tests/fixtures_command.py's signal_cycle). Every cycle must exit with status 0
within 2 s of its signal, with its closing line and no traceback. Prints, per engine and signal: the
cycles, the failures and the exit latency (median, max).

Not named test_*.py, so `pytest tests` leaves it out; `make soak` names it. WEBAPP_SOAK_SIGTERM and
WEBAPP_SOAK_SIGINT change the number of cycles (a short trial run)."""
import os
import signal
import statistics

import pytest

from tests.fixtures_command import AzRunner, signal_cycles

CYCLES = {signal.SIGTERM: int(os.environ.get('WEBAPP_SOAK_SIGTERM', '1000')),
          signal.SIGINT: int(os.environ.get('WEBAPP_SOAK_SIGINT', '200'))}


@pytest.fixture
def sigint_for_children():
    """Ctrl+C must reach az even when this soak runs as a background job of a non-interactive shell,
    which starts with SIGINT ignored (and az rightly keeps it so): a handled SIGINT here is reset to
    the default action in every program this process starts."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.timeout(4 * 3600)
@pytest.mark.parametrize('engine', ['native', 'portable'])
@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT], ids=['SIGTERM', 'SIGINT'])
def test_soak_start_and_signal(webapp_az, rg, engine, sig, sigint_for_children):  # pylint: disable=unused-argument
    runner = AzRunner(dict(webapp_az.env, WEBAPP_ENGINE=engine, PYTHONFAULTHANDLER='1'), webapp_az.cwd)
    cycles = CYCLES[sig]
    failures, latencies = signal_cycles(runner, rg, sig, cycles)
    figures = (f'soak {engine} {sig.name}: {cycles} cycles, {len(failures)} failed; exit after the signal: '
               f'median {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms')
    print('\n' + figures, flush=True)
    assert not failures, f'{len(failures)} of {cycles} cycles failed; the first:\n{failures[0]}'
