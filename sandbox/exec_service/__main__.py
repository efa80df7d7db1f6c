"""Run the exec channel service: `python -m sandbox.exec_service [--fd N | --port P] --map FILE`.

The token that every request must carry comes from the environment (EXEC_SERVICE_TOKEN), not
argv, so that it does not show in `ps`. FILE is the sandbox's map of containers
(sandbox/containers.py), read at every request. SIGTERM or SIGINT ends it, open shells
included (each gets a close frame, 1001, and its processes end).
"""
from __future__ import annotations

import sys

from ..local_service import serve
from . import TOKEN_ENV
from .server import ExecServer


def _arguments(parser):
    parser.add_argument("--map", required=True, help="the sandbox's containers.json")


def main(argv=None) -> int:
    return serve(argv, "python -m sandbox.exec_service", TOKEN_ENV,
                 lambda token, log, sock, port, args: ExecServer(token, log, args.map, sock=sock,
                                                                 port=port),
                 arguments=_arguments)


if __name__ == "__main__":
    sys.exit(main())
