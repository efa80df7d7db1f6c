"""Shared pytest set-up: each area keeps its fixtures in its own plugin module."""
import signal

pytest_plugins = [
    "tests.fixtures_engine",
    "tests.fixtures_sandbox",
    "tests.fixtures_az",
    "tests.fixtures_command",
    "tests.fixtures_hardening",
]


def _still_ignored(signum, frame):  # pylint: disable=unused-argument
    """This process goes on ignoring the signal; a program it starts does not inherit a handler."""


# A suite started in the background by a non-interactive shell (`make test &`, some CI runners) or under
# nohup inherits SIGINT or SIGHUP ignored, and so would every az, ssh and shell it starts: the tests that
# press Ctrl+C, or hang up a ProxyCommand or a terminal, would see nothing happen. A handler of ours keeps
# this process as immune as it was, while each child starts with the default again.
for _signum in (signal.SIGINT, getattr(signal, "SIGHUP", None)):
    if _signum is not None and signal.getsignal(_signum) == signal.SIG_IGN:
        signal.signal(_signum, _still_ignored)
