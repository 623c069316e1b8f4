#!/usr/bin/env python3
"""`make snmp-netns` (root: network namespaces): vigia's SNMP monitoring against real
servers. Two net-snmp agents (Debian's snmpd) in network namespaces are the devices; the
real snmp_exporter 0.28 (Debian trixie) runs with vigia's snmp/snmp.yml and the credentials
snmp/render.sh writes from secret files; a real Prometheus 2.53 (trixie) scrapes them with
the shipped `snmp` job (prometheus/prometheus.yml, pointed at this test's exporter and
targets file) and evaluates the shipped prometheus/rules/snmp.yml, with each `for:` cut to
4 s and SnmpDeviceRebooted's 15-minute window to 20 s (promtool tests the rules as shipped).
A real Alertmanager 0.28 with the configuration alertmanager/render.sh writes shows how
SNMP alerts inhibit each other.

    vsnmp-nms-<pid>   snmp_exporter, Prometheus, Alertmanager and this script (a private loopback)
      m1 198.18.0.1/30 ------ eth0 198.18.0.2/30   vsnmp-olt-<pid>  snmpd: v2c and v3
      c1 (no address)  ------ eth1                 its "uplink", taken down and up here
      m2 198.18.0.5/30 ------ eth0 198.18.0.6/30   vsnmp-rtr-<pid>  snmpd: v3, restarted

Every address lives inside the test's own namespaces, so nothing collides with another
test's (or another checkout's) routes. Checks print PASS/FAIL lines, then
"N passed, M failed".
"""

import calendar
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / ".cache/stack/root/usr/bin"
PROMETHEUS = STACK / "prometheus"
ALERTMANAGER = STACK / "prometheus-alertmanager"
SNMP_EXPORTER = STACK / "prometheus-snmp-exporter"
WORK = ROOT / "tests/out/snmp-netns"

PID = os.getpid()
NMS, OLT_NS, RTR_NS = f"vsnmp-nms-{PID}", f"vsnmp-olt-{PID}", f"vsnmp-rtr-{PID}"
NMS_OLT, OLT = "198.18.0.1", "198.18.0.2"
NMS_RTR, RTR = "198.18.0.5", "198.18.0.6"
EXPORTER = "127.0.0.1:9116"
PROM = "http://127.0.0.1:9090"
AM = "http://127.0.0.1:9093"
V3_USER = "vigia-test"

# The test's copy of the rules: shorter timers, same expressions.
TEST_FOR = 4.0
REBOOT_WINDOW = 20.0
SCRAPE = 2.0
EVAL = 1.0
# Between a sample and the evaluation that sees it, or the alert state it leads to.
SLACK = EVAL + 2.0


def log(msg):
    print(f"{time.strftime('%H:%M:%S')} snmp-netns: {msg}", flush=True)


class CheckFailed(Exception):
    pass


def require(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def run(*args, check=True, **kw):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60, **kw)
    if check and p.returncode != 0:
        raise CheckFailed(f"{' '.join(map(str, args))} exited {p.returncode}: {p.stderr.strip()[-1500:]}")
    return p


