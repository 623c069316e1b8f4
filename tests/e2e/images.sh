#!/usr/bin/env bash
# Makes every image the end-to-end test needs on an engine with no registry (TESTING.md):
#   debian:bookworm-slim     debootstrap --variant=minbase bookworm, imported
#   rust:<RUST_VERSION>-bookworm  that base + gcc + this machine's own Rust toolchain
#   prom/prometheus, prom/alertmanager, prom/snmp-exporter, victoriametrics/{victoria-metrics,
#                            vmagent,vmalert,vmauth}  stand-ins from Debian trixie's builds
#                            of the pinned versions, laid out like the official images
#   vigia-e2e/influxdb:1.6.7 Debian's InfluxDB 1.6.7 (test-only stand-in for InfluxDB 2)
#   vigia-e2e/tools          aiosmtpd (SMTP) and the Telegram/Discord receiver
# then builds vigia's own image with the project's Dockerfile. Downloads and the base root
# are cached in .cache/e2e/; an image already in the engine is not made again (except
# vigia's, whose build the engine's layer cache makes cheap when nothing changed).
#   tests/e2e/images.sh VIGIA_IMAGE_TAG
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
TAG=${1:?usage: images.sh VIGIA_IMAGE_TAG}
CACHE=$ROOT/.cache/e2e
mkdir -p "$CACHE"
DOCKER=${DOCKER:-docker}
log() { printf '%s images: %s\n' "$(date +%H:%M:%S)" "$*"; }
have_image() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

scripts/fetch-tools.sh >/dev/null
STACK_ROOT=$ROOT/.cache/stack/root

# Debian packages of this machine's release (the system's apt lists), unpacked.
debs=$CACHE/debs
mkdir -p "$debs"
for pkg in busybox-static influxdb influxdb-client; do
  if ! compgen -G "$debs/${pkg}_*.deb" >/dev/null; then
    log "downloading $pkg"
    (cd "$debs" && apt-get -o APT::Sandbox::User=root download -q "$pkg" >/dev/null)
  fi
