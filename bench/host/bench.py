#!/usr/bin/env python3
"""vigia-host benchmark: scrape latency, CPU time per scrape and peak RSS against
node_exporter with its default collectors, on the same machine in one run.

Both exporters run on loopback with their defaults (vigia-host: every collector,
containers included; node_exporter: its default collector set). They are scraped in
turns, one warm-up scrape each, then --scrapes timed scrapes each. A scrape is timed from
connect to the last byte of the body (plain text, no compression). CPU per scrape is the
exporter's utime + stime (from /proc/PID/stat) over the timed scrapes, divided by their
number; it includes whatever the exporter does in the background meanwhile. Peak RSS is
VmHWM from /proc/PID/status at the end.

Needs (Debian bookworm): prometheus-node-exporter, python3.
"""

import argparse
import datetime
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_EXPORTER = "prometheus-node-exporter"
PR_SET_PDEATHSIG = 1
# The targets: no slower per scrape than node_exporter, under 15 MiB RSS.
TARGET_RSS_MIB = 15.0


class BenchError(Exception):
    pass


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vigia", required=True, help="path of the vigia-host release binary")
    p.add_argument("--scrapes", type=int, default=200, help="timed scrapes per exporter")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument("--results", default=os.path.join(HERE, "..", "RESULTS.md"),
                   help="Markdown file whose vigia-host section is rewritten")
    a = p.parse_args()
    if not 1 <= a.scrapes <= 10000:
        p.error("--scrapes must be between 1 and 10000")
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


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench-host: terminated"))
    a = parse_args()
    if not os.access(a.vigia, os.X_OK):
        sys.exit(f"bench-host: {a.vigia} is not an executable")
    load_start = open("/proc/loadavg").read().split()[0]
    vport, nport = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="vigia-bench-host-") as work:
        env = dict(os.environ)
        env.pop("VIGIA_CONFIG_FILE", None)
        procs = {}
        try:
            procs["vigia-host"] = (start([a.vigia, f"--web.listen-address=127.0.0.1:{vport}"], vport, env), vport)
            procs["node_exporter"] = (start([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{nport}"], nport), nport)
            times = {k: [] for k in procs}
            sizes = {}
            cpu0 = {}
            for name, (proc, port) in procs.items():
                _, body = scrape(port)  # warm-up
                sizes[name] = (len(body), samples(body))
                cpu0[name] = cpu_seconds(proc.pid)
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
                })
        finally:
            for proc, _ in procs.values():
                proc.terminate()
            for proc, _ in procs.values():
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    lines = ["| exporter | scrape median | scrape p90 | CPU per scrape | peak RSS | body | samples |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['median_ms']:.2f} ms | {r['p90_ms']:.2f} ms | "
                     f"{r['cpu_ms']:.2f} ms | {r['rss_mib']:.1f} MiB | {r['bytes'] / 1024:.0f} KiB | {r['samples']} |")
    load_end = open("/proc/loadavg").read().split()[0]
    v, n = rows[0], rows[1]
    notes = [
        f"- Scrape latency: vigia-host {v['median_ms']:.2f} ms vs node_exporter {n['median_ms']:.2f} ms "
        f"(target: no slower): {'met' if v['median_ms'] <= n['median_ms'] else 'NOT met'}.",
        f"- Peak RSS: vigia-host {v['rss_mib']:.1f} MiB (target: under {TARGET_RSS_MIB:.0f} MiB): "
        f"{'met' if v['rss_mib'] < TARGET_RSS_MIB else 'NOT met'}.",
        "- The two expose different sets: node_exporter's defaults cover ~40 collectors "
        "(no containers); vigia-host covers its core set plus containers (the cgroup tree is "
        "walked every scrape, whether or not containers run), inventory (the process table), "
        "energy and anomaly.",
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
            f"kernel {platform.release()}; {a.scrapes} timed scrapes each, alternating, over loopback; "
            f"node_exporter: {version([NODE_EXPORTER, '--version'])}.", "",
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
