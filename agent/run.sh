#!/bin/sh
# The one command on a site's host, inside an unpacked agent bundle (make agent-bundle):
# loads the images, completes .env on the first run (this host's name and the Docker
# socket's group), then starts the exporters and vmagent and waits until they are healthy.
# Run it again after changing .env. Needs Docker with the Compose v2 plugin; no sources,
# no build, no registry.
set -eu
cd "$(dirname "$0")"
docker=${DOCKER:-docker}

die() {
  echo "vigia agent: $*" >&2
  exit 1
}

command -v "$docker" >/dev/null || die "docker is not installed"
[ -f images.tar ] || die "images.tar is missing: unpack the whole bundle"
echo "vigia agent: loading images"
"$docker" load -i images.tar >/dev/null

if ! grep -q '^HOST_NAME=' .env; then
  echo "HOST_NAME=$(hostname)" >>.env
fi
if ! grep -q '^DOCKER_GID=' .env; then
  socket=/var/run/docker.sock
  gid=$(stat -c %g "$socket" 2>/dev/null) || die "no $socket: vigia-host needs the Docker socket"
  [ "$gid" != 0 ] || die "$socket belongs to group 0; give it a group of its own or write DOCKER_GID in .env"
  echo "DOCKER_GID=$gid" >>.env
fi

# COMPOSE_FILE and COMPOSE_PROJECT_NAME from the environment win, as for any compose command.
set -- up -d --no-build --wait --wait-timeout "${VIGIA_UP_TIMEOUT:-180}"
if [ -n "${COMPOSE:-}" ]; then
  $COMPOSE "$@"
else
  "$docker" compose "$@"
fi
echo "vigia agent: site $(sed -n 's/^VIGIA_SITE=//p' .env) is pushing to $(sed -n 's/^VIGIA_CENTRE_URL=//p' .env)"
