# Two commands for a fresh Debian machine: `make demo` and `make test` (see README.md).
# Every target installs what it needs and is safe to run again.

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
DEBIAN_PACKAGES := build-essential pkg-config libwebsockets-dev libssl-dev libcurl4-openssl-dev \
	openssh-server openssh-client python3-dev python3-venv util-linux procps iproute2 \
	valgrind tmux rsync openssl curl clang libclang-rt-14-dev nftables busybox \
	node-xterm esbuild chromium libnss3-tools fonts-dejavu-core
NATIVE_SOURCES := $(wildcard native/*.c native/*.h) azext_webapp/_reasons.def
MODULE_STAMP := $(VENV)/.stamp-module

.PHONY: all deps venv build codec-lib wheel scm-server webssh-assets lint fuzz test test-portable test-fast \
	test-sanitize soak demo bench reference-soak clean

all: build

# Debian packages: install only what is missing (apt-get needs root; sudo is used when present).
$(VENV)/.stamp-debian: Makefile
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:" $$missing; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@mkdir -p $(VENV) && touch $@

deps: $(VENV)/.stamp-debian

# Order-only (|): a newer Makefile re-checks Debian packages but never rebuilds the venv.
$(VPY): | $(VENV)/.stamp-debian
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip setuptools wheel

$(VENV)/.stamp-pip: requirements-dev.txt | $(VPY)
	$(VPY) -m pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.stamp-pip

# The sizes both engines share are defined once, in azext_webapp/engine_limits.json; the C reads them as
# this generated header (committed too, for C built without make; setup.py also regenerates it).
native/tn_limits.h: azext_webapp/engine_limits.json tools/gen_limits.py
	$(PYTHON) tools/gen_limits.py
	@touch $@

$(MODULE_STAMP): $(NATIVE_SOURCES) setup.py | $(VENV)/.stamp-pip
	WEBAPP_WERROR=1 $(VPY) setup.py -q build_ext --inplace
	touch $@

# The sandbox's SCM server is the test bench, not the product: built only for the demo, tests and bench.
scm-server: $(VENV)/.stamp-debian
	$(MAKE) -s -C sandbox/scm

# The sandbox's browser SSH page: xterm.js (Debian's node-xterm, CommonJS) bundled for the browser
# with Debian's esbuild into build/webssh/; the script rebuilds only what is stale. Standard library
# only, so the system python runs it (the web SSH service also builds it when missing).
webssh-assets: $(VENV)/.stamp-debian
	$(PYTHON) sandbox/webssh/assets.py build/webssh

# The extension: the native engine in place (azext_webapp/_native/<platform>/).
build: $(MODULE_STAMP)

# The native codec alone (tn_ws.c and tn_conn.c, nothing else of the engine) as a library that
# tests/codec_drivers.py loads: the byte-level vectors and the Python fuzz pass run it beside the
# portable codec. `make test` builds it; without it their native half skips and says why.
CODEC_LIB := build/codec/libtn_codec.so
CODEC_LIB_SOURCES := native/tn_ws.c native/tn_conn.c native/tn_err.c tests/vectors/codec_lib.c
$(CODEC_LIB): $(CODEC_LIB_SOURCES) $(wildcard native/*.h) azext_webapp/_reasons.def | $(VENV)/.stamp-debian
	@mkdir -p $(@D)
	$(CC) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O1 -g -fPIC -shared -Inative \
		$(CODEC_LIB_SOURCES) -lcrypto -o $@

codec-lib: $(CODEC_LIB)

# What users install: the universal wheel and an extension index (index.json) in dist/.
wheel: build
	$(VPY) tools/build_index.py --out dist

# Static checks, in well under a minute: flake8 with azure-cli's settings (.flake8), mypy on the typed
# surfaces (mypy.ini), and the C of the engine and of the sandbox's SCM server built with
# -Wall -Wextra -Werror (the module's build sets WEBAPP_WERROR=1; the SCM server's Makefile always does).
lint: venv build scm-server
	$(VPY) -m flake8
	$(VPY) -m mypy

# Every test, in tiers: lint and the fast tier first (a broken one fails within a minute or two; the C
# codec library is built first so that the fast tier's byte-level vectors run against both codecs), then
# the rest. The engine and hardening suites run against both engines in that pass
# (tests/fixtures_engine.py); the command suites, which run the real az, run again with the portable
# engine (test-portable).
test: lint codec-lib test-fast build scm-server webssh-assets
	$(VPY) -m pytest tests $(addprefix --ignore=,$(wildcard $(FAST_TESTS)))
	$(MAKE) --no-print-directory test-portable

# The fast tier: pure units (error mappings, validators, proxy parsing, argv and ssh_config builders,
# codecs, simulated platforms, signals) in seconds, with no root, no sandbox and no build.
FAST_TESTS := tests/test_unit_*.py tests/test_portable_units.py
test-fast: venv
	$(VPY) -m pytest -q $(FAST_TESTS)

# The real az with the portable engine (what Windows, macOS, Linux on Arm and Alpine run): the extension
# picks its engine from WEBAPP_ENGINE, which az and every tunnel it starts inherit. Also the engine
# contract's regression tests (tests/test_trust_native.py), but for its C-level unit test and the
# accept() out-of-descriptors case: asyncio accepts what is waiting before any relay opens its
# WebSocket, so there the relays fail with "resource" instead of the first one going through.
test-portable: build scm-server webssh-assets
	WEBAPP_ENGINE=portable $(VPY) -m pytest tests/test_command_*.py tests/test_trust_native.py \
		tests/test_trust_command.py tests/test_trust_signals.py \
		-k "not link_writer and not (out_of_file_descriptors and accept)"

# Longer fuzzing than `make test` does (20 s per libFuzzer target, 500 mutations per Python target):
# the libFuzzer targets of native/tn_ws.c and tn_conn.c (tests/test_fuzz.py), and the Python pass that
# drives the same corpus through the portable codec with the native one beside it as a differential
# check (tests/test_unit_codec_fuzz.py), FUZZ_SECONDS per target each, from a random seed it prints.
FUZZ_SECONDS ?= 300
fuzz: venv codec-lib
	WEBAPP_FUZZ_SECONDS=$(FUZZ_SECONDS) WEBAPP_PYFUZZ_SECONDS=$(FUZZ_SECONDS) \
		$(VPY) -m pytest -s tests/test_fuzz.py tests/test_unit_codec_fuzz.py

# The engine's tests again against ASan+UBSan and TSan builds of the module (run by .ci/run).
test-sanitize: build scm-server webssh-assets
	$(VPY) tests/sanitize.py

# Slow soaks, not part of `make test` (about half an hour): 1,000 start/SIGTERM and 200 start/Ctrl+C
# cycles of the real `az webapp remote-connection create` on each engine; prints its figures.
soak: build scm-server webssh-assets
	$(VPY) -m pytest -s -q tests/soak_signals.py

demo: build scm-server webssh-assets
	$(VPY) -m sandbox.demo

bench: build scm-server webssh-assets
	$(VPY) -m bench

# How often a large scp upload through the Azure CLI's own tunnel fails (README's comparison table):
# REFERENCE_RUNS uploads of 64 MiB through one `az webapp create-remote-connection`, "N of M failed".
REFERENCE_RUNS ?= 20
reference-soak: build scm-server webssh-assets
	WEBAPP_REFERENCE_SOAK_RUNS=$(REFERENCE_RUNS) $(VPY) -m pytest -s tests/test_reference_claims.py -k soak

clean:
	rm -rf build dist .build-* azext_webapp/*.so azext_webapp/_native/*/ $(MODULE_STAMP)
	$(MAKE) -s -C sandbox/scm clean
