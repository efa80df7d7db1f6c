"""Fixtures for the hardening tests (issue 8).

`netem_path` (module scope): two network namespaces joined by a veth pair with `tc netem` on
both ends (40 ms each way = 80 ms RTT, 1 % loss, 10 Mbit/s). Kernels without sch_netem get the
same profile from parts they have: tbf 10 Mbit/s, nftables 1 % loss on each veth end and a 40 ms
per-direction delay line in FrontEnd (see _shape). The fixture prints which one it applied, and at
teardown how many packets nftables dropped:

    ns "client" 10.231.0.1                         ns "scm" 10.231.0.2
    python -m azext_webapp.tunnel  ==veth+netem==> FrontEnd (TCP relay, optional idle cut)
    ssh / scp / test sockets (its loopback)           -> scm-server (TLS, cert for 10.231.0.2)
                                                      -> sshd (sandbox.sshd) / echo, on its loopback

Nothing is addressed outside loopback and these two namespaces; the addresses exist only inside
them. The namespaces are deleted at teardown (also after failures; deleting them removes the
veth pair). Work is placed in a namespace either with `ip netns exec` (processes) or with a
long-lived thread that called setns(2) (`NetNs.call`): network namespaces are per thread, and
sockets, threads and children created by that thread stay in it. The thread lives as long as the
fixture, which matters for PR_SET_PDEATHSIG of the sandbox's sshd and scm-server.

FrontEnd plays the App Service front end / load balancer: every TCP connection to it is relayed
to the current scm-server port (so a killed scm-server can be replaced behind the same address),
and with `idle_cut` set it resets connections that carried no byte either way for that long
(Azure's load balancer drops idle flows after ~4 minutes; the sandbox scm-server has no idle
time-out of its own, see tests/test_hardening_netem.py).

Skips with the reason when not root, without `ip`/`tc` (Debian: iproute2), without any qdisc
to shape with, or without sshd. Without `nft` (Debian: nftables) and netem the path has no loss,
and says so.
"""
from __future__ import annotations

import collections
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLIENT_IP, SCM_IP = "10.231.0.1", "10.231.0.2"
DELAY_MS, LOSS_PERCENT = 40, 1     # each way: 80 ms round trip, 1 % loss per direction
NETEM = ["delay", f"{DELAY_MS}ms", "loss", f"{LOSS_PERCENT}%", "rate", "10mbit"]
CLONE_NEWNET = 0x40000000
ECHO_PORT = 7000          # container port of the echo target (the SCM maps it)
USER, PASSWORD = "$netem-site", "netem-publishing-password"


def _sh(*argv, check=True):
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def netns_unavailable_reason():
    if os.geteuid() != 0:
        return "needs root: creates network namespaces, a veth pair and tc netem qdiscs"
    for tool in ("ip", "tc"):
        if not shutil.which(tool):
            return f"`{tool}` not found (Debian package iproute2)"
    from sandbox import sshd
    reason = sshd.sshd_unavailable_reason()
    if reason:
        return f"sshd cannot run: {reason}"
    return None


class NetNs:
    """A named network namespace; .call(fn, ...) runs fn on a thread inside it."""

    def __init__(self, name):
        self.name = name
        _sh("ip", "netns", "add", name)
        self._fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
        libc = ctypes.CDLL(None, use_errno=True)

        def enter():
            if libc.setns(self._fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"netns-{name}", initializer=enter)

    def call(self, fn, *args, **kw):
        return self._pool.submit(fn, *args, **kw).result()

    def argv(self, *argv):
        return ["ip", "netns", "exec", self.name, *map(str, argv)]

    def connect(self, port, host="127.0.0.1", timeout=30):
        return self.call(socket.create_connection, (host, port), timeout)

    def delete(self):
        self._pool.shutdown(wait=True)
        os.close(self._fd)
        _sh("ip", "netns", "del", self.name, check=False)


