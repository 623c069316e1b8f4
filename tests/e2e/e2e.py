#!/usr/bin/env python3
"""`make e2e`: the whole stack from compose.yaml under a real Docker engine, with faults
injected, asserting what an operator would see. tests/e2e/run.sh starts the engine and
makes the images first; this runs the stack and the checks, one PASS/FAIL line each with
its measured time, then "N passed, M failed".

The stack is compose.yaml plus tests/e2e/compose.e2e.yaml (stand-ins for what cannot run
here: InfluxDB 2, Mailpit, Grafana, Telegram, Discord; the test's own ping targets and
secrets, SNMP devices). The test's ping device and its SNMP device (net-snmp's agent)
are network namespace hosts in 198.18.0.0/15; the engine's networks are in 198.19.0.0/16
(tests/e2e/dockerd.sh): no traffic leaves the machine.
"""

import base64
import contextlib
import email.message
import glob
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKER = os.environ.get("DOCKER", "docker")
COMPOSE_BIN = ROOT / ".cache/stack/root/usr/libexec/docker/cli-plugins/docker-compose"
PROJECT = "vigia-e2e"
VIGIA_IMAGE = os.environ.get("VIGIA_E2E_IMAGE", "vigia:e2e")
TOOLS_IMAGE = "vigia-e2e/tools:1"
WORK = ROOT / "tests/out/e2e"

# The namespace host the test takes down and brings back (seed 001's device).
NETNS = "vigia-e2e-olt"
VETH_HOST, VETH_NS = "ve2e-olt-h", "ve2e-olt-n"
HOST_SIDE, OLT_ADDR = "198.18.200.1", "198.18.200.2"
OLT = "olt-e2e"

# The SNMP device: a namespace host running net-snmp's agent, polled by the stack's
# snmp-exporter as SW (v2c) and SW_V3 (SNMPv3 authPriv). Its second interface, a customer
# port, is up on the device but its far end stays down: SnmpInterfaceDown fires for it.
SW_NETNS = "vigia-e2e-sw"
SW_VETH_HOST, SW_VETH_NS = "ve2e-sw-h", "ve2e-sw-n"
SW_PORT_HOST, SW_PORT_NS = "ve2e-swp-h", "ve2e-swp-n"
SW_HOST_SIDE, SW_ADDR = "198.18.200.5", "198.18.200.6"
SW, SW_V3 = "sw-e2e", "sw-e2e-v3"
SNMP_V3_USER = "vigia-e2e"

# An uplink with devices behind it (seed 001's site outage, issue 11): a router namespace
# host whose LAN (a bridge) holds a few device hosts, each with `parent=router-e2e`.
NETNS_ROUTER = "vigia-e2e-rtr"
VETH_RTR_HOST, VETH_RTR_NS = "ve2e-rtr-h", "ve2e-rtr-n"
RTR_HOST_SIDE, RTR_ADDR, RTR_LAN, RTR_LAN_ADDR = "198.18.201.1", "198.18.201.2", "198.18.202.0/24", "198.18.202.1"
ROUTER = "router-e2e"
CPES = {f"cpe-e2e-{i}": f"198.18.202.{10 + i}" for i in (1, 2, 3)}

# Ping schedule of ping/ping.yaml (10 s, 5 requests a round) and the rule's `for`.
PING_COUNT = 5
ALERT_FOR_S = 120


def log(msg):
    print(f"{time.strftime('%H:%M:%S')} e2e: {msg}", flush=True)


class CheckFailed(Exception):
    pass


def require(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args, check=True, timeout=600, **kw):
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise CheckFailed(f"{' '.join(map(str, args))} exited {p.returncode}: {p.stderr.strip()[-2000:]}")
    return p


# The basic auth the stack asks for, by "host:port" (the board and Prometheus): every
# request there sends it, as Grafana and a NOC's browser do, unless a check says otherwise.
CREDENTIALS = {}
WEB_USER = "vigia"


