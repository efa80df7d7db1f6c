"""`make bench`: this project's tunnel, the Azure CLI's own, and raw loopback, side by side.

All three reach the same target through the same sandbox SCM server over verified TLS:
  raw        straight to the target's loopback port (the floor: no tunnel at all)
  webapp     `python -m azext_webapp.tunnel` with the native engine (WEBAPP_ENGINE=native)
  portable   `python -m azext_webapp.tunnel` with the portable engine (WEBAPP_ENGINE=portable)
  reference  azure-cli's `TunnelServer`, driven as `az webapp create-remote-connection` drives it
Each measurement runs --repeat times, each time in a fresh tunnel process, and reports the median
and the spread.  Results go to bench/RESULTS.md and bench/results.png, and the table is printed.
Where sshd runs (root), files are also copied into its container both ways: with scp through each
tunnel, and with `cp` through the SCM site's exec channel (bench/exec_copy.py: each engine; Azure's
own exec client has no copy) into the same container.
"""
import argparse
import hashlib
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from bench import report, workloads
from bench.targets import TargetServer
from sandbox import containers, pki, sshd
from sandbox.exec_service import ExecService
from sandbox.scm_process import ScmServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIB = 1 << 30
WAYS = ("raw", "webapp", "portable", "reference")


def cpu_seconds(pid):
    """User + system CPU seconds a process has used so far (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Tunnel:
    """One tunnel process: started per measurement, so each starts from the same clean state."""

    def __init__(self, argv, env):
        self.argv, self.env = argv, env
        self.proc = None
        self.port = None

    def __enter__(self):
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        line = self.proc.stdout.readline()
        if not line.startswith("Port "):
            self.__exit__()
            raise RuntimeError(f"{self.argv[1:3]} did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cpu_seconds(self):
        return cpu_seconds(self.proc.pid)

    def rss_bytes(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0


class NoTunnel:
    """The raw way in: the target's own port, and no process to measure."""

    def __init__(self, port):
        self.port = port

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def cpu_seconds(self):
        return 0.0


