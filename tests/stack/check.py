#!/usr/bin/env python3
"""Offline checks of the stack's files that no upstream tool makes; run by validate.sh.

    check.py compose-rules COMPOSE_JSON            what compose.yaml promises (rendered)
    check.py agent-rules COMPOSE_JSON              what compose.agent.yaml promises
    check.py central-rules COMPOSE_JSON            compose.yaml + compose.central.yaml
    check.py cluster-rules COMPOSE_JSON            ... + compose.cluster.yaml
    check.py scrape-jobs                           the centre's vmagent scrapes the
                                                   exporters as Prometheus does
    check.py web-auth COMPOSE_JSON                 everything published beyond loopback
                                                   asks for a password, and whatever
                                                   talks to it sends one (from files)
    check.py energy OFF_JSON ON_JSON IDLE MAX      vigia-host's power model: off unless
                                                   .env gives both watts
    check.py publish-port SEED_JSON NEW_JSON PORT  seed 000's PROMETHEUS_PORT no longer
                                                   moves Prometheus; PROMETHEUS_PUBLISH_PORT
                                                   does
    check.py agent-ports-port JSON PORT            the agent's vigia-ports listens on PORT
    check.py alert-rules                           annotations, runbooks, a firing test each
    check.py metric-names PANEL_RULES              every metric the rules and dashboards
                                                   query is one an exporter or the stack
                                                   exposes
    check.py dashboards OUT_DIR                    JSON, ids, grid, datasources; writes
                                                   OUT_DIR/panel-rules.yml (every PromQL
                                                   expression, for promtool) and
                                                   OUT_DIR/*.ts (for tsc)

Each prints what is wrong and exits 1, or exits 0 silently.
"""

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
PUBLISHED = {"grafana", "vigia-ping", "prometheus"}
EXPORTERS = {"vigia-ports", "vigia-ping", "vigia-host", "vigia-capture"}
VOLUME_OWNERS = {"prometheus", "alertmanager", "grafana", "influxdb"}


class Problems(list):
    def need(self, ok, message):
        if not ok:
            self.append(message)

    def finish(self):
        for p in self:
            print(p)
        return 1 if self else 0


def compose_common(cfg, problems, exporters):
    services = cfg["services"]
    for name, svc in services.items():
        image = svc.get("image", "")
        problems.need(re.search(r":[^/]+$", image) and not image.endswith(":latest"),
                      f"{name}: image '{image}' is not pinned to a version")
        problems.need(svc.get("restart") == "unless-stopped", f"{name}: restart is not unless-stopped")
        problems.need("no-new-privileges:true" in svc.get("security_opt", []),
                      f"{name}: no-new-privileges is not set")
        hc = svc.get("healthcheck") or {}
        problems.need(hc.get("test") and not hc.get("disable"), f"{name}: no healthcheck")
        # A secret the command or healthcheck reads must be one the service mounts (the
        # site's board once checked with a password file it did not have: unhealthy).
        mounted = {x["source"] if isinstance(x, dict) else x for x in svc.get("secrets") or []}
        for arg in (svc.get("command") or []) + (hc.get("test") or []):
            for secret in re.findall(r"/run/secrets/([A-Za-z0-9_.-]+)", str(arg)):
                problems.need(secret in mounted, f"{name}: reads /run/secrets/{secret} but does not mount it")
        for dep, cond in (svc.get("depends_on") or {}).items():
            problems.need(cond.get("condition") == "service_healthy",
                          f"{name}: depends on {dep} without condition service_healthy")
    for name in exporters:
        svc = services.get(name)
        if svc is None:
            problems.append(f"{name}: missing")
            continue
        problems.need(svc.get("read_only") is True, f"{name}: root filesystem is not read-only")
        problems.need(svc.get("cap_drop") == ["ALL"], f"{name}: does not drop all capabilities")
        caps = sorted(svc.get("cap_add") or [])
        want = ["NET_ADMIN", "NET_RAW"] if name == "vigia-capture" else []
        problems.need(caps == want, f"{name}: capabilities {caps}, expected {want}")
        user = svc.get("user")
        if name != "vigia-capture":
            # The image's USER (uid 10001) applies unless the service overrides it.
            problems.need(user in (None, ""), f"{name}: runs as user {user!r}, not the image's non-root user")
        for mount in svc.get("volumes") or []:
            if mount.get("type") == "bind" and mount.get("source", "").startswith("/"):
                host_path = mount["source"]
                if host_path in ("/proc", "/sys", "/", "/var/run/docker.sock") or host_path.startswith(str(ROOT)):
                    problems.need(mount.get("read_only") is True,
                                  f"{name}: {host_path} is mounted writable")
    ping = services.get("vigia-ping")
    if ping:
        rng = (ping.get("sysctls") or {}).get("net.ipv4.ping_group_range", "")
        problems.need(rng.split() == ["10001", "10001"],
                      f"vigia-ping: net.ipv4.ping_group_range is {rng!r}, not the image's group 10001")


