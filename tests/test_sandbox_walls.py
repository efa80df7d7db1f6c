"""The sandbox's walls of real Azure (issue 23; docs/PROTOCOL.md section 9), spoken to directly: what
ARM says about each wall app, and what its SCM site answers, over TLS with the sandbox CA."""
from __future__ import annotations

import json
import socket
import ssl

import pytest

from tests.fixtures_sandbox import arm_call
from tests.test_sandbox_exec import Shell, refused
from tests.wsclient import HandshakeError, WsClient, http_request

TUNNEL = "/AppServiceTunnel/Tunnel.ashx"
STATUS = TUNNEL + "?GetStatus&GetStatusAPIVer=2"


def raw_answer(sb, app, request: bytes) -> bytes:
    """The SCM site's whole answer to one request, as bytes (the status line's words included)."""
    host, port = sb.app(app).scm_address.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=sb.ca_file)
    with socket.create_connection((host, int(port)), timeout=10) as plain, \
            ctx.wrap_socket(plain, server_hostname=host) as tls:
        tls.sendall(request)
        out = b""
        while chunk := tls.recv(65536):
            out += chunk
    return out


def get(sb, app, path, auth=None):
    host, port = sb.app(app).scm_address.rsplit(":", 1)
    headers = {"Authorization": auth} if auth else {}
    return http_request(host, int(port), "GET", path, headers=headers,
                        ssl_context=ssl.create_default_context(cafile=sb.ca_file))


def upgrade(sb, app, path=TUNNEL, auth=None, headers=None):
    host, port = sb.app(app).scm_address.rsplit(":", 1)
    sent = {**({"Authorization": auth} if auth else {}), **(headers or {})}
    with pytest.raises(HandshakeError) as e:
        WsClient.connect(host, int(port), path, headers=sent,
                         ssl_context=ssl.create_default_context(cafile=sb.ca_file)).abort()
    return e.value


def test_arm_describes_every_wall(sandbox):
    site = lambda name: arm_call(sandbox, "GET", sandbox.site_id(name))[1]["properties"]  # noqa: E731
    assert site("sshoff-app")["sshEnabled"] is False and site("linux-app")["sshEnabled"] is True
    assert site("private-app")["publicNetworkAccess"] == "Disabled"
    assert [h["name"] for h in site("private-app")["hostNameSslStates"] if h["hostType"] == "Repository"] == \
        [sandbox.app("private-app").scm_host]
    status, conns = arm_call(sandbox, "GET", sandbox.site_id("private-app") + "/privateEndpointConnections")
    assert status == 200 and conns["value"][0]["properties"]["ipAddresses"] == ["10.20.0.5"]
    status, web = arm_call(sandbox, "GET", sandbox.site_id("restricted-app") + "/config/web")
    rules = web["properties"]["scmIpSecurityRestrictions"]
    assert [(r["ipAddress"], r["action"]) for r in rules] == [("203.0.113.0/24", "Allow"), ("Any", "Deny")]
    assert web["properties"]["scmIpSecurityRestrictionsDefaultAction"] == "Deny"
    status, perms = arm_call(sandbox, "GET", sandbox.site_id("noentra-app")
                             + "/providers/Microsoft.Authorization/permissions")
    assert perms["value"][0]["actions"] == ["*/read"]
    status, perms = arm_call(sandbox, "GET", sandbox.site_id("linux-app")
                             + "/providers/Microsoft.Authorization/permissions")
    assert perms["value"][0]["actions"] == ["*"]
    status, containers = arm_call(sandbox, "GET", sandbox.site_id("sidecar-app") + "/sitecontainers")
    assert [(c["name"], c["properties"]["isMain"]) for c in containers["value"]] == [
        ("main", True), ("otel", False), ("cache", False)]
    assert arm_call(sandbox, "GET", sandbox.site_id("linux-app") + "/sitecontainers")[1]["value"] == []


def test_the_policy_that_keeps_ssh_off(sandbox):
    path = sandbox.site_id("sshpolicy-app") + "/providers/Microsoft.Authorization/policyAssignments"
    status, found = arm_call(sandbox, "GET", path + "?$filter=atScope()")
    [assignment] = found["value"]
    assert assignment["properties"]["parameters"] == {"effect": {"value": "Deny"}}
    assert arm_call(sandbox, "GET", sandbox.site_id("sshoff-app")
                    + "/providers/Microsoft.Authorization/policyAssignments")[1]["value"] == []
    status, definition = arm_call(sandbox, "GET", assignment["properties"]["policyDefinitionId"])
    assert status == 200 and "Microsoft.Web/sites/sshEnabled" in json.dumps(definition["properties"]["policyRule"])
    status, body = arm_call(sandbox, "PUT", sandbox.site_id("sshpolicy-app"),
                            body=json.dumps({"properties": {"sshEnabled": True}}))
    assert status == 403 and body["error"]["code"] == "RequestDisallowedByPolicy"
    assert body["error"]["additionalInfo"][0]["info"]["policyAssignmentName"] == "deny-ssh-on-app-service"


