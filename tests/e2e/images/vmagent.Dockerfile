# Stand-in for victoriametrics/vmagent:v1.112.0, from Debian trixie's build of the same
# version, laid out like the official image: the binary at /vmagent-prod as its
# entrypoint, busybox for /bin/sh and the wget its healthcheck uses, running as the
# image's default user (root: the official image has no other).
FROM debian:bookworm-slim
COPY vmagent-prod /
COPY busybox /bin/
RUN ln -sf /bin/busybox /bin/wget
EXPOSE 8429
ENTRYPOINT ["/vmagent-prod"]