def published_only_by(problems, services, allowed):
    """Only the services in `allowed` publish a port beyond the host's loopback."""
    for name, svc in services.items():
        for port in svc.get("ports") or []:
            if name not in allowed:
                problems.need(port.get("host_ip", "").startswith("127."),
                              f"{name}: port {port.get('published')} is published beyond loopback")


def compose_rules(path):
    problems = Problems()
    cfg = json.loads(Path(path).read_text())
    services = cfg["services"]
    want = EXPORTERS | {"prometheus", "alertmanager", "grafana", "influxdb", "mailpit", "snmp-exporter"}
    problems.need(want <= set(services), f"services missing: {sorted(want - set(services))}")
    compose_common(cfg, problems, EXPORTERS)
    # The official snmp_exporter image runs as root: the service must say otherwise.
    snmp = services.get("snmp-exporter", {})
    problems.need(snmp.get("read_only") is True, "snmp-exporter: root filesystem is not read-only")
    problems.need(snmp.get("cap_drop") == ["ALL"] and not snmp.get("cap_add"),
                  f"snmp-exporter: capabilities drop {snmp.get('cap_drop')} add {snmp.get('cap_add')}, expected drop [ALL] only")
    user = str(snmp.get("user") or "")
    problems.need(user and user.split(":")[0] not in ("0", "root"),
                  f"snmp-exporter: runs as {user or 'the image user (root)'}, not a non-root user")
    published_only_by(problems, services, PUBLISHED)
    for name in ("vigia-ports", "vigia-host", "vigia-capture"):
        problems.need(services.get(name, {}).get("network_mode") == "host",
                      f"{name}: not on the host's network")
    problems.need(services.get("vigia-host", {}).get("pid") == "host", "vigia-host: not in the host's PID namespace")
    for name in VOLUME_OWNERS:
        named = [m for m in services.get(name, {}).get("volumes") or [] if m.get("type") == "volume"]
        problems.need(named, f"{name}: its data is not on a named volume")
    influx = services.get("influxdb", {}).get("environment") or {}
    for var in ("DOCKER_INFLUXDB_INIT_PASSWORD_FILE", "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN_FILE"):
        problems.need(var in influx, f"influxdb: {var} is not set")
    grafana = services.get("grafana", {}).get("environment") or {}
    problems.need("GF_SECURITY_ADMIN_PASSWORD__FILE" in grafana and "GF_SECURITY_ADMIN_PASSWORD" not in grafana,
                  "grafana: the admin password does not come from a secret file")
    # No password or token written into the compose file itself.
    for name, svc in services.items():
        for key, value in (svc.get("environment") or {}).items():
            if re.search(r"PASSWORD|TOKEN|SECRET", key) and not key.endswith("_FILE"):
                problems.append(f"{name}: {key} holds a secret inline; use a *_FILE secret")
    for name, sec in (cfg.get("secrets") or {}).items():
        problems.need(sec.get("file", "").startswith(str(ROOT / "secrets")) or "/secrets/" in sec.get("file", ""),
                      f"secret {name}: not a file under secrets/")
    return problems.finish()


def flag(svc, name):
    """The value of -name=VALUE in a service's command (VictoriaMetrics style), or None;
    a list when given more than once."""
    vals = [a.split("=", 1)[1] for a in svc.get("command") or [] if a.startswith(f"-{name}=")]
    return None if not vals else vals[0] if len(vals) == 1 else vals


def vm_hardened(problems, name, svc):
    problems.need(svc.get("read_only") is True, f"{name}: root filesystem is not read-only")
    problems.need(svc.get("cap_drop") == ["ALL"] and not svc.get("cap_add"), f"{name}: holds capabilities")


