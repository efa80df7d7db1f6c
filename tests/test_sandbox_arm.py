"""Identity + ARM of the sandbox, through the real az where it matters and raw HTTPS elsewhere."""
from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.fixtures_sandbox import arm_call

RUNNING_LINUX = ["linux-app", "starting-app", "slot-app", "scaled-app", "bearer-app",
                 "debug-app", "nossh-app", "badcert-app", "wronghost-app"]


def test_az_signs_in_and_holds_the_sandbox_token(sandbox, az_cli):
    account = az_cli.json("account", "show")
    assert account["id"] == sandbox.subscription
    assert account["tenantId"] == sandbox.tenant
    assert account["environmentName"] == "Sandbox"
    assert account["user"] == {"name": sandbox.sp_id, "type": "servicePrincipal"}
    token = az_cli.json("account", "get-access-token")
    assert token["accessToken"] == sandbox.bearer_token
    assert token["subscription"] == sandbox.subscription


def test_az_webapp_show_reads_the_site(sandbox, az_cli):
    site = az_cli.json("webapp", "show", "-g", sandbox.resource_group, "-n", "linux-app")
    app = sandbox.app("linux-app")
    assert site["name"] == "linux-app" and site["kind"] == "app,linux"
    assert site["reserved"] is True and site["state"] == "Running"
    repo = [h for h in site["hostNameSslStates"] if h["hostType"] == "Repository"]
    assert [h["name"] for h in repo] == [app.scm_host]
    assert site["siteConfig"]["remoteDebuggingEnabled"] is False


def test_az_in_the_background_sees_the_windows_app(sandbox, az_cli):
    p = az_cli.popen("webapp", "show", "-g", sandbox.resource_group, "-n", "windows-app",
                     "-o", "json")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    site = json.loads(out)
    assert site["reserved"] is False and site["kind"] == "app"


def test_az_rest_sees_arm_errors(sandbox, az_cli):
    base = f"/subscriptions/{sandbox.subscription}/resourceGroups"
    r = az_cli("rest", "--method", "get", "--url",
               f"{base}/sandbox-rg/providers/Microsoft.Web/sites/forbidden-app?api-version=2024-04-01")
    assert r.returncode != 0 and "AuthorizationFailed" in r.stderr, r.stderr
    r = az_cli("group", "show", "-n", "no-such-rg")
    assert r.returncode != 0, r.stdout
    assert "(ResourceGroupNotFound) Resource group 'no-such-rg' could not be found." in r.stderr
    policy = az_cli.json("rest", "--method", "get", "--url",
                         f"{base}/sandbox-rg/providers/Microsoft.Web/sites/bearer-app"
                         f"/basicPublishingCredentialsPolicies/scm?api-version=2023-12-01")
    assert policy["properties"]["allow"] is False


def test_signed_out_az_is_refused(az_cli_signed_out):
    r = az_cli_signed_out("account", "show")
    assert r.returncode != 0 and "az login" in r.stderr


def _site_path(sb, name, slot=None, tail=""):
    return sb.site_id(name, slot) + tail


@pytest.mark.parametrize("name,slot", [(n, None) for n in RUNNING_LINUX + ["windows-app",
                                                                           "stopped-app"]]
                         + [("slot-app", "staging")])
def test_arm_bodies_per_app(sandbox, name, slot):
    app = sandbox.app(name, slot)
    status, site = arm_call(sandbox, "GET", _site_path(sandbox, name, slot))
    assert status == 200, site
    props = site["properties"]
    assert site["id"] == sandbox.site_id(name, slot)
    assert site["name"] == (f"{name}/{slot}" if slot else name)
    assert site["kind"] == ("app,linux" if app.linux else "app")
    assert props["reserved"] is app.linux
    assert props["state"] == app.state
    repo = [h["name"] for h in props["hostNameSslStates"] if h["hostType"] == "Repository"]
    assert repo == [app.scm_host]

    status, inst = arm_call(sandbox, "GET", _site_path(sandbox, name, slot, "/instances"))
    assert status == 200
    expected = [] if app.state == "Stopped" else app.instance_names
    assert [i["name"] for i in inst["value"]] == expected
    assert all(i["id"] == f"{sandbox.site_id(name, slot)}/instances/{i['name']}"
               for i in inst["value"])

    status, pol = arm_call(sandbox, "GET",
                           _site_path(sandbox, name, slot, "/basicPublishingCredentialsPolicies/scm"))
    assert status == 200 and pol["properties"]["allow"] is app.basic_allowed

    status, cred = arm_call(sandbox, "POST",
                            _site_path(sandbox, name, slot, "/config/publishingcredentials/list"))
    assert status == 200
    assert cred["properties"]["publishingUserName"] == app.basic_user
    assert cred["properties"]["publishingPassword"] == app.basic_password

    status, web = arm_call(sandbox, "GET", _site_path(sandbox, name, slot, "/config/web"))
    assert status == 200 and web["properties"]["remoteDebuggingEnabled"] is app.remote_debugging


