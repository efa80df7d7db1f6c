"""Identity (OpenID + token endpoint) and Azure Resource Manager stand-ins, one HTTPS server.

Enough for the real `az` (service-principal sign-in against a cloud registered with
`az cloud register`, see sandbox/README.md "Driving the real az offline") and for the calls of
docs/PROTOCOL.md section 1. Bodies follow ARM's shapes; errors are ARM's `{"error": {"code", "message"}}`.
api-version query parameters are accepted whatever their value.

The server runs in a daemon thread of the calling process (`ArmServer.start()`), bound to
127.0.0.1 on a port the kernel picks. Extension index files are served without auth from
`extension_dir` under `/extensions/`.
"""
from __future__ import annotations

import base64
import json
import mimetypes
import os
import re
import ssl
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import catalogue

ARM_RESOURCE = "https://management.core.windows.net/"
APP_SERVICE_RESOURCE = "https://appservice.azure.com"     # as in Azure's public cloud


@dataclass
class SiteView:
    """What ARM knows of one site (app or slot)."""
    spec: catalogue.AppSpec
    slot: str | None
    scm_host: str                 # 127.0.0.1:<port> of the SCM listener
    instances: list               # instance names
    basic_user: str
    basic_password: str
    ssh_enabled: bool = True      # properties.sshEnabled: az resource update / az webapp update set it


@dataclass
class ArmModel:
    tenant: str
    subscription: str
    sp_id: str
    sp_secret: str
    token: str
    resource_group: str = catalogue.RESOURCE_GROUP
    sites: dict = field(default_factory=dict)     # (app, slot or None) -> SiteView
    extension_dir: str = ""
    # Short-lived tokens (Sandbox.short_lived_tokens): while token_lifetime is set, every token
    # request gets a new token of that lifetime; issued maps each to its expiry (epoch seconds).
    # on_issue(token) tells the sandbox, which hands it to the SCM sites.
    token_lifetime: int | None = None
    issued: dict = field(default_factory=dict)
    on_issue: object = None
    # on_ssh(view) tells the sandbox that a site's sshEnabled changed (its SCM site follows).
    on_ssh: object = None

    def token_valid(self, token: str) -> bool:
        return token == self.token or self.issued.get(token, 0) > time.time()

    def issue_token(self, base_url: str) -> tuple:
        """(token, lifetime) for a token request."""
        if not self.token_lifetime:
            return self.token, 86399
        token = make_token(self.tenant, self.sp_id, base_url, self.token_lifetime)
        self.issued[token] = time.time() + self.token_lifetime
        if self.on_issue:
            self.on_issue(token)
        return token, self.token_lifetime


def make_token(tenant: str, sp_id: str, base_url: str, lifetime: int = 86400) -> str:
    """A JWT-shaped access token (unsigned; the sandbox compares it byte for byte).

    JWT-shaped because parts of az and MSAL peek at the claims (tid, oid, exp)."""
    def b64(obj):
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    now = int(time.time())
    header = {"typ": "JWT", "alg": "none"}
    claims = {"aud": ARM_RESOURCE, "iss": f"{base_url}{tenant}/", "iat": now, "nbf": now,
              "exp": now + lifetime, "appid": sp_id, "oid": sp_id, "sub": sp_id, "tid": tenant,
              "idtyp": "app", "ver": "1.0", "jti": uuid.uuid4().hex}
    return f"{b64(header)}.{b64(claims)}.{base64.urlsafe_b64encode(os.urandom(32)).rstrip(b'=').decode()}"


