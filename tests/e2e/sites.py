"""The many-sites part of `make e2e` (issue 14), run by e2e.py in a thread beside the main
stack's checks so that its waits (a 3-minute link cut) overlap theirs.

A NOC (compose.yaml + compose.central.yaml: VictoriaMetrics, vmagent, vmalert, the vmauth
ingress, two Alertmanagers, InfluxDB, with e2e's stand-ins) runs as its own project. Two
sites are installed as an operator would: `scripts/agent-bundle.sh` makes each bundle at
the NOC, the bundle is unpacked and `./run.sh` loads its images and starts it
(tests/e2e/compose.site.e2e.yaml puts each site's services in one network namespace of
their own, linked to the NOC's network). Then, as an operator would see it:

- both sites' series are in VictoriaMetrics with their `site` label, their rows in the
  NOC's InfluxDB with their `site` tag;
- a wrong or missing credential is refused (401) and an agent holding one logs it;
- site e2e-b's link is cut for 3 minutes; VictoriaMetrics restarts during the cut while
  e2e-a writes; meanwhile vmalert's PingTargetDown for e2e-a's device (the main test's
  namespace host, down then) reaches both Alertmanagers, and one email goes out;
  afterwards neither site's series has a gap, nothing was dropped;
- every PromQL panel of every dashboard answers against VictoriaMetrics.
"""

import json
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
from pathlib import Path

import e2e
from e2e import COMPOSE_BIN, DOCKER, ROOT, TOOLS_IMAGE, VIGIA_IMAGE, CheckFailed, free_port, http, http_json, log, require, run, wait_until

CENTRE = "vigia-e2e-centre"
NETWORK = "vigia-e2e-centre"  # tests/e2e/compose.centre.e2e.yaml
INGRESS = "https://vmauth:8427"  # as the sites reach it, on the NOC's network
# Site name -> (host name, pings its own devices). e2e-a pings the main test's namespace
# host (down during the run), e2e-b is the one whose link is cut.
SITES = {"e2e-a": ("site-a-host", True), "e2e-b": ("site-b-host", False)}
CUT_SITE, CUT_S = "e2e-b", 180
SITE_DEVICE = "olt-site-a"
SITE_ROUTER, SITE_UPLINK = "router-site-a", "e2e-a-uplink"
# agent/vmagent.yml: 15 s, vigia-ping 10 s.
SCRAPE_S = {"vigia-ping": 10}
DEFAULT_SCRAPE_S = 15
AGENT_JOBS = {"vigia-ports", "vigia-host", "vigia-capture", "vmagent"}


def vm_metrics(text):
    return e2e.parse_metrics(text)


