"""The sandbox's exec channel (issue 21): `/exec/shell` and `/exec/execute` of every Linux SCM site,
spoken to directly over TLS (the sandbox CA, verification on) with the tests' WebSocket client.

What Azure's own client makes of the same server: tests/test_reference_az_webapp_exec.py.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import ssl
import time

import pytest

from sandbox import Sandbox, catalogue, containers, procs
from tests.fixtures_sandbox import scm_call
from tests.wsclient import OP_CLOSE, ConnectionClosedError, HandshakeError, WsClient, http_request

ACCEPTED = {"Message": "Command accepted. Starting execution."}
OUTPUT = re.compile(rb"\x01(.*?)\x02", re.S)


class Shell:
    """One /exec/shell session: keystrokes in, the PTY's output collected."""

    def __init__(self, ws: WsClient):
        self.ws = ws
        self.buf = bytearray()

    @classmethod
    def open(cls, sb, app, slot=None, instance=None, query="", auth=None, timeout=30.0,
             mask_key=None) -> "Shell":
        info = sb.app(app, slot)
        host, port = info.scm_host.rsplit(":", 1)
        headers = {"Authorization": auth or info.basic_authorization}
        if instance:
            headers["Cookie"] = f"ARRAffinity={instance}"
        ctx = ssl.create_default_context(cafile=sb.ca_file)
        return cls(WsClient.connect(host, int(port), "/exec/shell" + query, headers=headers,
                                    ssl_context=ctx, timeout=timeout, mask_key=mask_key))

    def send(self, text: str):
        self.ws.send_binary(text.encode())

    def resize(self, width: int, height: int):
        self.ws.send_text(json.dumps({"width": width, "height": height}))

    def until(self, marker: bytes) -> bytes:
        """Everything up to and including marker (the rest stays buffered)."""
        start = 0
        while (found := self.buf.find(marker, start)) < 0:
            start = max(0, len(self.buf) - len(marker) + 1)       # only what is new, on
            frame = self.ws.recv_data()
            if frame.opcode == OP_CLOSE:
                raise AssertionError(f"closed ({frame.close_code}) before {marker!r}: "
                                     f"{bytes(self.buf[-300:])!r}")
            self.buf += frame.payload
        end = found + len(marker)
        out = bytes(self.buf[:end])
        del self.buf[:end]
        return out

    def run(self, command: str) -> str:
        """The output of command (its stdout, as one string), framed by bytes that only the
        output has: the echo of the typed line shows printf's escapes, not the bytes."""
        self.send(f"printf '\\001%s\\002\\n' \"$({command})\"\r")
        return OUTPUT.search(self.until(b"\x02")).group(1).decode()

    def to_close(self):
        """(everything until the close frame, its code)."""
        while True:
            frame = self.ws.recv_data()
            if frame.opcode == OP_CLOSE:
                out = bytes(self.buf)
                self.buf.clear()
                return out, frame.close_code
            self.buf += frame.payload

    def close(self):
        self.ws.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.ws.abort()


def refused(sb, app, query="", auth=None, slot=None) -> HandshakeError:
    with pytest.raises(HandshakeError) as e:
        Shell.open(sb, app, slot=slot, query=query, auth=auth).close()
    return e.value


def execute(sb, app, body, instance=None, auth=None, raw: bytes | None = None):
    """POST /exec/execute; (status, parsed JSON body)."""
    info = sb.app(app)
    host, port = info.scm_host.rsplit(":", 1)
    data = raw if raw is not None else json.dumps(body).encode()
    headers = {"Authorization": auth or info.basic_authorization, "Content-Type": "application/json",
               "Content-Length": str(len(data))}
    if instance:
        headers["Cookie"] = f"ARRAffinity={instance}"
    ctx = ssl.create_default_context(cafile=sb.ca_file)
    status, _, answer = _post(host, int(port), "/exec/execute", headers, data, ctx)
    return status, json.loads(answer)


