"""The portable tunnel engine: Python's standard library only (asyncio, ssl, socket, threading).

It implements the engine-module contract that ``azext_webapp/tunnel.py`` uses (the native
``azext_webapp._tunnel`` implements the same one; ``tunnel.EngineModule`` spells it out):
``Error``, ``Engine``, ``Pump``, ``http_get`` and every shared limit of
``azext_webapp/engine_limits.json`` (``RING_CAP``, ``FRAME_MAX``, ...), with the same reasons and
facts for the same failures, and the vocabulary both read from ``_reasons.def``. ``tunnel.py`` loads
it where the native engine cannot load (Windows, macOS, Linux on Arm, musl) or when
``WEBAPP_ENGINE=portable``.

One file per job: ``codec`` (RFC 6455 framing and masking), ``connect`` (resolve, TCP, proxy
CONNECT, TLS), ``relay`` (one local connection and its WebSocket), ``engine`` (the event loop
thread and the API), ``pump`` (stdio mode), ``probe`` (``http_get``), ``listener``, ``limits``
(the open-file limit), ``sizes`` (the shared sizes and time limits, read from that file),
``waits`` (main-thread waits in half-second slices), ``errors``.
"""
from .. import _reasons
from .engine import Engine
from .errors import Error
from .probe import http_get
from .pump import Pump
from .sizes import (CLOSE_WAIT_SECS, EVENTS_MAX, FRAME_MAX, HOLD_KEEP_MAX, HOLD_TIMES_MAX, HOLD_WINDOW_MS, HS_MAX,
                    HS_SECS, LOCAL_CHUNK, PROBE_BODY_MAX, REFUSAL_SECS, RING_CAP, RX_FRAME_MAX, TEXTS_MAX, TLS_READ)

REASONS = tuple((reason.name, reason.kind) for reason in _reasons.REASONS.values())
KINDS, PHASES, FACTS = _reasons.KINDS, _reasons.PHASES, _reasons.FACTS
SERVER_MESSAGE_MAX, BODY_SCAN = _reasons.SERVER_MESSAGE_MAX, _reasons.BODY_SCAN

__all__ = ["Error", "Engine", "Pump", "http_get", "RING_CAP", "FRAME_MAX", "RX_FRAME_MAX", "HS_MAX", "HS_SECS",
           "CLOSE_WAIT_SECS", "EVENTS_MAX", "PROBE_BODY_MAX", "LOCAL_CHUNK", "TLS_READ", "REFUSAL_SECS", "TEXTS_MAX",
           "HOLD_KEEP_MAX", "HOLD_TIMES_MAX", "HOLD_WINDOW_MS", "REASONS", "KINDS", "PHASES", "FACTS",
           "SERVER_MESSAGE_MAX", "BODY_SCAN"]
