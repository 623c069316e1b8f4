#!/usr/bin/env bash
# Fetches newer upstream tools from Debian trixie into .cache/stack/ without touching the
# system, and prints nothing but errors.
#
#   scripts/fetch-tools.sh                   what `make validate` needs: Prometheus 2.53.3
#                                            (promtool), Alertmanager 0.28.1 (amtool),
#                                            snmp_exporter 0.28.0, VictoriaMetrics 1.112
#                                            (victoria-metrics, vmagent, vmalert, vmauth) and
#                                            Docker Compose v2 (the same versions as the
#                                            pinned images; `docker compose config` works
#                                            with no engine), typescript + @grafana/schema
#                                            from npm for the dashboard type check
#   scripts/fetch-tools.sh node-exporter     node_exporter 1.9 only (vigia-host's parity
#                                            test), as .cache/stack/root/usr/bin/prometheus-node-exporter
#
# Idempotent: a tool already in the cache is not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=.cache/stack
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
ROOT=$CACHE/root

need() { command -v "$1" >/dev/null || { echo "fetch-tools: '$1' is required ($2)" >&2; exit 1; }; }

# Downloads the named trixie packages and unpacks them under $ROOT (dpkg -x, not installed).
fetch_trixie() {
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
  # Two runs from two worktrees' tests may fetch at once: one at a time per cache.
  exec 9>"$CACHE/.fetch.lock"
  flock 9
  apt-get "${opts[@]}" update >/dev/null
  local pkg
  for pkg in "$@"; do
    rm -f "$apt/debs/${pkg}_"*.deb
    (cd "$apt/debs" && apt-get -o APT::Sandbox::User=root "${opts[@]}" download "$pkg" >/dev/null)
    dpkg -x "$(ls "$apt/debs/${pkg}_"*.deb | tail -n 1)" "$ROOT"
  done
  flock -u 9
}

compose_bin() {
  local c
  for c in "$ROOT/usr/libexec/docker/cli-plugins/docker-compose" "$ROOT/usr/bin/docker-compose"; do
    [[ -x $c ]] && { echo "$c"; return 0; }
  done
  return 0
}

fetch_stack_debs() {
  if [[ -x $ROOT/usr/bin/promtool && -x $ROOT/usr/bin/amtool && -n $(compose_bin) \
    && -x $ROOT/usr/bin/prometheus-snmp-exporter && -x $ROOT/usr/bin/vmagent ]]; then
    return 0
  fi
  fetch_trixie prometheus promtool prometheus-alertmanager docker-compose \
    prometheus-snmp-exporter victoria-metrics
}

fetch_node_exporter() {
  local bin=$ROOT/usr/bin/prometheus-node-exporter
  if [[ -x $bin ]] && "$bin" --version 2>&1 | grep -q 'version 1\.9\.'; then
    return 0
  fi
  fetch_trixie prometheus-node-exporter
  "$bin" --version 2>&1 | grep -q 'version 1\.9\.' || {
    echo "fetch-tools: trixie's prometheus-node-exporter is not 1.9: $("$bin" --version 2>&1 | head -n 1)" >&2
    exit 1
  }
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

case "${1:-stack}" in
  stack)
    fetch_stack_debs
    fetch_npm
    echo "fetch-tools: promtool, amtool, snmp_exporter, VictoriaMetrics, docker-compose and the npm packages are in $CACHE"
    ;;
  node-exporter)
    fetch_node_exporter
    ;;
  *)
    echo "fetch-tools: unknown tool set '$1' (stack, node-exporter)" >&2
    exit 2
    ;;
esac
