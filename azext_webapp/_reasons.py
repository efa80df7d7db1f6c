"""The engine contract's failure vocabulary, read from ``_reasons.def`` (the one definition the native
engine includes as an X-macro): kinds, phases, reasons and the facts a failure carries, plus the two
pieces of fact-making both engines must do the same way (an errno's name, a refusal's server_message).

Nothing here words a failure for a user: that is ``_errors.py``'s job, chosen by reason.
Standard library only: the portable engine imports it.
"""
import errno as _errno
import os
import re
from typing import Dict, NamedTuple, Optional, Tuple

_DEF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_reasons.def")
_ENTRY = re.compile(r'^(KIND|PHASE|FACT|REASON|CAP)\((\w+),\s*(?:(\w+),\s*)?"((?:[^"\\]|\\.)*)"\)\s*$')


class Reason(NamedTuple):
    name: str
    kind: str
    doc: str


def _read(path: str) -> Tuple[Tuple[str, ...], Tuple[str, ...], Tuple[str, ...], Dict[str, Reason], Dict[str, int]]:
    kinds, phases, facts, reasons, caps = [], [], [], {}, {}
    with open(path, encoding="utf-8") as source:
        for line in source:
            match = _ENTRY.match(line)
            if not match:
                continue
            what, name, middle, doc = match.groups()
            name = name.lower()
            if what == "KIND":
                kinds.append(name)
            elif what == "PHASE":
                phases.append(name)
            elif what == "FACT":
                facts.append(name)
            elif what == "CAP":
                caps[name] = int(middle)
            else:
                reasons[name] = Reason(name, middle.lower(), doc)
    return tuple(kinds), tuple(phases), tuple(facts), reasons, caps


KINDS, PHASES, FACTS, REASONS, _CAPS = _read(_DEF)
SERVER_MESSAGE_MAX = _CAPS["server_message"]
BODY_SCAN = _CAPS["body_scan"]

Facts = Dict[str, object]


def kind_of(reason: str) -> str:
    """The coarse kind of a reason ("internal" for a name this version does not know)."""
    known = REASONS.get(reason)
    return known.kind if known else "internal"


def facts(**given: object) -> Facts:
    """A facts dict: the known keys given a value (None, "", 0 and False mean "not known")."""
    unknown = set(given) - set(FACTS)
    if unknown:
        raise ValueError(f"not a fact: {', '.join(sorted(unknown))}")
    return {key: value for key, value in given.items() if value is not None and value != "" and value != 0}


def errno_name(code: Optional[int]) -> Optional[str]:
    """ECONNREFUSED for 111 (Linux) or 10061 (Windows' WSAECONNREFUSED): one name on every platform."""
    if not code:
        return None
    name = _errno.errorcode.get(code)
    if name is None:
        return None
    return name[3:] if name.startswith("WSAE") else name


# ---------------------------------------------------------------------------------------------
# server_message: what a refusing server said, as one bounded line (native/tn_err.c does the same,
# byte for byte; tests feed both the same bodies)

_SPACE = b" \t\r\n"


def server_message(body: bytes) -> Optional[str]:
    """The ``Message`` (or ``message``) string of a JSON body, else the first line of a text body;
    control characters become spaces, runs of spaces one, at most SERVER_MESSAGE_MAX bytes (cut at a
    character boundary). None for an empty, HTML or XML body, or JSON without a message."""
    data = bytes(body[:BODY_SCAN])
    start = 0
    if data.startswith(b"\xef\xbb\xbf"):
        start = 3
    while start < len(data) and data[start] in _SPACE:
        start += 1
    if start == len(data) or data[start] == ord("<"):
        return None
    if data[start] == ord("{"):
        raw = _json_message(data, start)
    else:
        end = start
        while end < len(data) and data[end] not in b"\r\n":
            end += 1
        raw = data[start:end]
    if raw is None:
        return None
    text = _one_line(raw)
    return text.decode("utf-8", "replace") if text else None


