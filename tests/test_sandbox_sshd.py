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
    custom = ("seed-app-", "wrongpw-app-", "port22-app-")   # tested on their own, below
    for name, port in instances.items():
        if name.startswith(custom):
            continue
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


def _config(sb, instance):
    with open(os.path.join(sb.sshd_instance(instance).dir, "sshd_config")) as f:
        return [line for line in f.read().splitlines() if line and not line.startswith("#")]


def test_custom_images_as_the_documentation_builds_them(sandbox_sshd, ssh_client, tmp_path):
    import subprocess
    from sandbox.sshd import SEED_CONFIG
    from tests.fixtures_sandbox import SshClient
    # seed-app: the documentation's sshd_config byte for byte but for loopback's Port/ListenAddress
    seed = _config(sandbox_sshd, "seed-app-i0")
    for line in SEED_CONFIG.splitlines():
        if line.split()[0] not in ("Port", "ListenAddress"):
            assert line in seed, line
    assert not any(line.startswith("Subsystem") for line in seed)
    port = sandbox_sshd.app("seed-app").instances[0].ssh_port
    plain = ssh_client.ssh(port, "true")                  # today's OpenSSH offers no CBC cipher
    assert plain.returncode == 255 and plain.stdout == ""
    cbc = subprocess.run(["ssh", "-p", str(port), *ssh_client.OPTS, "-o", "Ciphers=+aes128-cbc",
                          "root@127.0.0.1", "hostname"], env=ssh_client.env, capture_output=True,
                         text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert cbc.stdout.strip() == "seed-app-i0", cbc.stderr
    # nosftp-app: OpenSSH's default algorithms, no sftp subsystem
    nosftp = _config(sandbox_sshd, "nosftp-app-i0")
    assert not any(line.startswith(("Subsystem", "Ciphers", "MACs")) for line in nosftp)
    port = sandbox_sshd.app("nosftp-app").instances[0].ssh_port
    assert ssh_client.ssh(port, "hostname").stdout.strip() == "nosftp-app-i0"
    assert ssh_client.sftp(port, "ls /\n").returncode != 0
    # wrongpw-app: Docker! is refused, its own password works
    port = sandbox_sshd.app("wrongpw-app").instances[0].ssh_port
    refused = ssh_client.ssh(port, "true")
    assert refused.returncode == 255 and "Permission denied" in refused.stderr
    assert SshClient(str(tmp_path), password="not-Docker!").ssh(port, "hostname").stdout.strip() \
        == "wrongpw-app-i0"
    # port22-app: container port 22 serves sshd, 2222 nothing
    inst = sandbox_sshd.app("port22-app").instances[0]
    assert inst.has_sshd and inst.ssh_port is None
    assert ssh_client.ssh(inst.ports[22], "hostname").stdout.strip() == "port22-app-i0"
