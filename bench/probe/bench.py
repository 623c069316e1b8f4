#!/usr/bin/env python3
"""vigia-ping's tcp and http probes against blackbox_exporter 0.26 (Debian trixie), in
the same run: 1,000 HTTP and 1,000 TCP targets on 127.0.0.0/8 probed every 10 s by each.

  - vigia-ping (release build) probes on its own schedule (interval 10 s) and is scraped
    by a Prometheus of its own every 10 s;
  - blackbox_exporter probes when scraped: a second Prometheus scrapes /probe for every
    target every 10 s (modules http_2xx and tcp_connect), as blackbox is deployed.

Both run at once against the same servers (one asyncio process: HTTP on :8080 answering
`200 ok`, TCP on :9000 accepting), so both see the same machine. After --warmup seconds,
a window of --duration seconds; over it:
  - CPU-s per minute: utime + stime of each process (/proc/PID/stat), per minute;
  - RSS at the end of the window and its peak (VmRSS, VmHWM);
  - probes run and probes failed: vigia from its counters (vigia_probe_attempts_total,
    vigia_probe_failures_total), blackbox from its Prometheus (probe_success samples and
    the zeros among them). Every server answers, so a failure is one the prober made up.

Traffic goes only to 127.0.0.0/8. Every loop is bounded in count and time.
"""

import argparse
import asyncio
import ctypes
import datetime
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024
HTTP_PORT = 8080
TCP_PORT = 9000
PR_SET_PDEATHSIG = 1
HEADING = "## vigia-ping probes vs blackbox_exporter"


class BenchError(Exception):
    pass


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vigia", required=True)
    p.add_argument("--blackbox", required=True)
    p.add_argument("--prometheus", required=True)
    p.add_argument("--targets", type=int, default=1000, help="HTTP targets, and as many TCP")
    p.add_argument("--interval", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=40.0)
    p.add_argument("--duration", type=float, default=120.0)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args()
    if not 1 <= a.targets <= 5000:
        p.error("--targets must be 1..5000")
    if not 10 <= a.duration <= 600:
        p.error("--duration must be 10..600 seconds")
    return a


def addresses(second_octet, n):
    return [f"127.{second_octet}.{i // 250}.{i % 250 + 1}" for i in range(n)]


def die_with_parent():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise BenchError(f"no {key} for pid {pid}")


