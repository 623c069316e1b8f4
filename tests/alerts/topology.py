#!/usr/bin/env python3
"""`make alerts`: the alerting path for real, on network namespace hosts in 198.18.0.0/15.

A router namespace host with 30 device hosts behind it (its LAN, a bridge), single leaf
hosts, and one host carrying 60 addresses, probed by the real vigia-ping (parents in its
targets file), scraped by a real Prometheus running vigia's rules, alerting a real
Alertmanager running the configuration alertmanager/render.sh writes, which delivers to a
real SMTP server (aiosmtpd) and to local HTTP receivers standing in for Telegram and
Discord (tests/e2e/standins/). What is counted is what an operator receives.

  A. single devices: a device behind the router goes down while the router answers, and
     a leaf at another site: one message each, then one resolved each; a site in a
     maintenance window (alertmanager/maintenance.txt's format, silenced by
     maintenance.sh): nothing; a device that bounces: one message, as flapping.
  B. the router's link goes down: one message per channel naming the router and the 30
     devices behind it, then one resolved message each.
  C. 60 leaves without a parent, at 12 sites, at once: one message per channel (the
     storm guard), then one resolved.

The timings are the test's own copies (1 s rounds and scrapes, `for: 5s`, a 1-minute
flap window, group_wait 3 s, group_interval 4 s); the shipped rules and routes are what
promtool and amtool test in `make validate`. Needs root, iproute2, the vigia-ping binary
(cargo build), .cache/stack/ (scripts/fetch-tools.sh) and python3-aiosmtpd.
"""

import contextlib
import ctypes
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / ".cache/stack/root/usr/bin"
PID = os.getpid()
TAG = f"{PID % 100000}"
DEVICES = [f"dev-{i:02d}" for i in range(1, 31)]
STORM_SITES = [f"s{i:02d}" for i in range(1, 13)]
STORM = [(f"leaf-{site}-{j}", site) for site in STORM_SITES for j in range(1, 6)]


def log(msg):
    print(f"{time.strftime('%H:%M:%S')} alerts: {msg}", flush=True)


class Failed(Exception):
    pass


def run(*args, check=True):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60)
    if check and p.returncode != 0:
        raise Failed(f"{' '.join(map(str, args))}: {p.stderr.strip()}")
    return p


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def wait_until(what, fn, timeout, interval=0.5):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            got = fn()
            if got:
                return got
        except (OSError, ValueError, KeyError) as e:
            last = e
        if time.monotonic() > deadline:
            raise Failed(f"timed out after {timeout} s waiting for {what}" + (f" ({last})" if last else ""))
        time.sleep(interval)