class _Handler(BaseHTTPRequestHandler):
    server_version = "SandboxARM/1.0"
    protocol_version = "HTTP/1.1"
    timeout = 60

    # -- plumbing -------------------------------------------------------------------------
    def log_message(self, fmt, *args):          # to the server's log, not stderr
        self.server.arm.log(f"{self.address_string()} {fmt % args}")

    def _send(self, status: int, body, content_type="application/json; charset=utf-8",
              headers=None):
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body or b""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        self.send_header("x-ms-correlation-request-id", str(uuid.uuid4()))
        self.send_header("Cache-Control", "no-cache")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, code: str, message: str, headers=None):
        self._send(status, {"error": {"code": code, "message": message}}, headers=headers)

    def _read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _dispatch(self):
        arm = self.server.arm
        url = urllib.parse.urlsplit(self.path)
        path = re.sub(r"/+", "/", url.path)
        arm.record(self.command, path)
        body = self._read_body() if self.command in ("POST", "PUT", "PATCH") else b""
        try:
            if path.lower().startswith("/extensions/"):
                return self._static(path[len("/extensions/"):])
            if path.lower() == "/metadata/endpoints":
                return self._send(200, self._metadata())
            if "/oauth2/" in path.lower() or "/.well-known/" in path.lower() \
                    or path.lower().startswith("/common/discovery"):
                return self._identity(path, body)
            return self._arm(path, urllib.parse.parse_qs(url.query), body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    # -- extension index ------------------------------------------------------------------
    def _static(self, rel: str):
        root = self.server.arm.model.extension_dir
        rel = urllib.parse.unquote(rel)
        full = os.path.realpath(os.path.join(root, rel))
        if not root or not full.startswith(os.path.realpath(root) + os.sep) or not os.path.isfile(full):
            return self._send(404, b"not found\n", "text/plain")
        with open(full, "rb") as f:
            data = f.read()
        ctype = mimetypes.guess_type(full)[0] or "application/octet-stream"
        if full.endswith(".whl"):
            ctype = "application/zip"
        return self._send(200, data, ctype)

    def _metadata(self):
        """ARM's cloud metadata (what `az cloud register --endpoint-resource-manager` reads)."""
        base = self.server.arm.base_url
        return {"name": "Sandbox", "portal": base, "resourceManager": base,
                "authentication": {"loginEndpoint": base, "audiences": [ARM_RESOURCE],
                                   "tenant": "common", "identityProvider": "AAD"},
                "graph": "https://graph.windows.net/", "graphAudience": "https://graph.windows.net/",
                "microsoftGraphResourceId": "https://graph.microsoft.com/",
                # the audience of az's own SCM Bearer tokens (`az webapp exec`, `az webapp log`)
                "appServiceResourceId": APP_SERVICE_RESOURCE,
                "suffixes": {"storage": "sandbox.invalid", "keyVaultDns": "vault.sandbox.invalid",
                             "acrLoginServer": "azurecr.sandbox.invalid",
                             "sqlServerHostname": "database.sandbox.invalid"}}

    # -- identity -------------------------------------------------------------------------
    def _policy_definition(self, path: str, name: str):
        """A built-in policy definition (tenant scope): only the one that denies SSH."""
        if self.command != "GET" or name.lower() != catalogue.SSH_POLICY_DEFINITION:
            return self._error(404, "PolicyDefinitionNotFound",
                               f"The policy definition '{name}' could not be found.")
        return self._send(200, ssh_policy_definition())

    def _identity(self, path: str, body: bytes):
        arm = self.server.arm
        m = self.server.arm.model
        base = arm.base_url
        parts = [p for p in path.split("/") if p]
        tenant = parts[0] if parts else "common"
        low = path.lower()
        if low.endswith("/.well-known/openid-configuration"):
            v2 = "/v2.0/" in low
            prefix = f"{base}{tenant}" + ("/oauth2/v2.0" if v2 else "/oauth2")
            issuer = f"{base}{m.tenant}/v2.0" if v2 else f"{base}{m.tenant}/"
            return self._send(200, {
                "token_endpoint": f"{prefix}/token",
                "authorization_endpoint": f"{prefix}/authorize",
                "device_authorization_endpoint": f"{prefix}/devicecode",
                "end_session_endpoint": f"{prefix}/logout",
                "issuer": issuer,
                "jwks_uri": f"{base}{tenant}/discovery/v2.0/keys",
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                          "client_secret_basic"],
                "tenant_region_scope": "WW",
                "cloud_instance_name": "sandbox.local",
            })
        if low.endswith("/token"):
            if self.command != "POST":
                return self._send(405, {"error": "invalid_request",
                                        "error_description": "Token endpoint needs POST."})
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))

            def get(k):
                return (form.get(k) or [""])[0]
            client_id, secret = get("client_id"), get("client_secret")
            auth = self.headers.get("Authorization", "")
            if not client_id and auth.lower().startswith("basic "):
                try:
                    client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
                except ValueError:
                    pass
            if tenant not in (m.tenant, "organizations", "common"):
                return self._send(400, {
                    "error": "invalid_request",
                    "error_description": f"AADSTS90002: Tenant '{tenant}' not found. (sandbox)",
                    "error_codes": [90002]})
            if get("grant_type") != "client_credentials":
                return self._send(400, {
                    "error": "unsupported_grant_type",
                    "error_description": "AADSTS70003: The sandbox supports only the "
                                         "client_credentials grant (service principals)."})
            if client_id != m.sp_id:
                return self._send(400, {
                    "error": "unauthorized_client",
                    "error_description": f"AADSTS700016: Application with identifier '{client_id}' "
                                         f"was not found in the directory '{m.tenant}'.",
                    "error_codes": [700016]})
            if secret != m.sp_secret:
                return self._send(401, {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the "
                                         "secret being sent in the request is the client secret value, "
                                         "not the client secret ID.",
                    "error_codes": [7000215]})
            now = int(time.time())
            token, lifetime = m.issue_token(self.server.arm.base_url)
            return self._send(200, {"token_type": "Bearer", "expires_in": lifetime,
                                    "ext_expires_in": lifetime, "expires_on": str(now + lifetime),
                                    "resource": ARM_RESOURCE, "access_token": token})
        if "/discovery/" in low and low.endswith("/keys"):
            return self._send(200, {"keys": []})
        return self._error(404, "NotFound", f"No identity endpoint at {path}.")

    # -- ARM ------------------------------------------------------------------------------
    def _arm(self, path: str, query: dict, body: bytes):
        m = self.server.arm.model
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return self._error(401, "AuthenticationFailed",
                               "Authentication failed. The 'Authorization' header is missing.",
                               {"WWW-Authenticate": self._challenge("invalid_token")})
        if not m.token_valid(auth[7:].strip()):
            return self._error(401, "InvalidAuthenticationToken",
                               "The access token is invalid.",
                               {"WWW-Authenticate": self._challenge("invalid_token")})
        if not query.get("api-version"):
            return self._error(400, "MissingApiVersionParameter",
                               "The api-version query parameter (?api-version=) is required for "
                               "all requests.")
        segs = [p for p in path.split("/") if p]
        low = [s.lower() for s in segs]
        if low == ["subscriptions"]:
            return self._send(200, {"value": [self._subscription()],
                                    "count": {"type": "Total", "value": 1}})
        if low == ["tenants"]:
            return self._send(200, {"value": [{
                "id": f"/tenants/{m.tenant}", "tenantId": m.tenant, "tenantCategory": "Home",
                "displayName": "Sandbox", "defaultDomain": "sandbox.local",
                "tenantType": "AAD", "domains": ["sandbox.local"]}]})
        if low[:3] == ["providers", "microsoft.authorization", "policydefinitions"] and len(low) == 4:
            return self._policy_definition(path, segs[3])
        if len(low) < 2 or low[0] != "subscriptions":
            return self._error(404, "InvalidResourceType" if low else "NotFound",
                               f"The resource path '{path}' is not known to the sandbox ARM.")
        if low[1] != m.subscription.lower():
            return self._error(404, "SubscriptionNotFound",
                               f"The subscription '{segs[1]}' could not be found.")
        if len(low) == 2:
            return self._send(200, self._subscription())
        if low[2] == "providers" and len(low) == 4:
            # `az resource update --ids` picks its api-version from resourceTypes
            types = ([{"resourceType": t, "locations": [catalogue.LOCATION], "apiVersions": [WEB_API]}
                      for t in ("sites", "sites/slots", "sites/config", "sites/sitecontainers",
                                "sites/basicPublishingCredentialsPolicies")]
                     if low[3] == "microsoft.web" else [])
            return self._send(200, {"id": f"/subscriptions/{m.subscription}/providers/{segs[3]}",
                                    "namespace": segs[3], "registrationState": "Registered",
                                    "resourceTypes": types})
        if low[2] != "resourcegroups":
            return self._error(404, "InvalidResourceType",
                               f"The resource path '{path}' is not known to the sandbox ARM.")
        if len(low) == 3:
            return self._send(200, {"value": [self._rg()]})
        if low[3] != m.resource_group.lower():
            return self._error(404, "ResourceGroupNotFound",
                               f"Resource group '{segs[3]}' could not be found.")
        if len(low) == 4:
            return self._send(200, self._rg())
        # providers/Microsoft.Web/sites[/name[/...]]
        if low[4:7] != ["providers", "microsoft.web", "sites"]:
            if low[4:6] == ["providers", "microsoft.web"] and len(low) >= 8 \
                    and low[6] == "serverfarms":
                return self._plan(segs[7])
            return self._error(404, "ResourceNotFound",
                               f"The resource path '{path}' is not known to the sandbox ARM.")
        if len(low) == 7:
            return self._send(200, {"value": [self._site(v) for (a, s), v in m.sites.items()
                                              if s is None and not v.spec.forbidden]})
        app = segs[7]
        rest = segs[8:]
        spec = catalogue.APPS_BY_NAME.get(app.lower())
        if spec is None:
            return self._not_found(f"Microsoft.Web/sites/{app}")
        if spec.forbidden:
            action = "Microsoft.Web/sites/" + ("read" if self.command == "GET" else "write")
            scope = "/".join([""] + segs)
            return self._error(403, "AuthorizationFailed",
                               f"The client '{m.sp_id}' with object id '{m.sp_id}' does not have "
                               f"authorization to perform action '{action}' over scope '{scope}' "
                               f"or the scope is invalid. If access was recently granted, please "
                               f"refresh your credentials.")
        slot = None
        if rest and rest[0].lower() == "slots":
            if len(rest) == 1:
                return self._send(200, {"value": [self._site(v) for (a, s), v in m.sites.items()
                                                  if a == spec.name and s is not None]})
            slot = rest[1]
            rest = rest[2:]
            if (spec.name, slot.lower()) not in m.sites:
                return self._not_found(f"Microsoft.Web/sites/{spec.name}/slots/{slot}")
            slot = slot.lower()
        view = m.sites[(spec.name, slot)]
        sub = [r.lower() for r in rest]
        if self.command in ("PUT", "PATCH") and not sub:
            return self._update_site(view, body)
        if self.command not in ("GET", "HEAD", "POST"):
            return self._error(405, "MethodNotAllowed",
                               f"The sandbox ARM is read-only but for a site's sshEnabled: "
                               f"{self.command} is not supported on '{path}'.")
        if not sub:
            return self._send(200, self._site(view))
        if sub == ["sitecontainers"]:
            return self._send(200, {"value": [self._site_container(view, c) for c in spec.containers],
                                    "nextLink": None})
        if len(sub) == 2 and sub[0] == "sitecontainers":
            for c in spec.containers:
                if c.name == sub[1]:
                    return self._send(200, self._site_container(view, c))
            return self._not_found(f"Microsoft.Web/sites/{self._full_name(view)}/sitecontainers/{rest[1]}")
        if sub == ["privateendpointconnections"]:
            return self._send(200, {"value": [self._private_endpoint(view)] if spec.private_endpoint else [],
                                    "nextLink": None})
        if sub == ["providers", "microsoft.authorization", "permissions"]:
            return self._send(200, {"value": [permissions(spec.publish_rights)], "nextLink": None})
        if sub == ["providers", "microsoft.authorization", "policyassignments"]:
            found = [ssh_policy_assignment(self._id(view))] if spec.ssh_policy else []
            return self._send(200, {"value": found, "nextLink": None})
        if sub == ["instances"]:
            return self._send(200, {"value": [self._instance(view, i) for i in self._instances(view)],
                                    "nextLink": None, "id": None})
        if len(sub) == 2 and sub[0] == "instances":
            if rest[1] in self._instances(view):
                return self._send(200, self._instance(view, rest[1]))
            return self._not_found(f"Microsoft.Web/sites/{self._full_name(view)}/instances/{rest[1]}")
        if sub == ["basicpublishingcredentialspolicies", "scm"]:
            return self._send(200, self._policy(view, "scm"))
        if sub == ["basicpublishingcredentialspolicies", "ftp"]:
            return self._send(200, self._policy(view, "ftp"))
        if sub == ["config", "publishingcredentials", "list"] and self.command == "POST":
            return self._send(200, self._credentials(view))
        if sub == ["config", "web"] and self.command == "GET":
            return self._send(200, self._config_web(view))
        if sub == ["config", "appsettings", "list"] and self.command == "POST":
            return self._send(200, {"id": self._id(view) + "/config/appsettings",
                                    "name": "appsettings", "type": "Microsoft.Web/sites/config",
                                    "location": catalogue.LOCATION, "properties": {}})
        if sub == ["publishxml"] and self.command == "POST":
            return self._send(200, self._publish_xml(view), "application/xml")
        return self._not_found(f"Microsoft.Web/sites/{self._full_name(view)}/{'/'.join(rest)}")

    def _update_site(self, v: SiteView, body: bytes):
        """PUT (az resource update) or PATCH of the site: only properties.sshEnabled changes; an
        assignment of the policy that denies SSH refuses it as ARM does (RequestDisallowedByPolicy)."""
        try:
            wanted = json.loads(body or b"{}").get("properties", {}).get("sshEnabled")
        except (ValueError, AttributeError):
            return self._error(400, "InvalidRequestContent", "The request content is not valid JSON.")
        if wanted is not None and not isinstance(wanted, bool):
            return self._error(400, "InvalidRequestContent", "properties.sshEnabled must be true or false.")
        if wanted and v.spec.ssh_policy:
            assignment = ssh_policy_assignment(self._id(v))
            identifiers = json.dumps([{
                "policyAssignment": {"name": assignment["properties"]["displayName"], "id": assignment["id"]},
                "policyDefinition": {"name": SSH_POLICY_NAME, "id": SSH_POLICY_ID}}])
            return self._send(403, {"error": {
                "code": "RequestDisallowedByPolicy", "target": v.spec.name,
                "message": f"Resource '{v.spec.name}' was disallowed by policy. Policy identifiers: '{identifiers}'.",
                "additionalInfo": [{"type": "PolicyViolation", "info": {
                    "policyDefinitionDisplayName": SSH_POLICY_NAME, "policyDefinitionId": SSH_POLICY_ID,
                    "policyAssignmentName": assignment["name"], "policyAssignmentId": assignment["id"],
                    "policyAssignmentScope": assignment["properties"]["scope"],
                    "policyAssignmentDisplayName": assignment["properties"]["displayName"]}}]}})
        if wanted is not None and wanted != v.ssh_enabled:
            v.ssh_enabled = wanted
            if self.server.arm.model.on_ssh:
                self.server.arm.model.on_ssh(v)
        return self._send(200, self._site(v))

    def _site_container(self, v: SiteView, c):
        return {"id": f"{self._id(v)}/sitecontainers/{c.name}", "name": c.name,
                "type": "Microsoft.Web/sites/sitecontainers", "kind": None,
                "properties": {"image": c.image, "targetPort": c.target_port, "isMain": c.is_main,
                               "startUpCommand": None, "authType": "Anonymous", "userName": None,
                               "passwordSecret": None, "userManagedIdentityClientId": None,
                               "createdTime": "2025-01-01T00:00:00Z", "lastModifiedTime": "2025-01-01T00:00:00Z",
                               "volumeMounts": [], "inheritAppSettingsAndConnectionStrings": True,
                               "environmentVariables": []}}

    def _private_endpoint(self, v: SiteView):
        m = self.server.arm.model
        return {"id": f"{self._id(v)}/privateEndpointConnections/{v.spec.name}-pe.conn",
                "name": f"{v.spec.name}-pe.conn", "type": "Microsoft.Web/sites/privateEndpointConnections",
                "properties": {
                    "provisioningState": "Succeeded",
                    "privateEndpoint": {"id": f"/subscriptions/{m.subscription}/resourceGroups/{m.resource_group}"
                                              f"/providers/Microsoft.Network/privateEndpoints/{v.spec.name}-pe"},
                    "privateLinkServiceConnectionState": {"status": "Approved", "description": "",
                                                          "actionsRequired": "None"},
                    "ipAddresses": [PRIVATE_ADDRESS]}}

    def _challenge(self, error: str) -> str:
        m = self.server.arm.model
        return (f'Bearer authorization_uri="{self.server.arm.base_url}{m.tenant}", '
                f'error="{error}", error_description="The access token is missing or invalid"')

    def _not_found(self, what: str):
        m = self.server.arm.model
        return self._error(404, "ResourceNotFound",
                           f"The Resource '{what}' under resource group '{m.resource_group}' was not "
                           f"found. For more details please go to "
                           f"https://aka.ms/ARMResourceNotFoundFix")

    # -- bodies ---------------------------------------------------------------------------
    def _subscription(self):
        m = self.server.arm.model
        return {"id": f"/subscriptions/{m.subscription}", "authorizationSource": "RoleBased",
                "managedByTenants": [], "subscriptionId": m.subscription, "tenantId": m.tenant,
                "displayName": "Sandbox Subscription", "state": "Enabled",
                "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01",
                                         "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off"}}

    def _rg(self):
        m = self.server.arm.model
        return {"id": f"/subscriptions/{m.subscription}/resourceGroups/{m.resource_group}",
                "name": m.resource_group, "type": "Microsoft.Resources/resourceGroups",
                "location": catalogue.LOCATION, "properties": {"provisioningState": "Succeeded"}}

    def _plan(self, name):
        m = self.server.arm.model
        if name.lower() != catalogue.PLAN:
            return self._not_found(f"Microsoft.Web/serverFarms/{name}")
        return self._send(200, {
            "id": f"/subscriptions/{m.subscription}/resourceGroups/{m.resource_group}"
                  f"/providers/Microsoft.Web/serverfarms/{catalogue.PLAN}",
            "name": catalogue.PLAN, "type": "Microsoft.Web/serverfarms", "kind": "linux",
            "location": catalogue.LOCATION,
            "properties": {"status": "Ready", "reserved": True, "numberOfWorkers": 2,
                           "maximumNumberOfWorkers": 10, "numberOfSites": len(m.sites)},
            "sku": {"name": "P1v3", "tier": "PremiumV3", "size": "P1v3", "family": "Pv3",
                    "capacity": 2}})

    @staticmethod
    def _full_name(v: SiteView) -> str:
        return f"{v.spec.name}/slots/{v.slot}" if v.slot else v.spec.name

    def _id(self, v: SiteView) -> str:
        m = self.server.arm.model
        return (f"/subscriptions/{m.subscription}/resourceGroups/{m.resource_group}"
                f"/providers/Microsoft.Web/sites/{self._full_name(v)}")

    @staticmethod
    def _instances(v: SiteView) -> list:
        # A stopped app has no running instances.
        return [] if v.spec.state == "Stopped" else list(v.instances)

    def _site(self, v: SiteView):
        m = self.server.arm.model
        spec = v.spec
        name = f"{spec.name}/{v.slot}" if v.slot else spec.name
        host_label = catalogue.site_name(spec.name, v.slot)
        default_host = catalogue.default_host_name(spec, host_label)
        plan_id = (f"/subscriptions/{m.subscription}/resourceGroups/{m.resource_group}"
                   f"/providers/Microsoft.Web/serverfarms/{catalogue.PLAN}")

        def ssl_state(host, kind):
            return {"name": host, "sslState": "Disabled", "ipBasedSslResult": None, "virtualIP": None,
                    "virtualIPv6": None, "thumbprint": None, "certificateResourceId": None,
                    "toUpdate": None, "toUpdateIpBasedSsl": None, "ipBasedSslState": "NotConfigured",
                    "hostType": kind}
        return {
            "id": self._id(v), "name": name,
            "type": "Microsoft.Web/sites/slots" if v.slot else "Microsoft.Web/sites",
            "kind": "app,linux" if spec.linux else "app",
            "location": catalogue.LOCATION, "tags": {},
            "properties": {
                "name": name, "state": spec.state, "hostNames": [default_host],
                "webSpace": f"{m.resource_group}-SandboxWebSpace",
                "selfLink": f"https://127.0.0.1/webspaces/{m.resource_group}/sites/{host_label}",
                "repositorySiteName": spec.name, "owner": None, "usageState": "Normal",
                "enabled": True, "adminEnabled": True,
                "enabledHostNames": [default_host, v.scm_host],
                "siteProperties": {"metadata": None, "properties": [
                    {"name": "LinuxFxVersion", "value": "NODE|20-lts" if spec.linux else ""},
                    {"name": "WindowsFxVersion", "value": None}], "appSettings": None},
                "availabilityState": "Normal", "sslCertificates": None, "csrs": [],
                "cers": None, "siteMode": None,
                "hostNameSslStates": [ssl_state(default_host, "Standard"),
                                      ssl_state(v.scm_host, "Repository")],
                "computeMode": None, "serverFarm": None, "serverFarmId": plan_id,
                "reserved": spec.linux, "isXenon": False, "hyperV": False,
                "lastModifiedTimeUtc": "2025-01-01T00:00:00.000Z",
                "storageRecoveryDefaultState": "Running", "contentAvailabilityState": "Normal",
                "runtimeAvailabilityState": "Normal", "dnsConfiguration": {},
                "vnetRouteAllEnabled": False, "httpsOnly": True,
                "siteConfig": {"numberOfWorkers": spec.instances,
                               "linuxFxVersion": "NODE|20-lts" if spec.linux else "",
                               "windowsFxVersion": None, "alwaysOn": True,
                               "http20Enabled": True, "minTlsVersion": "1.2",
                               "functionAppScaleLimit": 0, "minimumElasticInstanceCount": 0},
                "deploymentId": host_label, "slotName": v.slot, "trafficManagerHostNames": None,
                "sku": "PremiumV3", "scmSiteAlsoStopped": False, "targetSwapSlot": None,
                "hostingEnvironment": None, "hostingEnvironmentProfile": None,
                "clientAffinityEnabled": True, "clientCertEnabled": False,
                "clientCertMode": "Required", "clientCertExclusionPaths": None,
                "hostNamesDisabled": False, "customDomainVerificationId": "0" * 64,
                "outboundIpAddresses": "127.0.0.1", "possibleOutboundIpAddresses": "127.0.0.1",
                "containerSize": 0, "dailyMemoryTimeQuota": 0, "suspendedTill": None,
                "siteDisabledReason": 0, "functionExecutionUnitsCache": None,
                "maxNumberOfWorkers": None, "homeStamp": "sandbox", "cloningInfo": None,
                "hostingEnvironmentId": None, "tags": {}, "resourceGroup": m.resource_group,
                "defaultHostName": default_host, "slotSwapStatus": None,
                "keyVaultReferenceIdentity": "SystemAssigned", "inProgressOperationId": None,
                "publicNetworkAccess": "Disabled" if spec.private_endpoint else None,
                "sshEnabled": v.ssh_enabled, "storageAccountRequired": False,
                "virtualNetworkSubnetId": None, "redundancyMode": "None",
                "endToEndEncryptionEnabled": False,
            },
        }

    def _instance(self, v: SiteView, name: str):
        return {"id": f"{self._id(v)}/instances/{name}", "name": name,
                "type": "Microsoft.Web/sites/instances" if not v.slot
                else "Microsoft.Web/sites/slots/instances",
                "location": catalogue.LOCATION,
                "properties": {"state": "READY", "siteInstanceName": name,
                               "statusUrl": f"https://{v.scm_host}/api/vfs/",
                               "detectorUrl": None, "consoleUrl": None,
                               "healthCheckUrl": None, "containers": None}}

    def _policy(self, v: SiteView, which: str):
        return {"id": f"{self._id(v)}/basicPublishingCredentialsPolicies/{which}", "name": which,
                "type": "Microsoft.Web/sites/basicPublishingCredentialsPolicies",
                "location": catalogue.LOCATION,
                "properties": {"allow": v.spec.basic_allowed}}

    def _credentials(self, v: SiteView):
        user = urllib.parse.quote(v.basic_user, safe="")
        return {"id": f"{self._id(v)}/publishingcredentials/{v.basic_user}",
                "name": v.spec.name, "type": "Microsoft.Web/sites/publishingcredentials",
                "location": catalogue.LOCATION,
                "properties": {"name": None, "publishingUserName": v.basic_user,
                               "publishingPassword": v.basic_password,
                               "publishingPasswordHash": None,
                               "publishingPasswordHashSalt": None, "metadata": None,
                               "isDeleted": False,
                               "scmUri": f"https://{user}:{v.basic_password}@{v.scm_host}"}}

    def _config_web(self, v: SiteView):
        spec = v.spec
        return {"id": f"{self._id(v)}/config/web", "name": spec.name,
                "type": "Microsoft.Web/sites/config", "location": catalogue.LOCATION,
                "properties": {
                    "numberOfWorkers": spec.instances, "defaultDocuments": [],
                    "netFrameworkVersion": "v4.0",
                    "linuxFxVersion": "NODE|20-lts" if spec.linux else "",
                    "windowsFxVersion": None, "requestTracingEnabled": False,
                    "remoteDebuggingEnabled": spec.remote_debugging,
                    "remoteDebuggingVersion": "VS2022" if spec.remote_debugging else None,
                    "httpLoggingEnabled": False, "logsDirectorySizeLimit": 35,
                    "detailedErrorLoggingEnabled": False, "publishingUsername": v.basic_user,
                    "scmType": "None", "use32BitWorkerProcess": False, "webSocketsEnabled": False,
                    "alwaysOn": True, "appCommandLine": "", "managedPipelineMode": "Integrated",
                    "virtualApplications": [{"virtualPath": "/", "physicalPath": "site\\wwwroot",
                                             "preloadEnabled": True}],
                    "loadBalancing": "LeastRequests", "autoHealEnabled": False,
                    "vnetRouteAllEnabled": False, "http20Enabled": True, "minTlsVersion": "1.2",
                    "scmMinTlsVersion": "1.2", "ftpsState": "FtpsOnly",
                    "preWarmedInstanceCount": 0, "scmIpSecurityRestrictionsUseMain": False,
                    "localMySqlEnabled": False, "ipSecurityRestrictions": [],
                    "scmIpSecurityRestrictions": scm_rules(spec.scm_rules),
                    "ipSecurityRestrictionsDefaultAction": "Allow",
                    "scmIpSecurityRestrictionsDefaultAction": "Deny" if spec.scm_rules else "Allow",
                    "publicNetworkAccess": "Disabled" if spec.private_endpoint else None}}

    def _publish_xml(self, v: SiteView) -> str:
        return (f'<publishData><publishProfile profileName="{v.spec.name} - Web Deploy" '
                f'publishMethod="MSDeploy" publishUrl="{v.scm_host}" '
                f'msdeploySite="{v.spec.name}" userName="{v.basic_user}" '
                f'userPWD="{v.basic_password}" destinationAppUrl="https://{v.scm_host}" '
                f'SQLServerDBConnectionString="" mySQLDBConnectionString="" '
                f'hostingProviderForumLink="" controlPanelLink="" webSystem="WebSites">'
                f'<databases /></publishProfile></publishData>')


