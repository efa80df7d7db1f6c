"""Shared pytest set-up: each area keeps its fixtures in its own plugin module."""
import signal

pytest_plugins = [
    "tests.fixtures_engine",
    "tests.fixtures_sandbox",
    "tests.fixtures_az",
    "tests.fixtures_command",
    "tests.fixtures_hardening",
]

# A suite started in the background by a non-interactive shell (`make test &`, some CI runners) inherits
# SIGINT ignored, and so would every az and shell it starts: the tests that press Ctrl+C would see
# nothing happen. Python's own handler in this process makes each child start with the default again.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
