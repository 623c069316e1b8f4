# Stand-in for prom/alertmanager:v0.28.1, from Debian trixie's build of the same version,
# laid out like the official image (busybox based there too: /bin/sh and wget).
FROM debian:bookworm-slim
COPY alertmanager amtool busybox /bin/
# Debian's build reads its default notification templates from files (upstream's binary
# embeds them).
COPY default.tmpl email.tmpl /usr/share/prometheus/alertmanager/
RUN ln -sf /bin/busybox /bin/wget \
    && mkdir -p /etc/alertmanager /alertmanager \
    && chown -R nobody:nogroup /etc/alertmanager /alertmanager
USER nobody
EXPOSE 9093
VOLUME ["/alertmanager"]
WORKDIR /alertmanager
ENTRYPOINT ["/bin/alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]