WEB_API = "2024-11-01"
PRIVATE_ADDRESS = "10.20.0.5"          # private-app's private endpoint (docs/PROTOCOL.md section 9)
SSH_POLICY_ID = f"/providers/Microsoft.Authorization/policyDefinitions/{catalogue.SSH_POLICY_DEFINITION}"
SSH_POLICY_NAME = "App Service apps should disable SSH"


def scm_rules(ranges) -> list:
    """config/web scmIpSecurityRestrictions: an Allow rule per range, then ARM's implicit Deny all."""
    if not ranges:
        return []
    rules = [{"ipAddress": r, "action": "Allow", "tag": "Default", "priority": 100 + i, "name": f"office-{i}",
              "description": "The office's addresses"} for i, r in enumerate(ranges)]
    return rules + [{"ipAddress": "Any", "action": "Deny", "priority": 2147483647, "name": "Deny all",
                     "description": "Deny all access"}]


def permissions(publish: bool) -> dict:
    """The caller's permissions on a site (Microsoft.Authorization/permissions): Contributor's, or
    Reader's where the app's spec takes the publish right away."""
    if publish:
        return {"actions": ["*"], "notActions": ["Microsoft.Authorization/*/Delete",
                                                 "Microsoft.Authorization/*/Write",
                                                 "Microsoft.Authorization/elevateAccess/Action"],
                "dataActions": [], "notDataActions": []}
    return {"actions": ["*/read"], "notActions": [], "dataActions": [], "notDataActions": []}


