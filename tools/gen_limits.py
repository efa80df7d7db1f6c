"""Writes native/tn_limits.h from azext_webapp/engine_limits.json, the one place the engines' shared
sizes and time limits are defined (the portable engine reads the JSON itself).

    python3 tools/gen_limits.py            # rewrite the header when the JSON changed
    python3 tools/gen_limits.py --check    # exit 1 when the header is not what the JSON gives

setup.py runs it before every build; the header is committed as well, so that the C built without
setup.py (the fuzz targets, the C-level tests, the codec vectors' library) reads the same values.
Standard library only.
"""
import json
import os
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "azext_webapp", "engine_limits.json")
HEADER = os.path.join(ROOT, "native", "tn_limits.h")


def load(path: str = SOURCE) -> dict:
    """{NAME: (value, what)} in the file's order."""
    with open(path, encoding="utf-8") as f:
        limits = json.load(f)["limits"]
    return {name: (int(entry["value"]), entry["what"]) for name, entry in limits.items()}


def render(limits: dict) -> str:
    lines = ["/*",
             " * tn_limits.h - GENERATED from azext_webapp/engine_limits.json by",
             " * tools/gen_limits.py: edit the JSON, never this file. The sizes and time",
             " * limits both engines share; TN_LIMITS(X) lists them for the module's exports.",
             " */",
             "#ifndef TN_LIMITS_H",
             "#define TN_LIMITS_H",
             ""]
    for name, (value, what) in limits.items():
        lines += textwrap.wrap(f"/* {what} */", 76, subsequent_indent=" * ")
        lines.append(f"#define TN_{name}\t{value}")
    lines.append("")
    lines.append("#define TN_LIMITS(X) \\")
    lines += [f"\tX({name}) \\" for name in limits]
    lines[-1] = lines[-1][:-2]
    lines += ["", "#endif", ""]
    return "\n".join(lines)


def main(argv: list) -> int:
    text = render(load())
    try:
        with open(HEADER, encoding="utf-8") as f:
            current = f.read()
    except FileNotFoundError:
        current = None
    if "--check" in argv:
        if current != text:
            print(f"{HEADER} is stale: run python3 tools/gen_limits.py", file=sys.stderr)
            return 1
        return 0
    if current != text:     # untouched when equal: make and setuptools see no newer header
        with open(HEADER, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
