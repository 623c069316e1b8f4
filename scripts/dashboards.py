#!/usr/bin/env python3
"""Writes vigia's Grafana dashboards (grafana/dashboards/*.json).

The dashboards are generated so that every panel gets a unique id, a grid position that
cannot overlap another, and a datasource by its provisioned uid; the JSON files are
committed and `make validate` checks they are what this script writes.

    scripts/dashboards.py            # rewrite grafana/dashboards/
    scripts/dashboards.py --check    # exit 1 if a file differs from what it would write
"""

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "grafana" / "dashboards"

PROM = {"type": "prometheus", "uid": "vigia-prometheus"}
INFLUX = {"type": "influxdb", "uid": "vigia-influxdb"}

GREEN, YELLOW, RED = "green", "yellow", "red"


class Layout:
    """Places panels left to right in rows of 24 columns, so that none overlap."""

    def __init__(self):
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def place(self, w, h):
        if self.x + w > 24:
            self.newline()
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def newline(self):
        if self.x:
            self.y += self.row_h
        self.x = 0
        self.row_h = 0

    def take_id(self):
        i = self.next_id
        self.next_id += 1
        return i


def prom(expr, legend="", instant=False, table=False):
    t = {"datasource": PROM, "expr": expr, "legendFormat": legend or "__auto"}
    if instant:
        t["instant"] = True
        t["range"] = False
    if table:
        t["format"] = "table"
    return t


def influx(query, alias="", table=False):
    t = {
        "datasource": INFLUX,
        "query": query,
        "rawQuery": True,
        "resultFormat": "table" if table else "time_series",
    }
    if alias:
        t["alias"] = alias
    return t


def thresholds(*steps):
    """steps: (color, value) pairs; the first value is the base (null)."""
    out = []
    for i, (color, value) in enumerate(steps):
        out.append({"color": color, "value": None if i == 0 else value})
    return {"mode": "absolute", "steps": out}


def panel(layout, kind, title, targets, w=12, h=8, unit=None, description="",
          steps=None, mappings=None, options=None, custom=None, minv=None, maxv=None,
          no_value=None):
    ds = targets[0]["datasource"]
    for ref, t in zip("ABCDEFGHIJ", targets):
        t["refId"] = ref
    defaults = {}
    if unit:
        defaults["unit"] = unit
    if steps:
        defaults["thresholds"] = thresholds(*steps)
        defaults["color"] = {"mode": "thresholds"}
    if mappings:
        defaults["mappings"] = mappings
    if custom:
        defaults["custom"] = custom
    if minv is not None:
        defaults["min"] = minv
    if maxv is not None:
        defaults["max"] = maxv
    if no_value is not None:
        defaults["noValue"] = no_value
    p = {
        "id": layout.take_id(),
        "type": kind,
        "title": title,
        "gridPos": layout.place(w, h),
        "datasource": ds,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options or {},
    }
    if description:
        p["description"] = description
    return p


def row(layout, title):
    layout.newline()
    p = {
        "id": layout.take_id(),
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": layout.place(24, 1),
        "panels": [],
    }
    layout.newline()
    return p


def stat_options(text_mode="value_and_name", color_mode="background", graph="none"):
    return {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": color_mode,
        "graphMode": graph,
        "textMode": text_mode,
        "justifyMode": "auto",
        "orientation": "auto",
        "wideLayout": True,
        "showPercentChange": False,
    }


def ts_options():
    return {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }


def query_var(name, label, query, ds=PROM, multi=True):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": ds,
        "query": {"query": query, "refId": f"var-{name}"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "allValue": ".*",
        "multi": multi,
        "sort": 1,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
    }


