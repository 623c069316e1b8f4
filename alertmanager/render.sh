#!/bin/sh
# Entrypoint of the alertmanager service: writes Alertmanager's configuration from the
# environment (.env) and the secret files, then starts Alertmanager with it, and keeps
# the silences of the maintenance file (maintenance.txt beside this script) in step.
#
# Why rendered and not a static file: a notification channel is switched on by giving it
# its secret (secrets/telegram_bot_token, secrets/discord_webhook_url). Alertmanager has
# no "skip this receiver when its secret is empty", and a receiver with an empty token
# fails every notification (and AlertmanagerNotificationsFailing with it). So only the
# channels whose secret file is non-empty are written into the receivers. Email is always
# on: by default it goes to the stack's mail catcher (Mailpit).
#
# After changing a secret or .env: docker compose up -d alertmanager (or restart it).
# Edits of maintenance.txt need nothing: they are applied within 30 seconds.
# Paths can be moved for the offline validation (tests/stack/validate.sh).
set -eu

here=$(dirname "$0")
secrets=${VIGIA_SECRETS_DIR:-/run/secrets}
run_dir=${VIGIA_AM_RUN_DIR:-/run/vigia}
templates=${VIGIA_AM_TEMPLATES:-/etc/alertmanager/templates}
maintenance_file=${VIGIA_MAINTENANCE_FILE:-$here/maintenance.txt}
config=$run_dir/alertmanager.yml

fail() {
  echo "alertmanager config: $*" >&2
  exit 2
}

# A secret counts as set when its file holds anything but whitespace. A file that is
# there but unreadable is an error, not "off": a channel must not vanish silently.
secret_set() {
  [ -e "$secrets/$1" ] || return 1
  [ -r "$secrets/$1" ] || fail "secrets/$1 is not readable by uid $(id -u) (make it 0644; secrets/ itself stays 0700)"
  grep -q '[^[:space:]]' "$secrets/$1"
}

# YAML single-quoted scalar: the value as given, with quotes doubled.
quote() {
  printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"
}

smtp_smarthost=${SMTP_SMARTHOST:-mailpit:1025}
smtp_from=${SMTP_FROM:-vigia@localhost}
smtp_require_tls=${SMTP_REQUIRE_TLS:-false}
alert_email_to=${ALERT_EMAIL_TO:-noc@localhost}
grafana_url=${GRAFANA_URL:-http://localhost:3000}
# The alerts' runbook_url is a section of docs/runbooks.md (docs/runbooks.md#anchor); the
# links open it here. By default the page this stack's Prometheus serves (made from
# docs/runbooks.md), which works with no internet; or a wiki or Git server of yours.
prometheus_url=${PROMETHEUS_URL:-http://localhost:9090}
runbook_base_url=${RUNBOOK_BASE_URL:-${prometheus_url%/}/consoles/runbooks.html}
telegram_api_url=${TELEGRAM_API_URL:-https://api.telegram.org}

case $smtp_require_tls in true | false) ;; *) fail "SMTP_REQUIRE_TLS must be true or false, not '$smtp_require_tls'" ;; esac
case $smtp_smarthost in *:[0-9]*) ;; *) fail "SMTP_SMARTHOST must be host:port, not '$smtp_smarthost'" ;; esac
case $grafana_url in http://* | https://*) ;; *) fail "GRAFANA_URL must start with http:// or https://, not '$grafana_url'" ;; esac
case $runbook_base_url in
  http://* | https://*) ;;
  *) fail "RUNBOOK_BASE_URL must start with http:// or https://, not '$runbook_base_url'" ;;
esac
case $runbook_base_url in
  *'#'*) fail "RUNBOOK_BASE_URL must not end in a #section: each alert's own is appended ('$runbook_base_url')" ;;
  *[[:space:]{}\"\<\>]*) fail "RUNBOOK_BASE_URL has a space, brace, quote or angle bracket: '$runbook_base_url'" ;;
esac

# Which channels are on, decided once: every receiver below uses them.
telegram_chat_id=
if secret_set telegram_bot_token; then
  case ${TELEGRAM_CHAT_ID:-} in
    '') fail "secrets/telegram_bot_token is set but TELEGRAM_CHAT_ID is empty" ;;
    *[!0-9-]* | -) fail "TELEGRAM_CHAT_ID must be a number (a group's id is negative), not '$TELEGRAM_CHAT_ID'" ;;
  esac
  telegram_chat_id=$TELEGRAM_CHAT_ID
fi
discord=0
if secret_set discord_webhook_url; then
  discord=1
fi
if [ -n "${SMTP_AUTH_USERNAME:-}" ]; then
  secret_set smtp_password || fail "SMTP_AUTH_USERNAME is set but secrets/smtp_password is empty"
fi

# Maintenance windows: a bad file stops the start with its line and field named, like
# any other bad setting (while running, a bad edit is logged and the silences kept).
if [ -e "$maintenance_file" ]; then
  sh "$here/maintenance.sh" check "$maintenance_file" || exit 2
fi

mkdir -p "$run_dir"