def agent_rules(path):
    problems = Problems()
    cfg = json.loads(Path(path).read_text())
    services = cfg["services"]
    problems.need(set(services) <= EXPORTERS | {"vmagent"},
                  f"agent runs more than the exporters and vmagent: {sorted(set(services) - EXPORTERS - {'vmagent'})}")
    compose_common(cfg, problems, set(services) & EXPORTERS)
    # A site behind NAT: nothing needs to reach it, so nothing listens beyond loopback.
    published_only_by(problems, services, set())
    for name, svc in services.items():
        for arg in svc.get("command") or []:
            m = re.search(r"--web\.listen-address=([^:]*):", arg)
            if m:
                problems.need(m.group(1).startswith("127."), f"{name}: listens on {m.group(1)}, not loopback")
    agent = services.get("vmagent")
    if agent is None:
        problems.append("vmagent: missing")
        return problems.finish()
    vm_hardened(problems, "vmagent", agent)
    url = flag(agent, "remoteWrite.url") or ""
    problems.need(url.startswith("https://") and url.endswith("/api/v1/write"),
                  f"vmagent: remote write URL {url!r} is not https://.../api/v1/write")
    problems.need(flag(agent, "remoteWrite.bearerTokenFile") == "/run/secrets/site_token", "vmagent: not the site's token")
    problems.need(flag(agent, "remoteWrite.tlsCAFile") == "/run/secrets/site_ca", "vmagent: not the NOC's CA")
    problems.need(flag(agent, "remoteWrite.tmpDataPath") and flag(agent, "remoteWrite.maxDiskUsagePerURL"),
                  "vmagent: no bounded disk buffer (tmpDataPath, maxDiskUsagePerURL)")
    problems.need(any(m.get("type") == "volume" and m.get("target") == flag(agent, "remoteWrite.tmpDataPath")
                      for m in agent.get("volumes") or []), "vmagent: its buffer is not on a named volume")
    centre = url.removesuffix("/api/v1/write")
    for name in set(services) & EXPORTERS:
        env = services[name].get("environment") or {}
        prefix = name.replace("-", "_").upper() + "__INFLUXDB__"
        problems.need(env.get(prefix + "URL") == centre, f"{name}: InfluxDB rows not through the NOC's ingress ({env.get(prefix + 'URL')})")
        problems.need(env.get(prefix + "TOKEN_FILE") == "/run/secrets/site_token", f"{name}: InfluxDB token is not the site's")
        problems.need(env.get(prefix + "CA_FILE") == "/run/secrets/site_ca", f"{name}: InfluxDB TLS not checked against the NOC's CA")
    scrape = yaml.safe_load((ROOT / "agent" / "vmagent.yml").read_text())
    labels = scrape.get("global", {}).get("external_labels", {})
    problems.need(set(labels) >= {"site", "host"}, f"agent/vmagent.yml: external_labels {labels}, expected site and host")
    return problems.finish()


def central_rules(path):
    problems = Problems()
    cfg = json.loads(Path(path).read_text())
    services = cfg["services"]
    compose_common(cfg, problems, EXPORTERS)
    problems.need("prometheus" not in services, "prometheus still runs beside VictoriaMetrics")
    for name in ("victoriametrics", "vmagent", "vmalert", "vmauth"):
        svc = services.get(name)
        if svc is None:
            problems.append(f"{name}: missing")
            continue
        vm_hardened(problems, name, svc)
    published_only_by(problems, services, PUBLISHED | {"vmauth"})
    vmalert = services.get("vmalert", {})
    problems.need(sorted(flag(vmalert, "notifier.url") or []) == ["http://alertmanager-2:9093", "http://alertmanager:9093"],
                  f"vmalert: notifies {flag(vmalert, 'notifier.url')}, not both Alertmanagers")
    problems.need(flag(vmalert, "rule") == "/etc/prometheus/rules/*.yml", "vmalert: not prometheus/rules/")
    problems.need(flag(vmalert, "remoteWrite.url") and flag(vmalert, "remoteRead.url"),
                  "vmalert: alert state is not written to and restored from the store")
    vmauth = services.get("vmauth", {})
    problems.need("influxdb_token" in [s.get("source") for s in vmauth.get("secrets") or []],
                  "vmauth: does not hold the centre's InfluxDB token")
    grafana = (services.get("grafana", {}).get("environment") or {}).get("VIGIA_METRICS_READ_URL")
    problems.need(grafana == flag(vmalert, "datasource.url"),
                  f"grafana reads {grafana}, vmalert {flag(vmalert, 'datasource.url')}: not the same store")
    return problems.finish()


