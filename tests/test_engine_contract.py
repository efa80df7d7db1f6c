"""Both engine modules conform to the engine contract tunnel.py spells out as typing.Protocol classes
(EngineModule, Engine, Pump, and the call signatures EngineFactory, PumpFactory, HttpGet): every
member there, every parameter by its name, and errors as (reason, facts). mypy checks the portable
module against the same protocols statically (tunnel._select_engine's return type)."""
import inspect
import os

import pytest

from azext_webapp import _reasons, tunnel
from tests.fixtures_engine import basic_auth, engine_module, free_port

ENGINE_KEYWORDS = dict(bind="127.0.0.1", bind_port=0, instance="i0", target_port=2222, ping_interval=30.0,
                       ca_file=None, verify=True, proxy=None, proxy_auth=None, listen=True, hold=True)


def _parameters(function):
    """(name, has a default) of a callable's parameters, self and the return left out."""
    return [(p.name, p.default is not inspect.Parameter.empty)
            for p in inspect.signature(function).parameters.values() if p.name != "self"]


def test_the_module_has_every_member_of_the_contract(engine):
    module = engine_module(engine)
    assert isinstance(module, tunnel.EngineModule)
    assert issubclass(module.Error, Exception)
    assert module.REASONS == tuple((r.name, r.kind) for r in _reasons.REASONS.values())


def test_an_engine_takes_every_argument_by_name_and_has_every_method(engine):
    module = engine_module(engine)
    e = module.Engine(host="localhost", port=443, authorization=basic_auth(), **ENGINE_KEYWORDS)
    try:
        assert isinstance(e, tunnel.Engine)
        assert e.running() is False and isinstance(e.stats(), dict) and e.poll_events() == []
        e.set_authorization("Bearer renewed")
        assert e.wait(0.0) is False
        assert e.release(True) is None and e.release(False) is None     # nothing held, not running
    finally:
        e.stop()


def test_a_pump_takes_its_arguments_by_name_and_has_every_method(engine):
    module = engine_module(engine)
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        pump = module.Pump(in_fd=in_r, out_fd=out_w)
        try:
            assert isinstance(pump, tunnel.Pump)
            os.close(pump.take_peer())
            assert pump.counts() == (0, 0)
        finally:
            pump.close()
        assert pump.wait(0.0) is True
    finally:
        for fd in (in_r, in_w, out_r, out_w):
            try:
                os.close(fd)
            except OSError:
                pass


def test_http_get_takes_every_argument_by_name_and_fails_with_a_reason(engine):
    module = engine_module(engine)
    port = free_port()
    with pytest.raises(module.Error) as info:
        module.http_get(url=f"https://127.0.0.1:{port}/", authorization=basic_auth(), instance=None, ca_file=None,
                        verify=True, proxy=None, proxy_auth=None, timeout=5.0)
    reason, facts = info.value.args
    assert reason == "connect_refused" and isinstance(facts, dict) and set(facts) <= set(_reasons.FACTS)


def test_the_portable_signatures_are_the_protocols():
    """The native module's C functions carry no signature to compare; the keyword calls above and the
    same call sites in tunnel.py cover them."""
    module = engine_module("portable")
    assert _parameters(module.Engine.__init__) == _parameters(tunnel.EngineFactory.__call__)
    assert _parameters(module.Pump.__init__) == _parameters(tunnel.PumpFactory.__call__)
    assert _parameters(module.http_get) == _parameters(tunnel.HttpGet.__call__)
    for protocol, cls in ((tunnel.Engine, module.Engine), (tunnel.Pump, module.Pump)):
        for name, member in inspect.getmembers(protocol, inspect.isfunction):
            if not name.startswith("_"):
                assert [p for p, _ in _parameters(getattr(cls, name))] == [p for p, _ in _parameters(member)], name
