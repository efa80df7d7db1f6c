"""The sizes and time limits both engines share are defined once, in azext_webapp/engine_limits.json:
the portable engine reads the file, the native engine compiles native/tn_limits.h generated from it
(tools/gen_limits.py, run by setup.py and make), and both export every limit by name."""
import json
import os
import subprocess
import sys

import pytest

import azext_webapp._portable as portable
from azext_webapp import _native
from azext_webapp._portable import sizes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, "azext_webapp", "engine_limits.json"), encoding="utf-8") as _f:
    LIMITS = {name: entry["value"] for name, entry in json.load(_f)["limits"].items()}


def test_the_committed_header_is_what_the_json_gives():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_limits.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_portable_engine_exports_every_limit_with_the_files_value():
    assert sizes.LIMITS == LIMITS
    for name, value in LIMITS.items():
        assert getattr(sizes, name) == getattr(portable, name) == value, name
        assert name in portable.__all__, name


def test_the_native_engine_exports_the_same_limits():
    try:
        native = _native.load_engine()
    except _native.EngineUnavailableError as err:
        pytest.skip(f"the native engine is not built here: {err}")
    assert {name: getattr(native, name, None) for name in LIMITS} == LIMITS
