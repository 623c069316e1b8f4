# vigia: make up (runs the stack), make test (runs every check and test). `make` alone
# lists the targets: the whole test suite takes half an hour, needs root and starts a
# Docker engine, so nothing runs without being asked for by name.
CARGO ?= cargo

.PHONY: help up down central site image agent-bundle bench-central validate snmp-netns alerts e2e test lint fmt-check clippy unit build release bench bench-ports bench-ping bench-probe bench-host bench-capture fuzz
.DEFAULT_GOAL := help

## help: this list (what `make` with no target prints).
help:
	@echo "vigia: make <target>"
	@awk 'sub(/^## /, "") { i = index($$0, ": "); printf "  %-14s %s\n", substr($$0, 1, i - 1), substr($$0, i + 2) }' $(firstword $(MAKEFILE_LIST))

## test: formatting, clippy -D warnings, every unit and integration test, the stack's offline validation, SNMP against real agents, the alerting path on namespace hosts, then the stack end to end under Docker.
test: lint unit validate snmp-netns alerts e2e

## lint: fmt-check and clippy.
lint: fmt-check clippy

## fmt-check: cargo fmt --check over the workspace.
fmt-check:
	$(CARGO) fmt --all -- --check

## clippy: cargo clippy on every target, warnings are errors.
clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## unit: every unit and integration test of the exporters (some need root: see README.md).
unit:
	$(CARGO) test --workspace --no-fail-fast

## build: debug build of every exporter.
build:
	$(CARGO) build --workspace

## release: release build (target/release/vigia-*).
release:
	$(CARGO) build --workspace --release

## bench: every benchmark against its peer (long; not part of make test).
bench: bench-ports bench-ping bench-probe bench-capture bench-host bench-central

## bench-ports: vigia-ports vs node_exporter tcpstat, psutil and ss at 20k and 100k connections.
bench-ports:
	CARGO=$(CARGO) bench/ports/run

## bench-ping: vigia-ping vs smokeping_prober and the seed's `ping -c 5`, 1,000 loopback targets at 1 s.
bench-ping:
	CARGO=$(CARGO) bench/ping/run

## bench-probe: vigia-ping's http and tcp probes vs blackbox_exporter 0.26 driven by Prometheus, 1,000 + 1,000 loopback targets at 10 s.
bench-probe:
	flock /tmp/vigia-bench.lock env CARGO=$(CARGO) bench/probe/run

## up: the stack (creates .env and secrets/ on first run, waits for health, prints the URLs).
up:
	scripts/up.sh

## central: the stack as the NOC of many sites (compose.central.yaml: VictoriaMetrics, vmalert, the sites' TLS ingress).
central:
	scripts/central.sh

## site: a remote site's credential at the NOC (SITE=<name>), and the ingress's TLS authority the first time.
site:
	scripts/site.sh "$(SITE)"

## image: the exporters' image, saved to dist/vigia-<rev>.tar for docker load.
image:
	scripts/image.sh

## agent-bundle: everything a site's host runs (SITE=<name>): dist/vigia-agent-<site>-<rev>.tar.gz, started there with ./run.sh.
agent-bundle:
	scripts/agent-bundle.sh "$(SITE)"

## down: stops the stack; data stays in the named volumes.
down:
	scripts/down.sh

## validate: offline checks of compose files, Prometheus rules and tests, Alertmanager, dashboards.
validate:
	tests/stack/validate.sh

## snmp-netns: snmpd in network namespaces, the real snmp_exporter 0.28 and Prometheus 2.53 with vigia's SNMP config and rules: link down/up, reboot, v2c, v3, wrong credentials (root; about 30 s).
snmp-netns:
	tests/snmp/netns_test.py

## alerts: vigia-ping, Prometheus with vigia's rules and Alertmanager with its rendered config on namespace hosts: a router with 30 devices behind it, leaves, a storm; messages counted at a real SMTP server and Telegram/Discord stand-ins (root; about 2 minutes).
alerts:
	CARGO=$(CARGO) tests/alerts/run.sh

## e2e: the whole stack under a real Docker engine, faults injected, alerts delivered; beside it a NOC in central mode with two sites from their bundles (root; about 20 minutes).
e2e:
	tests/e2e/run.sh

## bench-host: vigia-host vs node_exporter (default collectors): scrape latency, CPU per scrape, peak RSS.
bench-host:
	CARGO=$(CARGO) bench/host/run

## bench-central: samples/s, CPU, RSS and bytes per sample on disk of VictoriaMetrics vs Prometheus' remote-write receiver, N simulated agents.
bench-central:
	bench/central/run

## bench-capture: vigia-capture's offline pipeline vs tcpdump -r, tshark conv,ip and the seed's Scapy loop, 5M packets.
bench-capture:
	CARGO=$(CARGO) bench/capture/run

## fuzz: vigia-capture's packet parser and window features under cargo-fuzz (nightly) for FUZZ_SECONDS.
FUZZ_SECONDS ?= 60
fuzz:
	@command -v cargo-fuzz >/dev/null || { echo "fuzz: cargo-fuzz is missing: cargo install cargo-fuzz (and a nightly toolchain)" >&2; exit 1; }
	cd exporters/capture/fuzz && $(CARGO) +nightly fuzz run parse_and_features -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048
