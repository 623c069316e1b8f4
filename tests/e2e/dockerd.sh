#!/usr/bin/env bash
# Starts a Docker engine for the end-to-end test when none answers on the standard socket
# (the stack's vigia-host mounts /var/run/docker.sock, so the engine must be there):
#   tests/e2e/dockerd.sh start   prints "started" or "running" (someone else's engine)
#   tests/e2e/dockerd.sh stop    stops the engine only if `start` started it
# The engine is the one TESTING.md describes for these machines (no iptables), with
# overlay2 storage where it works and vfs where it does not.
# Its networks are in 198.19.0.0/16 (inside the benchmarking range 198.18.0.0/15, like the
# test's namespace hosts), and its images stay in .cache/e2e/docker between runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=$PWD/.cache/e2e
PIDFILE=/run/vigia-e2e-dockerd.pid
DOCKER=${DOCKER:-docker}

case ${1:-} in
  start)
    if "$DOCKER" info >/dev/null 2>&1; then
      echo running
      exit 0
    fi
    command -v dockerd >/dev/null || { echo "dockerd: not installed (Debian package docker.io)" >&2; exit 1; }
    [[ $(id -u) == 0 ]] || { echo "dockerd: the end-to-end test starts a Docker engine and needs root" >&2; exit 1; }
    mkdir -p "$CACHE/docker"
    # A socket left by an engine that died would make dockerd refuse to start.
    [[ -S /var/run/docker.sock ]] && rm -f /var/run/docker.sock
    # overlay2 where the data root's filesystem allows it (ext4 here: a layer costs only
    # what it changes); vfs otherwise, which copies the whole filesystem for every layer
    # (the Rust build stage alone then takes about 10 GB).
    for driver in overlay2 vfs; do
      nohup dockerd \
        --host unix:///var/run/docker.sock \
        --data-root "$CACHE/docker" \
        --exec-root /run/vigia-e2e-docker \
        --pidfile "$PIDFILE" \
        --storage-driver "$driver" \
        --iptables=false \
        --ip6tables=false \
        --bip 198.19.255.1/24 \
        --default-address-pool base=198.19.0.0/17,size=24 \
        >"$CACHE/dockerd.log" 2>&1 &
      pid=$!
      for _ in $(seq 120); do
        if "$DOCKER" info >/dev/null 2>&1; then
          echo started
          exit 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
      done
      echo "dockerd with $driver did not start; its log:" >&2
      tail -n 10 "$CACHE/dockerd.log" >&2
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    done
    exit 1
    ;;
  stop)
    [[ -s $PIDFILE ]] || exit 0
    pid=$(cat "$PIDFILE")
    kill -TERM "$pid" 2>/dev/null || exit 0
    for _ in $(seq 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL "$pid" 2>/dev/null || true
    # dockerd leaves its data root bind-mounted onto itself.
    umount -l "$CACHE/docker" 2>/dev/null || true
    ;;
  *)
    echo "usage: dockerd.sh start|stop" >&2
    exit 2
    ;;
esac