class FrontEnd:
    """TCP relay on SCM_IP:<port> in the scm namespace (see the module docstring). Construct it
    on the namespace's thread (its socket and threads are created there)."""

    def __init__(self, upstream_port: int, delay: float = 0.0):
        self.upstream_port = upstream_port
        self.delay = delay        # one-way delay line per direction (seconds; 0 = plain relay)
        self.idle_cut = None
        self.cuts = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pairs = []
        self.sock = socket.create_server((SCM_IP, 0), backlog=512)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept_loop, daemon=True).start()
        threading.Thread(target=self._idle_loop, daemon=True).start()

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                down, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(down,), daemon=True).start()

    def _serve(self, down):
        try:
            up = socket.create_connection((SCM_IP, self.upstream_port), timeout=10)
            up.settimeout(None)
        except OSError:
            _reset(down)
            return
        pair = {"down": down, "up": up, "last": time.monotonic(), "cut": False}
        with self._lock:
            self._pairs.append(pair)

        def pump(src, dst):
            line = _DelayLine(dst, self.delay) if self.delay else None
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    pair["last"] = time.monotonic()
                    if line:
                        line.put(data)
                    else:
                        dst.sendall(data)
            except OSError:
                pass
            if line:
                line.finish()      # shuts dst's write side once everything before it went out
                return
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        t = threading.Thread(target=pump, args=(up, down), daemon=True)
        t.start()
        pump(down, up)
        t.join()
        for s in (down, up):
            s.close()
        with self._lock:
            self._pairs.remove(pair)

    def _idle_loop(self):
        while not self._stop.wait(0.2):
            cut = self.idle_cut
            if not cut:
                continue
            now = time.monotonic()
            with self._lock:
                idle = [p for p in self._pairs if not p["cut"] and now - p["last"] > cut]
                for p in idle:
                    p["cut"] = True
                    self.cuts += 1
                    _reset(p["down"])
                    _reset(p["up"])

    def close(self):
        self._stop.set()
        self.sock.close()
        with self._lock:
            for p in self._pairs:
                _reset(p["down"])
                _reset(p["up"])


class _DelayLine:
    """One direction of the relay as a delay line: each chunk read at time t is sent to `dst` no
    earlier than t + delay, in order. The reading thread only queues (it never sleeps per chunk);
    a sender thread releases chunks when due, so throughput is not limited -- up to `limit` bytes
    may be in the line (then the reader waits: ordinary back-pressure)."""

    def __init__(self, dst, delay, limit=8 << 20):
        self.dst, self.delay, self.limit = dst, delay, limit
        self._q = collections.deque()
        self._bytes = 0
        self._dead = False
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def put(self, data):
        with self._cv:
            while self._bytes >= self.limit and not self._dead:
                self._cv.wait()
            if self._dead:
                raise OSError("delay line: peer gone")
            self._q.append((time.monotonic() + self.delay, data))
            self._bytes += len(data)
            self._cv.notify_all()

    def finish(self):
        """EOF from the source: after the queued chunks, shut the write side; wait for that."""
        with self._cv:
            self._q.append((time.monotonic() + self.delay, None))
            self._cv.notify_all()
        self._thread.join()

    def _run(self):
        while True:
            with self._cv:
                while not self._q:
                    self._cv.wait()
                due, data = self._q[0]
                now = time.monotonic()
                if due > now:
                    self._cv.wait(due - now)    # woken early only by new chunks (queued behind)
                    continue
                self._q.popleft()
            if data is None:
                try:
                    self.dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            try:
                self.dst.sendall(data)
            except OSError:
                with self._cv:
                    self._dead = True          # put() now raises: the reader stops
                    self._cv.notify_all()
                while True:        # drop what is queued up to finish()'s end marker (maybe queued)
                    with self._cv:
                        while not self._q:
                            self._cv.wait()
                        if self._q.popleft()[1] is None:
                            return
            with self._cv:
                self._bytes -= len(data)
                self._cv.notify_all()


