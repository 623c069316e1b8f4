#!/usr/bin/env bash
# `make e2e`: the stack under a real Docker engine (needs root, Debian's docker.io and
# debootstrap; about 20 minutes on 2 cores, most of it waiting for the alert's timers).
#   1. a Docker engine: the running one, or one started here (tests/e2e/dockerd.sh)
#   2. the images: local base images, stand-ins, vigia's from the Dockerfile (images.sh)
#   3. the stack and the checks (e2e.py), which print PASS/FAIL lines and a timing table
# Everything downloaded or built is kept in .cache/e2e/ for the next run.
set -euo pipefail
cd "$(dirname "$0")/../.."
# The engine here is Debian's 20.10; its own client speaks its API and builds with the
# classic builder, which `docker build --network host` needs.
if [[ -x /usr/bin/docker ]]; then
  export DOCKER=/usr/bin/docker
else
  export DOCKER=${DOCKER:-docker}
fi
export DOCKER_BUILDKIT=0
export VIGIA_E2E_IMAGE=vigia:e2e

[[ $(id -u) == 0 ]] || { echo "make e2e: needs root (a Docker engine, network namespaces)" >&2; exit 1; }
for tool in dockerd debootstrap ip nmap python3; do
  command -v "$tool" >/dev/null || { echo "make e2e: '$tool' is missing (see .ci/run for the packages)" >&2; exit 1; }
done

engine=$(tests/e2e/dockerd.sh start)
if [[ $engine == started ]]; then
  trap 'tests/e2e/dockerd.sh stop' EXIT
fi
start=$(date +%s)
tests/e2e/images.sh "$VIGIA_E2E_IMAGE"
echo "$(date +%H:%M:%S) e2e: images ready in $(($(date +%s) - start)) s"
python3 tests/e2e/e2e.py
