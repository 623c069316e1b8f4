#!/usr/bin/env python3
"""bench-central: how much a NOC's store takes in from remote sites. VictoriaMetrics
single node (what compose.central.yaml runs) against Prometheus' remote-write receiver
(`--web.enable-remote-write-receiver`), each alone on this machine, one after the other in
the same run, under the same load:

- N simulated agents, each a connection pushing Prometheus remote-write requests
  (protobuf WriteRequest, snappy-compressed, the format vmagent and Prometheus send) of S
  series with one sample each, R rounds in time order, timestamps STEP seconds apart and
  ending now (so the whole run fits Prometheus' head: no compaction during the test).
  Series look like a host's: names and labels of node_exporter/vigia families, a site,
  host and instance per agent; half counters (increasing by small integers), half gauges
  (a random walk with two decimals); seeded, the same for both servers.
- The bodies are encoded before the clock starts; the agents then send as fast as the
  server answers. Samples/s = samples acknowledged (2xx) / wall time from the first send
  to the last answer. CPU = the server's utime + stime over that time, in cores. Peak RSS
  = the server's VmHWM at the end.
- Every sample is then checked to be stored (count over the whole range per server, via
  its PromQL API), and the bytes on disk are measured twice: the data directory as it
  stands after the run (VictoriaMetrics after /internal/force_flush; Prometheus: WAL and
  head chunks) and compacted (VictoriaMetrics after /internal/force_merge; Prometheus:
  an admin-API snapshot, which writes the head as a persistent block).

Binaries: Debian trixie's victoria-metrics 1.112 and prometheus 2.53.3, unpacked by
scripts/fetch-tools.sh into .cache/stack/ (the versions compose pins). Needs
python3-snappy (Debian). Writes the table into bench/RESULTS.md (`## central store`).
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import snappy

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.path.join(REPO, ".cache", "stack", "root", "usr", "bin")
SECTION = "## central store"

FAMILIES = [
    ("node_cpu_seconds_total", "cpu", 8, True), ("node_network_receive_bytes_total", "device", 6, True),
    ("node_network_transmit_bytes_total", "device", 6, True), ("node_disk_read_bytes_total", "device", 4, True),
    ("node_disk_written_bytes_total", "device", 4, True), ("node_filesystem_avail_bytes", "mountpoint", 6, False),
    ("node_memory_MemAvailable_bytes", None, 1, False), ("node_load1", None, 1, False),
    ("container_cpu_usage_seconds_total", "name", 20, True), ("container_memory_working_set_bytes", "name", 20, False),
    ("vigia_port_connections", "port", 30, False), ("vigia_ping_rtt_seconds_bucket", "le", 12, True),
    ("vigia_ping_last_rtt_seconds", "target", 40, False), ("vigia_capture_packets_total", "protocol", 8, True),
]


# --- remote write encoding (prometheus/prompb/remote.proto, types.proto) ---------------

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, wire, payload):
    if wire == 2:
        return varint(num << 3 | 2) + varint(len(payload)) + payload
    raise ValueError(wire)


def label(name, value):
    return field(1, 2, field(1, 2, name.encode()) + field(2, 2, value.encode()))


def sample(value, ts_ms):
    # Sample{double value = 1; int64 timestamp = 2;}
    return field(2, 2, b"\x09" + struct.pack("<d", value) + b"\x10" + varint(ts_ms))


def agent_series(agent, count):
    """(label bytes, is_counter, labels as dict) for `count` series of one agent, labels
    sorted by name as Prometheus requires."""
    out = []
    i = 0
    while len(out) < count:
        name, key, n, counter = FAMILIES[i % len(FAMILIES)]
        idx = i // len(FAMILIES)
        labels = {"__name__": name, "host": f"agent-{agent}", "instance": f"agent-{agent}:9472",
                  "job": "bench", "site": f"site-{agent % 5}"}
        if key:
            labels[key] = f"{key}{idx % n}"
        labels["series"] = str(idx)
        enc = b"".join(label(k, labels[k]) for k in sorted(labels))
        out.append((enc, counter))
        i += 1
    return out


def encode_agent(agent, series, rounds, step_s, end_ms, seed):
    rng = random.Random(seed * 7919 + agent)
    labels = agent_series(agent, series)
    values = [rng.randint(0, 10**6) if c else rng.uniform(0, 1000) for _, c in labels]
    bodies = []
    for r in range(rounds):
        ts = end_ms - (rounds - 1 - r) * step_s * 1000
        parts = []
        for i, (enc, counter) in enumerate(labels):
            if counter:
                values[i] += rng.randint(0, 50)
            else:
                values[i] = round(max(0.0, values[i] + rng.uniform(-5, 5)), 2)
            parts.append(field(1, 2, enc + sample(float(values[i]), ts)))
        bodies.append(snappy.compress(b"".join(parts)))
    return bodies


# --- servers -------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_hwm_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                pass
    return total


def get(url, data=None, timeout=120):
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


class Server:
    def __init__(self, kind, work):
        self.kind = kind
        self.port = free_port()
        self.data = os.path.join(work, kind)
        os.makedirs(self.data, exist_ok=True)
        self.log = open(os.path.join(work, f"{kind}.log"), "a")
        if kind == "victoriametrics":
            self.cmd = [os.path.join(BIN, "victoria-metrics"), f"-storageDataPath={self.data}",
                        f"-httpListenAddr=127.0.0.1:{self.port}", "-retentionPeriod=100y", "-search.latencyOffset=1s"]
            self.write_path = "/api/v1/write"
        else:
            cfg = os.path.join(work, "prometheus.yml")
            with open(cfg, "w") as f:
                f.write("global: {}\n")
            self.cmd = [os.path.join(BIN, "prometheus"), f"--config.file={cfg}", f"--storage.tsdb.path={self.data}",
                        f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-remote-write-receiver",
                        "--web.enable-admin-api", "--storage.tsdb.retention.time=100y"]
            self.write_path = "/api/v1/write"
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while True:
            try:
                get(self.url("/-/ready" if kind == "prometheus" else "/health"), timeout=2)
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise SystemExit(f"{kind} did not start; see {self.log.name}")
                time.sleep(0.2)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def query(self, expr, at):
        body = json.loads(get(self.url("/api/v1/query?" + urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"}))))
        assert body["status"] == "success", body
        return body["data"]["result"]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def push(server, bodies_per_agent):
    """Every agent on its own connection, its rounds in order, as fast as answered."""
    counts = [0] * len(bodies_per_agent)
    errors = []

    def agent(i, bodies):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        headers = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
                   "X-Prometheus-Remote-Write-Version": "0.1.0", "User-Agent": "vigia-bench-central"}
        for body in bodies:
            for attempt in range(5):
                try:
                    conn.request("POST", server.write_path, body=body, headers=headers)
                    resp = conn.getresponse()
                    text = resp.read()
                except (OSError, http.client.HTTPException) as e:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
                    if attempt == 4:
                        errors.append(f"agent {i}: {e}")
                        return
                    continue
                if resp.status // 100 == 2:
                    counts[i] += 1
                    break
                errors.append(f"agent {i}: HTTP {resp.status} {text[:200]!r}")
                return
        conn.close()

    threads = [threading.Thread(target=agent, args=(i, b)) for i, b in enumerate(bodies_per_agent)]
    cpu0, t0 = proc_cpu(server.proc.pid), time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.monotonic() - t0, proc_cpu(server.proc.pid) - cpu0
    return counts, errors, wall, cpu


def measure(kind, work, bodies, series, rounds, step_s, end_ms):
    server = Server(kind, work)
    own0 = time.process_time()
    counts, errors, wall, cpu = push(server, bodies)
    client_cpu = time.process_time() - own0
    if errors:
        server.stop()
        raise SystemExit(f"{kind}: {errors[:3]}")
    acked = sum(counts) * series
    hwm = proc_hwm_mib(server.proc.pid)
    # Every sample stored: count over the whole pushed range, at its end.
    span = (rounds - 1) * step_s + 1
    if kind == "victoriametrics":
        get(server.url("/internal/force_flush"))
        time.sleep(2)
    stored = 0
    # Per family: count_over_time drops the name, so families would collide in one vector.
    for name in sorted({f[0] for f in FAMILIES}):
        got = server.query(f'sum(count_over_time({name}{{job="bench"}}[{span}s]))', end_ms / 1000)
        stored += int(float(got[0]["value"][1])) if got else 0
    if kind == "victoriametrics":
        # Its newest parts live in memory until they age or it stops: stopped, they are
        # written out (as a restart or a crash-free shutdown leaves them), then merged
        # by a second start.
        server.stop()
        running_bytes = du(server.data)
        server = Server(kind, work)
        month = datetime.datetime.fromtimestamp(end_ms / 1000, datetime.timezone.utc).strftime("%Y_%m")
        get(server.url(f"/internal/force_merge?partition_prefix={month}"))
        # force_merge returns before the merge ends: wait until the size settles.
        last, steady = -1, 0
        while steady < 3:
            time.sleep(2)
            now = du(server.data)
            steady = steady + 1 if now == last else 0
            last = now
        compact_bytes = du(os.path.join(server.data, "data")) + du(os.path.join(server.data, "indexdb"))
        server.stop()
    else:
        snap = json.loads(get(server.url("/api/v1/admin/tsdb/snapshot"), data=b""))["data"]["name"]
        compact_bytes = du(os.path.join(server.data, "snapshots", snap))
        server.stop()
        running_bytes = du(server.data) - compact_bytes
    return {"kind": kind, "acked": acked, "stored": stored, "wall": wall, "cpu": cpu, "hwm": hwm,
            "running_bytes": running_bytes, "compact_bytes": compact_bytes, "client_cpu": client_cpu}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=10)
    p.add_argument("--series", type=int, default=2000, help="series per agent")
    p.add_argument("--rounds", type=int, default=300, help="samples per series")
    p.add_argument("--step", type=int, default=10, help="seconds between a series' samples")
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--results", default=os.path.join(HERE, "..", "RESULTS.md"))
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args()
    if a.rounds * a.step > 3300:
        raise SystemExit("--rounds x --step must stay under 55 minutes: Prometheus' head takes an hour, and a "
                         "compaction during the run would be measured too")
    for b in ("victoria-metrics", "prometheus"):
        if not os.access(os.path.join(BIN, b), os.X_OK):
            raise SystemExit(f"{b} is missing from {BIN}: run scripts/fetch-tools.sh")
    end_ms = int(time.time() * 1000) // 1000 * 1000
    t = time.monotonic()
    bodies = [encode_agent(i, a.series, a.rounds, a.step, end_ms, a.seed) for i in range(a.agents)]
    total = a.agents * a.series * a.rounds
    wire = sum(len(b) for bs in bodies for b in bs)
    print(f"encoded {total:,} samples in {a.agents * a.rounds:,} requests ({wire / total:.2f} bytes a sample on the wire) "
          f"in {time.monotonic() - t:.0f} s", flush=True)
    load0 = os.getloadavg()[0]
    work = tempfile.mkdtemp(prefix="vigia-bench-central-")
    rows = []
    try:
        for kind in ("victoriametrics", "prometheus"):
            r = measure(kind, work, bodies, a.series, a.rounds, a.step, end_ms)
            print(f"{kind}: {r}", flush=True)
            if r["stored"] != total or r["acked"] != total:
                raise SystemExit(f"{kind}: {r['acked']:,} acknowledged, {r['stored']:,} stored, {total:,} sent")
            rows.append(r)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load1 = os.getloadavg()[0]
    lines = table(a, rows, total, wire, load0, load1)
    print("\n".join(lines))
    if not a.no_write:
        write_results(a.results, lines)


def table(a, rows, total, wire, load0, load1):
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    names = {"victoriametrics": "VictoriaMetrics 1.112 single node (`/api/v1/write`)",
             "prometheus": "Prometheus 2.53.3 `--web.enable-remote-write-receiver`"}
    out = [SECTION, "",
           f"`make bench-central`, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC (commit {rev}); "
           f"{os.cpu_count()} CPUs ({cpu_model}), Linux {platform.release()}; 1-minute load {load0:.2f} at the start, "
           f"{load1:.2f} at the end. {a.agents} simulated agents x {a.series:,} series x {a.rounds} samples "
           f"({a.step} s apart) = {total:,} samples in {a.agents * a.rounds:,} remote-write requests "
           f"({wire / total:.2f} bytes a sample on the wire, snappy), each server alone, the same bodies.", "",
           "| centre | samples/s ingested | CPU (cores) while ingesting | CPU-s per million samples | peak RSS (MiB) "
           "| stored / sent | bytes per sample on disk after the run | bytes per sample compacted |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {names[r['kind']]} | {r['acked'] / r['wall']:,.0f} | {r['cpu'] / r['wall']:.2f} | "
                   f"{r['cpu'] / (r['acked'] / 1e6):.2f} | {r['hwm']:.0f} | {r['stored']:,} / {r['acked']:,} | "
                   f"{r['running_bytes'] / total:.2f} | {r['compact_bytes'] / total:.2f} |")
    vm, pr = rows
    out += ["",
            f"- VictoriaMetrics took {vm['acked'] / vm['wall'] / (pr['acked'] / pr['wall']):.1f}x Prometheus' samples/s, "
            f"with {vm['cpu'] / vm['acked'] / (pr['cpu'] / pr['acked']):.2f}x its CPU per sample and "
            f"{vm['hwm'] / pr['hwm']:.2f}x its peak RSS; compacted, "
            f"{vm['compact_bytes'] / total:.2f} against {pr['compact_bytes'] / total:.2f} bytes a sample.",
            f"- The agents (one Python thread each, sending bodies encoded beforehand) used "
            f"{vm['client_cpu'] / vm['wall']:.2f} and {pr['client_cpu'] / pr['wall']:.2f} cores of the same 2: the "
            "rates are what the server took while sharing the machine with its senders, as a one-server NOC does "
            "with its vmagent and vmauth.",
            "- After the run: each data directory after a clean stop, before any merge or compaction (VictoriaMetrics "
            "writes its in-memory parts out; Prometheus keeps WAL and head chunks, the last two hours before they "
            "become a block). Compacted: VictoriaMetrics started again and `/internal/force_merge`d (data and "
            "indexdb); Prometheus: an admin-API snapshot, the head written as a persistent block (chunks and index).",
            "- Method: `bench/central/bench.py` (docstring). Each sample was checked stored "
            "(`count_over_time` over the whole range, summed per family, on each server equals what was sent).", ""]
    return out


def write_results(path, lines):
    """Replaces the `## central store` section of `path`, keeping every other section."""
    old = open(path).read().splitlines() if os.path.exists(path) else ["# Benchmarks", ""]
    start = next((i for i, l in enumerate(old) if l.strip() == SECTION), None)
    if start is None:
        new = old + [""] + lines
    else:
        end = next((i for i in range(start + 1, len(old)) if old[i].startswith("## ")), len(old))
        new = old[:start] + lines + old[end:]
    with open(path, "w") as f:
        f.write("\n".join(new).rstrip() + "\n")


if __name__ == "__main__":
    sys.exit(main())
