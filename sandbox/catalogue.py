"""The sandbox's apps (docs/ARCHITECTURE.md, Contract 3): what each one is and how it behaves.

Pure data: nothing here starts a process. `Sandbox` turns each `AppSpec` into ARM bodies
(sandbox/arm.py), an SCM site per app and per slot (sandbox/scm_process.py) and an sshd per
instance (sandbox/sshd.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

RESOURCE_GROUP = "sandbox-rg"
LOCATION = "Sandbox"
PLAN = "sandbox-plan"

WRONG_HOST = "wrong.sandbox.invalid"   # what wronghost-app's SCM certificate names
# A cloud's suffix of app host names: the default host is <site>.<suffix>, the SCM host
# <site>.scm.<suffix> (Azure Government's; Azure China's is chinacloudsites.cn). ARM says so in
# hostNameSslStates and enabledHostNames; a client must read it there, never assume the public
# cloud's azurewebsites.net.
GOV_SUFFIX = "azurewebsites.us"
SSH_PORT = 2222          # the container's sshd port (docs/CONTAINERS.md)
DEBUG_PORT = 9229        # the container's debugger port for debug-app

# What an instance's container port is served by.
SERVE_SSHD = "sshd"          # a real OpenSSH sshd (root only)
SERVE_DEBUGGER = "debugger"  # a tiny TCP server that greets with a banner
SERVE_NOTHING = "nothing"    # a reserved loopback port that refuses connections
SERVE_SHARED_SSHD = "shared-sshd"   # reuse the sshd of another app's first instance

# How an app's sshd is configured (sandbox/sshd.py, config_text).
SSHD_IMAGES = "images"     # the built-in images: the seed's CBC ciphers plus ctr, sftp subsystem
SSHD_SEED = "seed"         # the documentation's sshd_config as custom images copy it: CBC only, no sftp
SSHD_NOSFTP = "nosftp"     # OpenSSH's default (modern) algorithms, but no `Subsystem sftp` line
SSHD_MODERN = "modern"     # AEAD ciphers and etm MACs only: nothing the portal's browser SSH offers

# What an SCM site answers /exec/* with when it refuses (docs/PROTOCOL.md, "Exec channel"): the
# status and the JSON body's Message. Azure's texts are not published; these are inferred.
WINDOWS_EXEC = (404, "No HTTP resource was found that matches the request URI.")
NOEXEC = (403, "The exec endpoint is disabled for this app.")

# The walls of real Azure (docs/PROTOCOL.md section 9): an address the SCM site's access rules
# allow (a documentation range: never this machine), the built-in policy that denies SSH, and
# the host name of a site reachable only through its private endpoint (`.invalid` never resolves).
OFFICE_RANGE = "203.0.113.0/24"
SSH_POLICY_DEFINITION = "25255ddf-ef4f-4283-975a-5590ad111bba"   # "App Service apps should disable SSH"
SSH_POLICY_ASSIGNMENT = "deny-ssh-on-app-service"
PRIVATE_SUFFIX = "scm.privatelink.sandbox.invalid"


@dataclass(frozen=True)
class SiteContainer:
    """One of a site's containers ("site containers", sidecars): ARM's Microsoft.Web/sites/
    sitecontainers and the SCM site's /api/sitecontainers. state: Running (a container of its own
    in the sandbox, the exec channel's ?container=), or anything else (none runs)."""
    name: str
    image: str
    target_port: str
    is_main: bool = False
    state: str = "Running"