def _reset(sock):
    """Close with RST (SO_LINGER 0), as a load balancer dropping a flow does."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


NFT_TABLE = "webapp_loss"


def _nft_loss(ns, dev):
    """1 % loss of the TCP packets arriving on `dev` in namespace `ns` (nftables, numgen random);
    loopback inside the namespace is untouched. The table lives in the namespace, so deleting
    the namespace deletes it."""
    rules = f"""table inet {NFT_TABLE} {{
    chain input {{
        type filter hook input priority -10; policy accept;
        iifname "{dev}" meta l4proto tcp counter
        iifname "{dev}" meta l4proto tcp numgen random mod 100 < {LOSS_PERCENT} counter drop
    }}
}}
"""
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, capture_output=True,
                   text=True, check=True)


def nft_loss_counters(ns):
    """(tcp packets seen on the veth, dropped) in namespace `ns`, or None without the table."""
    r = _sh("ip", "netns", "exec", ns, "nft", "list", "table", "inet", NFT_TABLE, check=False)
    counts = [int(line.split("counter packets")[1].split()[0])
              for line in r.stdout.splitlines() if "counter packets" in line]
    return tuple(counts) if r.returncode == 0 and len(counts) == 2 else None


def _shape(client_ns, scm_ns, devs):
    """Shape the veth path. Returns (description, one-way relay delay in seconds).

    First choice: netem (delay 40 ms, 1 % loss, 10 Mbit/s) on both ends. Where the kernel has no
    sch_netem (CONFIG_NET_SCH_NETEM unset, as on this project's CI VMs), the same path from parts
    the kernel does have: tbf 10 Mbit/s on both ends; 1 % loss per direction by nftables on the
    veth's input in each namespace (real dropped packets, TCP retransmits them); and 40 ms each
    way by a userspace delay line in the FrontEnd relay. That delay is on the byte stream, not on
    packets: the tunnel's application round trip (TLS and WebSocket handshakes, pings, SSH
    exchanges) sees 80 ms more, but the kernel TCP of the veth leg still sees a sub-millisecond
    RTT, so losses are recovered at LAN speed (unlike netem, where loss and 80 ms RTT compound)."""
    pairs = ((client_ns, devs[0]), (scm_ns, devs[1]))
    r = None
    for ns, dev in pairs:
        r = _sh("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "netem", *NETEM, check=False)
        if r.returncode != 0:
            break
    else:
        return "netem " + " ".join(NETEM) + " on both veth ends (kernel qdisc)", 0.0
    no_netem = r.stderr.strip()
    for ns, dev in pairs:
        _sh("tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", "10mbit",
            "burst", "32kbit", "latency", "400ms")
    parts = [f"no netem qdisc in this kernel ({no_netem}); instead: tbf rate 10mbit on both veth ends"]
    if shutil.which("nft"):
        for ns, dev in pairs:
            _nft_loss(ns, dev)
        parts.append(f"nftables loss {LOSS_PERCENT}% of TCP packets arriving on each veth end "
                     f"(`numgen random mod 100 < {LOSS_PERCENT} drop`, table inet {NFT_TABLE})")
    else:
        parts.append("NO loss (`nft` not found: Debian package nftables)")
    parts.append(f"delay {DELAY_MS} ms each way (80 ms round trip) by a userspace delay line in the "
                 f"front-end relay (byte stream; the veth's kernel TCP RTT stays < 1 ms)")
    cc = _sh("ip", "netns", "exec", client_ns, "sysctl", "-n", "net.ipv4.tcp_congestion_control",
             check=False).stdout.strip()
    parts.append(f"TCP congestion control {cc or '?'}")
    return "; ".join(parts), DELAY_MS / 1000


class NetemPath:
    """The whole set-up; see the module docstring."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.client = self.scm_ns = None
        self.scm_proc = self.sshd = self.echo = self.front = None
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self):
        tag = f"{os.getpid() % 100000}"
        self.client = NetNs(f"wa-client-{tag}")
        self.scm_ns = NetNs(f"wa-scm-{tag}")
        va, vb = f"wac{tag}", f"was{tag}"
        _sh("ip", "link", "add", va, "type", "veth", "peer", "name", vb)
        _sh("ip", "link", "set", va, "netns", self.client.name)
        _sh("ip", "link", "set", vb, "netns", self.scm_ns.name)
        for ns, dev, ip in ((self.client, va, CLIENT_IP), (self.scm_ns, vb, SCM_IP)):
            _sh("ip", "-n", ns.name, "link", "set", "lo", "up")
            _sh("ip", "-n", ns.name, "addr", "add", f"{ip}/24", "dev", dev)
            _sh("ip", "-n", ns.name, "link", "set", dev, "up")
        self.devs = (va, vb)
        self.shaping, self.relay_delay = _shape(self.client.name, self.scm_ns.name, self.devs)
        print(f"netem path: {self.client.name} {CLIENT_IP} <-> {self.scm_ns.name} {SCM_IP}: {self.shaping}")
        self.scm_ns.call(self._start_scm_side)

    # runs on the scm namespace's thread: everything it starts lives in that namespace
    def _start_scm_side(self):
        from sandbox import pki, sshd
        from tests import engine_targets
        for sub in ("logs", "instances", "pki"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir / "instances", 0o700)
        shadow = str(self.workdir / "instances" / "shadow")
        sshd.write_shadow(shadow)
        self.sshd = sshd.SshdInstance("netem-i0", str(self.workdir), shadow, "\nnetem sandbox\n\n").start()
        self.echo = engine_targets.EchoServer()
        self.ca = pki.make_ca(self.workdir / "pki")
        self.ca_file = str(self.ca.cert_path)
        self.cert = self.ca.issue(self.workdir / "pki", "scm-netem", dns_names=("localhost",),
                                  ip_addresses=(SCM_IP,))
        self._start_scm_server()
        self.front = FrontEnd(self.scm_proc.port("netem-site"), delay=self.relay_delay)

    def _start_scm_server(self):
        from sandbox import scm_process
        site = {"name": "netem-site", "cert": str(self.cert[0]), "key": str(self.cert[1]),
                "basic": [USER, PASSWORD], "bearer": [], "state": "STARTED", "starting_until": 0,
                "default_port": 2222, "fault": None,
                "instances": [{"name": "netem-i0", "ports": {"2222": self.sshd.port,
                                                             str(ECHO_PORT): self.echo.port}}]}
        n = getattr(self, "_generation", 0) + 1
        self._generation = n
        # keepalive_seconds 0: no server keep-alives, so only the client's pings keep a flow busy
        self.scm_proc = scm_process.ScmServer(self.workdir / f"scm-{n}", [site], keepalive_seconds=0,
                                              listen=SCM_IP,
                                              log_path=self.workdir / "logs" / f"scm-server-{n}.log").start()

    def kill_scm(self):
        """SIGKILL the scm-server (the SCM side dies mid-transfer)."""
        self.scm_proc.proc.kill()
        self.scm_proc.proc.wait()

    def restart_scm(self):
        self.scm_proc.stop()
        self.scm_ns.call(self._start_scm_server)
        self.front.upstream_port = self.scm_proc.port("netem-site")

    @property
    def scm_url(self):
        return f"https://{SCM_IP}:{self.front.port}"

    def tunnel(self, *args):
        """`python -m azext_webapp.tunnel` in the client namespace -> TunnelProcess."""
        return TunnelProcess(self, *args)

    def loss_report(self):
        """'dropped a/b, c/d' (client end, scm end) when nftables makes the loss, else None."""
        if not (self.client and self.scm_ns):
            return None
        counts = [nft_loss_counters(ns.name) for ns in (self.client, self.scm_ns)]
        if None in counts:
            return None
        return ", ".join(f"{ns.name} dropped {d} of {n} TCP packets in"
                         for ns, (n, d) in zip((self.client, self.scm_ns), counts))

    def close(self):
        report = None
        try:
            report = self.loss_report()
        except Exception as e:
            report = f"could not read the nft counters: {e!r}"
        if report:
            print(f"\nnetem path loss (nftables): {report}")
        for step in (lambda: self.front and self.front.close(),
                     lambda: self.scm_proc and self.scm_ns and self.scm_ns.call(self.scm_proc.stop),
                     lambda: self.sshd and self.scm_ns.call(self.sshd.stop),
                     lambda: self.echo and self.echo.close()):
            try:
                step()
            except Exception as e:  # keep cleaning up
                print(f"netem teardown: {e!r}", file=sys.stderr)
        for ns in (self.client, self.scm_ns):
            if ns:
                ns.delete()


