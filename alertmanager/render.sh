#!/bin/sh
# Entrypoint of the alertmanager service: writes Alertmanager's configuration from the
# environment (.env) and the secret files, then starts Alertmanager with it.
#
# Why rendered and not a static file: a notification channel is switched on by giving it
# its secret (secrets/telegram_bot_token, secrets/discord_webhook_url). Alertmanager has
# no "skip this receiver when its secret is empty", and a receiver with an empty token
# fails every notification (and AlertmanagerNotificationsFailing with it). So only the
# channels whose secret file is non-empty are written into the receiver. Email is always
# on: by default it goes to the stack's mail catcher (Mailpit).
#
# After changing a secret or .env: docker compose up -d alertmanager (or restart it).
# Paths can be moved for the offline validation (tests/stack/validate.sh).
set -eu

secrets=${VIGIA_SECRETS_DIR:-/run/secrets}
run_dir=${VIGIA_AM_RUN_DIR:-/run/vigia}
templates=${VIGIA_AM_TEMPLATES:-/etc/alertmanager/templates}
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

mkdir -p "$run_dir"

# The dashboard links in notifications point at this Grafana, the runbook links there
# (and HTML-escaped, for Telegram's HTML messages).
{
  printf '{{ define "vigia.grafana_url" }}%s{{ end }}\n' "$grafana_url"
  printf '{{ define "vigia.runbook_base_url" }}%s{{ end }}\n' "$runbook_base_url"
  printf '{{ define "vigia.runbook_base_url_html" }}%s{{ end }}\n' "$(printf '%s' "$runbook_base_url" | sed 's/&/\&amp;/g')"
} >"$run_dir/links.tmpl"

{
  echo "# Written by alertmanager/render.sh at container start; edit .env or secrets/, not this file."
  echo "global:"
  echo "  resolve_timeout: 5m"
  echo "  smtp_smarthost: $(quote "$smtp_smarthost")"
  echo "  smtp_from: $(quote "$smtp_from")"
  echo "  smtp_require_tls: $smtp_require_tls"
  if [ -n "${SMTP_AUTH_USERNAME:-}" ]; then
    secret_set smtp_password || fail "SMTP_AUTH_USERNAME is set but secrets/smtp_password is empty"
    echo "  smtp_auth_username: $(quote "$SMTP_AUTH_USERNAME")"
    echo "  smtp_auth_password_file: $secrets/smtp_password"
  fi
  echo "templates:"
  echo "  - $templates/*.tmpl"
  echo "  - $run_dir/links.tmpl"
  cat <<'YAML'
route:
  receiver: vigia
  # One notification per alert and target (seed 001: one mail per device that goes down).
  group_by: [alertname, target]
  group_wait: 30s
  group_interval: 5m
  # Seed 001: never more than one message an hour about the same thing.
  repeat_interval: 1h
inhibit_rules:
  # A target that is down (critical) is also slow and lossy (warnings): say it once.
  - source_matchers: [severity="critical"]
    target_matchers: [severity="warning"]
    equal: [target]
receivers:
  - name: vigia
    email_configs:
YAML
  echo "      - to: $(quote "$alert_email_to")"
  cat <<'YAML'
        send_resolved: true
        headers:
          Subject: '{{ template "vigia.subject" . }}'
        html: '{{ template "vigia.html" . }}'
        text: '{{ template "vigia.text" . }}'
YAML
  if secret_set telegram_bot_token; then
    case ${TELEGRAM_CHAT_ID:-} in
      '' ) fail "secrets/telegram_bot_token is set but TELEGRAM_CHAT_ID is empty" ;;
      *[!0-9-]* | -) fail "TELEGRAM_CHAT_ID must be a number (a group's id is negative), not '$TELEGRAM_CHAT_ID'" ;;
    esac
    echo "    telegram_configs:"
    echo "      - bot_token_file: $secrets/telegram_bot_token"
    echo "        chat_id: $TELEGRAM_CHAT_ID"
    echo "        api_url: $(quote "$telegram_api_url")"
    cat <<'YAML'
        parse_mode: HTML
        send_resolved: true
        message: '{{ template "vigia.telegram" . }}'
YAML
  fi
  if secret_set discord_webhook_url; then
    cat <<YAML
    discord_configs:
      - webhook_url_file: $secrets/discord_webhook_url
YAML
    cat <<'YAML'
        send_resolved: true
        title: '{{ template "vigia.subject" . }}'
        message: '{{ template "vigia.text" . }}'
YAML
  fi
} >"$config.tmp"
mv "$config.tmp" "$config"

if [ "${VIGIA_AM_RENDER_ONLY:-}" = 1 ]; then
  exit 0
fi
exec /bin/alertmanager --config.file="$config" --storage.path=/alertmanager "$@"
