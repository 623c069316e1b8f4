#!/usr/bin/env bash
# `make up`: checks that the stack can start here before it writes anything; then, on the
# first run, writes .env and secrets/ (random passwords and token; nothing has a default),
# builds vigia's image, writes the web configs that put basic auth on the status board and
# Prometheus, runs `docker compose up -d`, waits until every service is healthy and prints
# where everything is. Each password is printed once, after a run whose stack started (a
# failed run prints none, so the next good one still does). Later runs keep .env and
# secrets/, and rename the settings an older .env still has under an old name.
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
  echo "make up: $*" >&2
  exit 1
}

# --- 1. Everything that must hold, checked before anything is written -----------------
command -v docker >/dev/null || die "docker is not installed"
docker compose version >/dev/null 2>&1 || die "the Docker Compose v2 plugin (docker compose) is not installed"
if ! engine_error=$(docker info --format '{{.ServerVersion}}' 2>&1 >/dev/null); then
  die "cannot reach the Docker engine (is it running? may this user use it?): $(head -n 1 <<<"$engine_error")"
fi
# vigia-host reads container names through the socket (compose.yaml mounts it).
socket=${VIGIA_DOCKER_SOCKET:-/var/run/docker.sock}
[[ -S $socket ]] || die "no Docker socket at $socket: vigia-host mounts it to name containers (is the engine running?)"
if [[ ! -e .env ]]; then
  # vigia-host reads the socket as a member of its group. No socket, no guess: group 0
  # would hand the container root's group.
  docker_gid=$(stat -c %g "$socket")
  [[ $docker_gid != 0 ]] \
    || die "$socket belongs to group 0; give it a group of its own (the docker group) or write DOCKER_GID in .env yourself"
  # The host-network exporters (ports, host, capture) listen on the Docker bridge's address
  # only: Prometheus reaches them there (host.docker.internal), the LAN does not.
  bridge_ip=$(docker network inspect bridge --format '{{ (index .IPAM.Config 0).Gateway }}' 2>/dev/null) \
    || die "cannot read the address of Docker's default bridge (docker network inspect bridge)"
  [[ -n $bridge_ip ]] || die "Docker's default bridge has no gateway address; set EXPORTER_LISTEN_ADDRESS in .env yourself"
  compose_check_env=(env "DOCKER_GID=$docker_gid")
else
  compose_check_env=(env)
fi
# The compose file with the settings it will run with (an edited .env included).
if ! compose_error=$("${compose_check_env[@]}" docker compose config -q 2>&1); then
  die "docker compose config refuses compose.yaml with these settings: $compose_error"
fi

# --- 2. .env: written on the first run, old names renamed on later ones --------------
# env_get NAME: NAME's value as compose will see it (the environment wins over .env).
env_get() {
  if [[ -n ${!1:-} ]]; then
    printf '%s' "${!1}"
  elif [[ -e .env ]]; then
    sed -n "s/^$1=//p" .env | tail -n 1
  fi
}
# rename_setting OLD NEW WHY: an older .env's OLD line becomes NEW, value kept.
rename_setting() {
  grep -q "^$1=" .env || return 0
  if grep -q "^$2=" .env; then
    echo "make up: .env sets both $1 and $2; compose.yaml reads only $2 ($3)" >&2
    return 0
  fi
  sed -i "s/^$1=/$2=/" .env
  echo "make up: .env: renamed $1 to $2 ($3)"
}

if [[ -e .env ]]; then
  rename_setting PROMETHEUS_PORT PROMETHEUS_PUBLISH_PORT \
    "PROMETHEUS_PORT is seed 000's name for vigia-ports' listen port"
  rename_setting HOST_IDLE_WATTS VIGIA_HOST__ENERGY__MODEL__IDLE_WATTS "vigia-host reads its own name"
  rename_setting HOST_MAX_WATTS VIGIA_HOST__ENERGY__MODEL__MAX_WATTS "vigia-host reads its own name"
