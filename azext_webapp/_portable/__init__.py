"""The portable tunnel engine: Python's standard library only (asyncio, ssl, socket, threading).

It implements the engine-module contract that ``azext_webapp/tunnel.py`` uses (the native
``azext_webapp._tunnel`` implements the same one): ``Error``, ``Engine``, ``Pump``, ``http_get`` and
every shared limit of ``azext_webapp/engine_limits.json`` (``RING_CAP``, ``FRAME_MAX``, ...), with
the same error kinds, statuses and one-line messages. ``tunnel.py`` loads it where the native engine
cannot load (Windows, macOS, Linux on Arm, musl) or when ``WEBAPP_ENGINE=portable``.

One file per job: ``codec`` (RFC 6455 framing and masking), ``connect`` (resolve, TCP, proxy
CONNECT, TLS), ``relay`` (one local connection and its WebSocket), ``engine`` (the event loop
thread and the API), ``pump`` (stdio mode), ``probe`` (``http_get``), ``listener``, ``limits``
(the open-file limit), ``sizes`` (the shared sizes and time limits, read from that file),
``waits`` (main-thread waits in half-second slices), ``errors``.
"""
from .engine import Engine
from .errors import Error
from .probe import http_get
from .pump import Pump
from .sizes import (CLOSE_WAIT_SECS, EVENTS_MAX, FRAME_MAX, HS_MAX, HS_SECS, LOCAL_CHUNK, PROBE_BODY_MAX,
                    REFUSAL_BODY_MAX, REFUSAL_SECS, REFUSALS_KEPT, RING_CAP, RX_FRAME_MAX, TEXTS_MAX, TLS_READ)

__all__ = ["Error", "Engine", "Pump", "http_get", "RING_CAP", "FRAME_MAX", "RX_FRAME_MAX", "HS_MAX", "HS_SECS",
           "CLOSE_WAIT_SECS", "EVENTS_MAX", "PROBE_BODY_MAX", "LOCAL_CHUNK", "TLS_READ", "REFUSAL_BODY_MAX",
           "REFUSAL_SECS", "REFUSALS_KEPT", "TEXTS_MAX"]
