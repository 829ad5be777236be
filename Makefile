# Tern's build. `make help` lists the targets.
#
# Recipes run in bash with -e and pipefail, so a failing command in a pipeline fails the
# target instead of being masked by the command after it.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build
.DELETE_ON_ERROR:

GO ?= go
GOBIN_DIR := $(shell $(GO) env GOPATH)/bin

# staticcheck is pinned: a new release can add checks, and CI must not turn red on its own.
# v0.8.2 (2026.2.2) is the release that supports Go 1.26.
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(GOBIN_DIR)/staticcheck

# `make test` runs these targets in this order and stops at the first failure. Later work
# appends its steps (browser and docker end-to-end tests) with `TEST_STEPS += <target>`.
TEST_STEPS := fmt-check vet staticcheck go-test browser-test interop-test e2e

# Flags for `go test` in `make test`, for example GO_TEST_FLAGS='-run TestFoo -v'.
GO_TEST_FLAGS ?=

# How long `make fuzz` runs each fuzz target.
FUZZTIME ?= 10m

# Arguments for the benchmark tool: make bench BENCH_ARGS='...'.
BENCH_ARGS ?=

# The development cluster of `make up` keeps its data, logs and pid files here.
DATA_DIR := .data

# Go files under version control's view of the tree: no build output, no fuzz corpora.
GO_FILES = $(shell find . -name '*.go' -not -path './.git/*' -not -path './bin/*' \
	-not -path './$(DATA_DIR)/*' -not -path '*/testdata/*')