def ssh_policy_definition() -> dict:
    """The built-in definition's shape (public: Azure/azure-policy), rule and parameters."""
    return {"id": SSH_POLICY_ID, "name": catalogue.SSH_POLICY_DEFINITION,
            "type": "Microsoft.Authorization/policyDefinitions",
            "properties": {
                "displayName": SSH_POLICY_NAME, "policyType": "BuiltIn", "mode": "Indexed",
                "description": "Ensure that SSH is turned off for App Service apps.",
                "metadata": {"version": "1.0.0", "category": "App Service"},
                "parameters": {"effect": {"type": "String", "allowedValues": ["Audit", "Deny", "Disabled"],
                                          "defaultValue": "Audit",
                                          "metadata": {"displayName": "Effect"}}},
                "policyRule": {
                    "if": {"allOf": [
                        {"field": "type", "equals": "Microsoft.Web/sites"},
                        {"field": "kind", "notContains": "functionapp"},
                        {"anyOf": [{"field": "Microsoft.Web/sites/sshEnabled", "exists": "false"},
                                   {"field": "Microsoft.Web/sites/sshEnabled", "notEquals": "false"}]}]},
                    "then": {"effect": "[parameters('effect')]"}}}}


def ssh_policy_assignment(scope: str) -> dict:
    """An assignment of that definition with the effect Deny, at the site itself."""
    return {"id": f"{scope}/providers/Microsoft.Authorization/policyAssignments/{catalogue.SSH_POLICY_ASSIGNMENT}",
            "name": catalogue.SSH_POLICY_ASSIGNMENT, "type": "Microsoft.Authorization/policyAssignments",
            "location": None,
            "properties": {"displayName": "Deny SSH on App Service", "policyDefinitionId": SSH_POLICY_ID,
                           "scope": scope, "notScopes": [], "parameters": {"effect": {"value": "Deny"}},
                           "enforcementMode": "Default", "description": None, "metadata": {}}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False
    request_queue_size = 64


class ArmServer:
    """Identity + ARM over HTTPS on 127.0.0.1:<kernel-picked port>, in a daemon thread."""

    def __init__(self, model: ArmModel, cert_file: str, key_file: str, log_file: str | None = None):
        self.model = model
        self._cert, self._key = cert_file, key_file
        self._log_file = log_file
        self._log_lock = threading.Lock()
        self.requests: list = []        # (method, path) of every request, for tests
        self._httpd = None
        self._thread = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    def log(self, line: str):
        if self._log_file:
            with self._log_lock, open(self._log_file, "a") as f:
                f.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def record(self, method: str, path: str):
        with self._log_lock:
            self.requests.append((method, path))

    def start(self) -> "ArmServer":
        httpd = _Server(("127.0.0.1", 0), _Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self._cert, self._key)
        # Handshake in the per-request thread (first read), so one slow client never blocks accept().
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True,
                                       do_handshake_on_connect=False)
        httpd.arm = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="sandbox-arm", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None
