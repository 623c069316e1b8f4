#!/usr/bin/env bash
# `make validate`: every offline check of the stack's configuration, one PASS/FAIL line
# each, then "N passed, M failed"; exit status 1 if any failed.
#
# Tools (fetched once into .cache/stack/ by scripts/fetch-tools.sh, the system untouched):
# promtool 2.53.3 and amtool 0.28.1 (the pinned images' versions) and Docker Compose v2
# from Debian trixie, typescript and @grafana/schema from npm. Also needs python3 with
# PyYAML (Debian: python3-yaml), node, and cargo (vigia-ping checks its own config).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

passed=0
failed=0
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# check NAME COMMAND...: runs COMMAND, prints PASS or FAIL (with its output, indented).
check() {
  local name=$1
  shift
  local out
  if out=$("$@" 2>&1); then
    echo "PASS $name"
    passed=$((passed + 1))
  else
    echo "FAIL $name"
    printf '%s\n' "$out" | sed 's/^/    /' | head -n 60
    failed=$((failed + 1))
  fi
}

# expect_fail NAME STATUS COMMAND...: COMMAND must exit with STATUS (a refusal we rely on).
expect_fail() {
  local name=$1 want=$2
  shift 2
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [[ $rc == "$want" ]]; then
    echo "PASS $name"
    passed=$((passed + 1))
  else
    echo "FAIL $name (exit status $rc, expected $want)"
    printf '%s\n' "$out" | sed 's/^/    /' | head -n 20
    failed=$((failed + 1))
  fi
}

for tool in python3 node cargo; do
  if ! command -v "$tool" >/dev/null; then
    echo "FAIL required tool '$tool' is not installed"
    echo "0 passed, 1 failed"
    exit 1
  fi
done
if ! python3 -c 'import yaml' 2>/dev/null; then
  echo "FAIL python3 has no PyYAML (Debian package python3-yaml)"
  echo "0 passed, 1 failed"
  exit 1
fi
if ! scripts/fetch-tools.sh >"$WORK/fetch.log" 2>&1; then
  echo "FAIL fetch promtool, amtool, docker compose, npm packages"
  sed 's/^/    /' "$WORK/fetch.log"
  echo "0 passed, 1 failed"
  exit 1
fi
BIN=$ROOT/.cache/stack/root/usr/bin
PROMTOOL=$BIN/promtool
AMTOOL=$BIN/amtool
COMPOSE=$ROOT/.cache/stack/root/usr/libexec/docker/cli-plugins/docker-compose
NPM=$ROOT/.cache/stack/npm/node_modules

# --- Compose ------------------------------------------------------------------------
# A fixed environment instead of an operator's .env, so that the result does not depend
# on whether `make up` ran here.
cat >"$WORK/env" <<'EOF'
DOCKER_GID=999
EOF
cat >"$WORK/agent.env" <<'EOF'
DOCKER_GID=999
VIGIA_CENTRE_URL=https://noc.example:8443
VIGIA_SITE=norte
HOST_NAME=agent-1
EOF
cat >"$WORK/cluster.env" <<'EOF'
DOCKER_GID=999
VIGIA_METRICS_WRITE_URL=http://vminsert:8480/insert/0/prometheus
VIGIA_METRICS_READ_URL=http://vmselect:8481/select/0/prometheus
EOF
compose() { "$COMPOSE" --project-directory "$ROOT" --env-file "$1" -f "$2" "${@:3}"; }
check "docker compose config -q (compose.yaml)" compose "$WORK/env" compose.yaml config -q
check "docker compose config -q (compose.agent.yaml)" compose "$WORK/agent.env" compose.agent.yaml config -q
compose "$WORK/env" compose.yaml config --format json >"$WORK/compose.json" 2>/dev/null
compose "$WORK/agent.env" compose.agent.yaml --profile ping config --format json >"$WORK/agent.json" 2>/dev/null
check "compose.yaml: pinned images, healthchecks, service_healthy, read-only non-root exporters, capabilities, published ports, named volumes, secrets" \
  python3 tests/stack/check.py compose-rules "$WORK/compose.json"
check "compose.agent.yaml: exporters and vmagent only, same hardening, nothing beyond loopback, pushes over TLS with the site's token and a bounded disk buffer" \
  python3 tests/stack/check.py agent-rules "$WORK/agent.json"
central() { "$COMPOSE" --project-directory "$ROOT" --env-file "$1" -f compose.yaml -f compose.central.yaml "${@:2}"; }
check "docker compose config -q (compose.yaml + compose.central.yaml)" central "$WORK/env" config -q
central "$WORK/env" config --format json >"$WORK/central.json" 2>/dev/null
check "compose.central.yaml: VictoriaMetrics instead of Prometheus' TSDB, vmalert to both Alertmanagers, vmauth the only new published port, hardened" \
  python3 tests/stack/check.py central-rules "$WORK/central.json"
check "docker compose config -q (+ compose.cluster.yaml)" \
  central "$WORK/cluster.env" -f compose.cluster.yaml config -q
