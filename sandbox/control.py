"""Faults and states of a running `python -m sandbox`, set from another shell.

    python -m sandbox fault linux-app refuse=401 --workdir DIR      # or drop_after_bytes=N, stall_after_bytes=N, none
    python -m sandbox fault exec-app refuse_exec=503:TEXT --workdir DIR   # /exec/*: 503 {"Message": TEXT}
    python -m sandbox state linux-app STOPPED --workdir DIR         # STARTED | STOPPED | STARTING
    python -m sandbox starting starting-app 30 --workdir DIR        # GetStatus STARTING for 30 s
    python -m sandbox restart linux-app 20 --workdir DIR            # az webapp restart, back in 20 s
    python -m sandbox basic linux-app off --workdir DIR             # on | off
    python -m sandbox sshd linux-app down --workdir DIR             # down | up: container port 2222 answers or not
                                                                    # (--instance NAME: one instance)

The running sandbox is the only writer of its SCM config: a command is a request file in
`<workdir>/control/`, which the sandbox's main loop applies through the same Python API tests use
(`Sandbox.set_fault`, `set_state`, `hold_starting`, `restart_app`, `set_basic`, `sshd_down`) and answers with a
response file. So faults set here and from Python never overwrite each other.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import uuid

REQUEST_SUFFIX = ".request.json"
RESPONSE_SUFFIX = ".response.json"
FAULT_KINDS = ("refuse", "drop_after_bytes", "stall_after_bytes", "refuse_exec")
ACTIONS = ("fault", "state", "starting", "restart", "basic", "sshd")


def control_dir(workdir: str) -> str:
    return os.path.join(workdir, "control")


def parse_fault(text: str):
    """`refuse=401`, `drop_after_bytes=1000`, `stall_after_bytes=N`, `refuse_exec=STATUS[:MESSAGE]`
    or `none` -> the fault dict."""
    if text.lower() in ("none", "off", "clear"):
        return None
    kind, sep, value = text.partition("=")
    message = None
    if kind == "refuse_exec":
        value, colon, message = value.partition(":")
        message = message if colon else None
    if not sep or kind not in FAULT_KINDS or not value.isdigit():
        raise ValueError(f"fault {text!r}: use refuse=401|403|502, drop_after_bytes=N, "
                         "stall_after_bytes=N, refuse_exec=STATUS[:MESSAGE] or none")
    fault = {kind: int(value)}
    if message is not None:
        fault["message"] = message
    return fault


def send(workdir: str, request: dict, timeout: float = 20.0) -> dict:
    """Hand a request to the sandbox running in workdir; its response (raises when none comes)."""
    directory = control_dir(workdir)
    if not os.path.isdir(directory):
        raise RuntimeError(f"no sandbox workdir at {workdir} (start one with `python -m sandbox "
                           f"--workdir {workdir}`)")
    name = uuid.uuid4().hex
    path = os.path.join(directory, name + REQUEST_SUFFIX)
    with open(path + ".tmp", "w") as f:
        json.dump(request, f)
    os.replace(path + ".tmp", path)
    answer = os.path.join(directory, name + RESPONSE_SUFFIX)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(answer) as f:
                response = json.load(f)
        except (OSError, ValueError):
            time.sleep(0.05)
            continue
        os.unlink(answer)
        return response
    with contextlib.suppress(OSError):
        os.unlink(path)
    raise RuntimeError(f"no running sandbox answered in {workdir} within {timeout:g} s")


class Controller:
    """Applies pending requests to a running Sandbox; call `poll()` from its main loop."""

    def __init__(self, sb):
        self.sb = sb
        self.directory = control_dir(sb.workdir)
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self._down: dict = {}        # (app, slot) -> the open sshd_down context

    def poll(self):
        for entry in sorted(os.listdir(self.directory)):
            if not entry.endswith(REQUEST_SUFFIX):
                continue
            path = os.path.join(self.directory, entry)
            try:
                with open(path) as f:
                    request = json.load(f)
            except (OSError, ValueError):
                continue
            os.unlink(path)
            try:
                response = {"ok": True, "message": self.apply(request)}
            except Exception as e:      # the caller shows it
                response = {"ok": False, "message": str(e)}
            out = os.path.join(self.directory, entry[:-len(REQUEST_SUFFIX)] + RESPONSE_SUFFIX)
            with open(out + ".tmp", "w") as f:
                json.dump(response, f)
            os.replace(out + ".tmp", out)

    def apply(self, request: dict) -> str:
        sb, app, slot = self.sb, request.get("app"), request.get("slot")
        label = f"{app}/{slot}" if slot else app
        sb.app(app, slot)                       # a clear error for an unknown app
        action = request.get("action")
        if action == "fault":
            sb.set_fault(app, request["fault"], slot=slot)
            return f"{label}: fault {json.dumps(request['fault'])}"
        if action == "state":
            sb.set_state(app, request["state"], slot=slot)
            return f"{label}: SCM state {request['state']}"
        if action == "starting":
            sb.hold_starting(app, float(request["seconds"]), slot=slot)
            return f"{label}: GetStatus STARTING for {request['seconds']} s"
        if action == "restart":
            seconds = float(request["seconds"])
            sb.restart_app(app, seconds, slot=slot)
            return (f"{label}: restarting; its SCM site answers 503 for {seconds / 3:g} s, its containers are "
                    f"back in {seconds:g} s")
        if action == "basic":
            sb.set_basic(app, bool(request["allowed"]), slot=slot)
            return f"{label}: Basic auth {'accepted' if request['allowed'] else 'refused'} by SCM"
        if action == "sshd":
            instance = request.get("instance")
            key = (app, slot, instance)
            if instance:
                label += f" instance {instance}"
            if request["down"] and key not in self._down:
                context = sb.sshd_down(app, slot=slot, instance=instance) if instance else sb.sshd_down(app, slot=slot)
                context.__enter__()
                self._down[key] = context
            elif not request["down"] and key in self._down:
                self._down.pop(key).__exit__(None, None, None)
            return f"{label}: container port 2222 {'does not answer' if request['down'] else 'answers'}"
        raise ValueError(f"unknown action {action!r}")


def main(argv) -> int:
    """`python -m sandbox fault|state|starting|restart|basic|sshd APP VALUE [--slot S] [--workdir D]`."""
    import argparse
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("app")
    parser.add_argument("value", help="fault: refuse=401|403|502, drop_after_bytes=N, stall_after_bytes=N, "
                                      "refuse_exec=STATUS[:MESSAGE], none; state: STARTED|STOPPED|STARTING; "
                                      "starting: seconds; restart: seconds until it is back; basic: on|off; "
                                      "sshd: down|up")
    parser.add_argument("--slot")
    parser.add_argument("--instance", help="sshd: only this instance of a scaled-out app")
    parser.add_argument("--workdir", default=os.environ.get("SANDBOX_WORKDIR"),
                        help="the running sandbox's --workdir (default: $SANDBOX_WORKDIR)")
    args = parser.parse_args(argv)
    if not args.workdir:
        parser.error("--workdir (or SANDBOX_WORKDIR) is required: the workdir of the running sandbox")
    request = {"action": args.action, "app": args.app, "slot": args.slot, "instance": args.instance}
    try:
        if args.action == "fault":
            request["fault"] = parse_fault(args.value)
        elif args.action == "state":
            request["state"] = args.value.upper()
        elif args.action in ("starting", "restart"):
            request["seconds"] = float(args.value)
        elif args.action in ("basic", "sshd"):
            words = {"basic": ("on", "off"), "sshd": ("up", "down")}[args.action]
            if args.value not in words:
                raise ValueError(f"{args.action}: use {' or '.join(words)}")
            request["allowed" if args.action == "basic" else "down"] = (
                args.value == "on" if args.action == "basic" else args.value == "down")
        response = send(args.workdir, request)
    except (ValueError, RuntimeError) as e:
        print(f"python -m sandbox {args.action}: {e}", file=sys.stderr, flush=True)
        return 2
    print(response["message"], file=sys.stdout if response["ok"] else sys.stderr, flush=True)
    return 0 if response["ok"] else 1
