#!/usr/bin/env python3
"""Stack-like traffic in network namespaces, captured on `any` like the e2e host.

What a host running the vigia stack carries, made by real sockets between namespace
hosts in 198.18.60.0/24 behind a bridge (so, as with Docker's bridge, every packet between
two "containers" is seen on both of their veths):

- a Prometheus scraping 4 exporters over keep-alive connections, each at its own fixed
  interval between 10 and 15 s, bodies of 30 to 100 KB;
- 3 writers POSTing line-protocol batches to an InfluxDB every 5 to 10 s (keep-alive);
  while InfluxDB is down they retry every 2 s (SYN, RST), then flush what queued;
- Prometheus POSTing alerts to Alertmanager every 15 s, a Grafana-like poller opening a
  new connection to Prometheus every 2 to 6 s, pings to 3 devices every 10 s;
- optionally an InfluxDB outage and bursts of a few thousand small POSTs (a queue flushed);
- optionally attacks at given offsets: `nmap -sS -p 1-1000`, `hping3 --syn` bounded.

Every loop is bounded by the run's duration and by counts; nothing leaves the
namespaces (tcpdump runs in the namespace that plays the Docker host). Usage (root):

    stack_traffic.py run --seconds 3000 --out trace.pcap [--outage 900:60] \
        [--burst 961:3000] [--nmap 2500] [--hping 2560:3000] [--seed 2] \
        [--writers 6 --write-every 2:6] [--net 61]

Writes `trace.pcap` and `trace.events.json` (the Unix times of each event); replay it
with `vigia-capture --capture.file trace.pcap --exit-at-eof`. `--net N` uses
198.18.N.0/24 and namespace names ending in N, so two runs can share a machine. The two
50-minute captures behind exporters/capture/README.md's table were made with
`--outage 700:40 --burst 741:3000 --burst 1500:2000 --burst 2230:4000 --nmap 2700
--hping 2760:3000 --nmap 2900 --seed 1` and `--net 61 --writers 6 --write-every 2:6
--outage 900:60 --burst 961:3000 --burst 1800:5000 --nmap 2500 --hping 2560:3000
--nmap 2800 --hping 2900:5000 --seed 2`.
"""

import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "198.18.60"  # --net changes it (and the namespace names), for parallel runs
HOSTS = {
    # name: (last octet, role)
    "vsk-prom": 2,
    "vsk-exp": 3,
    "vsk-influx": 4,
    "vsk-am": 5,
    "vsk-dev": 6,
    "vsk-scan": 9,
}
CORE = "vsk-core"  # the Docker host: bridge, host-network exporters, the capture
EXTRA_DEVICES = [7, 8]  # more ping targets on vsk-dev


def addr(octet):
    return f"{PREFIX}.{octet}"


def use_net(net):
    """Addresses in 198.18.NET.0/24 and namespace names tagged with NET."""
    global PREFIX, HOSTS, CORE
    if net == 60:
        return
    PREFIX = f"198.18.{net}"
    HOSTS = {f"{name}{net}": octet for name, octet in HOSTS.items()}
    CORE = f"vsk-core{net}"


def ns_of(name):
    return next(n for n in list(HOSTS) + [CORE] if n.startswith(name))