def _json_message(data: bytes, start: int) -> Optional[bytes]:
    """The decoded value of the first "message" key (any case) whose value is a string."""
    pos = start
    while True:
        pos = data.find(b'"', pos)
        if pos < 0:
            return None
        end = pos + 1 + len(b"message")
        if data[pos + 1:end].lower() == b"message" and data[end:end + 1] == b'"':
            value = end + 1
            while value < len(data) and data[value] in _SPACE:
                value += 1
            if data[value:value + 1] == b":":
                value += 1
                while value < len(data) and data[value] in _SPACE:
                    value += 1
                if data[value:value + 1] == b'"':
                    return _json_string(data, value + 1)
        pos += 1


_ESCAPES = {ord('"'): b'"', ord("\\"): b"\\", ord("/"): b"/", ord("b"): b"\b", ord("f"): b"\f",
            ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t"}


def _json_string(data: bytes, pos: int) -> bytes:
    """A JSON string's bytes from pos (after its opening quote) to its closing quote, escapes
    decoded (\\uXXXX to UTF-8, a lone surrogate to U+FFFD); what arrived of a cut-off one."""
    out = bytearray()
    while pos < len(data):
        byte = data[pos]
        if byte == ord('"'):
            break
        if byte != ord("\\"):
            out.append(byte)
            pos += 1
            continue
        escape = data[pos + 1] if pos + 1 < len(data) else None
        if escape in _ESCAPES:
            out += _ESCAPES[escape]
            pos += 2
            continue
        code = _hex4(data, pos + 2) if escape == ord("u") else None
        if code is None:
            break
        pos += 6
        if 0xD800 <= code < 0xDC00:
            low = _hex4(data, pos + 2) if data[pos:pos + 2] == b"\\u" else None
            if low is not None and 0xDC00 <= low < 0xE000:
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                pos += 6
            else:
                code = 0xFFFD
        elif 0xDC00 <= code < 0xE000:
            code = 0xFFFD
        out += chr(code).encode("utf-8")
    return bytes(out)


def _hex4(data: bytes, pos: int) -> Optional[int]:
    digits = data[pos:pos + 4]
    if len(digits) != 4 or any(chr(d) not in "0123456789abcdefABCDEF" for d in digits):
        return None
    return int(digits, 16)


def _one_line(raw: bytes) -> bytes:
    """Controls (C0, DEL, and C1 as UTF-8's C2 80..9F) to spaces, runs of spaces to one, trimmed,
    cut to SERVER_MESSAGE_MAX bytes without splitting a UTF-8 sequence."""
    out = bytearray()
    i = 0
    while i < len(raw):
        byte = raw[i]
        step = 1
        if byte == 0xC2 and i + 1 < len(raw) and 0x80 <= raw[i + 1] <= 0x9F:
            byte, step = 0x20, 2
        elif byte < 0x20 or byte == 0x7F:
            byte = 0x20
        i += step
        if byte == 0x20 and (not out or out[-1] == 0x20):
            continue
        out.append(byte)
    while out and out[-1] == 0x20:
        out.pop()
    if len(out) > SERVER_MESSAGE_MAX:
        del out[SERVER_MESSAGE_MAX:]
        _trim_partial_utf8(out)
        while out and out[-1] == 0x20:
            out.pop()
    return bytes(out)


def _trim_partial_utf8(out: bytearray) -> None:
    """Drop a UTF-8 sequence the cut left incomplete at the end."""
    back = 0
    while back < min(4, len(out)) and 0x80 <= out[-1 - back] < 0xC0:
        back += 1
    if back < len(out):
        lead = out[-1 - back]
        need = 2 if 0xC0 <= lead < 0xE0 else 3 if 0xE0 <= lead < 0xF0 else 4 if lead >= 0xF0 else 1
        if lead >= 0xC0 and back + 1 < need:
            del out[len(out) - 1 - back:]