@dataclass(frozen=True)
class AppSpec:
    """One site (an app, or one slot of an app) of the sandbox."""
    name: str
    what: str                                # one line for the summary
    linux: bool = True                       # properties.reserved / kind
    state: str = "Running"                   # ARM properties.state: Running | Stopped
    instances: int = 1
    basic_allowed: bool = True               # basicPublishingCredentialsPolicies/scm allow
    remote_debugging: bool = False           # config/web remoteDebuggingEnabled
    starting_seconds: float = 0.0            # GetStatus reads STARTING this long after start
    serves: dict = field(default_factory=lambda: {SSH_PORT: SERVE_SSHD})
    shared_sshd_of: str | None = None        # for SERVE_SHARED_SSHD: whose sshd
    slots: tuple = ()                        # slot names; each slot is its own site (same spec)
    forbidden: bool = False                  # every ARM read answers 403 AuthorizationFailed
    cert: str = "good"                       # SCM certificate: good | untrusted | wronghost
    scm: bool = True                         # has an SCM site at all
    sshd_config: str = SSHD_IMAGES           # SSHD_IMAGES | SSHD_SEED | SSHD_NOSFTP | SSHD_MODERN
    root_password: str | None = None         # root's sshd password; None: "Docker!"
    exec_refusal: tuple | None = None        # (status, Message) the SCM site answers /exec/* with
    ssh_enabled: bool = True                 # ARM properties.sshEnabled (False: SCM refuses SSH)
    ssh_policy: bool = False                 # a Deny assignment of the built-in "disable SSH" policy
    scm_rules: tuple = ()                    # config/web scmIpSecurityRestrictions (Allow, default Deny)
    private_endpoint: bool = False           # publicNetworkAccess Disabled, one private endpoint
    publish_rights: bool = True              # False: the caller's roles lack sites/publish/Action
    containers: tuple = ()                   # SiteContainer (ARM sitecontainers); () for a classic app
    host_suffix: str | None = None           # a cloud's host names (GOV_SUFFIX); None: 127.0.0.1:<port>

    @property
    def default_port(self) -> int:
        return DEBUG_PORT if self.remote_debugging else SSH_PORT

    @property
    def scm_state(self) -> str:
        return "STOPPED" if self.state == "Stopped" else "STARTED"

    @property
    def ip_forbidden(self) -> bool:
        """The SCM site answers every request from here 403 Ip Forbidden: access rules that this
        machine is not in, or public network access disabled."""
        return bool(self.scm_rules) or self.private_endpoint

    @property
    def sidecars(self) -> tuple:
        """The containers other than the main one that run (each a container of its own)."""
        return tuple(c for c in self.containers if not c.is_main and c.state == "Running")


