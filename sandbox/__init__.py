"""The local App Service sandbox (docs/ARCHITECTURE.md, Contract 3).

    from sandbox import Sandbox
    with Sandbox(workdir) as sb:
        sb.app("linux-app").scm_url

Starts identity + ARM (HTTPS, sandbox/arm.py, a thread of this process), the browser SSH
service behind the SCM sites' /webssh/ (sandbox/webssh/), the exec channel's service behind
their /exec/ (sandbox/exec_service/), the C SCM server (sandbox/scm_process.py) and, as root,
a container per instance and per site's Kudu (sandbox/containers.py) with a real sshd in each
instance that has one (sandbox/sshd.py), all on 127.0.0.1 with ports picked at run time.
`stop()` (also on leaving the `with`, at exit, and when this process dies: PR_SET_PDEATHSIG)
ends every process it started.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
import weakref
import atexit
from dataclasses import dataclass

from . import arm, catalogue, containers, procs, sshd
from .catalogue import APPS, APPS_BY_NAME, RESOURCE_GROUP

__all__ = ["Sandbox", "AppInfo", "InstanceInfo", "APPS", "sshd_unavailable_reason"]

sshd_unavailable_reason = sshd.sshd_unavailable_reason
CLOUD_NAME = "Sandbox"
AZ_CORE_VERSION = "2.91.0"
WRONG_HOST = catalogue.WRONG_HOST


class InstanceInfo(str):
    """An instance: its name (this str: the ARRAffinity value, ARM's instance name and the
    sshd's hostname) plus `.ports` (container port -> loopback port) and `.has_sshd`.

    A str so that `app.instances[1]` can be passed wherever an instance name is expected."""

    def __new__(cls, name: str, ports: dict, has_sshd: bool):
        self = super().__new__(cls, name)
        self.ports = dict(ports)
        self.has_sshd = has_sshd
        return self

    @property
    def name(self) -> str:
        return str(self)

    @property
    def ssh_port(self) -> int | None:
        return self.ports.get(catalogue.SSH_PORT)

    def __repr__(self):
        return f"InstanceInfo({str(self)!r}, ports={self.ports!r}, has_sshd={self.has_sshd})"


@dataclass(frozen=True)
class AppInfo:
    name: str                     # the app (also for a slot)
    slot: str | None
    site: str                     # SCM site name: app, or app-slot
    # scm_host: 127.0.0.1:<port>; <site>.scm.<suffix>:<port> in another cloud; private-app's name never resolves
    scm_host: str
    scm_url: str                  # https://<scm_host>
    basic_user: str
    basic_password: str
    basic_allowed: bool           # basic-auth policy (bearer-app: False; SCM refuses Basic)
    instances: tuple              # InstanceInfo, in routing order (first = default)
    default_port: int             # the SCM's default target port (2222, debug-app 9229)
    linux: bool
    state: str                    # ARM properties.state
    remote_debugging: bool
    cert: str                     # good | untrusted | wronghost
    what: str
    scm_address: str = ""         # 127.0.0.1:<port>: where the SCM site listens, whatever its name

    @property
    def instance_names(self) -> list:
        return [i.name for i in self.instances]

    @property
    def basic_authorization(self) -> str:
        import base64
        raw = f"{self.basic_user}:{self.basic_password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


class Sandbox:
    """Identity + ARM, the SCM server and the container sshds. See the module docstring."""

    def __init__(self, workdir: str | None = None, *, sshd: bool | None = None,
                 starting_seconds: float | None = None, keepalive_seconds: int = 15,
                 keepalive_kind: str = "ping"):
        """workdir: where configs, keys, certs and logs go (created; a temp dir if None).
        sshd: start per-instance sshd (default: when possible, i.e. as root).
        starting_seconds: override starting-app's initial STARTING period."""
        self._own_workdir = workdir is None
        self.workdir = os.path.abspath(workdir or tempfile.mkdtemp(prefix="sandbox-"))
        self._want_sshd = sshd
        self._starting_seconds = starting_seconds
        self._keepalive = (keepalive_seconds, keepalive_kind)
        self.tenant = str(uuid.uuid4())
        self.subscription = str(uuid.uuid4())
        self.sp_id = str(uuid.uuid4())
        self.sp_secret = "sb" + secrets.token_urlsafe(24)     # never starts with "-" (az argv)
        self.resource_group = RESOURCE_GROUP
        self.cloud_name = CLOUD_NAME
        self.bearer_token = ""
        self.ca_file = self.untrusted_ca_file = None    # set by start()
        self.sshd_available = False
        self.sshd_unavailable_reason: str | None = None
        self.arm = None                 # arm.ArmServer
        self.scm = None                 # scm_process.ScmServer
        self.webssh = None              # webssh.WebsshService (browser SSH behind /webssh/)
        self.exec = None                # exec_service.ExecService (the exec channel behind /exec/)
        self._sshds: dict = {}          # instance name -> sshd.SshdInstance
        self._containers: dict = {}     # instance name -> its containers.Container (sshds too)
        self._kudus: dict = {}          # site name -> its Kudu's containers.Container
        self._sidecars: dict = {}       # (instance, sidecar) -> its containers.Container
        self._site_containers: dict = {}  # instance -> its site containers: main, state, pid (sidecar-app)
        self.containers_unavailable_reason: str | None = None
        self._aux: list = []            # Debugger / DeadPort objects
        self._apps: dict = {}           # (app, slot) -> AppInfo
        self._scm_sites: dict = {}      # site name -> Contract 2 site dict
        self._lock = threading.Lock()
        self._started = False
        self._stopped = False
        self._keep_workdir = False
        self.started_at = 0.0

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def start(self) -> "Sandbox":
        if self._started:
            return self
        self._started = True
        _live_sandboxes.add(self)
        try:
            self._start()
        except BaseException:
            self._keep_workdir = True       # its logs say what went wrong
            self.stop()
            raise
        return self

    def _start(self):
        for sub in ("logs", "certs", "instances", "extensions"):
            os.makedirs(os.path.join(self.workdir, sub), exist_ok=True)
        os.chmod(os.path.join(self.workdir, "instances"), 0o700)
        self._make_certs()

        model = arm.ArmModel(tenant=self.tenant, subscription=self.subscription,
                             sp_id=self.sp_id, sp_secret=self.sp_secret, token="",
                             extension_dir=self.extension_dir)
        self.arm = arm.ArmServer(model, self._arm_cert, self._arm_key,
                                 log_file=os.path.join(self.workdir, "logs", "arm.log")).start()
        model.token = self.bearer_token = arm.make_token(self.tenant, self.sp_id, self.arm.base_url)

        instances = self._start_containers()
        self._start_webssh()
        self._start_exec()
        self._start_scm(instances)
        for (app, slot), info in self._apps.items():
            model.sites[(app, slot)] = arm.SiteView(
                spec=APPS_BY_NAME[app], slot=slot, scm_host=info.scm_host,
                instances=info.instance_names, basic_user=info.basic_user,
                basic_password=info.basic_password, ssh_enabled=APPS_BY_NAME[app].ssh_enabled)
        model.on_ssh = lambda view: self._update(view.spec.name, view.slot, ssh_disabled=not view.ssh_enabled)
        forbidden = [a for a in APPS if not a.scm]
        for spec in forbidden:     # ARM answers 403 before looking at these
            model.sites[(spec.name, None)] = arm.SiteView(spec, None, "127.0.0.1:0", [],
                                                          f"${spec.name}", "")
        self._write_summary_files()

    def _make_certs(self):
        from . import pki
        certs = os.path.join(self.workdir, "certs")
        self._ca = pki.make_ca(certs)
        self._other_ca = pki.make_untrusted_ca(certs)
        self.ca_file = str(self._ca.cert_path)
        self.untrusted_ca_file = str(self._other_ca.cert_path)
        crt, key = self._ca.issue(certs, "arm")
        self._arm_cert, self._arm_key = str(crt), str(key)

    def _site_cert(self, spec: catalogue.AppSpec, site: str):
        certs = os.path.join(self.workdir, "certs")
        if spec.host_suffix:       # the name ARM gives, only: a client must verify that name
            crt, key = self._ca.issue(certs, f"scm-{site}", dns_names=[catalogue.scm_host_name(spec, site)],
                                      ip_addresses=[])
        elif spec.cert == "untrusted":
            crt, key = self._other_ca.issue(certs, f"scm-{site}")
        elif spec.cert == "wronghost":
            crt, key = self._ca.issue_wrong_host(certs, f"scm-{site}", WRONG_HOST)
        elif spec.private_endpoint:
            names = [catalogue.scm_host_name(spec, site), "localhost"]
            crt, key = self._ca.issue(certs, f"scm-{site}", dns_names=names)
        else:
            crt, key = self._ca.issue(certs, f"scm-{site}")
        return str(crt), str(key)

    def _start_containers(self) -> dict:
        """Start every container (sandbox/containers.py): each instance of a running Linux app,
        with its sshd as init where it has one, and each Linux site's Kudu; and what serves each
        instance's other container ports. Returns site -> (spec, slot, [InstanceInfo])."""
        reason = sshd.sshd_unavailable_reason()
        if self._want_sshd is False:
            reason = "sshd disabled (Sandbox(sshd=False))"
        self.sshd_available = reason is None
        self.sshd_unavailable_reason = reason
        self.containers_unavailable_reason = containers.unavailable_reason()
        shadow = os.path.join(self.workdir, "instances", "shadow")
        if self.sshd_available:
            sshd.write_shadow(shadow)
        elif self._want_sshd:
            raise RuntimeError(f"Sandbox(sshd=True) but {reason}")

        plan = {}      # site -> list of (instance name, {port: serve kind})
        for spec in APPS:
            if not spec.scm:
                continue
            for slot in (None,) + spec.slots:
                site = catalogue.site_name(spec.name, slot)
                plan[site] = (spec, slot, catalogue.instance_names(spec.name, spec.instances, slot))
        # every container at once (each waits only for its own readiness), sshds among them
        pending = []
        for site, (spec, slot, names) in plan.items():
            if not spec.linux or self.containers_unavailable_reason:
                continue
            if spec.state != "Stopped":
                for name in names:
                    if catalogue.SERVE_SHARED_SSHD in spec.serves.values():
                        continue        # the other app's container serves it
                    motd = (f"\nApp Service sandbox: instance {name} of {site}"
                            f" (not a real container; loopback only)\n\n")
                    if catalogue.SERVE_SSHD in spec.serves.values() and self.sshd_available:
                        inst = sshd.SshdInstance(name, self.workdir, self._shadow_of(spec, shadow), motd,
                                                 spec.sshd_config)
                        self._sshds[name] = inst
                    else:
                        inst = self._idle_container(name, motd)
                    inst.spawn()
                    self._containers[name] = inst
                    pending.append(inst)
                    for sidecar in spec.sidecars:
                        box = self._idle_container(catalogue.sidecar_name(name, sidecar.name),
                                                   f"\nApp Service sandbox: sidecar {sidecar.name} of {name}\n\n")
                        box.spawn()
                        self._sidecars[(name, sidecar.name)] = box
                        pending.append(box)
            kudu = self._idle_container(catalogue.kudu_name(site),
                                        f"\nApp Service sandbox: the Kudu container of {site}\n\n")
            kudu.spawn()
            self._kudus[site] = kudu
            pending.append(kudu)
        for inst in pending:
            if not inst.wait_ready():
                inst.stop()
                inst.start()       # retries (an sshd with a fresh port)
        result = {}
        for site, (spec, slot, names) in plan.items():
            infos = []
            for name in names:
                ports, has_sshd = {}, False
                for cport, kind in spec.serves.items():
                    if kind == catalogue.SERVE_SSHD and name in self._sshds:
                        ports[cport], has_sshd = self._sshds[name].port, True
                    elif kind == catalogue.SERVE_SHARED_SSHD:
                        other = catalogue.instance_names(spec.shared_sshd_of, 1)[0]
                        if other in self._containers:
                            self._containers[name] = self._containers[other]
                        if other in self._sshds:
                            ports[cport], has_sshd = self._sshds[other].port, True
                        else:
                            ports[cport] = self._dead_port()
                    elif kind == catalogue.SERVE_DEBUGGER:
                        dbg = sshd.Debugger(name)
                        self._aux.append(dbg)
                        ports[cport] = dbg.port
                    else:
                        ports[cport] = self._dead_port()
                infos.append(InstanceInfo(name, ports, has_sshd))
            result[site] = (spec, slot, infos)
        self._site_containers = {
            name: {c.name: {"main": c.is_main, "state": c.state,
                            "pid": getattr(self._sidecars.get((name, c.name)), "init_pid", None)}
                   for c in spec.containers}
            for spec, _, names in plan.values() if spec.containers for name in names}
        self._write_containers_map()
        return result

    def _idle_container(self, name: str, motd: str) -> containers.Container:
        """A container without sshd; its motd in the workdir's directory of that name."""
        directory = os.path.join(self.workdir, "instances", name)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        motd_path = os.path.join(directory, "motd")
        with open(motd_path, "w") as f:
            f.write(motd)
        return containers.Container(name, self.workdir, motd=motd_path)

    def _shadow_of(self, spec, default: str) -> str:
        """The shadow file of the app's containers: root's password is `Docker!` unless the app's
        spec says otherwise (one private file per such app)."""
        if spec.root_password is None:
            return default
        path = os.path.join(self.workdir, "instances", f"shadow-{spec.name}")
        if not os.path.exists(path):
            sshd.write_shadow(path, spec.root_password)
        return path

    def _dead_port(self) -> int:
        d = sshd.DeadPort()
        self._aux.append(d)
        return d.port

    def _start_webssh(self):
        """The browser SSH service that the SCM sites' /webssh/ proxies to (sandbox/webssh/);
        its port and token go into the SCM server's config, so it starts first."""
        from .webssh import WebsshService
        self.webssh = WebsshService(log_path=os.path.join(self.workdir, "logs", "webssh.log"))
        self.webssh.start()

    def _start_exec(self):
        """The exec channel's service that the SCM sites' /exec/ proxies to
        (sandbox/exec_service/); it finds the containers by the map _start_containers wrote."""
        from .exec_service import ExecService
        self.exec = ExecService(os.path.join(self.workdir, containers.MAP_FILE),
                                log_path=os.path.join(self.workdir, "logs", "exec.log"))
        self.exec.start()

    def _start_scm(self, instances: dict):
        from . import scm_process
        now = time.time()
        self.started_at = now
        sites = []
        creds = {}
        for site, (spec, slot, infos) in instances.items():
            cert, key = self._site_cert(spec, site)
            user, password = f"${site}", secrets.token_urlsafe(32)
            creds[site] = (user, password)
            held = self._starting_seconds is not None and spec.starting_seconds
            starting = self._starting_seconds if held else spec.starting_seconds
            sites.append({
                "name": site, "cert": cert, "key": key,
                "basic": [user, password] if spec.basic_allowed else None,
                "bearer": [self.bearer_token],
                "state": spec.scm_state,
                "starting_until": now + starting if starting else 0,
                "default_port": spec.default_port,
                "instances": [{"name": i.name, "ports": {str(k): v for k, v in i.ports.items()}}
                              for i in infos],
                "fault": None,
                "exec_refusal": _exec_refusal(spec.exec_refusal),
                "ip_forbidden": spec.ip_forbidden,
                "bearer_forbidden": not spec.publish_rights,
                "ssh_disabled": not spec.ssh_enabled,
                "sitecontainers": _site_containers(spec, infos[0].name) if spec.containers else None,
            })
            self._scm_sites[site] = sites[-1]
        self.scm = scm_process.ScmServer(
            self.workdir, sites, keepalive_seconds=self._keepalive[0],
            keepalive_kind=self._keepalive[1],
            log_path=os.path.join(self.workdir, "logs", "scm-server.log"),
            webssh_port=self.webssh.port, webssh_token=self.webssh.token,
            exec_port=self.exec.port, exec_token=self.exec.token)
        self.scm.start()
        for site, (spec, slot, infos) in instances.items():
            port = self.scm.port(site)
            user, password = creds[site]
            host = f"{catalogue.scm_host_name(spec, site)}:{port}"
            self._apps[(spec.name, slot)] = AppInfo(
                name=spec.name, slot=slot, site=site, scm_host=host,
                scm_url=f"https://{host}", basic_user=user, basic_password=password,
                basic_allowed=spec.basic_allowed, instances=tuple(infos),
                default_port=spec.default_port, linux=spec.linux, state=spec.state,
                remote_debugging=spec.remote_debugging, cert=spec.cert, what=spec.what,
                scm_address=f"127.0.0.1:{port}")

    def stop(self):
        """Stop everything this sandbox started; idempotent, safe after a failed start."""
        with self._lock:
            if self._stopped or not self._started:
                self._stopped = True
                return
            self._stopped = True
        errors = []
        for step in ([lambda: self.scm and self.scm.stop(),
                      lambda: self.webssh and self.webssh.stop(),
                      lambda: self.exec and self.exec.stop()]
                     + [c.stop for c in set(self._containers.values())]
                     + [c.stop for c in self._kudus.values()]
                     + [c.stop for c in self._sidecars.values()]
                     + [a.stop for a in self._aux]
                     + [lambda: self.arm and self.arm.stop()]):
            try:
                step()
            except Exception as e:      # keep stopping the rest
                errors.append(e)
        _live_sandboxes.discard(self)
        if self._own_workdir and not errors and not self._keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            raise errors[0]

    @property
    def running(self) -> bool:
        return self._started and not self._stopped

    def pids(self) -> list:
        """Every process the sandbox runs now (scm-server, the web SSH and exec services and
        their sessions, the containers: unshare, init, sshd, sessions)."""
        out = []
        if self.scm is not None and getattr(self.scm, "pid", None):
            out += procs.descendants(self.scm.pid)
        for service in (self.webssh, self.exec):
            if service is not None:
                out += service.pids()
        for c in (list(set(self._containers.values())) + list(self._kudus.values())
                  + list(self._sidecars.values())):
            out += c.pids()
        return out

    # -- look-ups -------------------------------------------------------------------------
    @property
    def arm_url(self) -> str:
        return self.arm.base_url

    @property
    def login_url(self) -> str:
        return self.arm.base_url

    @property
    def extension_dir(self) -> str:
        return os.path.join(self.workdir, "extensions")

    @property
    def extension_index_url(self) -> str:
        return f"{self.arm.base_url}extensions/index.json"

    def extension_url(self, filename: str) -> str:
        return f"{self.arm.base_url}extensions/{filename}"

    def publish_extension(self, wheel: str | None = None, log=None) -> str:
        """Fill the extension index (`az extension add --name webapp` against the sandbox's
        AZURE_EXTENSION_INDEX_URL): copy `wheel`, or build one from this source tree (with the
        native engine; without it, the portable engine, when the native build fails), into
        extension_dir and rewrite index.json. Returns the wheel's path in extension_dir."""
        import sys
        tools = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools")
        if tools not in sys.path:
            sys.path.insert(0, tools)
        import build_index
        if wheel is None:
            try:
                wheel = build_index.build_wheel(self.extension_dir)
            except SystemExit as e:         # build_index's way of failing
                if log:
                    log(f"building the native engine failed; the wheel carries the portable engine "
                        f"({str(e).splitlines()[0]})")
                wheel = build_index.build_wheel(self.extension_dir, native=False)
        elif os.path.dirname(os.path.abspath(wheel)) != self.extension_dir:
            wheel = shutil.copy(wheel, self.extension_dir)
        build_index.write_index(self.extension_dir, base_url=self.extension_url(""))
        return os.path.join(self.extension_dir, os.path.basename(wheel))

    @property
    def app_names(self) -> list:
        return [a.name for a in APPS]

    def app(self, name: str, slot: str | None = None) -> AppInfo:
        try:
            return self._apps[(name, slot)]
        except KeyError:
            raise KeyError(f"no sandbox app {name!r}" + (f" slot {slot!r}" if slot else "")
                           + f"; apps: {', '.join(self.app_names)}") from None

    def apps(self) -> list:
        return list(self._apps.values())

    def site_id(self, name: str, slot: str | None = None) -> str:
        sid = (f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
               f"/providers/Microsoft.Web/sites/{name}")
        return f"{sid}/slots/{slot}" if slot else sid

    def hosts_entries(self) -> str:
        """/etc/hosts lines that resolve the host names of the apps in other clouds (gov-app's
        <site>.scm.azurewebsites.us) to loopback: for a private hosts file (tests bind-mount one
        over /etc/hosts in a mount namespace), never for the machine's own."""
        lines = []
        for spec in APPS:
            if spec.host_suffix and spec.scm:
                for slot in (None,) + spec.slots:
                    site = catalogue.site_name(spec.name, slot)
                    lines.append(f"127.0.0.1 {catalogue.scm_host_name(spec, site)} "
                                 f"{catalogue.default_host_name(spec, site)}")
        return "".join(line + "\n" for line in lines)

    def sshd_instance(self, instance: str):
        return self._sshds.get(instance)

    # -- faults and states (rewrite the SCM config + SIGHUP) ------------------------------
    def _update(self, name: str, slot: str | None, **fields):
        site = self.app(name, slot).site
        self._scm_sites[site].update(fields)
        self.scm.update_site(site, **fields)

    def set_fault(self, name: str, fault: dict | None, slot: str | None = None):
        """fault: None, {"refuse": 401|403|502}, {"drop_after_bytes": N}, {"stall_after_bytes": N}
        (the tunnel's), or {"refuse_exec": STATUS[, "message": TEXT]}: /exec/* answers STATUS
        (400-599) with {"Message": TEXT}. Setting one clears the other kind; None clears both
        (an app's own exec refusal, noexec-app's, stays)."""
        if fault is not None and "refuse_exec" in fault:
            status, message = fault["refuse_exec"], fault.get("message", EXEC_FAULT_MESSAGE)
            if (set(fault) - {"refuse_exec", "message"} or type(status) is not int
                    or not 400 <= status <= 599 or not isinstance(message, str)):
                raise ValueError(f"bad fault {fault!r}: refuse_exec takes a status 400-599 and an "
                                 "optional message")
            self._update(name, slot, fault=None, exec_refusal=_exec_refusal((status, message)))
            return
        if fault is not None:
            if len(fault) != 1 or next(iter(fault)) not in ("refuse", "drop_after_bytes", "stall_after_bytes"):
                raise ValueError(f"unknown fault {fault!r}")
        spec = APPS_BY_NAME[self.app(name, slot).name]
        self._update(name, slot, fault=fault, exec_refusal=_exec_refusal(spec.exec_refusal))

    def set_ssh(self, name: str, enabled: bool, slot: str | None = None):
        """The app's SSH setting (ARM's properties.sshEnabled), as `az resource update` sets it:
        its SCM site refuses SSH while it is off."""
        self.arm.model.sites[(name, slot)].ssh_enabled = enabled
        self._update(name, slot, ssh_disabled=not enabled)

    def hold_starting(self, name: str, seconds: float, slot: str | None = None):
        """GetStatus reads STARTING for the next `seconds` seconds."""
        self._update(name, slot, starting_until=time.time() + seconds)

    def restart_app(self, name: str, seconds: float, slot: str | None = None):
        """Restart the app (or slot) as `az webapp restart` does, over `seconds` from now; returns at
        once. Every instance's container goes away (its sshd and every session in it end) and comes
        back with the same name, host keys and ports, its programs running again after `seconds`.
        Meanwhile the SCM site answers as Azure's front end does while the site restarts: every
        request gets 503 (an HTML page) for the first third, then GetStatus reads STARTING (with
        canReachPort false, nothing listening yet) until the containers are back (PROTOCOL.md
        section 2, "Restarts": inferred)."""
        info = self.app(name, slot)
        if not seconds > 0:
            raise ValueError(f"restart: seconds must be positive, not {seconds!r}")
        now = time.time()
        self._update(name, slot, unavailable_until=now + seconds / 3, starting_until=now + seconds)
        for instance in info.instances:
            container = self._containers.get(instance.name)
            if container is not None and container.name == instance.name:  # not another app's it shares
                container.restart(seconds - (time.time() - now))
        if self._containers:
            self._write_containers_map()

    def _write_containers_map(self):
        containers.write_map(self.workdir, {n: c.init_pid for n, c in self._containers.items()},
                             {site: c.init_pid for site, c in self._kudus.items()},
                             namespaces=not self.containers_unavailable_reason,
                             site_containers=self._site_containers)

    def set_state(self, name: str, state: str, slot: str | None = None):
        """SCM state: STARTED, STOPPED or STARTING (ARM's properties.state is unchanged)."""
        if state not in ("STARTED", "STOPPED", "STARTING"):
            raise ValueError(state)
        self._update(name, slot, state=state)

    def set_basic(self, name: str, allowed: bool, slot: str | None = None):
        """Accept (or refuse) Basic auth at the SCM site; ARM's policy reads the same."""
        info = self.app(name, slot)
        self._update(name, slot, basic=[info.basic_user, info.basic_password] if allowed else None)

    @contextlib.contextmanager
    def sshd_down(self, name: str, slot: str | None = None, instance: str | None = None):
        """Within the block nothing answers on the app's container port 2222 on any instance (or
        on the one named), as when its sshd has died: GetStatus says canReachPort false, and a
        tunnel's WebSocket is accepted and then closed at once. The sshds themselves keep running
        for the other tests."""
        site = self.app(name, slot).site
        original = [dict(i, ports=dict(i["ports"])) for i in self._scm_sites[site]["instances"]]
        dead = self._dead_port()
        self._update(name, slot, instances=[dict(i, ports={**i["ports"], str(catalogue.SSH_PORT): dead})
                                            if instance in (None, i["name"]) else i for i in original])
        try:
            yield
        finally:
            self._update(name, slot, instances=original)

    @contextlib.contextmanager
    def short_lived_tokens(self, lifetime: int, scm_seconds: float):
        """Within the block, Entra tokens expire as they do in Azure, only faster: every token
        request gets a new token that says it lives `lifetime` seconds (MSAL renews a token once
        less than 300 s of it remain), and the SCM sites accept each such token for only
        `scm_seconds` after it was issued. The session's long-lived token stays valid throughout."""
        model = self.arm.model
        accepted: dict = {}                 # token -> until when the SCM sites take it
        lock = threading.Lock()
        pushed: list = [None]
        stopping = threading.Event()

        def push():
            with lock:
                now = time.time()
                live = sorted(t for t, until in accepted.items() if until > now)
                if live == pushed[0]:
                    return
                pushed[0] = live
                self.scm.update_all_sites(bearer=[self.bearer_token, *live])

        def on_issue(token):
            with lock:
                accepted[token] = time.time() + scm_seconds
            push()

        def expire():
            while not stopping.wait(0.25):
                push()

        model.on_issue, model.token_lifetime = on_issue, lifetime
        expiry = threading.Thread(target=expire, name="sandbox-token-expiry", daemon=True)
        expiry.start()
        try:
            yield
        finally:
            model.token_lifetime = model.on_issue = None
            stopping.set()
            expiry.join()
            with lock:
                accepted.clear()
            push()

    # -- az -------------------------------------------------------------------------------
    def az_env(self, config_dir: str, base: dict | None = None) -> dict:
        """Environment for running the real az against this sandbox with AZURE_CONFIG_DIR."""
        env = dict(os.environ if base is None else base)
        for k in ("CURL_CA_BUNDLE", "SSL_CERT_FILE", "AZURE_CLI_DISABLE_CONNECTION_VERIFICATION",
                  "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                  "all_proxy", "AZURE_EXTENSION_DIR", "AZURE_ACCESS_TOKEN_FILE"):
            env.pop(k, None)
        env.update({
            "AZURE_CONFIG_DIR": os.path.abspath(config_dir),
            "REQUESTS_CA_BUNDLE": self.ca_file,
            "AZURE_CORE_COLLECT_TELEMETRY": "false",
            "AZURE_CORE_INSTANCE_DISCOVERY": "false",
            "AZURE_CORE_SURVEY_MESSAGE": "false",
            "AZURE_CORE_NO_COLOR": "true",
            "AZURE_EXTENSION_INDEX_URL": self.extension_index_url,
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        })
        return env

    def register_commands(self) -> list:
        """argv lists (after `az`) that register and select the sandbox cloud, then sign in."""
        base = self.arm.base_url
        return [
            ["cloud", "register", "--name", self.cloud_name,
             "--endpoint-resource-manager", base,
             "--endpoint-active-directory", base.rstrip("/"),
             "--endpoint-active-directory-resource-id", arm.ARM_RESOURCE,
             "--endpoint-active-directory-graph-resource-id", "https://graph.windows.net/"],
            ["cloud", "set", "--name", self.cloud_name],
            ["login", "--service-principal", "-u", self.sp_id, "-p", self.sp_secret,
             "--tenant", self.tenant, "--output", "none"],
        ]

    def az_login(self, config_dir: str, az: str | None = None, timeout: float = 120):
        """Seed config_dir, register + select the cloud, sign in as the service principal."""
        az = az or default_az()
        os.makedirs(config_dir, exist_ok=True)
        seed_az_config(config_dir)
        env = self.az_env(config_dir)
        for argv in self.register_commands():
            r = subprocess.run([az] + argv, env=env, capture_output=True, text=True,
                               timeout=timeout, stdin=subprocess.DEVNULL)
            if r.returncode != 0:
                shown = [("***" if a == self.sp_secret else a) for a in argv]
                raise RuntimeError(f"az {' '.join(shown)} failed ({r.returncode}):\n{r.stderr}")
        return env

    # -- human summary --------------------------------------------------------------------
    def summary(self, config_dir: str | None = None) -> str:
        config_dir = config_dir or os.path.join(self.workdir, "az")
        lines = [f"App Service sandbox in {self.workdir}",
                 f"  ARM + identity: {self.arm_url}   CA: {self.ca_file}",
                 f"  tenant {self.tenant}  subscription {self.subscription}",
                 f"  service principal {self.sp_id}  secret {self.sp_secret}",
                 f"  resource group {self.resource_group}",
                 f"  extension index: {self.extension_index_url} (files in {self.extension_dir})",
                 "  sshd: " + ("one real sshd per instance, root password 'Docker!'"
                               if self.sshd_available else f"NOT RUNNING: {self.sshd_unavailable_reason}"),
                 "  browser SSH: <SCM URL>/webssh/host[?instance=NAME] on every site"
                 + (f" (service 127.0.0.1:{self.webssh.port}, log logs/webssh.log)"
                    if self.webssh else ""),
                 "  exec channel (az webapp exec): wss://<SCM host>/exec/shell, <SCM URL>/exec/execute;"
                 + (" containers: hostname = instance name, Kudu's <site>-kudu"
                    if not self.containers_unavailable_reason
                    else f" on this host ({self.containers_unavailable_reason})"),
                 "", "Apps:"]
        for spec in APPS:
            if not spec.scm:
                lines.append(f"  {spec.name:<17} (no SCM site) {spec.what}")
                continue
            for slot in (None,) + spec.slots:
                info = self.app(spec.name, slot)
                label = f"{spec.name}/{slot}" if slot else spec.name
                inst = ", ".join(f"{i.name}" + (_ssh_where(i) if i.has_sshd else "")
                                 for i in info.instances)
                lines.append(f"  {label:<17} {info.scm_url}  {spec.what}")
                lines.append(f"  {'':<17} Basic {info.basic_user}:{info.basic_password}"
                             + ("" if info.basic_allowed else " (refused: Basic auth disabled)")
                             + f"; instances: {inst}")
        env = self.az_env(config_dir, base={})
        lines += ["", "Use it from a shell:"]
        lines += [f"  export {k}={_shq(v)}" for k, v in sorted(env.items())
                  if k.startswith(("AZURE_", "REQUESTS_"))]
        lines.append(f"  mkdir -p $AZURE_CONFIG_DIR && echo '{_version_check_json()}' "
                     f"> $AZURE_CONFIG_DIR/versionCheck.json")
        for argv in self.register_commands():
            lines.append("  az " + " ".join(_shq(a) for a in argv))
        lines.append(f"  az webapp show -g {self.resource_group} -n linux-app "
                     f"--query hostNameSslStates")
        lines.append("  az extension add --name webapp     # from the sandbox's extension index")
        workdir = _shq(self.workdir)
        lines += ["", "Faults and states, from another shell (or sb.set_fault(...) from Python):",
                  f"  python -m sandbox fault linux-app refuse=401 --workdir {workdir}"
                  "   # drop_after_bytes=N, stall_after_bytes=N, none",
                  f"  python -m sandbox state linux-app STOPPED --workdir {workdir}    # STARTED, STARTING",
                  f"  python -m sandbox starting starting-app 30 --workdir {workdir}",
                  f"  python -m sandbox restart restart-app 20 --workdir {workdir}     # back in 20 s",
                  f"  python -m sandbox basic linux-app off --workdir {workdir}        # on",
                  f"  python -m sandbox sshd linux-app down --workdir {workdir}        # up"]
        return "\n".join(lines)

    def _write_summary_files(self):
        info = {"arm_url": self.arm_url, "login_url": self.login_url, "ca_file": self.ca_file,
                "tenant": self.tenant, "subscription": self.subscription, "sp_id": self.sp_id,
                "sp_secret": self.sp_secret, "resource_group": self.resource_group,
                "bearer_token": self.bearer_token, "extension_index_url": self.extension_index_url,
                "sshd": self.sshd_available,
                "apps": {f"{a.name}/{a.slot}" if a.slot else a.name:
                         {"scm_url": a.scm_url, "basic_user": a.basic_user,
                          "basic_password": a.basic_password, "basic_allowed": a.basic_allowed,
                          "instances": [{"name": i.name, "ports": i.ports} for i in a.instances]}
                         for a in self._apps.values()}}
        path = os.path.join(self.workdir, "sandbox.json")
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(info, f, indent=2)
        os.replace(path + ".tmp", path)


EXEC_FAULT_MESSAGE = "The exec channel refused the request (a sandbox fault)."


def _exec_refusal(refusal) -> dict | None:
    """Contract 2's exec_refusal for a (status, Message) pair, or None."""
    if refusal is None:
        return None
    status, message = refusal
    return {"status": status, "body": json.dumps({"Message": message})}


def _site_containers(spec, instance: str) -> dict:
    """Contract 2's sitecontainers: what the SCM site's /api/sitecontainers answers, the list under
    "" and each container under its name (docs/PROTOCOL.md section 9: the shape is the sandbox's)."""
    def one(c):
        return {"name": c.name, "image": c.image, "isMain": c.is_main, "targetPort": c.target_port,
                "state": c.state, "instance": instance,
                "message": "" if c.state == "Running" else "The container exited with code 1; restarting."}
    bodies = {c.name: json.dumps(one(c)) for c in spec.containers}
    bodies[""] = json.dumps([one(c) for c in spec.containers])
    return bodies


def _ssh_where(inst: InstanceInfo) -> str:
    if inst.ssh_port:
        return f" ssh 127.0.0.1:{inst.ssh_port}"
    cport, port = next(iter(inst.ports.items()))
    return f" ssh 127.0.0.1:{port} (container port {cport})"


def default_az() -> str:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    venv_az = os.path.join(here, ".venv", "bin", "az")
    return venv_az if os.path.exists(venv_az) else (shutil.which("az") or "az")


def _version_check_json() -> str:
    try:
        from importlib.metadata import version
        core = version("azure-cli-core")
    except Exception:           # not running in az's environment: the version we test with
        core = AZ_CORE_VERSION
    return json.dumps({"versions": {"core": {"local": core}}, "update_time": ""})


def seed_az_config(config_dir: str):
    """versionCheck.json so az skips its first-run version check (no network)."""
    path = os.path.join(config_dir, "versionCheck.json")
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(_version_check_json())


def _shq(s: str) -> str:
    import shlex
    return shlex.quote(s)


_live_sandboxes: "weakref.WeakSet[Sandbox]" = weakref.WeakSet()


@atexit.register
def _stop_live_sandboxes():
    for sb in list(_live_sandboxes):
        try:
            sb.stop()
        except Exception:
            pass