def cluster_rules(path):
    problems = Problems()
    cfg = json.loads(Path(path).read_text())
    services = cfg["services"]
    compose_common(cfg, problems, EXPORTERS)
    problems.need("victoriametrics" not in services, "the single-node store still runs beside the cluster")
    storage = [n for n in services if n.startswith("vmstorage")]
    problems.need(len(storage) >= 2, f"storage nodes: {storage}")
    for name in storage + ["vminsert", "vmselect"]:
        if name in services:
            vm_hardened(problems, name, services[name])
    write = flag(services.get("vmagent", {}), "remoteWrite.url") or ""
    problems.need(write.startswith("http://vminsert:8480/insert/"), f"vmagent writes to {write}")
    problems.need((services.get("vmauth", {}).get("environment") or {}).get("VIGIA_METRICS_WRITE_URL", "").startswith(
        "http://vminsert:8480/"), "vmauth: the sites' writes do not go to vminsert")
    vmalert = services.get("vmalert", {})
    problems.need((flag(vmalert, "datasource.url") or "").startswith("http://vmselect:8481/select/"),
                  f"vmalert reads {flag(vmalert, 'datasource.url')}")
    grafana = (services.get("grafana", {}).get("environment") or {}).get("VIGIA_METRICS_READ_URL", "")
    problems.need(grafana.startswith("http://vmselect:8481/select/"), f"grafana reads {grafana}")
    for name in ("vminsert", "vmselect"):
        nodes = (flag(services.get(name, {}), "storageNode") or "").split(",")
        problems.need(len(nodes) == len(storage), f"{name}: storage nodes {nodes}, cluster has {storage}")
    return problems.finish()


def scrape_jobs():
    problems = Problems()
    prom = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]
    central = yaml.safe_load((ROOT / "victoriametrics" / "vmagent.yml").read_text())["scrape_configs"]
    prom_jobs = {j["job_name"]: j for j in prom}
    central_jobs = {j["job_name"]: j for j in central}
    for job in sorted(EXPORTERS | {"snmp"}):
        problems.need(prom_jobs.get(job) == central_jobs.get(job),
                      f"job {job}: prometheus/prometheus.yml {prom_jobs.get(job)} != victoriametrics/vmagent.yml {central_jobs.get(job)}")
    stack = set(prom_jobs) - EXPORTERS - {"prometheus"}
    problems.need(stack <= set(central_jobs), f"jobs Prometheus scrapes that the centre's vmagent does not: {sorted(stack - set(central_jobs))}")
    return problems.finish()


def vmauth_config(path):
    """The rendered vmauth config of two sites: each its own token, write paths only, and
    the centre's InfluxDB token in place of the site's."""
    problems = Problems()
    users = {u["name"]: u for u in yaml.safe_load(Path(path).read_text())["users"]}
    problems.need(set(users) == {"norte", "sur-2"}, f"users {sorted(users)}")
    problems.need(users.get("norte", {}).get("bearer_token") == "aaaa1111bbbb2222"
                  and users.get("sur-2", {}).get("bearer_token") == "cccc3333dddd4444", "tokens are not the sites' own")
    for name, u in users.items():
        paths = sorted(p for m in u["url_map"] for p in m["src_paths"])
        problems.need(paths == ["/api/v1/write", "/api/v2/write", "/write"], f"{name}: paths {paths}")
        influx = {p: m for m in u["url_map"] for p in m["src_paths"] if p != "/api/v1/write"}
        problems.need(all(m.get("headers") == ["Authorization: Token central-influx-token"] for m in influx.values()),
                      f"{name}: InfluxDB routes without the centre's token: {influx}")
        # The centre's database and bucket, first in the query (InfluxDB reads the first).
        problems.need(influx.get("/write", {}).get("url_prefix", "").endswith("/?db=vigia")
                      and influx.get("/api/v2/write", {}).get("url_prefix", "").endswith("/?org=vigia&bucket=vigia"),
                      f"{name}: InfluxDB routes not pinned to the centre's database and bucket: {influx}")
    return problems.finish()


# Basic auth of the board and Prometheus: the user make up writes into their web configs.
WEB_USER = "vigia"


def flag_value(command, flag):
    for arg in command or []:
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def secret_path(svc, path):
    """The secret a service mounts at `path` (/run/secrets/NAME), or None."""
    names = {x["source"] if isinstance(x, dict) else x for x in svc.get("secrets") or []}
    name = path.removeprefix("/run/secrets/")
    return name if path.startswith("/run/secrets/") and name in names else None


