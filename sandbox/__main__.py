"""`python -m sandbox [--workdir D]`: start the sandbox, fill its extension index, print how to use it,
run until Ctrl+C. `python -m sandbox fault|state|starting|restart|basic|sshd APP VALUE --workdir D`: change
a running sandbox from another shell (sandbox/control.py)."""
from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import sys
import time

from . import Sandbox


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from . import control
    if argv and argv[0] in control.ACTIONS:
        return control.main(argv)
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--workdir", help="where configs, certificates and logs go "
                                          "(default: a new temporary directory, removed on exit)")
    parser.add_argument("--no-sshd", action="store_true",
                        help="do not start sshd instances (they need root)")
    parser.add_argument("--login", action="store_true",
                        help="also sign the real az in, into <workdir>/az (AZURE_CONFIG_DIR)")
    parser.add_argument("--no-extension", action="store_true",
                        help="leave the extension index empty (default: build this tree's wheel into it, "
                             "so that `az extension add --name webapp` works against the sandbox)")
    args = parser.parse_args(argv)

    # SIGINT (also when inherited as ignored, e.g. started with `&` from a script), SIGTERM and
    # SIGHUP all end the run the same way: through the finally below.
    def terminate(signum, frame):
        raise KeyboardInterrupt
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, terminate)
    faulthandler.register(signal.SIGUSR1)      # `kill -USR1 <pid>`: dump every thread's stack

    if args.workdir:
        os.makedirs(args.workdir, exist_ok=True)
    sb = Sandbox(args.workdir, sshd=False if args.no_sshd else None)
    try:
        t0 = time.monotonic()
        sb.start()
        controller = control.Controller(sb)
        if not args.no_extension:
            print("Building the extension wheel for the sandbox's extension index...", file=sys.stderr,
                  flush=True)
            wheel = sb.publish_extension(log=lambda line: print(line, file=sys.stderr, flush=True))
            print(f"Extension index: {os.path.basename(wheel)}", file=sys.stderr, flush=True)
        config_dir = os.path.join(sb.workdir, "az")
        if args.login:
            sb.az_login(config_dir)
        print(sb.summary(config_dir))
        print(f"\nStarted in {time.monotonic() - t0:.1f} s"
              + (f"; az is signed in (AZURE_CONFIG_DIR={config_dir})" if args.login else "")
              + f".\nLogs: {os.path.join(sb.workdir, 'logs')}; the same facts as JSON: "
              + f"{os.path.join(sb.workdir, 'sandbox.json')}.\nCtrl+C stops everything.",
              flush=True)
        while True:
            controller.poll()           # faults and states set with `python -m sandbox fault ...`
            time.sleep(0.1)
    except KeyboardInterrupt:
        print("\nStopping the sandbox...", file=sys.stderr, flush=True)
        return 0
    except Exception as e:          # a clear line, not a traceback; logs stay in the workdir
        print(f"sandbox failed to start: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)           # a second Ctrl+C must not cut teardown
        sb.stop()


if __name__ == "__main__":
    sys.exit(main())
