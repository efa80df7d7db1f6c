"""The sandbox's containers: a real sshd per instance (root), the debugger, the missing sshd."""
from __future__ import annotations

import os
import socket

import pytest

pytestmark = pytest.mark.root


def _sshd_instances(sb):
    seen = {}
    for app in sb.apps():
        for inst in app.instances:
            if inst.has_sshd and inst.name in sb._sshds:
                seen[inst.name] = inst.ssh_port
    return seen


def test_every_instance_has_its_own_sshd(sandbox_sshd, ssh_client):
    instances = _sshd_instances(sandbox_sshd)
    assert {"linux-app-i0", "starting-app-i0", "slot-app-i0", "slot-app-staging-i0",
            "scaled-app-i0", "scaled-app-i1", "bearer-app-i0", "debug-app-i0"} <= set(instances)
    assert len(set(instances.values())) == len(instances)
    for name, port in instances.items():
        r = ssh_client.ssh(port, "hostname; id -u")
        assert r.returncode == 0, (name, r.stderr)
        assert r.stdout.split() == [name, "0"]


def test_sshd_config_follows_the_seed(sandbox_sshd):
    inst = sandbox_sshd.sshd_instance("linux-app-i0")
    with open(os.path.join(inst.dir, "sshd_config")) as f:
        cfg = dict(line.split(None, 1) for line in f.read().splitlines()
                   if line and not line.startswith("#"))
    from sandbox.sshd import CHANGED_DIRECTIVES, SEED_CONFIG
    for line in SEED_CONFIG.splitlines():          # the rest of the seed, verbatim
        key, value = line.split(None, 1)
        if key not in CHANGED_DIRECTIVES:
            assert cfg[key].strip() == value, key
    assert cfg["Ciphers"].strip() == \
        "aes128-cbc,3des-cbc,aes256-cbc,aes128-ctr,aes192-ctr,aes256-ctr"
    assert cfg["MACs"].strip() == "hmac-sha1,hmac-sha1-96"
    assert cfg["PermitRootLogin"].strip() == "yes"
    assert cfg["PasswordAuthentication"].strip() == "yes"
    assert cfg["ListenAddress"].strip() == "127.0.0.1"
    assert cfg["Subsystem"].strip() == "sftp internal-sftp"


def test_motd_wrong_password_and_cbc_cipher(sandbox_sshd, ssh_client, tmp_path):
    port = sandbox_sshd.app("scaled-app").instances[1].ssh_port
    r = ssh_client.ssh(port, "cat /etc/motd")
    assert "instance scaled-app-i1" in r.stdout
    # the portal's browser shell needs a CBC cipher with hmac-sha1: still offered
    import subprocess
    r = subprocess.run(["ssh", "-p", str(port), *ssh_client.OPTS, "-c", "aes128-cbc",
                        "-m", "hmac-sha1", "root@127.0.0.1", "echo cbc-ok"],
                       env=ssh_client.env, capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.stdout.strip() == "cbc-ok", r.stderr
    from tests.fixtures_sandbox import SshClient
    wrong = SshClient(str(tmp_path), password="not-Docker!")
    r = wrong.ssh(port, "true")
    assert r.returncode == 255 and "Permission denied" in r.stderr


def test_sftp_and_scp(sandbox_sshd, ssh_client, tmp_path):
    port = sandbox_sshd.app("linux-app").instances[0].ssh_port
    src = tmp_path / "up.bin"
    src.write_bytes(os.urandom(300_000))
    remote = f"/tmp/sandbox-sftp-{os.getpid()}.bin"
    r = ssh_client.sftp(port, f"put {src} {remote}\nget {remote} {tmp_path / 'down.bin'}\n"
                              f"rm {remote}\n")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "down.bin").read_bytes() == src.read_bytes()
    r = ssh_client.scp(port, str(src), f"HOST:{remote}")
    assert r.returncode == 0, r.stderr
    import hashlib
    r = ssh_client.ssh(port, f"sha256sum {remote}; rm -f {remote}")
    assert r.stdout.split()[0] == hashlib.sha256(src.read_bytes()).hexdigest()


def test_debugger_and_missing_sshd(sandbox):
    dbg = sandbox.app("debug-app").instances[0]
    with socket.create_connection(("127.0.0.1", dbg.ports[9229]), timeout=5) as s:
        assert s.recv(100).startswith(b"Sandbox debugger for debug-app-i0")
        s.sendall(b"ping")
        assert s.recv(100) == b"ping"
    nossh = sandbox.app("nossh-app").instances[0]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", nossh.ssh_port), timeout=5).close()
