"""The local listener: a real bind() in the caller's thread, so a busy port is a precise error and
port 0 works (tn_listen.c's counterpart).

POSIX sets SO_REUSEADDR (it only lets a port in TIME_WAIT be reused; a live listener still makes
bind() fail). On Windows SO_REUSEADDR would let a second socket bind a port in use, so there the
listener takes SO_EXCLUSIVEADDRUSE instead."""
import errno
import os
import socket

from .errors import errno_of, fail

_IN_USE = {errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)}
_WINDOWS_ACCESS = {errno.EACCES, getattr(errno, "WSAEACCES", -2), 10013}


def open_listener(addr, port):
    """A listening, non-blocking socket on addr:port (0: the kernel picks); raises Error(bind_*)."""
    try:
        infos = socket.getaddrinfo(addr, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0,
                                   socket.AI_PASSIVE | socket.AI_NUMERICSERV)
    except socket.gaierror as exc:
        raise fail("bind_address", host=addr, port=port, detail=exc.strerror) from None
    family, socktype, proto, _, sockaddr = infos[0]
    try:
        sock = socket.socket(family, socktype, proto)
    except OSError as exc:
        raise fail("bind_failed", host=addr, port=port, errno=errno_of(exc)) from None
    try:
        set_listener_options(sock)
        sock.bind(sockaddr)
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno in _IN_USE or (os.name == "nt" and exc.errno in _WINDOWS_ACCESS):
            raise fail("bind_in_use", host=addr, port=port) from None
        name = errno_of(exc)
        raise fail("bind_address" if name == "EADDRNOTAVAIL" else "bind_failed", host=addr, port=port,
                   errno=name) from None
    return sock


def set_listener_options(sock):
    if os.name == "nt":
        exclusive = getattr(socket, "SO_EXCLUSIVEADDRUSE", None)
        if exclusive is not None:
            sock.setsockopt(socket.SOL_SOCKET, exclusive, 1)
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