def http(url, timeout=30):
    """(status, body) of a GET, also for error statuses."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_until(what, fn, timeout, interval=0.25):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            got = fn()
            if got:
                return got
        except (OSError, ValueError, KeyError, CheckFailed) as e:
            last = e
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last})" if last else ""))
        time.sleep(interval)


# --- outside: the namespaces -------------------------------------------------------------

def outside():
    if os.geteuid() != 0:
        print("snmp-netns: needs root (network namespaces)", file=sys.stderr)
        return 1
    for tool in ("ip", "snmpd"):
        if not shutil.which(tool):
            print(f"snmp-netns: '{tool}' is missing (Debian packages iproute2, snmpd; see .ci/run)", file=sys.stderr)
            return 1
    fetch = subprocess.run([str(ROOT / "scripts/fetch-tools.sh")], capture_output=True, text=True)
    if fetch.returncode != 0:
        print(f"snmp-netns: scripts/fetch-tools.sh failed:\n{fetch.stdout}{fetch.stderr}", file=sys.stderr)
        return 1
    clear_dead_runs()
    # Interrupted (make stopped): still clean up below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        for ns in (NMS, OLT_NS, RTR_NS):
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        for ns, nms_if, dev_if, nms_addr, dev_addr in (
            (OLT_NS, "m1", "eth0", NMS_OLT, OLT),
            (OLT_NS, "c1", "eth1", None, None),
            (RTR_NS, "m2", "eth0", NMS_RTR, RTR),
        ):
            run("ip", "-n", NMS, "link", "add", nms_if, "type", "veth", "peer", "name", dev_if, "netns", ns)
            if nms_addr:
                run("ip", "-n", NMS, "addr", "add", f"{nms_addr}/30", "dev", nms_if)
                run("ip", "-n", ns, "addr", "add", f"{dev_addr}/30", "dev", dev_if)
            run("ip", "-n", NMS, "link", "set", nms_if, "up")
            run("ip", "-n", ns, "link", "set", dev_if, "up")
        env = dict(os.environ, VIGIA_SNMP_NETNS_INSIDE="1", VIGIA_SNMP_NETNS_PID=str(PID))
        return subprocess.run(["ip", "netns", "exec", NMS, sys.executable, __file__], env=env).returncode
    finally:
        for ns in (NMS, OLT_NS, RTR_NS):
            remove_namespace(ns)


def remove_namespace(ns):
    # Whatever of ours is still inside (the inner run stops its own children).
    for pid in run("ip", "netns", "pids", ns, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    run("ip", "netns", "del", ns, check=False)


def clear_dead_runs():
    """The namespaces (and agents in them) of a run that was killed: this test's names
    carry the pid of the run that made them."""
    for line in run("ip", "netns", "list", check=False).stdout.splitlines():
        m = re.match(r"(vsnmp-(?:nms|olt|rtr)-(\d+))\b", line)
        if not m:
            continue
        try:
            os.kill(int(m.group(2)), 0)
        except ProcessLookupError:
            log(f"removing {m.group(1)}, left by a run that is gone")
            remove_namespace(m.group(1))


# --- inside: the servers -----------------------------------------------------------------

class Servers:
    def __init__(self):
        self.procs = {}
        self.community = secrets.token_urlsafe(12)
        self.v3_auth = secrets.token_urlsafe(12)
        self.v3_priv = secrets.token_urlsafe(12)

    def spawn(self, name, args, env=None):
        logf = open(WORK / f"{name}.log", "ab")
        p = subprocess.Popen([str(a) for a in args], stdout=logf, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env)
        self.procs[name] = p
        return p

    def stop(self, name):
        p = self.procs.pop(name, None)
        if p and p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name)

    # A device: net-snmp's agent in its namespace, its ACL allowing the NMS side only.
    def snmpd(self, name, ns, addr, nms_addr, v2c, alias=None):
        d = WORK / name
        (d / "persist").mkdir(parents=True, exist_ok=True)
        lines = []
        if v2c:
            lines.append(f"rocommunity {self.community} {nms_addr}")
        lines += [f'createUser {V3_USER} SHA "{self.v3_auth}" AES "{self.v3_priv}"',
                  f"rouser {V3_USER} priv", f"sysName {name}", "sysLocation vigia snmp-netns test"]
        if alias:
            ifname, text = alias
            index = run("ip", "-n", ns, "-o", "link", "show", ifname).stdout.split(":", 1)[0]
            lines.append(f'override 1.3.6.1.2.1.31.1.1.1.18.{index} octet_str "{text}"')
        (d / "snmpd.conf").write_text("\n".join(lines) + "\n")
        env = dict(os.environ, SNMP_PERSISTENT_DIR=str(d / "persist"), MIBS="")
        return self.spawn(name, ["ip", "netns", "exec", ns, "snmpd", "-f", "-C", "-c", d / "snmpd.conf", "-I", "-smux",
                                 "-Lo", f"udp:{addr}:161"], env=env)

    def exporter(self):
        # The credentials as the container gets them: snmp/render.sh over secret files.
        sec = WORK / "secrets"
        sec.mkdir()
        (sec / "snmp_community").write_text(self.community + "\n")
        (sec / "snmp_v3_auth_password").write_text(self.v3_auth)
        (sec / "snmp_v3_priv_password").write_text(self.v3_priv)
        run("sh", ROOT / "snmp/render.sh", env={"PATH": os.environ["PATH"], "VIGIA_SECRETS_DIR": str(sec),
                                                "VIGIA_SNMP_RUN_DIR": str(WORK / "run"), "VIGIA_SNMP_RENDER_ONLY": "1",
                                                "SNMP_V3_USERNAME": V3_USER})
        # Mistyped credentials, as an operator might write them.
        (WORK / "wrong-auths.yml").write_text(yaml.safe_dump({"auths": {
            "wrong_community": {"version": 2, "community": secrets.token_urlsafe(12)},
            "wrong_v3": {"version": 3, "security_level": "authPriv", "username": V3_USER, "auth_protocol": "SHA",
                         "password": secrets.token_urlsafe(12), "priv_protocol": "AES", "priv_password": self.v3_priv},
        }}))
        self.spawn("snmp_exporter", [SNMP_EXPORTER, f"--config.file={ROOT / 'snmp/snmp.yml'}",
                                     f"--config.file={WORK / 'run/auths.yml'}", f"--config.file={WORK / 'wrong-auths.yml'}",
                                     f"--web.listen-address={EXPORTER}"])

    def alertmanager(self):
        """Alertmanager 0.28 with the configuration alertmanager/render.sh writes (email only)."""
        env = {"PATH": os.environ["PATH"], "VIGIA_SECRETS_DIR": str(WORK / "am-secrets"),
               "VIGIA_AM_RUN_DIR": str(WORK / "am"), "VIGIA_AM_TEMPLATES": str(ROOT / "alertmanager/templates"),
               "VIGIA_AM_RENDER_ONLY": "1", "SMTP_SMARTHOST": "127.0.0.1:2525"}
        (WORK / "am-secrets").mkdir()
        run("sh", ROOT / "alertmanager/render.sh", env=env)
        # Debian's build reads its default notification templates from
        # /usr/share/prometheus/alertmanager (upstream's embeds them): in a mount namespace of
        # its own, an empty /usr/share holds just those (nothing on this machine changes).
        script = ('mount -t tmpfs vigia-am /usr/share && mkdir -p /usr/share/prometheus/alertmanager'
                  ' && cp "$0"/default.tmpl "$0"/email.tmpl /usr/share/prometheus/alertmanager/ && exec "$@"')
        self.spawn("alertmanager", ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                                    ROOT / ".cache/stack/root/usr/share/prometheus/alertmanager",
                                    ALERTMANAGER, f"--config.file={WORK / 'am/alertmanager.yml'}",
                                    f"--storage.path={WORK / 'am-data'}", "--cluster.listen-address=",
                                    "--web.listen-address=127.0.0.1:9093"])

    def prometheus(self):
        shipped = yaml.safe_load((ROOT / "prometheus/prometheus.yml").read_text())
        job = next(j for j in shipped["scrape_configs"] if j["job_name"] == "snmp")
        job["scrape_interval"] = job["scrape_timeout"] = f"{SCRAPE:.0f}s"
        job["file_sd_configs"] = [{"files": [str(WORK / "targets/snmp.yml")], "refresh_interval": "1s"}]
        for r in job["relabel_configs"]:
            if r.get("replacement") == "snmp-exporter:9116":
                r["replacement"] = EXPORTER
        # The devices, written as an operator writes prometheus/targets/snmp.yml. The third
        # is device 1 again with no labels but its address (the defaults: v2c, if_mib, the
        # address as its name); the fourth has a wrong SNMPv3 passphrase.
        (WORK / "targets").mkdir()
        (WORK / "targets/snmp.yml").write_text(yaml.safe_dump([
            {"targets": [OLT], "labels": {"target": "olt-test", "site": "lab", "auth": "v2c", "module": "if_mib"}},
            {"targets": [RTR], "labels": {"target": "rtr-test", "site": "lab", "auth": "v3"}},
            {"targets": [OLT]},
            {"targets": [RTR], "labels": {"target": "rtr-badauth", "site": "lab", "auth": "wrong_v3"}},
        ]))
        rules = yaml.safe_load((ROOT / "prometheus/rules/snmp.yml").read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = f"{TEST_FOR:.0f}s"
                if rule.get("alert") == "SnmpDeviceRebooted":
                    require("[15m]" in rule["expr"], "SnmpDeviceRebooted has no 15m window to shorten")
                    rule["expr"] = rule["expr"].replace("[15m]", f"[{REBOOT_WINDOW:.0f}s]")
        (WORK / "rules.yml").write_text(yaml.safe_dump(rules))
        (WORK / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": f"{SCRAPE:.0f}s", "evaluation_interval": f"{EVAL:.0f}s"},
            "rule_files": [str(WORK / "rules.yml")],
            "scrape_configs": [job],
        }))
        self.spawn("prometheus", [PROMETHEUS, f"--config.file={WORK / 'prometheus.yml'}",
                                  f"--storage.tsdb.path={WORK / 'tsdb'}", "--web.listen-address=127.0.0.1:9090"])


# --- what an operator reads --------------------------------------------------------------

def prom(expr):
    status, body = http(f"{PROM}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    data = json.loads(body)
    require(status == 200 and data["status"] == "success", f"{expr}: {body[:500]}")
    return data["data"]["result"]


def samples(expr):
    """Raw samples [(t, value)] of the one series a range selector `expr` picks."""
    result = prom(expr)
    require(len(result) == 1, f"{expr}: {len(result)} series")
    return [(float(t), float(v)) for t, v in result[0]["values"]]


def alerts(name):
    """{frozenset of (target, ifName): alert} of the alerts named `name` Prometheus has now."""
    _, body = http(f"{PROM}/api/v1/alerts")
    out = {}
    for a in json.loads(body)["data"]["alerts"]:
        if a["labels"]["alertname"] == name:
            out[(a["labels"].get("target"), a["labels"].get("ifName"))] = a
    return out


def exporter_scrape(target, auth, timeout=30):
    url = f"http://{EXPORTER}/snmp?" + urllib.parse.urlencode({"target": target, "auth": auth, "module": "if_mib"})
    return http(url, timeout=timeout)


def oper_status(text, ifname):
    m = re.search(r'^ifOperStatus\{[^}]*ifName="' + re.escape(ifname) + r'"[^}]*\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else None


def rfc3339(ts):
    """Prometheus' activeAt (RFC 3339 with nanoseconds) as a Unix time."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", ts)
    require(m, f"activeAt {ts!r}")
    return calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + float("0." + (m.group(2) or "0"))