class Bench:
    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.results = {}    # (metric, way) -> list of values (None = failed)
        self.notes = {}      # (metric, way) -> [why each failing run failed]
        self.target = TargetServer().start()
        ca = pki.make_ca(os.path.join(workdir, "certs"))
        self.ca_file = str(ca.cert_path)
        self.user, self.password = "$bench", secrets.token_urlsafe(24)
        self.sshd = self._start_sshd()
        sites = [self._site("bench", self.target.port)]
        self.exec = None
        if self.sshd:
            sites.append(self._site("bench-ssh", self.sshd.port))
            # the exec channel's shells run in the same container as its sshd
            self.exec = ExecService(containers.write_map(workdir, {"bench-ssh-i0": self.sshd.init_pid}, {}, True),
                                    log_path=os.path.join(workdir, "logs", "exec.log")).start()
        self.scm = ScmServer(os.path.join(workdir, "scm"), sites, ca=ca,
                             exec_port=self.exec.port if self.exec else None,
                             exec_token=self.exec.token if self.exec else None).start()

    def _site(self, name, port):
        return {"name": name, "basic": [self.user, self.password], "bearer": [],
                "state": "STARTED", "starting_until": 0, "default_port": 2222,
                "instances": [{"name": name + "-i0", "ports": {"2222": port}}], "fault": None}

    def _start_sshd(self):
        reason = sshd.sshd_unavailable_reason()
        if reason:
            print(f"scp workload skipped: {reason}", file=sys.stderr)
            return None
        shadow = os.path.join(self.workdir, "instances", "shadow")
        os.makedirs(os.path.dirname(shadow), mode=0o700, exist_ok=True)
        os.makedirs(os.path.join(self.workdir, "logs"), exist_ok=True)
        sshd.write_shadow(shadow)
        return sshd.SshdInstance("bench-ssh", self.workdir, shadow, "bench\n").start()

    def close(self):
        self.scm.stop()
        if self.exec:
            self.exec.stop()
        if self.sshd:
            self.sshd.stop()
        self.target.close()

    # -- ways in
    def way(self, name, site="bench"):
        if name == "raw":
            return NoTunnel(self.target.port if site == "bench" else self.sshd.port)
        env = self._engine_env(name)
        url = self.scm.url(site)
        if name in ("webapp", "portable"):
            argv = [sys.executable, "-m", "azext_webapp.tunnel", url]
        else:
            argv = [sys.executable, os.path.join(ROOT, "bench", "reference_tunnel.py"), url]
        return Tunnel(argv, env)

    def _engine_env(self, name):
        """The environment of a process of ours with the engine of way `name`, or the reference's."""
        env = dict(os.environ, WEBAPP_SCM_USER=self.user, WEBAPP_SCM_PASSWORD=self.password,
                   REQUESTS_CA_BUNDLE=self.ca_file, WEBSOCKET_CLIENT_CA_BUNDLE=self.ca_file)
        env.pop("WEBAPP_SCM_TOKEN", None)
        if name in ("webapp", "portable"):
            env["WEBAPP_ENGINE"] = "native" if name == "webapp" else "portable"
        return env

    def record(self, metric, way, value, note=None):
        self.results.setdefault((metric, way), []).append(value)
        if note:
            self.notes.setdefault((metric, way), []).append(note)

    # -- workloads
    def bulk(self, way):
        size = self.args.bulk_mib << 20
        for direction, fn in (("download", workloads.bulk_download), ("upload", workloads.bulk_upload)):
            with self.way(way) as tunnel:
                cpu0, scm0 = tunnel.cpu_seconds(), cpu_seconds(self.scm.pid)
                try:
                    seconds = fn(("127.0.0.1", tunnel.port), size)
                except workloads.WorkloadFailed as exc:
                    self.record(f"{direction} MB/s", way, None, str(exc))
                    continue
                cpu, scm = tunnel.cpu_seconds() - cpu0, cpu_seconds(self.scm.pid) - scm0
            self.record(f"{direction} MB/s", way, size / seconds / 1e6)
            if way != "raw":
                self.record(f"CPU s per GiB ({direction})", way, cpu * GIB / size)
                # the sandbox's SCM server shares the same cores: its cost bounds what any tunnel can reach
                self.record(f"SCM server CPU s per GiB ({direction})", way, scm * GIB / size)

    def round_trips(self, way):
        with self.way(way) as tunnel:
            samples, stalled = workloads.round_trips(("127.0.0.1", tunnel.port), self.args.rtt_count)
        for pct in (50, 99):
            metric = f"round trip p{pct} us"
            value = workloads.percentile(samples, pct) if len(samples) >= 100 else None
            self.record(metric, way, value, stalled)

    def concurrency(self, way):
        for count in self.args.concurrency:
            with self.way(way) as tunnel:
                done, seconds = workloads.concurrent_echo(("127.0.0.1", tunnel.port), count,
                                                          deadline=self.args.deadline)
            self.record(f"{count} concurrent: completed", way, done)
            self.record(f"{count} concurrent: seconds", way, seconds if done == count else None,
                        None if done == count else f"{done} of {count} within {self.args.deadline:.0f} s")

    def idle_memory(self, way):
        if way == "raw":
            return
        count = self.args.idle
        with self.way(way) as tunnel:
            try:
                workloads.open_idle(("127.0.0.1", tunnel.port), 1, timeout=5.0)[0].close()
                time.sleep(0.2)
                before = tunnel.rss_bytes()
                socks = workloads.open_idle(("127.0.0.1", tunnel.port), count, timeout=5.0)
            except (workloads.WorkloadFailed, OSError) as exc:
                self.record("RSS per idle connection KiB", way, None,
                            f"could not hold {count} connections open: {exc}")
                return
            time.sleep(1.0)
            after = tunnel.rss_bytes()
            for sock in socks:
                sock.close()
        self.record("RSS per idle connection KiB", way, (after - before) / count / 1024)

    def _source(self, mib):
        """A file of `mib` MiB of random bytes (made once per size) and its SHA-256."""
        src = os.path.join(self.workdir, f"source-{mib}.bin")
        if not os.path.exists(src):
            with open(src, "wb") as f:
                for _ in range(mib):
                    f.write(os.urandom(1 << 20))
        return src, self._sha256(src)

    def scp(self, way):
        if self.sshd:
            self._scp(way, self.args.scp_mib, "upload")

    def _scp(self, way, mib, direction):
        """One scp through the tunnel of `way` into (or out of) the sshd's container."""
        size = mib << 20
        src, _ = self._source(mib)
        remote = f"/tmp/scp-{direction}-{way}.bin"        # in the container: its own /tmp
        landed = self.sshd.host_path(remote) if direction == "upload" else os.path.join(self.workdir, "scp-down.bin")
        if direction == "download":
            shutil.copyfile(src, self.sshd.host_path(remote))
        with self.way(way, site="bench-ssh") as tunnel:
            askpass = os.path.join(self.workdir, "askpass.sh")
            with open(askpass, "w") as f:
                f.write("#!/bin/sh\necho 'Docker!'\n")
            os.chmod(askpass, 0o700)
            env = dict(os.environ, SSH_ASKPASS=askpass, SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")
            there = f"root@127.0.0.1:{remote}"
            argv = ["scp", "-q", "-P", str(tunnel.port), "-o", "StrictHostKeyChecking=no",
                    "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                    *((src, there) if direction == "upload" else (there, landed))]
            start = time.perf_counter()
            try:
                proc = subprocess.run(argv, env=env, capture_output=True, text=True,
                                      stdin=subprocess.DEVNULL, timeout=self.args.deadline * 6)
                ok = proc.returncode == 0 and os.path.getsize(landed) == size
                why = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "size mismatch"
            except (subprocess.TimeoutExpired, OSError) as exc:
                ok, why = False, f"scp did not finish: {exc.__class__.__name__}"
            seconds = time.perf_counter() - start
        for path in (landed, self.sshd.host_path(remote)):
            if os.path.exists(path):
                os.unlink(path)
        self.record(f"scp {mib} MiB {direction} MB/s", way, size / seconds / 1e6 if ok else None,
                    None if ok else why)

    def copies(self, way):
        """64 MiB (--copy-mib) into the sshd's container and back: scp through this way's tunnel,
        and `cp` through the exec channel with this way's engine (no raw or reference cp)."""
        if not self.sshd or way == "raw":
            return
        mib = self.args.copy_mib
        for direction in ("upload", "download"):
            self._scp(way, mib, direction)
            if way in ("webapp", "portable"):
                self._exec_cp(way, mib, direction)

    def _exec_cp(self, way, mib, direction):
        size = mib << 20
        src, digest = self._source(mib)
        remote = f"/tmp/cp-{direction}-{way}.bin"
        there = self.sshd.host_path(remote)
        back = os.path.join(self.workdir, "cp-down.bin")
        if direction == "download":
            shutil.copyfile(src, there)
        argv = [sys.executable, "-m", "bench.exec_copy", "up" if direction == "upload" else "down",
                self.scm.url("bench-ssh"), "bench-ssh-i0", src if direction == "upload" else back, remote]
        try:
            proc = subprocess.run(argv, env=self._engine_env(way), capture_output=True, text=True, cwd=ROOT,
                                  stdin=subprocess.DEVNULL, timeout=self.args.deadline * 30)
            landed = there if direction == "upload" else back
            ok = proc.returncode == 0 and self._sha256(landed) == digest
            why = (proc.stderr.strip().splitlines() or ["checksum mismatch"])[-1]
            seconds = float(proc.stdout.split()[-1]) if ok else None
        except (subprocess.TimeoutExpired, OSError, ValueError, IndexError) as exc:
            ok, why = False, f"cp did not finish: {exc.__class__.__name__}"
        for path in (there, back):
            if os.path.exists(path):
                os.unlink(path)
        self.record(f"cp {mib} MiB {direction} (exec channel) MB/s", way, size / seconds / 1e6 if ok else None,
                    None if ok else why)

    @staticmethod
    def _sha256(path):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    def run(self):
        steps = [self.round_trips, self.concurrency, self.idle_memory, self.scp, self.copies, self.bulk]
        for step in steps:
            for way in self.args.ways:
                for _ in range(self.args.repeat):
                    print(f"  {step.__name__:<12} {way:<9}", file=sys.stderr, flush=True)
                    try:
                        step(way)
                    except (OSError, workloads.WorkloadFailed) as exc:
                        # a way in that breaks mid-step is a result, not the end of the run
                        self.record(f"{step.__name__} completed", way, None, f"{exc.__class__.__name__}: {exc}")


def environment():
    def version(argv):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unknown"

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from importlib.metadata import version as dist_version
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {cpu}",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "azure-cli": dist_version("azure-cli"),
        "websocket-client": dist_version("websocket-client"),
        "libwebsockets": version(["pkg-config", "--modversion", "libwebsockets"]),
        "openssl": version(["openssl", "version"]),
        "openssh": version(["ssh", "-V"]),
    }


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--bulk-mib", type=int, default=1024)
    p.add_argument("--rtt-count", type=int, default=5000)
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")],
                   default=[1, 10, 100, 1000])
    p.add_argument("--idle", type=int, default=500, help="idle connections held for the RSS figure")
    p.add_argument("--scp-mib", type=int, default=256)
    p.add_argument("--copy-mib", type=int, default=64,
                   help="MiB copied each way by scp and by cp through the exec channel")
    p.add_argument("--deadline", type=float, default=10.0,
                   help="seconds a concurrency run may take before unfinished connections count as lost")
    p.add_argument("--out", default=os.path.join(ROOT, "bench"))
    p.add_argument("--ways", type=lambda s: [w for w in s.split(",") if w in WAYS], default=list(WAYS),
                   help="comma-separated subset of " + ",".join(WAYS))
    p.add_argument("--quick", action="store_true",
                   help="a short run to try things out: 1 repeat, 256 MiB bulk, 1,000 round trips, "
                        "1 and 1,000 concurrent, 200 idle, 64 MiB scp (results go to a temporary directory)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.quick:
        args.repeat, args.bulk_mib, args.rtt_count, args.concurrency = 1, 256, 1000, [1, 1000]
        args.idle, args.scp_mib = 200, 64
        if args.out == os.path.join(ROOT, "bench"):
            args.out = tempfile.mkdtemp(prefix="webapp-bench-quick-")
    workdir = tempfile.mkdtemp(prefix="webapp-bench-")
    print(f"Benchmarking raw loopback, webapp (native and portable engines) and the Azure CLI tunnel "
          f"({args.repeat} runs each)...",
          file=sys.stderr)
    bench = Bench(args, workdir)
    started = time.monotonic()
    try:
        bench.run()
    finally:
        bench.close()
        shutil.rmtree(workdir, ignore_errors=True)
    table = report.write(args.out, bench.results, bench.notes, environment(), args,
                         time.monotonic() - started)
    print(table)


if __name__ == "__main__":
    main()