def dashboard(uid, title, description, panels, variables, refresh="30s", time_from="now-6h"):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["vigia"],
        "editable": False,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "refresh": refresh,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "weekStart": "",
        "links": [
            {
                "title": "vigia",
                "type": "dashboards",
                "tags": ["vigia"],
                "asDropdown": True,
                "icon": "external link",
                "includeVars": False,
                "keepTime": True,
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "annotations": {
            "list": [
                {
                    "name": "Alerts",
                    "datasource": PROM,
                    "enable": True,
                    "hide": False,
                    "iconColor": "red",
                    "target": {
                        "refId": "alerts",
                        "expr": 'count by (alertname) (ALERTS{alertstate="firing"})',
                    },
                }
            ]
        },
        "templating": {"list": variables},
        "panels": panels,
    }


SITE = query_var("site", "Site", "label_values(up, site)")
HOST = query_var("host", "Host", 'label_values(up{site=~"$site"}, host)')


def noc():
    L = Layout()
    sel = 'site=~"$site", target=~"$target", host=~"$host"'
    status_map = [
        {"type": "value", "options": {
            "0": {"text": "OK", "color": GREEN, "index": 0},
            "1": {"text": "WARNING", "color": YELLOW, "index": 1},
            "2": {"text": "DOWN", "color": RED, "index": 2},
            # Before its first round decided anything.
            "3": {"text": "UNKNOWN", "color": "text", "index": 3},
            # Silent behind a down parent (its uplink).
            "4": {"text": "UNREACHABLE", "color": "purple", "index": 4},
        }},
    ]
    panels = [
        panel(L, "stat", "Status", [prom(
            f'max by (target) (vigia_ping_status{{status="down", {sel}}}) * 2'
            f' + max by (target) (vigia_ping_status{{status="warning", {sel}}})'
            f' + max by (target) (vigia_ping_status{{status="unknown", {sel}}}) * 3'
            f' + max by (target) (vigia_ping_status{{status="unreachable", {sel}}}) * 4',
            "{{target}}", instant=True)],
            w=24, h=8, steps=[(GREEN, None), (YELLOW, 1), (RED, 2)], mappings=status_map,
            options=stat_options(),
            description="One tile per ping target: green answers, yellow answers slowly or loses packets, red does not answer, purple unreachable (silent while its parent, the uplink, is down), grey not probed yet (seed 001's board)."),
        panel(L, "stat", "RTT (last reply)", [prom(
            f'max by (target) (vigia_ping_last_rtt_seconds{{{sel}}})', "{{target}}", instant=True)],
            w=12, h=6, unit="s", steps=[(GREEN, None), (YELLOW, 0.2), (RED, 1)],
            options=stat_options(color_mode="value")),
        panel(L, "stat", "Down for", [prom(
            f'time() - max by (target) (vigia_ping_status_change_timestamp_seconds{{{sel}}})'
            f' and on (target) (max by (target) (vigia_ping_status{{status="down", {sel}}}) == 1)',
            "{{target}}", instant=True)],
            w=12, h=6, unit="dtdurations", steps=[(RED, None)],
            options=stat_options(),
            description="How long each down target has been down: the stopwatch of seed 001's page."),
        panel(L, "stat", "Devices cut off behind each down uplink", [prom(
            f'count by (behind) (vigia_ping_unreachable_behind{{{sel}}})', "{{behind}}", instant=True)],
            w=24, h=5, steps=[("purple", None)],
            options=stat_options(),
            description="For each down target with others behind it (their parent chain leads to it): how many are unreachable. One PingUplinkDown alert stands for all of them."),
        panel(L, "stat", "Interfaces down (SNMP)", [prom(
            snmp_interfaces_down('site=~"$site", target=~"$target"'), "{{target}} {{ifName}}", instant=True)],
            w=24, h=5, steps=[(RED, None)], mappings=IF_OPER_STATUS, options=stat_options(),
            no_value="none down",
            description="Interfaces of the SNMP devices (prometheus/targets/snmp.yml) that are administratively up "
                        "but operationally down: SnmpInterfaceDown fires for each after 2 minutes. Details: "
                        "\"Network devices (SNMP)\"."),
        panel(L, "timeseries", "Average RTT (5m)", [prom(
            f'target:vigia_ping_rtt_seconds:avg5m{{{sel}}}', "{{target}}")],
            unit="s", options=ts_options()),
        panel(L, "timeseries", "Packet loss (5m)", [prom(
            f'target:vigia_ping_loss_ratio:rate5m{{{sel}}}', "{{target}}")],
            unit="percentunit", minv=0, maxv=1, options=ts_options()),
        panel(L, "timeseries", "Targets by status", [prom(
            f'sum by (status) (vigia_ping_status{{{sel}}})', "{{status}}")],
            options=ts_options()),
        panel(L, "timeseries", "Average RTT per round (InfluxDB)", [influx(
            'SELECT mean("avg_rtt_seconds") FROM "vigia_ping_round" WHERE "site" =~ /^$site$/ '
            'AND "target" =~ /^$target$/ AND $timeFilter GROUP BY time($__interval), "target" fill(none)',
            "$tag_target")],
            unit="s", options=ts_options(),
            description="The same rounds as stored in InfluxDB (measurement vigia_ping_round), for history beyond Prometheus' retention."),
    ]
    # host: the vigia-ping exporter (one per site with compose.agent.yaml).
    site = query_var("site", "Site", "label_values(vigia_ping_up, site)")
    host = query_var("host", "Host", 'label_values(vigia_ping_up{site=~"$site"}, host)')
    target = query_var("target", "Target", 'label_values(vigia_ping_up{site=~"$site", host=~"$host"}, target)')
    return dashboard("vigia-noc", "NOC status board",
                     "Ping targets: status tiles, RTT, loss and how long a target has been down.",
                     panels, [site, host, target], refresh="10s", time_from="now-3h")


# ifOperStatus as RFC 2863 numbers it; what SnmpInterfaceDown counts as down is red.
IF_OPER_STATUS = [
    {"type": "value", "options": {
        "1": {"text": "up", "color": GREEN, "index": 0},
        "2": {"text": "DOWN", "color": RED, "index": 1},
        "3": {"text": "testing", "color": "blue", "index": 2},
        "4": {"text": "unknown", "color": "text", "index": 3},
        "5": {"text": "dormant", "color": YELLOW, "index": 4},
        "6": {"text": "NOT PRESENT", "color": RED, "index": 5},
        "7": {"text": "LOWER LAYER DOWN", "color": RED, "index": 6},
    }},
]


def snmp_interfaces_down(sel):
    """SnmpInterfaceDown's condition (prometheus/rules/snmp.yml) over the series `sel` picks."""
    return (f"(ifOperStatus{{{sel}}} == 2 or ifOperStatus{{{sel}}} == 6 or ifOperStatus{{{sel}}} == 7)"
            f" and on (instance, job, target, ifIndex) ifAdminStatus{{{sel}}} == 1")


def snmp():
    L = Layout()
    dev = 'site=~"$site", host=~"$host", target=~"$target"'
    sel = dev + ', ifName=~"$interface"'
    panels = [
        row(L, "Devices"),
        panel(L, "stat", "Uptime", [prom(f'sysUpTime{{{dev}}} / 100', "{{target}}", instant=True)],
              w=8, h=5, unit="dtdurations", steps=[(RED, None), (GREEN, 900)],
              options=stat_options(color_mode="value"),
              description="sysUpTime: time since the device's SNMP agent (usually the device) started. "
                          "Red for the first 15 minutes after a reboot (SnmpDeviceRebooted)."),
        panel(L, "stat", "Interfaces down (admin up)", [prom(
            f"count by (target) ({snmp_interfaces_down(dev)})"
            f" or 0 * count by (target) (ifAdminStatus{{{dev}}})", "{{target}}", instant=True)],
            w=8, h=5, steps=[(GREEN, None), (RED, 1)], options=stat_options()),
        panel(L, "stat", "SNMP polling", [prom(f'up{{job="snmp", {dev}}}', "{{target}} ({{instance}})", instant=True)],
              w=8, h=5, steps=[(RED, None), (GREEN, 1)],
              mappings=[{"type": "value", "options": {
                  "0": {"text": "NO ANSWER", "color": RED, "index": 0},
                  "1": {"text": "OK", "color": GREEN, "index": 1}}}],
              options=stat_options(),
              description="Whether snmp-exporter got an answer from the device (SnmpDeviceUnreachable after 2 minutes without)."),
        panel(L, "table", "Devices", [prom(
            f'sysName{{{dev}}} * on (instance, job, target) group_left (sysDescr) sysDescr{{{dev}}}', instant=True, table=True)],
            w=16, h=6, options={"showHeader": True},
            description="sysName and sysDescr as each device reports them."),
        panel(L, "timeseries", "Poll duration", [prom(f'snmp_scrape_duration_seconds{{{dev}}}', "{{target}}")],
              w=8, h=6, unit="s", options=ts_options(),
              description="How long snmp-exporter took to walk the device (the job allows 25 s)."),
        row(L, "Interfaces"),
        panel(L, "state-timeline", "Interface status", [prom(f'ifOperStatus{{{sel}}}', "{{target}} {{ifName}}")],
              w=24, h=8, mappings=IF_OPER_STATUS,
              options={"mergeValues": True, "showValue": "auto", "alignValue": "left", "rowHeight": 0.9,
                       "legend": {"displayMode": "list", "placement": "bottom", "showLegend": False},
                       "tooltip": {"mode": "single", "sort": "none"}},
              description="ifOperStatus over time. An administratively shut interface shows down too; "
                          "only admin-up ones alert."),
        panel(L, "timeseries", "Traffic", [
            prom(f'rate(ifHCInOctets{{{sel}}}[$__rate_interval]) * 8', "{{target}} {{ifName}} in"),
            prom(f'-rate(ifHCOutOctets{{{sel}}}[$__rate_interval]) * 8', "{{target}} {{ifName}} out")],
            unit="bps", options=ts_options(), description="Bits per second from the 64-bit octet counters; out is drawn below zero."),
        panel(L, "timeseries", "Utilisation (of ifHighSpeed)", [
            prom(f'interface:ifHCInOctets:utilisation_rate5m{{{sel}}}', "{{target}} {{ifName}} in"),
            prom(f'interface:ifHCOutOctets:utilisation_rate5m{{{sel}}}', "{{target}} {{ifName}} out")],
            unit="percentunit", minv=0, options=ts_options(),
            description="5-minute average against the interface's speed; SnmpInterfaceSaturated fires above 90% for 15 minutes."),
        panel(L, "timeseries", "Errors (share of packets)", [
            prom(f'interface:ifInErrors:ratio_rate5m{{{sel}}}', "{{target}} {{ifName}} in"),
            prom(f'interface:ifOutErrors:ratio_rate5m{{{sel}}}', "{{target}} {{ifName}} out")],
            unit="percentunit", minv=0, options=ts_options(),
            description="ifInErrors / ifOutErrors against the packets; SnmpInterfaceErrors fires above 1% for 10 minutes."),
        panel(L, "timeseries", "Discards", [
            prom(f'rate(ifInDiscards{{{sel}}}[$__rate_interval])', "{{target}} {{ifName}} in"),
            prom(f'-rate(ifOutDiscards{{{sel}}}[$__rate_interval])', "{{target}} {{ifName}} out")],
            unit="pps", options=ts_options(),
            description="Packets dropped without an error: full queues (congestion) or policy."),
        panel(L, "timeseries", "Unicast packets", [
            prom(f'rate(ifHCInUcastPkts{{{sel}}}[$__rate_interval])', "{{target}} {{ifName}} in"),
            prom(f'-rate(ifHCOutUcastPkts{{{sel}}}[$__rate_interval])', "{{target}} {{ifName}} out")],
            unit="pps", options=ts_options()),
        panel(L, "table", "Interfaces", [prom(f'ifHighSpeed{{{sel}}}', instant=True, table=True)],
              w=12, options={"showHeader": True},
              description="Each interface's index, name, alias (the operator's description), vendor text and speed (Mbit/s)."),
    ]
    site = query_var("site", "Site", "label_values(sysUpTime, site)")
    host = query_var("host", "Host", 'label_values(sysUpTime{site=~"$site"}, host)')
    target = query_var("target", "Device", 'label_values(sysUpTime{site=~"$site", host=~"$host"}, target)')
    interface = query_var("interface", "Interface", 'label_values(ifOperStatus{target=~"$target"}, ifName)')
    return dashboard("vigia-snmp", "Network devices (SNMP)",
                     "SNMP devices through snmp_exporter's if_mib module: uptime, interface status, traffic, "
                     "utilisation, errors and discards, per device and interface. Host is the exporter that polls.",
                     panels, [site, host, target, interface], refresh="30s", time_from="now-6h")


def ports():
    L = Layout()
    sel = 'host=~"$host", port=~"$port"'
    panels = [
        panel(L, "stat", "CLOSE_WAIT per port (local side)", [prom(
            f'sum by (host, port) (vigia_port_connections{{{sel}, side="local", state="close_wait"}})',
            "{{host}}:{{port}}", instant=True)],
            w=12, h=5, steps=[(GREEN, None), (YELLOW, 50), (RED, 100)],
            options=stat_options(color_mode="value")),
        panel(L, "stat", "Connections per port (all but listen)", [prom(
            f'port:vigia_port_connections:sum{{{sel}}}', "{{host}}:{{port}}", instant=True)],
            w=12, h=5, options=stat_options(color_mode="none")),
        panel(L, "timeseries", "Local side (your services) by state", [prom(
            f'sum by (host, port, state) (vigia_port_connections{{{sel}, side="local", state!="listen"}})',
            "{{host}}:{{port}} {{state}}")], options=ts_options()),
        panel(L, "timeseries", "Remote side (outgoing) by state", [prom(
            f'sum by (host, port, state) (vigia_port_connections{{{sel}, side="remote"}})',
            "{{host}}:{{port}} {{state}}")], options=ts_options()),
        panel(L, "timeseries", "Connections against the port's ceiling", [
            prom(f'port:vigia_port_connections:sum{{{sel}}}', "{{host}}:{{port}}"),
            prom('vigia_port_connection_limit{port=~"$port"}', "ceiling {{port}}")],
            options=ts_options(),
            description="Ceilings are set in prometheus/rules/port-limits.yml (alert PortConnectionLimit)."),
        panel(L, "timeseries", "All TCP sockets of the host by state", [prom(
            'sum by (host, state) (vigia_tcp_connections{host=~"$host"})', "{{host}} {{state}}")],
            options=ts_options()),
        panel(L, "timeseries", "Established per port (InfluxDB)", [influx(
            'SELECT sum("count") FROM "vigia_port_connections" WHERE "host" =~ /^$host$/ '
            'AND "port" =~ /^$port$/ AND "state" = \'established\' AND $timeFilter '
            'GROUP BY time($__interval), "host", "port" fill(none)',
            "$tag_host:$tag_port")],
            w=24, options=ts_options()),
    ]
    port = query_var("port", "Port", 'label_values(vigia_port_connections{host=~"$host"}, port)')
    return dashboard("vigia-ports", "Ports",
                     "TCP connections per port, side and state (vigia-ports).",
                     panels, [SITE, HOST, port])


def hosts():
    L = Layout()
    h = 'host=~"$host"'
    panels = [
        row(L, "Hosts"),
        panel(L, "timeseries", "CPU busy", [prom(
            f'instance:node_cpu_utilisation:rate5m{{{h}}}', "{{host}}")],
            unit="percentunit", minv=0, maxv=1, options=ts_options()),
        panel(L, "timeseries", "Load (1 minute)", [prom(f'node_load1{{{h}}}', "{{host}}")],
              options=ts_options(), description="HostLoadJump fires when this moves by more than 20% against its previous 30 minutes."),
        panel(L, "timeseries", "Memory available", [prom(
            f'instance:node_memory_available:ratio{{{h}}}', "{{host}}")],
            unit="percentunit", minv=0, maxv=1, options=ts_options()),
        panel(L, "timeseries", "Filesystem space available", [prom(
            f'node_filesystem_avail_bytes{{{h}, fstype!~"tmpfs|ramfs"}} / node_filesystem_size_bytes{{{h}, fstype!~"tmpfs|ramfs"}}',
            "{{host}} {{mountpoint}}")],
            unit="percentunit", minv=0, maxv=1, options=ts_options()),
        panel(L, "timeseries", "Network traffic", [
            prom(f'sum by (host) (rate(node_network_receive_bytes_total{{{h}, device!="lo"}}[5m]))', "{{host}} in"),
            prom(f'-sum by (host) (rate(node_network_transmit_bytes_total{{{h}, device!="lo"}}[5m]))', "{{host}} out")],
            unit="Bps", options=ts_options()),
        panel(L, "timeseries", "Disk I/O", [
            prom(f'sum by (host) (rate(node_disk_read_bytes_total{{{h}}}[5m]))', "{{host}} read"),
            prom(f'-sum by (host) (rate(node_disk_written_bytes_total{{{h}}}[5m]))', "{{host}} written")],
            unit="Bps", options=ts_options()),
        panel(L, "timeseries", "Power", [prom(
            f'sum by (host, source) (rate(vigia_host_energy_joules_total{{{h}}}[5m]))', "{{host}} ({{source}})")],
            unit="watt", options=ts_options(),
            description="From RAPL energy counters; source=model is an estimate from CPU use, not a measurement."),
        panel(L, "timeseries", "Processes and users", [
            prom(f'sum by (host) (vigia_host_processes{{{h}}})', "{{host}} processes"),
            prom(f'vigia_host_users_logged_in{{{h}}}', "{{host}} users")],
            options=ts_options()),
        row(L, "Containers"),
        panel(L, "timeseries", "Container CPU", [prom(
            f'container:container_cpu_usage_seconds:rate5m{{{h}}}', "{{host}} {{name}}")],
            unit="short", options=ts_options(), description="CPU cores in use per container."),
        panel(L, "timeseries", "Container memory (working set)", [prom(
            f'container_memory_working_set_bytes{{{h}}}', "{{host}} {{name}}")],
            unit="bytes", options=ts_options()),
        panel(L, "timeseries", "Container network", [
            prom(f'sum by (host, name) (rate(container_network_receive_bytes_total{{{h}}}[5m]))', "{{host}} {{name}} in"),
            prom(f'-sum by (host, name) (rate(container_network_transmit_bytes_total{{{h}}}[5m]))', "{{host}} {{name}} out")],
            unit="Bps", options=ts_options()),
        panel(L, "timeseries", "Processes by state (InfluxDB inventory)", [influx(
            'SELECT last("processes") FROM "vigia_host_inventory" WHERE "host" =~ /^$host$/ '
            'AND $timeFilter GROUP BY time($__interval), "host" fill(none)', "$tag_host")],
            options=ts_options(), description="Inventory snapshots vigia-host stores in InfluxDB (query by host and time)."),
    ]
    return dashboard("vigia-hosts", "Hosts & containers",
                     "Host and container metrics (vigia-host: node_exporter and cAdvisor names).",
                     panels, [SITE, HOST])


def traffic():
    L = Layout()
    h = 'host=~"$host"'
    panels = [
        row(L, "Anomaly scores"),
        panel(L, "timeseries", "Traffic anomaly score (Prometheus)", [
            prom(f'vigia_capture_anomaly_score{{{h}}}', "{{host}} score"),
            prom(f'vigia_capture_anomaly_threshold{{{h}}}', "{{host}} threshold")],
            minv=0, maxv=1, options=ts_options()),
        panel(L, "timeseries", "Anomalous windows (InfluxDB)", [influx(
            'SELECT max("score") FROM "vigia_anomaly_window" WHERE "host" =~ /^$host$/ AND $timeFilter '
            'GROUP BY time($__interval) fill(none)', "anomalous window score")],
            options=ts_options(),
            description="Windows over the threshold as vigia-capture stores them in InfluxDB (measurement vigia_anomaly_window, with their top features), next to the live score on the left."),
        panel(L, "timeseries", "Host anomaly score", [
            prom(f'vigia_host_anomaly_score{{{h}}}', "{{host}} score"),
            prom(f'vigia_host_anomaly_threshold{{{h}}}', "{{host}} threshold")],
            minv=0, maxv=1, options=ts_options()),
        panel(L, "timeseries", "Host features that moved (z-score)", [prom(
            f'vigia_host_anomaly_feature_zscore{{{h}}}', "{{host}} {{feature}}")],
            options=ts_options()),
        row(L, "Traffic"),
        panel(L, "timeseries", "Packets by protocol (Prometheus)", [prom(
            f'sum by (host, protocol) (rate(vigia_capture_packets_total{{{h}}}[5m]))', "{{host}} {{protocol}}")],
            unit="pps", options=ts_options()),
        panel(L, "timeseries", "Bytes of finished flows by protocol (InfluxDB)", [influx(
            'SELECT sum("bytes") FROM "vigia_flow" WHERE "host" =~ /^$host$/ AND $timeFilter '
            'GROUP BY time($__interval), "protocol" fill(none)', "$tag_protocol")],
            options=ts_options()),
        panel(L, "timeseries", "Bytes by protocol", [prom(
            f'sum by (host, protocol) (rate(vigia_capture_bytes_total{{{h}}}[5m]))', "{{host}} {{protocol}}")],
            unit="Bps", options=ts_options()),
        panel(L, "timeseries", "Flows active", [prom(
            f'vigia_capture_flows_active{{{h}}}', "{{host}}")], options=ts_options()),
        # Seed 002's rows, as stored: which windows were anomalous and why, and the flows
        # (addresses, ports, sizes) with the score of the window they ended in.
        row(L, "Rows in InfluxDB"),
        panel(L, "table", "Anomalous windows and what moved (InfluxDB)", [influx(
            'SELECT "score", "threshold", "top_features", "packets", "distinct_sources", '
            '"distinct_destination_ports" FROM "vigia_anomaly_window" '
            'WHERE "host" =~ /^$host$/ AND $timeFilter ORDER BY time DESC LIMIT 50', table=True)],
            w=24, options={"showHeader": True},
            description="One row per window whose score reached the threshold, newest first, with the features that moved most (name:+z-score)."),
        panel(L, "table", "Finished flows, newest first (InfluxDB)", [influx(
            'SELECT "src", "dst", "protocol", "src_port", "dst_port", "packets", "bytes", '
            '"duration_seconds", "window_score" FROM "vigia_flow" '
            'WHERE "host" =~ /^$host$/ AND $timeFilter ORDER BY time DESC LIMIT 100', table=True)],
            w=24, h=10, unit=None, options={"showHeader": True},
            description="Each finished flow (5-tuple, both directions) with the anomaly score of the window it ended in."),
    ]
    return dashboard("vigia-traffic", "Traffic & anomalies",
                     "Captured traffic and anomaly scores: Prometheus and InfluxDB side by side (seed 002).",
                     panels, [SITE, HOST])


def stack():
    L = Layout()
    h = 'host=~"$host"'
    panels = [
        panel(L, "stat", "Targets up", [prom(
            f'up{{{h}, instance=~"$target"}}', "{{job}} {{instance}}", instant=True)],
            w=24, h=6, steps=[(RED, None), (GREEN, 1)],
            mappings=[{"type": "value", "options": {
                "0": {"text": "DOWN", "color": RED, "index": 0},
                "1": {"text": "UP", "color": GREEN, "index": 1}}}],
            options=stat_options()),
        panel(L, "timeseries", "Firing alerts", [prom(
            'count by (alertname, severity) (ALERTS{alertstate="firing"})', "{{alertname}} ({{severity}})")],
            options=ts_options()),
        panel(L, "timeseries", "Notifications sent and failed", [
            prom('sum by (integration) (rate(alertmanager_notifications_total[5m]))', "{{integration}} sent"),
            prom('sum by (integration) (rate(alertmanager_notifications_failed_total[5m]))', "{{integration}} failed")],
            unit="ops", options=ts_options()),
        panel(L, "timeseries", "InfluxDB points written and dropped", [
            prom(f'sum by (job, host) (rate(vigia_influxdb_points_written_total{{{h}}}[5m]))', "{{job}} {{host}} written"),
            prom(f'sum by (job, host, reason) (rate(vigia_influxdb_points_dropped_total{{{h}}}[5m]))', "{{job}} {{host}} dropped ({{reason}})")],
            unit="ops", options=ts_options()),
        panel(L, "timeseries", "InfluxDB write errors and queue", [
            prom(f'sum by (job, host, reason) (rate(vigia_influxdb_write_errors_total{{{h}}}[5m]))', "{{job}} {{host}} {{reason}}"),
            prom(f'vigia_influxdb_queue_points{{{h}}}', "{{job}} {{host}} queued")],
            options=ts_options()),
        panel(L, "timeseries", "Capture drops", [prom(
            f'sum by (host, stage) (rate(vigia_capture_dropped_packets_total{{{h}}}[5m]))', "{{host}} {{stage}}")],
            unit="pps", options=ts_options()),
        panel(L, "timeseries", "Exporter errors", [prom(
            f'sum by (job, host, source) (rate(vigia_errors_total{{{h}}}[5m]))', "{{job}} {{host}} {{source}}")],
            unit="ops", options=ts_options()),
        panel(L, "timeseries", "Scrape duration", [prom(
            f'scrape_duration_seconds{{{h}, instance=~"$target"}}', "{{job}} {{instance}}")],
            unit="s", options=ts_options()),
        # Prometheus' head (compose.yaml) or VictoriaMetrics' series active this hour
        # (compose.central.yaml): whichever store the datasource reads.
        panel(L, "timeseries", "Series in the metrics store", [prom(
            'prometheus_tsdb_head_series or vm_cache_entries{type="storage/hour_metric_ids"}',
            "{{job}} {{instance}}")], options=ts_options()),
        panel(L, "timeseries", "Ping rounds stored (InfluxDB)", [influx(
            'SELECT count("sent") FROM "vigia_ping_round" WHERE "host" =~ /^$host$/ AND $timeFilter '
            'GROUP BY time($__interval) fill(none)',
            "rounds")], w=24, options=ts_options(),
            description="Rows reaching InfluxDB: the end of the exporters' write path."),
    ]
    target = query_var("target", "Target", 'label_values(up{host=~"$host"}, instance)')
    return dashboard("vigia-stack", "Stack health",
                     "Is the monitoring itself working: targets, alerts, notifications, InfluxDB writes, capture drops.",
                     panels, [SITE, HOST, target])


DASHBOARDS = {
    "noc.json": noc,
    "ports.json": ports,
    "hosts.json": hosts,
    "traffic.json": traffic,
    "stack.json": stack,
    "snmp.json": snmp,
}


def render(build):
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    OUT.mkdir(parents=True, exist_ok=True)
    for name, build in DASHBOARDS.items():
        text = render(build)
        path = OUT / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print("out of date (run scripts/dashboards.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
