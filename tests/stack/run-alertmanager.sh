#!/usr/bin/env bash
# Runs the Alertmanager binary fetched into .cache/stack/ (Debian trixie's 0.28.1, the
# pinned image's version) with the given arguments, for tests on this machine:
#   tests/stack/run-alertmanager.sh --config.file=... --web.listen-address=127.0.0.1:PORT ...
# Debian's build reads its default notification templates from
# /usr/share/prometheus/alertmanager/ (upstream's binary embeds them), which is not on
# this machine. Rather than write into /usr/share, the binary runs in a mount namespace
# of its own whose /usr/share is an overlay holding those two files: nothing outside the
# process sees them. Needs root (unshare, mount).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STACK=$ROOT/.cache/stack/root
[[ -x $STACK/usr/bin/prometheus-alertmanager ]] || { echo "run-alertmanager: run scripts/fetch-tools.sh first" >&2; exit 1; }
layer=$(mktemp -d /tmp/vigia-am-share.XXXXXX)
mkdir -p "$layer/upper/prometheus/alertmanager" "$layer/work"
cp "$STACK"/usr/share/prometheus/alertmanager/*.tmpl "$layer/upper/prometheus/alertmanager/"
# The layer is removed when Alertmanager ends (the namespace, and the mount, with it).
trap 'rm -rf "$layer"' EXIT
unshare --mount --propagation private -- sh -c '
  mount -t overlay overlay -o "lowerdir=/usr/share,upperdir=$1/upper,workdir=$1/work" /usr/share || exit 1
  shift
  exec "$@"' sh "$layer" "$STACK/usr/bin/prometheus-alertmanager" "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; rm -rf "$layer"' TERM INT
wait "$child"
