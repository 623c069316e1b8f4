#!/usr/bin/env python3
"""vigia-ping under scrape load, and what a target costs.

Part 1, scrapes against probes: --targets loopback targets (5,000 by default) at a 1 s
interval, one request per round, warning_rtt 200 ms, while --scrapers clients fetch
/metrics back to back as Prometheus does (OpenMetrics, Accept-Encoding: gzip) for
--duration seconds. Every loopback address answers in microseconds, so any RTT of
milliseconds is time the reply waited for the prober, not the network. Over the window:
replies slower than 10 ms and 100 ms (from the histogram's buckets), the slowest last RTT
seen in any scrape, targets that turned warning (the transition log), scrape time.

Part 2, cost per target: the same binary at --cost-sizes targets (10 s interval): RSS
once every target has finished a round, peak RSS after one scrape, and the size of one
scrape (classic text, and gzipped). Cost per target = the difference between the two
sizes divided by the difference in targets, so fixed costs drop out.

Each row is run for this build and, with --baseline, for another vigia-ping binary (the
build before the change), one at a time, in the namespace bench/ping/run made.
Traffic goes only to 127.0.0.0/8; every loop is bounded in count and time.
"""

import argparse
import gzip
import http.client
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (helpers of the main ping benchmark)

SECTION = "## vigia-ping under scrape load"
PROM_ACCEPT = ("application/openmetrics-text;version=1.0.0,"
               "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
BUCKET_RE = re.compile(r'^vigia_ping_rtt_seconds_bucket\{.*le="([^"]+)".*\}\s+(\S+)')


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vigia", required=True)
    p.add_argument("--baseline", help="an older vigia-ping binary to run beside --vigia")
    p.add_argument("--targets", type=int, default=5000)
    p.add_argument("--scrapers", type=int, default=2)
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--cost-sizes", default="5000,20000")
    p.add_argument("--results", default=os.path.join(bench.HERE, "..", "RESULTS.md"))
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args()
    if not 1 <= a.targets <= 60000 or not 5 <= a.duration <= 300 or not 1 <= a.scrapers <= 8:
        p.error("--targets 1..60000, --duration 5..300, --scrapers 1..8")
    a.cost_sizes = [int(x) for x in a.cost_sizes.split(",")]
    if len(a.cost_sizes) != 2 or not all(1 <= n <= 60000 for n in a.cost_sizes):
        p.error("--cost-sizes takes two sizes, each 1..60000")
    return a


def write_config(path, addrs, interval, log=None):
    with open(path, "w") as f:
        f.write("socket: raw\ndefaults:\n")
        f.write(f"  interval: {interval}\n  count: 1\n  timeout: 1s\n  warning_rtt: 200ms\n")
        if log:
            f.write(f"transition_log: {{path: \"{log}\"}}\n")
        f.write("targets:\n")
        for i, addr in enumerate(addrs):
            f.write(f"  - name: t{i:05d}\n    address: {addr}\n")


def start(binary, cfg, workdir, name):
    port = bench.free_http_port()
    log = os.path.join(workdir, f"{name}.log")
    proc = subprocess.Popen(
        [binary, "--config.file", cfg, "--web.listen-address", f"{bench.LOOPBACK}:{port}"],
        stdout=subprocess.DEVNULL, stderr=open(log, "w"), preexec_fn=bench.die_with_parent)
    return proc, port, log


def wait_ready(proc, port, log, within):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise bench.BenchError(f"exited with {proc.returncode}:\n{bench.tail(log)}")
        try:
            conn = http.client.HTTPConnection(bench.LOOPBACK, port, timeout=5)
            conn.request("GET", "/-/ready")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise bench.BenchError(f"not ready within {within:.0f} s:\n{bench.tail(log)}")


def gzip_scrape(port):
    """One scrape as Prometheus makes it: (seconds, gzipped bytes, text)."""
    started = time.monotonic()
    conn = http.client.HTTPConnection(bench.LOOPBACK, port, timeout=60)
    try:
        conn.request("GET", "/metrics",
                     headers={"Accept": PROM_ACCEPT, "Accept-Encoding": "gzip"})
        r = conn.getresponse()
        raw = r.read()
        if r.status != 200:
            raise bench.BenchError(f"HTTP {r.status}")
        elapsed = time.monotonic() - started
        text = gzip.decompress(raw) if r.getheader("Content-Encoding") == "gzip" else raw
        return elapsed, len(raw), text.decode("utf-8", "replace")
    finally:
        conn.close()


def buckets(text):
    """Sum over targets of each `le` bucket of the RTT histogram."""
    out = {}
    for line in text.splitlines():
        m = BUCKET_RE.match(line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def max_last_rtt(text):
    best = 0.0
    for line in text.splitlines():
        if line.startswith("vigia_ping_last_rtt_seconds{"):
            best = max(best, float(line.rsplit(" ", 1)[1]))
    return best


def scrape_load(binary, label, a, workdir):
    addrs = bench.addresses(a.targets)
    cfg = os.path.join(workdir, f"{label}-load.yml")
    tlog = os.path.join(workdir, f"{label}-transitions.jsonl")
    write_config(cfg, addrs, "1s", tlog)
    proc, port, log = start(binary, cfg, workdir, f"{label}-load")
    try:
        wait_ready(proc, port, log, 60)
        time.sleep(5)
        before = buckets(bench.http_get(port, "/metrics", timeout=60))
        with open(tlog) as f:
            warnings_before = f.read().count('"to":"warning"')
        stop_at = time.monotonic() + a.duration
        results = []
        lock = threading.Lock()

        def scraper():
            n = 0
            while time.monotonic() < stop_at and n < 10000:
                r = gzip_scrape(port)
                with lock:
                    results.append((r[0], r[1], max_last_rtt(r[2])))
                n += 1

        threads = [threading.Thread(target=scraper) for _ in range(a.scrapers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Rounds still in flight at the window's end finish within the 1 s timeout.
        time.sleep(1.5)
        text = bench.http_get(port, "/metrics", timeout=60)
        after = buckets(text)
        with open(tlog) as f:
            warnings = f.read().count('"to":"warning"') - warnings_before
        replies = after["+Inf"] - before["+Inf"]
        over = lambda le: replies - (after[le] - before[le])  # noqa: E731
        return {
            "label": label,
            "scrapes": len(results),
            "scrape_median": statistics.median(r[0] for r in results),
            "scrape_max": max(r[0] for r in results),
            "gzip_bytes": statistics.median(r[1] for r in results),
            "replies": replies,
            "over_10ms": over("0.01"),
            "over_100ms": over("0.1"),
            "max_rtt": max(r[2] for r in results),
            "warnings": warnings,
            "in_warning_at_end": text.count('status="warning"} 1'),
        }
    finally:
        bench.stop(proc)


def cost(binary, label, n, workdir):
    addrs = bench.addresses(n)
    cfg = os.path.join(workdir, f"{label}-cost-{n}.yml")
    write_config(cfg, addrs, "10s")
    proc, port, log = start(binary, cfg, workdir, f"{label}-cost-{n}")
    try:
        wait_ready(proc, port, log, 120)
        time.sleep(1)
        rss = bench.status_kib(proc.pid, "VmRSS") * 1024
        plain = bench.http_get(port, "/metrics", timeout=120)
        _, gz, _ = gzip_scrape(port)
        peak = bench.status_kib(proc.pid, "VmHWM") * 1024
        return {"rss": rss, "peak": peak, "metrics": len(plain.encode()), "gzip": gz}
    finally:
        bench.stop(proc)


def mib(b):
    return f"{b / bench.MIB:.1f} MiB"


def main():
    a = parse_args()
    runs = [(a.vigia, "this build")]
    if a.baseline:
        runs.insert(0, (os.path.abspath(a.baseline), "before (baseline)"))
    load, costs = [], []
    with tempfile.TemporaryDirectory(prefix="vigia-bench-scrape-") as workdir:
        for binary, label in runs:
            key = "baseline" if label.startswith("before") else "current"
            print(f"scrape load: {label}", file=sys.stderr)
            r = scrape_load(binary, key, a, workdir)
            r["label"] = label
            load.append(r)
        for binary, label in runs:
            key = "baseline" if label.startswith("before") else "current"
            small, large = (cost(binary, key, n, workdir) for n in a.cost_sizes)
            d = a.cost_sizes[1] - a.cost_sizes[0]
            costs.append((label, small, large, {k: (large[k] - small[k]) / d for k in small}))
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [SECTION, "",
             f"`make bench-ping` (bench/ping/scrape_load.py), {when}, {bench.machine()}. "
             f"{a.targets:,} targets on 127.0.0.0/8 at a 1 s interval, one request per round, "
             f"`warning_rtt` 200 ms; {a.scrapers} clients scrape /metrics back to back as "
             f"Prometheus does (OpenMetrics, gzip) for {a.duration:.0f} s. A loopback reply "
             "takes microseconds: every RTT above that is time the reply waited for the prober.",
             "",
             "| build | scrapes | scrape time (median / max) | gzipped body | replies | RTT > 10 ms | RTT > 100 ms | slowest last RTT seen | targets turned warning |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in load:
        lines.append(
            f"| {r['label']} | {r['scrapes']} | {r['scrape_median']:.2f} s / {r['scrape_max']:.2f} s "
            f"| {mib(r['gzip_bytes'])} | {r['replies']:,.0f} | {r['over_10ms']:,.0f} "
            f"| {r['over_100ms']:,.0f} | {r['max_rtt'] * 1000:.2f} ms | {r['warnings']:,} |")
    lines += ["",
              f"Cost per target: the same builds at {a.cost_sizes[0]:,} and {a.cost_sizes[1]:,} "
              "targets (10 s interval), the difference divided by the difference in targets. "
              "RSS once every target has finished a round; peak RSS after one scrape; one "
              "scrape in the classic text format, and gzipped.",
              "",
              f"| build | RSS at {a.cost_sizes[1]:,} | peak RSS after a scrape | /metrics at {a.cost_sizes[1]:,} | RSS per target | peak per target | /metrics per target | gzipped per target |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, _, large, per in costs:
        lines.append(
            f"| {label} | {mib(large['rss'])} | {mib(large['peak'])} | {mib(large['metrics'])} "
            f"| {per['rss']:,.0f} B | {per['peak']:,.0f} B | {per['metrics']:,.0f} B "
            f"| {per['gzip']:,.0f} B |")
    print("\n".join(lines))
    if not a.no_write:
        bench.write_results(a.results, lines, SECTION)


if __name__ == "__main__":
    try:
        main()
    except bench.BenchError as e:
        bench.fail(str(e))
