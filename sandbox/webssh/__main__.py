"""Run the web SSH service: `python -m sandbox.webssh [--fd N | --port P]`.

The token that every request must carry comes from the environment (WEBSSH_TOKEN), not argv,
so that it does not show in `ps`. With --fd the service serves on a listening socket it
inherited (what the sandbox does: it knows the port before the service has started); with
--port it binds 127.0.0.1 itself. SIGTERM or SIGINT ends it, terminals included.
"""
from __future__ import annotations

import sys

from ..local_service import log, serve
from .server import WebsshServer


def _ready(server):
    folder, reason = server.bundle()
    if folder is None:
        log(f"the page's terminal will not load: {reason}")


def main(argv=None) -> int:
    return serve(argv, "python -m sandbox.webssh", "WEBSSH_TOKEN",
                 lambda token, log_, sock, port, args: WebsshServer(token, log_, sock=sock, port=port),
                 ready=_ready)


if __name__ == "__main__":
    sys.exit(main())
