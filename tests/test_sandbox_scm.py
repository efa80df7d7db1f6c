"""The sandbox's SCM sites as the sandbox configures them: GetStatus per app, auth, certificates,
faults and STARTING. (The SCM server's own byte-level tests live with it.)"""
from __future__ import annotations

import base64
import json
import socket
import ssl
import time

import pytest

from sandbox import wscodec
from tests.fixtures_sandbox import scm_call

STATUS_V2 = "/AppServiceTunnel/Tunnel.ashx?GetStatus&GetStatusAPIVer=2"


def _auth(sb, app):
    return app.basic_authorization if app.basic_allowed else f"Bearer {sb.bearer_token}"


def _status(sb, name, slot=None, cookie=None):
    app = sb.app(name, slot)
    status, headers, body = scm_call(app, STATUS_V2, _auth(sb, app), cookie=cookie,
                                     cafile=sb.ca_file)
    assert status == 200, (name, status, body)
    return json.loads(body)


# app -> (state, canReachPort) when the sandbox runs sshd
EXPECTED = {
    "linux-app": ("STARTED", True), "windows-app": ("STARTED", False),
    "stopped-app": ("STOPPED", False), "slot-app": ("STARTED", True),
    "scaled-app": ("STARTED", True), "bearer-app": ("STARTED", True),
    "debug-app": ("STARTED", True), "nossh-app": ("STARTED", False),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_get_status_v2_per_app(sandbox, name):
    state, reach = EXPECTED[name]
    app = sandbox.app(name)
    if reach and not sandbox.sshd_available and app.default_port == 2222:
        reach = False
    got = _status(sandbox, name)
    assert got["state"] == state
    assert got["canReachPort"] is reach
    assert got["port"] == app.default_port
    assert got["msg"] == ("" if reach else "Unable to connect to WebApp")


def test_get_status_slot_and_instances(sandbox_sshd):
    sb = sandbox_sshd
    assert _status(sb, "slot-app", "staging")["canReachPort"] is True
    assert sb.app("slot-app", "staging").scm_host != sb.app("slot-app").scm_host
    for inst in sb.app("scaled-app").instance_names:
        assert _status(sb, "scaled-app", cookie=inst)["canReachPort"] is True


def test_get_status_v1_text(sandbox):
    app = sandbox.app("nossh-app")
    status, _, body = scm_call(app, "/AppServiceTunnel/Tunnel.ashx?GetStatus", _auth(sandbox, app),
                               cafile=sandbox.ca_file)
    assert status == 200 and body == b"FAILURE:2222:Unable to connect to WebApp"


def test_starting_turns_into_started(sandbox):
    sandbox.hold_starting("starting-app", 1.5)
    assert _status(sandbox, "starting-app")["state"] == "STARTING"
    deadline = time.monotonic() + 10
    while _status(sandbox, "starting-app")["state"] == "STARTING":
        assert time.monotonic() < deadline, "starting-app never left STARTING"
        time.sleep(0.25)
    assert _status(sandbox, "starting-app")["state"] == "STARTED"


def test_auth_basic_and_bearer(sandbox):
    linux, bearer = sandbox.app("linux-app"), sandbox.app("bearer-app")
    ca = sandbox.ca_file
    assert scm_call(linux, "/api/settings", linux.basic_authorization, cafile=ca)[0] == 200
    assert scm_call(linux, "/api/settings", f"Bearer {sandbox.bearer_token}", cafile=ca)[0] == 200
    status, headers, _ = scm_call(linux, "/api/settings", None, cafile=ca)
    assert status == 401 and "WWW-Authenticate" in headers
    wrong = "Basic " + base64.b64encode(f"{linux.basic_user}:nope".encode()).decode()
    assert scm_call(linux, STATUS_V2, wrong, cafile=ca)[0] == 401
    # bearer-app: Basic disabled, Bearer accepted -- the token az holds after sign-in
    assert scm_call(bearer, STATUS_V2, bearer.basic_authorization, cafile=ca)[0] == 401
    assert scm_call(bearer, STATUS_V2, f"Bearer {sandbox.bearer_token}", cafile=ca)[0] == 200


def test_certificate_faults(sandbox):
    def auth(app):
        return app.basic_authorization
    with pytest.raises(ssl.SSLCertVerificationError) as e:
        scm_call(sandbox.app("badcert-app"), "/api/settings", auth(sandbox.app("badcert-app")),
                 cafile=sandbox.ca_file)
    assert "unable to get local issuer certificate" in str(e.value) \
        or "self-signed" in str(e.value) or "self signed" in str(e.value)
    with pytest.raises(ssl.SSLCertVerificationError) as e:
        scm_call(sandbox.app("wronghost-app"), "/api/settings",
                 auth(sandbox.app("wronghost-app")), cafile=sandbox.ca_file)
    assert "match" in str(e.value) or "mismatch" in str(e.value)
    # trusted by the right CA it answers (the fault is the certificate only)
    assert scm_call(sandbox.app("badcert-app"), "/api/settings",
                    auth(sandbox.app("badcert-app")), cafile=sandbox.untrusted_ca_file)[0] == 200


def _upgrade(sb, app, authorization, port_header=None, cookie=None):
    """Raw WebSocket upgrade; returns (status code, ssl socket, leftover bytes)."""
    host, port = app.scm_host.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=sb.ca_file)
    raw = socket.create_connection((host, int(port)), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname=host)
    headers = [("Authorization", authorization)]
    if port_header:
        headers.append(("AppsvcTunnelPort", port_header))
    if cookie:
        headers.append(("Cookie", f"ARRAffinity={cookie}"))
    s.sendall(wscodec.upgrade_request("/AppServiceTunnel/Tunnel.ashx", app.scm_host, wscodec.new_key(), headers))
    head, rest = wscodec.recv_head(s.recv)
    return wscodec.parse_head(head)[0] if head is not None else None, s, rest


