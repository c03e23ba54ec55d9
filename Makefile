# cachekit's developer commands. `make test` is the test command (README, CI).
#
#   make test             vet + race tests: root module, integration_test/, bench/ (if present)
#   make test-unit        the root module only (no servers needed)
#   make test-integration integration_test/ only (Docker, or CACHEKIT_TEST_* addresses)
#   make test-images      build cachekit-test/redis:local and cachekit-test/memcached:local
#   make compose-up       Redis on 127.0.0.1:6379, memcached on 11211 and 11212
#                         (COMPOSE_PROFILES=cluster adds a Redis Cluster on 7000-7002)
#   make compose-down     stop and remove all of them
#   make fmt-check        fail if gofmt would change any file, in any module

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

GO ?= go

# testcontainers' Ryuk reaper needs an image that can't always be pulled; the
# integration harness removes its own containers. Set it to false to use Ryuk.
TESTCONTAINERS_RYUK_DISABLED ?= true
export TESTCONTAINERS_RYUK_DISABLED

# docker-compose (v1) or the docker compose plugin (v2), whichever is here.
COMPOSE ?= $(shell if command -v docker-compose >/dev/null 2>&1; then echo docker-compose; \
	elif docker compose version >/dev/null 2>&1; then echo "docker compose"; fi)

.PHONY: test test-unit test-integration test-otel test-bench test-images compose-up compose-down compose-config fmt-check

test: test-unit test-integration test-otel test-bench

test-unit:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

test-integration:
	cd integration_test && $(GO) vet ./...
	cd integration_test && $(GO) test -race -count=1 ./...

# plugin/otel is a nested module (OpenTelemetry stays out of the root go.mod).
# Its real-server tests use the CACHEKIT_TEST_* addresses when set.
test-otel:
	cd plugin/otel && $(GO) vet ./...
	cd plugin/otel && $(GO) test -race -count=1 ./...

# bench/ is a nested module that may not exist yet.
test-bench:
	@if [ -f bench/go.mod ]; then \
		set -x; \
		cd bench && $(GO) vet ./... && $(GO) test -run='^$$' -bench=. -benchtime=1x ./...; \
	else \
		echo "bench/go.mod not found: skipping the benchmarks"; \
	fi

test-images:
	bash docker/build-test-images.sh

compose-config:
	@[ -n "$(COMPOSE)" ] || { echo "neither docker-compose nor 'docker compose' found" >&2; exit 1; }
	$(COMPOSE) config -q

compose-up: compose-config
	$(COMPOSE) up -d

compose-down: compose-config
	$(COMPOSE) --profile cluster down --remove-orphans

fmt-check:
	@out="$$(gofmt -l .)"; \
	if [ -n "$$out" ]; then \
		echo "gofmt would change these files (run gofmt -w):"; echo "$$out"; exit 1; \
	fi; \
	echo "gofmt: ok"