done
pkgroot=$CACHE/pkgroot
if [[ ! -x $pkgroot/usr/bin/influxd || ! -x $pkgroot/usr/bin/influx || ! -x $pkgroot/bin/busybox ]]; then
  rm -rf "$pkgroot"
  for deb in "$debs"/*.deb; do dpkg -x "$deb" "$pkgroot"; done
fi

# The mirror this machine already uses, read from its own apt sources (no host name is
# written into the repository).
mirror() {
  local f=/etc/apt/sources.list.d/debian.sources uri=""
  [[ -f $f ]] && uri=$(awk '/^URIs:/ {print $2; exit}' "$f")
  if [[ -z $uri && -f /etc/apt/sources.list ]]; then
    uri=$(awk '/^deb / {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
  fi
  [[ -n $uri ]] || { echo "images: no Debian mirror in the system's apt sources" >&2; exit 1; }
  echo "$uri"
}

if ! have_image debian:bookworm-slim; then
  base_tar=$CACHE/bookworm-minbase.tar
  if [[ ! -s $base_tar ]]; then
    log "debootstrap bookworm (minbase)"
    dir=$(mktemp -d "$CACHE/debootstrap.XXXXXX")
    debootstrap --variant=minbase bookworm "$dir" "$(mirror)" >"$CACHE/debootstrap.log" 2>&1 \
      || { tail -n 20 "$CACHE/debootstrap.log" >&2; exit 1; }
    # The mirror may be a dated snapshot whose Release files are past their Valid-Until.
    printf 'Acquire::Check-Valid-Until "false";\n' >"$dir/etc/apt/apt.conf.d/99vigia-e2e-snapshot"
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    # mktemp made the root 0700, and tar keeps that: nobody but root could run anything.
    chmod 755 "$dir"
    tar -C "$dir" -cf "$base_tar.tmp" .
    mv "$base_tar.tmp" "$base_tar"
    rm -rf "$dir"
  fi
  log "importing debian:bookworm-slim"
  "$DOCKER" import "$base_tar" debian:bookworm-slim >/dev/null
fi

# Images made from the base are made again when the base changed.
base_id=$("$DOCKER" image inspect -f '{{.Id}}' debian:bookworm-slim)

rust_version=$(awk -F= '/^ARG RUST_VERSION=/ {print $2; exit}' Dockerfile)
rust_image=rust:${rust_version}-bookworm
rust_inputs=$(cat tests/e2e/images/rust.Dockerfile <(echo "$base_id" "$(rustc --version)") | sha256sum | cut -c1-16)
if [[ $("$DOCKER" image inspect -f '{{ index .Config.Labels "vigia.e2e.inputs" }}' "$rust_image" 2>/dev/null) != "$rust_inputs" ]]; then
  toolchain=$(rustc --print sysroot)
  case $(rustc --version) in
    "rustc $rust_version"*) ;;
    *) echo "images: the Dockerfile wants Rust $rust_version, this machine has $(rustc --version)" >&2; exit 1 ;;
  esac
  ctx=$(mktemp -d "$CACHE/rust-ctx.XXXXXX")
  log "making $rust_image from $(rustc --version)"
  mkdir "$ctx/toolchain"
  tar -C "$toolchain" --exclude=./share/doc -cf - . | tar -C "$ctx/toolchain" -xf -
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-bundle.crt"
  "$DOCKER" build -q --network host --label "vigia.e2e.inputs=$rust_inputs" -t "$rust_image" \
    -f tests/e2e/images/rust.Dockerfile "$ctx" >/dev/null
  rm -rf "$ctx"
fi

# standin IMAGE DOCKERFILE FILE...: builds IMAGE from DOCKERFILE with FILEs as its context,
# again whenever one of them changed (their digest is the image's label).
standin() {
  local image=$1 dockerfile=$2
  shift 2
  local digest
  digest=$(cat "$dockerfile" "$@" <(echo "$base_id") | sha256sum | cut -c1-16)
  [[ $("$DOCKER" image inspect -f '{{ index .Config.Labels "vigia.e2e.inputs" }}' "$image" 2>/dev/null) == "$digest" ]] && return 0
  log "making $image"
  local ctx
  ctx=$(mktemp -d "$CACHE/ctx.XXXXXX")
  cp "$@" "$ctx/"
  "$DOCKER" build -q --network host --label "vigia.e2e.inputs=$digest" -t "$image" -f "$dockerfile" "$ctx" >/dev/null
  rm -rf "$ctx"
}
prom_image=$(grep -E '^\s+image: prom/prometheus:' compose.yaml | awk '{print $2}')
am_image=$(grep -E '^\s+image: prom/alertmanager:' compose.yaml | awk '{print $2}')
snmp_image=$(grep -E '^\s+image: prom/snmp-exporter:' compose.yaml | awk '{print $2}')
[[ -n $prom_image && -n $am_image && -n $snmp_image ]] \
  || { echo "images: compose.yaml names no prom/prometheus, prom/alertmanager or prom/snmp-exporter image" >&2; exit 1; }
prom_version=$("$STACK_ROOT/usr/bin/prometheus" --version 2>&1 | awk 'NR == 1 {print $3}')
am_version=$("$STACK_ROOT/usr/bin/prometheus-alertmanager" --version 2>&1 | awk 'NR == 1 {print $3}')
[[ v${prom_version%%+*} == "${prom_image#*:}" ]] || { echo "images: $prom_image pinned, trixie has Prometheus $prom_version" >&2; exit 1; }
[[ v${am_version%%+*} == "${am_image#*:}" ]] || { echo "images: $am_image pinned, trixie has Alertmanager $am_version" >&2; exit 1; }
snmp_version=$("$STACK_ROOT/usr/bin/prometheus-snmp-exporter" --version 2>&1 | awk 'NR == 1 {print $3}')
[[ v$snmp_version == "${snmp_image#*:}" ]] || { echo "images: $snmp_image pinned, trixie has snmp_exporter $snmp_version" >&2; exit 1; }
unpacked=$(mktemp -d "$CACHE/bin.XXXXXX")
cp "$STACK_ROOT/usr/bin/prometheus" "$STACK_ROOT/usr/bin/promtool" "$STACK_ROOT/usr/bin/amtool" "$pkgroot/bin/busybox" "$unpacked/"
cp "$STACK_ROOT/usr/bin/prometheus-alertmanager" "$unpacked/alertmanager"
cp "$STACK_ROOT/usr/bin/prometheus-snmp-exporter" "$unpacked/snmp_exporter"
standin "$prom_image" tests/e2e/images/prometheus.Dockerfile "$unpacked/prometheus" "$unpacked/promtool" "$unpacked/busybox"
standin "$am_image" tests/e2e/images/alertmanager.Dockerfile "$unpacked/alertmanager" "$unpacked/amtool" "$unpacked/busybox" \
  "$STACK_ROOT/usr/share/prometheus/alertmanager/default.tmpl" "$STACK_ROOT/usr/share/prometheus/alertmanager/email.tmpl"
standin "$snmp_image" tests/e2e/images/snmp-exporter.Dockerfile "$unpacked/snmp_exporter" "$unpacked/busybox"
rm -rf "$unpacked"
# VictoriaMetrics (compose.central.yaml, compose.agent.yaml): one stand-in per pinned
# image, from trixie's victoria-metrics package of the same version.
# (Debian's build prints no version: it is the package's.)
vm_deb=$(compgen -G "$ROOT/.cache/stack/apt/debs/victoria-metrics_*.deb" | head -n 1)
vm_version=v$(dpkg-deb -f "$vm_deb" Version | sed 's/[+~-].*//')
for bin in victoria-metrics vmagent vmalert vmauth; do
  image=$(grep -hE "^\s+image: victoriametrics/$bin:" compose.central.yaml compose.agent.yaml | awk '{print $2}' | sort -u)
  [[ $(wc -w <<<"$image") == 1 ]] || { echo "images: expected one pinned victoriametrics/$bin image, found '$image'" >&2; exit 1; }
  [[ ${image#*:} == "$vm_version" ]] || { echo "images: $image pinned, trixie has VictoriaMetrics $vm_version" >&2; exit 1; }
  unpacked=$(mktemp -d "$CACHE/bin.XXXXXX")
  cp "$STACK_ROOT/usr/bin/$bin" "$unpacked/$bin-prod"
  cp "$pkgroot/bin/busybox" "$unpacked/"
  standin "$image" "tests/e2e/images/$bin.Dockerfile" "$unpacked/$bin-prod" "$unpacked/busybox"
  rm -rf "$unpacked"
done
standin vigia-e2e/influxdb:1.6.7 tests/e2e/images/influxdb.Dockerfile \
  "$pkgroot/usr/bin/influxd" "$pkgroot/usr/bin/influx" tests/e2e/standins/influxdb-entrypoint.sh
standin vigia-e2e/tools:1 tests/e2e/images/tools.Dockerfile \
  tests/e2e/standins/smtp_sink.py tests/e2e/standins/receiver.py

if [[ ${VIGIA_E2E_REUSE_IMAGE:-0} == 1 ]] && have_image "$TAG"; then
  log "reusing $TAG as it is (VIGIA_E2E_REUSE_IMAGE=1)"
  exit 0
fi
log "building $TAG with the project's Dockerfile"
start=$(date +%s)
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
"$DOCKER" build --network host --build-arg "VIGIA_REVISION=$revision" -t "$TAG" . >"$CACHE/vigia-build.log" 2>&1 \
  || { tail -n 40 "$CACHE/vigia-build.log" >&2; exit 1; }
log "built $TAG in $(($(date +%s) - start)) s"
