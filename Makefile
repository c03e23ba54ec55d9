# cachekit's developer commands. `make test` is the test command (README, CI).
#
#   make test             every stage below, even after one fails; exits non-zero if any failed
#   make test-unit        vet + race tests of the root module (no servers needed)
#   make test-integration integration_test/: every backend against real servers (addresses from
#                         CACHEKIT_TEST_*, else Docker; skips what it can't have, fails under CI)
#   make test-otel        plugin/otel (its own module), built against this checkout's root module
#   make test-bench       one iteration of every benchmark (bench/); server benchmarks use the
#                         CACHEKIT_TEST_* (or CACHEKIT_BENCH_*) addresses
#   make test-images      build cachekit-test/redis:local and cachekit-test/memcached:local
#   make compose-up       Redis on 127.0.0.1:6379, memcached on 11211 and 11212, a Redis Cluster
#                         on 7000-7002 (local images where the official ones can't be pulled)
#   make compose-down     stop and remove all of them
#   make fmt-check        fail if gofmt would change any file, in any module

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

GO ?= go

# testcontainers' Ryuk reaper needs an image that can't always be pulled; the
# integration harness removes its own containers. Set it to false to use Ryuk.
TESTCONTAINERS_RYUK_DISABLED ?= true
export TESTCONTAINERS_RYUK_DISABLED

# go.work (the development workspace) holds all four modules. The root,
# integration_test/ and bench/ are tested with GOWORK=off, each against its own
# go.mod (the test modules reach the root through their replace); plugin/otel,
# which requires a released cachekit, is tested in a workspace of just the
# root and itself, so that it builds against this checkout with exactly the
# dependency versions a user of it gets (the full workspace would lift them to
# the test modules' versions).
NOWORK := GOWORK=off

# docker-compose (v1) or the docker compose plugin (v2), whichever is here.
COMPOSE ?= $(shell if command -v docker-compose >/dev/null 2>&1; then echo docker-compose; \
	elif docker compose version >/dev/null 2>&1; then echo "docker compose"; fi)
export COMPOSE

STAGES := test-unit test-integration test-otel test-bench

.PHONY: test $(STAGES) test-images compose-up compose-down compose-config fmt-check

test:
	@failed=(); \
	for stage in $(STAGES); do \
		echo "=== make $$stage"; \
		$(MAKE) --no-print-directory $$stage || failed+=("$$stage"); \
	done; \
	if (( $${#failed[@]} )); then echo "=== make test: FAILED: $${failed[*]}"; exit 1; fi; \
	echo "=== make test: all stages passed ($(STAGES))"

test-unit:
	$(NOWORK) $(GO) vet ./...
	$(NOWORK) $(GO) test -race -count=1 ./...

# go test without package arguments (local directory mode) shows the test
# binary's output even when it passes: the harness's summary of which servers
# ran and which were skipped.
test-integration:
	cd integration_test && $(NOWORK) $(GO) vet ./...
	cd integration_test && $(NOWORK) $(GO) test -race -count=1 -timeout=20m

test-otel:
	@gw="$$(mktemp -d "$${TMPDIR:-/tmp}/cachekit-otel-work.XXXXXX")"; \
	trap 'rm -rf "$$gw"' EXIT; \
	v="$$(awk '$$1 == "github.com/cachekit/cachekit" { print $$2 }' plugin/otel/go.mod)"; \
	[ -n "$$v" ] || { echo "plugin/otel/go.mod does not require github.com/cachekit/cachekit" >&2; exit 1; }; \
	printf 'go 1.25.0\n\nuse (\n\t%s\n\t%s\n)\n\nreplace github.com/cachekit/cachekit %s => %s\n' \
		"$(CURDIR)" "$(CURDIR)/plugin/otel" "$$v" "$(CURDIR)" >"$$gw/go.work"; \
	if [ -f go.work.sum ]; then cp go.work.sum "$$gw/go.work.sum"; fi; \
	cd plugin/otel; \
	set -x; \
	GOWORK="$$gw/go.work" $(GO) vet ./...; \
	GOWORK="$$gw/go.work" $(GO) test -race -count=1 ./...

test-bench:
	cd bench && $(NOWORK) $(GO) vet ./...
	cd bench && $(NOWORK) $(GO) test -run='^$$' -bench=. -benchtime=1x -timeout=20m

test-images:
	bash docker/build-test-images.sh

compose-config:
	@[ -n "$(COMPOSE)" ] || { echo "neither docker-compose nor 'docker compose' found" >&2; exit 1; }
	$(COMPOSE) config -q

compose-up: compose-config
	bash docker/compose-up.sh

compose-down: compose-config
	$(COMPOSE) --profile cluster down --remove-orphans

fmt-check:
	@out="$$(gofmt -l .)"; \
	if [ -n "$$out" ]; then \
		echo "gofmt would change these files (run gofmt -w):"; echo "$$out"; exit 1; \
	fi; \
	echo "gofmt: ok"
