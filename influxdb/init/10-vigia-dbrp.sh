#!/bin/bash
# Runs once, on InfluxDB's first boot, after the official image's setup has created the
# org, the bucket (with its retention) and the admin token from the secret.
#
# The exporters write with the v1 API (POST /write?db=vigia + "Authorization: Token") and
# Grafana reads with InfluxQL (/query?db=vigia): both name a database and a retention
# policy, which InfluxDB 2 resolves through a DBRP mapping to a bucket. This maps
# vigia/autogen onto the bucket as the default, explicitly (InfluxDB 2.4+ would also map a
# bucket named "vigia" virtually, but an explicit mapping survives renaming the bucket).
set -euo pipefail

db=${VIGIA_DATABASE:-vigia}
rp=${VIGIA_RETENTION_POLICY:-autogen}

if influx v1 dbrp list --org "$DOCKER_INFLUXDB_INIT_ORG" --db "$db" 2>/dev/null | grep -q "$DOCKER_INFLUXDB_INIT_BUCKET_ID"; then
  echo "vigia: DBRP mapping $db/$rp already exists"
  exit 0
fi
influx v1 dbrp create \
  --org "$DOCKER_INFLUXDB_INIT_ORG" \
  --bucket-id "$DOCKER_INFLUXDB_INIT_BUCKET_ID" \
  --db "$db" \
  --rp "$rp" \
  --default
echo "vigia: mapped database $db, retention policy $rp to bucket $DOCKER_INFLUXDB_INIT_BUCKET ($DOCKER_INFLUXDB_INIT_BUCKET_ID)"
