#!/usr/bin/env bash
# `make agent-bundle SITE=<name>`: everything a site's host needs, in one file:
#   dist/vigia-agent-<site>-<rev>.tar.gz
#     images.tar            the exporters' image and vmagent's (docker load)
#     compose.agent.yaml    and every file it mounts (agent/, ping/), found by asking
#                           compose itself (`config --format json`), not from a list
#     secrets/site_token    the site's credential (make site: made here if missing)
#     secrets/site_ca.crt   the NOC's authority, to check the ingress's certificate
#     .env                  VIGIA_SITE, VIGIA_CENTRE_URL, VIGIA_IMAGE
#     run.sh                the one command on the site: ./run.sh
#   VIGIA_CENTRE_URL   the ingress as sites reach it (default https://<this host>:<INGEST_PORT>)
#   VIGIA_IMAGE        an exporters' image already built (default: make image builds vigia:<rev>)
#   VIGIA_SECRETS_DIR  secrets/ elsewhere (tests)
#   VIGIA_DIST_DIR     where the bundle goes (default dist/)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
docker=${DOCKER:-docker}
compose=${COMPOSE:-$docker compose}

die() {
  echo "make agent-bundle: $*" >&2
  exit 2
}

site=${1:-}
[[ -n $site ]] || die "usage: make agent-bundle SITE=<name>"
secrets=${VIGIA_SECRETS_DIR:-secrets}
VIGIA_SITE_NO_RESTART=${VIGIA_SITE_NO_RESTART:-0} scripts/site.sh "$site" >&2
env_value() { if [[ -f .env ]]; then sed -n "s/^$1=//p" .env | tail -n 1; fi; }
port=${INGEST_PORT:-$(env_value INGEST_PORT)}
centre=${VIGIA_CENTRE_URL:-https://$(hostname -f 2>/dev/null || hostname):${port:-8443}}
[[ $centre == https://* ]] || die "VIGIA_CENTRE_URL must be https:// (sites push over TLS), not '$centre'"

revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
image=${VIGIA_IMAGE:-}
if [[ -z $image ]]; then
  image=$(scripts/image.sh | tail -n 1)
fi
"$docker" image inspect "$image" >/dev/null 2>&1 || die "no image $image in the engine"

name=vigia-agent-$site
dist=${VIGIA_DIST_DIR:-$ROOT/dist}
out=$dist/$name
rm -rf "$out"
mkdir -p "$out/secrets"
cp "$secrets/sites/$site.token" "$out/secrets/site_token"
cp "$secrets/ingest/ca.crt" "$out/secrets/site_ca.crt"
chmod 700 "$out/secrets"
chmod 644 "$out/secrets/"*
cat >"$out/.env" <<ENV
# vigia agent of site $site (written by make agent-bundle at the NOC; run.sh adds
# HOST_NAME and DOCKER_GID on its first run).
VIGIA_SITE=$site
VIGIA_CENTRE_URL=$centre
VIGIA_IMAGE=$image
# COMPOSE_PROFILES=ping   # this site pings its own devices (edit ping/targets.txt)
ENV

# What compose.agent.yaml needs, asked of compose itself with every profile on.
probe_env=$(mktemp)
trap 'rm -f "$probe_env"' EXIT
printf 'VIGIA_SITE=%s\nVIGIA_CENTRE_URL=%s\nVIGIA_IMAGE=%s\nHOST_NAME=probe\nDOCKER_GID=1\n' "$site" "$centre" "$image" >"$probe_env"
rendered=$($compose --project-directory "$ROOT" --env-file "$probe_env" -f compose.agent.yaml --profile '*' config --format json)
images=$(python3 -c 'import json,sys; print(" ".join(sorted({s["image"] for s in json.load(sys.stdin)["services"].values()})))' <<<"$rendered")
files=$(python3 -c '
import json, os, sys
root = sys.argv[1]
cfg = json.load(sys.stdin)
paths = {"compose.agent.yaml"}
for svc in cfg["services"].values():
    for m in svc.get("volumes", []):
        src = m.get("source", "")
        if m.get("type") == "bind" and src.startswith(root + "/"):
            paths.add(os.path.relpath(src, root))
secret_dir = os.path.join(root, "secrets")
for s in cfg.get("secrets", {}).values():
    if not s.get("file", "").startswith(secret_dir + "/"):
        paths.add(os.path.relpath(s["file"], root))
print("\n".join(sorted(paths)))' "$ROOT" <<<"$rendered")
for f in $files; do
  [[ -e $f ]] || die "compose.agent.yaml mounts $f, which is not in this checkout"
  mkdir -p "$out/$(dirname "$f")"
  cp -a "$f" "$out/$f"
done
cp agent/run.sh "$out/run.sh"
echo "make agent-bundle: saving $images" >&2
# shellcheck disable=SC2086
"$docker" save -o "$out/images.tar" $images
tarball=$dist/$name-$revision.tar.gz
# gzip -1: the images are most of it, and compress little better at higher levels.
tar -C "$dist" --use-compress-program="gzip -1" -cf "$tarball" "$name"
echo "make agent-bundle: $tarball" >&2
echo "  on the site's host: tar xzf $(basename "$tarball") && cd $name && ./run.sh" >&2
echo "$tarball"
