# Test-only services: a real SMTP server (aiosmtpd, Debian's python3-aiosmtpd) in place of
# Mailpit, and the HTTP receiver standing in for Telegram's and Discord's APIs.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-aiosmtpd \
    && rm -rf /var/lib/apt/lists/*
COPY smtp_sink.py receiver.py /opt/vigia-e2e/
USER 65534:65534