def _read_message(s, rest, timeout=10):
    """First server message's payload (unmasked, possibly fragmented over reads)."""
    s.settimeout(timeout)
    buf = rest
    while True:
        frames, _ = wscodec.split_frames(buf, masked=False)
        if frames:
            return frames[0].opcode, frames[0].payload
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError("closed before a whole message")
        buf += chunk


def test_tunnel_reaches_the_container(sandbox_sshd):
    sb = sandbox_sshd
    app = sb.app("linux-app")
    status, s, rest = _upgrade(sb, app, app.basic_authorization)
    with s:
        assert status == 101
        opcode, payload = _read_message(s, rest)
        assert opcode == 2 and payload.startswith(b"SSH-2.0-OpenSSH")
    dbg = sb.app("debug-app")        # default port 9229: the debugger's banner
    status, s, rest = _upgrade(sb, dbg, dbg.basic_authorization)
    with s:
        assert status == 101
        assert _read_message(s, rest)[1].startswith(b"Sandbox debugger for debug-app-i0")


@pytest.mark.parametrize("code", [401, 403, 502])
def test_refuse_fault(sandbox, code):
    app = sandbox.app("linux-app")
    sandbox.set_fault("linux-app", {"refuse": code})
    try:
        status, s, _ = _upgrade(sandbox, app, app.basic_authorization)
        s.close()
        assert status == code
    finally:
        sandbox.set_fault("linux-app", None)
    status, s, _ = _upgrade(sandbox, app, app.basic_authorization)
    s.close()
    assert status == 101


def _send_binary(s, payload: bytes):
    s.sendall(wscodec.client_frame(wscodec.OP_BINARY, payload))


def _recv_until_eof(s, timeout):
    s.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data, "eof"
            data += chunk
    except socket.timeout:
        return data, "open"
    except (ConnectionResetError, ssl.SSLError):
        return data, "eof"


def _opcodes(data: bytes) -> list:
    return [f.opcode for f in wscodec.split_frames(data, masked=False)[0]]


def test_drop_and_stall_faults(sandbox):
    """Through debug-app (its default port is the echoing debugger): drop closes the TCP
    connection without a close frame; stall keeps it open but relays nothing more."""
    app = sandbox.app("debug-app")
    banner_len = len("Sandbox debugger for debug-app-i0 (container port 9229)\r\n")
    try:
        sandbox.set_fault("debug-app", {"stall_after_bytes": banner_len})
        status, s, rest = _upgrade(sandbox, app, app.basic_authorization)
        with s:
            assert status == 101
            assert _read_message(s, rest)[1].endswith(b"\r\n")
            _send_binary(s, b"echo me")
            data, how = _recv_until_eof(s, 1.5)
            assert how == "open" and b"echo me" not in data

        sandbox.set_fault("debug-app", {"drop_after_bytes": banner_len + 4})
        status, s, rest = _upgrade(sandbox, app, app.basic_authorization)
        with s:
            assert status == 101
            _read_message(s, rest)
            _send_binary(s, b"0123456789" * 10)
            data, how = _recv_until_eof(s, 5)
            assert how == "eof"
            assert wscodec.OP_CLOSE not in _opcodes(data)     # abrupt: no close frame
    finally:
        sandbox.set_fault("debug-app", None)
