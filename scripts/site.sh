#!/usr/bin/env bash
# `make site SITE=<name>`: gives a remote site its credential at the NOC (central mode,
# compose.central.yaml), and makes the ingress's TLS authority and certificate the first
# time:
#   secrets/ingest/ca.crt, ca.key       the NOC's own authority (every site bundle carries ca.crt)
#   secrets/ingest/server.crt, .key     vmauth's certificate, for INGEST_HOSTNAMES
#   secrets/sites/<name>.token          the site's token: write-only, its own, revocable
# Nothing that exists is made again. Revoking a site: delete its token file and restart
# vmauth. A running vmauth is restarted so that it knows the new site.
#   scripts/site.sh NAME            (VIGIA_SECRETS_DIR moves secrets/, for tests)
#   scripts/site.sh --pki-only      only the authority and certificate (make central)
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
  echo "make site: $*" >&2
  exit 2
}

site=${1:-}
[[ -n $site ]] || die "usage: make site SITE=<name> (lower-case letters, digits and '-')"
secrets=${VIGIA_SECRETS_DIR:-secrets}
if [[ $site != --pki-only ]]; then
  [[ $site =~ ^[a-z0-9][a-z0-9-]*$ ]] || die "site name '$site': lower-case letters, digits and '-', not starting with '-'"
fi
command -v openssl >/dev/null || die "openssl is not installed"

# .env's INGEST_HOSTNAMES when set: the names (or addresses) sites use to reach the NOC.
if [[ -z ${INGEST_HOSTNAMES:-} && -f .env ]]; then
  INGEST_HOSTNAMES=$(sed -n 's/^INGEST_HOSTNAMES=//p' .env | tail -n 1)
fi
names=${INGEST_HOSTNAMES:-$(hostname -f 2>/dev/null || hostname)}

umask 077
mkdir -p "$secrets/ingest" "$secrets/sites"
chmod 700 "$secrets"
pki=$secrets/ingest
if [[ ! -s $pki/ca.key || ! -s $pki/ca.crt ]]; then
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 3650 -subj "/CN=vigia NOC ingress CA" \
    -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  echo "make site: made the NOC's authority ($pki/ca.crt)"
fi
if [[ ! -s $pki/server.key || ! -s $pki/server.crt ]]; then
  san=""
  IFS=, read -ra list <<<"$names"
  for n in "${list[@]}"; do
    n=${n// /}
    [[ -n $n ]] || continue
    if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then san+="${san:+,}IP:$n"; else san+="${san:+,}DNS:$n"; fi
  done
  [[ -n $san ]] || die "INGEST_HOSTNAMES names no host"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$pki/server.key" -out "$pki/server.csr" -subj "/CN=${list[0]// /}" 2>/dev/null
  printf 'basicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$san" >"$pki/server.ext"
  openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -out "$pki/server.crt" -days 825 -extfile "$pki/server.ext" 2>/dev/null
  rm -f "$pki/server.csr" "$pki/server.ext"
  echo "make site: made the ingress certificate for $san ($pki/server.crt)"
fi
# vmauth (root of its container, no capability) and the bundle read these: 0644 inside a
# 0700 directory, like the rest of secrets/. The authority's key stays 0600.
chmod 755 "$pki" "$secrets/sites"
chmod 644 "$pki/ca.crt" "$pki/server.crt" "$pki/server.key"

[[ $site == --pki-only ]] && exit 0

token=$secrets/sites/$site.token
if [[ ! -s $token ]]; then
  # 32 hex digits (128 bits) from the kernel's CSPRNG; od exits by itself (no SIGPIPE).
  od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$token"
  chmod 644 "$token"
  echo "make site: made the credential of site '$site' ($token)"
else
  echo "make site: site '$site' already has a credential ($token)"
fi
if [[ ${VIGIA_SITE_NO_RESTART:-0} != 1 ]] && command -v docker >/dev/null \
  && [[ -n $(docker compose ps -q vmauth 2>/dev/null) ]]; then
  docker compose restart vmauth >/dev/null && echo "make site: vmauth restarted: site '$site' may write"
fi
