#!/usr/bin/env bash
# `make agent-bundle SITE=norte` (scripts/agent-bundle.sh, with scripts/site.sh) against a
# stand-in `docker` that records what it is asked: the bundle holds what
# compose.agent.yaml mounts (asked of compose, not listed by hand), the site's own token
# and the NOC's CA, an .env naming the site and the ingress, run.sh, and images.tar saved
# from exactly the images compose names; a second bundle of the same site keeps its
# token; a second site gets another. `make e2e` then installs such bundles for real.
#   tests/stack/agent_bundle_test.sh COMPOSE_BIN
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
COMPOSE_BIN=${1:?usage: agent_bundle_test.sh COMPOSE_BIN}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/bin"
cat >"$dir/bin/docker" <<'STUB'
#!/bin/bash
echo "$*" >>"$STUB_LOG"
case "$1 $2" in
  "image inspect") exit 0 ;;
  "save -o") out=$3; shift 3; printf '%s\n' "$@" >"$out" ;;
  *) echo "stub docker: unexpected: $*" >&2; exit 1 ;;
esac
STUB
chmod +x "$dir/bin/docker"
fail() { echo "agent_bundle_test: $*" >&2; exit 1; }
export STUB_LOG=$dir/docker.log DOCKER=$dir/bin/docker COMPOSE=$COMPOSE_BIN VIGIA_SECRETS_DIR=$dir/secrets \
  VIGIA_DIST_DIR=$dir/dist VIGIA_IMAGE=vigia:test VIGIA_CENTRE_URL=https://noc.example:8443 \
  INGEST_HOSTNAMES=noc.example VIGIA_SITE_NO_RESTART=1

cd "$ROOT"
tarball=$(scripts/agent-bundle.sh norte 2>"$dir/err" | tail -n 1) || fail "agent-bundle failed: $(cat "$dir/err")"
[[ $tarball == "$dir/dist/vigia-agent-norte-"*.tar.gz ]] || fail "bundle at '$tarball'"
mkdir "$dir/site"
tar -C "$dir/site" -xzf "$tarball"
b=$dir/site/vigia-agent-norte
for f in compose.agent.yaml agent/vmagent.yml agent/run.sh ping/ping.yaml ping/targets.txt run.sh .env \
  secrets/site_token secrets/site_ca.crt images.tar; do
  [[ -e $b/$f ]] || fail "the bundle has no $f ($(cd "$b" && find . -type f | sort | tr '\n' ' '))"
done
# Nothing from the NOC but the site's own token and the CA's certificate.
[[ -z $(cd "$b" && find . -name '*.key' -o -name 'influxdb_token' -o -name '*.token') ]] || fail "the bundle carries NOC secrets"
cmp -s "$b/secrets/site_token" "$dir/secrets/sites/norte.token" || fail "secrets/site_token is not the site's token"
cmp -s "$b/secrets/site_ca.crt" "$dir/secrets/ingest/ca.crt" || fail "secrets/site_ca.crt is not the NOC's CA"
openssl verify -CAfile "$b/secrets/site_ca.crt" "$dir/secrets/ingest/server.crt" >/dev/null || fail "the CA did not sign the ingress's certificate"
grep -qx 'VIGIA_SITE=norte' "$b/.env" && grep -qx 'VIGIA_CENTRE_URL=https://noc.example:8443' "$b/.env" \
  && grep -qx 'VIGIA_IMAGE=vigia:test' "$b/.env" || fail ".env: $(cat "$b/.env")"
[[ $(sort "$b/images.tar" | tr '\n' ' ') == "victoriametrics/vmagent:v1.112.0 vigia:test " ]] \
  || fail "images saved: $(tr '\n' ' ' <"$b/images.tar")"
token=$(cat "$dir/secrets/sites/norte.token")
[[ $token =~ ^[0-9a-f]{32}$ ]] || fail "the site's token is not 32 random hex digits"
scripts/agent-bundle.sh norte >/dev/null 2>&1 || fail "second bundle of norte failed"
[[ $(cat "$dir/secrets/sites/norte.token") == "$token" ]] || fail "a second bundle changed the site's token"
scripts/agent-bundle.sh sur >/dev/null 2>&1 || fail "bundle of a second site failed"
[[ $(cat "$dir/secrets/sites/sur.token") != "$token" ]] || fail "two sites got the same token"
if scripts/agent-bundle.sh Norte >/dev/null 2>"$dir/err"; then fail "a bad site name was accepted"; fi
grep -q "site name 'Norte'" "$dir/err" || fail "bad site name: unclear message: $(cat "$dir/err")"
echo "agent_bundle_test: ok"