class Run:
    def __init__(self):
        self.s = Servers()
        self.results = []

    @contextlib.contextmanager
    def check(self, name):
        start = time.monotonic()
        try:
            yield
        except Exception as e:  # noqa: BLE001 - every failure is reported, then the run goes on
            detail = str(e) if isinstance(e, CheckFailed) else traceback.format_exc()
            self.results.append((name, False))
            print(f"FAIL {name} ({time.monotonic() - start:.1f} s)\n" + "\n".join("    " + l for l in detail.splitlines()), flush=True)
        else:
            self.results.append((name, True))
            print(f"PASS {name} ({time.monotonic() - start:.1f} s)", flush=True)

    def start(self):
        shutil.rmtree(WORK, ignore_errors=True)
        WORK.mkdir(parents=True)
        self.s.snmpd("olt-test", OLT_NS, OLT, NMS_OLT, v2c=True, alias=("eth1", "uplink to core"))
        self.s.snmpd("rtr-test", RTR_NS, RTR, NMS_RTR, v2c=False)
        self.s.exporter()
        self.s.prometheus()
        self.s.alertmanager()

    def first_polls(self):
        with self.check("both devices polled through the shipped snmp job: olt-test by v2c, rtr-test by SNMPv3 authPriv, "
                        "upstream if_mib names and labels"):
            wait_until("every interface of olt-test up in Prometheus", lambda: len(
                prom('ifOperStatus{job="snmp", target="olt-test"} == 1')) == 3, timeout=20)
            wait_until("rtr-test's sysUpTime in Prometheus", lambda: prom('sysUpTime{target="rtr-test", site="lab"}'), timeout=20)
            eth1 = prom('ifOperStatus{target="olt-test", ifName="eth1"}')
            require(len(eth1) == 1, f"eth1: {eth1}")
            labels = eth1[0]["metric"]
            want = {"job": "snmp", "instance": OLT, "target": "olt-test", "site": "lab", "host": "vigia",
                    "ifName": "eth1", "ifDescr": "eth1", "ifAlias": "uplink to core"}
            require(all(labels.get(k) == v for k, v in want.items()) and "ifIndex" in labels
                    and "auth" not in labels and "module" not in labels, f"labels {labels}, want {want} and an ifIndex")
            for expr in ('sysName{target="olt-test", sysName="olt-test"}', 'sysName{target="rtr-test", sysName="rtr-test"}',
                         'ifHighSpeed{target="olt-test", ifName="eth1"} == 10000',
                         'ifHCInOctets{target="olt-test", ifName="eth0"} > 0', 'ifType_info{target="olt-test", ifType="ethernetCsmacd"}',
                         'ifAdminStatus{target="rtr-test", ifName="eth0"} == 1',
                         'snmp_scrape_pdus_returned{target="rtr-test", module="if_mib"} > 0'):
                require(prom(expr), f"no {expr}")
            # No `target` given: the device is named by its address; auth and module default.
            wait_until("the entry with no labels polled as v2c / if_mib, named by its address", lambda: (
                prom(f'up{{job="snmp", target="{OLT}", instance="{OLT}"}} == 1')
                and prom(f'ifOperStatus{{target="{OLT}", ifName="eth1"}} == 1')), timeout=10)

    def wrong_credentials(self):
        with self.check("a wrong SNMPv3 passphrase is an error you can see: the target is down in Prometheus with the "
                        "exporter's error, and SnmpDeviceUnreachable fires for it"):
            def bad_target():
                _, body = http(f"{PROM}/api/v1/targets?state=active")
                for t in json.loads(body)["data"]["activeTargets"]:
                    if t["labels"].get("target") == "rtr-badauth" and t["health"] == "down":
                        return t
                return None
            t = wait_until("rtr-badauth down in Prometheus", bad_target, timeout=20)
            require("500" in t["lastError"], f"lastError {t['lastError']!r}")
            firing = wait_until("SnmpDeviceUnreachable firing for rtr-badauth", lambda: {
                k: a for k, a in alerts("SnmpDeviceUnreachable").items() if a["state"] == "firing"}, timeout=TEST_FOR + 15)
            require(set(firing) == {("rtr-badauth", None)}, f"SnmpDeviceUnreachable firing for {sorted(firing)}")
            require(firing[("rtr-badauth", None)]["annotations"]["summary"] == f"rtr-badauth ({RTR}) does not answer SNMP",
                    f"summary {firing[('rtr-badauth', None)]['annotations']['summary']!r}")
            status, body = exporter_scrape(RTR, "wrong_v3")
            require(status == 500 and "wrong digest" in body, f"exporter answered {status}: {body[-300:]}")
            require(re.search(r'msg="Error scraping target" auth=wrong_v3 .*err=".*wrong digest"',
                              (WORK / "snmp_exporter.log").read_text()), "no 'wrong digest' error in snmp_exporter's log")

    def inhibition(self):
        with self.check("Alertmanager (the shipped routing): a down interface silences the warnings of that interface, "
                        "not those of the device's other interfaces; a down ping target still silences its own warnings"):
            def alert(name, severity, target, **labels):
                return {"labels": {"alertname": name, "severity": severity, "target": target, **labels},
                        "annotations": {"summary": name}}
            sent = [
                alert("SnmpInterfaceDown", "critical", "olt-test", ifIndex="3", ifName="xe-0/0/1"),
                alert("SnmpInterfaceErrors", "warning", "olt-test", ifIndex="3", ifName="xe-0/0/1", direction="in"),
                # The parallel link the traffic moved to: must still be told.
                alert("SnmpInterfaceSaturated", "warning", "olt-test", ifIndex="4", ifName="xe-0/0/2", direction="out"),
                alert("PingTargetDown", "critical", "rtr-test"),
                alert("PingPacketLoss", "warning", "rtr-test"),
            ]
            wait_until("Alertmanager ready", lambda: http(f"{AM}/-/ready", timeout=2)[0] == 200, timeout=20)
            req = urllib.request.Request(f"{AM}/api/v2/alerts", data=json.dumps(sent).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
            with urllib.request.urlopen(req, timeout=10) as r:
                require(r.status == 200, f"POST /api/v2/alerts: {r.status}")

            def states():
                _, body = http(f"{AM}/api/v2/alerts")
                got = {a["labels"]["alertname"]: bool(a["status"]["inhibitedBy"]) for a in json.loads(body)}
                return got if len(got) == len(sent) else None
            want = {"SnmpInterfaceDown": False, "SnmpInterfaceErrors": True, "SnmpInterfaceSaturated": False,
                    "PingTargetDown": False, "PingPacketLoss": True}
            wait_until("the alerts in Alertmanager", states, timeout=10)
            # Inhibition is worked out as alerts are read: give it a moment to settle.
            with contextlib.suppress(CheckFailed):
                wait_until("the inhibitions expected", lambda: states() == want, timeout=3)
            got = states()
            require(got == want, f"inhibited: {got}, expected {want}")

    def direct_answers(self):
        """In a thread: snmp_exporter asked directly, as the runbook says. A wrong community
        gets no answer at all (the agent drops it), so that check takes the module's 4 x 5 s."""
        def work():
            with self.check("snmp_exporter answers v2c and v3 for olt-test; a wrong community is a 'request timeout' "
                            "error (HTTP 500) and a logged error"):
                for auth in ("v2c", "v3"):
                    status, body = exporter_scrape(OLT, auth)
                    require(status == 200 and oper_status(body, "eth0") == 1 and 'sysName{sysName="olt-test"} 1' in body,
                            f"auth {auth}: {status} {body[-300:]}")
                status, body = exporter_scrape(OLT, "wrong_community", timeout=40)
                require(status == 500 and "request timeout" in body, f"wrong community: {status} {body[-300:]}")
                require(re.search(r'auth=wrong_community .*err=".*request timeout',
                                  (WORK / "snmp_exporter.log").read_text()), "no timeout error in snmp_exporter's log")
                status, body = exporter_scrape(OLT, "no_such_auth")
                require(status == 400 and "Unknown auth 'no_such_auth'" in body, f"unknown auth: {status} {body}")
        t = threading.Thread(target=work)
        t.start()
        return t

    def reboot(self):
        """In a thread: rtr-test's agent restarts; SnmpDeviceRebooted fires, then clears when
        the (test's 20 s) window no longer holds the fall."""
        def work():
            with self.check("rtr-test's snmpd restarted: sysUpTime falls, SnmpDeviceRebooted fires at the first poll after "
                            "and clears when its window passes; never before, never for olt-test"):
                require(not alerts("SnmpDeviceRebooted"), f"SnmpDeviceRebooted before the restart: {alerts('SnmpDeviceRebooted')}")
                self.s.stop("rtr-test")
                t_restart = time.time()
                self.s.snmpd("rtr-test", RTR_NS, RTR, NMS_RTR, v2c=False)
                firing = wait_until("SnmpDeviceRebooted firing", lambda: alerts("SnmpDeviceRebooted"), timeout=15)
                require(set(firing) == {("rtr-test", None)}, f"SnmpDeviceRebooted for {sorted(firing)}")
                active = rfc3339(firing[("rtr-test", None)]["activeAt"])
                wait_until("SnmpDeviceRebooted resolved", lambda: not alerts("SnmpDeviceRebooted"), timeout=REBOOT_WINDOW + 15)
                up = samples(f'sysUpTime{{target="rtr-test"}}[{REBOOT_WINDOW + 60:.0f}s]')
                falls = [(a, b) for a, b in zip(up, up[1:]) if b[1] < a[1]]
                require(len(falls) == 1, f"sysUpTime falls {falls}")
                (t_before, _), (t_fall, v_fall) = falls[0]
                require(t_fall >= t_restart - 0.1 and v_fall < 1000, f"fall at {t_fall:.1f} to {v_fall}, restart at {t_restart:.1f}")
                require(t_fall <= active <= t_fall + SLACK, f"active at {active - t_fall:+.1f} s from the fall's sample")
                last = samples(f'ALERTS{{alertname="SnmpDeviceRebooted"}}[{REBOOT_WINDOW + 60:.0f}s]')[-1][0]
                clears = t_before + REBOOT_WINDOW
                require(clears - SLACK <= last <= clears + SLACK,
                        f"last firing evaluation {last - t_before:.1f} s after the sample before the fall, expected about {REBOOT_WINDOW:.0f} s")
                log(f"rtr-test: fall seen {t_fall - t_restart:.1f} s after the restart, alert active "
                    f"{active - t_fall:.1f} s after that sample, last firing {last - t_before:.1f} s after the sample before it")
        t = threading.Thread(target=work)
        t.start()
        return t

    def dashboard_queries(self):
        """Every PromQL query of the SNMP dashboard and the NOC board's SNMP panel, as
        Grafana sends them (variables at All), against this Prometheus while an interface
        is down: each must run (olt-test is listed twice, so a join that is not one-to-one
        per device fails here) and return data."""
        with self.check("every query of the SNMP dashboard and the NOC board's SNMP tiles runs and returns data "
                        "(a device listed twice included)"):
            sys.path.insert(0, str(ROOT / "tests/e2e"))
            from e2e import substitute  # noqa: E402 - the e2e test's own substitution, not a copy
            problems, run_ = [], 0
            for name in ("snmp.json", "noc.json"):
                d = json.loads((ROOT / "grafana/dashboards" / name).read_text())
                all_values = {v["name"]: v.get("allValue", ".*") for v in d.get("templating", {}).get("list", [])}
                for panel in d["panels"]:
                    for t in panel.get("targets", []):
                        expr = t.get("expr")
                        if not expr or (name == "noc.json" and "ifOperStatus" not in expr):
                            continue
                        q = substitute(expr, all_values)
                        now = time.time()
                        status, body = http(f"{PROM}/api/v1/query_range?" + urllib.parse.urlencode(
                            {"query": q, "start": f"{now - 60:.0f}", "end": f"{now:.0f}", "step": "2"}))
                        run_ += 1
                        if status != 200:
                            problems.append(f"{name} / {panel['title']}: HTTP {status} {body[:300]}: {q}")
                        elif not any(r["values"] for r in json.loads(body)["data"]["result"]):
                            problems.append(f"{name} / {panel['title']}: no data: {q}")
            require(run_ >= 15, f"only {run_} queries found")
            require(not problems, "\n".join(problems))

    def link_down_up(self):
        with self.check("olt-test's eth1 peer down then up: ifOperStatus 1 -> 2 -> 1 in snmp_exporter's output, "
                        "SnmpInterfaceDown fires for eth1 only after its `for` and resolves at the first poll that reads up"):
            seen = [oper_status(exporter_scrape(OLT, "v2c")[1], "eth1")]  # eth1 in the exporter's output, no repeats
            require(seen == [1], f"eth1 is {seen[0]} in the exporter's output before, not up (1)")
            require(not alerts("SnmpInterfaceDown"), f"SnmpInterfaceDown before the link went down: {alerts('SnmpInterfaceDown')}")

            def exporter_says(want):
                v = oper_status(exporter_scrape(OLT, "v2c")[1], "eth1")
                if not seen or seen[-1] != v:
                    seen.append(v)
                return v == want

            t_down = time.time()
            run("ip", "link", "set", "c1", "down")
            wait_until("eth1 down (2) in the exporter's output", lambda: exporter_says(2), timeout=30)
            log(f"eth1: 2 in snmp_exporter's output {time.time() - t_down:.1f} s after the peer went down")
            firing = wait_until("SnmpInterfaceDown firing for olt-test's eth1", lambda: (
                alerts("SnmpInterfaceDown").get(("olt-test", "eth1"), {}).get("state") == "firing"
                and alerts("SnmpInterfaceDown")), timeout=30 + TEST_FOR)
            t_firing = time.time()
            # olt-test, and the same device listed by its bare address.
            require(set(firing) == {("olt-test", "eth1"), (OLT, "eth1")}, f"SnmpInterfaceDown for {sorted(firing)}")
            a = firing[("olt-test", "eth1")]
            require(a["labels"]["severity"] == "critical" and a["annotations"]["summary"] == "olt-test: interface eth1 (uplink to core) is down",
                    f"alert {a['labels']} {a['annotations']}")
            self.dashboard_queries()

            t_up = time.time()
            run("ip", "link", "set", "c1", "up")
            wait_until("eth1 up (1) in the exporter's output", lambda: exporter_says(1), timeout=30)
            wait_until("SnmpInterfaceDown resolved", lambda: not alerts("SnmpInterfaceDown"), timeout=30)
            require(seen == [1, 2, 1], f"eth1 in the exporter's output: {seen}, expected 1, 2, 1")

            # The timeline as Prometheus stored it.
            window = f"[{time.time() - t_down + 30:.0f}s]"
            status = samples(f'ifOperStatus{{target="olt-test", ifName="eth1"}}{window}')
            p_down = next(t for t, v in status if t >= t_down - SCRAPE and v == 2)
            p_up = next(t for t, v in status if t > p_down and v == 1)
            require(all(v == 1 for t, v in status if t < p_down) and all(v == 2 for t, v in status if p_down <= t < p_up),
                    f"ifOperStatus samples {status}")
            active = rfc3339(a["activeAt"])
            require(p_down <= active <= p_down + SLACK, f"pending {active - p_down:+.1f} s from the first sample reading down")
            require(active + TEST_FOR <= t_firing + 0.5, "firing before its `for`")
            alerts_series = samples(f'ALERTS{{alertname="SnmpInterfaceDown", target="olt-test", alertstate="firing"}}{window}')
            first_firing, last_firing = alerts_series[0][0], alerts_series[-1][0]
            require(active + TEST_FOR - 0.1 <= first_firing <= active + TEST_FOR + SLACK,
                    f"firing {first_firing - active:.1f} s after pending, `for` is {TEST_FOR:.0f} s")
            require(p_up - SLACK <= last_firing <= p_up + 0.5,
                    f"last firing evaluation {last_firing - p_up:+.1f} s from the first sample reading up")
            others = prom(f'ALERTS{{alertname="SnmpInterfaceDown", ifName!="eth1"}}{window}')
            require(not others, f"other interfaces alerted: {[o['metric'] for o in others]}")
            log(f"eth1: Prometheus read down {p_down - t_down:.1f} s after the peer went down, pending "
                f"{active - p_down:.1f} s later, firing {first_firing - active:.1f} s after that; read up "
                f"{p_up - t_up:.1f} s after the peer came up, last firing evaluation {last_firing - p_up:+.1f} s from it")

    def main(self):
        started = time.monotonic()
        threads = []
        try:
            self.start()
            self.inhibition()
            self.first_polls()
            threads.append(self.direct_answers())
            threads.append(self.reboot())
            self.link_down_up()
            self.wrong_credentials()
            for t in threads:
                t.join()
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            self.results.append(("the run itself", False))
        finally:
            for t in threads:
                t.join(60)
            self.s.stop_all()
        passed = sum(1 for _, ok in self.results if ok)
        failed = len(self.results) - passed
        if failed:
            for name in ("snmp_exporter", "prometheus", "olt-test", "rtr-test"):
                f = WORK / f"{name}.log"
                if f.exists():
                    print(f"--- {name}.log (last lines) ---\n" + "\n".join(f.read_text(errors="replace").splitlines()[-15:]))
        print(f"{passed} passed, {failed} failed, {time.monotonic() - started:.0f} s in all")
        return 0 if failed == 0 and passed else 1


if __name__ == "__main__":
    if os.environ.get("VIGIA_SNMP_NETNS_INSIDE") == "1":
        PID = int(os.environ["VIGIA_SNMP_NETNS_PID"])
        NMS, OLT_NS, RTR_NS = f"vsnmp-nms-{PID}", f"vsnmp-olt-{PID}", f"vsnmp-rtr-{PID}"
        sys.exit(Run().main())
    sys.exit(outside())
