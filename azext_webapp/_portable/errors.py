"""The portable engine's error: ``Error(reason, facts)``, as the native engine raises it.

``reason`` is one of azext_webapp/_reasons.def, ``facts`` a dict of what is known (host, port,
errno, ...): the same reason and facts the native engine gives for the same failure. No sentence is
written here (azext_webapp/_errors.py words them), and nothing that makes one is given the
Authorization value or proxy credentials.
"""
import errno
import re
import ssl

from .. import _reasons

# X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH (OpenSSL x509_vfy.h)
_NAME_MISMATCH = (62, 64)
_FDS = {getattr(errno, name) for name in ("EMFILE", "ENFILE", "WSAEMFILE") if hasattr(errno, name)}
_MEMORY = {getattr(errno, name) for name in ("ENOBUFS", "ENOMEM", "WSAENOBUFS") if hasattr(errno, name)}
# "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)": OpenSSL's reason text in the middle
_SSL_TEXT = re.compile(r"^\[[^\]]*\] (.*?)(?: \(_ssl\.c:\d+\))?$")


class Error(Exception):
    """``args == (reason, facts)``."""

    def __init__(self, reason, facts=None):
        super().__init__(reason, dict(facts or {}))

    @property
    def reason(self):
        return self.args[0]

    @property
    def facts(self):
        return self.args[1]


def fail(reason, **facts):
    """Error(reason) with the facts given a value."""
    return Error(reason, _reasons.facts(**facts))


def check_header_value(value, what):
    """Header values go into requests as they are: one line each (the value is never in the message)."""
    if value is not None and ("\r" in value or "\n" in value):
        raise ValueError(f"the {what} value must be one header line")


def check_proxy(proxy):
    """"host:port" only: credentials have their own argument, proxy_auth, so that nothing that
    names the proxy can show them."""
    if proxy and "@" in proxy:
        raise ValueError("proxy must be host:port; its credentials go in proxy_auth")


def errno_of(exc):
    """The errno name of an OSError (ECONNRESET), or None."""
    return _reasons.errno_name(getattr(exc, "errno", None))


def resource_error(exc, **where):
    """Error resource_fds / resource_memory for running out of descriptors or memory, else None."""
    if isinstance(exc, MemoryError):
        return fail("resource_memory", errno="ENOMEM", **where)
    code = getattr(exc, "errno", None)
    if code in _MEMORY:
        return fail("resource_memory", errno=errno_of(exc), **where)
    if code not in _FDS:
        return None
    name = errno_of(exc)
    return fail("resource_fds", errno=name, limit=fd_limit() if name == "EMFILE" else None, **where)


def fd_limit():
    """The soft limit on open descriptors, or None where there is none to tell (Windows)."""
    try:
        import resource  # POSIX only
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError, AttributeError):
        return None
    return soft if soft > 0 and soft != getattr(resource, "RLIM_INFINITY", -1) else None


def ssl_text(exc):
    """OpenSSL's reason text of an SSLError ("wrong version number"), as ERR_reason_error_string says it."""
    match = _SSL_TEXT.match(str(getattr(exc, "strerror", None) or ""))
    if match:
        return match.group(1)
    reason = getattr(exc, "reason", None)
    return reason.replace("_", " ").lower() if reason else "protocol error"


def tls_failure(exc, ca_file, **where):
    """A failed TLS handshake, classified as tn_tls.c classifies it."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        if getattr(exc, "verify_code", None) in _NAME_MISMATCH:
            return fail("tls_wrong_host", **where)
        return fail("tls_untrusted", verify_code=exc.verify_code, verify_text=exc.verify_message,
                    ca_bundle=bool(ca_file), **where)
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return fail("connect_closed", **where)
    if isinstance(exc, ssl.SSLError):
        return fail("tls_handshake", detail=ssl_text(exc), **where)
    name = errno_of(exc)
    return fail("connect_reset", errno=name, **where) if name else fail("connect_closed", **where)


def stream_failure(exc, **where):
    """An open WebSocket's connection broke (not a Close frame, not a clean EOF): tn_tls_io_failed."""
    err = resource_error(exc, **where)
    if err is not None:
        return err
    if isinstance(exc, ssl.SSLError):
        return fail("tls_stream", detail=ssl_text(exc), **where)
    return fail("connect_reset", errno=errno_of(exc), **where)


def refused(status, body, **where):
    """The upgrade was answered with something other than 101 (tn_ws_refused)."""
    return fail("auth_refused" if status in (401, 403) else "http_status", status=status,
                server_message=_reasons.server_message(body), **where)
