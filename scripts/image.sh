#!/usr/bin/env bash
# `make image`: builds the exporters' image from the Dockerfile, tagged vigia:<revision>,
# and saves it to dist/vigia-<revision>.tar for `docker load` on a host without sources.
#   VIGIA_IMAGE=<tag>   build and save under that tag instead
# Prints the tag on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
docker=${DOCKER:-docker}
revision=${VIGIA_REVISION:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
tag=${VIGIA_IMAGE:-vigia:$revision}
mkdir -p dist
if [[ ${VIGIA_IMAGE_REUSE:-0} == 1 ]] && "$docker" image inspect "$tag" >/dev/null 2>&1; then
  echo "make image: using $tag as it is" >&2
else
  "$docker" build ${VIGIA_BUILD_ARGS:-} --build-arg "VIGIA_REVISION=$revision" -t "$tag" . >&2
fi
"$docker" save -o "dist/vigia-$revision.tar" "$tag"
echo "make image: dist/vigia-$revision.tar ($tag; on another host: docker load -i vigia-$revision.tar)" >&2
echo "$tag"