central "$WORK/cluster.env" -f compose.cluster.yaml config --format json >"$WORK/cluster.json" 2>/dev/null
check "compose.cluster.yaml: vminsert, vmselect, two vmstorage; the write and read URLs are all that change" \
  python3 tests/stack/check.py cluster-rules "$WORK/cluster.json"
check "the centre's vmagent scrapes the exporters exactly as prometheus.yml does" \
  python3 tests/stack/check.py scrape-jobs
check "published beyond loopback means a password: board and Prometheus basic auth from secrets; Prometheus' scrapes, healthchecks and Grafana's datasource authenticate from files" \
  python3 tests/stack/check.py web-auth "$WORK/compose.json"
# One setting each way, on top of the fixed environment.
render_with() { # render_with FILE NAME=VALUE...: compose.yaml's JSON with those settings
  local file=$1 env=$WORK/env.$RANDOM
  shift
  { cat "$WORK/env"; printf '%s\n' "$@"; } >"$env"
  compose "$env" compose.yaml config --format json >"$WORK/$file" 2>&1
}
render_with energy.json VIGIA_HOST__ENERGY__MODEL__IDLE_WATTS=35 VIGIA_HOST__ENERGY__MODEL__MAX_WATTS=95
check "vigia-host's power model is off unless .env gives both watts (then they reach it)" \
  python3 tests/stack/check.py energy "$WORK/compose.json" "$WORK/energy.json" 35 95
cp "$WORK/agent.env" "$WORK/agent-energy.env"
printf 'VIGIA_HOST__ENERGY__MODEL__IDLE_WATTS=35\nVIGIA_HOST__ENERGY__MODEL__MAX_WATTS=95\n' >>"$WORK/agent-energy.env"
compose "$WORK/agent-energy.env" compose.agent.yaml config --format json >"$WORK/agent-energy.json" 2>&1
check "compose.agent.yaml: a site's vigia-host has no power model unless its .env gives both watts (then they reach it)" \
  python3 tests/stack/check.py energy "$WORK/agent.json" "$WORK/agent-energy.json" 35 95
render_with seed-port.json PROMETHEUS_PORT=8000
render_with publish-port.json PROMETHEUS_PUBLISH_PORT=9091
check "seed 000's PROMETHEUS_PORT no longer moves Prometheus; PROMETHEUS_PUBLISH_PORT does" \
  python3 tests/stack/check.py publish-port "$WORK/seed-port.json" "$WORK/publish-port.json" 9091
cp "$WORK/agent.env" "$WORK/agent-port.env"
printf 'PROMETHEUS_PORT=8000\n' >>"$WORK/agent-port.env"
compose "$WORK/agent-port.env" compose.agent.yaml config --format json >"$WORK/agent-seed.json" 2>&1
printf 'PORTS_LISTEN_PORT=8001\n' >>"$WORK/agent-port.env"
compose "$WORK/agent-port.env" compose.agent.yaml config --format json >"$WORK/agent-ports.json" 2>&1
check "compose.agent.yaml: vigia-ports (and vmagent's scrape of it) on seed 000's PROMETHEUS_PORT when set, PORTS_LISTEN_PORT first" \
  bash -c "python3 tests/stack/check.py agent-ports-port '$WORK/agent.json' 9470 \
    && python3 tests/stack/check.py agent-ports-port '$WORK/agent-seed.json' 8000 \
    && python3 tests/stack/check.py agent-ports-port '$WORK/agent-ports.json' 8001"
expect_fail "compose.yaml refuses to start without DOCKER_GID (written by make up)" 15 \
  "$COMPOSE" --project-directory "$ROOT" --env-file /dev/null -f compose.yaml config -q

# --- Prometheus ---------------------------------------------------------------------
# The config names its files where the container mounts them (/etc/prometheus).
mkdir -p "$WORK/prom"
sed "s#/etc/prometheus/#$ROOT/prometheus/#g" prometheus/prometheus.yml >"$WORK/prom/prometheus.yml"
check "promtool check config (scrape configs, file_sd targets, rule files)" \
  "$PROMTOOL" check config "$WORK/prom/prometheus.yml"
