"""Run the web SSH service: `python -m sandbox.webssh [--fd N | --port P]`.

The token that every request must carry comes from the environment (WEBSSH_TOKEN), not argv,
so that it does not show in `ps`. With --fd the service serves on a listening socket it
inherited (what the sandbox does: it knows the port before the service has started); with
--port it binds 127.0.0.1 itself. SIGTERM or SIGINT ends it, terminals included.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import time

from .server import WebsshServer

_log_lock = threading.Lock()


def log(line: str) -> None:
    with _log_lock:
        sys.stderr.write(time.strftime("%Y-%m-%dT%H:%M:%SZ ", time.gmtime()) + line + "\n")
        sys.stderr.flush()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sandbox.webssh")
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--fd", type=int, help="an inherited listening socket")
    where.add_argument("--port", type=int, help="bind 127.0.0.1:PORT (0: any free port)")
    args = ap.parse_args(argv)
    token = os.environ.pop("WEBSSH_TOKEN", "")
    if not token:
        print("WEBSSH_TOKEN is not set", file=sys.stderr)
        return 2
    sock = socket.socket(fileno=args.fd) if args.fd is not None else None
    server = WebsshServer(token, log, sock=sock, port=args.port or 0)
    # shutdown() waits for serve_forever, which runs on this (the main) thread: stop elsewhere.
    stopper = threading.Thread(target=server.stop, name="webssh-stop", daemon=True)

    def on_signal(signum, frame):
        if not stopper.is_alive() and stopper.ident is None:
            stopper.start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    folder, reason = server.bundle()
    if folder is None:
        log(f"the page's terminal will not load: {reason}")
    log(f"listening on 127.0.0.1:{server.server_address[1]}")
    server.serve_forever(poll_interval=0.5)
    stopper.join(10)        # its terminals are told and closed before the process ends
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