def published_need_auth(services, problems):
    """Whatever is published beyond the host's loopback asks for a password: Grafana its
    own login, every other service a web config (basic auth) from a secret."""
    for name, svc in services.items():
        public = [p for p in svc.get("ports") or [] if not p.get("host_ip", "").startswith("127.")]
        if not public or name == "grafana":
            continue
        web = flag_value(svc.get("command"), "--web.config.file")
        problems.need(web and secret_path(svc, web),
                      f"{name}: published on {public[0].get('host_ip') or 'every interface'} "
                      f"without a --web.config.file from a secret")


def web_auth(path):
    problems = Problems()
    cfg = json.loads(Path(path).read_text())
    services = cfg["services"]
    top_secrets = cfg.get("secrets") or {}
    published_need_auth(services, problems)
    expected = {"vigia-ping": ("board_web_config", "board_password"),
                "prometheus": ("prometheus_web_config", "prometheus_password")}
    for name, (web_secret, password_secret) in expected.items():
        svc = services.get(name, {})
        problems.need(flag_value(svc.get("command"), "--web.config.file") == f"/run/secrets/{web_secret}",
                      f"{name}: not started with --web.config.file=/run/secrets/{web_secret}")
        for secret in (web_secret, password_secret):
            problems.need(secret_path(svc, f"/run/secrets/{secret}"), f"{name}: does not mount secret {secret}")
            problems.need("/secrets/" in (top_secrets.get(secret) or {}).get("file", ""),
                          f"secret {secret}: not a file under secrets/")
    # The healthchecks get through: the web config asks for the password on /-/healthy
    # and /-/ready too.
    ping_hc = services.get("vigia-ping", {}).get("healthcheck", {}).get("test", [])
    def arg(test, flag):
        return test[test.index(flag) + 1] if flag in test[:-1] else None
    problems.need(arg(ping_hc, "--user") == WEB_USER and arg(ping_hc, "--password-file") == "/run/secrets/board_password",
                  f"vigia-ping: healthcheck sends no credentials: {ping_hc}")
    prom = services.get("prometheus", {})
    prom_hc = prom.get("healthcheck", {}).get("test", [])
    client = flag_value(prom_hc, "--http.config.file") or ""
    problems.need(client.startswith("/etc/prometheus/"), f"prometheus: healthcheck sends no credentials: {prom_hc}")
    if client.startswith("/etc/prometheus/"):
        auth = yaml.safe_load((ROOT / "prometheus" / client.removeprefix("/etc/prometheus/")).read_text())["basic_auth"]
        problems.need(auth == {"username": WEB_USER, "password_file": "/run/secrets/prometheus_password"},
                      f"prometheus: healthcheck client config {client}: {auth}")
    # Prometheus' own scrapes of the two: credentials from the secret files it mounts.
    jobs = {j["job_name"]: j for j in yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]}
    for job, secret in (("vigia-ping", "board_password"), ("prometheus", "prometheus_password")):
        auth = jobs.get(job, {}).get("basic_auth") or {}
        problems.need(auth.get("username") == WEB_USER and auth.get("password_file") == f"/run/secrets/{secret}"
                      and "password" not in auth and secret_path(prom, f"/run/secrets/{secret}"),
                      f"prometheus.yml: job {job} does not authenticate with /run/secrets/{secret}: {auth}")
    # Grafana's Prometheus datasource too.
    sources = yaml.safe_load((ROOT / "grafana/provisioning/datasources/vigia.yml").read_text())["datasources"]
    ds = next((d for d in sources if d["type"] == "prometheus"), {})
    problems.need(ds.get("basicAuth") is True and ds.get("basicAuthUser") == WEB_USER
                  and (ds.get("secureJsonData") or {}).get("basicAuthPassword") == "$__file{/run/secrets/prometheus_password}"
                  and secret_path(services.get("grafana", {}), "/run/secrets/prometheus_password"),
                  f"grafana: the Prometheus datasource does not authenticate from the secret file: {ds}")
    return problems.finish()


