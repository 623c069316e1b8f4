#!/usr/bin/env bash
# `make central`: the stack as the NOC of many sites (compose.central.yaml on top of
# compose.yaml): COMPOSE_FILE into .env so that every later `docker compose` uses both,
# the ingress's TLS authority and certificate, then `make up`.
set -euo pipefail
cd "$(dirname "$0")/.."
export COMPOSE_FILE=compose.yaml:compose.central.yaml
scripts/site.sh --pki-only
scripts/up.sh
if ! grep -q '^COMPOSE_FILE=' .env; then
  {
    echo "# Central mode (make central): VictoriaMetrics, vmalert, the sites' ingress."
    echo "COMPOSE_FILE=$COMPOSE_FILE"
  } >>.env
fi
echo "  Sites' ingress https://$(hostname -f 2>/dev/null || hostname):${INGEST_PORT:-8443}  (add one: make agent-bundle SITE=<name>)"
