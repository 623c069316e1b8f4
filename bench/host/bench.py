#!/usr/bin/env python3
"""vigia-host benchmark: scrape latency, CPU time per scrape and peak RSS against
node_exporter with its default collectors, on the same machine in one run, with real
containers running so vigia-host's container metrics are part of what is measured.

Containers: by default (as root) a private Docker engine is started for the run, the way
exporters/host/tests/containers_docker_root.rs starts one (dockerd from Debian docker.io,
vfs storage, no iptables, no bridge, its own socket, data root and cgroup parent), and
--containers idle containers (`sleep`, no network, 20 by default) are started in it; all
of them, and the engine, are removed at the end however the run ends (the containers'
`sleep` is bounded too). Their image holds only `sleep` and the libraries it needs, taken
from the debootstrap root cached in .cache/ (made with `debootstrap --variant=minbase
bookworm` when missing): vfs copies the whole image for every container, and the full
206 MB root twenty times over would be 4 GB. --docker-host uses an engine you name
instead (the containers are started and removed there); the bench never puts containers
in an engine it was not given. vigia-host is pointed at the engine's socket, so its
containers carry names and images; the run fails if they do not all show up.

The exporters run on loopback with their defaults: vigia-host with every collector (its
defaults: node_exporter 1.9's default Linux set, the cgroups collector with cAdvisor's
families, inventory, energy and anomaly), node_exporter 1.9 (Debian trixie's, unpacked
under .cache/ by scripts/fetch-tools.sh) and 1.5 (bookworm's package) with upstream's
default collectors and flags (Debian's package turns systemd on and points textfile at its
directory: undone here). vigia-host measures its containers' disk use in the background
every 5 s here (60 s by default), so that walks happen during the timed scrapes and are
counted. They are scraped in turns, one warm-up scrape each, then --scrapes timed scrapes
each. A scrape is timed from connect to the last byte
of the body (plain text, no compression). CPU per scrape is the exporter's utime + stime
(from /proc/PID/stat) over the timed scrapes, divided by their number; it includes
whatever the exporter does in the background meanwhile. Peak RSS is VmHWM from
/proc/PID/status at the end.

Needs (Debian bookworm): prometheus-node-exporter, python3, docker.io (and debootstrap
when no root is cached yet), apt-get and dpkg for scripts/fetch-tools.sh; root for the
private engine.
"""

import argparse
import datetime
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
CACHE = os.path.join(REPO, ".cache", "bench-host-docker")
# The vigia-host Docker test's cached debootstrap root, shared when it is there.
TEST_ROOTFS = os.path.join(REPO, ".cache", "vigia-host-docker", "rootfs")
NODE_EXPORTER = "prometheus-node-exporter"
NODE_EXPORTER_19 = os.path.join(REPO, ".cache", "stack", "root", "usr", "bin", "prometheus-node-exporter")
# Upstream's defaults where Debian's package differs.
UPSTREAM_FLAGS = [
    "--no-collector.systemd",
    "--collector.textfile.directory=",
    "--collector.filesystem.mount-points-exclude="
    "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)",
]
FS_USAGE_INTERVAL = "5s"
PR_SET_PDEATHSIG = 1
MNT_DETACH = 2
IMAGE = "vigia-bench-idle:bookworm"
CONTAINER_PREFIX = "vigia-bench-idle-"
BENCH_LABEL = "vigia.bench=host"
CGROUP_PARENT = "vigia-bench-host"
# The containers end by themselves after this, should every cleanup fail.
CONTAINER_SECONDS = 1800
MAX_CONTAINERS = 100
# The targets: no slower per scrape than node_exporter, under 15 MiB RSS.
TARGET_RSS_MIB = 15.0