else
  host=$(hostname -f 2>/dev/null || hostname)
  cat >.env <<ENV
# vigia settings (written by make up on first run; edit and run make up again).
# Where users reach the stack; used in links (notifications, Grafana).
GRAFANA_URL=http://$host:3000
PROMETHEUS_URL=http://$host:9090
# Runbook links in notifications open RUNBOOK_BASE_URL#<alert>. Unset: the runbooks page
# this stack's Prometheus serves (PROMETHEUS_URL/consoles/runbooks.html, made from
# docs/runbooks.md), which opens with no internet. Or your wiki's copy, e.g.
# RUNBOOK_BASE_URL=https://git.example/noc/vigia/src/branch/main/docs/runbooks.md
# This host's name: the \`host\` tag of vigia-ping's InfluxDB rows (the host-network
# exporters read it themselves).
HOST_NAME=$(hostname)
# Interface the published ports (Grafana, board, Prometheus) bind to; 0.0.0.0: all, so
# the NOC's desks reach them. Each asks for a password: Grafana its own login, the board
# and Prometheus basic auth (user vigia, secrets/board_password, secrets/prometheus_password).
PUBLISH_ADDRESS=0.0.0.0
# Where vigia-ports, vigia-host and vigia-capture listen (host network): the Docker
# bridge's address, reachable from Prometheus and this host only. 0.0.0.0 opens them to
# the network (then give them a --web.config.file with TLS and basic auth).
EXPORTER_LISTEN_ADDRESS=$bridge_ip
GRAFANA_PORT=3000
BOARD_PORT=9471
PROMETHEUS_PUBLISH_PORT=9090
# InfluxDB listens on loopback only; remote sites write through the ingress (make central).
INFLUXDB_BIND=127.0.0.1
INFLUXDB_PORT=8086
INFLUXDB_RETENTION=30d
PROMETHEUS_RETENTION=30d
# TCP ports vigia-ports counts connections on (the seed's PUERTOS_A_MONITOREAR).
PORTS_TO_MONITOR=22,80,443
# Interface vigia-capture listens on (any: all of them).
CAPTURE_INTERFACE=any
# Group of /var/run/docker.sock: lets vigia-host name containers.
DOCKER_GID=$docker_gid
# Power estimate where the host has no readable power sensor (RAPL, hwmon): off, vigia-host
# invents no watts. Your hardware's draw at idle and at full CPU turns the model on (both):
# VIGIA_HOST__ENERGY__MODEL__IDLE_WATTS=40
# VIGIA_HOST__ENERGY__MODEL__MAX_WATTS=140
# Alert email. The default goes to the stack's mail catcher (http://127.0.0.1:8025).
ALERT_EMAIL_TO=noc@localhost
SMTP_SMARTHOST=mailpit:1025
SMTP_FROM=vigia@$host
SMTP_REQUIRE_TLS=false
# With a username, the password goes in secrets/smtp_password.
SMTP_AUTH_USERNAME=
# Telegram: the bot token goes in secrets/telegram_bot_token; the chat here.
TELEGRAM_CHAT_ID=
# Discord: the webhook URL goes in secrets/discord_webhook_url.
# SNMP devices (prometheus/targets/snmp.yml): the v2c community goes in
# secrets/snmp_community; SNMPv3 (authPriv) takes this user and these protocols, with its
# passphrases in secrets/snmp_v3_auth_password and secrets/snmp_v3_priv_password.
SNMP_V3_USERNAME=
SNMP_V3_AUTH_PROTOCOL=SHA
SNMP_V3_PRIV_PROTOCOL=AES
ENV
  echo "make up: wrote .env (edit it to change ports, email, Telegram chat)"
fi

# --- 3. secrets/ ----------------------------------------------------------------------
random_secret() { # 32 hex digits (128 bits) from the kernel's CSPRNG
  # od reads exactly what it needs and exits by itself: `tr </dev/urandom | head` would end
  # on SIGPIPE, which pipefail turns into a failed first run.
  od -An -N16 -tx1 /dev/urandom | tr -d ' \n'
}

