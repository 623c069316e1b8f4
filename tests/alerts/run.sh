#!/usr/bin/env bash
# `make alerts`: the alerting path end to end on network namespace hosts (tests/alerts/
# topology.py says what it checks). Needs root, iproute2, util-linux (unshare) and Debian's
# python3-aiosmtpd (the SMTP server); fetches promtool/Prometheus/Alertmanager into
# .cache/stack/ and builds vigia-ping first. About 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ $(id -u) == 0 ]] || { echo "make alerts: needs root (network namespaces, raw ICMP)" >&2; exit 1; }
# Debian's Python, where python3-aiosmtpd and python3-yaml are installed.
py=/usr/bin/python3
[[ -x $py ]] || py=python3
"$py" -c 'import aiosmtpd, yaml' 2>/dev/null \
  || { echo "make alerts: $py lacks aiosmtpd or yaml (Debian packages python3-aiosmtpd, python3-yaml)" >&2; exit 1; }
scripts/fetch-tools.sh >/dev/null
${CARGO:-cargo} build -q -p vigia-ping
exec "$py" tests/alerts/topology.py
