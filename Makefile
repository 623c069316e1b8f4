# vigia: make up (runs the stack), make test (runs every check and test).
CARGO ?= cargo

.PHONY: test lint fmt-check clippy unit build release bench bench-ports

## test: formatting, clippy -D warnings, then every unit and integration test.
test: lint unit

lint: fmt-check clippy

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --workspace --release

## bench: every benchmark against its peer (long; not part of make test).
bench: bench-ports

## bench-ports: vigia-ports vs node_exporter tcpstat, psutil and ss at 20k and 100k connections.
bench-ports:
	CARGO=$(CARGO) bench/ports/run
