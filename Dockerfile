# One image with the four vigia exporters; compose.yaml runs one container per exporter
# with its own command, user and capabilities.
#
#   docker build -t vigia:dev --build-arg VIGIA_REVISION=$(git rev-parse --short HEAD) .
#
# Build stage: the Rust toolchain on Debian bookworm, with the libpcap headers
# vigia-capture links against.
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpcap-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY exporters exporters
# The context has no .git: the revision in vigia_build_info comes from this argument
# (exporters/kit/build.rs reads it), "unknown" when not given.
ARG VIGIA_REVISION=unknown
ENV VIGIA_REVISION=$VIGIA_REVISION
# Every binary of the workspace; only the exporters (vigia-*) go into the image.
RUN cargo build --release --locked --workspace --bins \
    && mkdir /out \
    && find target/release -maxdepth 1 -type f -perm -u+x -name 'vigia-*' -exec cp {} /out/ \;

# Runtime: slim Debian with libpcap and the CA certificates (the InfluxDB writer's HTTP
# client loads the system's roots when it starts, even for an http:// URL, and refuses to
# start without them).
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpcap0.8 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid, so that host-side ownership of volumes is predictable.
RUN groupadd --system --gid 10001 vigia \
    && useradd --system --uid 10001 --gid vigia --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin vigia \
    && install -d -o vigia -g vigia -m 0750 /var/lib/vigia
COPY --from=build /out/ /usr/local/bin/
# Healthcheck without curl or wget in the image: bash's /dev/tcp speaks enough HTTP.
COPY scripts/healthcheck /usr/local/bin/vigia-healthcheck
USER 10001:10001
WORKDIR /var/lib/vigia
# Each service sets its command (vigia-ports, vigia-ping, vigia-host, vigia-capture).
CMD ["vigia-ping"]
