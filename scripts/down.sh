#!/usr/bin/env bash
# `make down`: stops the stack. Data (Prometheus, Alertmanager silences, Grafana,
# InfluxDB) stays in the named volumes; `docker compose down -v` would delete it.
set -euo pipefail
cd "$(dirname "$0")/.."
docker compose down
