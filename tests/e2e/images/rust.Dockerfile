# Stand-in for the official rust:<version>-bookworm image (no registry here): the local
# Debian base, a C toolchain, and the machine's own Rust toolchain laid out as the
# official image lays it out (RUSTUP_HOME=/usr/local/rustup, CARGO_HOME=/usr/local/cargo).
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev pkg-config ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY toolchain /usr/local/rustup/toolchains/stable-x86_64-unknown-linux-gnu
# The package registries present certificates from a local authority that is in the build
# machine's bundle only; cargo reads this file instead of the image's own roots.
COPY ca-bundle.crt /usr/local/share/vigia-e2e/ca-bundle.crt
RUN mkdir -p /usr/local/cargo/bin \
    && for tool in cargo rustc rustdoc; do \
         ln -s /usr/local/rustup/toolchains/stable-x86_64-unknown-linux-gnu/bin/$tool /usr/local/cargo/bin/$tool; \
       done
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    CARGO_HTTP_CAINFO=/usr/local/share/vigia-e2e/ca-bundle.crt \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
