"""Shared pytest set-up: each area keeps its fixtures in its own plugin module."""
pytest_plugins = [
    "tests.fixtures_engine",
    "tests.fixtures_sandbox",
    "tests.fixtures_az",
    "tests.fixtures_command",
    "tests.fixtures_hardening",
]
