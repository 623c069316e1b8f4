#!/bin/sh
# InfluxDB 1.6.7 for the end-to-end test: the stack's database exists before the
# container reports healthy (InfluxDB 2's setup creates its bucket the same way), and
# usage reporting is off (no traffic leaves the test machine).
set -eu
export INFLUXDB_REPORTING_DISABLED=true
export INFLUXDB_META_DIR=/var/lib/influxdb/meta
export INFLUXDB_DATA_DIR=/var/lib/influxdb/data
export INFLUXDB_DATA_WAL_DIR=/var/lib/influxdb/wal
export INFLUXDB_HTTP_BIND_ADDRESS=:8086
export INFLUXDB_BIND_ADDRESS=127.0.0.1:8088
influxd &
pid=$!
trap 'kill -TERM "$pid"' TERM INT
until influx -execute "CREATE DATABASE ${VIGIA_DATABASE:-vigia}" >/dev/null 2>&1; do
  kill -0 "$pid" 2>/dev/null || exit 1
  sleep 0.5
done
# wait returns early when the trap runs: keep waiting until influxd has flushed and exited.
status=0
while kill -0 "$pid" 2>/dev/null; do
  wait "$pid" || status=$?
done
exit "$status"