def _post(host, port, path, headers, data, ctx):
    import http.client
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=30)
    try:
        conn.request("POST", path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def in_container(sb, instance: str, path: str) -> str:
    """The host path of a file in an instance's container (its init's view of the file system)."""
    with open(os.path.join(sb.workdir, containers.MAP_FILE)) as f:
        pid = json.load(f)["instances"][instance]
    return f"/proc/{pid}/root{path}"


def wait_for(path: str, timeout: float = 10.0) -> bool:
    return procs.wait_until(lambda: os.path.exists(path), timeout)


# --------------------------------------------------------------------------- shells
@pytest.mark.root
def test_each_instance_has_its_own_container_with_sshd_or_without(sandbox):
    cases = [("exec-app", None, None, "exec-app-i0"), ("exec-app", None, "exec-app-i1", "exec-app-i1"),
             ("exec-app", None, "exec-app-i9", "exec-app-i0"),        # unknown: the first
             ("scaled-app", None, "scaled-app-i1", "scaled-app-i1"), ("nossh-app", None, None, "nossh-app-i0"),
             ("port22-app", None, None, "port22-app-i0"), ("linux-app", None, None, "linux-app-i0"),
             ("slot-app", "staging", None, "slot-app-staging-i0")]
    for app, slot, instance, hostname in cases:
        # sh: bash would read the host's /root/.bashrc each time (slow); it has a test of its own
        with Shell.open(sandbox, app, slot=slot, instance=instance, query="?shell=/bin/sh") as sh:
            assert sh.run("hostname") == hostname, (app, instance)
            assert sh.run("id -u") == "0"


@pytest.mark.root
def test_an_sshd_instance_shares_its_container_with_its_ssh_sessions(sandbox_sshd, ssh_client):
    name = f"/tmp/exec-{os.getpid()}"
    with Shell.open(sandbox_sshd, "linux-app") as sh:
        sh.run(f"echo from-exec > {name}")
        port = sandbox_sshd.app("linux-app").instances[0].ssh_port
        assert ssh_client.ssh(port, f"cat {name}; rm {name}").stdout.strip() == "from-exec"


@pytest.mark.root
def test_containers_have_a_private_tmp_and_a_full_disk(sandbox):
    name = f"/tmp/private-{os.getpid()}"
    with Shell.open(sandbox, "exec-app", instance="exec-app-i0") as sh:
        sh.run(f"echo i0 > {name}")
        assert not os.path.exists(name)                        # not the host's /tmp
        with Shell.open(sandbox, "exec-app", instance="exec-app-i1") as other:
            assert other.run(f"cat {name} 2>&1 || echo missing").endswith("missing")
        with Shell.open(sandbox, "exec-app", query="?target=kudu") as kudu:
            assert kudu.run(f"test -e {name} && echo there || echo missing") == "missing"
        assert sh.run(f"cat {name}; rm {name}") == "i0"
        full = sh.run("head -c 65536 /dev/zero > /mnt/full/a && echo fits; "
                      "head -c 1 /dev/zero 2>&1 >> /mnt/full/a; echo status=$?; rm /mnt/full/a")
        assert "fits" in full and "No space left on device" in full and "status=1" in full


@pytest.mark.root
def test_kudu_has_a_container_of_its_own(sandbox):
    with Shell.open(sandbox, "exec-app", query="?target=kudu") as sh:
        assert sh.run("hostname") == catalogue.kudu_name("exec-app") == "exec-app-kudu"
    with Shell.open(sandbox, "slot-app", slot="staging", query="?target=KUDU&shell=/bin/sh") as sh:
        assert sh.run("hostname") == "slot-app-staging-kudu"


def test_the_terminal_follows_resizes(sandbox):
    with Shell.open(sandbox, "exec-app") as sh:
        assert sh.run("stty size") == "24 80"                  # before the first size
        sh.resize(132, 43)
        assert sh.run("stty size") == "43 132"
        sh.resize(0, 10)                                       # not a size: ignored
        sh.ws.send_text("printf '\\001%s\\002\\n' as-text\r")     # other text is keystrokes
        assert OUTPUT.search(sh.until(b"\x02")).group(1) == b"as-text"
        assert sh.run("stty size") == "43 132"
        assert sh.run("echo $TERM") == "xterm-256color"


def test_the_shell_is_the_one_asked_for(sandbox):
    with Shell.open(sandbox, "exec-app", query="?shell=/bin/sh") as sh:
        assert sh.run("readlink /proc/$$/exe") == os.path.realpath("/bin/sh")
    with Shell.open(sandbox, "exec-app") as sh:
        assert sh.run("readlink /proc/$$/exe") == os.path.realpath("/bin/bash")


@pytest.mark.parametrize("query,status,words", [
    ("?shell=/bin/zsh-not-installed", 400, "'/bin/zsh-not-installed' does not exist"),
    ("?shell=/etc", 400, "'/etc' does not exist"),
    ("?shell=sh", 400, "must be an absolute path"),
    ("?target=sidecar", 400, "Unknown target 'sidecar'"),
])
def test_a_bad_shell_or_target_is_refused_with_a_message(sandbox, query, status, words):
    e = refused(sandbox, "exec-app", query)
    assert e.status == status and words in json.loads(e.body)["Message"]


def test_the_output_of_an_exiting_shell_arrives_before_the_close(sandbox):
    with Shell.open(sandbox, "exec-app", query="?shell=/bin/sh") as sh:
        sh.send("stty -echo; echo ST''ART; seq 1 200000; exit 3\n")
        sh.until(b"START\r\n")
        out, code = sh.to_close()
    assert code == 1000
    assert out.replace(b"\r\n", b"\n") == b"".join(b"%d\n" % i for i in range(1, 200001))
    with pytest.raises((ConnectionClosedError, OSError)):     # and the connection ends
        sh.ws.recv_frame()


def test_a_job_left_behind_does_not_keep_the_session_open(sandbox):
    for job in ("sleep 300", "yes"):        # silent, or writing without end
        with Shell.open(sandbox, "exec-app") as sh:
            sh.run("echo ready")
            sh.send(f"{job} & exit\r")
            assert sh.to_close()[1] == 1000, job


def test_a_flood_of_output_arrives_complete(sandbox):
    """100 MiB of zeros through base64: 139,810,134 "A" and "==", all of them, then the close."""
    with Shell.open(sandbox, "exec-app") as sh:
        sh.send("stty raw -echo; echo ST''ART; head -c 104857600 /dev/zero | base64 -w0; echo; exit\r")
        sh.until(b"START\n")
        started = time.monotonic()
        out, code = sh.to_close()
    seconds = time.monotonic() - started
    run = len(out) - len(out.lstrip(b"A"))
    assert run == 139810134 and out[run:run + 3] == b"==\n", (run, out[run:run + 80])
    assert code == 1000
    print(f"\n100 MiB as base64 out of the shell: {run / seconds / 1e6:.1f} MB/s of base64")


def test_a_64_mib_upload_in_raw_mode_is_byte_exact(sandbox):
    data = os.urandom(64 << 20)
    encoded = base64.b64encode(data)
    name = f"/tmp/upload-{os.getpid()}"
    with Shell.open(sandbox, "exec-app", mask_key=b"\0\0\0\0") as sh:
        sh.send(f"stty raw -echo; echo RE''ADY; head -c {len(encoded)} | base64 -d > {name}; "
                f"stty sane; sha256sum {name}; rm {name}\r")
        sh.until(b"READY\n")
        started = time.monotonic()
        for i in range(0, len(encoded), 256 * 1024):
            sh.ws.send_binary(encoded[i:i + 256 * 1024])
        digest = sh.until(f"  {name}".encode()).split()[-2].decode()
        seconds = time.monotonic() - started
        assert digest == hashlib.sha256(data).hexdigest()
        sh.send("echo $((6*7))\r")
        sh.until(b"42")
    print(f"\n64 MiB as base64 into the shell: {len(data) / seconds / 1e6:.1f} MB/s of payload")


def test_the_client_leaving_ends_the_shell(sandbox):
    sh = Shell.open(sandbox, "exec-app")
    sh.send("sleep 300 &\r")                                 # a job holding the terminal too
    sh.run("jobs")
    shells = [p for p in procs.descendants(sandbox.exec.pid) if p != sandbox.exec.pid]
    assert shells
    sh.close()
    assert procs.wait_until(lambda: not [p for p in shells if procs.alive(p)], 10), shells


# --------------------------------------------------------------------------- auth and refusals
def test_auth_is_the_sites_own(sandbox):
    for app, auth in (("exec-app", "Basic " + base64.b64encode(b"nobody:x").decode()),
                      ("exec-app", "Bearer not-a-token"),
                      ("bearer-app", sandbox.app("bearer-app").basic_authorization)):
        e = refused(sandbox, app, auth=auth)
        assert e.status == 401, app
        assert json.loads(e.body) == {"Message": "Authorization has been denied for this request."}
        assert e.headers["www-authenticate"] == 'Basic realm="site"'
    info = sandbox.app("exec-app")
    host, port = info.scm_host.rsplit(":", 1)
    with pytest.raises(HandshakeError) as e:                 # no credentials at all
        WsClient.connect(host, int(port), "/exec/shell",
                         ssl_context=ssl.create_default_context(cafile=sandbox.ca_file)).abort()
    assert e.value.status == 401
    with Shell.open(sandbox, "bearer-app", auth=f"Bearer {sandbox.bearer_token}") as sh:
        assert sh.run("echo $((6*7))") == "42"


def test_what_apps_that_cannot_exec_answer(sandbox):
    e = refused(sandbox, "noexec-app")
    assert (e.status, json.loads(e.body)) == (403, {"Message": catalogue.NOEXEC[1]})
    assert e.headers["content-type"] == "application/json; charset=utf-8"
    e = refused(sandbox, "windows-app")
    assert (e.status, json.loads(e.body)) == (404, {"Message": catalogue.WINDOWS_EXEC[1]})
    e = refused(sandbox, "stopped-app")
    assert e.status == 503 and "stopped" in json.loads(e.body)["Message"]
    assert execute(sandbox, "noexec-app", {"Command": "true"})[0] == 403
    # the tunnel of noexec-app still works
    app = sandbox.app("noexec-app")
    status, _, body = scm_call(app, "/AppServiceTunnel/Tunnel.ashx?GetStatus&GetStatusAPIVer=2",
                               app.basic_authorization, cafile=sandbox.ca_file)
    assert status == 200 and json.loads(body)["state"] == "STARTED"


def test_a_refuse_exec_fault_and_its_end(sandbox):
    sandbox.set_fault("exec-app", {"refuse_exec": 429, "message": "Too many sessions."})
    try:
        e = refused(sandbox, "exec-app")
        assert (e.status, json.loads(e.body)) == (429, {"Message": "Too many sessions."})
        sandbox.set_fault("exec-app", {"refuse_exec": 503})
        assert refused(sandbox, "exec-app").status == 503
        sandbox.set_fault("noexec-app", None)                # its own refusal stays
        assert refused(sandbox, "noexec-app").status == 403
        with pytest.raises(ValueError):
            sandbox.set_fault("exec-app", {"refuse_exec": 200})
    finally:
        sandbox.set_fault("exec-app", None)
    with Shell.open(sandbox, "exec-app") as sh:
        assert sh.run("echo ok") == "ok"


def test_a_state_set_to_stopped_refuses_and_started_serves_again(sandbox):
    sandbox.set_state("exec-app", "STOPPED")
    try:
        assert refused(sandbox, "exec-app").status == 503
    finally:
        sandbox.set_state("exec-app", "STARTED")
    with Shell.open(sandbox, "exec-app") as sh:
        assert sh.run("echo ok") == "ok"


@pytest.mark.root
def test_an_instance_without_a_running_container_is_503(sandbox):
    sandbox.set_state("stopped-app", "STARTED")             # the SCM lets it through; no container
    try:
        e = refused(sandbox, "stopped-app")
        assert e.status == 503
        assert json.loads(e.body)["Message"] == ("Cannot reach the container of instance stopped-app-i0: "
                                                 "it is not running.")
        with Shell.open(sandbox, "stopped-app", query="?target=kudu") as sh:     # Kudu runs
            assert sh.run("hostname") == "stopped-app-kudu"
    finally:
        sandbox.set_state("stopped-app", "STOPPED")


# --------------------------------------------------------------------------- /exec/execute
@pytest.mark.root
def test_execute_runs_detached_in_the_instances_container(sandbox):
    marker = f"/tmp/executed-{os.getpid()}"
    status, body = execute(sandbox, "exec-app", {"Command": "/bin/sh", "Args": [
        "-c", f"sleep 0.2; pwd > {marker}.tmp; hostname >> {marker}.tmp; mv {marker}.tmp {marker}"],
        "WorkingDirectory": "/usr/share"}, instance="exec-app-i1")
    assert (status, body) == (202, ACCEPTED)
    path = in_container(sandbox, "exec-app-i1", marker)
    assert wait_for(path), "the command did not run"
    with open(path) as f:
        assert f.read().split() == ["/usr/share", "exec-app-i1"]
    assert not os.path.exists(in_container(sandbox, "exec-app-i0", marker))
    # a command found on the container's PATH, no arguments, in root's home
    status, _ = execute(sandbox, "exec-app", {"Command": "touch", "Args": [marker + ".2"]},
                        instance="exec-app-i1")
    assert status == 202 and wait_for(in_container(sandbox, "exec-app-i1", marker + ".2"))
    os.unlink(path)
    os.unlink(in_container(sandbox, "exec-app-i1", marker + ".2"))


@pytest.mark.parametrize("body,raw,status,words", [
    (None, b"{not json", 400, "not valid JSON"),
    (None, b"\xff\xfe", 400, "not valid JSON"),
    ([1, 2], None, 400, "must be a JSON object"),
    ({"Args": ["x"]}, None, 400, "Command is required"),
    ({"Command": "  "}, None, 400, "Command is required"),
    ({"Command": "ls", "Args": "-l"}, None, 400, "Args must be a list of strings"),
    ({"Command": "ls", "Args": [1]}, None, 400, "Args must be a list of strings"),
    ({"Command": "ls", "WorkingDirectory": "home"}, None, 400, "WorkingDirectory must be an absolute path"),
    ({"Command": "ls", "WorkingDirectory": "/no/such/dir"}, None, 400, "'/no/such/dir' does not exist"),
    ({"Command": "no-such-command-here"}, None, 400, "'no-such-command-here' was not found"),
    ({"Command": "/etc/passwd"}, None, 400, "'/etc/passwd' was not found"),
])
def test_a_bad_execute_is_400_with_a_message(sandbox, body, raw, status, words):
    got, answer = execute(sandbox, "exec-app", body, raw=raw)
    assert got == status and words in answer["Message"], answer


def test_the_wrong_method_or_path_is_json_too(sandbox):
    info = sandbox.app("exec-app")
    host, port = info.scm_host.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=sandbox.ca_file)
    auth = {"Authorization": info.basic_authorization}
    status, headers, body = http_request(host, int(port), "GET", "/exec/execute", auth, ctx)
    assert status == 405 and headers["allow"] == "POST" and "GET" in json.loads(body)["Message"]
    status, _, body = http_request(host, int(port), "GET", "/exec/shell", auth, ctx)
    assert status == 400 and "WebSocket" in json.loads(body)["Message"]
    status, _, body = http_request(host, int(port), "GET", "/exec/other", auth, ctx)
    assert status == 404 and "'/exec/other'" in json.loads(body)["Message"]


