"""The SCM server's /exec/ proxy (issue 21) on the wire.

The exec service is stood in for by tests/test_scm_webssh.py's stub (it records every request
head, answers plain requests with "stub saw PATH" and an upgrade with 101 and an echo), so these
tests check only what the C server does: auth, the refusals it answers itself in Azure's JSON shape
(the site's exec_refusal, a stopped app), the instance by ARRAffinity, the headers it adds and
strips, and the raw pass-through. The real service behind it: tests/test_sandbox_exec.py.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from sandbox.scm_process import ScmServer
from tests import test_scm_webssh as webssh
from tests.test_scm_server import dead_port
from tests.test_scm_webssh import BASIC, BEARER, SERVICE_TOKEN, recv_exact, request, site, upgrade

ca, ctx, stub = webssh.ca, webssh.ctx, webssh.stub      # its fixtures serve this module too

REFUSAL = {"status": 403, "body": json.dumps({"Message": "Exec is off \"here\"."})}
SITES = [
    site("site-a", [{"name": "a-i0", "ports": {"2222": 31001}}]),
    site("scaled", [{"name": "sc-i0", "ports": {}}, {"name": "sc-i1", "ports": {}}]),
    site("bearer-only", [{"name": "bo-i0", "ports": {}}], basic=None),
    site("refusing", [{"name": "r-i0", "ports": {}}], exec_refusal=REFUSAL),
    site("stopped", [{"name": "st-i0", "ports": {}}], state="STOPPED"),
]
DENIED = {"Message": "Authorization has been denied for this request."}


@pytest.fixture(scope="module")
def scm(tmp_path_factory, ca, stub):
    srv = ScmServer(tmp_path_factory.mktemp("scm-exec"), SITES, ca=ca, exec_port=stub.port,
                    exec_token=SERVICE_TOKEN)
    srv.start()
    yield srv
    srv.stop()
    assert srv.returncode == 0, srv.log()


def assert_json(resp, status, body):
    assert resp.status == status
    assert resp.get("content-type") == ["application/json; charset=utf-8"]
    assert json.loads(resp.body) == body
    assert resp.closed


def test_a_request_reaches_the_service_with_its_headers_and_without_secrets(scm, ctx, stub):
    before = len(stub.seen)
    r = request(scm, ctx, "site-a", "/exec/execute?x=%41", [
        ("Authorization", BASIC), ("Cookie", "ARRAffinity=a-i0; other=1"),
        ("X-Exec-Token", "forged"), ("x-exec-instance", "elsewhere"), ("X-Webssh-Port", "22"),
        ("X-Forwarded-Proto", "http"), ("Content-Length", "2")], method="POST", body=b"{}")
    assert (r.status, r.body) == (200, b"stub saw /exec/execute?x=%41")
    assert len(stub.seen) == before + 1
    seen = stub.seen[-1]
    assert seen.line == "POST /exec/execute?x=%41 HTTP/1.1"
    assert seen.get("x-exec-token") == [SERVICE_TOKEN]
    assert seen.get("x-exec-site") == ["site-a"]
    assert seen.get("x-exec-instance") == ["a-i0"]
    assert seen.get("x-forwarded-proto") == ["https"]
    assert seen.get("content-length") == ["2"]
    for dropped in ("authorization", "cookie", "x-webssh-port"):
        assert not seen.get(dropped), dropped
    assert not r.get("set-cookie")


def test_paths_are_matched_decoded_and_case_insensitively(scm, ctx, stub):
    for path in ("/exec", "/EXEC/Shell", "/%65xec/shell", "/exec/anything"):
        before = len(stub.seen)
        assert request(scm, ctx, "site-a", path, [("Authorization", BASIC)]).status == 200, path
        assert stub.seen[before].line == f"GET {path} HTTP/1.1"
    for path in ("/execx", "/x/exec/shell"):
        accepted = stub.accepted
        r = request(scm, ctx, "site-a", path, [("Authorization", BASIC)], check_closed=False)
        assert r.status == 404 and stub.accepted == accepted, path


def test_the_instance_is_the_arraffinity_cookies_and_the_first_otherwise(scm, ctx, stub):
    for cookie, name in (("ARRAffinity=sc-i1", "sc-i1"), ("a=1; ARRAffinity=sc-i1", "sc-i1"),
                         ("ARRAffinity=nope", "sc-i0"), (None, "sc-i0")):
        headers = [("Authorization", BASIC)] + ([("Cookie", cookie)] if cookie else [])
        assert request(scm, ctx, "scaled", "/exec/shell", headers).status == 200
        assert stub.seen[-1].get("x-exec-instance") == [name], cookie


@pytest.mark.parametrize("site_name,auth", [("site-a", None), ("site-a", "Basic eDp5"),
                                            ("site-a", "Bearer wrong"), ("bearer-only", BASIC)])
def test_without_the_sites_credentials_it_is_401_in_json(scm, ctx, stub, site_name, auth):
    accepted = stub.accepted
    headers = [("Authorization", auth)] if auth else []
    r = request(scm, ctx, site_name, "/exec/execute", headers, method="POST")
    assert_json(r, 401, DENIED)
    assert r.get("www-authenticate") == ['Basic realm="site"']
    sock, status, hdrs, _ = upgrade(scm, ctx, site_name, "/exec/shell", headers)
    sock.close()
    assert status == 401
    assert stub.accepted == accepted


def test_bearer_is_accepted(scm, ctx):
    assert request(scm, ctx, "bearer-only", "/exec/shell", [("Authorization", BEARER)]).status == 200


def test_a_sites_refusal_and_a_stopped_app_are_answered_here(scm, ctx, stub):
    accepted = stub.accepted
    r = request(scm, ctx, "refusing", "/exec/shell", [("Authorization", BASIC)])
    assert_json(r, 403, json.loads(REFUSAL["body"]))
    assert r.body == REFUSAL["body"].encode()            # as configured, byte for byte
    sock, status, _, early = upgrade(scm, ctx, "refusing", "/exec/shell", [("Authorization", BASIC)])
    with sock:
        assert status == 403
        assert json.loads(recv_exact(sock, len(REFUSAL["body"]), early)) == json.loads(REFUSAL["body"])
    r = request(scm, ctx, "stopped", "/exec/execute", [("Authorization", BASIC)], method="POST")
    assert r.status == 503 and "stopped" in json.loads(r.body)["Message"]
    # credentials come first
    assert_json(request(scm, ctx, "refusing", "/exec/shell"), 401, DENIED)
    assert stub.accepted == accepted


def test_a_reload_sets_and_clears_a_refusal(tmp_path, ca, ctx, stub):
    with ScmServer(tmp_path, SITES[:1], ca=ca, exec_port=stub.port, exec_token=SERVICE_TOKEN) as s:
        body = json.dumps({"Message": "busy"})
        s.update_site("site-a", exec_refusal={"status": 503, "body": body})
        assert_json(request(s, ctx, "site-a", "/exec/shell", [("Authorization", BASIC)]), 503,
                    {"Message": "busy"})
        s.update_site("site-a", exec_refusal=None)
        assert request(s, ctx, "site-a", "/exec/shell", [("Authorization", BASIC)]).status == 200


def test_the_websocket_passes_through_both_ways(scm, ctx, stub):
    sock, status, _, early = upgrade(scm, ctx, "site-a", "/exec/shell?target=kudu&shell=%2Fbin%2Fsh",
                                     [("Authorization", BASIC)])
    with sock:
        assert status == 101
        assert stub.seen[-1].line == "GET /exec/shell?target=kudu&shell=%2Fbin%2Fsh HTTP/1.1"
        payload = os.urandom(300_000)
        sock.sendall(payload)
        assert recv_exact(sock, len(payload), early) == payload


def test_without_exec_in_the_config_it_is_404_as_before(tmp_path, ca, ctx):
    with ScmServer(tmp_path, SITES[:1], ca=ca) as s:
        assert request(s, ctx, "site-a", "/exec/shell", [("Authorization", BASIC)],
                       check_closed=False).status == 404


def test_service_not_listening_is_502_in_json(tmp_path, ca, ctx):
    with ScmServer(tmp_path, SITES[:1], ca=ca, exec_port=dead_port(), exec_token=SERVICE_TOKEN) as s:
        assert_json(request(s, ctx, "site-a", "/exec/shell", [("Authorization", BASIC)]), 502,
                    {"Message": "The exec service is not running"})


@pytest.mark.parametrize("extra,message", [
    ('"exec": {"port": 1, "token": "a b"}', "exec.token: visible ASCII"),
    ('"exec": {"token": "t"}', "exec.port"),
    ('"exec": 5', "exec: expected null or an object"),
])
def test_bad_exec_config_exits_1_with_a_reason(tmp_path, extra, message):
    _assert_config_refused(tmp_path, extra + ", ", "", message)


@pytest.mark.parametrize("refusal,message", [
    ('{"status": 200, "body": "{}"}', "exec_refusal.status"),
    ('{"status": 403}', "exec_refusal: expected null or {status, body}"),
    ('{"status": 403, "body": 5}', "exec_refusal.body"),
    ('{"status": 403, "body": "%s"}' % ("x" * 1025), "exec_refusal.body: at most 1024"),
])
def test_bad_exec_refusal_exits_1_with_a_reason(tmp_path, refusal, message):
    _assert_config_refused(tmp_path, "", ', "exec_refusal": ' + refusal, message)


def _assert_config_refused(tmp_path, top, in_site, message):
    from sandbox.scm_process import build
    cfg = tmp_path / "c.json"
    cfg.write_text('{"ready_file": "/tmp/x", %s"sites": [{"name": "a", "cert": "c", "key": "k", '
                   '"instances": [{"name": "i", "ports": {}}]%s}]}' % (top, in_site))
    binary = os.environ.get("SCM_SERVER_BINARY") or str(build())
    r = subprocess.run([binary, str(cfg)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert message in r.stderr, r.stderr
