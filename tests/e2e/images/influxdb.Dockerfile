# Test-only stand-in for InfluxDB 2 (no image or package of it here): Debian's InfluxDB
# 1.6.7, which speaks the v1 /write and /query API the exporters and Grafana use.
FROM debian:bookworm-slim
COPY influxd influx /usr/bin/
COPY influxdb-entrypoint.sh /usr/local/bin/influxdb-entrypoint
RUN groupadd --system influxdb && useradd --system --gid influxdb --home-dir /var/lib/influxdb influxdb \
    && install -d -o influxdb -g influxdb /var/lib/influxdb
USER influxdb
EXPOSE 8086
VOLUME ["/var/lib/influxdb"]
ENTRYPOINT ["/usr/local/bin/influxdb-entrypoint"]