def basic_auth(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def http(url, data=None, headers=None, timeout=10, auth=True):
    """GET (POST with data) url; auth True sends CREDENTIALS' entry for its host:port,
    False nothing, a (user, password) pair those."""
    headers = dict(headers or {})
    cred = CREDENTIALS.get(urllib.parse.urlsplit(url).netloc) if auth is True else auth or None
    if cred:
        headers["Authorization"] = basic_auth(*cred)
    req = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def http_status(url, auth=True):
    """(status, headers, body) of a GET, errors included; headers' names in any case."""
    try:
        status, body = http(url, auth=auth)
        return status, email.message.Message(), body
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def http_json(url, **kw):
    return json.loads(http(url, **kw)[1])


def wait_until(what, fn, timeout, interval=2.0):
    """Calls fn until it returns something truthy (returned) or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            got = fn()
            if got:
                return got
        except (OSError, ValueError, KeyError, urllib.error.URLError, CheckFailed) as e:
            last_error = e
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))
        time.sleep(interval)


def parse_metrics(text):
    """Prometheus text format to {series: value}, series as written (name{labels})."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        try:
            out[series] = float(value)
        except ValueError:
            continue
    return out


def series_sum(metrics, name, **labels):
    """Sum over the series of metric `name` whose labels include `labels`."""
    total, found = 0.0, False
    for series, value in metrics.items():
        base = series.split("{", 1)[0]
        if base != name:
            continue
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += value
            found = True
    return total if found else None


def namespace_host(ns, veth_host, veth_ns, host_side, addr):
    """The commands that make a host at `addr` in namespace `ns`, behind a veth pair whose
    end on this machine is `host_side` (a /30)."""
    return [
        ["ip", "netns", "add", ns],
        ["ip", "link", "add", veth_host, "type", "veth", "peer", "name", veth_ns],
        ["ip", "link", "set", veth_ns, "netns", ns],
        ["ip", "addr", "add", f"{host_side}/30", "dev", veth_host],
        ["ip", "link", "set", veth_host, "up"],
        ["ip", "netns", "exec", ns, "ip", "addr", "add", f"{addr}/30", "dev", veth_ns],
        ["ip", "netns", "exec", ns, "ip", "link", "set", veth_ns, "up"],
        ["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"],
        # Replies to the containers (198.19.0.0/16) go back through this machine.
        ["ip", "netns", "exec", ns, "ip", "route", "add", "default", "via", host_side],
    ]


class Stack:
    def __init__(self):
        self.ports = {
            "PROMETHEUS_PUBLISH_PORT": free_port(),
            "BOARD_PORT": free_port(),
            "INFLUXDB_PORT": free_port(),
            "MAILPIT_PORT": free_port(),
            "E2E_RECEIVER_PORT": free_port(),
        }
        self.env_file = WORK / "env"
        self.snmpd = None
        self.compose_cmd = [
            str(COMPOSE_BIN), "--project-name", PROJECT, "--project-directory", str(ROOT),
            "--env-file", str(self.env_file), "-f", str(ROOT / "compose.yaml"),
            "-f", str(ROOT / "tests/e2e/compose.e2e.yaml"),
        ]

    # --- setup ---------------------------------------------------------------------

    def prepare(self):
        # What a run that was killed may have left: its containers, volumes, namespace.
        if self.env_file.exists():
            self.down(volumes=True)
        shutil.rmtree(WORK, ignore_errors=True)
        (WORK / "secrets").mkdir(parents=True)
        (WORK / "ping").mkdir()
        for name in ("grafana_admin_password", "influxdb_admin_password", "influxdb_token",
                     "board_password", "prometheus_password"):
            (WORK / "secrets" / name).write_text(secrets.token_urlsafe(24))
        # The board's and Prometheus' basic auth, made as make up makes it: vigia-web-config
        # in vigia's image hashes each password into a web config.
        for name in ("board", "prometheus"):
            password = (WORK / "secrets" / f"{name}_password").read_text()
            web = run(DOCKER, "run", "--rm", "-i", "--network", "none", "--read-only", "--cap-drop", "ALL",
                      VIGIA_IMAGE, "vigia-web-config", "--user", WEB_USER, input=password).stdout
            (WORK / "secrets" / f"{name}_web_config.yml").write_text(web)
        CREDENTIALS[f"127.0.0.1:{self.ports['BOARD_PORT']}"] = (WEB_USER, (WORK / "secrets/board_password").read_text())
        CREDENTIALS[f"127.0.0.1:{self.ports['PROMETHEUS_PUBLISH_PORT']}"] = (
            WEB_USER, (WORK / "secrets/prometheus_password").read_text())
        (WORK / "secrets/telegram_bot_token").write_text("123456:e2e-bot-token")
        (WORK / "secrets/discord_webhook_url").write_text("http://receiver:8080/api/webhooks/42/e2e-webhook-token")
        (WORK / "secrets/smtp_password").write_text("")
        for name in ("snmp_community", "snmp_v3_auth_password", "snmp_v3_priv_password"):
            (WORK / "secrets" / name).write_text(secrets.token_urlsafe(12))
        for f in (WORK / "secrets").iterdir():
            f.chmod(0o644)
        shutil.copy(ROOT / "ping/ping.yaml", WORK / "ping/ping.yaml")
        # The shipped prometheus/ plus the test's SNMP devices, as an operator adds them.
        shutil.copytree(ROOT / "prometheus", WORK / "prometheus")
        (WORK / "prometheus/targets/snmp-e2e.yml").write_text(
            "# Written by tests/e2e/e2e.py: one agent, polled with each credential.\n"
            f'- targets: ["{SW_ADDR}"]\n  labels: {{target: {SW}, site: e2e, auth: v2c}}\n'
            f'- targets: ["{SW_ADDR}"]\n  labels: {{target: {SW_V3}, site: e2e, auth: v3}}\n'
        )
        (WORK / "ping/targets.txt").write_text(
            "# Written by tests/e2e/e2e.py\n"
            "localhost  127.0.0.1    site=vigia kind=self\n"
            f"{OLT}    {OLT_ADDR}  site=e2e kind=olt\n"
            f"{ROUTER} {RTR_ADDR}  site=e2e-uplink kind=router\n"
            + "".join(f"{n} {a} site=e2e-uplink kind=cpe parent={ROUTER}\n" for n, a in CPES.items())
        )
        docker_gid = os.stat("/var/run/docker.sock").st_gid
        # As make up does: the host-network exporters listen on the Docker bridge only.
        self.bridge_ip = run(DOCKER, "network", "inspect", "bridge", "--format",
                             "{{ (index .IPAM.Config 0).Gateway }}").stdout.strip()
        env = {
            "VIGIA_IMAGE": VIGIA_IMAGE,
            "DOCKER_GID": docker_gid,
            "PUBLISH_ADDRESS": "127.0.0.1",
            "HOST_NAME": socket.gethostname(),
            "EXPORTER_LISTEN_ADDRESS": self.bridge_ip,
            "GRAFANA_URL": "http://grafana.e2e.test:3000",
            "PROMETHEUS_URL": f"http://127.0.0.1:{self.ports['PROMETHEUS_PUBLISH_PORT']}",
            "ALERT_EMAIL_TO": "noc@e2e.test",
            "SMTP_FROM": "vigia@e2e.test",
            "TELEGRAM_CHAT_ID": "-1001234",
            "TELEGRAM_API_URL": "http://receiver:8080",
            # Ports that carry the stack's own traffic: scrapes and InfluxDB writes.
            "PORTS_TO_MONITOR": f"9470,9471,9472,9473,{self.ports['INFLUXDB_PORT']}",
            "CAPTURE_INTERFACE": "any",
            # The power model, as an operator turns it on in .env (off unless set): the
            # power panels need a source on a machine without a readable sensor.
            "VIGIA_HOST__ENERGY__MODEL__IDLE_WATTS": "40",
            "VIGIA_HOST__ENERGY__MODEL__MAX_WATTS": "140",
            "E2E_WORK": WORK,
            "E2E_TOOLS_IMAGE": TOOLS_IMAGE,
            "SNMP_V3_USERNAME": SNMP_V3_USER,
            **self.ports,
        }
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        self.netns_up()

    def netns_up(self):
        self.netns_down()
        for cmd in (
            namespace_host(NETNS, VETH_HOST, VETH_NS, HOST_SIDE, OLT_ADDR)
            # The SNMP device, and its customer port whose far end (this machine's side) is
            # never brought up.
            + namespace_host(SW_NETNS, SW_VETH_HOST, SW_VETH_NS, SW_HOST_SIDE, SW_ADDR)
            + [["ip", "link", "add", SW_PORT_HOST, "type", "veth", "peer", "name", SW_PORT_NS],
               ["ip", "link", "set", SW_PORT_NS, "netns", SW_NETNS],
               ["ip", "netns", "exec", SW_NETNS, "ip", "link", "set", SW_PORT_NS, "up"]]
        ):
            run(*cmd)
        # The router and the devices behind it, on its bridge.
        ns_exec = lambda ns, *a: run("ip", "netns", "exec", ns, *a)
        for cmd in (
            ["ip", "netns", "add", NETNS_ROUTER],
            ["ip", "link", "add", VETH_RTR_HOST, "type", "veth", "peer", "name", VETH_RTR_NS],
            ["ip", "link", "set", VETH_RTR_NS, "netns", NETNS_ROUTER],
            ["ip", "addr", "add", f"{RTR_HOST_SIDE}/30", "dev", VETH_RTR_HOST],
            ["ip", "link", "set", VETH_RTR_HOST, "up"],
        ):
            run(*cmd)
        ns_exec(NETNS_ROUTER, "ip", "addr", "add", f"{RTR_ADDR}/30", "dev", VETH_RTR_NS)
        for dev in ("lo", VETH_RTR_NS):
            ns_exec(NETNS_ROUTER, "ip", "link", "set", dev, "up")
        ns_exec(NETNS_ROUTER, "ip", "route", "add", "default", "via", RTR_HOST_SIDE)
        ns_exec(NETNS_ROUTER, "ip", "link", "add", "br0", "type", "bridge")
        ns_exec(NETNS_ROUTER, "ip", "addr", "add", f"{RTR_LAN_ADDR}/24", "dev", "br0")
        ns_exec(NETNS_ROUTER, "ip", "link", "set", "br0", "up")
        ns_exec(NETNS_ROUTER, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        run("ip", "route", "add", RTR_LAN, "via", RTR_ADDR)
        for i, (name, addr) in enumerate(CPES.items(), 1):
            ns, inner, port = f"vigia-e2e-cpe{i}", f"ve2e-cpe{i}-n", f"ve2e-cpe{i}-r"
            run("ip", "netns", "add", ns)
            run("ip", "link", "add", inner, "type", "veth", "peer", "name", port)
            run("ip", "link", "set", inner, "netns", ns)
            run("ip", "link", "set", port, "netns", NETNS_ROUTER)
            ns_exec(NETNS_ROUTER, "ip", "link", "set", port, "master", "br0")
            ns_exec(NETNS_ROUTER, "ip", "link", "set", port, "up")
            ns_exec(ns, "ip", "addr", "add", f"{addr}/24", "dev", inner)
            for dev in ("lo", inner):
                ns_exec(ns, "ip", "link", "set", dev, "up")
            ns_exec(ns, "ip", "route", "add", "default", "via", RTR_LAN_ADDR)
        # The containers reach the namespace hosts through this machine's routing.
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
        self.snmpd_start()

    def snmpd_start(self):
        """net-snmp's agent in the SNMP device's namespace, with the credentials of the
        test's secrets (the stack's snmp-exporter gets the same ones from the files)."""
        d = WORK / "snmpd"
        (d / "persist").mkdir(parents=True, exist_ok=True)
        sec = {n: (WORK / "secrets" / n).read_text().strip()
               for n in ("snmp_community", "snmp_v3_auth_password", "snmp_v3_priv_password")}
        (d / "snmpd.conf").write_text(
            f"rocommunity {sec['snmp_community']} default\n"
            f'createUser {SNMP_V3_USER} SHA "{sec["snmp_v3_auth_password"]}" AES "{sec["snmp_v3_priv_password"]}"\n'
            f"rouser {SNMP_V3_USER} priv\nsysName {SW}\nsysLocation vigia e2e\n")
        self.snmpd = subprocess.Popen(
            ["ip", "netns", "exec", SW_NETNS, "snmpd", "-f", "-C", "-c", str(d / "snmpd.conf"), "-I", "-smux",
             "-Lf", str(d / "snmpd.log"), f"udp:{SW_ADDR}:161"],
            env=dict(os.environ, SNMP_PERSISTENT_DIR=str(d / "persist"), MIBS=""),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def netns_down(self):
        if self.snmpd and self.snmpd.poll() is None:
            self.snmpd.terminate()
            self.snmpd.wait(10)
        # An agent a killed run left in the namespace (ours: it is the test's namespace).
        for pid in run("ip", "netns", "pids", SW_NETNS, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), 9)
        for link in (VETH_HOST, SW_VETH_HOST, SW_PORT_HOST):
            run("ip", "link", "del", link, check=False)
        run("ip", "netns", "del", NETNS, check=False)
        run("ip", "netns", "del", SW_NETNS, check=False)
        run("ip", "link", "del", VETH_RTR_HOST, check=False)
        for i in range(1, len(CPES) + 1):
            run("ip", "netns", "del", f"vigia-e2e-cpe{i}", check=False)
        run("ip", "netns", "del", NETNS_ROUTER, check=False)

    def uplink_up(self, up):
        """The router's side of its uplink up or down: it and every device behind it go silent."""
        run("ip", "netns", "exec", NETNS_ROUTER, "ip", "link", "set", VETH_RTR_NS, "up" if up else "down")
        if up:
            # The kernel dropped the routes through the link when it went down.
            run("ip", "netns", "exec", NETNS_ROUTER, "ip", "route", "replace", "default", "via", RTR_HOST_SIDE)

    def olt_answers(self, on):
        run("ip", "netns", "exec", NETNS, "sysctl", "-qw", f"net.ipv4.icmp_echo_ignore_all={0 if on else 1}")

    # --- the stack -----------------------------------------------------------------

    def compose(self, *args, check=True, timeout=600):
        return run(*self.compose_cmd, *args, check=check, timeout=timeout)

    def up(self):
        self.compose("up", "-d", "--no-build", "--wait", "--wait-timeout", "300", timeout=420)

    def down(self, volumes=False):
        self.compose("down", "--remove-orphans", *(["-v"] if volumes else []), check=False, timeout=300)

    def health(self):
        """{service: its health, or its state when it has no healthcheck}."""
        ps = self.compose("ps", "-a", "--format", "json").stdout
        # Compose 2.21+ prints one JSON object per line; older ones a JSON list.
        rows = json.loads(ps) if ps.lstrip().startswith("[") else [json.loads(l) for l in ps.splitlines() if l.strip()]
        return {r["Service"]: r.get("Health") or r.get("State") for r in rows}

    def container(self, service):
        cid = self.compose("ps", "-q", service).stdout.strip()
        require(cid, f"no container for {service}")
        return json.loads(run(DOCKER, "inspect", cid).stdout)[0]

    def dump_logs(self):
        p = self.compose("ps", "-a", check=False)
        print(p.stdout)
        p = self.compose("logs", "--no-color", "--tail", "40", check=False)
        print(p.stdout[-60000:])
        print(p.stderr[-5000:])

    # --- what an operator reads ----------------------------------------------------

    def prom(self, expr, at=None):
        q = {"query": expr}
        if at is not None:
            q["time"] = f"{at:.3f}"
        url = f"http://127.0.0.1:{self.ports['PROMETHEUS_PUBLISH_PORT']}/api/v1/query?" + urllib.parse.urlencode(q)
        body = http_json(url)
        require(body["status"] == "success", f"{expr}: {body}")
        return body["data"]["result"]

    def prom_range(self, expr, seconds=900, step=15):
        now = time.time()
        q = {"query": expr, "start": f"{now - seconds:.0f}", "end": f"{now:.0f}", "step": str(step)}
        url = f"http://127.0.0.1:{self.ports['PROMETHEUS_PUBLISH_PORT']}/api/v1/query_range?" + urllib.parse.urlencode(q)
        body = http_json(url)
        require(body["status"] == "success", f"{expr}: {body}")
        return body["data"]["result"]

    def influx(self, q):
        url = f"http://127.0.0.1:{self.ports['INFLUXDB_PORT']}/query?" + urllib.parse.urlencode({"db": "vigia", "q": q, "epoch": "s"})
        body = http_json(url)
        res = body["results"][0]
        require("error" not in res, f"{q}: {res.get('error')}")
        return res.get("series", [])

    def influx_count(self, measurement, field, where=""):
        series = self.influx(f'SELECT count("{field}") FROM "{measurement}"' + (f" WHERE {where}" if where else ""))
        return int(series[0]["values"][0][1]) if series else 0

    def exporter_metrics(self, port):
        """An exporter's own /metrics: vigia-ping's on its published port, the others on
        the bridge address they listen on."""
        host = "127.0.0.1" if port == self.ports["BOARD_PORT"] else self.bridge_ip
        return parse_metrics(http(f"http://{host}:{port}/metrics")[1].decode())

    def mails(self):
        return http_json(f"http://127.0.0.1:{self.ports['MAILPIT_PORT']}/messages")

    def received(self):
        return http_json(f"http://127.0.0.1:{self.ports['E2E_RECEIVER_PORT']}/_recorded")


EXPORTER_PORTS = {"vigia-ports": 9470, "vigia-ping": None, "vigia-host": 9472, "vigia-capture": 9473}

# Each exporter's key families, as Prometheus stores them (histograms as _bucket).
KEY_FAMILIES = {
    "vigia-ping": ["vigia_ping_rtt_seconds_bucket", "vigia_ping_requests_total", "vigia_ping_replies_total",
                   "vigia_ping_up", "vigia_ping_status", "vigia_ping_status_change_timestamp_seconds",
                   "vigia_ping_last_rtt_seconds", "vigia_build_info", "vigia_influxdb_points_written_total"],
    "vigia-ports": ["vigia_port_connections", "vigia_tcp_connections", "vigia_build_info",
                    "vigia_influxdb_points_written_total"],
    "vigia-host": ["node_cpu_seconds_total", "node_load1", "node_memory_MemAvailable_bytes",
                   "node_filesystem_avail_bytes", "node_network_receive_bytes_total", "node_disk_read_bytes_total",
                   "node_boot_time_seconds", "node_time_seconds", "node_uname_info", "node_os_info",
                   "container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "container_last_seen",
                   "vigia_host_anomaly_score", "vigia_host_processes", "vigia_host_users_logged_in",
                   "vigia_host_energy_joules_total", "vigia_build_info",
                   # node_exporter 1.9's wider default set, its self-metrics, cAdvisor's
                   # CPU split and spec families.
                   "node_netstat_Tcp_ActiveOpens", "node_vmstat_pgfault", "node_sockstat_sockets_used",
                   "node_scrape_collector_success", "process_resident_memory_bytes",
                   "container_cpu_user_seconds_total", "container_spec_cpu_period", "machine_cpu_cores"],
    "vigia-capture": ["vigia_capture_packets_total", "vigia_capture_bytes_total",
                      "vigia_capture_dropped_packets_total", "vigia_capture_flows_active",
                      "vigia_capture_anomaly_score", "vigia_capture_windows_total", "vigia_build_info"],
    # snmp_exporter's if_mib names (snmp/snmp.yml) and its own, per device and of itself.
    "snmp": ["sysUpTime", "sysName", "sysDescr", "ifOperStatus", "ifAdminStatus", "ifHCInOctets", "ifHCOutOctets",
             "ifInErrors", "ifOutDiscards", "ifHighSpeed", "ifType_info", "snmp_scrape_duration_seconds"],
    "snmp-exporter": ["snmp_exporter_build_info", "snmp_collection_duration_seconds_bucket"],
}

# What each writer puts in InfluxDB: (measurement, a field every row has).
INFLUX_ROWS = {
    "vigia-ping": [("vigia_ping_round", "sent")],
    "vigia-ports": [("vigia_port_connections", "count")],
    "vigia-host": [("vigia_host_inventory", "processes")],
    "vigia-capture": [("vigia_flow", "packets")],
}

# Prometheus targets that cannot be up here, and why.
NOT_RUN_HERE = {
    "grafana": "Grafana has no image or package on these machines; it is left out",
    "influxdb": "InfluxDB 1.6.7 (the stand-in for InfluxDB 2) has no /metrics",
}


class E2E:
    def __init__(self):
        self.s = Stack()
        self.results = []  # (name, seconds, ok, detail)
        self.t = {}

    @contextlib.contextmanager
    def check(self, name, required=False):
        start = time.monotonic()
        try:
            yield
        except Exception as e:  # noqa: BLE001 - every failure is reported, then the run goes on
            secs = time.monotonic() - start
            detail = str(e) if isinstance(e, CheckFailed) else traceback.format_exc()
            self.results.append((name, secs, False, detail))
            print(f"FAIL {name} ({secs:.1f} s)\n" + "\n".join("    " + l for l in detail.splitlines()), flush=True)
            if required:
                raise CheckFailed(f"required check failed: {name}") from e
        else:
            secs = time.monotonic() - start
            self.results.append((name, secs, True, ""))
            print(f"PASS {name} ({secs:.1f} s)", flush=True)

    # --- the checks, in the order they run -------------------------------------------

    def stack_up(self):
        with self.check("docker compose up: every service healthy (--wait)", required=True):
            self.s.up()
            health = self.s.health()
            want = {"vigia-ports", "vigia-ping", "vigia-host", "vigia-capture", "prometheus", "alertmanager",
                    "alertmanager-2", "influxdb", "mailpit", "receiver", "snmp-exporter"}
            require(want == set(health), f"services: {sorted(health)}, expected {sorted(want)}")
            bad = {k: v for k, v in health.items() if v != "healthy"}
            require(not bad, f"not healthy: {bad}")

    def auth_required(self):
        with self.check("the board and Prometheus ask for the password: 401 (Basic) without it or with a wrong one, "
                        "200 with the one in secrets/, health endpoints included"):
            board = f"http://127.0.0.1:{self.s.ports['BOARD_PORT']}"
            prom = f"http://127.0.0.1:{self.s.ports['PROMETHEUS_PUBLISH_PORT']}"
            problems = []
            for url in (f"{board}/", f"{board}/api/status", f"{board}/metrics", f"{board}/-/healthy",
                        f"{prom}/api/v1/targets", f"{prom}/api/v1/query?query=up", f"{prom}/-/ready",
                        f"{prom}/consoles/runbooks.html"):
                for auth, what in ((False, "no credentials"), ((WEB_USER, "not-the-password"), "a wrong password")):
                    status, headers, _ = http_status(url, auth=auth)
                    challenge = headers.get("WWW-Authenticate") or ""
                    if status != 401 or not challenge.startswith("Basic"):
                        problems.append(f"{url} with {what}: {status} {challenge!r}")
                status, _, _ = http_status(url)
                if status != 200:
                    problems.append(f"{url} with the password: {status}")
            require(not problems, "; ".join(problems))

    def energy_model(self):
        with self.check("vigia-host's power model is .env's (passed through as set there, off by default)"):
            env = self.s.container("vigia-host")["Config"]["Env"]
            got = sorted(e for e in env if e.startswith("VIGIA_HOST__ENERGY__"))
            require(got == ["VIGIA_HOST__ENERGY__MODEL__IDLE_WATTS=40", "VIGIA_HOST__ENERGY__MODEL__MAX_WATTS=140"],
                    f"vigia-host's energy environment: {got}")
            sources = self.s.prom('vigia_host_energy_source_info{job="vigia-host"} == 1')
            require(sources, "no vigia_host_energy_source_info")
            log(f"vigia-host energy source: {sources[0]['metric'].get('source')} "
                f"(rapl {sources[0]['metric'].get('rapl')})")

    def targets_up(self):
        with self.check("every Prometheus target is up (grafana and influxdb: not run here)"):
            def all_up():
                body = http_json(f"http://127.0.0.1:{self.s.ports['PROMETHEUS_PUBLISH_PORT']}/api/v1/targets?state=active")
                targets = body["data"]["activeTargets"]
                jobs = {t["labels"]["job"] for t in targets}
                missing = {"vigia-ping", "vigia-ports", "vigia-host", "vigia-capture", "prometheus", "alertmanager",
                           "snmp", "snmp-exporter"} - jobs
                require(not missing, f"jobs without targets: {missing}")
                down = {t["labels"]["job"] + " " + t["scrapeUrl"]: t.get("lastError") or t["health"]
                        for t in targets if t["labels"]["job"] not in NOT_RUN_HERE and t["health"] != "up"}
                require(not down, f"targets not up: {down}")
                return True
            wait_until("every target up", all_up, timeout=90)
            for job, why in NOT_RUN_HERE.items():
                log(f"target {job} not checked: {why}")

    def key_families(self):
        with self.check("each exporter's key metric families are in Prometheus"):
            missing = {}
            for job, families in KEY_FAMILIES.items():
                names = {r["metric"]["__name__"] for r in self.s.prom(f'count by (__name__) ({{job="{job}"}})')}
                lack = [f for f in families if f not in names]
                if lack:
                    missing[job] = lack
            require(not missing, f"missing families: {missing}")
            # Containers are named through the Docker socket (cAdvisor's `name` label).
            named = self.s.prom(f'container_last_seen{{job="vigia-host", name="{PROJECT}-prometheus-1"}}')
            require(named, "vigia-host does not name the prometheus container")
            # The image was built from this checkout: its build info says which commit.
            head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                  text=True, cwd=ROOT).stdout.strip()
            revisions = {r["metric"]["job"]: r["metric"].get("revision") for r in self.s.prom("vigia_build_info")}
            require(len(revisions) >= 4 and set(revisions.values()) == {head},
                    f"vigia_build_info revisions {revisions}, checkout at {head}")

    def ping_non_root(self):
        with self.check("vigia-ping pings from its container as uid 10001 with no capability"):
            c = self.s.container("vigia-ping")
            require(c["State"]["Running"], "vigia-ping is not running")
            require(c["HostConfig"]["CapDrop"] == ["ALL"] and not c["HostConfig"]["CapAdd"],
                    f"caps: drop {c['HostConfig']['CapDrop']} add {c['HostConfig']['CapAdd']}")
            status = self.s.compose("exec", "-T", "vigia-ping", "cat", "/proc/1/status").stdout
            fields = dict(l.split(":", 1) for l in status.splitlines() if ":" in l)
            uids = fields["Uid"].split()
            require(uids[:2] == ["10001", "10001"], f"Uid: {fields['Uid'].strip()}")
            require(int(fields["CapEff"], 16) == 0 and int(fields["CapPrm"], 16) == 0,
                    f"CapEff {fields['CapEff'].strip()} CapPrm {fields['CapPrm'].strip()}")

            def replies():
                r = self.s.prom('vigia_ping_replies_total{target="localhost"} > 0 and on (target) vigia_ping_up == 1')
                return r
            wait_until("replies from localhost counted", replies, timeout=60)

    def snmp_polled(self):
        with self.check(f"snmp-exporter runs as nobody with no capability on a read-only root, its credentials from the "
                        f"secret files: {SW} answers by v2c and {SW_V3} by SNMPv3 in Prometheus"):
            c = self.s.container("snmp-exporter")
            require(c["Config"]["User"] == "65534:65534" and c["HostConfig"]["ReadonlyRootfs"]
                    and c["HostConfig"]["CapDrop"] == ["ALL"] and not c["HostConfig"]["CapAdd"],
                    f"user {c['Config']['User']!r}, read-only {c['HostConfig']['ReadonlyRootfs']}, "
                    f"caps drop {c['HostConfig']['CapDrop']} add {c['HostConfig']['CapAdd']}")
            status = self.s.compose("exec", "-T", "snmp-exporter", "cat", "/proc/1/status").stdout
            fields = dict(l.split(":", 1) for l in status.splitlines() if ":" in l)
            require(fields["Uid"].split()[:2] == ["65534", "65534"] and int(fields["CapEff"], 16) == 0,
                    f"Uid {fields['Uid'].strip()}, CapEff {fields['CapEff'].strip()}")
            mode = self.s.compose("exec", "-T", "snmp-exporter", "stat", "-c", "%a %u", "/run/vigia/auths.yml").stdout.split()
            require(mode == ["600", "65534"], f"/run/vigia/auths.yml mode and owner {mode}")
            for target in (SW, SW_V3):
                wait_until(f"{target} polled", lambda: self.s.prom(
                    f'up{{job="snmp", target="{target}"}} == 1 and on (target) sysName{{sysName="{SW}"}}'), timeout=90)
            port = self.s.prom(f'ifOperStatus{{target="{SW}", ifName="{SW_PORT_NS}"}} != 1'
                               f' and on (instance, job, ifIndex) ifAdminStatus == 1')
            require(port, f"{SW}'s {SW_PORT_NS} is not admin up and oper down")

    def olt_ok_first(self):
        with self.check(f"{OLT} ({OLT_ADDR}, a namespace host) is ok on the board and in Prometheus", required=True):
            wait_until(f"{OLT} ok", lambda: self.s.prom(f'vigia_ping_status{{target="{OLT}", status="ok"}} == 1'), timeout=90)
            board = http_json(f"http://127.0.0.1:{self.s.ports['BOARD_PORT']}/api/status")
            require(OLT in json.dumps(board), f"{OLT} not on the status board: {str(board)[:500]}")
            for name in [ROUTER, *CPES]:
                wait_until(f"{name} ok", lambda: self.s.prom(f'vigia_ping_status{{target="{name}", status="ok"}} == 1'), timeout=60)

    def take_olt_down(self):
        self.s.olt_answers(False)
        # The uplink fails at the same moment: its alert's 2 minutes run with the OLT's.
        self.s.uplink_up(False)
        self.t["down"] = time.time()
        log(f"{OLT} stops answering echo requests; {ROUTER}'s uplink goes down")

    def influx_rows(self):
        with self.check("InfluxDB holds rows from every exporter that writes (ping rounds, port counts, host snapshots, flows)"):
            def counted():
                counts = {f"{m}": self.s.influx_count(m, f) for rows in INFLUX_ROWS.values() for m, f in rows}
                return counts if all(counts.values()) else None
            try:
                counts = wait_until("a row in every measurement", counted, timeout=120)
            except CheckFailed:
                counts = {m: self.s.influx_count(m, f) for rows in INFLUX_ROWS.values() for m, f in rows}
                raise CheckFailed(f"rows per measurement: {counts}")
            log(f"InfluxDB rows: {counts}")
            # Seed 004: a host's rows are found by its name, whichever exporter wrote them.
            hosts = {}
            for rows in INFLUX_ROWS.values():
                for m, _ in rows:
                    series = self.s.influx(f'SHOW TAG VALUES FROM "{m}" WITH KEY = "host"')
                    hosts[m] = sorted(v[1] for v in series[0]["values"]) if series else []
            want = [socket.gethostname()]
            require(all(v == want for v in hosts.values()), f"host tags per measurement: {hosts}, expected {want}")

    def writer_state(self):
        """Per writer: (written, dropped, errors, queue) from the exporter's own /metrics."""
        out = {}
        for job, port in EXPORTER_PORTS.items():
            port = port or self.s.ports["BOARD_PORT"]
            m = self.s.exporter_metrics(port)
            out[job] = {
                "written": series_sum(m, "vigia_influxdb_points_written_total"),
                "dropped": series_sum(m, "vigia_influxdb_points_dropped_total"),
                "errors": series_sum(m, "vigia_influxdb_write_errors_total"),
                "queue": series_sum(m, "vigia_influxdb_queue_points"),
            }
        return out

    def ping_rounds_match(self):
        """Rows of vigia_ping_round equal the rounds vigia-ping says it ran, per target."""
        port = self.s.ports["BOARD_PORT"]
        for _ in range(10):
            before = self.s.exporter_metrics(port)
            if series_sum(before, "vigia_influxdb_queue_points") != 0:
                time.sleep(1)
                continue
            rows = {t: self.s.influx_count("vigia_ping_round", "sent", f"\"target\" = '{t}'") for t in ("localhost", OLT)}
            after = self.s.exporter_metrics(port)
            if series_sum(after, "vigia_ping_requests_total") != series_sum(before, "vigia_ping_requests_total"):
                continue  # a round ended while counting: count again
            rounds = {t: int(series_sum(after, "vigia_ping_requests_total", target=t) // PING_COUNT) for t in rows}
            return rows, rounds
        raise CheckFailed("vigia-ping never idle with an empty InfluxDB queue")

    def influx_restart(self):
        with self.check("InfluxDB stopped for 30 s while exporters write: none dies, the writers retry, no point is lost"):
            before_c = {job: self.s.container(job) for job in EXPORTER_PORTS}
            before = self.s.exporter_metrics(self.s.ports["BOARD_PORT"])  # noqa: F841 - for the log below
            w0 = self.writer_state()
            self.s.compose("stop", "influxdb")
            time.sleep(30)
            during = self.writer_state()
            self.s.compose("start", "influxdb")
            wait_until("influxdb healthy", lambda: self.s.container("influxdb")["State"].get("Health", {}).get("Status") == "healthy", timeout=90)
            wait_until("every writer's queue empty", lambda: all(v["queue"] == 0 for v in self.writer_state().values()), timeout=120)
            w1 = self.writer_state()
            problems = []
            for job, c0 in before_c.items():
                c1 = self.s.container(job)
                if c1["Id"] != c0["Id"] or c1["State"]["StartedAt"] != c0["State"]["StartedAt"] or c1["RestartCount"] != c0["RestartCount"]:
                    problems.append(f"{job} restarted")
                if w1[job]["errors"] <= w0[job]["errors"]:
                    problems.append(f"{job}: no write error counted during the outage ({w0[job]['errors']} -> {w1[job]['errors']})")
                if w1[job]["dropped"] != 0:
                    problems.append(f"{job}: {w1[job]['dropped']} points dropped")
                if w1[job]["written"] <= during[job]["written"]:
                    problems.append(f"{job}: nothing written after the restart")
            queued = {job: during[job]["queue"] for job in during}
            log(f"queued points during the outage: {queued}; write errors counted: "
                f"{ {job: w1[job]['errors'] - w0[job]['errors'] for job in w1} }")
            rows, rounds = self.ping_rounds_match()
            log(f"vigia_ping_round rows {rows}, rounds run {rounds}")
            if rows != rounds:
                problems.append(f"vigia_ping_round rows {rows} != rounds vigia-ping ran {rounds}")
            require(not problems, "; ".join(problems))

    def port_scan_scored(self):
        with self.check(f"an nmap -sS scan of {OLT_ADDR} is an anomalous window in Prometheus and a vigia_anomaly_window row"):
            wait_until("vigia-capture warm", lambda: self.s.exporter_metrics(9473).get("vigia_capture_anomaly_warm") == 1, timeout=180)
            m = self.s.exporter_metrics(9473)
            before = m.get("vigia_capture_anomalous_windows_total", 0)
            log(f"before the scan: {before:.0f} of {m.get('vigia_capture_windows_total', 0):.0f} windows over the "
                "threshold (start-up and the InfluxDB outage included)")
            started = int(time.time()) - 1
            # 1,000 ports, bounded in rate and time; the namespace host answers with RSTs.
            run("nmap", "-sS", "-n", "-Pn", "--max-rate", "2000", "--host-timeout", "60s", "-p", "1-1000", OLT_ADDR, timeout=90)
            wait_until("an anomalous window counted",
                       lambda: self.s.exporter_metrics(9473).get("vigia_capture_anomalous_windows_total", 0) > before, timeout=30)

            # The row is the scan's window, not some other one: it saw the scan's ports.
            def scan_row():
                series = self.s.influx('SELECT max("distinct_destination_ports") FROM "vigia_anomaly_window" '
                                       f"WHERE time >= {started}s")
                return series and series[0]["values"][0][1] >= 900
            wait_until("a vigia_anomaly_window row with the scan's 1,000 destination ports", scan_row, timeout=60)

    def snmp_interface_down_alerted(self):
        with self.check(f"{SW}'s customer port down 2 minutes -> SnmpInterfaceDown fires for it (not its up "
                        "interfaces), one email linking the SNMP dashboard on the device"):
            def mail():
                ms = [m for m in self.s.mails() if m["subject"] == f"[CRITICAL] SnmpInterfaceDown {SW}"]
                return ms
            ms = wait_until("the SnmpInterfaceDown email", mail, timeout=240, interval=3)
            firing = self.s.prom('ALERTS{alertname="SnmpInterfaceDown", alertstate="firing"}')
            got = sorted((a["metric"]["target"], a["metric"]["ifName"]) for a in firing)
            require(got == [(SW, SW_PORT_NS), (SW_V3, SW_PORT_NS)], f"SnmpInterfaceDown firing for {got}")
            time.sleep(5)
            ms = mail()
            require(len(ms) == 1, f"{len(ms)} SnmpInterfaceDown emails for {SW}")
            line = ms[0]["text"].strip().splitlines()[0]
            require(line.startswith(f"[CRITICAL] {SW}: interface {SW_PORT_NS} is down, since ")
                    and line.endswith(f"http://grafana.e2e.test:3000/d/vigia-snmp?var-target={SW}"), f"mail line {line!r}")

    def dashboards(self):
        with self.check("every panel query of every dashboard returns data (PromQL from Prometheus, InfluxQL from InfluxDB)"):
            empty, queried = [], 0
            for where, uid, q in panel_queries():
                queried += 1
                if "prometheus" in uid:
                    if not any(s.get("values") for s in self.s.prom_range(q)):
                        empty.append(f"{where}: {q}")
                elif "influx" in uid:
                    if not self.s.influx(q):
                        empty.append(f"{where}: {q}")
                else:
                    empty.append(f"{where}: unknown datasource {uid}")
            log(f"{queried} panel queries run")
            require(not empty, "panels without data:\n" + "\n".join(empty))

    def notifications_for(self, name=OLT):
        mails = [m for m in self.s.mails() if name in m["subject"] + m["text"]]
        reqs = self.s.received()
        tg = [r for r in reqs if r["path"].endswith("/sendMessage") and name in json.dumps(r["body"])]
        dc = [r for r in reqs if r["path"].startswith("/api/webhooks/") and name in json.dumps(r["body"])]
        return mails, tg, dc

    def uplink_alert_delivered(self):
        with self.check(f"{ROUTER}'s uplink down with {len(CPES)} devices behind it: one message per channel naming "
                        "the router and the devices (PingUplinkDown), none for a device alone; the board says behind whom"):
            def all_three():
                m, t, d = self.notifications_for(ROUTER)
                return (m and t and d) and (m, t, d)
            # It fired with the OLT's alert (same 2 minutes): already here, or about to be.
            wait_until("the uplink's three notifications", all_three, timeout=60, interval=2)
            time.sleep(5)
            m, t, d = self.notifications_for(ROUTER)
            require(len(m) == 1 and len(t) == 1 and len(d) == 1, f"emails {len(m)}, telegram {len(t)}, discord {len(d)}")
            require(m[0]["subject"] == f"[CRITICAL] PingUplinkDown {ROUTER} (site e2e-uplink)", f"subject {m[0]['subject']!r}")
            for text in (m[0]["text"], t[0]["body"]["text"], json.dumps(d[0]["body"])):
                require(f"{len(CPES)} devices behind it" in text and all(c in text for c in CPES),
                        f"the message does not name the {len(CPES)} devices: {text}")
            for cpe in CPES:
                alone = [x for x in self.s.mails() if cpe in x["subject"]]
                require(not alone, f"{cpe} paged on its own: {alone}")
            board = {x["name"]: x for x in http_json(f"http://127.0.0.1:{self.s.ports['BOARD_PORT']}/api/status")["targets"]}
            behind = {c: (board[c]["status"], board[c]["behind"]) for c in CPES}
            require(all(v == ("unreachable", ROUTER) for v in behind.values()), f"the devices on the board: {behind}")
            rows = self.s.influx(f'SELECT last("status") FROM "vigia_ping_round" WHERE "target" = \'{next(iter(CPES))}\'')
            require(rows and rows[0]["values"][0][1] == "unreachable", f"last InfluxDB row of a device: {rows}")

    def down_alert_delivered(self):
        with self.check(f"seed 001: {OLT} down 2 minutes -> PingTargetDown fires, one email, one Telegram message, one Discord post"):
            wait_until(f"{OLT} down in Prometheus", lambda: self.s.prom(f'vigia_ping_status{{target="{OLT}", status="down"}} == 1'), timeout=60)
            # Firing needs the rule's 2 minutes, an evaluation and Alertmanager's group_wait.
            def all_three():
                m, t, d = self.notifications_for()
                return (m and t and d) and (m, t, d)
            m, t, d = wait_until("the three notifications", all_three, timeout=ALERT_FOR_S + 180, interval=3)
            self.t["notified"] = time.time()
            log(f"first notification {self.t['notified'] - self.t['down']:.0f} s after {OLT} stopped answering")
            firing = self.s.prom(f'ALERTS{{alertname="PingTargetDown", alertstate="firing", target="{OLT}"}}')
            require(firing, "PingTargetDown is not firing in Prometheus")
            require(self.t["notified"] - self.t["down"] >= ALERT_FOR_S, "notified before the rule's 2 minutes")
            time.sleep(5)  # a second message, if any, would come together with the first
            m, t, d = self.notifications_for()
            require(len(m) == 1 and len(t) == 1 and len(d) == 1, f"emails {len(m)}, telegram {len(t)}, discord {len(d)}")
            mail = m[0]
            require(mail["subject"] == f"[CRITICAL] PingTargetDown {OLT} (site e2e)", f"subject {mail['subject']!r}")
            require(mail["rcpt_tos"] == ["noc@e2e.test"], f"to {mail['rcpt_tos']}")
            line = mail["text"].strip().splitlines()[0]
            require(line.startswith(f"[CRITICAL] {OLT} ({OLT_ADDR}) does not answer ping, since ")
                    and line.endswith(f"http://grafana.e2e.test:3000/d/vigia-noc?var-target={OLT}"), f"mail line {line!r}")
            tg = t[0]
            require(tg["path"] == "/bot123456:e2e-bot-token/sendMessage", f"telegram path {tg['path']}")
            require(str(tg["body"].get("chat_id")) == "-1001234" and tg["body"].get("parse_mode") == "HTML", f"telegram body {tg['body']}")
            require(d[0]["path"] == "/api/webhooks/42/e2e-webhook-token", f"discord path {d[0]['path']}")
            # The runbook link opens the runbook, served by the stack (no internet needed).
            runbook = f"http://127.0.0.1:{self.s.ports['PROMETHEUS_PUBLISH_PORT']}/consoles/runbooks.html#pingtargetdown"
            lines = mail["text"].strip().splitlines()
            require(len(lines) > 1 and lines[1] == f"Runbook: {runbook}", f"mail text {mail['text']!r}")
            require(f"Runbook: {runbook}" in tg["body"].get("text", ""), f"telegram text {tg['body'].get('text')!r}")
            require(runbook in json.dumps(d[0]["body"]), f"discord body {d[0]['body']}")
            status, _, page = http_status(runbook)
            require(status == 200 and b'id="pingtargetdown"' in page and b"PingTargetDown" in page,
                    f"{runbook}: {status} {page[:300]!r}")

    def kill_sending_alertmanager(self):
        """Kills the cluster node that sent the firing messages: the other one, which holds
        the same notification log by gossip, must neither repeat them nor miss the resolved
        ones (checked by the next two checks)."""
        with self.check("Alertmanager cluster: both nodes have the alert; the node that sent it is killed"):
            sent = {}
            for am in ("alertmanager", "alertmanager-2"):
                text = self.s.compose("exec", "-T", am, "wget", "-q", "-O", "-", "http://127.0.0.1:9093/metrics").stdout
                sent[am] = series_sum(parse_metrics(text), "alertmanager_notifications_total", integration="email") or 0
                alerts = json.loads(self.s.compose("exec", "-T", am, "wget", "-q", "-O", "-",
                                                   "http://127.0.0.1:9093/api/v2/alerts").stdout)
                require(any(a["labels"].get("alertname") == "PingTargetDown" and a["labels"].get("target") == OLT
                            for a in alerts), f"{am} does not have PingTargetDown {OLT}")
            senders = [am for am, n in sent.items() if n > 0]
            require(len(senders) == 1, f"emails sent per node: {sent} (one node sends, the other defers)")
            self.killed_am = senders[0]
            self.s.compose("kill", self.killed_am)
            log(f"killed {self.killed_am}, which sent the firing messages (emails sent per node: {sent})")

    def restart_killed_alertmanager(self):
        if getattr(self, "killed_am", None):
            self.s.compose("start", self.killed_am)
            log(f"{self.killed_am} started again")

    def no_repeat_while_down(self):
        with self.check(f"nothing repeats while {OLT} stays down (2.5 more minutes, one Alertmanager killed)"):
            time.sleep(150)
            m, t, d = self.notifications_for()
            require(len(m) == 1 and len(t) == 1 and len(d) == 1, f"emails {len(m)}, telegram {len(t)}, discord {len(d)}")
            require(self.s.prom(f'vigia_ping_status{{target="{OLT}", status="down"}} == 1'), f"{OLT} is no longer down")

    def resolved_delivered(self):
        with self.check(f"{OLT} answers again -> one resolved email, Telegram message and Discord post (from the surviving Alertmanager)"):
            self.s.olt_answers(True)
            self.s.uplink_up(True)
            self.t["back"] = time.time()
            wait_until(f"{OLT} ok", lambda: self.s.prom(f'vigia_ping_status{{target="{OLT}", status="ok"}} == 1'), timeout=60)

            def resolved():
                m, t, d = self.notifications_for()
                ok = (len([x for x in m if x["subject"].startswith("[RESOLVED]")]) >= 1
                      and len([x for x in t if "[RESOLVED]" in x["body"].get("text", "")]) >= 1
                      and len([x for x in d if "[RESOLVED]" in json.dumps(x["body"])]) >= 1)
                return ok and (m, t, d)
            # Resolved messages go out at the group's next flush (group_interval 5m).
            m, t, d = wait_until("the resolved messages", resolved, timeout=420, interval=3)
            log(f"resolved messages {time.time() - self.t['back']:.0f} s after {OLT} answered again")
            time.sleep(5)
            m, t, d = self.notifications_for()
            require(len(m) == 2 and len(t) == 2 and len(d) == 2, f"emails {len(m)}, telegram {len(t)}, discord {len(d)} (want 2 each: firing, resolved)")
            require(m[1]["subject"] == f"[RESOLVED] PingTargetDown {OLT} (site e2e)", f"subject {m[1]['subject']!r}")

    def uplink_resolved(self):
        with self.check(f"{ROUTER}'s uplink back (with the OLT) -> one resolved message per channel"):
            def resolved():
                m, t, d = self.notifications_for(ROUTER)
                return all(any("RESOLVED" in json.dumps(x) for x in msgs) for msgs in (m, t, d)) and (m, t, d)
            wait_until("the uplink's resolved messages", resolved, timeout=180, interval=3)
            time.sleep(5)
            m, t, d = self.notifications_for(ROUTER)
            require(len(m) == 2 and len(t) == 2 and len(d) == 2, f"emails {len(m)}, telegram {len(t)}, discord {len(d)} (want 2 each)")
            require(m[1]["subject"] == f"[RESOLVED] PingUplinkDown {ROUTER} (site e2e-uplink)", f"subject {m[1]['subject']!r}")

    def restart_all(self):
        with self.check("docker compose restart (as after a reboot): every service healthy again"):
            self.s.compose("restart", timeout=300)

            def healthy():
                bad = {k: v for k, v in self.s.health().items() if v != "healthy"}
                require(not bad, f"not healthy: {bad}")
                return True
            wait_until("every service healthy after the restart", healthy, timeout=180, interval=5)

    def restart_keeps_data(self):
        with self.check("docker compose down and up: Prometheus data and Alertmanager silences survive"):
            am = ["exec", "-T", "alertmanager", "amtool", "--alertmanager.url=http://127.0.0.1:9093"]
            sid = self.s.compose(*am, "silence", "add", "alertname=E2ESilenceSurvives", "--duration=2h",
                                 "--author=e2e", "--comment=kept across down/up").stdout.strip()
            require(re.fullmatch(r"[0-9a-f-]{36}", sid), f"silence id {sid!r}")
            at = time.time() - 60
            expr = 'count(up{job="vigia-host"}) + count(vigia_ping_up)'
            before = self.s.prom(expr, at=at)
            require(before, "nothing to compare")
            self.s.down()
            self.s.up()
            after = wait_until("Prometheus answering", lambda: self.s.prom(expr, at=at), timeout=60)
            require(before[0]["value"][1] == after[0]["value"][1], f"{expr} at {at:.0f}: {before} before, {after} after")
            ids = self.s.compose(*am, "silence", "query", "-q").stdout.split()
            require(sid in ids, f"silence {sid} gone after down/up (silences now: {ids})")

    # --- the run ---------------------------------------------------------------------

    def main(self):
        started = time.monotonic()
        ok = False
        sites_part = None
        try:
            self.s.prepare()
            self.stack_up()
            self.auth_required()
            # The many-sites part (tests/e2e/sites.py) runs beside the checks below: its
            # 3-minute link cut overlaps their waits for the alert. VIGIA_E2E_SITES=0
            # leaves it out (a quicker run while working on the single-host stack).
            if os.environ.get("VIGIA_E2E_SITES") != "0":
                sites_part = threading.Thread(target=sites.Sites(self).run, name="sites")
                sites_part.start()
            self.targets_up()
            self.energy_model()
            self.key_families()
            self.ping_non_root()
            self.snmp_polled()
            self.olt_ok_first()
            self.take_olt_down()
            # While the alert's 2 minutes run:
            self.influx_rows()
            self.influx_restart()
            self.port_scan_scored()
            self.down_alert_delivered()
            self.snmp_interface_down_alerted()
            self.uplink_alert_delivered()
            self.kill_sending_alertmanager()
            # With the target down and its alert firing, every panel has something to show.
            self.dashboards()
            self.no_repeat_while_down()
            self.resolved_delivered()
            self.uplink_resolved()
            self.restart_killed_alertmanager()
            if sites_part is not None:
                sites_part.join()
                sites_part = None
            self.restart_all()
            self.restart_keeps_data()
            ok = all(r[2] for r in self.results)
        except CheckFailed as e:
            print(f"stopped: {e}", flush=True)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
        finally:
            if sites_part is not None:
                sites_part.join(timeout=900)
            if not ok:
                print("--- containers and their last log lines ---", flush=True)
                with contextlib.suppress(Exception):
                    self.s.dump_logs()
            if os.environ.get("VIGIA_E2E_KEEP") != "1":
                self.s.down(volumes=True)
                self.s.netns_down()
        passed = sum(1 for r in self.results if r[2])
        failed = len(self.results) - passed
        print(f"\n{'check':<110} {'seconds':>8}")
        for name, secs, good, _ in self.results:
            print(f"{('PASS ' if good else 'FAIL ') + name:<110} {secs:>8.1f}")
        print(f"{passed} passed, {failed} failed, {time.monotonic() - started:.0f} s in all")
        return 0 if ok and failed == 0 else 1


def panel_queries():
    """(dashboard / panel title, datasource uid, query as Grafana sends it with every
    variable at All) for every query of every provisioned dashboard."""
    for path in sorted(glob.glob(str(ROOT / "grafana/dashboards/*.json"))):
        d = json.load(open(path))
        all_values = {v["name"]: v.get("allValue", ".*") for v in d.get("templating", {}).get("list", [])}
        for p in d["panels"]:
            for t in p.get("targets", []):
                q = t.get("expr") or t.get("query")
                if q:
                    yield (f"{Path(path).name} / {p.get('title')}", (t.get("datasource") or {}).get("uid", ""),
                           substitute(q, all_values))


def substitute(q, all_values):
    """A panel query as Grafana sends it with every variable at All and a 15-minute range."""
    q = q.replace("$__rate_interval", "1m").replace("$__interval", "30s")
    q = q.replace("$timeFilter", "time > now() - 15m")
    for name in sorted(all_values, key=len, reverse=True):
        q = q.replace("${" + name + "}", all_values[name]).replace("$" + name, all_values[name])
    return q


if __name__ == "__main__":
    # tests/e2e/sites.py imports this file as `e2e`: one module, one CheckFailed.
    sys.modules.setdefault("e2e", sys.modules[__name__])
    import sites  # noqa: E402
    sys.exit(E2E().main())
