"""The sizes and time limits both engines share, read from ``azext_webapp/engine_limits.json``: the
one place they are defined (the native engine compiles them from the same file, as
native/tn_limits.h). ``LIMITS`` maps every name to its value; the names used here are bound below.
"""
import json
import os

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "engine_limits.json")

with open(_PATH, encoding="utf-8") as _file:
    LIMITS = {name: int(entry["value"]) for name, entry in json.load(_file)["limits"].items()}

RING_CAP: int = LIMITS["RING_CAP"]
FRAME_MAX: int = LIMITS["FRAME_MAX"]
RX_FRAME_MAX: int = LIMITS["RX_FRAME_MAX"]
HS_MAX: int = LIMITS["HS_MAX"]
HS_SECS: int = LIMITS["HS_SECS"]
CLOSE_WAIT_SECS: int = LIMITS["CLOSE_WAIT_SECS"]
EVENTS_MAX: int = LIMITS["EVENTS_MAX"]
PROBE_BODY_MAX: int = LIMITS["PROBE_BODY_MAX"]
LOCAL_CHUNK: int = LIMITS["LOCAL_CHUNK"]
TLS_READ: int = LIMITS["TLS_READ"]
REFUSAL_SECS: int = LIMITS["REFUSAL_SECS"]
TEXTS_MAX: int = LIMITS["TEXTS_MAX"]
HOLD_KEEP_MAX: int = LIMITS["HOLD_KEEP_MAX"]
HOLD_TIMES_MAX: int = LIMITS["HOLD_TIMES_MAX"]
HOLD_WINDOW_MS: int = LIMITS["HOLD_WINDOW_MS"]
