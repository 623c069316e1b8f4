# Stand-in for prom/prometheus:v2.53.3, from Debian trixie's build of the same version,
# laid out like the official image: binaries in /bin, config in /etc/prometheus, data in
# /prometheus owned by nobody, busybox for the shell and wget the healthchecks use.
FROM debian:bookworm-slim
COPY prometheus promtool busybox /bin/
RUN ln -s /bin/busybox /bin/wget \
    && mkdir -p /etc/prometheus /prometheus \
    && chown -R nobody:nogroup /etc/prometheus /prometheus
USER nobody
EXPOSE 9090
VOLUME ["/prometheus"]
WORKDIR /prometheus
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
