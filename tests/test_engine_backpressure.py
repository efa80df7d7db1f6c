"""Back-pressure towards the container: when the SCM side stops reading (its relay stalls, as a
container that does not read would make it), the tunnel stops reading the local client instead of
buffering what it sends -- the tunnel's memory stays bounded and the client's send() blocks. Both
engines (the engine fixture); the other direction is test_engine_cli's stalled reader."""
import socket
import time

import pytest

from tests.fixtures_engine import BASIC_PASSWORD, BASIC_USER, ECHO_PORT, CliTunnel, cli_env


@pytest.fixture
def stalling_scm(tmp_path, engine_targets_running):
    from sandbox import pki
    from sandbox.scm_process import ScmServer
    ca = pki.make_ca(tmp_path / "pki")
    site = {"name": "stalling", "basic": [BASIC_USER, BASIC_PASSWORD], "bearer": [], "state": "STARTED",
            "starting_until": 0, "default_port": ECHO_PORT, "fault": {"stall_after_bytes": 4096},
            "instances": [{"name": "stalling-i0",
                           "ports": {str(ECHO_PORT): engine_targets_running["echo"].port}}]}
    with ScmServer(tmp_path / "scm", [site], keepalive_seconds=0, ca=ca) as scm:
        scm.ca_file = str(ca.cert_path)
        yield scm


class _Scm:
    """What CliTunnel needs of a server: url(site) and ca_file."""

    def __init__(self, server):
        self._server, self.ca_file = server, server.ca_file

    def url(self, site="stalling", host="localhost"):
        return f"https://{host}:{self._server.port(site)}"


def test_a_server_that_stops_reading_stops_the_local_reads(stalling_scm):
    scm = _Scm(stalling_scm)
    cli = CliTunnel(scm, site="stalling", env=cli_env(scm))
    try:
        with socket.create_connection(("127.0.0.1", cli.port)) as c:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            c.settimeout(2.0)
            block = b"u" * 65536
            base = cli.rss_kib()
            sent = 0
            try:
                while sent < (256 << 20):        # far more than any bounded pipeline holds
                    sent += c.send(block)
            except socket.timeout:
                pass                             # the client's send() blocks: back-pressure
            time.sleep(0.5)
            grown = cli.rss_kib() - base
            print(f"sent {sent >> 10} KiB before send() blocked; tunnel RSS +{grown} KiB")
            assert sent < (64 << 20), "the tunnel kept reading although nothing went out"
            assert grown < 16 * 1024, grown
    finally:
        code, _, err = cli.stop()
    assert code == 0, err
