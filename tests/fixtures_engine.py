"""Fixtures for the engine tests: a real sandbox SCM server (sandbox/scm/scm-server, Contract 2)
with certificates from sandbox.pki, in front of the targets of tests/engine_targets.py.

Both engines: every test in tests/test_engine_*.py and tests/test_hardening_*.py runs once per
engine ("native", "portable"; the `engine` fixture, autouse there). In process, tunnel.py's engine
module is swapped for the test; child processes (python -m azext_webapp.tunnel, az) get
WEBAPP_ENGINE. `pytest --engine=native|portable` (or WEBAPP_ENGINE in pytest's environment) runs
one engine only."""
import base64
import importlib
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests import engine_targets

ROOT = Path(__file__).resolve().parent.parent

BASIC_USER, BASIC_PASSWORD = "$engine-site", "publishing-password"
BEARER_TOKEN = "engine-token"
ECHO_PORT, STREAM_PORT, CLOSER_PORT, DEAD_PORT = 2222, 3000, 4000, 5000


ENGINES = ("native", "portable")
BOTH_ENGINE_MODULES = re.compile(r"test_(engine|hardening)_")
NATIVE_ONLY_MODULES = {"test_engine_native"}     # C-level: the ring's unit test, valgrind


def pytest_addoption(parser):
    parser.addoption("--engine", choices=("both",) + ENGINES, default=None,
                     help="the tunnel engine(s) the engine and hardening suites run against "
                          "(default: both, or the one WEBAPP_ENGINE names)")


def engines_for(config):
    chosen = config.getoption("--engine") or os.environ.get("WEBAPP_ENGINE") or "both"
    return list(ENGINES) if chosen not in ENGINES else [chosen]


def pytest_generate_tests(metafunc):
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if "engine" in metafunc.fixturenames and BOTH_ENGINE_MODULES.match(module) \
            and module not in NATIVE_ONLY_MODULES:
        metafunc.parametrize("engine", engines_for(metafunc.config), indirect=True)


def engine_and_why(forced):
    """What tunnel.py says it runs (ENGINE, ENGINE_REASON), in a fresh process with WEBAPP_ENGINE=forced."""
    code = "from azext_webapp import tunnel; print(tunnel.ENGINE); print(tunnel.ENGINE_REASON)"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ, WEBAPP_ENGINE=forced),
                          capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()


def engine_module(name):
    """The engine module `name` ("native" or "portable") as tunnel.py would load it."""
    if name == "portable":
        return importlib.import_module("azext_webapp._portable")
    from azext_webapp import _native
    return _native.load_engine(os.environ.get("WEBAPP_TUNNEL_NATIVE_DIR") or None)


@pytest.fixture(autouse=True)
def engine(request, monkeypatch):
    """The engine under test (None outside the two-engine suites: whatever tunnel.py chose)."""
    wanted = getattr(request, "param", None)
    if wanted is None:
        return None
    from azext_webapp import tunnel
    monkeypatch.setattr(tunnel, "_tunnel", engine_module(wanted))
    monkeypatch.setattr(tunnel, "ENGINE", wanted)
    monkeypatch.setenv("WEBAPP_ENGINE", wanted)
    if "webapp_az" in request.fixturenames:        # the real az: a session-wide environment
        monkeypatch.setitem(request.getfixturevalue("webapp_az").env, "WEBAPP_ENGINE", wanted)
    return wanted


def skip_native_pending(engine, supported, what):
    """Skip a test of a NEW contract part the native engine does not have yet."""
    if engine == "native" and not supported:
        pytest.skip(f"native: pending ({what})")


def basic_auth(user=BASIC_USER, password=BASIC_PASSWORD):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ScmServer:
    """The sandbox's scm-server for the engine's sites: .url(site) is its https URL, .ca_file the CA
    to trust. Launched by sandbox.scm_process, so it never outlives the test process, even one that
    a sanitizer aborts."""

    def __init__(self, workdir, ca_file, sites):
        from sandbox.scm_process import ScmServer as Launcher
        self.ca_file = str(ca_file)
        self._server = Launcher(workdir, sites, start_timeout=20).start()
        self.ports = {site["name"]: self._server.port(site["name"]) for site in sites}

    def url(self, site="engine-site", host="localhost"):
        return f"https://{host}:{self.ports[site]}"

    def update_site(self, site, **fields):
        """Change a site's mutable fields (Contract 2) and wait until the server applied them."""
        self._server.update_site(site, **fields)

    def stop(self):
        self._server.stop()