def energy(off_path, on_path, idle, max_watts):
    problems = Problems()
    names = ("VIGIA_HOST__ENERGY__MODEL__IDLE_WATTS", "VIGIA_HOST__ENERGY__MODEL__MAX_WATTS")
    off = json.loads(Path(off_path).read_text())["services"]["vigia-host"].get("environment") or {}
    on = json.loads(Path(on_path).read_text())["services"]["vigia-host"].get("environment") or {}
    invented = {k: v for k, v in off.items() if k.startswith("VIGIA_HOST__ENERGY__") and v is not None}
    problems.need(not invented, f"vigia-host: a power model nobody configured: {invented}")
    problems.need([on.get(n) for n in names] == [idle, max_watts],
                  f"vigia-host: .env's watts do not reach it: {[on.get(n) for n in names]}, expected {[idle, max_watts]}")
    return problems.finish()


def published(svc):
    return [str(p.get("published")) for p in svc.get("ports") or []]


def publish_port(seed_path, new_path, port):
    problems = Problems()
    seed = json.loads(Path(seed_path).read_text())["services"]
    new = json.loads(Path(new_path).read_text())["services"]
    problems.need(published(seed["prometheus"]) == ["9090"],
                  f"prometheus: seed 000's PROMETHEUS_PORT moved it to {published(seed['prometheus'])}")
    problems.need(seed["vigia-ports"]["command"][-1].endswith(":9470"),
                  f"vigia-ports: {seed['vigia-ports']['command']}")
    problems.need(published(new["prometheus"]) == [port],
                  f"prometheus: PROMETHEUS_PUBLISH_PORT={port} gives {published(new['prometheus'])}")
    return problems.finish()


def agent_ports_port(path, port):
    problems = Problems()
    svc = json.loads(Path(path).read_text())["services"]["vigia-ports"]
    problems.need(svc["command"][-1].endswith(f":{port}"), f"vigia-ports: {svc['command']}, expected port {port}")
    problems.need(svc["healthcheck"]["test"][-1].endswith(f":{port}"),
                  f"vigia-ports: healthcheck {svc['healthcheck']['test']}, expected port {port}")
    agent = json.loads(Path(path).read_text())["services"].get("vmagent", {})
    scraped = (agent.get("environment") or {}).get("PORTS_LISTEN_PORT")
    problems.need(scraped == port, f"vmagent scrapes vigia-ports on {scraped}, expected {port}")
    return problems.finish()