class Sites:
    def __init__(self, test):
        self.t = test
        self.work = e2e.WORK / "sites"
        self.ports = {k: free_port() for k in ("VM_PORT", "INGEST_PORT", "INFLUXDB_PORT", "MAILPIT_PORT",
                                                "E2E_RECEIVER_PORT", "PROMETHEUS_PORT", "BOARD_PORT")}
        self.centre_dir = self.work / "centre"
        self.env_file = self.centre_dir / "env"
        self.centre_cmd = [str(COMPOSE_BIN), "--project-name", CENTRE, "--project-directory", str(ROOT),
                           "--env-file", str(self.env_file),
                           "-f", str(ROOT / "compose.yaml"), "-f", str(ROOT / "compose.central.yaml"),
                           "-f", str(ROOT / "tests/e2e/compose.e2e.yaml"),
                           "-f", str(ROOT / "tests/e2e/compose.centre.e2e.yaml")]
        self.bundles = {}
        self.installed = {}
        self.probes = []
        self.names = set()

    # --- plumbing ------------------------------------------------------------------

    def check(self, name, required=False):
        self.names.add(name)
        return self.t.check(name, required=required)

    def centre(self, *args, check=True, timeout=600):
        return run(*self.centre_cmd, *args, check=check, timeout=timeout)

    def site_env(self, site):
        env = dict(os.environ)
        env.update({
            "COMPOSE_FILE": f"compose.agent.yaml:{ROOT / 'tests/e2e/compose.site.e2e.yaml'}",
            "COMPOSE_PROJECT_NAME": f"vigia-e2e-site-{site}",
            "COMPOSE": str(COMPOSE_BIN),
            "DOCKER": DOCKER,
        })
        return env

    def site_compose(self, site, *args, check=True, timeout=300):
        return run(str(COMPOSE_BIN), *args, check=check, timeout=timeout, cwd=self.bundles[site],
                   env=self.site_env(site))

    def site_vmagent(self, site):
        cid = self.site_compose(site, "ps", "-q", "vmagent").stdout.strip()
        require(cid, f"site {site}: no vmagent container")
        return cid

    def agent_metrics(self, site):
        out = run(DOCKER, "exec", self.site_vmagent(site), "wget", "-q", "-O", "-", "http://127.0.0.1:8429/metrics").stdout
        return vm_metrics(out)

    def vm(self, path, **params):
        url = f"http://127.0.0.1:{self.ports['VM_PORT']}{path}?" + urllib.parse.urlencode(params)
        return http_json(url)

    def vm_query(self, expr):
        body = self.vm("/api/v1/query", query=expr)
        require(body["status"] == "success", f"{expr}: {body}")
        return body["data"]["result"]

    def vm_export(self, match, start, end):
        url = f"http://127.0.0.1:{self.ports['VM_PORT']}/api/v1/export?" + urllib.parse.urlencode(
            {"match[]": match, "start": f"{start:.0f}", "end": f"{end:.0f}"})
        _, body = http(url, timeout=30)
        return [json.loads(line) for line in body.decode().splitlines() if line.strip()]

    def influx(self, q):
        url = f"http://127.0.0.1:{self.ports['INFLUXDB_PORT']}/query?" + urllib.parse.urlencode({"db": "vigia", "q": q})
        res = http_json(url)["results"][0]
        require("error" not in res, f"{q}: {res.get('error')}")
        return res.get("series", [])

    # --- setup -----------------------------------------------------------------------

    def prepare(self):
        # What a killed run may have left: its projects (by name: their files are gone
        # with the main test's work directory) and probe containers.
        for project in (CENTRE, *(f"vigia-e2e-site-{site}" for site in SITES)):
            run(str(COMPOSE_BIN), "--project-name", project, "down", "-v", "--remove-orphans", check=False, timeout=300)
        left = run(DOCKER, "ps", "-aq", "--filter", "label=vigia.e2e=sites", check=False).stdout.split()
        if left:
            run(DOCKER, "rm", "-f", *left, check=False)
        shutil.rmtree(self.work, ignore_errors=True)
        sec = self.centre_dir / "secrets"
        sec.mkdir(parents=True)
        (self.centre_dir / "ping").mkdir()
        shutil.copy(ROOT / "ping/ping.yaml", self.centre_dir / "ping/ping.yaml")
        # The NOC polls the main test's SNMP device itself (its snmp-exporter, the main
        # test's targets/snmp-e2e.yml and credentials), as a NOC polls the devices it
        # reaches: the SNMP dashboard has data to show from VictoriaMetrics.
        shutil.copytree(e2e.WORK / "prometheus/targets", self.centre_dir / "prometheus/targets")
        (self.centre_dir / "ping/targets.txt").write_text("localhost 127.0.0.1\n")
        # board_password: the centre's vmagent scrapes vigia-ping with it, as Prometheus does.
        for name in ("grafana_admin_password", "influxdb_admin_password", "influxdb_token",
                     "board_password", "prometheus_password"):
            (sec / name).write_text(secrets.token_urlsafe(24))
        (sec / "telegram_bot_token").write_text("123456:e2e-bot-token")
        (sec / "discord_webhook_url").write_text("http://receiver:8080/api/webhooks/42/e2e-webhook-token")
        (sec / "smtp_password").write_text("")
        for name in ("snmp_community", "snmp_v3_auth_password", "snmp_v3_priv_password"):
            shutil.copy(e2e.WORK / "secrets" / name, sec / name)
        for f in sec.iterdir():
            f.chmod(0o644)
        # The NOC's authority, ingress certificate and site tokens, as `make site` makes them.
        env = dict(os.environ, VIGIA_SECRETS_DIR=str(sec), INGEST_HOSTNAMES="vmauth,localhost,127.0.0.1",
                   VIGIA_SITE_NO_RESTART="1")
        for site in SITES:
            run("scripts/site.sh", site, cwd=ROOT, env=env)
        centre_env = {
            "VIGIA_IMAGE": VIGIA_IMAGE,
            "DOCKER_GID": os.stat("/var/run/docker.sock").st_gid,
            "PUBLISH_ADDRESS": "127.0.0.1",
            "HOST_NAME": "noc",
            "GRAFANA_URL": "http://grafana.e2e.test:3000",
            "ALERT_EMAIL_TO": "noc@e2e.test",
            "SMTP_FROM": "vigia@e2e.test",
            "TELEGRAM_CHAT_ID": "-1001234",
            "TELEGRAM_API_URL": "http://receiver:8080",
            "METRICS_LATENCY_OFFSET": "1s",
            "SNMP_V3_USERNAME": e2e.SNMP_V3_USER,
            "E2E_WORK": self.centre_dir,
            "E2E_TOOLS_IMAGE": TOOLS_IMAGE,
            **self.ports,
        }
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in centre_env.items()))

    def up_centre(self):
        self.centre("up", "-d", "--no-build", "--wait", "--wait-timeout", "300",
                    "vmauth", "vmalert", "vmagent", "alertmanager", "alertmanager-2", "influxdb", "snmp-exporter",
                    timeout=420)

    def install_site(self, site):
        """As an operator: the bundle made at the NOC, unpacked on the site, ./run.sh."""
        host, pings = SITES[site]
        dist = self.work / "dist"
        env = dict(os.environ, VIGIA_SECRETS_DIR=str(self.centre_dir / "secrets"), VIGIA_DIST_DIR=str(dist),
                   VIGIA_IMAGE=VIGIA_IMAGE, VIGIA_CENTRE_URL=INGRESS, VIGIA_SITE_NO_RESTART="1",
                   COMPOSE=str(COMPOSE_BIN), DOCKER=DOCKER)
        tarball = Path(run("scripts/agent-bundle.sh", site, cwd=ROOT, env=env, timeout=300).stdout.strip().splitlines()[-1])
        host_dir = self.work / f"site-{site}"
        host_dir.mkdir()
        run("tar", "-C", str(host_dir), "-xzf", str(tarball))
        bundle = host_dir / f"vigia-agent-{site}"
        self.bundles[site] = bundle
        # What the site's operator edits: its name for this host, its devices.
        with open(bundle / ".env", "a") as f:
            f.write(f"HOST_NAME={host}\n")
            if pings:
                f.write("COMPOSE_PROFILES=ping\n")
        if pings:
            # The main test's router and the devices behind it too, at a site of their own
            # (a message of their own at the NOC): while the main test's uplink is down,
            # the NOC board's "Devices cut off" panel has site e2e-a's to show.
            (bundle / "ping/targets.txt").write_text(
                "# site e2e-a's own devices (tests/e2e/sites.py)\n"
                "localhost 127.0.0.1 site=rack-a kind=self\n"
                f"{SITE_DEVICE} {e2e.OLT_ADDR} kind=olt\n"
                f"{SITE_ROUTER} {e2e.RTR_ADDR} site={SITE_UPLINK} kind=router\n"
                + "".join(f"{n}-a {a} site={SITE_UPLINK} kind=cpe parent={SITE_ROUTER}\n" for n, a in e2e.CPES.items()))
        run("./run.sh", cwd=bundle, env=self.site_env(site), timeout=400)
        self.installed[site] = time.time()

    def down(self):
        for site, bundle in self.bundles.items():
            self.site_compose(site, "down", "-v", "--remove-orphans", check=False)
        for cid in self.probes:
            run(DOCKER, "rm", "-f", cid, check=False)
        if self.env_file.exists():
            self.centre("down", "-v", "--remove-orphans", check=False, timeout=300)

    # --- checks ----------------------------------------------------------------------

    def series_at_centre(self):
        with self.check("two sites push to the NOC through its TLS ingress with their own tokens: every site's "
                          "series in VictoriaMetrics with its site label, its rows in InfluxDB with its site tag"):
            def every_job():
                got = {(r["metric"].get("site"), r["metric"].get("job"))
                       for r in self.vm_query('count by (site, job) (up{site=~"e2e-.*"} == 1)')}
                want = {(s, j) for s in SITES for j in AGENT_JOBS} | {("e2e-a", "vigia-ping")}
                require(want <= got, f"up == 1 for {sorted(got)}, missing {sorted(want - got)}")
                return got
            wait_until("both sites' jobs up in VictoriaMetrics", every_job, timeout=180, interval=5)
            for site, (host, _) in SITES.items():
                hosts = {r["metric"].get("host") for r in self.vm_query(f'node_load1{{site="{site}"}}')}
                require(hosts == {host}, f"site {site}: node_load1 hosts {hosts}, expected {host}")
            # A device without a site of its own is the agent's; one with its own keeps it
            # (Prometheus' external_labels rule).
            sites = {r["metric"]["target"]: r["metric"].get("site") for r in self.vm_query('vigia_ping_up{host="site-a-host"}')}
            want = {SITE_DEVICE: "e2e-a", "localhost": "rack-a", SITE_ROUTER: SITE_UPLINK,
                    **{f"{n}-a": SITE_UPLINK for n in e2e.CPES}}
            require(sites == want, f"site-a's ping targets and their sites: {sites}, want {want}")

            def rows():
                series = self.influx('SHOW TAG VALUES FROM "vigia_host_inventory" WITH KEY = "site"')
                sites = {v[1] for v in series[0]["values"]} if series else set()
                require(set(SITES) <= sites, f"vigia_host_inventory site tags {sites}")
                return True
            wait_until("both sites' rows in the NOC's InfluxDB", rows, timeout=120, interval=5)

    def credentials_refused(self):
        with self.check("a wrong or missing site credential is refused (401), and an agent holding one says so in its log"):
            ca = self.centre_dir / "secrets/ingest/ca.crt"
            url = f"https://127.0.0.1:{self.ports['INGEST_PORT']}"
            good = (self.centre_dir / "secrets/sites/e2e-a.token").read_text().strip()
            codes = {}
            for name, headers in (("missing", []), ("wrong", ["-H", "Authorization: Bearer not-a-site-token"]),
                                  ("wrong-influx", ["-H", "Authorization: Token not-a-site-token"]),
                                  ("good", ["-H", f"Authorization: Token {good}"])):
                for path in ("/api/v1/write", "/write?db=vigia"):
                    p = run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(ca), *headers,
                            "--data-binary", "e2e_probe value=1", url + path, check=False)
                    codes[(name, path)] = p.stdout
            bad = {k: v for k, v in codes.items() if k[0] != "good" and v != "401"}
            require(not bad, f"not refused with 401: {bad}")
            # A good token gets in, but only to write: reading is no route (400).
            require(codes[("good", "/write?db=vigia")] == "204", f"good token, /write: {codes[('good', '/write?db=vigia')]}")
            p = run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(ca), "-H",
                    f"Authorization: Bearer {good}", url + "/api/v1/query?query=up", check=False)
            require(p.stdout == "400", f"a site token reading /api/v1/query: {p.stdout}, expected 400 (no route)")
            # Two agents like a site's, one with a wrong token, one with none.
            bundle = self.bundles["e2e-b"]
            (self.work / "wrong_token").write_text("not-a-site-token\n")
            for name, extra in (("wrong", ["-v", f"{self.work / 'wrong_token'}:/run/secrets/site_token:ro"]),
                                ("missing", [])):
                args = ["-promscrape.config=/etc/vigia/agent/vmagent.yml", f"-remoteWrite.url={INGRESS}/api/v1/write",
                        "-remoteWrite.tlsCAFile=/run/secrets/site_ca", "-remoteWrite.tmpDataPath=/tmp/q"]
                if name == "wrong":
                    args.append("-remoteWrite.bearerTokenFile=/run/secrets/site_token")
                cid = run(DOCKER, "run", "-d", "--label", "vigia.e2e=sites", "--network", NETWORK, "--read-only", "--tmpfs", "/tmp",
                          "-e", f"VIGIA_SITE=intruder-{name}", "-e", "HOST_NAME=intruder", "-e", "EXPORTER_LISTEN_ADDRESS=127.0.0.1",
                          "-e", "PORTS_LISTEN_PORT=9470", "-e", "BOARD_PORT=9471", "-e", "COMPOSE_PROFILES=",
                          "-v", f"{bundle / 'agent'}:/etc/vigia/agent:ro",
                          "-v", f"{bundle / 'secrets/site_ca.crt'}:/run/secrets/site_ca:ro",
                          *extra, "victoriametrics/vmagent:v1.112.0", *args).stdout.strip()
                self.probes.append(cid)

            def logged():
                found = {}
                for cid in self.probes:
                    logs = run(DOCKER, "logs", cid, check=False)
                    text = logs.stdout + logs.stderr
                    # vmauth's body differs: "Unauthorized" for a wrong token, "missing
                    # 'Authorization' request header" for none.
                    found[cid[:12]] = [l for l in text.splitlines() if re.search(r"status code .*: 401\b", l)][:1]
                require(all(found.values()), f"no 401 in the agent's log yet: {found}")
                return found
            found = wait_until("the refused agents log 401", logged, timeout=60, interval=3)
            log(f"refused agent logs: {found}")
            stored = self.vm_query('count(up{site=~"intruder-.*"})')
            require(not stored, f"an intruder's samples were stored: {stored}")

    def cut_and_restart(self):
        with self.check(f"site {CUT_SITE}'s link cut for {CUT_S // 60} minutes and VictoriaMetrics restarted meanwhile: "
                          "after they return, no gap in either site's series at the NOC, nothing dropped"):
            # The gap check looks from a minute before the cut: the site has to have been
            # writing that long (the checks before can take less).
            time.sleep(max(0.0, self.installed[CUT_SITE] + 75 - time.time()))
            vmagent = self.site_vmagent(CUT_SITE)
            before = self.agent_metrics(CUT_SITE)
            scraped0 = e2e.series_sum(before, "vm_promscrape_scraped_samples_sum") or 0
            run(DOCKER, "network", "disconnect", NETWORK, vmagent)
            cut = time.time()
            log(f"site {CUT_SITE}: link to the NOC cut")
            try:
                time.sleep(20)
                restart_at = time.time()
                self.centre("restart", "victoriametrics", timeout=120)
                wait_until("victoriametrics healthy", lambda: http(f"http://127.0.0.1:{self.ports['VM_PORT']}/health")[0] == 200,
                           timeout=90)
                restarted = time.time()
                log(f"VictoriaMetrics restarted in {restarted - restart_at:.0f} s while site e2e-a wrote")
                # While the link is down: site e2e-a's device alert (the main test's host
                # is down now; later it answers again and the alert resolves).
                self.alert_to_both()
                time.sleep(max(0.0, cut + CUT_S - 10 - time.time()))
                during = self.agent_metrics(CUT_SITE)
            finally:
                run(DOCKER, "network", "connect", NETWORK, vmagent)
            back = time.time()
            pending = e2e.series_sum(during, "vmagent_remotewrite_pending_data_bytes") or 0
            scraped = (e2e.series_sum(during, "vm_promscrape_scraped_samples_sum") or 0) - scraped0
            require(pending > 0, "nothing was held back during the cut")
            per_sample = pending / max(scraped, 1)
            log(f"site {CUT_SITE}: {pending:.0f} bytes held for {scraped:.0f} samples scraped during the cut "
                f"({per_sample:.2f} bytes a sample; a 1 GiB buffer holds {2**30 / per_sample / 1e6:.0f} M samples)")
            self.bytes_per_buffered_sample = per_sample

            def drained():
                m = self.agent_metrics(CUT_SITE)
                left = e2e.series_sum(m, "vmagent_remotewrite_pending_data_bytes")
                require(left == 0, f"{left} bytes still to send")
                return True
            wait_until(f"site {CUT_SITE}'s buffer sent", drained, timeout=120, interval=3)
            log(f"site {CUT_SITE}: buffer sent {time.time() - back:.0f} s after the link returned")
            # The on-disk buffer is empty, but the blocks the agent's senders held when the
            # link went down come on their next retry (compose.agent.yaml's retryMaxTime,
            # 10 s), and what VictoriaMetrics acknowledged is searchable a few seconds later.
            problems = []

            def complete():
                problems[:] = self.gaps("e2e-b", cut - 60, back + 20) + self.gaps("e2e-a", restart_at - 60, restarted + 60)
                require(not problems, "; ".join(problems))
                return True
            try:
                wait_until("no gap at the NOC", complete, timeout=30, interval=5)
                log(f"site {CUT_SITE}: every sample at the NOC {time.time() - back:.0f} s after the link returned")
            except CheckFailed:
                pass
            for site in SITES:
                m = self.agent_metrics(site)
                for name in ("vmagent_remotewrite_packets_dropped_total", "vm_persistentqueue_bytes_dropped_total",
                             "vmagent_remotewrite_samples_dropped_total"):
                    v = e2e.series_sum(m, name)
                    if v:
                        problems.append(f"site {site}: {name} = {v}")
            if problems:
                self.explain_gaps(vmagent, cut, back)
            require(not problems, "; ".join(problems))

    def explain_gaps(self, vmagent, cut, back):
        """What the cut site's agent said and counted around the cut, and which of its
        series lack the same samples (one lost block, or one job's scrapes)."""
        utc = lambda t: time.strftime("%H:%M:%S", time.gmtime(t))  # noqa: E731
        log(f"site {CUT_SITE}: cut {utc(cut)} UTC, back {utc(back)} UTC; its vmagent's log then:")
        p = run(DOCKER, "logs", "--timestamps", "--since", f"{cut - 60:.0f}", "--until", f"{back + 60:.0f}", vmagent,
                check=False)
        print("\n".join((p.stdout + p.stderr).splitlines()[-80:]), flush=True)
        m = self.agent_metrics(CUT_SITE)
        for name in ("vmagent_remotewrite_requests_total", "vmagent_remotewrite_retries_count_total",
                     "vmagent_remotewrite_errors_total", "vm_promscrape_scrapes_total", "vm_promscrape_scrapes_failed_total",
                     "vm_promscrape_scrapes_timed_out_total", "vmagent_remotewrite_block_size_rows_sum"):
            log(f"  {name} = {e2e.series_sum(m, name)}")
        for metric in ("up", "scrape_samples_scraped", "scrape_duration_seconds", "vmagent_remotewrite_pending_data_bytes"):
            for r in self.vm_export(f'{metric}{{site="{CUT_SITE}"}}', cut - 60, back + 20):
                ts = sorted(t / 1000 for t in r["timestamps"])
                holes = [f"{utc(a)}+{b - a:.0f}s" for a, b in zip(ts, ts[1:]) if b - a > 20]
                log(f"  {metric} {r['metric'].get('job')}: {len(ts)} samples {utc(ts[0])}..{utc(ts[-1])}, holes {holes}")

    def gaps(self, site, start, end):
        """Every `up` series of the site's jobs has a sample every scrape in [start, end]."""
        problems = []
        rows = self.vm_export(f'up{{site="{site}"}}', start, end)
        jobs = {r["metric"]["job"]: r for r in rows}
        for job in AGENT_JOBS | ({"vigia-ping"} if SITES[site][1] else set()):
            r = jobs.get(job)
            if not r:
                problems.append(f"site {site} {job}: no samples in [{start:.0f}, {end:.0f}]")
                continue
            ts = sorted(t / 1000 for t in r["timestamps"])
            step = SCRAPE_S.get(job, DEFAULT_SCRAPE_S)
            holes = [(a, b) for a, b in zip(ts, ts[1:]) if b - a > 1.5 * step]
            if holes or ts[0] > start + 1.5 * step or ts[-1] < end - 1.5 * step:
                problems.append(f"site {site} {job}: {len(ts)} samples from {ts[0] - start:+.0f} s to {ts[-1] - end:+.0f} s "
                                f"of the window, holes {[(round(a - start), round(b - a)) for a, b in holes]}")
        log(f"site {site}: {sum(len(r['timestamps']) for r in rows)} samples of up in {end - start:.0f} s, "
            f"{len(problems)} series with a gap")
        return problems

    def dashboards(self):
        with self.check("every PromQL panel of every dashboard answers against VictoriaMetrics (Grafana's datasource in central mode)"):
            empty, queried = [], 0
            for where, uid, q in e2e.panel_queries():
                if "prometheus" not in uid:
                    continue
                queried += 1
                now = time.time()
                try:
                    body = self.vm("/api/v1/query_range", query=q, start=f"{now - 900:.0f}", end=f"{now:.0f}", step="15")
                except urllib.error.HTTPError as e:  # 422: a query VictoriaMetrics does not take
                    body = {"status": "error", "error": e.read()[:300].decode(errors="replace")}
                if body.get("status") != "success" or not any(s.get("values") for s in body["data"]["result"]):
                    empty.append(f"{where}: {q} -> {str(body)[:200]}")
            log(f"{queried} PromQL panel queries run against VictoriaMetrics")
            require(not empty, "panels without data:\n" + "\n".join(empty))

    def alert_to_both(self):
        with self.check(f"vmalert: PingTargetDown for site e2e-a's {SITE_DEVICE} reaches both Alertmanagers, one email"):
            def in_both():
                have = {}
                for am in ("alertmanager", "alertmanager-2"):
                    out = self.centre("exec", "-T", am, "wget", "-q", "-O", "-", "http://127.0.0.1:9093/api/v2/alerts").stdout
                    have[am] = [a for a in json.loads(out) if a["labels"].get("alertname") == "PingTargetDown"
                                and a["labels"].get("target") == SITE_DEVICE and a["labels"].get("site") == "e2e-a"]
                require(all(have.values()), f"PingTargetDown {SITE_DEVICE} per Alertmanager: "
                        f"{ {k: len(v) for k, v in have.items()} }")
                return have
            wait_until(f"PingTargetDown {SITE_DEVICE} in both Alertmanagers", in_both, timeout=420, interval=5)

            def mails():
                m = [x for x in http_json(f"http://127.0.0.1:{self.ports['MAILPIT_PORT']}/messages")
                     if x["subject"] == f"[CRITICAL] PingTargetDown {SITE_DEVICE} (site e2e-a)"]
                return m
            first = wait_until("the NOC's email", mails, timeout=120, interval=3)
            # The second node would send after its peer timeout (15 s) if it had not heard.
            time.sleep(25)
            m = mails()
            require(len(m) == 1, f"{len(m)} emails for {SITE_DEVICE}: {[x['subject'] for x in m]}")
            log(f"one email at the NOC for {SITE_DEVICE} ({first[0]['subject']})")

    # --- the run ---------------------------------------------------------------------

    def run(self):
        started = time.monotonic()
        first = len(self.t.results)
        try:
            with self.check("NOC (compose.central.yaml) up, two sites installed from their bundles (./run.sh)", required=True):
                self.prepare()
                self.up_centre()
                log(f"NOC up in {time.monotonic() - started:.0f} s")
                for site in SITES:
                    self.install_site(site)
                log(f"sites up {time.monotonic() - started:.0f} s after the start")
            self.series_at_centre()
            self.credentials_refused()
            self.cut_and_restart()
            self.dashboards()
        except CheckFailed as e:
            print(f"sites: stopped: {e}", flush=True)
        except Exception:  # noqa: BLE001 - reported, the main test goes on
            import traceback
            traceback.print_exc()
        finally:
            # The main test's results land in the same list meanwhile: look at ours only.
            if not all(r[2] for r in self.t.results[first:] if r[0] in self.names):
                self.dump_logs()
            if os.environ.get("VIGIA_E2E_KEEP") != "1":
                self.down()
            log(f"sites part done in {time.monotonic() - started:.0f} s")

    def dump_logs(self):
        print("--- sites: NOC and site containers, last log lines ---", flush=True)
        for cmd in ([*self.centre_cmd, "logs", "--no-color", "--tail", "30"],):
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            print(p.stdout[-30000:])
        for site in self.bundles:
            p = self.site_compose(site, "logs", "--no-color", "--tail", "30", check=False)
            print(p.stdout[-20000:])
