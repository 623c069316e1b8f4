# Stand-in for prom/snmp-exporter:v0.28.0, from Debian trixie's build of the same version,
# laid out like the official image: the binary at /bin/snmp_exporter, its config directory
# /etc/snmp_exporter, busybox as /bin/sh and wget (the official image is busybox based), and
# no USER: like upstream's it runs as root unless told otherwise (compose.yaml does).
FROM debian:bookworm-slim
COPY snmp_exporter busybox /bin/
RUN ln -sf /bin/busybox /bin/wget \
    && ln -sf /bin/busybox /bin/sh \
    && mkdir -p /etc/snmp_exporter
EXPOSE 9116
ENTRYPOINT ["/bin/snmp_exporter"]
CMD ["--config.file=/etc/snmp_exporter/snmp.yml"]
