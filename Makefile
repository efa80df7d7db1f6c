# Two commands for a fresh Debian machine: `make demo` and `make test` (see README.md).
# Every target installs what it needs and is safe to run again.

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
DEBIAN_PACKAGES := build-essential pkg-config libwebsockets-dev libssl-dev libcurl4-openssl-dev \
	openssh-server openssh-client python3-dev python3-venv util-linux procps iproute2 \
	valgrind tmux rsync openssl curl clang libclang-rt-14-dev nftables \
	node-xterm esbuild chromium libnss3-tools fonts-dejavu-core
NATIVE_SOURCES := $(wildcard native/*.c native/*.h) azext_webapp/_reasons.def
MODULE_STAMP := $(VENV)/.stamp-module

.PHONY: all deps venv build wheel scm-server webssh-assets test test-portable test-fast test-sanitize demo bench clean

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

# What users install: the universal wheel and an extension index (index.json) in dist/.
wheel: build
	$(VPY) tools/build_index.py --out dist

# The engine and hardening suites run against both engines in the first pass (tests/fixtures_engine.py);
# the command suites, which run the real az, run again with the portable engine (test-portable).
test: build scm-server webssh-assets
	$(VPY) -m pytest tests
	$(MAKE) --no-print-directory test-portable

# The fast tier: pure units (error mappings, validators, proxy parsing, argv and ssh_config builders,
# codecs, simulated platforms) in seconds, with no root, no sandbox and no build.
test-fast: venv
	$(VPY) -m pytest -q tests/test_unit_*.py tests/test_portable_units.py

# The real az with the portable engine (what Windows, macOS, Linux on Arm and Alpine run): the extension
# picks its engine from WEBAPP_ENGINE, which az and every tunnel it starts inherit. Also the engine
# contract's regression tests (tests/test_trust_native.py), but for its C-level unit test and the
# accept() out-of-descriptors case: asyncio accepts what is waiting before any relay opens its
# WebSocket, so there the relays fail with "resource" instead of the first one going through.
test-portable: build scm-server webssh-assets
	WEBAPP_ENGINE=portable $(VPY) -m pytest tests/test_command_*.py tests/test_trust_native.py \
		tests/test_trust_command.py tests/test_trust_signals.py \
		-k "not link_writer and not (out_of_file_descriptors and accept)"

# The engine's tests again against ASan+UBSan and TSan builds of the module (run by .ci/run).
test-sanitize: build scm-server webssh-assets
	$(VPY) tests/sanitize.py

demo: build scm-server webssh-assets
	$(VPY) -m sandbox.demo

bench: build scm-server webssh-assets
	$(VPY) -m bench

clean:
	rm -rf build dist .build-* azext_webapp/*.so azext_webapp/_native/*/ $(MODULE_STAMP)
	$(MAKE) -s -C sandbox/scm clean