class BenchError(Exception):
    pass


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vigia", required=True, help="path of the vigia-host release binary")
    p.add_argument("--scrapes", type=int, default=200, help="timed scrapes per exporter")
    p.add_argument("--containers", type=int, default=20,
                   help=f"idle containers running during the run (0 to {MAX_CONTAINERS})")
    p.add_argument("--docker-host", default=None,
                   help="use this engine (unix:///path) instead of a private dockerd")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument("--results", default=os.path.join(HERE, "..", "RESULTS.md"),
                   help="Markdown file whose vigia-host section is rewritten")
    a = p.parse_args()
    if not 1 <= a.scrapes <= 10000:
        p.error("--scrapes must be between 1 and 10000")
    if not 0 <= a.containers <= MAX_CONTAINERS:
        p.error(f"--containers must be between 0 and {MAX_CONTAINERS}")
    if a.docker_host is not None and not a.docker_host.startswith("unix://"):
        p.error("--docker-host must be unix:///path/to/docker.sock")
    return a


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent():
    # The exporters must not outlive the benchmark, however it ends.
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start(cmd, port, env=None):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env, preexec_fn=die_with_parent)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{cmd[0]} exited with {proc.returncode}")
        try:
            scrape(port)
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise BenchError(f"{cmd[0]} did not serve /metrics within 20 s")


