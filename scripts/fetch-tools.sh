#!/usr/bin/env bash
# Fetches the tools `make validate` needs into .cache/stack/ without touching the system:
# Prometheus 2.53.3 (promtool), Alertmanager 0.28.1 (amtool), snmp_exporter 0.28.0,
# VictoriaMetrics 1.112 (victoria-metrics, vmagent, vmalert, vmauth) and Docker Compose v2
# from Debian trixie (the same versions as the pinned images, and `docker compose config`
# works with no engine), and typescript + @grafana/schema from npm for the dashboard type
# check.
# Idempotent: a tool already in the cache is not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=.cache/stack
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)

need() { command -v "$1" >/dev/null || { echo "fetch-tools: '$1' is required ($2)" >&2; exit 1; }; }

fetch_debs() {
  local root=$CACHE/root
  if [[ -x $root/usr/bin/promtool && -x $root/usr/bin/amtool && -n $(compose_bin) \
    && -x $root/usr/bin/prometheus-snmp-exporter && -x $root/usr/bin/vmagent ]]; then
    return 0
  fi
  need apt-get "Debian's apt"
  need dpkg "Debian's dpkg"
  # The mirror is whatever this machine already uses: read from its own sources file, so
  # no host name is written anywhere in the repository.
  local system_sources=/etc/apt/sources.list.d/debian.sources uri=""
  if [[ -f $system_sources ]]; then
    uri=$(awk '/^URIs:/ {print $2; exit}' "$system_sources")
  fi
  if [[ -z $uri && -f /etc/apt/sources.list ]]; then
    uri=$(awk '/^deb / {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
  fi
  [[ -n $uri ]] || { echo "fetch-tools: no Debian mirror found in the system's apt sources" >&2; exit 1; }
  local apt=$CACHE/apt
  mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$apt/debs"
  printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s trixie main\n' "$uri" >"$apt/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache::Archives=$apt/archives" -q)
  apt-get "${opts[@]}" update >/dev/null
  (cd "$apt/debs" && apt-get "${opts[@]}" download prometheus promtool prometheus-alertmanager docker-compose \
    prometheus-snmp-exporter victoria-metrics >/dev/null)
  for deb in "$apt"/debs/*.deb; do
    dpkg -x "$deb" "$root"
  done
}

compose_bin() {
  local c
  for c in "$CACHE/root/usr/libexec/docker/cli-plugins/docker-compose" "$CACHE/root/usr/bin/docker-compose"; do
    [[ -x $c ]] && { echo "$c"; return 0; }
  done
  return 0
}

fetch_npm() {
  local dir=$CACHE/npm
  if [[ -f $dir/node_modules/typescript/bin/tsc && -d $dir/node_modules/@grafana/schema ]]; then
    return 0
  fi
  need npm "Debian package npm"
  mkdir -p "$dir"
  [[ -f $dir/package.json ]] || echo '{"private": true}' >"$dir/package.json"
  (cd "$dir" && npm install --silent --no-audit --no-fund typescript@5.6.3 @grafana/schema@11.3.0 >/dev/null)
}

fetch_debs
fetch_npm
echo "fetch-tools: promtool, amtool, snmp_exporter, docker-compose and the npm packages are in $CACHE"
