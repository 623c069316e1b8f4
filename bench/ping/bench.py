#!/usr/bin/env python3
"""vigia-ping benchmark: CPU, peak memory and the share of replies counted, pinging the
same targets on 127.0.0.0/8 as its peers, one program at a time.

  - vigia-ping (release build): every target at a 1 s interval, one echo request per
    round, so one request per target per second; and once more at the seed's schedule
    (10 s interval, 5 requests per round);
  - smokeping_prober 0.9 (Debian trixie): the same targets, `interval: 1s`;
  - the seed's method: one `ping -c 5` process per target every 10 s. Run at a bounded
    scale (--seed-targets) and scaled to --targets linearly, which the table says.

Each exporter gets --warmup seconds after its /metrics first answers, then a window of
--duration seconds. Over the window:
  - CPU seconds: utime + stime of the process (/proc/PID/stat), per minute;
  - peak RSS: VmHWM (/proc/PID/status) at the end of the window;
  - replies counted: (replies at end - at start) / (requests at end - at start), from
    each program's own counters. Every address in 127.0.0.0/8 answers, so anything under
    100 % is loss the prober made up (in-flight requests at the window's edges are a few
    microseconds' worth on loopback).
For the seed's method: CPU is the sum of the ping processes' rusage; memory is the sum of
their proportional set sizes (Pss) sampled while a round is running, i.e. what the
concurrent processes really cost together; replies are parsed from ping's summary line.
The seed's bash loop and mailer are not counted: its numbers are a lower bound.

Traffic goes only to 127.0.0.0/8. Every loop is bounded in count and time.
Needs (Debian bookworm): iputils-ping; smokeping_prober comes from
bench/ping/fetch-smokeping-prober.
"""

import argparse
import ctypes
import datetime
import glob
import http.client
import os
import platform
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LOOPBACK = "127.0.0.1"
PR_SET_PDEATHSIG = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024

# The targets for vigia-ping.
TARGET_CPU_S_PER_MIN = 3.0
TARGET_REPLIES_COUNTED = 0.999
TARGET_RSS_MIB = 20.0

SHORT_NAMES = {
    "vigia": "vigia-ping raw",
    "vigia-dgram": "vigia-ping datagram",
    "vigia-seed": "vigia-ping at the seed's schedule",
    "smokeping": "smokeping_prober",
    "seed": "ping -c 5",
}

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
PING_SUMMARY_RE = re.compile(r'(\d+) packets transmitted, (\d+) (?:packets )?received')


class BenchError(Exception):
    pass


def fail(msg):
    print(f"bench-ping: {msg}", file=sys.stderr)
    sys.exit(1)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vigia", required=True, help="path of the vigia-ping release binary")
    p.add_argument("--smokeping", required=True, help="path of smokeping_prober")
    p.add_argument("--targets", type=int, default=1000)
    p.add_argument("--duration", type=float, default=60.0, help="measured window, seconds")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds before the window")
    p.add_argument("--seed-targets", type=int, default=100,
                   help="targets for the seed's method (one process per target)")
    p.add_argument("--only", action="append",
                   choices=["vigia", "vigia-dgram", "vigia-seed", "smokeping", "seed"],
                   help="run only these rows (repeatable)")
    p.add_argument("--results", default=os.path.join(HERE, "..", "RESULTS.md"),
                   help="Markdown file whose vigia-ping section is rewritten")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    a = p.parse_args()
    # The probers run in a scratch directory.
    a.vigia, a.smokeping = os.path.abspath(a.vigia), os.path.abspath(a.smokeping)
    if not 1 <= a.targets <= 65000:
        p.error("--targets must be 1..65000")
    if not 1 <= a.seed_targets <= min(a.targets, 500):
        p.error("--seed-targets must be 1..min(--targets, 500)")
    if not 10 <= a.duration <= 600:
        p.error("--duration must be 10..600 seconds")
    return a


def addresses(n):
    """n distinct loopback addresses, 127.10.0.1 upwards, skipping .0 and .255."""
    out = []
    for i in range(n):
        out.append(f"127.10.{i // 254}.{i % 254 + 1}")
    return out


