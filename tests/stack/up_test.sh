#!/usr/bin/env bash
# `make up` (scripts/up.sh) run after run, in a scratch copy of the repository with a
# stand-in `docker` on PATH that records what it is asked: the files an operator gets
# (.env, secrets/, the web configs), what is printed, and the compose commands. The stand-in
# runs the real vigia-web-config (VIGIA_WEB_CONFIG_BIN, else built here with cargo) where
# up.sh runs it in vigia's image, and the hashes are checked with htpasswd, not our code.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [[ -z ${VIGIA_WEB_CONFIG_BIN:-} ]]; then
  cargo build -q -p vigia-kit --bin vigia-web-config --manifest-path "$ROOT/Cargo.toml"
  VIGIA_WEB_CONFIG_BIN=$(cargo metadata --format-version 1 --no-deps --manifest-path "$ROOT/Cargo.toml" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/vigia-web-config
fi
command -v htpasswd >/dev/null || { echo "up_test: htpasswd is missing (Debian package apache2-utils)" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/repo/scripts" "$dir/bin"
cp "$ROOT/scripts/up.sh" "$dir/repo/scripts/"
cat >"$dir/bin/docker" <<'STUB'
#!/bin/bash
echo "$*" >>"$STUB_LOG"
case "$*" in
  "compose version") echo "Docker Compose version v2" ;;
  "info --format"*)
    [[ $STUB_ENGINE == up ]] || { echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?" >&2; exit 1; }
    echo 20.10.24 ;;
  "network inspect bridge"*) echo 198.19.255.1 ;;
  "compose config -q") [[ -n ${DOCKER_GID:-} ]] || grep -q '^DOCKER_GID=' .env ;;
  "compose build") ;;
  "run --rm -i "*" vigia:dev vigia-web-config --user vigia") exec "$VIGIA_WEB_CONFIG_BIN" --user vigia ;;
  "compose up -d --no-build --wait"*) [[ $STUB_UP == ok ]] || { echo "container vigia-prometheus-1 is unhealthy" >&2; exit 1; } ;;
  "compose ps") ;;
  *) echo "stub docker: unexpected: $*" >&2; exit 1 ;;
esac
STUB
chmod +x "$dir/bin/docker"
python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$dir/docker.sock"
chgrp 4242 "$dir/docker.sock"
export STUB_LOG=$dir/docker.log PATH="$dir/bin:$PATH" VIGIA_DOCKER_SOCKET=$dir/docker.sock VIGIA_WEB_CONFIG_BIN
export STUB_ENGINE=up STUB_UP=ok
fail() { echo "up_test: $*" >&2; exit 1; }
cd "$dir/repo"
up() { scripts/up.sh 2>&1; }
nothing_written() { [[ ! -e .env && ! -e secrets ]] || fail "$1 left files behind: $(ls -A)"; }

# 1. Checked before anything is written: no engine, no socket.
if out=$(STUB_ENGINE=down up); then fail "ran without a Docker engine: $out"; fi
grep -q 'cannot reach the Docker engine' <<<"$out" || fail "no engine: unclear message: $out"
nothing_written "a run without a Docker engine"
if out=$(VIGIA_DOCKER_SOCKET=$dir/no-such.sock up); then fail "ran without a Docker socket: $out"; fi
grep -q "no Docker socket at $dir/no-such.sock" <<<"$out" || fail "no socket: unclear message: $out"
nothing_written "a run without a Docker socket"
chgrp 0 "$dir/docker.sock"
if out=$(up); then fail "a root-group Docker socket was accepted"; fi
grep -q 'group 0' <<<"$out" || fail "root-group socket: unclear message: $out"
nothing_written "a run with a root-group socket"
chgrp 4242 "$dir/docker.sock"

# 2. A first run whose stack does not start: secrets exist, no password is shown yet.
if out=$(STUB_UP=fail up); then fail "a stack that did not start counted as up: $out"; fi
grep -q 'did not become healthy' <<<"$out" || fail "failed start: unclear message: $out"
[[ $(stat -c %a secrets) == 700 ]] || fail "secrets/ is $(stat -c %a secrets), not 700"
declare -A pw
for name in grafana_admin_password influxdb_admin_password influxdb_token board_password prometheus_password; do
  pw[$name]=$(cat "secrets/$name")
  [[ ${pw[$name]} =~ ^[0-9a-f]{32}$ ]] || fail "secrets/$name is not 32 random hex digits: '${pw[$name]}'"
  ! grep -q "${pw[$name]}" <<<"$out" || fail "a stack that did not start showed secrets/$name"
done
[[ $(printf '%s\n' "${pw[@]}" | sort -u | wc -l) == 5 ]] || fail "the five secrets are not all different"
for name in telegram_bot_token discord_webhook_url smtp_password snmp_community snmp_v3_auth_password snmp_v3_priv_password; do
  [[ -f secrets/$name && ! -s secrets/$name ]] || fail "secrets/$name should exist and be empty (channel off)"