class TunnelProcess:
    """The standalone tunnel in the client namespace; .port once it printed "Port N is open"."""

    def __init__(self, path: NetemPath, *args):
        env = dict(os.environ, REQUESTS_CA_BUNDLE=path.ca_file, WEBAPP_SCM_USER=USER,
                   WEBAPP_SCM_PASSWORD=PASSWORD, PYTHONPATH=str(ROOT))
        for name in ("WEBAPP_SCM_TOKEN", "HTTPS_PROXY", "https_proxy"):
            env.pop(name, None)
        self.proc = subprocess.Popen(path.client.argv(sys.executable, "-m", "azext_webapp.tunnel",
                                                      path.scm_url, *args),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("Port "):
            self.proc.kill()
            raise RuntimeError(f"tunnel did not open: {line!r} {self.proc.stderr.read().decode()}")
        self.port = int(line.split()[1])
        self.pid = self.proc.pid   # `ip netns exec` execs the command: same pid

    def proc_status(self):
        """(open fds, threads, VmRSS KiB) from /proc."""
        fds = len(os.listdir(f"/proc/{self.pid}/fd"))
        status = dict(line.split(":", 1) for line in Path(f"/proc/{self.pid}/status").read_text().splitlines())
        return fds, int(status["Threads"]), int(status["VmRSS"].split()[0])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return self.proc.returncode, out.decode(), err.decode()


@pytest.fixture(scope="module")
def netem_path(tmp_path_factory):
    reason = netns_unavailable_reason()
    if reason:
        pytest.skip(reason)
    try:
        path = NetemPath(tmp_path_factory.mktemp("netem"))   # cleans up after itself on failure
    except subprocess.CalledProcessError as e:
        if "qdisc" in " ".join(e.cmd):
            pytest.skip(f"no traffic shaping here (tc netem and tbf failed): {e.stderr.strip()}")
        raise
    try:
        yield path
    finally:
        path.close()