def http_get(port, path, timeout=30.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read().decode("utf-8", "replace")
        if r.status != 200:
            raise BenchError(f"GET {path} on port {port}: HTTP {r.status}: {body[:200]}")
        return body
    finally:
        conn.close()


def metric_sum(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def start(argv, log, env=None):
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=die_with_parent, env=env)


def wait_http(proc, port, path, what, deadline_s=60.0):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with {proc.returncode}")
        try:
            return http_get(port, path, timeout=5)
        except (OSError, BenchError, http.client.HTTPException):
            time.sleep(0.2)
    raise BenchError(f"{what} did not answer {path} within {deadline_s:.0f} s")


def stop(proc):
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


SERVER = r'''
import asyncio, signal, sys, time
served = {"http": 0, "tcp": 0}
async def http(reader, writer):
    try:
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        served["http"] += 1
    except Exception:
        pass
    finally:
        writer.close()
async def tcp(reader, writer):
    served["tcp"] += 1
    try:
        await asyncio.wait_for(reader.read(1), 10)
    except Exception:
        pass
    finally:
        writer.close()
async def main():
    a = await asyncio.start_server(http, "0.0.0.0", int(sys.argv[1]), backlog=4096)
    b = await asyncio.start_server(tcp, "0.0.0.0", int(sys.argv[2]), backlog=4096)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    try:
        await asyncio.wait_for(stop.wait(), float(sys.argv[3]))
    except asyncio.TimeoutError:
        pass
    print(f"HTTP {served['http']:,} requests, TCP {served['tcp']:,} connections", flush=True)
asyncio.run(main())
'''


def vigia_config(path, http_addrs, tcp_addrs, interval):
    lines = [
        "socket: auto",
        f"defaults: {{interval: {interval:g}s, count: 1, timeout: 5s, warning_rtt: 1s}}",
        "targets:",
    ]
    for i, a in enumerate(http_addrs):
        lines.append(f"  - {{name: http-{i}, address: \"http://{a}:{HTTP_PORT}/\", probe: http}}")
    for i, a in enumerate(tcp_addrs):
        lines.append(f"  - {{name: tcp-{i}, address: \"{a}:{TCP_PORT}\", probe: tcp}}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


BLACKBOX_MODULES = """modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
  tcp_connect:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
"""


def prometheus_config(path, interval, jobs):
    """jobs: (name, metrics_path, params, targets, relabel_to) tuples."""
    cfg = {"global": {"scrape_interval": f"{interval:g}s", "scrape_timeout": "5s",
                      "evaluation_interval": "1m"},
           "scrape_configs": []}
    for name, metrics_path, module, targets, address in jobs:
        job = {"job_name": name, "metrics_path": metrics_path,
               "static_configs": [{"targets": targets}]}
        if module:
            job["params"] = {"module": [module]}
            job["relabel_configs"] = [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": address},
            ]
        cfg["scrape_configs"].append(job)
    with open(path, "w") as f:
        json.dump(cfg, f)  # JSON is YAML


def prom_query(port, expr):
    body = http_get(port, "/api/v1/query?query=" + urllib.parse.quote(expr))
    result = json.loads(body)["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def machine():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}"


def version(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        text = (out.stdout or out.stderr).strip().splitlines()
        return text[0] if text else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def write_results(path, lines):
    try:
        with open(path) as f:
            old = f.read().splitlines()
    except FileNotFoundError:
        old = ["# Benchmarks", ""]
    start_at = next((i for i, l in enumerate(old) if l.strip() == HEADING), None)
    if start_at is None:
        new = old + ([""] if old and old[-1] else []) + lines
    else:
        end = next((i for i in range(start_at + 1, len(old)) if old[i].startswith("## ")), len(old))
        new = old[:start_at] + lines + old[end:]
    with open(path, "w") as f:
        f.write("\n".join(new).rstrip("\n") + "\n")


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench-probe: terminated"))
    a = parse_args()
    http_addrs = addresses(21, a.targets)
    tcp_addrs = addresses(22, a.targets)
    work = tempfile.mkdtemp(prefix="vigia-bench-probe-")
    log = open(os.path.join(work, "bench.log"), "w")
    procs = {}
    try:
        life = a.warmup + a.duration + 120
        server = subprocess.Popen([sys.executable, "-c", SERVER, str(HTTP_PORT), str(TCP_PORT), str(life)],
                                  stdout=subprocess.PIPE, text=True, preexec_fn=die_with_parent)
        procs["server"] = server
        if server.stdout.readline().strip() != "ready":
            raise BenchError("the test servers did not start")

        vigia_port, bb_port, prom_v_port, prom_b_port = (free_port() for _ in range(4))
        vigia_config(os.path.join(work, "vigia.yaml"), http_addrs, tcp_addrs, a.interval)
        procs["vigia"] = start([a.vigia, "--config.file", os.path.join(work, "vigia.yaml"),
                                "--web.listen-address", f"127.0.0.1:{vigia_port}"], log)
        with open(os.path.join(work, "blackbox.yml"), "w") as f:
            f.write(BLACKBOX_MODULES)
        procs["blackbox"] = start([a.blackbox, "--config.file", os.path.join(work, "blackbox.yml"),
                                   "--web.listen-address", f"127.0.0.1:{bb_port}"], log)
        prometheus_config(os.path.join(work, "prom-vigia.yml"), a.interval,
                          [("vigia-ping", "/metrics", None, [f"127.0.0.1:{vigia_port}"], None)])
        prometheus_config(os.path.join(work, "prom-blackbox.yml"), a.interval, [
            ("blackbox-http", "/probe", "http_2xx", [f"http://{x}:{HTTP_PORT}/" for x in http_addrs],
             f"127.0.0.1:{bb_port}"),
            ("blackbox-tcp", "/probe", "tcp_connect", [f"{x}:{TCP_PORT}" for x in tcp_addrs],
             f"127.0.0.1:{bb_port}"),
        ])
        wait_http(procs["vigia"], vigia_port, "/metrics", "vigia-ping")
        wait_http(procs["blackbox"], bb_port, "/metrics", "blackbox_exporter")
        for side, port in (("vigia", prom_v_port), ("blackbox", prom_b_port)):
            procs[f"prom-{side}"] = start([
                a.prometheus, f"--config.file={work}/prom-{side}.yml",
                f"--storage.tsdb.path={work}/tsdb-{side}", f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h"], log)
        for side, port in (("vigia", prom_v_port), ("blackbox", prom_b_port)):
            wait_http(procs[f"prom-{side}"], port, "/-/ready", f"prometheus ({side})")

        print(f"bench-probe: {2 * a.targets:,} targets each, warming up {a.warmup:.0f} s", flush=True)
        time.sleep(a.warmup)
        measured = ["vigia", "blackbox", "prom-vigia", "prom-blackbox", "server"]
        load = os.getloadavg()[0]
        cpu0 = {k: cpu_seconds(procs[k].pid) for k in measured}
        m0 = http_get(vigia_port, "/metrics")
        t0 = time.monotonic()
        print(f"bench-probe: measuring {a.duration:.0f} s", flush=True)
        time.sleep(a.duration)
        elapsed = time.monotonic() - t0
        cpu1 = {k: cpu_seconds(procs[k].pid) for k in measured}
        m1 = http_get(vigia_port, "/metrics")
        rss = {k: status_kib(procs[k].pid, "VmRSS") * 1024 for k in measured}
        hwm = {k: status_kib(procs[k].pid, "VmHWM") * 1024 for k in measured}
        per_min = {k: (cpu1[k] - cpu0[k]) * 60.0 / elapsed for k in measured}

        v_attempts = metric_sum(m1, "vigia_probe_attempts_total") - metric_sum(m0, "vigia_probe_attempts_total")
        v_failed = metric_sum(m1, "vigia_probe_failures_total") - metric_sum(m0, "vigia_probe_failures_total")
        window = f"{int(elapsed)}s"
        b_probes = prom_query(prom_b_port, f"sum(count_over_time(probe_success[{window}]))")
        b_ok = prom_query(prom_b_port, f"sum(sum_over_time(probe_success[{window}]))")
        b_scrapes_failed = prom_query(prom_b_port, f"sum(count_over_time(up[{window}])) - sum(sum_over_time(up[{window}]))")
        v_scrapes = prom_query(prom_v_port, f"sum(count_over_time(up[{window}]))")
        v_scrape_s = prom_query(prom_v_port, "avg(scrape_duration_seconds)")
        v_reasons = {}
        for line in m1.splitlines():
            if line.startswith("vigia_probe_failures_total{"):
                reason = line.split('reason="', 1)[1].split('"', 1)[0]
                v_reasons[reason] = v_reasons.get(reason, 0) + float(line.rsplit(" ", 1)[1])
        results = {
            "per_min": per_min, "rss": rss, "hwm": hwm, "elapsed": elapsed, "load": load,
            "v_attempts": v_attempts, "v_failed": v_failed,
            "v_reasons": v_reasons, "b_probes": b_probes, "b_failed": b_probes - b_ok,
            "b_scrapes_failed": b_scrapes_failed, "v_scrapes": v_scrapes, "v_scrape_s": v_scrape_s,
        }
    finally:
        for k in ("prom-vigia", "prom-blackbox", "vigia", "blackbox"):
            stop(procs.get(k))
        served = ""
        if "server" in procs:
            stop(procs["server"])
            try:
                served = procs["server"].stdout.read().strip()
            except (OSError, ValueError):
                pass
        log.close()
    results["served"] = served
    report(a, results)


def report(a, r):
    n = 2 * a.targets
    pm, rss, hwm = r["per_min"], r["rss"], r["hwm"]
    ratio = pm["blackbox"] / pm["vigia"] if pm["vigia"] > 0 else float("inf")
    path_v = pm["vigia"] + pm["prom-vigia"]
    path_b = pm["blackbox"] + pm["prom-blackbox"]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rate = n / a.interval
    lines = [
        HEADING,
        "",
        f"`make bench-probe`, {now}, {machine()}. {a.targets:,} HTTP targets "
        f"(`http://127.21.x.y:{HTTP_PORT}/`) and {a.targets:,} TCP targets (`127.22.x.y:{TCP_PORT}`), "
        f"each probed every {a.interval:g} s ({rate:,.0f} probes/s) by both probers at once, in a network "
        f"namespace with only loopback, against one asyncio server (HTTP `200 ok`, TCP accept). "
        f"vigia-ping probes on its own schedule and a Prometheus scrapes its /metrics every {a.interval:g} s; "
        f"blackbox_exporter probes when scraped, and a second Prometheus scrapes /probe for every target "
        f"every {a.interval:g} s. {a.warmup:.0f} s warm-up, then a {r['elapsed']:.0f} s window "
        f"(1-minute load {r['load']:.1f} when it started). Goal from issue 13: at most 1/5 of "
        "blackbox_exporter's CPU, and no probe reported failed that succeeded.",
        "",
        "| process | CPU-s per minute | RSS | peak RSS | probes in the window | failed |",
        "|---|---:|---:|---:|---:|---:|",
        f"| vigia-ping | {pm['vigia']:.2f} | {rss['vigia'] / MIB:.1f} MiB | {hwm['vigia'] / MIB:.1f} MiB | "
        f"{r['v_attempts']:,.0f} | {r['v_failed']:,.0f} |",
        f"| blackbox_exporter 0.26 | {pm['blackbox']:.2f} | {rss['blackbox'] / MIB:.1f} MiB | "
        f"{hwm['blackbox'] / MIB:.1f} MiB | {r['b_probes']:,.0f} | {r['b_failed']:,.0f} |",
        f"| Prometheus scraping vigia-ping ({r['v_scrapes']:,.0f} scrapes) | {pm['prom-vigia']:.2f} | "
        f"{rss['prom-vigia'] / MIB:.1f} MiB | {hwm['prom-vigia'] / MIB:.1f} MiB | | |",
        f"| Prometheus scraping blackbox_exporter ({r['b_probes']:,.0f} scrapes) | {pm['prom-blackbox']:.2f} | "
        f"{rss['prom-blackbox'] / MIB:.1f} MiB | {hwm['prom-blackbox'] / MIB:.1f} MiB | | |",
        f"| the servers (both sides' probes) | {pm['server']:.2f} | {rss['server'] / MIB:.1f} MiB | | | |",
        "",
        f"- vigia-ping used 1/{ratio:.1f} of blackbox_exporter's CPU: "
        f"{'meets' if ratio >= 5 else 'MISSES'} the goal (at most 1/5). With each side's "
        f"Prometheus: {path_v:.2f} against {path_b:.2f} CPU-s per minute (1/{path_b / path_v:.1f}).",
        f"- Failed probes: vigia-ping {r['v_failed']:,.0f} of {r['v_attempts']:,.0f}"
        + (f" ({', '.join(f'{k}: {v:,.0f}' for k, v in sorted(r['v_reasons'].items()))} since start)"
           if r["v_reasons"] else "")
        + f", blackbox_exporter {r['b_failed']:,.0f} of {r['b_probes']:,.0f} "
        f"(scrapes that failed outright: {r['b_scrapes_failed']:,.0f}). Every server answered, so "
        + ("no probe was reported failed that succeeded." if r["v_failed"] == 0 and r["b_failed"] == 0
           else "every failure above is one the prober made up."),
        f"- vigia-ping's /metrics for {n:,} targets took {r['v_scrape_s'] * 1000:.0f} ms per scrape "
        "(Prometheus' scrape_duration_seconds).",
        f"- Servers' count of what they answered (both sides, whole run): {r['served'] or '?'}.",
        "- CPU-s per minute: utime + stime over the window (/proc/PID/stat), scaled to a minute; "
        "60 is one core busy. RSS: VmRSS at the window's end; peak: VmHWM.",
        "",
        "Versions: " + "; ".join([
            version([a.vigia, "--version"]), version([a.blackbox, "--version"]),
            version([a.prometheus, "--version"])]) + ".",
        "",
    ]
    print("\n".join(lines))
    if not a.no_write:
        write_results(os.path.join(ROOT, "bench", "RESULTS.md"), lines)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        sys.exit(f"bench-probe: {e}")
