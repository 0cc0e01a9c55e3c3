#!/bin/sh
# scripts/fuzz.sh [FUZZTIME]: run every Go fuzz target of the repository for FUZZTIME each
# (default 5s; `make fuzz` runs them for 60s). go test -fuzz takes one target of one package at
# a time, so they run one after the other. A failure leaves its input under the package's
# testdata/fuzz/FuzzX/: fix the bug and commit the input, which then runs as a regression case
# in every plain `go test`.
set -eu
cd "$(dirname "$0")/.."
FUZZTIME=${1:-${FUZZTIME:-5s}}
GO=${GO:-go}
export CGO_ENABLED=0
status=0
for pkg in ./pkg/oci ./pkg/engine ./cmd/wazero-shim-installer; do
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$pkg"/*_test.go | sed 's/^func //' | sort -u); do
		echo "== $pkg $target ($FUZZTIME)"
		if ! $GO test -run '^$' -fuzz "^$target\$" -fuzztime "$FUZZTIME" "$pkg"; then
			echo "FAIL: $pkg $target" >&2
			status=1
		fi
	done
done
exit $status