class Topology:
    """The namespace hosts. Names carry this process's id; everything goes on close()."""

    def __init__(self):
        self.namespaces = []
        self.host_links = []
        self.base = self.free_block()
        b = int(self.base)
        addr = lambda off: str(ipaddress.IPv4Address(b + off))
        self.uplink_host, self.router = addr(1), addr(2)
        self.lan = f"{addr(256)}/24"
        self.router_lan = addr(257)
        self.devices = {name: addr(266 + i) for i, name in enumerate(DEVICES)}
        self.leaves_host = addr(513)
        self.storm = {name: addr(522 + i) for i, (name, _) in enumerate(STORM)}
        self.singles = {}  # name -> (host side, address)
        for i, name in enumerate(["leaf-norte", "obras-olt", "flappy"]):
            self.singles[name] = (addr(768 + 4 * i + 1), addr(768 + 4 * i + 2))

    @staticmethod
    def free_block():
        """A /22 of 198.18.0.0/16 that no address or route on this machine touches."""
        used = run("ip", "-4", "-o", "addr").stdout + run("ip", "-4", "route").stdout
        nets = [ipaddress.ip_network(m, strict=False) for m in re.findall(r"(\d+\.\d+\.\d+\.\d+(?:/\d+)?)", used)]
        for k in range(64):
            block = ipaddress.ip_network(f"198.18.{((PID + k * 7) % 50) * 4 + 8}.0/22")
            if not any(block.overlaps(n) for n in nets if n.version == 4):
                return block.network_address
        raise Failed("no free /22 in 198.18.0.0/16")

    def ns(self, suffix):
        name = f"vga{TAG}-{suffix}"
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        self.exec(name, "ip", "link", "set", "lo", "up")
        return name

    @staticmethod
    def exec(ns, *args, check=True):
        return run("ip", "netns", "exec", ns, *args, check=check)

    def veth(self, a, b):
        run("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        return a, b

    def build(self):
        # The router: uplink to this machine, a bridge for its LAN, forwarding between.
        self.router_ns = self.ns("r")
        up_h, up_r = self.veth(f"va{TAG}u", f"va{TAG}U")
        self.host_links.append(up_h)
        self.router_uplink = up_r
        run("ip", "link", "set", up_r, "netns", self.router_ns)
        run("ip", "addr", "add", f"{self.uplink_host}/30", "dev", up_h)
        run("ip", "link", "set", up_h, "up")
        r = self.router_ns
        self.exec(r, "ip", "addr", "add", f"{self.router}/30", "dev", up_r)
        self.exec(r, "ip", "link", "set", up_r, "up")
        self.exec(r, "ip", "link", "add", "br0", "type", "bridge")
        self.exec(r, "ip", "addr", "add", f"{self.router_lan}/24", "dev", "br0")
        self.exec(r, "ip", "link", "set", "br0", "up")
        self.exec(r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        run("ip", "route", "add", self.lan, "via", self.router, "dev", up_h)
        self.device_ns, self.device_link = {}, {}
        for i, name in enumerate(DEVICES, 1):
            d = self.ns(f"d{i:02d}")
            self.device_ns[name] = d
            inner, port = self.veth(f"va{TAG}d{i}", f"va{TAG}p{i}")
            run("ip", "link", "set", inner, "netns", d)
            run("ip", "link", "set", port, "netns", r)
            self.exec(r, "ip", "link", "set", port, "master", "br0")
            self.exec(r, "ip", "link", "set", port, "up")
            self.exec(d, "ip", "addr", "add", f"{self.devices[name]}/24", "dev", inner)
            self.exec(d, "ip", "link", "set", inner, "up")
            self.exec(d, "ip", "route", "add", "default", "via", self.router_lan)
            self.device_link[name] = inner
        # 60 leaves: 60 addresses of one host behind one link.
        self.leaves_ns = self.ns("l")
        lh, ln = self.veth(f"va{TAG}l", f"va{TAG}L")
        self.host_links.append(lh)
        self.leaves_link = ln
        run("ip", "link", "set", ln, "netns", self.leaves_ns)
        run("ip", "addr", "add", f"{self.leaves_host}/24", "dev", lh)
        run("ip", "link", "set", lh, "up")
        for a in self.storm.values():
            self.exec(self.leaves_ns, "ip", "addr", "add", f"{a}/24", "dev", ln)
        self.exec(self.leaves_ns, "ip", "link", "set", ln, "up")
        # Single hosts, each on a /30 of its own.
        self.single_ns, self.single_link = {}, {}
        for i, (name, (host_side, a)) in enumerate(self.singles.items()):
            n = self.ns(f"s{i}")
            h, inner = self.veth(f"va{TAG}s{i}", f"va{TAG}S{i}")
            self.host_links.append(h)
            run("ip", "link", "set", inner, "netns", n)
            run("ip", "addr", "add", f"{host_side}/30", "dev", h)
            run("ip", "link", "set", h, "up")
            self.exec(n, "ip", "addr", "add", f"{a}/30", "dev", inner)
            self.exec(n, "ip", "link", "set", inner, "up")
            self.single_ns[name], self.single_link[name] = n, inner

    def link(self, ns, dev, up):
        self.exec(ns, "ip", "link", "set", dev, "up" if up else "down")

    def echo(self, ns, answer):
        self.exec(ns, "sysctl", "-qw", f"net.ipv4.icmp_echo_ignore_all={0 if answer else 1}")

    def close(self):
        for name in reversed(self.namespaces):
            run("ip", "netns", "del", name, check=False)
        for link in self.host_links:
            run("ip", "link", "del", link, check=False)


class Stack:
    """vigia-ping, Prometheus, Alertmanager, the SMTP server and the chat receivers."""

    def __init__(self, topo, work):
        self.topo, self.work = topo, work
        self.procs = []
        self.ports = {k: free_port() for k in ("ping", "prom", "am", "smtp", "mail", "recv")}

    def spawn(self, name, args, env=None):
        logf = open(self.work / f"{name}.log", "w")
        p = subprocess.Popen([str(a) for a in args], stdout=logf, stderr=subprocess.STDOUT,
                             env=dict(os.environ, **(env or {})), cwd=self.work, preexec_fn=die_with_parent)
        self.procs.append((name, p))
        return p

    def start(self):
        w, t, ports = self.work, self.topo, self.ports
        py = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
        self.spawn("smtp", [py, ROOT / "tests/e2e/standins/smtp_sink.py"],
                   {"SMTP_BIND": "127.0.0.1", "SMTP_PORT": str(ports["smtp"]), "LISTING_PORT": str(ports["mail"])})
        self.spawn("receiver", [py, ROOT / "tests/e2e/standins/receiver.py"],
                   {"RECEIVER_BIND": "127.0.0.1", "RECEIVER_PORT": str(ports["recv"])})

        # vigia-ping: the targets file an operator writes, with parents.
        lines = [f"router-centro {t.router} site=centro kind=router"]
        lines += [f"{d} {a} site=centro kind=dslam parent=router-centro" for d, a in t.devices.items()]
        lines += [f"leaf-norte {t.singles['leaf-norte'][1]} site=norte kind=olt",
                  f"obras-olt {t.singles['obras-olt'][1]} site=obras kind=olt",
                  f"flappy {t.singles['flappy'][1]} site=oeste kind=cpe"]
        lines += [f"{n} {t.storm[n]} site={site} kind=cpe" for n, site in STORM]
        (w / "targets.txt").write_text("\n".join(lines) + "\n")
        now = datetime.now(timezone.utc).replace(microsecond=0)
        iso = lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")
        (w / "maintenance.txt").write_text(
            f"{iso(now - timedelta(minutes=1))} {iso(now + timedelta(hours=1))} site=obras cabinet works\n")
        (w / "ping.yaml").write_text(yaml.safe_dump({
            "socket": "raw",
            "defaults": {"interval": "1s", "count": 2, "timeout": "400ms", "down_after": 1},
            "targets_file": str(w / "targets.txt"),
            "maintenance_file": str(w / "maintenance.txt"),
            "transition_log": {"path": str(w / "transitions.jsonl")},
        }))
        self.spawn("vigia-ping", [ping_binary(), "--config.file", w / "ping.yaml",
                                  "--web.listen-address", f"127.0.0.1:{ports['ping']}"])

        # Prometheus with the test's copies of vigia's rules.
        rules = w / "rules"
        rules.mkdir()
        shutil.copy(ROOT / "prometheus/rules/recording.yml", rules)
        doc = yaml.safe_load((ROOT / "prometheus/rules/alerts.yml").read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                # Only the alerts under test: the 5-minute ones (loss, latency) keep their
                # `for`, or the test's own outages would page as loss afterwards.
                if rule["alert"] in ("PingTargetDown", "PingUplinkDown"):
                    rule["for"] = "5s"
                if rule["alert"] == "PingTargetFlapping":
                    rule["expr"] = rule["expr"].replace("[15m]", "[1m]")
                    # Firing until the test ends: it must page once, not resolve and refire.
                    rule["keep_firing_for"] = "10m"
                if rule["alert"] == "PingManySitesDown":
                    rule["keep_firing_for"] = "10s"
        (rules / "alerts.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
        (w / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{ports['am']}"]}]}]},
            "rule_files": [str(rules / "*.yml")],
            "scrape_configs": [{"job_name": "vigia-ping", "honor_labels": True, "static_configs": [
                {"targets": [f"127.0.0.1:{ports['ping']}"], "labels": {"host": "vigia", "site": "vigia"}}]}],
        }))
        self.spawn("prometheus", [STACK / "prometheus", f"--config.file={w / 'prometheus.yml'}",
                                  f"--storage.tsdb.path={w / 'tsdb'}", f"--web.listen-address=127.0.0.1:{ports['prom']}",
                                  # compose.yaml's resend delay is its evaluation interval.
                                  "--rules.alert.resend-delay=1s"])

        # Alertmanager with the configuration render.sh writes, timings shortened.
        secrets = w / "secrets"
        secrets.mkdir()
        (secrets / "telegram_bot_token").write_text("123456:alerts-test")
        (secrets / "discord_webhook_url").write_text(f"http://127.0.0.1:{ports['recv']}/api/webhooks/7/alerts-test")
        run("env", "-i", f"PATH={os.environ['PATH']}", f"VIGIA_SECRETS_DIR={secrets}", f"VIGIA_AM_RUN_DIR={w / 'am'}",
            f"VIGIA_AM_TEMPLATES={ROOT / 'alertmanager/templates'}", "VIGIA_AM_RENDER_ONLY=1",
            f"VIGIA_MAINTENANCE_FILE={w / 'maintenance.txt'}", f"SMTP_SMARTHOST=127.0.0.1:{ports['smtp']}",
            "ALERT_EMAIL_TO=noc@alerts.test", "SMTP_FROM=vigia@alerts.test", "GRAFANA_URL=http://grafana.test:3000",
            "TELEGRAM_CHAT_ID=-1007", f"TELEGRAM_API_URL=http://127.0.0.1:{ports['recv']}",
            "sh", ROOT / "alertmanager/render.sh")
        am_yml = w / "am/alertmanager.yml"
        cfg = yaml.safe_load(am_yml.read_text())
        for route in [cfg["route"]] + cfg["route"]["routes"]:
            route["group_wait"], route["group_interval"] = "3s", "4s"
            # The storm message is a snapshot of the sites firing when its group_wait
            # ends (Prometheus resends the alert, its list updated, every evaluation).
            # Shipped: 30 s, two evaluations, longer than an outage takes to show at every
            # site. Here evaluations are 1 s but 60 targets' rounds on a loaded 2-core
            # machine still spread over several seconds: 3 s named 7 of 12 sites.
            if any("PingManySitesDown" in m for m in route.get("matchers", [])):
                route["group_wait"] = "12s"
        am_yml.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.spawn("alertmanager", [ROOT / "tests/stack/run-alertmanager.sh", f"--config.file={am_yml}",
                                    f"--storage.path={w / 'am-data'}", f"--web.listen-address=127.0.0.1:{ports['am']}",
                                    "--cluster.listen-address="])
        self.spawn("maintenance", ["sh", ROOT / "alertmanager/maintenance.sh", "watch", w / "maintenance.txt"],
                   {"AMTOOL": str(STACK / "amtool"), "ALERTMANAGER_URL": f"http://127.0.0.1:{ports['am']}",
                    "VIGIA_MAINTENANCE_INTERVAL": "1"})

        wait_until("Prometheus and Alertmanager ready", lambda: self.ready(), timeout=60)
        wait_until("every target ok in Prometheus", lambda: self.prom_value(
            'count(vigia_ping_status{status="ok"} == 1)') == 1 + len(DEVICES) + 3 + len(STORM), timeout=60)
        wait_until("the maintenance silence", lambda: "obras" in json.dumps(
            http_json(f"http://127.0.0.1:{ports['am']}/api/v2/silences")), timeout=30)

    def ready(self):
        for name, p in self.procs:
            if p.poll() is not None:
                raise Failed(f"{name} exited {p.returncode}: {(self.work / f'{name}.log').read_text()[-2000:]}")
        for port, path in ((self.ports["prom"], "/-/ready"), (self.ports["am"], "/-/ready"),
                           (self.ports["ping"], "/-/ready"), (self.ports["recv"], "/_recorded"),
                           (self.ports["mail"], "/messages")):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2).read()
            except OSError:
                return False
        return True

    def prom_value(self, expr):
        body = http_json(f"http://127.0.0.1:{self.ports['prom']}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        res = body["data"]["result"]
        return float(res[0]["value"][1]) if res else None

    def status(self):
        return {t["name"]: t for t in http_json(f"http://127.0.0.1:{self.ports['ping']}/api/status")["targets"]}

    def messages(self):
        """Every message received so far: (arrival time, channel, text), by arrival."""
        out = [(m["received"], "email", m["subject"] + "\n" + m["text"])
               for m in http_json(f"http://127.0.0.1:{self.ports['mail']}/messages")]
        for r in http_json(f"http://127.0.0.1:{self.ports['recv']}/_recorded"):
            if r["path"].endswith("/sendMessage"):
                out.append((r["received"], "telegram", r["body"]["text"]))
            elif r["path"].startswith("/api/webhooks/"):
                out.append((r["received"], "discord", json.dumps(r["body"], ensure_ascii=False)))
        return sorted(out)

    def stop(self):
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for name, p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def die_with_parent():
    """In a child, before exec: SIGTERM when the test process dies, even by SIGKILL, so
    that no server outlives a killed run."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def ping_binary():
    target = json.loads(run("cargo", "metadata", "--format-version", "1", "--no-deps").stdout)["target_directory"]
    return Path(target) / "debug/vigia-ping"


CHANNELS = ("email", "telegram", "discord")


class Test:
    def __init__(self, stack):
        self.s = stack
        self.returned = []
        self.results = []

    def new_messages(self):
        """(channel, text) of the messages not returned before."""
        msgs = self.s.messages()
        new = [m for m in msgs if m not in self.returned]
        self.returned.extend(new)
        return [(channel, text) for _, channel, text in new]

    def collect(self, want, settle, timeout):
        """Messages until `want(messages)` holds, then `settle` seconds more (a second
        message, if any, would come then)."""
        got = []

        def enough():
            got.extend(self.new_messages())
            return want(got)
        try:
            wait_until("the messages", enough, timeout=timeout)
        except Failed as e:
            raise Failed(f"{e}; received meanwhile: {got}") from None
        time.sleep(settle)
        got.extend(self.new_messages())
        return got

    @contextlib.contextmanager
    def check(self, name):
        start = time.monotonic()
        try:
            yield
        except Failed as e:
            self.results.append((name, False, time.monotonic() - start))
            print(f"FAIL {name} ({time.monotonic() - start:.1f} s)\n    " + str(e).replace("\n", "\n    "), flush=True)
        else:
            self.results.append((name, True, time.monotonic() - start))
            print(f"PASS {name} ({time.monotonic() - start:.1f} s)", flush=True)

    @staticmethod
    def per_channel(msgs, needle):
        return {c: [t for ch, t in msgs if ch == c and needle in t] for c in CHANNELS}

    @staticmethod
    def resolved(text, needle):
        """Whether the alert lines naming `needle` in a message are resolved ones. A firing
        message can carry other, resolved alerts of its group: Prometheus sends a resolved
        alert again for 15 minutes (every evaluation, with compose.yaml's resend delay),
        and Alertmanager keeps such an alert in its group, so it is listed again."""
        tags = []
        # Email and Telegram lines end in newlines; Discord's text is JSON, "\\n" escaped.
        for line in re.split(r"\r?\n|\\n", text):
            i = line.find(needle)
            if i >= 0:
                tags += re.findall(r"\[([A-Z]+)\]", line[:i])[-1:]
        return bool(tags) and all(tag == "RESOLVED" for tag in tags)

    @staticmethod
    def one_each(msgs, needle, firing):
        counts = Test.per_channel(msgs, needle)
        kind = [t for c in CHANNELS for t in counts[c] if Test.resolved(t, needle) != firing]
        return all(len(counts[c]) >= 1 for c in CHANNELS) and len(kind) >= 3

    def exactly(self, msgs, needle, n, what):
        counts = self.per_channel(msgs, needle)
        bad = {c: len(v) for c, v in counts.items() if len(v) != n}
        if bad:
            raise Failed(f"{what}: {bad} messages naming {needle} (want {n} per channel); all: {msgs}")
        return counts

    def single_devices(self):
        t = self.s.topo
        with self.check("a device behind the answering router, and a leaf, down alone: one message each per channel; "
                        "a site in maintenance: none; a bouncing device: one, as flapping"):
            # dev-07 stops answering (its link stays up: the router still reaches it).
            t.echo(t.device_ns["dev-07"], False)
            t.link(t.single_ns["leaf-norte"], t.single_link["leaf-norte"], False)
            t.link(t.single_ns["obras-olt"], t.single_link["obras-olt"], False)
            stop = threading.Event()

            def bounce():
                ns = t.single_ns["flappy"]
                for _ in range(6):
                    if stop.is_set():
                        break
                    t.echo(ns, False)
                    time.sleep(2.2)
                    t.echo(ns, True)
                    time.sleep(2.2)
            flapper = threading.Thread(target=bounce)
            flapper.start()
            try:
                msgs = self.collect(lambda m: all(self.one_each(m, n, True) for n in ("dev-07", "leaf-norte", "flappy")),
                                    settle=8, timeout=60)
            finally:
                stop.set()
                flapper.join()
            status = self.s.status()
            if status["dev-07"]["status"] != "down":
                raise Failed(f"dev-07 is {status['dev-07']['status']}, not down: its parent answers")
            for name, alert in (("dev-07", "PingTargetDown"), ("leaf-norte", "PingTargetDown"), ("flappy", "PingTargetFlapping")):
                for c, texts in self.exactly(msgs, name, 1, name).items():
                    if alert not in texts[0] and c != "telegram":
                        raise Failed(f"{c} message for {name} is not {alert}: {texts[0]}")
            flap = self.per_channel(msgs, "flappy")["telegram"][0]
            if "is flapping" not in flap:
                raise Failed(f"flappy's message: {flap}")
            if any("obras" in text for _, text in msgs):
                raise Failed(f"a message about the site in maintenance: {[m for m in msgs if 'obras' in m[1]]}")
            if status["obras-olt"]["status"] != "down" or not status["obras-olt"].get("maintenance"):
                raise Failed(f"obras-olt on the board: {status['obras-olt']}")
            if self.s.prom_value('vigia_ping_maintenance{target="obras-olt"}') != 1:
                raise Failed("vigia_ping_maintenance{target=\"obras-olt\"} is not 1 in Prometheus")
            self.firing_single = msgs

        with self.check("they answer again: one resolved message each per channel, still none for the maintenance site"):
            t.echo(t.device_ns["dev-07"], True)
            t.link(t.single_ns["leaf-norte"], t.single_link["leaf-norte"], True)
            t.link(t.single_ns["obras-olt"], t.single_link["obras-olt"], True)
            msgs = self.collect(lambda m: all(self.one_each(m, n, False) for n in ("dev-07", "leaf-norte")),
                                settle=6, timeout=60)
            for name in ("dev-07", "leaf-norte"):
                for c, texts in self.exactly(msgs, name, 1, f"{name} resolved").items():
                    if not self.resolved(texts[0], name):
                        raise Failed(f"{c}: {texts[0]}")
            if any("obras" in text or "flappy" in text for _, text in msgs):
                raise Failed(f"unexpected messages: {msgs}")

    def uplink(self):
        t = self.s.topo
        with self.check("the router's link goes down: one message per channel naming the router and its 30 devices, "
                        "none of them down on its own"):
            wait_until("dev-07 ok again", lambda: self.s.status()["dev-07"]["status"] == "ok", timeout=20)
            started = time.time()
            t.link(t.router_ns, t.router_uplink, False)
            msgs = self.collect(lambda m: self.one_each(m, "router-centro", True), settle=8, timeout=60)
            counts = self.exactly(msgs, "router-centro", 1, "the uplink")
            for c, (text,) in counts.items():
                missing = [d for d in DEVICES if d not in text]
                if missing or "30 devices behind it" not in text or ("PingUplinkDown" not in text and c != "telegram"):
                    raise Failed(f"{c}: the message does not name the router and its 30 devices (missing {missing}): {text}")
            if len(msgs) != 3:
                raise Failed(f"{len(msgs)} messages in all, want 3: {msgs}")
            status = self.s.status()
            behind = {d: (status[d]["status"], status[d]["behind"]) for d in DEVICES}
            if any(v != ("unreachable", "router-centro") for v in behind.values()):
                raise Failed(f"the devices on the board: {behind}")
            if status["router-centro"]["status"] != "down":
                raise Failed(f"router-centro is {status['router-centro']['status']}")
            # The exporter's own record: every device went ok -> unreachable behind the
            # router, and none went down in between.
            log_lines = [json.loads(l) for l in (self.s.work / "transitions.jsonl").read_text().splitlines()]
            since = [r for r in log_lines if datetime.fromisoformat(r["time"].replace("Z", "+00:00")).timestamp() >= started - 1]
            downs = [r for r in since if r["target"] in DEVICES and r["to"] == "down"]
            unreach = {r["target"] for r in since if r["to"] == "unreachable" and r.get("behind") == "router-centro"}
            if downs or unreach != set(DEVICES):
                raise Failed(f"transition log: devices down {downs}, unreachable behind the router {sorted(unreach)}")

        with self.check("the router's link comes back: one resolved message per channel, nothing else"):
            t.link(t.router_ns, t.router_uplink, True)
            msgs = self.collect(lambda m: self.one_each(m, "router-centro", False), settle=6, timeout=60)
            for c, (text,) in self.exactly(msgs, "router-centro", 1, "the uplink resolved").items():
                if not self.resolved(text, "router-centro"):
                    raise Failed(f"{c}: {text}")
            if len(msgs) != 3:
                raise Failed(f"{len(msgs)} messages in all, want 3: {msgs}")

    def storm(self):
        t = self.s.topo
        with self.check(f"{len(STORM)} leaves without a parent at {len(STORM_SITES)} sites down at once: "
                        "one message per channel (PingManySitesDown), then one resolved"):
            wait_until("every centro device ok again",
                       lambda: all(self.s.status()[d]["status"] == "ok" for d in DEVICES), timeout=20)
            t.link(t.leaves_ns, t.leaves_link, False)
            msgs = self.collect(lambda m: self.one_each(m, "sites have ping targets down", True), settle=6, timeout=60)
            if len(msgs) != 3:
                raise Failed(f"{len(msgs)} messages in all, want 3 (one per channel): {msgs}")
            for c, (text,) in self.exactly(msgs, "sites have ping targets down", 1, "storm").items():
                # 12 sites, or 13 with the bouncing device's (its flapping alert is kept
                # firing); each site with the devices down when the guard fired.
                n = re.search(r"(\d+) sites have ping targets down", text)
                missing = [site for site in STORM_SITES if f"{site} (" not in text]
                if not n or int(n.group(1)) < len(STORM_SITES) or missing:
                    raise Failed(f"{c}: the storm message does not count and name the 12 sites (missing {missing}): {text}")
                if c == "email" and "PingManySitesDown" not in text:
                    raise Failed(f"email subject: {text}")
            t.link(t.leaves_ns, t.leaves_link, True)
            msgs = self.collect(lambda m: self.one_each(m, "sites have ping targets down", False), settle=6, timeout=60)
            if len(msgs) != 3 or not all(self.resolved(text, "sites have ping targets down") for _, text in msgs):
                raise Failed(f"after the leaves came back: {msgs} (want one resolved per channel)")


def main():
    # A stop (Ctrl-C, a CI timeout) still tears the namespaces and processes down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    if os.geteuid() != 0:
        print("make alerts: needs root (network namespaces, raw ICMP)", file=sys.stderr)
        return 1
    for tool in ("ip", "unshare"):
        if not shutil.which(tool):
            print(f"make alerts: '{tool}' is missing", file=sys.stderr)
            return 1
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="vigia-alerts-"))
    topo = Topology()
    stack = Stack(topo, work)
    test = Test(stack)
    ok = False
    try:
        topo.build()
        log(f"topology in {topo.base}/22: router {topo.router}, {len(DEVICES)} devices behind it, "
            f"{len(STORM)} leaves, {len(topo.singles)} single hosts")
        stack.start()
        log(f"stack up and every target ok after {time.monotonic() - started:.0f} s")
        if os.environ.get("VIGIA_ALERTS_ONLY") == "up":
            raise Failed("VIGIA_ALERTS_ONLY=up: the stack only")
        test.single_devices()
        test.uplink()
        test.storm()
        ok = all(r[1] for r in test.results)
    except Failed as e:
        print(f"stopped: {e}", flush=True)
    finally:
        if os.environ.get("VIGIA_ALERTS_KEEP"):
            log(f"kept for {os.environ['VIGIA_ALERTS_KEEP']} s: ports {stack.ports}, files in {work}")
            time.sleep(int(os.environ["VIGIA_ALERTS_KEEP"]))
        stack.stop()
        topo.close()
        if not ok:
            for f in sorted(work.glob("*.log")):
                print(f"--- {f.name} (last lines)")
                print("\n".join(f.read_text(errors="replace").splitlines()[-25:]))
        shutil.rmtree(work, ignore_errors=True)
    passed = sum(1 for r in test.results if r[1])
    print(f"{passed} passed, {len(test.results) - passed} failed, {time.monotonic() - started:.0f} s in all")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