def scrape(port):
    """One GET /metrics over a fresh connection; returns (seconds, body bytes)."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(f"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    elapsed = time.perf_counter() - t0
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n")[0] + b" ":
        raise OSError(f"bad answer: {head[:80]!r}")
    return elapsed, body


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def samples(body):
    return sum(1 for l in body.decode(errors="replace").splitlines() if l and not l.startswith("#"))


def version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        text = (out.stdout + out.stderr).strip().splitlines()
        return text[0] if text else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


class Engine:
    """A Docker engine for the run: a private dockerd (started and stopped here) or the
    one given with --docker-host. Every container it starts carries BENCH_LABEL."""

    def __init__(self, docker_host=None):
        self.proc = None
        self.exec_root = None
        self.data_root = os.path.join(CACHE, "data")
        if docker_host is not None:
            self.host = docker_host
            if self.docker("info").returncode != 0:
                raise BenchError(f"no Docker engine answers at {docker_host}")
            return
        if os.geteuid() != 0:
            raise BenchError("a private dockerd needs root; or give --docker-host unix:///...")
        dockerd = shutil.which("dockerd")
        if dockerd is None or shutil.which("docker") is None:
            raise BenchError("missing dockerd/docker (Debian package docker.io)")
        os.makedirs(self.data_root, exist_ok=True)
        # Short: a unix socket path is limited to 108 bytes.
        self.exec_root = tempfile.mkdtemp(prefix="vbh", dir="/tmp")
        sock = os.path.join(self.exec_root, "docker.sock")
        self.host = f"unix://{sock}"
        log = open(os.path.join(CACHE, "dockerd.log"), "w")
        # In a network namespace of its own: with --bridge=none dockerd deletes any docker0
        # it finds, which would be the running engine's. unshare execs dockerd (same pid).
        self.proc = subprocess.Popen(
            ["unshare", "--net", "--", dockerd, "--storage-driver=vfs", "--iptables=false", "--bridge=none",
             "--userland-proxy=false", f"--cgroup-parent={CGROUP_PARENT}",
             f"--data-root={self.data_root}",
             f"--exec-root={os.path.join(self.exec_root, 'exec')}",
             f"--pidfile={os.path.join(self.exec_root, 'dockerd.pid')}",
             f"--host={self.host}"],
            stdout=subprocess.DEVNULL, stderr=log, preexec_fn=die_with_parent)
        log.close()
        deadline = time.monotonic() + 60
        while self.docker("info").returncode != 0:
            if self.proc.poll() is not None:
                raise BenchError(f"dockerd exited with {self.proc.returncode}; see {CACHE}/dockerd.log")
            if time.monotonic() > deadline:
                raise BenchError("dockerd not ready in 60 s")
            time.sleep(0.25)

    @property
    def socket_path(self):
        return self.host[len("unix://"):]

    def docker(self, *args, stdin=None):
        return subprocess.run(["docker", "-H", self.host, *args], input=stdin,
                              capture_output=True, timeout=120)

    def ensure_image(self):
        if self.docker("image", "inspect", IMAGE).returncode == 0:
            return
        root = TEST_ROOTFS if os.path.exists(os.path.join(TEST_ROOTFS, "bin", "sh")) \
            else os.path.join(CACHE, "rootfs")
        if not os.path.exists(os.path.join(root, "bin", "sh")):
            debootstrap = shutil.which("debootstrap")
            if debootstrap is None:
                raise BenchError("missing debootstrap (Debian package debootstrap)")
            shutil.rmtree(root, ignore_errors=True)
            out = subprocess.run([debootstrap, "--variant=minbase", "bookworm", root, debian_mirror()],
                                 capture_output=True, text=True, timeout=900)
            if out.returncode != 0:
                raise BenchError(f"debootstrap failed: {out.stderr[-2000:]}")
        with tempfile.TemporaryDirectory(prefix="vigia-bench-image-") as stage:
            # `sleep` and what the root's own loader says it needs, symlinks resolved
            # inside the root (not on this machine).
            out = subprocess.run(["chroot", root, "/usr/bin/ldd", "/usr/bin/sleep"],
                                 capture_output=True, text=True, timeout=60)
            if out.returncode != 0:
                raise BenchError(f"ldd in {root}: {out.stderr}")
            paths = ["/usr/bin/sleep"] + [w for w in out.stdout.split() if w.startswith("/")]
            for path in paths:
                dest = os.path.join(stage, path.lstrip("/"))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                shutil.copy2(resolve_in_root(root, path), dest)
            tar = subprocess.run(["tar", "-C", stage, "-c", "."], capture_output=True, check=True).stdout
            out = self.docker("import", "-", IMAGE, stdin=tar)
            if out.returncode != 0:
                raise BenchError(f"docker import: {out.stderr.decode(errors='replace')}")

    def start_idle(self, count):
        """Starts `count` idle containers; returns their names once all run."""
        self.remove_ours()
        names = [f"{CONTAINER_PREFIX}{i:02d}" for i in range(count)]
        for name in names:
            out = self.docker("run", "-d", "--name", name, "--label", BENCH_LABEL,
                              "--network", "none", IMAGE, "/usr/bin/sleep", str(CONTAINER_SECONDS))
            if out.returncode != 0:
                raise BenchError(f"docker run {name}: {out.stderr.decode(errors='replace')}")
        running = self.docker("ps", "-q", "--filter", f"label={BENCH_LABEL}").stdout.split()
        if len(running) != count:
            raise BenchError(f"{len(running)} of {count} containers running")
        return names

    def remove_ours(self):
        ids = self.docker("ps", "-aq", "--filter", f"label={BENCH_LABEL}").stdout.decode().split()
        if ids:
            self.docker("rm", "-f", *ids)

    def close(self):
        try:
            self.remove_ours()
        except (OSError, subprocess.SubprocessError):
            pass
        if self.proc is None:
            return
        # SIGTERM first: dockerd stops its containerd and cleans its mounts.
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        # dockerd bind-mounts its data root onto itself and leaves that mount behind.
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.umount2(self.data_root.encode(), MNT_DETACH)
        shutil.rmtree(self.exec_root, ignore_errors=True)


def resolve_in_root(root, path, hops=40):
    """`path` inside `root`, following symlinks as a process chrooted there would."""
    parts = [p for p in path.split("/") if p]
    done = []
    while parts:
        if hops == 0:
            raise BenchError(f"too many symlinks under {root} for {path}")
        part = parts.pop(0)
        here = os.path.join(root, *done, part)
        if os.path.islink(here):
            hops -= 1
            target = os.readlink(here)
            parts = [p for p in target.split("/") if p] + parts
            if target.startswith("/"):
                done = []
        elif part == "..":
            done = done[:-1]
        elif part != ".":
            done.append(part)
    return os.path.join(root, *done)


def debian_mirror():
    """The Debian mirror this machine's apt uses (read here, never written in the repo)."""
    for path in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        try:
            lines = open(path).read().splitlines()
        except OSError:
            continue
        for line in (l.strip() for l in lines):
            if line.startswith("URIs:"):
                for u in line[len("URIs:"):].split():
                    if "security" not in u:
                        return u
            if line.startswith("deb "):
                for u in line.split()[1:]:
                    if "://" in u and "security" not in u:
                        return u
    raise BenchError("no Debian mirror in the apt sources")


