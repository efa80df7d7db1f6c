"""Descriptor limits: 1,000 tunnelled connections need two sockets each. On POSIX the soft limit is
raised towards the hard one (as the native engine does); Windows has no such limit for sockets (and
no ``resource`` module), and macOS refuses soft limits above OPEN_MAX (10240) unless the hard limit
is finite, so there the request is capped."""
import os
import sys

WANT = 65536
MACOS_OPEN_MAX = 10240


def raise_fd_limit(resource_module=None):
    """Raise RLIMIT_NOFILE's soft limit; returns the limit in effect (None where there is none)."""
    if os.name == "nt":
        return None
    if resource_module is None:
        try:
            import resource as resource_module  # POSIX only
        except ImportError:
            return None
    res = resource_module
    try:
        soft, hard = res.getrlimit(res.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return None
    if soft == res.RLIM_INFINITY or (hard != res.RLIM_INFINITY and soft >= hard):
        return soft
    want = hard
    if want == res.RLIM_INFINITY or want > WANT:
        want = max(soft, WANT)
    # macOS: a soft limit above OPEN_MAX fails with EINVAL when the hard limit is unlimited
    attempts = [want, MACOS_OPEN_MAX] if sys.platform == "darwin" else [want]
    for attempt in attempts:
        if attempt <= soft:
            break
        try:
            res.setrlimit(res.RLIMIT_NOFILE, (attempt, hard))
            return attempt
        except (OSError, ValueError):
            continue
    return soft
