#!/bin/sh
# Entrypoint of the vmauth service (compose.central.yaml): writes vmauth's configuration
# from the per-site token files, then starts vmauth with TLS.
#
# Each file secrets/sites/<site>.token (made by `make site SITE=<site>`) is one site's
# credential, sent by its vmagent and exporters as `Authorization: Bearer|Token <token>`.
# A site may only write: /api/v1/write goes to the metrics store, /write and
# /api/v2/write go to InfluxDB with the centre's own token put in their place (a site
# never holds it), into the centre's database and bucket whatever the request names:
# vmauth puts url_prefix's arguments first and InfluxDB reads the first of each, so a
# site's `db=other&db=vigia` still lands in vigia (vmauth's src_query_args would let it
# through to `other`). Anything else answers 400, and a missing or unknown token 401.
# vmauth has no token-file option, so the tokens are written into a file on a tmpfs.
set -eu

sites=${VIGIA_SITES_DIR:-/run/vigia-sites}
secrets=${VIGIA_SECRETS_DIR:-/run/secrets}
run_dir=${VIGIA_VMAUTH_RUN_DIR:-/run/vigia}
config=$run_dir/auth.yml
write_url=${VIGIA_METRICS_WRITE_URL:-http://victoriametrics:8428}
influxdb_url=${INFLUXDB_URL:-http://influxdb:8086}
# compose.yaml's InfluxDB 2 setup (DOCKER_INFLUXDB_INIT_ORG, _BUCKET); the 1.x /write
# path maps the bucket's name as its database.
influxdb_org=${INFLUXDB_ORG:-vigia}
influxdb_bucket=${INFLUXDB_BUCKET:-vigia}

fail() {
  echo "vmauth config: $*" >&2
  exit 2
}

for name in "$influxdb_org" "$influxdb_bucket"; do
  case $name in
    '' | *[!A-Za-z0-9_-]*) fail "INFLUXDB_ORG and INFLUXDB_BUCKET are letters, digits, '-' and '_' ('$name')" ;;
  esac
done
[ -r "$secrets/influxdb_token" ] || fail "$secrets/influxdb_token is missing or unreadable"
influx_token=$(tr -d ' \r\n' <"$secrets/influxdb_token")
[ -n "$influx_token" ] || fail "secrets/influxdb_token is empty"

mkdir -p "$run_dir"
umask 077
count=0
seen=" "
{
  echo "# Written by vmauth/render.sh at container start from secrets/sites/; do not edit."
  echo "users:"
  for file in "$sites"/*.token; do
    [ -e "$file" ] || continue
    site=$(basename "$file" .token)
    case $site in
      *[!a-z0-9-]* | -* | '') fail "secrets/sites/$site.token: a site name is lower-case letters, digits and '-'" ;;
    esac
    [ -r "$file" ] || fail "secrets/sites/$site.token is not readable by uid $(id -u) (make it 0644; secrets/ stays 0700)"
    token=$(tr -d ' \r\n' <"$file")
    case $token in
      '') fail "secrets/sites/$site.token is empty" ;;
      *[!A-Za-z0-9_-]*) fail "secrets/sites/$site.token: a token is letters, digits, '-' and '_' (make site writes one)" ;;
    esac
    case $seen in *" $token "*) fail "secrets/sites/$site.token holds the same token as another site" ;; esac
    seen="$seen$token "
    count=$((count + 1))
    cat <<YAML
  - name: "$site"
    bearer_token: "$token"
    url_map:
      - src_paths: ["/api/v1/write"]
        url_prefix: "$write_url"
      - src_paths: ["/write"]
        url_prefix: "${influxdb_url%/}/?db=$influxdb_bucket"
        headers: ["Authorization: Token $influx_token"]
      - src_paths: ["/api/v2/write"]
        url_prefix: "${influxdb_url%/}/?org=$influxdb_org&bucket=$influxdb_bucket"
        headers: ["Authorization: Token $influx_token"]
YAML
  done
} >"$config.tmp"
# No site yet: vmauth refuses an empty user list, so one user whose random token nobody
# knows stands in, and every request is answered 401.
if [ "$count" = 0 ]; then
  echo "vmauth config: no site credential in secrets/sites/ yet (make site SITE=<name>): every request is refused" >&2
  nobody=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
  cat >>"$config.tmp" <<YAML
  - name: "no-site-yet"
    bearer_token: "$nobody"
    url_prefix: "http://127.0.0.1:1"
YAML
fi
mv "$config.tmp" "$config"
echo "vmauth config: $count site(s) allowed to write" >&2

if [ "${VIGIA_VMAUTH_RENDER_ONLY:-}" = 1 ]; then
  exit 0
fi
# :8427 is the published TLS ingress; :8426, plain HTTP and not published, is for the
# healthcheck (vmauth's own -httpInternalListenAddr would take the ingress's TLS too, and
# the images have no TLS client). vmauth answers its metrics, pprof, flags and reload
# endpoints on every listener, so each is closed with a key nobody holds: the ingress
# shows the internet nothing but the write paths and /health.
closed=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
exec /vmauth-prod -auth.config="$config" \
  -httpListenAddr=:8427,:8426 -tls=true,false \
  -tlsCertFile="$secrets/ingest_tls_cert" -tlsKeyFile="$secrets/ingest_tls_key" \
  -metricsAuthKey="$closed" -pprofAuthKey="$closed" -flagsAuthKey="$closed" -reloadAuthKey="$closed" "$@"