def container_series(body, names):
    """(container_* samples, how many of `names` show by name, families of theirs)."""
    text = body.decode(errors="replace")
    lines = [l for l in text.splitlines() if l.startswith("container_")]
    seen = {n for n in names if f'name="{n}"' in text}
    ours = sorted({l.split("{", 1)[0] for l in lines
                   if any(f'name="{n}"' in l for n in names)})
    return len(lines), len(seen), ours


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench-host: terminated"))
    a = parse_args()
    if not os.access(a.vigia, os.X_OK):
        sys.exit(f"bench-host: {a.vigia} is not an executable")
    vport, nport, n15port = free_port(), free_port(), free_port()
    engine = None
    with tempfile.TemporaryDirectory(prefix="vigia-bench-host-") as work:
        env = dict(os.environ)
        env.pop("VIGIA_CONFIG_FILE", None)
        procs = {}
        try:
            engine = Engine(a.docker_host)
            engine_kind = "given engine" if a.docker_host else "private dockerd"
            names = []
            if a.containers:
                engine.ensure_image()
                names = engine.start_idle(a.containers)
            env["VIGIA_HOST__CONTAINERS__DOCKER_SOCKET"] = engine.socket_path
            env["VIGIA_HOST__CONTAINERS__FS_USAGE_INTERVAL"] = FS_USAGE_INTERVAL
            fetch = subprocess.run([os.path.join(REPO, "scripts", "fetch-tools.sh"), "node-exporter"],
                                   capture_output=True, text=True)
            if fetch.returncode != 0:
                raise BenchError(f"scripts/fetch-tools.sh node-exporter: {fetch.stderr.strip()}")
            load_start = open("/proc/loadavg").read().split()[0]
            procs["vigia-host"] = (start([a.vigia, f"--web.listen-address=127.0.0.1:{vport}"], vport, env), vport)
            procs["node_exporter 1.9"] = (start([NODE_EXPORTER_19, f"--web.listen-address=127.0.0.1:{nport}",
                                                 *UPSTREAM_FLAGS], nport), nport)
            procs["node_exporter 1.5"] = (start([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{n15port}",
                                                 *UPSTREAM_FLAGS, "--collector.netdev.device-exclude="],
                                                n15port), n15port)
            times = {k: [] for k in procs}
            sizes = {}
            cpu0 = {}
            for name, (proc, port) in procs.items():
                _, body = scrape(port)  # warm-up
                sizes[name] = (len(body), samples(body), *container_series(body, names))
                cpu0[name] = cpu_seconds(proc.pid)
            named = sizes["vigia-host"][3]
            if named != len(names):
                raise BenchError(f"vigia-host shows {named} of the {len(names)} containers by name")
            for _ in range(a.scrapes):
                for name, (proc, port) in procs.items():
                    t, _ = scrape(port)
                    times[name].append(t)
            rows = []
            for name, (proc, port) in procs.items():
                cpu = (cpu_seconds(proc.pid) - cpu0[name]) / a.scrapes
                ts = sorted(times[name])
                rows.append({
                    "name": name,
                    "median_ms": statistics.median(ts) * 1000,
                    "p90_ms": ts[int(0.9 * (len(ts) - 1))] * 1000,
                    "cpu_ms": cpu * 1000,
                    "rss_mib": peak_rss_mib(proc.pid),
                    "bytes": sizes[name][0],
                    "samples": sizes[name][1],
                    "container_series": sizes[name][2],
                })
            # The disk walks ran: every idle container has its container_fs_usage_bytes.
            _, body = scrape(vport)
            text = body.decode(errors="replace")
            fs_named = sum(1 for n in names if any(l.startswith("container_fs_usage_bytes{") and f'name="{n}"' in l
                                                   for l in text.splitlines()))
            if fs_named != len(names):
                raise BenchError(f"container_fs_usage_bytes for {fs_named} of {len(names)} containers")
            # Still running at the end: the containers were there for every scrape.
            if names:
                still = engine.docker("ps", "-q", "--filter", f"label={BENCH_LABEL}").stdout.split()
                if len(still) != len(names):
                    raise BenchError(f"only {len(still)} of {len(names)} containers ran to the end")
        finally:
            for proc, _ in procs.values():
                proc.terminate()
            for proc, _ in procs.values():
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            if engine is not None:
                engine.close()
    lines = ["| exporter | scrape median | scrape p90 | CPU per scrape | peak RSS | body | samples | container samples |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['median_ms']:.2f} ms | {r['p90_ms']:.2f} ms | "
                     f"{r['cpu_ms']:.2f} ms | {r['rss_mib']:.1f} MiB | {r['bytes'] / 1024:.0f} KiB | {r['samples']} | "
                     f"{r['container_series']} |")
    load_end = open("/proc/loadavg").read().split()[0]
    v = rows[0]
    peers = rows[1:]
    def verdict(ok):
        return "met" if ok else "NOT met"
    notes = [
        "- Scrape latency: vigia-host " + f"{v['median_ms']:.2f} ms vs " + ", ".join(
            f"{n['name']} {n['median_ms']:.2f} ms" for n in peers)
        + f" (target: no slower than node_exporter): {verdict(all(v['median_ms'] <= n['median_ms'] for n in peers))}.",
        "- CPU per scrape: vigia-host " + f"{v['cpu_ms']:.2f} ms vs " + ", ".join(
            f"{n['name']} {n['cpu_ms']:.2f} ms" for n in peers)
        + f" (target: no higher than node_exporter): {verdict(all(v['cpu_ms'] <= n['cpu_ms'] for n in peers))}.",
        f"- Peak RSS: vigia-host {v['rss_mib']:.1f} MiB (target: under {TARGET_RSS_MIB:.0f} MiB): "
        f"{verdict(v['rss_mib'] < TARGET_RSS_MIB)}.",
        f"- Containers: {len(names)} idle containers (`sleep`, no network) in a {engine_kind} ran "
        f"through the whole run; vigia-host, pointed at its socket, showed all {len(names)} by name "
        f"and image, {v['container_series']} container_* samples in all (other containers on the "
        "machine included, by id when that engine does not know them); each of the idle ones "
        f"carried {', '.join(f'`{f}`' for f in sizes['vigia-host'][4]) or 'nothing'} (no network "
        "series: `--network none` leaves only lo; memory series only where the kernel's memory "
        "controller holds the container at its cgroup path). Their disk use was walked every "
        f"{FS_USAGE_INTERVAL} during the run (the CPU column includes it). node_exporter has no "
        "container metrics.",
        "- The sets: node_exporter runs its default collectors (1.9: 46 on Linux without "
        "systemd); vigia-host the same 46 under the same names plus cgroups (the cgroup tree "
        "walked and each container's CPU, memory, limits and network read every scrape), "
        "inventory (the process table), energy and anomaly.",
        f"- 1-minute load average {load_start} at the start, {load_end} at the end; other work on "
        "the machine is not controlled: wall times include waiting for a core, CPU times do not.",
    ]
    print("\n".join(lines))
    print()
    print("\n".join(notes))
    if not a.no_write:
        section = [
            "## vigia-host", "",
            f"{datetime.date.today().isoformat()}, {platform.machine()}, {os.cpu_count()} CPUs, "
            f"kernel {platform.release()}; {a.scrapes} timed scrapes each, alternating, over loopback, "
            f"{len(names)} containers running; "
            f"node_exporter: {version([NODE_EXPORTER_19, '--version'])}; "
            f"{version([NODE_EXPORTER, '--version'])}.", "",
        ] + lines + [""] + notes + ["", "How it was measured: `make bench-host` (bench/host/bench.py).", ""]
        write_results(os.path.abspath(a.results), section)
        print(f"\nbench-host: wrote the vigia-host section of {os.path.relpath(a.results)}")


def write_results(path, lines):
    """Replaces the `## vigia-host` section of `path`, keeping every other section."""
    try:
        with open(path) as f:
            old = f.read().splitlines()
    except FileNotFoundError:
        old = ["# Benchmarks", "",
               "Recorded by `make bench`; every section says how it was measured.", ""]
    start = next((i for i, l in enumerate(old) if l.strip() == "## vigia-host"), None)
    if start is None:
        new = old + ([""] if old and old[-1] else []) + lines
    else:
        end = next((i for i in range(start + 1, len(old)) if old[i].startswith("## ")), len(old))
        new = old[:start] + lines + old[end:]
    with open(path, "w") as f:
        f.write("\n".join(new).rstrip("\n") + "\n")


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        sys.exit(f"bench-host: {e}")