check "promtool check rules" "$PROMTOOL" check rules prometheus/rules/*.yml
check "promtool test rules (a firing and a quiet case per alert)" "$PROMTOOL" test rules prometheus/tests/*.yml
check "the runbooks page Prometheus serves (prometheus/consoles/runbooks.html) is what docs/runbooks.md makes" \
  scripts/runbooks.py --check
check "alert rules: severity, summary, description, runbook in docs/runbooks.md and on the served page, dashboard, a firing test each" \
  python3 tests/stack/check.py alert-rules

# --- VictoriaMetrics (trixie's 1.112, the pinned images' version) -------------------
check "vmagent -dryRun: victoriametrics/vmagent.yml (the centre's scrapes)" \
  "$BIN/vmagent" -dryRun -promscrape.config=victoriametrics/vmagent.yml
check "vmagent -dryRun: agent/vmagent.yml (a site's scrapes)" \
  env VIGIA_SITE=norte HOST_NAME=agent-1 EXPORTER_LISTEN_ADDRESS=127.0.0.1 PORTS_LISTEN_PORT=9470 BOARD_PORT=9471 COMPOSE_PROFILES=ping \
  "$BIN/vmagent" -dryRun -promscrape.config=agent/vmagent.yml
check "vmalert -dryRun: prometheus/rules/ (the same rules on VictoriaMetrics)" \
  "$BIN/vmalert" -dryRun -rule="$ROOT/prometheus/rules/*.yml"
render_vmauth() { # render_vmauth DIR: vmauth/render.sh with sites from DIR/sites
  env -i PATH="$PATH" VIGIA_SITES_DIR="$1/sites" VIGIA_SECRETS_DIR="$1/secrets" VIGIA_VMAUTH_RUN_DIR="$1/run" \
    VIGIA_VMAUTH_RENDER_ONLY=1 sh vmauth/render.sh
}
vma=$WORK/vmauth
mkdir -p "$vma/sites" "$vma/secrets"
printf 'central-influx-token' >"$vma/secrets/influxdb_token"
check "vmauth config with no site: valid (vmauth -dryRun), lets nobody in" \
  bash -c "$(declare -f render_vmauth); render_vmauth '$vma' && '$BIN/vmauth' -dryRun -auth.config='$vma/run/auth.yml' \
    && ! grep -q 'src_paths' '$vma/run/auth.yml'"
printf 'aaaa1111bbbb2222' >"$vma/sites/norte.token"
printf 'cccc3333dddd4444\n' >"$vma/sites/sur-2.token"
check "vmauth config with two sites (vmauth -dryRun): each its own token, write paths only, InfluxDB gets the centre's token" \
  bash -c "$(declare -f render_vmauth); render_vmauth '$vma' && '$BIN/vmauth' -dryRun -auth.config='$vma/run/auth.yml' \
    && python3 tests/stack/check.py vmauth-config '$vma/run/auth.yml'"
cp "$vma/sites/norte.token" "$vma/sites/copy.token"
expect_fail "vmauth refuses two sites with the same token (exit 2)" 2 bash -c "$(declare -f render_vmauth); render_vmauth '$vma'"
rm "$vma/sites/copy.token"
printf 'x' >"$vma/sites/Bad_Name.token"
expect_fail "vmauth refuses a site name that is not lower-case letters, digits and '-' (exit 2)" 2 \
  bash -c "$(declare -f render_vmauth); render_vmauth '$vma'"
rm "$vma/sites/Bad_Name.token"
if command -v influxd >/dev/null; then
  check "a site's InfluxDB writes through the real vmauth land in the centre's database, whatever db= it names (real influxd 1.6)" \
    python3 tests/stack/vmauth_influx.py "$BIN/vmauth"
else
  echo "NOT RUN vmauth in front of a real InfluxDB (needs influxd: Debian package influxdb)"
fi

# --- Alertmanager -------------------------------------------------------------------
render_am() { # render_am DIR [ENV...]: alertmanager/render.sh with secrets from DIR/secrets
  local dir=$1
  shift
  env -i PATH="$PATH" VIGIA_SECRETS_DIR="$dir/secrets" VIGIA_AM_RUN_DIR="$dir/run" \
    VIGIA_AM_TEMPLATES="$ROOT/alertmanager/templates" VIGIA_AM_RENDER_ONLY=1 \
    VIGIA_MAINTENANCE_FILE="${VIGIA_MAINTENANCE_FILE:-$ROOT/alertmanager/maintenance.txt}" "$@" \
    sh alertmanager/render.sh
}
am_none=$WORK/am-none
mkdir -p "$am_none/secrets"
: >"$am_none/secrets/telegram_bot_token"
: >"$am_none/secrets/discord_webhook_url"
am_all=$WORK/am-all
mkdir -p "$am_all/secrets"
echo "123456:test-token" >"$am_all/secrets/telegram_bot_token"
echo "http://127.0.0.1:9/api/webhooks/1/test" >"$am_all/secrets/discord_webhook_url"
echo "smtp-password" >"$am_all/secrets/smtp_password"
check "alertmanager config with no channel secret: email only (amtool check-config)" \
  bash -c "$(declare -f render_am); ROOT='$ROOT'; render_am '$am_none' \
    && '$AMTOOL' check-config '$am_none/run/alertmanager.yml' \
    && ! grep -q 'telegram_configs\|discord_configs' '$am_none/run/alertmanager.yml'"
check "alertmanager config with Telegram, Discord and SMTP auth secrets set (amtool check-config)" \
  bash -c "$(declare -f render_am); ROOT='$ROOT'; render_am '$am_all' TELEGRAM_CHAT_ID=-1001234 \
    SMTP_AUTH_USERNAME=noc SMTP_SMARTHOST=smtp.example:587 SMTP_REQUIRE_TLS=true \
    && '$AMTOOL' check-config '$am_all/run/alertmanager.yml' \
    && grep -q 'telegram_configs' '$am_all/run/alertmanager.yml' \
    && grep -q 'discord_configs' '$am_all/run/alertmanager.yml' \
    && grep -q 'smtp_auth_password_file' '$am_all/run/alertmanager.yml'"
check "alertmanager routes: stack alerts by alertname and target, ping alerts by site (group_interval >= 1m), the storm alone, repeat 1h, every receiver on every channel with resolved messages, critical inhibits warning (same target and interface)" \
  python3 - "$am_all/run/alertmanager.yml" <<'EOF'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
r = c["route"]
assert r["group_by"] == ["alertname", "target"], r["group_by"]
assert r["repeat_interval"] == "1h", r["repeat_interval"]
routes = {x["receiver"]: x for x in r["routes"]}
sites, storm = routes["vigia-ping-sites"], routes["vigia-ping-storm"]
assert sites["group_by"] == ["site"], sites
# At most one message per site per group_interval: the bound on ping messages a minute.
assert sites["group_interval"].endswith("m") and int(sites["group_interval"][:-1]) >= 1, sites
assert storm["group_by"] == ["alertname"], storm
assert [x["receiver"] for x in r["routes"]] == ["vigia-ping-storm", "vigia-ping-sites"], "the storm route must come first"
recv = {x["name"]: x for x in c["receivers"]}
assert set(recv) == {"vigia", "vigia-ping-sites", "vigia-ping-storm"}, set(recv)
for name, rc in recv.items():
    for kind in ("email_configs", "telegram_configs", "discord_configs"):
        assert all(x.get("send_resolved") for x in rc[kind]), (name, kind)
        assert kind == "email_configs" or any(k.endswith("_file") for k in rc[kind][0]), (name, kind)
inh = c["inhibit_rules"][0]
assert inh["source_matchers"] == ['severity="critical"', 'target!=""'] and inh["target_matchers"] == ['severity="warning"'], inh
assert inh["equal"] == ["target", "ifIndex"], inh
EOF
# Where each kind of alert goes (amtool config routes test: the receiver it resolves to).
routes_case() { # routes_case RECEIVER LABEL=VALUE...
  "$AMTOOL" config routes test --config.file="$am_all/run/alertmanager.yml" --verify.receivers="$1" "${@:2}" >/dev/null 2>&1 \
    || { echo "${*:2} does not route to $1"; return 1; }
}
check "amtool config routes test: Ping* alerts to the per-site route, PingManySitesDown to its own, the rest to the default" \
  bash -c "$(declare -f routes_case); AMTOOL='$AMTOOL' am_all='$am_all'
    routes_case vigia-ping-sites alertname=PingTargetDown severity=critical site=centro target=olt-1 &&
    routes_case vigia-ping-sites alertname=PingUplinkDown severity=critical site=centro target=router-1 &&
    routes_case vigia-ping-sites alertname=PingTargetFlapping severity=critical site=norte target=olt-2 &&
    routes_case vigia-ping-sites alertname=PingHighLatency severity=warning site=norte target=olt-2 &&
    routes_case vigia-ping-sites alertname=PingPacketLoss severity=warning target=olt-2 &&
    routes_case vigia-ping-storm alertname=PingManySitesDown severity=critical &&
    routes_case vigia alertname=HostHighCpu severity=warning site=vigia target=vigia-host:9472 &&
    routes_case vigia alertname=ExporterDown severity=critical job=vigia-ping target=vigia-ping:9471"
# The inhibitions and the maintenance silences, against a real Alertmanager.
if [[ $(id -u) == 0 ]] && command -v unshare >/dev/null; then
  check "alertmanager (real, 0.28.1) holds back: a flapping target's down alerts, a down target's warnings, a maintenance site's alerts (silences from maintenance.sh), every site's ping alerts under PingManySitesDown" \
    python3 tests/stack/inhibitions.py "$am_all/run/alertmanager.yml" "$AMTOOL"
else
  echo "NOT RUN alertmanager inhibition and maintenance check (needs root: Alertmanager runs in a mount namespace)"
fi
expect_fail "alertmanager refuses a Telegram token without TELEGRAM_CHAT_ID (exit 2)" 2 \
  bash -c "$(declare -f render_am); ROOT='$ROOT'; render_am '$am_all'"
expect_fail "alertmanager refuses a non-numeric TELEGRAM_CHAT_ID (exit 2)" 2 \
  bash -c "$(declare -f render_am); ROOT='$ROOT'; render_am '$am_all' TELEGRAM_CHAT_ID=@noc"
# As Alertmanager's user (nobody): a secret file it cannot read stops it with a reason,
# instead of switching that channel off without a word.
am_unreadable=$WORK/am-unreadable
mkdir -p "$am_unreadable/secrets" "$am_unreadable/run"
chmod 755 "$WORK" "$am_unreadable" "$am_unreadable/secrets"
chmod 777 "$am_unreadable/run"
echo "123456:test-token" >"$am_unreadable/secrets/telegram_bot_token"
chmod 600 "$am_unreadable/secrets/telegram_bot_token"
if [[ $(id -u) == 0 ]] && command -v setpriv >/dev/null; then
  expect_fail "alertmanager refuses a secret file it cannot read (exit 2, not a channel silently off)" 2 \
    bash -c "env -i PATH='$PATH' VIGIA_SECRETS_DIR='$am_unreadable/secrets' VIGIA_AM_RUN_DIR='$am_unreadable/run' \
      VIGIA_AM_TEMPLATES='$ROOT/alertmanager/templates' VIGIA_AM_RENDER_ONLY=1 TELEGRAM_CHAT_ID=-1 \
      setpriv --reuid=65534 --regid=65534 --clear-groups sh '$ROOT/alertmanager/render.sh' 2>&1 | tee /dev/stderr | grep -q 'not readable' && exit 2"
else
  echo "NOT RUN alertmanager unreadable-secret check (needs root and setpriv to act as nobody)"
fi
# The one-line notification, rendered by amtool from a down ping target and a resolved one.
render_template() { # render_template NAME [DATA=site|DATA=FILE]: vigia's template NAME over test alerts
  local data=$ROOT/tests/stack/alert-data.json
  case ${2:-} in DATA=site) data=$ROOT/tests/stack/alert-data-site.json ;; DATA=*) data=${2#DATA=} ;; esac
  "$AMTOOL" template render --template.glob="$am_all/run/*.tmpl" \
    --template.glob="$ROOT/alertmanager/templates/*.tmpl" \
    --template.data="$data" --template.text="{{ template \"$1\" . }}"
}
check "notification text (amtool template render): what, since when, dashboard link, runbook link" \
  bash -c "$(declare -f render_template); am_all='$am_all' AMTOOL='$AMTOOL' ROOT='$ROOT'; \
    diff -u '$ROOT/tests/stack/expected-notification.txt' <(render_template vigia.text)"
check "a site's message (amtool template render): the uplink with the devices behind it, then a device down; subject with the site" \
  bash -c "$(declare -f render_template); am_all='$am_all' AMTOOL='$AMTOOL' ROOT='$ROOT'; \
    diff -u '$ROOT/tests/stack/expected-site-notification.txt' <(render_template vigia.text DATA=site) \
    && [[ \$(render_template vigia.subject DATA=site) == '[CRITICAL] 2 alerts (site centro)' ]] \
    || { render_template vigia.subject DATA=site; exit 1; }"
python3 - "$WORK/many.json" <<'EOF'
import json, sys
alerts = [{"status": "firing", "labels": {"alertname": "PingTargetDown", "severity": "critical", "target": f"cpe-{i:02d}", "site": "sur"},
           "annotations": {"summary": f"cpe-{i:02d} does not answer ping", "dashboard_uid": "vigia-noc"},
           "startsAt": "2026-11-22T05:02:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": str(i)} for i in range(1, 26)]
json.dump({"receiver": "vigia-ping-sites", "status": "firing", "alerts": alerts, "groupLabels": {"site": "sur"},
           "commonLabels": {"alertname": "PingTargetDown", "severity": "critical", "site": "sur"}, "commonAnnotations": {},
           "externalURL": "http://localhost:9093"}, open(sys.argv[1], "w"))
EOF
check "25 alerts in one site's message: email lists all 25, Telegram and Discord the first 20 and the count" \
  bash -c "$(declare -f render_template); am_all='$am_all' AMTOOL='$AMTOOL' ROOT='$ROOT'; \
    [[ \$(render_template vigia.text DATA='$WORK/many.json' | grep -c 'does not answer ping') == 25 ]] \
    && [[ \$(render_template vigia.chat DATA='$WORK/many.json' | grep -c 'does not answer ping') == 20 ]] \
    && [[ \$(render_template vigia.telegram DATA='$WORK/many.json' | grep -c 'does not answer ping') == 20 ]] \
    && render_template vigia.telegram DATA='$WORK/many.json' | grep -qF '(25 firing and 0 resolved in all; the email lists every one)' \
    && [[ \$(render_template vigia.subject DATA='$WORK/many.json') == '[CRITICAL] PingTargetDown (site sur)' ]] \
    || { render_template vigia.chat DATA='$WORK/many.json'; exit 1; }"
python3 - "$WORK/stale.json" <<'EOF'
import json, sys
# The router's new alert in the group of a device resolved minutes before (Prometheus sends
# a resolved alert again for 15 minutes, and Alertmanager keeps it in its group).
alerts = [{"status": "firing", "labels": {"alertname": "PingUplinkDown", "severity": "critical", "target": "router-1", "site": "centro"},
           "annotations": {"summary": "router-1 does not answer ping"}, "startsAt": "2026-11-22T05:02:00Z",
           "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "1"},
          {"status": "resolved", "labels": {"alertname": "PingTargetDown", "severity": "critical", "target": "olt-1", "site": "centro"},
           "annotations": {"summary": "olt-1 does not answer ping"}, "startsAt": "2026-11-22T04:50:00Z",
           "endsAt": "2026-11-22T04:55:00Z", "fingerprint": "2"}]
json.dump({"receiver": "vigia-ping-sites", "status": "firing", "alerts": alerts, "groupLabels": {"site": "centro"},
           "commonLabels": {"severity": "critical", "site": "centro"}, "commonAnnotations": {},
           "externalURL": "http://localhost:9093"}, open(sys.argv[1], "w"))
EOF
check "a new alert beside one resolved earlier in its group: the subject names the one that fires" \
  bash -c "$(declare -f render_template); am_all='$am_all' AMTOOL='$AMTOOL' ROOT='$ROOT'; \
    [[ \$(render_template vigia.subject DATA='$WORK/stale.json') == '[CRITICAL] PingUplinkDown router-1 and 1 resolved (site centro)' ]] \
    || { render_template vigia.subject DATA='$WORK/stale.json'; exit 1; }"
check "notification subject and Telegram text (HTML-escaped)" \
  bash -c "$(declare -f render_template); am_all='$am_all' AMTOOL='$AMTOOL' ROOT='$ROOT'; \
    [[ \$(render_template vigia.subject) == '[CRITICAL] PingTargetDown olt-norte and 1 resolved' ]] \
    && render_template vigia.telegram | grep -qF 'lab-r&amp;d &lt;switch&gt; (198.18.0.31)' \
    || { render_template vigia.subject; render_template vigia.telegram; exit 1; }"

check "alertmanager/maintenance.txt is valid (maintenance.sh check)" \
  sh alertmanager/maintenance.sh check alertmanager/maintenance.txt
printf '2026-12-05T02:00:00Z soon site=a works\n' >"$WORK/bad-maintenance.txt"
expect_fail "render.sh refuses a bad maintenance file, naming its line and field (exit 2)" 2 \
  bash -c "$(declare -f render_am); ROOT='$ROOT'; out=\$(VIGIA_MAINTENANCE_FILE='$WORK/bad-maintenance.txt' render_am '$am_none' 2>&1); rc=\$?; \
    echo \"\$out\"; [[ \$out == *'bad-maintenance.txt line 1: end:'* ]] && exit \$rc"

# --- SNMP ---------------------------------------------------------------------------
# snmp/render.sh writes the credentials; snmp_exporter 0.28 itself (--dry-run) reads the
# modules and what render.sh wrote, as the container does.
SNMP_EXPORTER=$ROOT/.cache/stack/root/usr/bin/prometheus-snmp-exporter
render_snmp() { # render_snmp DIR [ENV...]: snmp/render.sh with secrets from DIR/secrets
  local dir=$1
  shift
  env -i PATH="$PATH" VIGIA_SECRETS_DIR="$dir/secrets" VIGIA_SNMP_RUN_DIR="$dir/run" \
    VIGIA_SNMP_RENDER_ONLY=1 "$@" sh "$ROOT/snmp/render.sh"
}
snmp_dry_run() { # snmp_dry_run DIR: the modules and DIR's rendered credentials load
  "$SNMP_EXPORTER" --dry-run --config.file="$ROOT/snmp/snmp.yml" --config.file="$1/run/auths.yml" 2>&1 \
    | tee /dev/stderr | grep -q 'Configuration parsed successfully'
}
snmp_none=$WORK/snmp-none
mkdir -p "$snmp_none/secrets"
: >"$snmp_none/secrets/snmp_community"
snmp_all=$WORK/snmp-all
mkdir -p "$snmp_all/secrets"
printf "it's #1: a community\n" >"$snmp_all/secrets/snmp_community"
echo "auth-passphrase" >"$snmp_all/secrets/snmp_v3_auth_password"
echo "priv-passphrase" >"$snmp_all/secrets/snmp_v3_priv_password"
check "snmp_exporter 0.28 --dry-run: snmp/snmp.yml with no credential set (auths: {})" \
  bash -c "$(declare -f render_snmp snmp_dry_run); ROOT='$ROOT' SNMP_EXPORTER='$SNMP_EXPORTER'; \
    render_snmp '$snmp_none' && snmp_dry_run '$snmp_none' && grep -qx 'auths: {}' '$snmp_none/run/auths.yml'"
check "snmp_exporter 0.28 --dry-run: snmp/snmp.yml with v2c and v3 (SHA256/AES256) credentials rendered from secrets" \
  bash -c "$(declare -f render_snmp snmp_dry_run); ROOT='$ROOT' SNMP_EXPORTER='$SNMP_EXPORTER'; \
    render_snmp '$snmp_all' SNMP_V3_USERNAME=vigia SNMP_V3_AUTH_PROTOCOL=SHA256 SNMP_V3_PRIV_PROTOCOL=AES256 \
    && snmp_dry_run '$snmp_all' \
    && grep -qxF \"    community: 'it''s #1: a community'\" '$snmp_all/run/auths.yml' \
    && grep -qxF \"    priv_password: 'priv-passphrase'\" '$snmp_all/run/auths.yml'"
expect_fail "snmp-exporter refuses v3 passphrases without SNMP_V3_USERNAME (exit 2)" 2 \
  bash -c "$(declare -f render_snmp); ROOT='$ROOT'; render_snmp '$snmp_all'"
expect_fail "snmp-exporter refuses an unknown SNMP_V3_AUTH_PROTOCOL (exit 2)" 2 \
  bash -c "$(declare -f render_snmp); ROOT='$ROOT'; render_snmp '$snmp_all' SNMP_V3_USERNAME=vigia SNMP_V3_AUTH_PROTOCOL=sha1"
snmp_short=$WORK/snmp-short
mkdir -p "$snmp_short/secrets"
echo "short" >"$snmp_short/secrets/snmp_v3_auth_password"
echo "priv-passphrase" >"$snmp_short/secrets/snmp_v3_priv_password"
expect_fail "snmp-exporter refuses an SNMPv3 passphrase under 8 characters (exit 2)" 2 \
  bash -c "$(declare -f render_snmp); ROOT='$ROOT'; render_snmp '$snmp_short' SNMP_V3_USERNAME=vigia"

am_wiki=$WORK/am-wiki
mkdir -p "$am_wiki/secrets"
cp "$am_none/secrets/"* "$am_wiki/secrets/"
check "runbook links: RUNBOOK_BASE_URL with the alert's section; a full runbook_url as it is; HTML-escaped for Telegram" \
  bash -c "$(declare -f render_am); ROOT='$ROOT'; \
    render_am '$am_wiki' 'RUNBOOK_BASE_URL=https://git.example/noc/runbooks.md?plain=1&x=y' || exit 1
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); \
      d[\"alerts\"][0][\"annotations\"][\"runbook_url\"] = \"https://wiki.example/ping#down\"; \
      json.dump(d, open(sys.argv[2], \"w\"))' '$ROOT/tests/stack/alert-data.json' '$am_wiki/full-url.json'
    render() { '$AMTOOL' template render --template.glob='$am_wiki/run/*.tmpl' \
      --template.glob='$ROOT/alertmanager/templates/*.tmpl' --template.data=\$1 --template.text=\"{{ template \\\"\$2\\\" . }}\"; }
    render '$ROOT/tests/stack/alert-data.json' vigia.text | grep -qxF 'Runbook: https://git.example/noc/runbooks.md?plain=1&x=y#pingtargetdown' \
    && render '$ROOT/tests/stack/alert-data.json' vigia.telegram | grep -qxF 'Runbook: https://git.example/noc/runbooks.md?plain=1&amp;x=y#pingtargetdown' \
    && render '$am_wiki/full-url.json' vigia.text | grep -qxF 'Runbook: https://wiki.example/ping#down' \
    || { render '$ROOT/tests/stack/alert-data.json' vigia.text; render '$ROOT/tests/stack/alert-data.json' vigia.telegram; \
         render '$am_wiki/full-url.json' vigia.text; exit 1; }"
expect_fail "alertmanager refuses a RUNBOOK_BASE_URL that is not http(s) (exit 2)" 2 \
  bash -c "$(declare -f render_am); ROOT='$ROOT'; render_am '$am_wiki' RUNBOOK_BASE_URL=file:///srv/runbooks.md"
expect_fail "alertmanager refuses a RUNBOOK_BASE_URL with a #section of its own (exit 2)" 2 \
  bash -c "$(declare -f render_am); ROOT='$ROOT'; render_am '$am_wiki' 'RUNBOOK_BASE_URL=https://x.example/r#a'"

# --- Grafana ------------------------------------------------------------------------
check "dashboards are what scripts/dashboards.py writes" python3 scripts/dashboards.py --check
mkdir -p "$WORK/grafana"
check "dashboards: valid JSON, unique uids and panel ids, no overlapping panels, provisioned datasource uids, host/site variables" \
  python3 tests/stack/check.py dashboards "$WORK/grafana"
check "dashboards: every PromQL expression parses (promtool check rules)" \
  "$PROMTOOL" check rules "$WORK/grafana/panel-rules.yml"
check "rules and dashboards query only metrics the exporters (exporters/*/src) or the stack expose" \
  python3 tests/stack/check.py metric-names "$WORK/grafana/panel-rules.yml"