# --------------------------------------------------------------------------- life cycle
@pytest.mark.root
def test_stopping_the_sandbox_ends_open_sessions(tmp_path):
    with Sandbox(str(tmp_path / "sb"), sshd=False) as sb:
        sh = Shell.open(sb, "exec-app", timeout=20)
        sh.run("echo up")
        pids = sb.pids()
        sb.stop()
        with pytest.raises((ConnectionClosedError, OSError, AssertionError)):
            sh.run("echo still there")
        sh.ws.abort()
    assert procs.wait_until(lambda: not [p for p in pids if procs.alive(p)], 10)


def test_without_namespaces_the_shell_runs_on_the_host(tmp_path):
    """What a non-root sandbox does (documented): no containers, the host as the current user."""
    from sandbox.exec_service import ExecService
    map_path = containers.write_map(str(tmp_path), {}, {}, namespaces=False)
    with ExecService(map_path, str(tmp_path / "exec.log")) as service:
        ws = WsClient.connect("127.0.0.1", service.port, "/exec/shell", headers={
            "X-Exec-Token": service.token, "X-Exec-Site": "any", "X-Exec-Instance": "any-i0"})
        with Shell(ws) as sh:
            assert sh.run("hostname") == os.uname().nodename
            assert sh.run("id -u") == str(os.getuid())
        status, _, body = http_request("127.0.0.1", service.port, "GET", "/exec/shell",
                                       {"X-Exec-Token": "wrong"})
        assert status == 403 and "proxy" in json.loads(body)["Message"]