# The dashboard links in notifications point at this Grafana, the runbook links there
# (and HTML-escaped, for Telegram's HTML messages).
{
  printf '{{ define "vigia.grafana_url" }}%s{{ end }}\n' "$grafana_url"
  printf '{{ define "vigia.runbook_base_url" }}%s{{ end }}\n' "$runbook_base_url"
  printf '{{ define "vigia.runbook_base_url_html" }}%s{{ end }}\n' "$(printf '%s' "$runbook_base_url" | sed 's/&/\&amp;/g')"
} >"$run_dir/links.tmpl"

# One receiver's channels (every route's receiver delivers to the same ones).
channels() {
  echo "    email_configs:"
  echo "      - to: $(quote "$alert_email_to")"
  cat <<'YAML'
        send_resolved: true
        headers:
          Subject: '{{ template "vigia.subject" . }}'
        html: '{{ template "vigia.html" . }}'
        text: '{{ template "vigia.text" . }}'
YAML
  if [ -n "$telegram_chat_id" ]; then
    echo "    telegram_configs:"
    echo "      - bot_token_file: $secrets/telegram_bot_token"
    echo "        chat_id: $telegram_chat_id"
    echo "        api_url: $(quote "$telegram_api_url")"
    cat <<'YAML'
        parse_mode: HTML
        send_resolved: true
        message: '{{ template "vigia.telegram" . }}'
YAML
  fi
  if [ "$discord" = 1 ]; then
    echo "    discord_configs:"
    echo "      - webhook_url_file: $secrets/discord_webhook_url"
    cat <<'YAML'
        send_resolved: true
        title: '{{ template "vigia.subject" . }}'
        message: '{{ template "vigia.chat" . }}'
YAML
  fi
}

{
  echo "# Written by alertmanager/render.sh at container start; edit .env or secrets/, not this file."
  echo "global:"
  echo "  resolve_timeout: 5m"
  echo "  smtp_smarthost: $(quote "$smtp_smarthost")"
  echo "  smtp_from: $(quote "$smtp_from")"
  echo "  smtp_require_tls: $smtp_require_tls"
  if [ -n "${SMTP_AUTH_USERNAME:-}" ]; then
    echo "  smtp_auth_username: $(quote "$SMTP_AUTH_USERNAME")"
    echo "  smtp_auth_password_file: $secrets/smtp_password"
  fi
  echo "templates:"
  echo "  - $templates/*.tmpl"
  echo "  - $run_dir/links.tmpl"
  cat <<'YAML'
route:
  receiver: vigia
  # Alerts about the stack and its hosts: one message per alert and target (seed 001:
  # one mail per thing that goes wrong).
  group_by: [alertname, target]
  group_wait: 30s
  group_interval: 5m
  # Seed 001: never more than one message an hour about the same thing.
  repeat_interval: 1h
  routes:
    # More than 5 sites with ping alerts at once: this one message stands for all of
    # them (an inhibition below holds the per-site ones back).
    - receiver: vigia-ping-storm
      matchers: [alertname="PingManySitesDown"]
      group_by: [alertname]
    # Ping targets: one message per site. A failed uplink is one alert naming the
    # devices behind it, so a site outage is one message; devices down, flapping, slow
    # or lossy at the same site within group_wait share it. A site's group sends at most
    # once per group_interval, and no more than 5 sites page at a time (the storm
    # guard), so ping alerts stay far below Telegram's 20 messages a minute per chat.
    - receiver: vigia-ping-sites
      matchers: [alertname=~"Ping.+"]
      group_by: [site]
      group_wait: 30s
      group_interval: 2m
inhibit_rules:
  # A target that is down (critical) is also slow and lossy (warnings): say it once.
  # SNMP alerts name the device as their target and the interface by ifIndex: a down
  # interface silences that interface's warnings, not those of the device's other
  # interfaces (the parallel link its traffic moved to). Alerts with no ifIndex match on
  # target alone (a label missing from both counts as equal).
  - source_matchers: [severity="critical", target!=""]
    target_matchers: [severity="warning"]
    equal: [target, ifIndex]
  # A flapping target pages once, as flapping, not at every bounce.
  - source_matchers: [alertname="PingTargetFlapping"]
    target_matchers: [alertname=~"PingTargetDown|PingUplinkDown"]
    equal: [instance, target]
  # Too many sites at once: the storm message replaces the sites' own.
  - source_matchers: [alertname="PingManySitesDown"]
    target_matchers: [alertname=~"PingTargetDown|PingUplinkDown|PingTargetFlapping|PingHighLatency|PingPacketLoss"]
receivers:
YAML
  # One receiver per route, so that `amtool config routes test` tells the routes apart.
  for receiver in vigia vigia-ping-sites vigia-ping-storm; do
    echo "  - name: $receiver"
    channels
  done
} >"$config.tmp"
mv "$config.tmp" "$config"

if [ "${VIGIA_AM_RENDER_ONLY:-}" = 1 ]; then
  exit 0
fi
# Silences from the maintenance file, kept in step with it while Alertmanager runs. The
# loop becomes a child of Alertmanager when this shell is replaced by it, and stops
# with the container.
if [ -e "$maintenance_file" ]; then
  sh "$here/maintenance.sh" watch "$maintenance_file" &
fi
exec /bin/alertmanager --config.file="$config" --storage.path=/alertmanager "$@"
