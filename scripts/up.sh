#!/usr/bin/env bash
# `make up`: first run writes .env and secrets/ (random passwords and token; nothing has a
# default), then `docker compose up -d`, waits until every service is healthy and prints
# where everything is. Later runs keep .env and secrets/ as they are.
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
  echo "make up: $*" >&2
  exit 1
}

command -v docker >/dev/null || die "docker is not installed"
docker compose version >/dev/null 2>&1 || die "the Docker Compose v2 plugin (docker compose) is not installed"

random_secret() { # 32 hex digits (128 bits) from the kernel's CSPRNG
  # od reads exactly what it needs and exits by itself: `tr </dev/urandom | head` would end
  # on SIGPIPE, which pipefail turns into a failed first run.
  od -An -N16 -tx1 /dev/urandom | tr -d ' \n'
}

# secrets/: 0700 so only root (and the Docker daemon) reads it on the host. The files are
# 0644 because Compose bind-mounts them as they are, and the services read them as their
# own non-root users (Grafana 472, Alertmanager nobody, the exporters 10001).
umask 022
mkdir -p secrets
chmod 700 secrets
new_grafana_password=""
# Written without a trailing newline: not every reader of a *_FILE trims one.
for name in grafana_admin_password influxdb_admin_password influxdb_token; do
  if [[ ! -s secrets/$name ]]; then
    value=$(random_secret)
    printf '%s' "$value" >"secrets/$name"
    [[ $name == grafana_admin_password ]] && new_grafana_password=$value
  fi
done
# Empty means off: fill one in to turn that channel (or SNMP credential) on (see
# docs/stack.md). SNMP has no default community: it must be the devices' own.
for name in telegram_bot_token discord_webhook_url smtp_password \
  snmp_community snmp_v3_auth_password snmp_v3_priv_password; do
  [[ -e secrets/$name ]] || : >"secrets/$name"
done
chmod 644 secrets/*

if [[ ! -e .env ]]; then
  host=$(hostname -f 2>/dev/null || hostname)
  # vigia-host reads container names through the socket as a member of its group. No
  # socket, no guess: group 0 would hand the container root's group.
  socket=${VIGIA_DOCKER_SOCKET:-/var/run/docker.sock}
  docker_gid=$(stat -c %g "$socket" 2>/dev/null) \
    || die "no $socket: vigia-host needs the Docker socket (is the engine running?)"
  [[ $docker_gid != 0 ]] \
    || die "$socket belongs to group 0; give it a group of its own (the docker group) or write DOCKER_GID in .env yourself"
  # The host-network exporters (ports, host, capture) listen on the Docker bridge's address
  # only: Prometheus reaches them there (host.docker.internal), the LAN does not.
  bridge_ip=$(docker network inspect bridge --format '{{ (index .IPAM.Config 0).Gateway }}' 2>/dev/null) \
    || die "cannot read the address of Docker's default bridge (docker network inspect bridge)"
  [[ -n $bridge_ip ]] || die "Docker's default bridge has no gateway address; set EXPORTER_LISTEN_ADDRESS in .env yourself"
  cat >.env <<ENV
# vigia settings (written by make up on first run; edit and run make up again).
# Where users reach the stack; used in links (notifications, Grafana).
GRAFANA_URL=http://$host:3000
PROMETHEUS_URL=http://$host:9090
# This host's name: the \`host\` tag of vigia-ping's InfluxDB rows (the host-network
# exporters read it themselves).
HOST_NAME=$(hostname)
# Interface the published ports bind to (0.0.0.0: all).
PUBLISH_ADDRESS=0.0.0.0
# Where vigia-ports, vigia-host and vigia-capture listen (host network): the Docker
# bridge's address, reachable from Prometheus and this host only. 0.0.0.0 opens them to
# the network (then give them a --web.config.file with TLS and basic auth).
EXPORTER_LISTEN_ADDRESS=$bridge_ip
GRAFANA_PORT=3000
BOARD_PORT=9471
PROMETHEUS_PORT=9090
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

# The image's vigia_build_info{revision}: the build context carries no .git.
VIGIA_REVISION=${VIGIA_REVISION:-$(git -C "$(dirname "$0")/.." rev-parse --short HEAD 2>/dev/null || echo unknown)}
export VIGIA_REVISION
docker compose up -d --build --wait --wait-timeout "${VIGIA_UP_TIMEOUT:-300}" || {
  docker compose ps
  die "some services did not become healthy; see: docker compose logs <service>"
}

# shellcheck disable=SC1091
set -a && . ./.env && set +a
echo
echo "vigia is up:"
echo "  Grafana       ${GRAFANA_URL}  (user admin)"
echo "  Status board  http://$(hostname):${BOARD_PORT:-9471}/"
echo "  Prometheus    ${PROMETHEUS_URL}"
echo "  Alert mail    http://127.0.0.1:${MAILPIT_PORT:-8025}/  (mail catcher, this host only)"
if [[ -n $new_grafana_password ]]; then
  echo
  echo "Grafana admin password (shown once; it is also in secrets/grafana_admin_password):"
  echo "  $new_grafana_password"
fi