cp tests/stack/dashboard-types.ts "$WORK/grafana/"
ln -s "$NPM" "$WORK/grafana/node_modules"
cat >"$WORK/grafana/tsconfig.json" <<'EOF'
{"compilerOptions": {"strict": true, "noEmit": true, "module": "commonjs",
  "moduleResolution": "node", "target": "es2020"}, "include": ["*.ts"]}
EOF
check "dashboards type-check against @grafana/schema (tsc)" \
  node "$NPM/typescript/bin/tsc" -p "$WORK/grafana"

# --- InfluxDB, ping, scripts ------------------------------------------------------
check "make with no target lists every target with its description and runs nothing" tests/stack/make_test.sh
# vigia-ping (its config and its web config) and vigia-web-config (make up's hashes).
if cargo build -q -p vigia-ping -p vigia-kit --bins >"$WORK/cargo.log" 2>&1; then
  TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  PING_BIN=$TARGET_DIR/debug/vigia-ping
  WEB_CONFIG_BIN=$TARGET_DIR/debug/vigia-web-config
else
  echo "FAIL cargo build -p vigia-ping -p vigia-kit --bins"
  sed 's/^/    /' "$WORK/cargo.log" | tail -n 20
  failed=$((failed + 1))
  PING_BIN="" WEB_CONFIG_BIN=/nonexistent