def load_rule_groups():
    rules = []
    for f in sorted((ROOT / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(f.read_text())["groups"]:
            rules.extend(group["rules"])
    return rules


def alert_rules():
    problems = Problems()
    runbooks = (ROOT / "docs" / "runbooks.md").read_text() if (ROOT / "docs" / "runbooks.md").exists() else ""
    anchors = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+\s+(.+)$", runbooks, re.M)}
    # What the links open (scripts/runbooks.py --check holds it equal to docs/runbooks.md).
    page = ROOT / "prometheus" / "consoles" / "runbooks.html"
    page_ids = set(re.findall(r'\bid="([^"]+)"', page.read_text())) if page.exists() else set()
    alerts = [r for r in load_rule_groups() if "alert" in r]
    firing = set()
    for f in sorted((ROOT / "prometheus" / "tests").glob("*.yml")):
        for test in yaml.safe_load(f.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                if case.get("exp_alerts"):
                    firing.add(case["alertname"])
    required = {"PingTargetDown", "PingUplinkDown", "PingTargetFlapping", "PingManySitesDown",
                "PingHighLatency", "PingPacketLoss", "PortCloseWaitPileup",
                "PortConnectionLimit", "HostHighCpu", "HostLoadJump", "HostMemoryLow",
                "HostDiskWillFill", "ContainerHighCpu", "ContainerHighMemory", "HostAnomaly",
                "TrafficAnomaly", "ExporterDown", "InfluxWriteFailing", "CaptureDropping",
                "AlertmanagerNotificationsFailing", "ProbeCertificateExpiry", "SnmpInterfaceDown",
                "SnmpInterfaceErrors", "SnmpInterfaceSaturated", "SnmpDeviceRebooted",
                "SnmpDeviceUnreachable"}
    names = {a["alert"] for a in alerts}
    problems.need(required <= names, f"alerts missing: {sorted(required - names)}")
    for a in alerts:
        name = a["alert"]
        labels, ann = a.get("labels", {}), a.get("annotations", {})
        problems.need(labels.get("severity") in ("critical", "warning"), f"{name}: severity is not critical or warning")
        for key in ("summary", "description", "runbook_url", "dashboard_uid"):
            problems.need(ann.get(key), f"{name}: no {key} annotation")
        url = ann.get("runbook_url", "")
        anchor = url.partition("#")[2]
        problems.need(url.startswith("docs/runbooks.md#"),
                      f"{name}: runbook_url {url!r} is not a section of docs/runbooks.md (docs/runbooks.md#...)")
        problems.need(anchor in anchors, f"{name}: runbook anchor #{anchor} is not a heading in docs/runbooks.md")
        problems.need(anchor in page_ids, f"{name}: runbook anchor #{anchor} is not on the served page "
                                          "prometheus/consoles/runbooks.html (run scripts/runbooks.py)")
        problems.need(name in firing, f"{name}: no promtool test case in which it fires")
    ping_down = next((a for a in alerts if a["alert"] == "PingTargetDown"), {})
    problems.need(ping_down.get("for") == "2m", "PingTargetDown: not `for: 2m` (seed 001's tolerance)")
    return problems.finish()


def substitute(expr):
    """Grafana variables as a query would see them with "All" selected."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)


def provisioned_uids():
    uids = set()
    for f in (ROOT / "grafana" / "provisioning" / "datasources").glob("*.yml"):
        for ds in yaml.safe_load(f.read_text()).get("datasources", []):
            uids.add(ds["uid"])
    return uids


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def overlaps(a, b):
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


def dashboards(out_dir):
    problems = Problems()
    out = Path(out_dir)
    uids = provisioned_uids()
    exprs = []
    seen_uids = {}
    files = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
    problems.need(len(files) >= 5, f"expected 5 dashboards, found {len(files)}")
    required = {"vigia-noc", "vigia-ports", "vigia-hosts", "vigia-traffic", "vigia-stack"}
    for f in files:
        try:
            d = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            problems.append(f"{f.name}: invalid JSON: {e}")
            continue
        uid = d.get("uid")
        problems.need(uid and uid not in seen_uids, f"{f.name}: uid {uid!r} missing or used by {seen_uids.get(uid)}")
        seen_uids[uid] = f.name
        panels = list(all_panels(d.get("panels", [])))
        ids = [p.get("id") for p in panels]
        dup = sorted({i for i in ids if ids.count(i) > 1 or i is None}, key=str)
        problems.need(not dup, f"{f.name}: panel ids repeated or missing: {dup}")
        for i, a in enumerate(panels):
            g = a.get("gridPos") or {}
            if not all(k in g for k in "xywh"):
                problems.append(f"{f.name}: panel {a.get('id')} has no full gridPos")
                continue
            problems.need(0 <= g["x"] and g["x"] + g["w"] <= 24, f"{f.name}: panel {a.get('id')} is outside the 24 columns")
            for b in panels[i + 1:]:
                if "gridPos" in b and overlaps(g, b["gridPos"]):
                    problems.append(f"{f.name}: panels {a.get('id')} and {b.get('id')} overlap")
        var_names = {v["name"] for v in d.get("templating", {}).get("list", [])}
        for want in ("host", "site"):
            problems.need(want in var_names, f"{f.name}: no ${want} variable")
        refs = []
        for p in panels:
            if p.get("type") == "row":
                continue
            refs.append((f"panel {p['id']} ({p.get('title')})", p.get("datasource"), p.get("targets", [])))
            problems.need(p.get("targets"), f"{f.name}: panel {p['id']} has no query")
        for v in d.get("templating", {}).get("list", []):
            q = v.get("query")
            refs.append((f"variable {v['name']}", v.get("datasource"),
                         [{"datasource": v.get("datasource"), "expr": q["query"] if isinstance(q, dict) else q}]))
        for a in d.get("annotations", {}).get("list", []):
            refs.append((f"annotation {a['name']}", a.get("datasource"), [dict(a.get("target", {}), datasource=a.get("datasource"))]))
        for where, ds, targets in refs:
            for t in [{"datasource": ds}] + targets:
                tds = t.get("datasource") or {}
                problems.need(tds.get("uid") in uids, f"{f.name}: {where}: datasource uid {tds.get('uid')!r} is not provisioned")
            for t in targets:
                kind = (t.get("datasource") or ds or {}).get("type")
                if kind == "prometheus":
                    expr = t.get("expr", "")
                    m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", expr, re.S)
                    if m:
                        expr = m.group(1)
                    elif re.fullmatch(r"\s*label_values\(\s*\w+\s*\)\s*", expr):
                        continue
                    exprs.append((f"{f.name} {where}", substitute(expr)))
                elif kind == "influxdb":
                    q = t.get("query", "")
                    problems.need(re.search(r"^SELECT .+ FROM \"\w+\" WHERE .*\$timeFilter", q),
                                  f"{f.name}: {where}: InfluxQL query without FROM or $timeFilter: {q}")
        ts = "import type { DashboardJson } from './dashboard-types';\n"
        ts += f"export const dashboard: DashboardJson = {json.dumps(d, indent=1)};\n"
        (out / f"{f.stem}.ts").write_text(ts)
    problems.need(required <= set(seen_uids), f"dashboards missing: {sorted(required - set(seen_uids))}")
    rules = {"groups": [{"name": "panels", "rules": [
        {"record": f"panel_expression_{i}", "expr": e, "labels": {"where": w}} for i, (w, e) in enumerate(exprs)]}]}
    (out / "panel-rules.yml").write_text(yaml.safe_dump(rules, allow_unicode=True))
    return problems.finish()


PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                   "unless", "bool", "offset", "inf", "nan",
                   # aggregation operators, which may stand before their `by (...)`
                   "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk",
                   "bottomk", "quantile", "count_values"}
# Series the stack itself provides: Prometheus (up, ALERTS, scrape_*, its own), Alertmanager,
# snmp_exporter's own (snmp_*), VictoriaMetrics' own (vm_*).
EXTERNAL = re.compile(r"^(up|ALERTS|ALERTS_FOR_STATE|scrape_\w+|prometheus_\w+|alertmanager_\w+|snmp_\w+|vm_\w+)$")


def metric_names_in(expr):
    """The metric names a PromQL expression selects (a tokenizer, not a parser: promtool
    has already parsed every expression)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", expr)
    names = set()
    for m in re.finditer(r"(?<![\w.])[a-zA-Z_:][\w:]*", expr):
        if re.match(r"\s*\(", expr[m.end():]) or m.group(0) in PROMQL_KEYWORDS:
            continue
        names.add(m.group(0))
    return names


def exported_names():
    """Metric names written as string literals in the exporters' sources; `{}` in a name
    (node_memory_{}_bytes) stands for any field."""
    literal, patterns = set(), []
    # snmp_exporter's series: the metrics of snmp/snmp.yml's modules (an EnumAsInfo metric
    # is exposed as <name>_info).
    for module in (yaml.safe_load((ROOT / "snmp" / "snmp.yml").read_text()) or {}).get("modules", {}).values():
        for m in module.get("metrics", []):
            literal.add(m["name"] + ("_info" if m.get("type") == "EnumAsInfo" else ""))
    for f in (ROOT / "exporters").glob("*/src/**/*.rs"):
        for name in re.findall(r'"((?:vigia|node|container)_[A-Za-z0-9_{}]+)"', f.read_text()):
            if "{" in name:
                patterns.append(re.compile("^" + re.sub(r"\{[^}]*\}", "[A-Za-z0-9_]+", name) + "$"))
            else:
                literal.add(name)
    return literal, patterns


def metric_names(panel_rules):
    problems = Problems()
    literal, patterns = exported_names()
    recorded = {r["record"] for r in load_rule_groups() if "record" in r}
    exprs = [(f"rule {r.get('alert') or r.get('record')}", r["expr"]) for r in load_rule_groups()]
    for r in yaml.safe_load(Path(panel_rules).read_text())["groups"][0]["rules"]:
        exprs.append((r["labels"]["where"], r["expr"]))
    for where, expr in exprs:
        for name in sorted(metric_names_in(expr)):
            base = re.sub(r"_(total|sum|count|bucket)$", "", name)
            known = (name in recorded or EXTERNAL.match(name) or name in literal or base in literal
                     or any(p.match(name) for p in patterns))
            problems.need(known, f"{where}: metric {name} is exported by nothing in the stack")
    return problems.finish()


def main(argv):
    cmd, args = argv[1], argv[2:]
    return {"compose-rules": compose_rules, "agent-rules": agent_rules, "central-rules": central_rules,
            "cluster-rules": cluster_rules, "scrape-jobs": scrape_jobs, "vmauth-config": vmauth_config,
            "web-auth": web_auth, "energy": energy, "publish-port": publish_port,
            "agent-ports-port": agent_ports_port,
            "alert-rules": alert_rules, "dashboards": dashboards,
            "metric-names": metric_names}[cmd](*args)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