.PHONY: help build image test lint fmt-check vet staticcheck go-test browser-test interop-test e2e tools bench bench-latency bench-scale fuzz reliability \
	up down purge logs examples dev dev-down clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build static binaries of every ./apps/* into ./bin/, the examples into ./bin/examples/
	@mkdir -p bin/examples
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ ./apps/...
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/examples/ ./contrib/examples/...

test: ## gofmt check, go vet, staticcheck, go test -race, then any appended TEST_STEPS
	@for step in $(TEST_STEPS); do \
		echo "==> $$step"; \
		$(MAKE) --no-print-directory $$step || { echo "make test: step '$$step' failed" >&2; exit 1; }; \
	done

lint: fmt-check vet staticcheck ## gofmt check, go vet and staticcheck

fmt-check: ## fail, listing the files, if any Go file is not gofmt-formatted
	@files="$$(gofmt -l $(GO_FILES) </dev/null)"; \
	if [ -n "$$files" ]; then \
		echo "these files are not gofmt-formatted (run gofmt -w on them):" >&2; \
		echo "$$files" >&2; \
		exit 1; \
	fi

vet: ## go vet ./..., then again with the build tags of the browser, interop and e2e tests
	$(GO) vet ./...
	$(GO) vet -tags browser,interop,e2e ./...

staticcheck: tools ## staticcheck ./... (installs the pinned staticcheck if needed)
	$(STATICCHECK) ./...
	$(STATICCHECK) -tags browser,interop,e2e ./...

go-test: ## go test -race ./... (one package at a time: timing tests get the machine to themselves)
	$(GO) test -race -p 1 $(GO_TEST_FLAGS) ./...

# The browser tests drive the admin in headless Chromium (Debian's chromium package). Their
# screenshots go to a fresh folder, printed first; set SCREENSHOTS=<dir> to choose it.
browser-test: ## the admin's browser tests in headless Chromium, screenshots kept
	@dir="$${SCREENSHOTS:-$$(mktemp -d "$${TMPDIR:-/tmp}/tern-admin-screenshots-XXXXXX")}"; \
	echo "browser tests: screenshots in $$dir"; \
	TERN_SCREENSHOTS="$$dir" $(GO) test -race -tags browser -run '^TestBrowser' $(GO_TEST_FLAGS) ./admin

# The interop tests run Tern's admin over NSQ 1.3's own daemons, NSQ's nsqadmin over Tern's, and
# Tern's tools (to_nsq, nsq_tail, ...) against NSQ's nsqd and nsqlookupd, and go-nsq's own TLS tests
# against Tern's nsqd (on the default ports, which must be free),
# with NSQ built from the Go module proxy into .cache/ (contrib/nsq-reference.sh).
NSQ_REFERENCE := .cache/nsq-v1.3.0
interop-test: ## Tern's admin and tools over real NSQ 1.3, and NSQ's nsqadmin over Tern
	@contrib/nsq-reference.sh $(NSQ_REFERENCE)
	TERN_NSQ_BIN="$(CURDIR)/$(NSQ_REFERENCE)" $(GO) test -race -tags interop -run '^TestInterop' $(GO_TEST_FLAGS) ./admin ./internal/tools/interop ./nsqd

tools: ## install the pinned staticcheck unless it is already there
	@if ! "$(STATICCHECK)" -version 2>/dev/null | grep -qF '($(STATICCHECK_VERSION:v%=%))'; then \
		echo "installing staticcheck $(STATICCHECK_VERSION)"; \
		GOBIN="$(GOBIN_DIR)" $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION); \
	fi

bench: build ## build, then run the nsqbench load generator (BENCH_ARGS=...)
	@if [ ! -d bench/nsqbench ]; then \
		echo "make bench: bench/nsqbench does not exist yet; there is no benchmark tool to run" >&2; \
		exit 1; \
	fi
	$(GO) run ./bench/nsqbench $(BENCH_ARGS)

LATENCY_DURATION ?= 10s
# LATENCY_MODE=levels measures at 10, 50 and 90 % of each daemon's maximum rate instead.
LATENCY_MODE ?=
bench-latency: build ## publish-to-delivery latency of Tern's nsqd and NSQ's, side by side (bench/README.md)
	@contrib/nsq-reference.sh $(NSQ_REFERENCE)
	bench/latency.sh bin/nsqd $(NSQ_REFERENCE) $(LATENCY_DURATION) $(LATENCY_MODE)

# Arguments for the scale benchmark, e.g. SCALE_ARGS='--test connections --conns 2000'.
SCALE_ARGS ?=
bench-scale: build ## 10,000 connections, 10,000 topics, a stalled consumer (bench/README.md; SCALE_ARGS=...)
	$(GO) run ./bench/nsqscale $(SCALE_ARGS)

# `make reliability` keeps its log, the soak's plot (soak.svg) and figures (soak.txt) here.
RELIABILITY_OUT ?= .reliability

reliability: ## the long fault runs (20 kill -9s under load, a 10-minute soak with a kill a minute, disk full, corruption, lookupd cut off), in $(RELIABILITY_OUT)/
	@mkdir -p $(RELIABILITY_OUT)
	TERN_RELIABILITY=long TERN_RELIABILITY_OUT="$(abspath $(RELIABILITY_OUT))" \
		$(GO) test -count=1 -timeout 60m -v \
		-run '^(TestKillNineUnderLoad|TestSoak|TestDiskFull|TestLookupdCutOff|TestCorrupt.*)$$' ./nsqd \
		2>&1 | grep --line-buffered -v ' child: ' | tee $(RELIABILITY_OUT)/reliability.log
	@echo "make reliability: log, soak.svg and soak.txt in $(RELIABILITY_OUT)/"

fuzz: ## run every Fuzz* target in the repository for FUZZTIME each (default 10m; FUZZFLAGS=...)
	GO=$(GO) contrib/fuzz.sh $(FUZZTIME)

# The docker compose cluster (docker-compose.yml): two nsqlookupd, two nsqd and nsqadmin, in
# an image built FROM scratch out of ./bin. contrib/compose.sh picks `docker compose` or
# `docker-compose`, and says so plainly when no Docker engine answers.
image: build ## build the tern:dev image (FROM scratch, every binary of ./bin)
	docker build -t tern:dev .

up: build ## build, then start the compose cluster and wait until every daemon is healthy
	@contrib/compose.sh up

down: ## stop the compose cluster (nsqd's data stays in its volumes) and the make dev cluster
	@if docker info >/dev/null 2>&1; then contrib/compose.sh down; fi
	@contrib/devcluster.sh down

purge: ## stop the compose cluster and delete its data volumes
	@contrib/compose.sh purge

logs: ## follow the compose cluster's logs
	@contrib/compose.sh logs

examples: up ## the compose cluster plus the example publisher and workers (contrib/examples)
	@contrib/compose.sh examples

# Without Docker: nsqlookupd, nsqd and nsqadmin from ./bin on this host, in the background
# (contrib/devcluster.sh); data, logs and pid files go to ./.data.
dev: build ## run the cluster from ./bin on this host, without Docker
	@contrib/devcluster.sh up

dev-down: ## stop the make dev cluster with SIGTERM and wait for it to exit
	@contrib/devcluster.sh down

# The end-to-end test of the compose cluster on the local Docker engine (internal/e2e): up from
# a clean state, publish from the host, consume through the lookupds, the admin in headless
# Chromium, an nsqd stopped and started, and down leaving nothing behind. It runs under its own
# project name and ports, so a running `make up` cluster is left alone. Without a Docker engine
# it says it skipped and succeeds.
e2e: build ## the docker compose end-to-end test, when a Docker engine answers
	@if ! docker info >/dev/null 2>&1; then \
		echo "make e2e: SKIPPED: no Docker engine answers (docker info failed), so the compose cluster was not tested"; \
		exit 0; \
	fi; \
	$(GO) test -tags e2e -count=1 -timeout 10m -v $(GO_TEST_FLAGS) ./internal/e2e

clean: down ## stop the clusters, remove ./bin and ./.data
	rm -rf bin $(DATA_DIR)
