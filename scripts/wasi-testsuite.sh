#!/usr/bin/env bash
# Runs the official WASI test suite (WebAssembly/wasi-testsuite, branch prod/testsuite-base: 72
# prebuilt wasm32-wasip1 tests in C, Rust and AssemblyScript) as containers through ctr with this
# runtime on a private containerd, and prints each result beside the wazero CLI's. The suite is
# not part of the repository; get it once, for example:
#   git clone --branch prod/testsuite-base https://github.com/WebAssembly/wasi-testsuite
# and point WASI_TESTSUITE at the clone (a checkout of that branch, or any git directory that has
# the branch: it is then exported with git archive). See docs/WASI.md.
#   WASI_TESTSUITE=DIR [WASI_TESTSUITE_VERSION=v2.4.2] [WASI_TESTSUITE_RUN=substring]
#     [WASI_TESTSUITE_SHIM_DIR=DIR] scripts/wasi-testsuite.sh
# Prerequisites (done by `make wasi-testsuite`): scripts/install-deps.sh, make build. Root.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

SUITE=${WASI_TESTSUITE:-}
V=${WASI_TESTSUITE_VERSION:-v2.4.2}
# WASI_TESTSUITE_SHIM_DIR: a directory with another build of the shim and its runner (to compare).
SHIM_DIR=${WASI_TESTSUITE_SHIM_DIR:-$PWD/bin}
BRANCH=prod/testsuite-base

[ "$(id -u)" -eq 0 ] || { echo "wasi-testsuite: must run as root" >&2; exit 1; }
[ -n "$SUITE" ] || { echo "wasi-testsuite: set WASI_TESTSUITE to a clone of https://github.com/WebAssembly/wasi-testsuite (branch $BRANCH)" >&2; exit 2; }
[ -x "$SHIM_DIR/containerd-shim-wazero-v1" ] || { echo "wasi-testsuite: $SHIM_DIR/containerd-shim-wazero-v1 missing (make build)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/wasi-testsuite.XXXXXX)
cleanup() {
	local rc=$?
	set +e
	wz_cleanup "$TMP/containerd"
	wz_unmount_under "$TMP"
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -d "$SUITE/tests" ]; then
	DIR=$SUITE
elif git -C "$SUITE" rev-parse --verify -q "$BRANCH^{commit}" >/dev/null || git -C "$SUITE" rev-parse --verify -q "origin/$BRANCH^{commit}" >/dev/null; then
	ref=$BRANCH
	git -C "$SUITE" rev-parse --verify -q "$ref^{commit}" >/dev/null || ref=origin/$BRANCH
	DIR=$TMP/suite
	mkdir -p "$DIR"
	git -C "$SUITE" archive "$ref" tests expectations | tar -x -C "$DIR"
	echo "wasi-testsuite: $SUITE at $(git -C "$SUITE" rev-parse --short "$ref") ($ref)"
else
	echo "wasi-testsuite: $SUITE has neither tests/ nor a branch $BRANCH" >&2
	exit 1
fi

E=$TMP/containerd
wz_start_containerd "$E" "$V" "$SHIM_DIR"
mkdir -p "$E/fifo"
echo "wasi-testsuite: containerd $V, runtime io.containerd.wazero.v1, $("$SHIM_DIR/containerd-shim-wazero-v1" -version 2>/dev/null | grep -E '^ *(Version|wazero):' | tr -s ' ' | paste -sd ';')"
go run ./scripts/wasi-testsuite -suite "$DIR" -ctr "$(wz_bin "$V")/ctr" -address "$E/containerd.sock" \
	-fifo-dir "$E/fifo" -work "$TMP" -run "${WASI_TESTSUITE_RUN:-}"