def test_arm_errors_look_like_arm(sandbox):
    sub = f"/subscriptions/{sandbox.subscription}"
    status, body = arm_call(sandbox, "GET", f"{sub}/resourceGroups/sandbox-rg", token=None)
    assert status == 401 and body["error"]["code"] == "AuthenticationFailed"
    status, body = arm_call(sandbox, "GET", f"{sub}/resourceGroups/sandbox-rg", token="forged")
    assert status == 401 and body["error"]["code"] == "InvalidAuthenticationToken"
    status, body = arm_call(sandbox, "GET", f"{sub}/resourceGroups/sandbox-rg")
    assert status == 200 and body["name"] == "sandbox-rg"
    status, body = arm_call(sandbox, "GET", f"{sub}/resourceGroups/other-rg")
    assert status == 404 and body["error"]["code"] == "ResourceGroupNotFound"
    status, body = arm_call(sandbox, "GET", _site_path(sandbox, "no-such-app"))
    assert status == 404 and body["error"]["code"] == "ResourceNotFound"
    assert "Microsoft.Web/sites/no-such-app" in body["error"]["message"]
    status, body = arm_call(sandbox, "GET", _site_path(sandbox, "slot-app", "prod"))
    assert status == 404 and body["error"]["code"] == "ResourceNotFound"
    status, body = arm_call(sandbox, "GET", _site_path(sandbox, "forbidden-app", None, "/instances"))
    assert status == 403 and body["error"]["code"] == "AuthorizationFailed"
    status, body = arm_call(sandbox, "GET", "/subscriptions/00000000-0000-0000-0000-000000000000")
    assert status == 404 and body["error"]["code"] == "SubscriptionNotFound"
    status, body = arm_call(sandbox, "GET", f"{sub}/resourceGroups/sandbox-rg", api_version=None)
    assert status == 400 and body["error"]["code"] == "MissingApiVersionParameter"
    status, body = arm_call(sandbox, "PUT", _site_path(sandbox, "linux-app", None, "/config/web"), body=b"{}")
    assert status == 405 and body["error"]["code"] == "MethodNotAllowed"
    status, body = arm_call(sandbox, "GET", "/subscriptions")
    assert status == 200 and [s["subscriptionId"] for s in body["value"]] == [sandbox.subscription]


def _post_token(sb, secret):
    data = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": sb.sp_id,
                                   "client_secret": secret,
                                   "scope": "https://management.core.windows.net//.default"})
    req = urllib.request.Request(f"{sb.login_url}{sb.tenant}/oauth2/v2.0/token",
                                 data=data.encode(), method="POST")
    ctx = ssl.create_default_context(cafile=sb.ca_file)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_identity_endpoints(sandbox):
    status, body = _post_token(sandbox, sandbox.sp_secret)
    assert status == 200 and body["access_token"] == sandbox.bearer_token
    status, body = _post_token(sandbox, "wrong")
    assert status == 401 and body["error"] == "invalid_client"
    ctx = ssl.create_default_context(cafile=sandbox.ca_file)
    url = f"{sandbox.login_url}{sandbox.tenant}/v2.0/.well-known/openid-configuration"
    with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
        conf = json.load(r)
    assert conf["token_endpoint"] == f"{sandbox.login_url}{sandbox.tenant}/oauth2/v2.0/token"


def test_extension_files_are_served(sandbox):
    with open(f"{sandbox.extension_dir}/probe.json", "w") as f:
        f.write('{"extensions": {}}')
    ctx = ssl.create_default_context(cafile=sandbox.ca_file)
    with urllib.request.urlopen(sandbox.extension_url("probe.json"), context=ctx, timeout=10) as r:
        assert json.load(r) == {"extensions": {}}
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(sandbox.extension_url("..%2fsandbox.json"), context=ctx, timeout=10)
    assert e.value.code == 404
    assert sandbox.extension_index_url == sandbox.extension_url("index.json")
