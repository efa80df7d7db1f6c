"""The portable tunnel engine: Python's standard library only (asyncio, ssl, socket, threading).

It implements the engine-module contract that ``azext_webapp/tunnel.py`` uses (the native
``azext_webapp._tunnel`` implements the same one): ``Error``, ``RING_CAP``, ``FRAME_MAX``,
``Engine``, ``Pump`` and ``http_get``, with the same error kinds, statuses and one-line messages.
``tunnel.py`` loads it where the native engine cannot load (Windows, macOS, Linux on Arm, musl)
or when ``WEBAPP_ENGINE=portable``.

One file per job: ``codec`` (RFC 6455 framing and masking), ``connect`` (resolve, TCP, proxy
CONNECT, TLS), ``relay`` (one local connection and its WebSocket), ``engine`` (the event loop
thread and the API), ``pump`` (stdio mode), ``probe`` (``http_get``), ``listener``, ``limits``,
``waits`` (main-thread waits in half-second slices), ``errors``.
"""
from .codec import FRAME_MAX
from .engine import Engine
from .errors import Error
from .probe import http_get
from .pump import Pump
from .relay import RING_CAP

__all__ = ["Error", "RING_CAP", "FRAME_MAX", "Engine", "Pump", "http_get"]