def test_ssh_off_refuses_the_tunnel_and_browser_ssh_not_exec(sandbox):
    app = sandbox.app("sshoff-app")
    status, _, body = get(sandbox, "sshoff-app", STATUS, app.basic_authorization)
    assert status == 200 and json.loads(body) == {"port": 2222, "state": "STARTED", "canReachPort": False,
                                                  "msg": "SSH is disabled for this app."}
    assert get(sandbox, "sshoff-app", TUNNEL + "?GetStatus", app.basic_authorization)[2] == \
        b"FAILURE:2222:SSH is disabled for this app."
    refusal = upgrade(sandbox, "sshoff-app", auth=app.basic_authorization)
    assert refusal.status == 403 and json.loads(refusal.body) == {"Message": "SSH is disabled for this app."}
    assert get(sandbox, "sshoff-app", "/webssh/host", app.basic_authorization)[0] == 403
    assert upgrade(sandbox, "sshoff-app", auth="Basic bm9ib2R5Og==").status == 401   # still the credentials first
    if not sandbox.containers_unavailable_reason:
        with Shell.open(sandbox, "sshoff-app") as sh:      # the exec channel needs no SSH
            assert sh.run("hostname") == "sshoff-app-i0"


def test_turning_ssh_on_opens_it_again(sandbox):
    app = sandbox.app("sshoff-app")
    status, site = arm_call(sandbox, "PATCH", sandbox.site_id("sshoff-app"),
                            body=json.dumps({"properties": {"sshEnabled": True}}))
    try:
        assert status == 200 and site["properties"]["sshEnabled"] is True
        body = json.loads(get(sandbox, "sshoff-app", STATUS, app.basic_authorization)[2])
        assert body["msg"] != "SSH is disabled for this app."
    finally:
        sandbox.set_ssh("sshoff-app", False)
    assert arm_call(sandbox, "GET", sandbox.site_id("sshoff-app"))[1]["properties"]["sshEnabled"] is False


@pytest.mark.parametrize("app", ["restricted-app", "private-app"])
def test_ip_forbidden_before_any_credential(sandbox, app):
    info = sandbox.app(app)
    for auth in (None, info.basic_authorization, f"Bearer {sandbox.bearer_token}"):
        for path in ("/api/settings", STATUS, "/webssh/host", "/exec/shell", "/api/sitecontainers"):
            answer = raw_answer(sandbox, app, (f"GET {path} HTTP/1.1\r\nHost: x\r\n"
                                               + (f"Authorization: {auth}\r\n" if auth else "") + "\r\n").encode())
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 403 Ip Forbidden\r\n"), (path, head)
            assert b"Content-Type: text/html" in head and b"<h1>Error 403 - Forbidden</h1>" in body
        assert upgrade(sandbox, app, auth=auth).status == 403


def test_a_token_without_the_publish_right(sandbox):
    refusal = upgrade(sandbox, "noentra-app", auth=f"Bearer {sandbox.bearer_token}")
    assert refusal.status == 403
    assert "Microsoft.Web/sites/publish/Action" in json.loads(refusal.body)["Message"]
    assert upgrade(sandbox, "noentra-app", auth="Bearer forged").status == 401
    assert upgrade(sandbox, "noentra-app", auth=sandbox.app("noentra-app").basic_authorization).status == 401


def test_site_containers_and_their_states(sandbox):
    auth = sandbox.app("sidecar-app").basic_authorization
    status, headers, body = get(sandbox, "sidecar-app", "/api/sitecontainers", auth)
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert [(c["name"], c["isMain"], c["state"]) for c in json.loads(body)] == [
        ("main", True, "Running"), ("otel", False, "Running"), ("cache", False, "Failed")]
    assert json.loads(get(sandbox, "sidecar-app", "/api/sitecontainers/cache", auth)[2])["state"] == "Failed"
    assert get(sandbox, "sidecar-app", "/api/sitecontainers/nope", auth)[0] == 404
    assert get(sandbox, "linux-app", "/api/sitecontainers", sandbox.app("linux-app").basic_authorization)[0] == 404
    assert get(sandbox, "sidecar-app", "/api/sitecontainers")[0] == 401


@pytest.mark.root
def test_exec_into_a_sidecar(sandbox):
    if sandbox.containers_unavailable_reason:
        pytest.skip(sandbox.containers_unavailable_reason)
    with Shell.open(sandbox, "sidecar-app", query="?container=otel") as sh:
        assert sh.run("hostname") == "sidecar-app-i0-otel"
    with Shell.open(sandbox, "sidecar-app", query="?container=main") as sh:
        assert sh.run("hostname") == "sidecar-app-i0"
    for app, query, status, words in [
            ("sidecar-app", "?container=cache", 409, "The container 'cache' of instance sidecar-app-i0 is not running "
                                                     "(its state: Failed)."),
            ("sidecar-app", "?container=nope", 404, "its containers are main, otel, cache."),
            ("sidecar-app", "?target=kudu&container=otel", 400, "leave out target=kudu"),
            ("linux-app", "?container=main", 400, "Instance linux-app-i0 has no site containers (sidecars)")]:
        e = refused(sandbox, app, query=query)
        assert e.status == status and words in json.loads(e.body)["Message"], e.body