fi
check "make up (scripts/up.sh, stand-in docker): checks before writing, random secrets, .env, board and Prometheus web configs, each password shown once after a start, old .env names renamed, root-group socket refused" \
  env VIGIA_WEB_CONFIG_BIN="$WEB_CONFIG_BIN" PROMTOOL="$PROMTOOL" tests/stack/up_test.sh
check "make agent-bundle (stand-in docker): what compose.agent.yaml mounts, the site's own token and the NOC's CA only, the images compose names, one token per site" \
  tests/stack/agent_bundle_test.sh "$COMPOSE"
check "shell scripts parse" bash -c 'for f in scripts/*.sh scripts/healthcheck influxdb/init/*.sh tests/e2e/*.sh tests/e2e/standins/*.sh tests/stack/*.sh tests/alerts/*.sh; do bash -n "$f" || exit 1; done; for f in alertmanager/render.sh alertmanager/maintenance.sh snmp/render.sh vmauth/render.sh agent/run.sh; do sh -n "$f" || exit 1; done'
# vigia-ping reads ping/ping.yaml and ping/targets.txt in the container; its own
# --check-config validates both (paths moved to the repository's copies).
if [[ -n $PING_BIN ]]; then
  echo "vigia-influx-token" >"$WORK/token"
  check "vigia-ping --check-config accepts ping/ping.yaml, ping/targets.txt and alertmanager/maintenance.txt" \
    env VIGIA_PING__TARGETS_FILE="$ROOT/ping/targets.txt" \
    VIGIA_PING__MAINTENANCE_FILE="$ROOT/alertmanager/maintenance.txt" \
    VIGIA_PING__TRANSITION_LOG__PATH="$WORK/transitions.jsonl" \
    VIGIA_PING__INFLUXDB__URL=http://influxdb:8086 VIGIA_PING__INFLUXDB__DATABASE=vigia \
    VIGIA_PING__INFLUXDB__TOKEN_FILE="$WORK/token" \
    "$PING_BIN" --config.file "$ROOT/ping/ping.yaml" --check-config
  # The maintenance file has two readers, alertmanager/maintenance.sh (the silences) and
  # vigia-ping (the board): both must take and refuse the same lines.
  check "maintenance file: maintenance.sh and vigia-ping agree on every line of tests/stack/maintenance-cases.txt" \
    bash -c "n=0; while IFS='|' read -r want line; do
        [[ -z \$want || \$want == '#'* ]] && continue
        printf '%s\n' \"\$line\" >'$WORK/case.txt'
        sh alertmanager/maintenance.sh check '$WORK/case.txt' >/dev/null 2>&1 && sh_ok=ok || sh_ok=bad
        env VIGIA_PING__TARGETS_FILE='$ROOT/ping/targets.txt' VIGIA_PING__MAINTENANCE_FILE='$WORK/case.txt' \
          VIGIA_PING__TRANSITION_LOG__PATH='$WORK/transitions.jsonl' \
          '$PING_BIN' --config.file '$ROOT/ping/ping.yaml' --check-config >/dev/null 2>&1 && rs_ok=ok || rs_ok=bad
        if [[ \$sh_ok != \$want || \$rs_ok != \$want ]]; then echo \"want \$want, maintenance.sh \$sh_ok, vigia-ping \$rs_ok: \$line\"; exit 1; fi
        n=\$((n + 1))
      done <'$ROOT/tests/stack/maintenance-cases.txt'; [[ \$n -ge 10 ]]"
  # The containers' healthcheck (scripts/healthcheck, bash only) against the real exporter,
  # behind basic auth as in the stack (a web config from vigia-web-config, as make up
  # writes it): the credentials from the file get 200, none or wrong ones 401.
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  printf 'board-password' >"$WORK/board_password"
  printf 'wrong' >"$WORK/wrong_password"
  "$WEB_CONFIG_BIN" --user vigia <"$WORK/board_password" >"$WORK/board_web_config.yml"
  env VIGIA_PING__TARGETS_FILE="$ROOT/ping/targets.txt" \
    VIGIA_PING__TRANSITION_LOG__PATH="$WORK/transitions.jsonl" \
    "$PING_BIN" --config.file "$ROOT/ping/ping.yaml" --web.listen-address "127.0.0.1:$port" \
    --web.config.file "$WORK/board_web_config.yml" >"$WORK/ping.log" 2>&1 &
  ping_pid=$!
  auth=(--user vigia --password-file "$WORK/board_password")
  check "scripts/healthcheck: healthy against vigia-ping behind basic auth with the password file; unhealthy without it, with a wrong one, a wrong path, a closed port" \
    bash -c "for _ in \$(seq 50); do scripts/healthcheck ${auth[*]} $port && break; sleep 0.2; done
      scripts/healthcheck ${auth[*]} $port || { cat '$WORK/ping.log'; exit 1; }
      ! scripts/healthcheck $port && ! scripts/healthcheck --user vigia --password-file '$WORK/wrong_password' $port \
        && ! scripts/healthcheck ${auth[*]} $port /no-such-page && ! scripts/healthcheck ${auth[*]} 1 2>/dev/null"
  kill "$ping_pid" 2>/dev/null
  wait "$ping_pid" 2>/dev/null
fi

echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