# secrets/: 0700 so only root (and the Docker daemon) reads it on the host. The files are
# 0644 because Compose bind-mounts them as they are, and the services read them as their
# own non-root users (Grafana 472, Prometheus and Alertmanager nobody, the exporters 10001).
umask 022
mkdir -p secrets
chmod 700 secrets
# Written without a trailing newline: not every reader of a *_FILE trims one.
for name in grafana_admin_password influxdb_admin_password influxdb_token board_password prometheus_password; do
  [[ -s secrets/$name ]] || printf '%s' "$(random_secret)" >"secrets/$name"
done
# Empty means off: fill one in to turn that channel (or SNMP credential) on (see
# docs/stack.md). SNMP has no default community: it must be the devices' own.
for name in telegram_bot_token discord_webhook_url smtp_password \
  snmp_community snmp_v3_auth_password snmp_v3_priv_password; do
  [[ -e secrets/$name ]] || : >"secrets/$name"
done

# --- 4. vigia's image, and the web configs made with it ------------------------------
# The image's vigia_build_info{revision}: the build context carries no .git.
VIGIA_REVISION=${VIGIA_REVISION:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
export VIGIA_REVISION
docker compose build || die "building vigia's image failed (see above)"
image=$(env_get VIGIA_IMAGE)
image=${image:-vigia:dev}
# Basic auth for the board and Prometheus: the bcrypt hash of each password, made by the
# image's vigia-web-config (no htpasswd needed on this host), again whenever the password
# file is newer. Written in place, so that running containers, whose bind mount follows
# the file, see the new hash.
for name in board prometheus; do
  password=secrets/${name}_password web=secrets/${name}_web_config.yml
  if [[ ! -s $web || $password -nt $web ]]; then
    text=$(docker run --rm -i --network none --read-only --cap-drop ALL \
      --security-opt no-new-privileges "$image" vigia-web-config --user vigia <"$password") \
      || die "could not write $web (vigia-web-config in $image failed)"
    printf '%s\n' "$text" >"$web"
  fi
done
chmod 644 secrets/*

# --- 5. The stack ---------------------------------------------------------------------
docker compose up -d --no-build --wait --wait-timeout "${VIGIA_UP_TIMEOUT:-300}" || {
  docker compose ps
  die "some services did not become healthy; see: docker compose logs <service>"
}

# shellcheck disable=SC1091
set -a && . ./.env && set +a
prometheus_url=${PROMETHEUS_URL:-http://localhost:9090}
echo
echo "vigia is up:"
echo "  Grafana       ${GRAFANA_URL:-http://localhost:3000}  (user admin)"
echo "  Status board  http://$(hostname):${BOARD_PORT:-9471}/  (user vigia)"
echo "  Prometheus    ${prometheus_url}  (user vigia)"
echo "  Runbooks      ${RUNBOOK_BASE_URL:-${prometheus_url%/}/consoles/runbooks.html}"
echo "  Alert mail    http://127.0.0.1:${MAILPIT_PORT:-8025}/  (mail catcher, this host only)"
# Each password once, now that the stack it opens is up. secrets/.shown remembers which,
# by name and a digest of the value: a password made anew (its file deleted) is shown again.
touch secrets/.shown
first=1
for entry in "grafana_admin_password:Grafana (admin)" "board_password:Status board (vigia)" \
  "prometheus_password:Prometheus (vigia)"; do
  name=${entry%%:*}
  shown="$name $(sha256sum <"secrets/$name" | cut -c1-16)"
  grep -qxF "$shown" secrets/.shown && continue
  if [[ -n $first ]]; then
    echo
    echo "Passwords (shown once; they stay in secrets/):"
    first=""
  fi
  printf '  %-22s %s  (secrets/%s)\n' "${entry#*:}" "$(cat "secrets/$name")" "$name"
  echo "$shown" >>secrets/.shown
done
