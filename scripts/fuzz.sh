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
		for attempt in 1 2; do
			if out=$($GO test -run '^$' -fuzz "^$target\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1); then
				echo "$out"
				break
			fi
			echo "$out"
			# Go's fuzzer sometimes fails a run with "context deadline exceeded" when -fuzztime ends
			# while a worker is busy (a loaded machine), having found nothing: no input written.
			# That is tried once more; a found input never is.
			if [ "$attempt" = 1 ] && echo "$out" | grep -q 'context deadline exceeded' &&
				! echo "$out" | grep -q 'Failing input written to'; then
				echo "== $pkg $target: the fuzzer timed out without an input; once more"
				continue
			fi
			echo "FAIL: $pkg $target" >&2
			status=1
			break
		done
	done
done
exit $status