def sh(*args, check=True):
    return subprocess.run(args, check=check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def in_ns(ns, *args):
    return ["ip", "netns", "exec", ns, *args]


# ---------------------------------------------------------------- roles (inside a netns)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sizes = (30_000, 100_000)
    rng = random.Random(0)

    def log_message(self, *a):
        pass

    def do_GET(self):
        lo, hi = self.sizes
        n = self.rng.randint(lo, hi)
        line = b"vigia_metric{label=\"value\"} 12345.678\n"
        body = (line * (n // len(line) + 1))[:n]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        if length:
            self.rfile.read(length)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


def role_serve(a):
    Handler.sizes = (a.lo, a.hi)
    Handler.rng = random.Random(a.seed)
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer((a.bind, a.port), Handler)
    server.timeout = 1
    deadline = time.time() + a.seconds
    while time.time() < deadline:
        server.handle_request()


class KeepAlive:
    """One persistent HTTP/1.1 connection, reopened after an error (as reqwest/Go do)."""

    def __init__(self, host, port):
        self.host, self.port, self.conn = host, port, None

    def request(self, method, path, body=None):
        for _ in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=3)
                self.conn.request(method, path, body=body)
                r = self.conn.getresponse()
                r.read()
                return True
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
        return False


def role_scrape(a):
    """Prometheus: one keep-alive connection per target, a fixed interval per target."""
    rng = random.Random(a.seed)
    deadline = time.time() + a.seconds
    targets = [t.rsplit(":", 1) for t in a.targets.split(",")]

    def scrape(host, port, interval, offset):
        c = KeepAlive(host, int(port))
        time.sleep(offset)
        for _ in range(int(a.seconds / interval) + 2):
            if time.time() >= deadline:
                break
            c.request("GET", "/metrics")
            time.sleep(interval)

    threads = []
    for host, port in targets:
        interval = rng.choice([10, 10, 15, 15, 12])
        t = threading.Thread(target=scrape, args=(host, port, interval, rng.uniform(0, interval)))
        t.daemon = True
        t.start()
        threads.append(t)
    # Alertmanager: Prometheus sends the firing alerts every 15 s.
    if a.alertmanager:
        am_host, am_port = a.alertmanager.rsplit(":", 1)
        am = KeepAlive(am_host, int(am_port))
        alert = json.dumps([{"labels": {"alertname": "TargetDown", "target": "olt-1"}}] * 3)

        def alerts():
            time.sleep(rng.uniform(0, 15))
            for _ in range(int(a.seconds / 15) + 2):
                if time.time() >= deadline:
                    break
                am.request("POST", "/api/v2/alerts", alert.encode())
                time.sleep(15)

        t = threading.Thread(target=alerts)
        t.daemon = True
        t.start()
        threads.append(t)
    for t in threads:
        t.join(max(0.0, deadline - time.time()) + 5)


def role_poll(a):
    """Grafana-like: a new short connection to a target every 2 to 6 s."""
    rng = random.Random(a.seed)
    host, port = a.target.rsplit(":", 1)
    deadline = time.time() + a.seconds
    for _ in range(int(a.seconds / 2) + 1):
        if time.time() >= deadline:
            break
        c = KeepAlive(host, int(port))
        c.request("GET", "/api/v1/query?query=up")
        if c.conn:
            c.conn.close()
        time.sleep(rng.uniform(2, 6))


def role_write(a):
    """The kit's InfluxDB writer: a batch every 5-10 s, retry every 2 s while the server is
    down, then flush what queued; `--bursts T:N,...` sends N small batches at offset T."""
    rng = random.Random(a.seed)
    host, port = a.target.rsplit(":", 1)
    c = KeepAlive(host, int(port))
    start = time.time()
    deadline = start + a.seconds
    bursts = []
    for b in filter(None, (a.bursts or "").split(",")):
        t, n = b.split(":")
        bursts.append((float(t), int(n)))
    queue = 0
    next_batch = start + rng.uniform(0, a.every_hi)
    sent = 0
    while time.time() < deadline and sent < 200_000:
        now = time.time()
        while bursts and now - start >= bursts[0][0]:
            _, n = bursts.pop(0)
            # A flushed queue: small batches back to back, over connections the pool
            # opens and drops as it goes.
            flush = KeepAlive(host, int(port))
            for i in range(n):
                if i % rng.randint(5, 30) == 0 and flush.conn is not None:
                    flush.conn.close()
                    flush.conn = None
                flush.request("POST", "/write?db=vigia", b"m,host=h v=1i 1\n" * rng.randint(1, 4))
                sent += 1
        if now >= next_batch:
            queue += 1
            next_batch = now + rng.uniform(a.every_lo, a.every_hi)
        if queue:
            body = b"vigia_flow,protocol=tcp,src=a,dst=b packets=12i,bytes=3400i 1\n"
            body *= rng.randint(a.lines_lo, a.lines_hi)
            if c.request("POST", "/write?db=vigia", body):
                queue -= 1
                sent += 1
                continue  # flush the queue back to back
            time.sleep(2)  # server down: retry with a fixed backoff
            continue
        time.sleep(0.1)


def role_ping(a):
    deadline = time.time() + a.seconds
    targets = a.targets.split(",")
    for _ in range(int(a.seconds / 10) + 1):
        if time.time() >= deadline:
            break
        for t in targets:
            subprocess.run(["ping", "-c", "1", "-W", "1", t], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        time.sleep(10)


# ---------------------------------------------------------------- orchestration (root ns)


def teardown():
    for ns in list(HOSTS) + [CORE]:
        sh("ip", "netns", "del", ns, check=False)


def setup():
    teardown()
    sh("ip", "netns", "add", CORE)
    core = lambda *a: sh(*in_ns(CORE, *a))
    core("ip", "link", "set", "lo", "up")
    core("ip", "link", "add", "br0", "type", "bridge")
    core("ip", "addr", "add", f"{addr(1)}/24", "dev", "br0")
    core("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
    core("ip", "link", "set", "br0", "up")
    for ns, octet in HOSTS.items():
        sh("ip", "netns", "add", ns)
        inside = lambda *a, ns=ns: sh(*in_ns(ns, *a))
        inside("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        inside("ip", "link", "set", "lo", "up")
        veth = f"v{octet}"
        core("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        core("ip", "link", "set", veth, "master", "br0")
        core("ip", "link", "set", veth, "up")
        inside("ip", "addr", "add", f"{addr(octet)}/24", "dev", "eth0")
        if ns.startswith("vsk-dev"):
            for extra in EXTRA_DEVICES:
                inside("ip", "addr", "add", f"{addr(extra)}/24", "dev", "eth0")
        inside("ip", "link", "set", "eth0", "up")
        inside("ip", "route", "add", "default", "via", addr(1))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("serve")
    r.add_argument("--bind", required=True)
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--lo", type=int, default=30_000)
    r.add_argument("--hi", type=int, default=100_000)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--seconds", type=float, required=True)
    r = sub.add_parser("scrape")
    r.add_argument("--targets", required=True)
    r.add_argument("--alertmanager")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--seconds", type=float, required=True)
    r = sub.add_parser("poll")
    r.add_argument("--target", required=True)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--seconds", type=float, required=True)
    r = sub.add_parser("write")
    r.add_argument("--target", required=True)
    r.add_argument("--every-lo", type=float, default=5)
    r.add_argument("--every-hi", type=float, default=10)
    r.add_argument("--lines-lo", type=int, default=20)
    r.add_argument("--lines-hi", type=int, default=200)
    r.add_argument("--bursts")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--seconds", type=float, required=True)
    r = sub.add_parser("ping")
    r.add_argument("--targets", required=True)
    r.add_argument("--seconds", type=float, required=True)
    r = sub.add_parser("run")
    r.add_argument("--seconds", type=float, required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--outage", help="OFFSET:SECONDS InfluxDB is down")
    r.add_argument("--burst", action="append", default=[], help="OFFSET:N small POSTs")
    r.add_argument("--nmap", action="append", default=[], type=float, help="OFFSET")
    r.add_argument("--hping", action="append", default=[], help="OFFSET:COUNT")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--net", type=int, default=60, help="use 198.18.NET.0/24")
    r.add_argument("--writers", type=int, default=3, help="InfluxDB writers")
    r.add_argument("--write-every", default="5:10", help="LO:HI seconds between batches")
    r = sub.add_parser("teardown")
    r.add_argument("--net", type=int, default=60)
    a = p.parse_args()
    if a.cmd == "run":
        use_net(a.net)
        return run(a)
    if a.cmd == "teardown":
        use_net(a.net)
        return teardown()
    {"serve": role_serve, "scrape": role_scrape, "poll": role_poll, "write": role_write,
     "ping": role_ping}[a.cmd](a)


def run(a):
    assert os.geteuid() == 0, "needs root (network namespaces, capture)"
    assert a.seconds <= 4 * 3600
    me = os.path.abspath(__file__)
    py = sys.executable
    secs = str(a.seconds + 5)
    setup()
    children = []

    def spawn(ns, *args):
        children.append(subprocess.Popen(in_ns(ns, *args), stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL))
        return children[-1]

    events = {"start": time.time()}
    cap = spawn(CORE, "timeout", str(a.seconds + 10), "tcpdump", "-i", "any", "-s", "256",
                "-w", a.out, "-U")
    time.sleep(1.5)
    seed = a.seed
    # Exporters: two containers on vsk-exp, two on the host network (vsk-core).
    for i, (ns, bind, port, lo, hi) in enumerate([
            (ns_of("vsk-exp"), addr(3), 9473, 30_000, 60_000),
            (ns_of("vsk-exp"), addr(3), 9474, 60_000, 100_000),
            (CORE, addr(1), 9100, 50_000, 90_000),
            (CORE, addr(1), 9475, 30_000, 45_000)]):
        spawn(ns, py, me, "serve", "--bind", bind, "--port", str(port), "--lo", str(lo),
              "--hi", str(hi), "--seed", str(seed * 10 + i), "--seconds", secs)
    spawn(ns_of("vsk-prom"), py, me, "serve", "--bind", addr(2), "--port", "9090", "--lo", "2000",
          "--hi", "6000", "--seconds", secs)
    spawn(ns_of("vsk-am"), py, me, "serve", "--bind", addr(5), "--port", "9093", "--lo", "200",
          "--hi", "400", "--seconds", secs)

    def influx(seconds):
        return spawn(ns_of("vsk-influx"), py, me, "serve", "--bind", addr(4), "--port", "8086",
                     "--lo", "100", "--hi", "200", "--seconds", str(seconds))

    influxd = influx(a.seconds + 5)
    time.sleep(1.0)
    t0 = time.time()
    events["t0"] = t0
    targets = ",".join([f"{addr(3)}:9473", f"{addr(3)}:9474", f"{addr(1)}:9100",
                        f"{addr(1)}:9475"])
    spawn(ns_of("vsk-prom"), py, me, "scrape", "--targets", targets, "--alertmanager",
          f"{addr(5)}:9093", "--seed", str(seed), "--seconds", str(a.seconds))
    # Grafana's queries to Prometheus (and the operator's browser): from the host.
    spawn(CORE, py, me, "poll", "--target", f"{addr(2)}:9090", "--seed", str(seed),
          "--seconds", str(a.seconds))
    bursts = ",".join(a.burst)
    every_lo, every_hi = a.write_every.split(":")
    writers = [(ns_of("vsk-exp"), (20, 200)), (ns_of("vsk-exp"), (5, 60)), (CORE, (10, 120))]
    for i in range(a.writers):
        ns, lines = writers[i % len(writers)]
        spawn(ns, py, me, "write", "--target", f"{addr(4)}:8086", "--lines-lo", str(lines[0]),
              "--lines-hi", str(lines[1]), "--every-lo", every_lo, "--every-hi", every_hi,
              "--seed", str(seed * 100 + i), "--seconds", str(a.seconds),
              *(["--bursts", bursts] if i == 0 and bursts else []))
    spawn(CORE, py, me, "ping", "--targets", ",".join(addr(o) for o in [6] + EXTRA_DEVICES),
          "--seconds", str(a.seconds))

    plan = []
    if a.outage:
        off, dur = (float(x) for x in a.outage.split(":"))
        plan.append((off, "outage", dur))
    for n in a.nmap:
        plan.append((n, "nmap", None))
    for h in a.hping:
        off, count = h.split(":")
        plan.append((float(off), "hping", int(count)))
    for b in a.burst:
        events.setdefault("burst", []).append(t0 + float(b.split(":")[0]))
    plan.sort()
    for off, kind, arg in plan:
        delay = t0 + off - time.time()
        if delay > 0:
            time.sleep(delay)
        if kind == "outage":
            influxd.send_signal(signal.SIGTERM)
            influxd.wait()
            events.setdefault("outage", []).append([time.time(), time.time() + arg])
            time.sleep(arg)
            influxd = influx(t0 + a.seconds + 5 - time.time())
        elif kind == "nmap":
            began = time.time()
            subprocess.run(in_ns(ns_of("vsk-scan"), "timeout", "60", "nmap", "-sS", "-Pn", "-n",
                                 "-p", "1-1000", "--max-retries", "1", addr(3)),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            events.setdefault("nmap", []).append([began, time.time()])
        elif kind == "hping":
            began = time.time()
            subprocess.run(in_ns(ns_of("vsk-scan"), "timeout", "30", "hping3", "--syn", "-q", "-p",
                                 "9473", "-c", str(arg), "-i", "u400", addr(3)),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            events.setdefault("hping", []).append([began, time.time()])
    delay = t0 + a.seconds - time.time()
    if delay > 0:
        time.sleep(delay)
    events["end"] = time.time()
    time.sleep(1)
    for c in children:
        if c is not cap and c.poll() is None:
            c.terminate()
    for c in children:
        if c is not cap:
            try:
                c.wait(10)
            except subprocess.TimeoutExpired:
                c.kill()
    cap.send_signal(signal.SIGINT)
    try:
        cap.wait(10)
    except subprocess.TimeoutExpired:
        cap.kill()
    teardown()
    with open(os.path.splitext(a.out)[0] + ".events.json", "w") as f:
        json.dump(events, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
