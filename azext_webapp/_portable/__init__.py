"""The portable tunnel engine: Python's standard library only (asyncio, ssl, socket, threading).

It implements the engine-module contract that ``azext_webapp/tunnel.py`` uses (the native
``azext_webapp._tunnel`` implements the same one; ``tunnel.EngineModule`` spells it out):
``Error``, ``RING_CAP``, ``FRAME_MAX``, ``Engine``, ``Pump`` and ``http_get``, with the same
reasons and facts for the same failures, and the vocabulary both read from ``_reasons.def``.
``tunnel.py`` loads it where the native engine cannot load (Windows, macOS, Linux on Arm, musl)
or when ``WEBAPP_ENGINE=portable``.

One file per job: ``codec`` (RFC 6455 framing and masking), ``connect`` (resolve, TCP, proxy
CONNECT, TLS), ``relay`` (one local connection and its WebSocket), ``engine`` (the event loop
thread and the API), ``pump`` (stdio mode), ``probe`` (``http_get``), ``listener``, ``limits``,
``waits`` (main-thread waits in half-second slices), ``errors``.
"""
from .. import _reasons
from .codec import FRAME_MAX
from .engine import Engine
from .errors import Error
from .probe import http_get
from .pump import Pump
from .relay import RING_CAP

REASONS = tuple((reason.name, reason.kind) for reason in _reasons.REASONS.values())
KINDS, PHASES, FACTS = _reasons.KINDS, _reasons.PHASES, _reasons.FACTS
SERVER_MESSAGE_MAX, BODY_SCAN = _reasons.SERVER_MESSAGE_MAX, _reasons.BODY_SCAN

__all__ = ["Error", "RING_CAP", "FRAME_MAX", "Engine", "Pump", "http_get", "REASONS", "KINDS", "PHASES", "FACTS",
           "SERVER_MESSAGE_MAX", "BODY_SCAN"]
