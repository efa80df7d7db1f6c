"""The portable engine's error: ``Error(kind, status, message)``, as the native engine raises it.

Every message is one line and never holds the Authorization value nor proxy credentials: nothing
that formats one is given them. The wording is the native engine's (native/tn_*.c), so that a user
reads the same line whichever engine runs.
"""
import errno
import ssl

KINDS = ("auth", "http", "tls", "dns", "proxy", "connect", "bind", "timeout", "closed", "protocol",
         "internal", "resource")

# X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH (OpenSSL x509_vfy.h)
_NAME_MISMATCH = (62, 64)
_RESOURCE_ERRNOS = {getattr(errno, name) for name in ("EMFILE", "ENFILE", "ENOBUFS", "ENOMEM", "WSAEMFILE")
                    if hasattr(errno, name)}


class Error(Exception):
    """``args == (kind, status, message)``; ``str()`` is the message."""

    def __init__(self, kind, status, message):
        super().__init__(kind, int(status or 0), " ".join(str(message).split()))

    @property
    def kind(self):
        return self.args[0]

    @property
    def status(self):
        return self.args[1]

    @property
    def message(self):
        return self.args[2]

    def __str__(self):
        return self.args[2]


def check_header_value(value, what):
    """Header values go into requests as they are: one line each (the value is never in the message)."""
    if value is not None and ("\r" in value or "\n" in value):
        raise ValueError(f"the {what} value must be one header line")


def check_proxy(proxy):
    """"host:port" only: credentials have their own argument, proxy_auth, so that nothing that
    names the proxy can show them."""
    if proxy and "@" in proxy:
        raise ValueError("proxy must be host:port; its credentials go in proxy_auth")


def one_line(text):
    return " ".join(str(text).split())


def resource_error(exc):
    """Error("resource") for running out of descriptors or memory, else None."""
    if isinstance(exc, MemoryError):
        return Error("resource", 0, "out of memory")
    code = getattr(exc, "errno", None)
    if code in _RESOURCE_ERRNOS:
        name = errno.errorcode.get(code, str(code)).replace("WSAEMFILE", "EMFILE")
        if name in ("ENOMEM", "ENOBUFS"):
            return Error("resource", 0, f"out of memory ({name})")
        limit = fd_limit()
        return Error("resource", 0, f"out of file descriptors ({name}"
                                    + (f"; the limit is {limit})" if limit else ")"))
    return None


def fd_limit():
    """The soft limit on open descriptors, or None where there is none to tell (Windows)."""
    try:
        import resource  # POSIX only
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError, AttributeError):
        return None
    return soft if soft > 0 else None


def tls_failure(host, exc, ca_file):
    """The handshake's TLS failure in the words a user can act on (tn_tls.c)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        if getattr(exc, "verify_code", None) in _NAME_MISMATCH:
            return Error("tls", 0, f"the certificate of {host} is issued for another host name")
        why = getattr(exc, "verify_message", None) or one_line(exc.reason or exc)
        hint = "; checked against REQUESTS_CA_BUNDLE" if ca_file else ""
        return Error("tls", 0, f"the certificate of {host} is not trusted ({why}){hint}")
    if isinstance(exc, ssl.SSLError):
        why = exc.reason or exc.__class__.__name__
        if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            why = "connection closed"
        return Error("tls", 0, f"TLS handshake with {host} failed: {one_line(why)}")
    return Error("tls", 0, f"TLS handshake with {host} failed: connection closed")


def scheme_of(authorization):
    return "Bearer" if str(authorization)[:6].lower() == "bearer" else "Basic"


def http_status_error(host, status, authorization):
    """The upgrade was answered with something other than 101 (tn_ws_refused): facts only; what the
    user can do about it is said once, in azext_webapp/_errors.py."""
    if status in (401, 403):
        return Error("auth", status, f"{host} refused the credentials (HTTP {status}); "
                                     f"{scheme_of(authorization)} authentication was used")
    return Error("http", status, f"{host} answered HTTP {status} to the tunnel request")
