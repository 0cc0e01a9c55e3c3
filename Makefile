# containerd-shim-wazero-v1 — see README.md for the two commands that matter: `make demo` and `make test`.
GO       ?= go
BIN      := bin/containerd-shim-wazero-v1
# TOOLS holds the containerd daemons, ctr and runc shims the tests and the demo run against
# (built from the Go module proxy by scripts/install-deps.sh). Kept outside the checkout so it survives clean clones.
TOOLS    ?= /var/tmp/wazero-shim-tools
export TOOLS

.PHONY: all build testdata deps unit integration test demo bench install vet fmt clean

all: build testdata

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN) ./cmd/containerd-shim-wazero-v1

testdata:
	$(MAKE) -C testdata

deps:
	scripts/install-deps.sh

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

unit:
	$(GO) test -count=1 ./pkg/... ./cmd/... ./deploy/...

integration: build testdata
	$(GO) test -count=1 -v -timeout 45m ./integration/...

# test: everything CI runs. Needs root (real containerd, mounts, cgroups).
test: deps vet unit integration

demo: deps build testdata
	scripts/demo.sh

# bench: wazero shim vs runc on a private containerd, results in docs/BENCHMARKS.md (root; < 15 min).
bench: deps build testdata
	scripts/bench.sh

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)/usr/local/bin/containerd-shim-wazero-v1

clean:
	rm -rf bin
	$(MAKE) -C testdata clean