done
grep -qx 'DOCKER_GID=4242' .env || fail ".env has no DOCKER_GID=4242: $(grep DOCKER_GID .env)"
grep -qx 'EXPORTER_LISTEN_ADDRESS=198.19.255.1' .env || fail ".env does not bind the exporters to the bridge"
grep -qx 'PROMETHEUS_PUBLISH_PORT=9090' .env || fail ".env has no PROMETHEUS_PUBLISH_PORT"
! grep -q '^PROMETHEUS_PORT=' .env || fail ".env still writes seed 000's PROMETHEUS_PORT"
! grep -q '^VIGIA_HOST__ENERGY__' .env || fail ".env turns on a power model nobody configured"
grep -qx '# VIGIA_HOST__ENERGY__MODEL__IDLE_WATTS=40' .env || fail ".env has no commented power model example"

# Basic auth for the board and Prometheus: each web config holds the bcrypt hash of its
# password, nothing else secret; htpasswd agrees the hash is that password's.
for name in board prometheus; do
  web=secrets/${name}_web_config.yml
  [[ $(stat -c %a "$web") == 644 ]] || fail "$web is $(stat -c %a "$web"), not 644 (read by the services' users)"
  ! grep -q "${pw[${name}_password]}" "$web" || fail "$web holds the password itself"
  awk '$1 == "vigia:" {print "vigia:" $2}' "$web" >"$dir/htpasswd"
  htpasswd -vb "$dir/htpasswd" vigia "${pw[${name}_password]}" >/dev/null 2>&1 \
    || fail "$web: the hash is not secrets/${name}_password's: $(cat "$web")"
  ! htpasswd -vb "$dir/htpasswd" vigia wrong >/dev/null 2>&1 || fail "$web accepts any password"
  if [[ -n ${PROMTOOL:-} ]]; then
    "$PROMTOOL" check web-config "$web" >/dev/null || fail "promtool refuses $web"
  fi
done

# 3. The next run starts the stack: every password once, with the URLs and users.
out=$(up) || fail "second run failed: $out"
for name in grafana_admin_password board_password prometheus_password; do
  [[ $(grep -c "${pw[$name]}" <<<"$out") == 1 ]] || fail "secrets/$name is not printed exactly once: $out"
done
! grep -q "${pw[influxdb_token]}\|${pw[influxdb_admin_password]}" <<<"$out" || fail "printed an InfluxDB secret: $out"
grep -q 'Status board .*(user vigia)' <<<"$out" && grep -q 'Prometheus .*(user vigia)' <<<"$out" \
  || fail "the board's and Prometheus' user are not printed: $out"
grep -q 'Runbooks .*/consoles/runbooks.html' <<<"$out" || fail "the runbooks page is not printed: $out"
grep -q '^compose build$' "$STUB_LOG" || fail "no 'docker compose build': $(cat "$STUB_LOG")"
grep -q '^compose up -d --no-build --wait' "$STUB_LOG" || fail "no 'docker compose up -d --no-build --wait': $(cat "$STUB_LOG")"

# 4. Later runs: nothing shown again, nothing regenerated.
: >"$STUB_LOG"
inode=$(stat -c %i secrets/board_web_config.yml)
out=$(up) || fail "third run failed: $out"
for name in "${!pw[@]}"; do
  [[ $(cat "secrets/$name") == "${pw[$name]}" ]] || fail "a later run changed secrets/$name"
  ! grep -q "${pw[$name]}" <<<"$out" || fail "a later run printed secrets/$name again"
done
! grep -q 'vigia-web-config' "$STUB_LOG" || fail "a later run remade the web configs: $(cat "$STUB_LOG")"

# 5. A new board password: the web config follows, in place (running containers see it),
# and the new password is shown once.
printf 'a-new-board-password' >secrets/board_password
touch -d '1 minute ago' secrets/board_web_config.yml
out=$(up) || fail "run after a password change failed: $out"
[[ $(grep -c 'a-new-board-password' <<<"$out") == 1 ]] || fail "the new board password is not shown once: $out"
! grep -q "${pw[grafana_admin_password]}" <<<"$out" || fail "the unchanged Grafana password was shown again"
awk '$1 == "vigia:" {print "vigia:" $2}' secrets/board_web_config.yml >"$dir/htpasswd"
htpasswd -vb "$dir/htpasswd" vigia a-new-board-password >/dev/null 2>&1 \
  || fail "the board's web config does not follow its new password"
[[ $(stat -c %i secrets/board_web_config.yml) == "$inode" ]] || fail "the web config was replaced, not rewritten in place"

# 6. An older .env: seed 000's PROMETHEUS_PORT (used for Prometheus' published port) and
# the old power model names are renamed, values kept.
sed -i 's/^PROMETHEUS_PUBLISH_PORT=9090$/PROMETHEUS_PORT=9091/' .env
printf 'HOST_IDLE_WATTS=35\nHOST_MAX_WATTS=95\n' >>.env
out=$(up) || fail "run with an older .env failed: $out"
grep -qx 'PROMETHEUS_PUBLISH_PORT=9091' .env && ! grep -q '^PROMETHEUS_PORT=' .env \
  || fail "PROMETHEUS_PORT was not renamed: $(grep PROMETHEUS .env)"
grep -qx 'VIGIA_HOST__ENERGY__MODEL__IDLE_WATTS=35' .env && grep -qx 'VIGIA_HOST__ENERGY__MODEL__MAX_WATTS=95' .env \
  || fail "HOST_*_WATTS were not renamed: $(grep WATTS .env)"
grep -q 'renamed PROMETHEUS_PORT to PROMETHEUS_PUBLISH_PORT' <<<"$out" || fail "the rename is not reported: $out"
echo "up_test: ok"