def die_with_parent():
    """Runs in each child before exec: if the harness dies (even by SIGKILL), the kernel
    sends the child SIGTERM, so no prober outlives the run."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def free_http_port():
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        # The command name may contain spaces: fields are counted after its ')'.
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLK_TCK


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise BenchError(f"no {key} for pid {pid}")


def http_get(port, path, timeout=30.0):
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept": "text/plain"})
        r = conn.getresponse()
        body = r.read().decode("utf-8", "replace")
        if r.status != 200:
            raise BenchError(f"GET {path} on port {port}: HTTP {r.status}")
        return body
    finally:
        conn.close()


def metric_sum(text, name):
    """Sum of every sample of `name` (all label sets) in a text exposition."""
    total = 0.0
    found = False
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        if m and m.group(1) == name:
            total += float(m.group(3))
            found = True
    if not found:
        raise BenchError(f"no {name} in /metrics")
    return total


def wait_metrics(proc, name, port, log, deadline_s=30.0):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with {proc.returncode} at start:\n{tail(log)}")
        try:
            # smokeping_prober takes seconds to answer a scrape of 1,000 targets.
            return http_get(port, "/metrics", timeout=60.0)
        except (OSError, BenchError, http.client.HTTPException):
            time.sleep(0.2)
    raise BenchError(f"{name}: /metrics did not answer within {deadline_s:.0f} s:\n{tail(log)}")


def tail(path, lines=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def measure_exporter(name, argv, port, requests_metric, replies_metric, a, workdir,
                     warmup=None):
    """Starts one prober, lets it warm up, measures one window, stops it."""
    log = os.path.join(workdir, f"{name}.log")
    started = time.monotonic()
    with open(log, "w") as logf:
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, cwd=workdir,
                                preexec_fn=die_with_parent)
    try:
        # smokeping_prober starts its probers one by one before it listens: minutes for
        # thousands of targets.
        wait_metrics(proc, name, port, log, deadline_s=300.0)
        startup = time.monotonic() - started
        time.sleep(a.warmup if warmup is None else warmup)
        # CPU is read before each scrape so that the window holds exactly one scrape.
        load = os.getloadavg()[0]
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        text0 = http_get(port, "/metrics", timeout=60.0)
        time.sleep(max(0.0, t0 + a.duration - time.monotonic()))
        cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
        text1 = http_get(port, "/metrics", timeout=60.0)
        hwm = status_kib(proc.pid, "VmHWM") * 1024
        if proc.poll() is not None:
            raise BenchError(f"{name} exited during the run:\n{tail(log)}")
    finally:
        stop(proc)
    requests = metric_sum(text1, requests_metric) - metric_sum(text0, requests_metric)
    replies = metric_sum(text1, replies_metric) - metric_sum(text0, replies_metric)
    if requests <= 0:
        raise BenchError(f"{name} sent no echo requests in the window:\n{tail(log)}")
    minutes = (t1 - t0) / 60.0
    return {
        "cpu_per_min": (cpu1 - cpu0) / minutes,
        "rss": hwm,
        "requests": requests,
        "replies": replies,
        "rate": requests / (t1 - t0),
        "startup": startup,
        "load": load,
    }


def vigia_config(path, addrs, interval, count, socket_mode):
    with open(path, "w") as f:
        f.write(f"socket: {socket_mode}\n")
        f.write("defaults:\n")
        f.write(f"  interval: {interval}\n  count: {count}\n  timeout: 1s\n")
        f.write("targets:\n")
        for i, addr in enumerate(addrs):
            f.write(f"  - name: t{i:05d}\n    address: {addr}\n")


def smokeping_config(path, addrs):
    with open(path, "w") as f:
        f.write("targets:\n  - interval: 1s\n    network: ip4\n    protocol: icmp\n    hosts:\n")
        for addr in addrs:
            f.write(f"      - {addr}\n")


def parse_seconds(text):
    return float(text[:-1]) if text.endswith("s") else float(text)


def run_vigia(a, workdir, addrs, interval, count, name, socket_mode="raw"):
    cfg = os.path.join(workdir, f"{name}.yml")
    vigia_config(cfg, addrs, interval, count, socket_mode)
    port = free_http_port()
    argv = [a.vigia, "--config.file", cfg, "--web.listen-address", f"{LOOPBACK}:{port}"]
    # vigia counts a round when it ends, and the first rounds of the targets are spread
    # over one interval: the window starts once every target has finished one.
    warmup = max(a.warmup, 1.5 * parse_seconds(interval))
    r = measure_exporter(name, argv, port, "vigia_ping_requests_total",
                         "vigia_ping_replies_total", a, workdir, warmup)
    r["command"] = (f"vigia-ping --config.file {name}.yml  (socket: {socket_mode}; "
                    f"defaults: interval {interval}, count {count}, timeout 1s)")
    return r


def run_smokeping(a, workdir, addrs):
    cfg = os.path.join(workdir, "smokeping.yml")
    smokeping_config(cfg, addrs)
    port = free_http_port()
    argv = [a.smokeping, f"--config.file={cfg}", f"--web.listen-address={LOOPBACK}:{port}",
            "--privileged"]
    r = measure_exporter("smokeping_prober", argv, port, "smokeping_requests_total",
                         "smokeping_response_duration_seconds_count", a, workdir)
    r["command"] = "smokeping_prober --privileged --config.file smokeping.yml  (interval: 1s)"
    return r


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass  # The ping already finished.
    return 0


def run_seed(a, addrs):
    """The seed's method at len(addrs) targets: every 10 s one `ping -c 5` per target,
    all of a round in parallel (the seed's loop is sequential, which could not even
    finish a round of many targets in 10 s: this is the method's best case)."""
    rounds = max(1, int(a.duration // 10))
    transmitted = received = 0
    peak_pss = 0
    max_rss = 0
    # The probers measured before were children too: count only what this run adds.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    start = time.monotonic()
    for rnd in range(rounds):
        round_start = start + rnd * 10.0
        time.sleep(max(0.0, round_start - time.monotonic()))
        procs = [subprocess.Popen(["ping", "-n", "-q", "-c", "5", "-i", "1", "-W", "1", addr],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  preexec_fn=die_with_parent)
                 for addr in addrs]
        # Mid-round, every process of the round is alive.
        time.sleep(2.0)
        peak_pss = max(peak_pss, sum(pss_kib(p.pid) for p in procs) * 1024)
        for p in procs:
            try:
                max_rss = max(max_rss, status_kib(p.pid, "VmHWM") * 1024)
            except (OSError, BenchError):
                pass  # Already finished.
        for p in procs:
            try:
                out, _ = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
            m = PING_SUMMARY_RE.search(out.decode("utf-8", "replace"))
            if not m:
                raise BenchError(f"no summary from ping: {out!r}")
            transmitted += int(m.group(1))
            received += int(m.group(2))
    # subprocess reaped them all, so their CPU time is in RUSAGE_CHILDREN.
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    elapsed_min = rounds * 10.0 / 60.0
    return {
        "cpu_per_min": cpu / elapsed_min,
        "rss": peak_pss,
        "rss_one": max_rss,
        "requests": transmitted,
        "replies": received,
        "rate": transmitted / (rounds * 10.0),
        "command": "ping -n -q -c 5 -i 1 -W 1 ADDR, one per target every 10 s",
        "load": load,
    }


def datagram_allowed():
    """Whether this process's group may open ICMP datagram sockets here."""
    try:
        with open("/proc/sys/net/ipv4/ping_group_range") as f:
            low, high = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        return False
    return low <= os.getgid() <= high


def isolated():
    """Whether we run in a network namespace with nothing but loopback (bench/ping/run
    makes one): then no other program's ICMP reaches the probers' raw sockets."""
    try:
        return os.listdir("/sys/class/net") == ["lo"]
    except OSError:
        return False


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = status_kib("self", "VmRSS")  # touch /proc to fail early on odd systems
    del mem
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}"


def version(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        text = (out.stdout or out.stderr).strip().splitlines()
        return text[0] if text else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def pct(x):
    return f"{100.0 * x:.2f} %"


def table(rows):
    lines = [
        "| prober | targets | echo requests/s | CPU-s per minute | peak memory | replies counted |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, targets, r, note in rows:
        counted = r["replies"] / r["requests"] if r["requests"] else 0.0
        lines.append(
            f"| {label} | {targets:,} | {r['rate']:,.0f} | {r['cpu_per_min']:.2f} | "
            f"{r['rss'] / MIB:.1f} MiB{note} | {pct(counted)} |")
    return lines


def evaluate(results):
    notes = []
    v = results.get("vigia")
    if v:
        counted = v["replies"] / v["requests"]
        checks = [
            (f"CPU {v['cpu_per_min']:.2f} CPU-s/min", v["cpu_per_min"] <= TARGET_CPU_S_PER_MIN,
             f"<= {TARGET_CPU_S_PER_MIN}"),
            (f"replies counted {pct(counted)}", counted >= TARGET_REPLIES_COUNTED,
             f">= {pct(TARGET_REPLIES_COUNTED)}"),
            (f"peak RSS {v['rss'] / MIB:.1f} MiB", v["rss"] / MIB < TARGET_RSS_MIB,
             f"< {TARGET_RSS_MIB:.0f} MiB"),
        ]
        for what, ok, target in checks:
            notes.append(f"- vigia-ping {what}: {'meets' if ok else 'MISSES'} the target ({target}).")
    return notes


def section(rows, notes, a, results, versions):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    where = (" in a network namespace of its own (no other ICMP on its loopback)"
             if isolated() else " (not isolated: other ICMP on the machine reaches raw sockets)")
    out = [
        "## vigia-ping",
        "",
        f"`make bench-ping`, {now}, {machine()}. {a.targets:,} targets on 127.0.0.0/8, "
        f"each prober alone{where}, {a.warmup:.0f} s warm-up (15 s at a 10 s interval) then a {a.duration:.0f} s window. "
        "Targets from issue 3: at most 3 CPU-s per minute, at least 99.9 % of replies "
        "counted, under 20 MiB RSS.",
        "",
    ]
    out += table(rows)
    out += [""]
    out += notes
    out += [
        "",
        "How each row was measured:",
        "",
        "- CPU-s per minute: utime + stime of the prober's process over the window "
        "(/proc/PID/stat), scaled to one minute; 60 would be one core busy.",
        "- Peak memory: VmHWM of the prober's process. For the seed's method, the sum of "
        "the Pss of all `ping` processes alive mid-round (they share their libraries), "
        "times the scale factor.",
        "- Replies counted: replies over requests from the prober's own counters over the "
        "window (vigia: `vigia_ping_replies_total` / `vigia_ping_requests_total`; "
        "smokeping_prober: `smokeping_response_duration_seconds_count` / "
        "`smokeping_requests_total`; ping: its summary line). Every loopback address "
        "answers, so the rest is loss the prober made up.",
        "- 1-minute load average when each window started (other work on the machine "
        "skews CPU numbers): " + ", ".join(
            f"{SHORT_NAMES[k]} {r['load']:.1f}" for k, r in results.items()) + ".",
    ]
    seed = results.get("seed")
    if seed:
        out.append(
            f"- Seed's method: run with {a.seed_targets} targets ({seed['requests']:,} echo "
            f"requests), CPU and memory multiplied by {a.targets / a.seed_targets:g} for "
            f"{a.targets:,} targets (one process per target: linear). Each `ping` process "
            f"peaked at {seed['rss_one'] / MIB:.1f} MiB RSS. Its schedule is 5 requests per "
            "10 s (0.5 per second per target), and its bash loop, grep and mailer are not "
            "counted, so the row is a lower bound. Run sequentially as in the seed, one "
            "round of 1,000 targets would take over an hour.")
    out += [
        "",
        "Commands: " + "; ".join(f"`{r['command']}`" for r in results.values()) + ".",
        "Versions: " + "; ".join(versions) + ".",
        "",
    ]
    return out


def write_results(path, lines, heading="## vigia-ping"):
    """Replaces the `heading` section of `path`, keeping every other section."""
    try:
        with open(path) as f:
            old = f.read().splitlines()
    except FileNotFoundError:
        old = ["# Benchmarks", "",
               "Recorded by `make bench`; every section says how it was measured.", ""]
    start = next((i for i, l in enumerate(old) if l.strip() == heading), None)
    if start is None:
        new = old + ([""] if old and old[-1] else []) + lines
    else:
        end = next((i for i in range(start + 1, len(old)) if old[i].startswith("## ")),
                   len(old))
        new = old[:start] + lines + old[end:]
    with open(path, "w") as f:
        f.write("\n".join(new).rstrip("\n") + "\n")


def main():
    # `timeout` in bench/ping/run stops us with SIGTERM: turn it into SystemExit so the
    # finally blocks stop the probers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench-ping: terminated"))
    a = parse_args()
    only = set(a.only or ["vigia", "vigia-dgram", "vigia-seed", "smokeping", "seed"])
    if not isolated():
        print("bench-ping: not in a network namespace of its own: other ICMP traffic on the "
              "machine reaches the raw sockets (bench/ping/run isolates the run)", flush=True)
    for path in (a.vigia, a.smokeping):
        if not os.access(path, os.X_OK):
            fail(f"{path} is not an executable")
    if "seed" in only and subprocess.run(["sh", "-c", "command -v ping"],
                                         capture_output=True).returncode != 0:
        fail("ping not found: install the Debian package iputils-ping")
    addrs = addresses(a.targets)
    results = {}
    rows = []
    scale = a.targets / a.seed_targets
    with tempfile.TemporaryDirectory(prefix="vigia-bench-ping-") as workdir:
        try:
            if "vigia" in only:
                print(f"bench-ping: vigia-ping, {a.targets:,} targets at 1 s", flush=True)
                r = run_vigia(a, workdir, addrs, "1s", 1, "vigia-ping")
                results["vigia"] = r
                rows.append(("vigia-ping, raw socket, 1 s interval, 1 request per round",
                             a.targets, r, ""))
            if "vigia-dgram" in only:
                if datagram_allowed():
                    print(f"bench-ping: vigia-ping, datagram socket, {a.targets:,} targets at 1 s",
                          flush=True)
                    r = run_vigia(a, workdir, addrs, "1s", 1, "vigia-ping-datagram", "datagram")
                    results["vigia-dgram"] = r
                    rows.append(("vigia-ping, datagram socket, 1 s interval, 1 request per round",
                                 a.targets, r, ""))
                else:
                    print("bench-ping: skipping the datagram-socket row: this group is not in "
                          "net.ipv4.ping_group_range", flush=True)
            if "vigia-seed" in only:
                print(f"bench-ping: vigia-ping, {a.targets:,} targets at the seed's schedule",
                      flush=True)
                r = run_vigia(a, workdir, addrs, "10s", 5, "vigia-ping-seed-schedule")
                results["vigia-seed"] = r
                rows.append(("vigia-ping, raw socket, seed's schedule (10 s, 5 requests)",
                             a.targets, r, ""))
            if "smokeping" in only:
                print(f"bench-ping: smokeping_prober, {a.targets:,} targets at 1 s", flush=True)
                r = run_smokeping(a, workdir, addrs)
                results["smokeping"] = r
                rows.append(("smokeping_prober 0.9, 1 s interval", a.targets, r, ""))
            if "seed" in only:
                print(f"bench-ping: the seed's method, {a.seed_targets} targets", flush=True)
                r = run_seed(a, addrs[:a.seed_targets])
                results["seed"] = r
                scaled = dict(r)
                scaled["cpu_per_min"] = r["cpu_per_min"] * scale
                scaled["rss"] = r["rss"] * scale
                scaled["rate"] = r["rate"] * scale
                rows.append((f"seed: `ping -c 5` per target every 10 s (measured at "
                             f"{a.seed_targets}, scaled)", a.targets, scaled, ""))
        except (BenchError, OSError, subprocess.SubprocessError) as e:
            fail(str(e))
    versions = [version([a.vigia, "--version"]), version([a.smokeping, "--version"])]
    lines = table(rows)
    notes = evaluate(results)
    print()
    print("\n".join(lines))
    print()
    print("\n".join(notes))
    if not a.no_write:
        write_results(os.path.abspath(a.results), section(rows, notes, a, results, versions))
        print(f"\nbench-ping: wrote the vigia-ping section of {os.path.relpath(a.results)}")


if __name__ == "__main__":
    main()