@pytest.fixture(scope="session")
def engine_targets_running():
    servers = {"echo": engine_targets.EchoServer(), "stream": engine_targets.StreamServer(),
               "closer": engine_targets.CloserServer()}
    yield servers
    for server in servers.values():
        server.close()


@pytest.fixture(scope="session")
def scm(tmp_path_factory, engine_targets_running):
    from sandbox import pki
    work = tmp_path_factory.mktemp("engine-scm")
    ca = pki.make_ca(work / "pki")
    untrusted = pki.make_untrusted_ca(work / "pki-untrusted")
    site_cert = ca.issue(work / "pki", "engine-site")
    wrong_cert = ca.issue_wrong_host(work / "pki", "wronghost-site")
    untrusted_cert = untrusted.issue(work / "pki-untrusted", "untrusted-site")
    t = engine_targets_running
    ports = {str(ECHO_PORT): t["echo"].port, str(STREAM_PORT): t["stream"].port,
             str(CLOSER_PORT): t["closer"].port, str(DEAD_PORT): free_port()}

    def site(name, cert, fault=None):
        return {"name": name, "cert": str(cert[0]), "key": str(cert[1]),
                "basic": [BASIC_USER, BASIC_PASSWORD], "bearer": [BEARER_TOKEN], "state": "STARTED",
                "starting_until": 0, "default_port": ECHO_PORT,
                "instances": [{"name": name + "-i0", "ports": ports}], "fault": fault}

    server = ScmServer(work, ca.cert_path, [
        site("engine-site", site_cert),
        site("wronghost-site", wrong_cert),
        site("untrusted-site", untrusted_cert),
        site("refuse-site", site_cert, {"refuse": 502}),
        site("restart-site", site_cert),            # restarted by tests/test_engine_hold.py
    ])
    yield server
    server.stop()


@pytest.fixture
def engine_env(scm, monkeypatch):
    """The environment az would have: trust the sandbox CA, no proxy."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", scm.ca_file)
    for name in ("AZURE_CLI_DISABLE_CONNECTION_VERIFICATION", "HTTPS_PROXY", "https_proxy",
                 "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    return scm


@pytest.fixture
def make_tunnel(engine_env):
    """Tunnel factory; every tunnel made is stopped at teardown."""
    from azext_webapp import tunnel
    made = []

    def make(site="engine-site", authorization=None, **kw):
        t = tunnel.Tunnel(engine_env.url(site), authorization or basic_auth(), **kw)
        made.append(t)
        return t
    yield make
    for t in made:
        t.stop()


def cli_env(scm, **extra):
    env = dict(os.environ)
    env.update({"REQUESTS_CA_BUNDLE": scm.ca_file, "WEBAPP_SCM_USER": BASIC_USER,
                "WEBAPP_SCM_PASSWORD": BASIC_PASSWORD, "PYTHONPATH": str(ROOT)})
    env.pop("WEBAPP_SCM_TOKEN", None)
    env.update(extra)
    return env


class CliTunnel:
    """`python -m azext_webapp.tunnel` as a child process, with its port once it is open."""

    def __init__(self, scm, *args, prefix=(), env=None, site="engine-site"):
        self.proc = subprocess.Popen([*prefix, sys.executable, "-m", "azext_webapp.tunnel", scm.url(site), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                                     env=env or cli_env(scm))
        line = self.proc.stdout.readline().decode()
        if not line.startswith("Port "):
            self.proc.kill()
            raise RuntimeError(f"tunnel did not open: {line!r} {self.proc.stderr.read().decode()}")
        self.port = int(line.split()[1])

    def rss_kib(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self, sig=signal.SIGINT, timeout=30):
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out.decode(), err.decode()


@pytest.fixture(scope="module")
def hostile(scm, tmp_path_factory):
    """tests/hostile_server.py behind a certificate of the engine's CA; one per test module."""
    from sandbox import pki
    from tests.hostile_server import HostileServer
    ca_cert = Path(scm.ca_file)
    ca = pki.Ca(ca_cert.stem, ca_cert, ca_cert.with_suffix(".key"))
    cert, key = ca.issue(tmp_path_factory.mktemp("hostile-pki"), "hostile")
    server = HostileServer(str(cert), str(key), scm.ports["engine-site"])
    yield server
    server.close()
