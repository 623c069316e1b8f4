#!/usr/bin/env bash
# `make up` (scripts/up.sh) on a first and a second run, in a scratch copy of the
# repository with a stand-in `docker` on PATH that records what it is asked: the files an
# operator gets (.env, secrets/), what is printed, and the compose command.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/repo/scripts" "$dir/bin"
cp "$ROOT/scripts/up.sh" "$dir/repo/scripts/"
cat >"$dir/bin/docker" <<'STUB'
#!/bin/bash
echo "$*" >>"$STUB_LOG"
case "$*" in
  "compose version") echo "Docker Compose version v2" ;;
  "network inspect bridge"*) echo 198.19.255.1 ;;
  "compose up"*) ;;
  *) echo "stub docker: unexpected: $*" >&2; exit 1 ;;
esac
STUB
chmod +x "$dir/bin/docker"
python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$dir/docker.sock"
chgrp 4242 "$dir/docker.sock"
export STUB_LOG=$dir/docker.log PATH="$dir/bin:$PATH" VIGIA_DOCKER_SOCKET=$dir/docker.sock
fail() { echo "up_test: $*" >&2; exit 1; }

out1=$(cd "$dir/repo" && scripts/up.sh 2>&1) || fail "first run failed: $out1"
cd "$dir/repo"
[[ $(stat -c %a secrets) == 700 ]] || fail "secrets/ is $(stat -c %a secrets), not 700"
values=()
for name in grafana_admin_password influxdb_admin_password influxdb_token; do
  v=$(cat "secrets/$name")
  [[ $v =~ ^[0-9a-f]{32}$ ]] || fail "secrets/$name is not 32 random hex digits: '$v'"
  values+=("$v")
done
[[ $(printf '%s\n' "${values[@]}" | sort -u | wc -l) == 3 ]] || fail "the three secrets are not all different"
for name in telegram_bot_token discord_webhook_url smtp_password snmp_community snmp_v3_auth_password snmp_v3_priv_password; do
  [[ -f secrets/$name && ! -s secrets/$name ]] || fail "secrets/$name should exist and be empty (channel off)"
done
grep -qx 'DOCKER_GID=4242' .env || fail ".env has no DOCKER_GID=4242: $(grep DOCKER_GID .env)"
grep -qx 'EXPORTER_LISTEN_ADDRESS=198.19.255.1' .env || fail ".env does not bind the exporters to the bridge"
[[ $(grep -c "${values[0]}" <<<"$out1") == 1 ]] || fail "the Grafana password is not printed exactly once: $out1"
grep -q '^compose up -d --build --wait' "$STUB_LOG" || fail "no 'docker compose up -d --build --wait': $(cat "$STUB_LOG")"

out2=$(scripts/up.sh 2>&1) || fail "second run failed: $out2"
[[ $(cat secrets/grafana_admin_password) == "${values[0]}" ]] || fail "second run changed the Grafana password"
! grep -q "${values[0]}" <<<"$out2" || fail "second run printed the password again"

rm .env
chgrp 0 "$dir/docker.sock"
if out3=$(scripts/up.sh 2>&1); then fail "a root-group Docker socket was accepted"; fi
grep -q 'group 0' <<<"$out3" || fail "root-group socket: unclear message: $out3"
echo "up_test: ok"