APPS: tuple[AppSpec, ...] = (
    AppSpec("linux-app", "running Linux app, one instance"),
    AppSpec("windows-app", "Windows app (reserved: false): refused by the command",
            linux=False, serves={SSH_PORT: SERVE_NOTHING}, exec_refusal=WINDOWS_EXEC),
    AppSpec("stopped-app", "state Stopped; GetStatus STOPPED",
            state="Stopped", serves={SSH_PORT: SERVE_NOTHING}),
    AppSpec("starting-app", "GetStatus STARTING for the first 5 s (hold_starting() for more)",
            starting_seconds=5.0),
    AppSpec("slot-app", "production plus slot 'staging', each its own SCM host and sshd",
            slots=("staging",)),
    AppSpec("scaled-app", "two instances, each its own sshd (hostname tells them apart)",
            instances=2),
    AppSpec("bearer-app", "basic-auth policy allow: false; SCM accepts only Bearer",
            basic_allowed=False),
    AppSpec("debug-app", "remoteDebuggingEnabled: true; default tunnel port 9229 (debugger)",
            remote_debugging=True,
            serves={SSH_PORT: SERVE_SSHD, DEBUG_PORT: SERVE_DEBUGGER}),
    AppSpec("nossh-app", "container has no sshd: GetStatus canReachPort false",
            serves={SSH_PORT: SERVE_NOTHING}),
    AppSpec("forbidden-app", "every ARM read answers 403 AuthorizationFailed",
            forbidden=True, serves={}, scm=False),
    AppSpec("badcert-app", "SCM certificate issued by an untrusted second CA",
            cert="untrusted", serves={SSH_PORT: SERVE_SHARED_SSHD}, shared_sshd_of="linux-app"),
    AppSpec("wronghost-app", "SCM certificate names another host (wrong.sandbox.invalid)",
            cert="wronghost", serves={SSH_PORT: SERVE_SHARED_SSHD}, shared_sshd_of="linux-app"),
    # Containers as people build them from the documentation (custom images).
    AppSpec("seed-app", "custom image, the documentation's sshd_config: CBC ciphers and hmac-sha1 "
            "only, no sftp subsystem", sshd_config=SSHD_SEED),
    AppSpec("nosftp-app", "custom image: modern ciphers, no `Subsystem sftp` (scp needs -O, "
            "sftp fails)", sshd_config=SSHD_NOSFTP),
    AppSpec("wrongpw-app", "custom image: root's password is not 'Docker!'",
            root_password="not-Docker!"),
    AppSpec("port22-app", "custom image: sshd listens on 22, not 2222 (GetStatus canReachPort false)",
            serves={22: SERVE_SSHD}),
    AppSpec("modern-app", "custom image: AEAD ciphers and etm MACs only (OpenSSH works, the portal's "
            "browser SSH does not)", sshd_config=SSHD_MODERN),
    # The exec channel (/exec/shell, /exec/execute): a way in without sshd.
    AppSpec("exec-app", "custom image without sshd, two instances: only the exec channel gets in "
            "(GetStatus canReachPort false)", instances=2, serves={SSH_PORT: SERVE_NOTHING}),
    AppSpec("noexec-app", "its SCM site refuses /exec/* (403, Azure's JSON shape); the tunnel works",
            exec_refusal=NOEXEC),
    # Real Azure's walls (docs/PROTOCOL.md section 9).
    AppSpec("sshoff-app", "SSH turned off (sshEnabled: false): the SCM site refuses the tunnel to 2222 and "
            "browser SSH", ssh_enabled=False),
    AppSpec("sshpolicy-app", "SSH turned off, and an Azure Policy assignment denies turning it on",
            ssh_enabled=False, ssh_policy=True),
    AppSpec("restricted-app", f"SCM access restrictions (allow {OFFICE_RANGE} only): 403 Ip Forbidden",
            scm_rules=(OFFICE_RANGE,)),
    AppSpec("private-app", "private endpoint, public network access disabled: its SCM host name does not "
            "resolve here (403 Ip Forbidden when reached)", private_endpoint=True),
    AppSpec("noentra-app", "Basic auth disabled, and the caller's roles lack sites/publish/Action: SCM "
            "answers Bearer with 403", basic_allowed=False, publish_rights=False),
    AppSpec("sidecar-app", "site containers: main (sshd), sidecar otel running, sidecar cache failed",
            containers=(SiteContainer("main", "sandbox/app:1.0", "8080", is_main=True),
                        SiteContainer("otel", "otel/opentelemetry-collector:0.98.0", "4317"),
                        SiteContainer("cache", "redis:7.2", "6379", state="Failed"))),
    AppSpec("restart-app", "running Linux app, one instance, for restarts (sb.restart_app: any app "
            "can be restarted)"),
    # Another cloud: the SCM host is a name ARM gives, which resolves only through a hosts entry
    # (Sandbox.hosts_entries) and which its certificate names (not 127.0.0.1).
    AppSpec("gov-app", f"Azure Government's host names: SCM host gov-app.scm.{GOV_SUFFIX}:<port> "
            "(resolve it with sb.hosts_entries(); its certificate names that host only)",
            host_suffix=GOV_SUFFIX),
)

APPS_BY_NAME = {a.name: a for a in APPS}


def site_name(app: str, slot: str | None = None) -> str:
    """The SCM site name of an app or slot (Azure's `{app}-{slot}` SCM host naming)."""
    return f"{app}-{slot}" if slot else app


def scm_host_name(spec: AppSpec, site: str) -> str:
    """The SCM host's name (without the port): <site>.scm.<suffix> in a cloud of host names, a private
    endpoint's name (which never resolves), else the loopback address every other site is reached at."""
    if spec.private_endpoint:
        return f"{site}.{PRIVATE_SUFFIX}"
    return f"{site}.scm.{spec.host_suffix}" if spec.host_suffix else "127.0.0.1"


def default_host_name(spec: AppSpec, site: str) -> str:
    """The app's own host name (ARM's defaultHostName)."""
    return f"{site}.{spec.host_suffix or 'sandbox.localhost'}"


def kudu_name(site: str) -> str:
    """The name (and hostname) of a site's Kudu container: the exec channel's `?target=kudu`."""
    return f"{site}-kudu"


def sidecar_name(instance: str, sidecar: str) -> str:
    """The name (and hostname) of an instance's sidecar container: `{instance}-{sidecar}`."""
    return f"{instance}-{sidecar}"


def instance_names(app: str, count: int, slot: str | None = None) -> list[str]:
    """Instance names: `{site}-i0`, `{site}-i1`, ... (also the sshd's hostname)."""
    return [f"{site_name(app, slot)}-i{i}" for i in range(count)]
