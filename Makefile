# containerd-shim-wazero-v1 — see README.md for the two commands that matter: `make demo` and `make test`.
GO       ?= go
BIN      := bin/containerd-shim-wazero-v1
# The runner binary: the shim runs it for each container when it was built together with the shim
# (same build stamp, engine.BuildStamp; see RATIONALE.md), else the shim's own binary.
RUNNER   := bin/containerd-shim-wazero-v1-runner
# The shim's server: BIN is a lean entry (start and delete, package shimentry) that runs it for the rest.
SERVER   := bin/containerd-shim-wazero-v1-server
LDFLAGS   = -s -w -X github.com/wazero-shim/containerd-shim-wazero-v1/pkg/engine.BuildStamp=$(shell scripts/buildstamp.sh $(GO))
# TOOLS holds the containerd daemons, ctr and runc shims the tests and the demo run against
# (built from the Go module proxy by scripts/install-deps.sh). Kept outside the checkout so it survives clean clones.
TOOLS    ?= /var/tmp/wazero-shim-tools
export TOOLS
# Runners apply the security context to every thread (AllThreadsSyscall), which Go refuses in
# binaries linked with cgo: the shim, the runner and the unit-test binaries that act as runners
# are all built without it.
export CGO_ENABLED := 0

.PHONY: all build testdata deps unit fuzz-short fuzz integration k8s test demo bench soak install vet fmt clean wasi-testsuite

all: build testdata

build:
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='$(LDFLAGS)' -o bin/ ./cmd/containerd-shim-wazero-v1 ./cmd/containerd-shim-wazero-v1-server ./cmd/containerd-shim-wazero-v1-runner

testdata:
	$(MAKE) -C testdata

deps:
	scripts/install-deps.sh

vet:
	$(GO) vet ./...
	cd bench && $(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

unit: fuzz-short
	$(GO) test -count=1 ./pkg/... ./cmd/... ./deploy/... ./integration/testenv/
	cd bench && $(GO) test -count=1 ./...

# fuzz-short: every fuzz target (parsers of specs, WAZERO_* values, images, CGI responses, the
# installer's TOML scanner) for a few seconds each; fuzz: a longer run (FUZZTIME per target).
FUZZTIME ?= 60s
fuzz-short:
	GO=$(GO) scripts/fuzz.sh 5s

fuzz:
	GO=$(GO) scripts/fuzz.sh $(FUZZTIME)

# -p 1: the packages' daemons, clusters and leak checks must not overlap (integration/k8s included).
integration: build testdata
	$(GO) test -p 1 -count=1 -v -timeout 60m ./integration/...

# k8s: only the Kubernetes suite (a real node per containerd version, driven by kubectl; root).
k8s: deps build testdata
	$(GO) test -count=1 -v -timeout 30m ./integration/k8s/

# test: everything CI runs. Needs root (real containerd, mounts, cgroups).
test: deps vet unit integration

demo: deps build testdata
	scripts/demo.sh

# soak: the leak accounting test (integration/leak_test.go) at 1000 sequential and 100 concurrent
# runs per daemon, instead of CI's handful (root; about an hour).
soak: deps build testdata
	CI=true WZ_SOAK_SEQUENTIAL=1000 WZ_SOAK_CONCURRENT=100 $(GO) test -count=1 -v -timeout 3h -run 'TestLeaksAfterManyRuns' ./integration/...

# bench: wazero shim vs runc on a private containerd, results in docs/BENCHMARKS.md (root; < 15 min).
bench: deps build testdata
	scripts/bench.sh

# wasi-testsuite: the official WASI test suite through ctr with this runtime, beside the wazero
# CLI's results (root; a few minutes). WASI_TESTSUITE is a clone of
# https://github.com/WebAssembly/wasi-testsuite (branch prod/testsuite-base); docs/WASI.md.
wasi-testsuite: deps build
	WASI_TESTSUITE="$(WASI_TESTSUITE)" scripts/wasi-testsuite.sh

install: build
	install -D -m 0755 $(RUNNER) $(DESTDIR)/usr/local/bin/containerd-shim-wazero-v1-runner
	install -D -m 0755 $(SERVER) $(DESTDIR)/usr/local/bin/containerd-shim-wazero-v1-server
	install -D -m 0755 $(BIN) $(DESTDIR)/usr/local/bin/containerd-shim-wazero-v1

clean:
	rm -rf bin
	$(MAKE) -C testdata clean
