#!/usr/bin/env bash
# Benchmarks: the wazero shim against a runc baseline on one private containerd v2.4.2, interleaved,
# results written to docs/BENCHMARKS.md (see that file for what each benchmark measures).
#
# Prerequisites (done by `make bench`): scripts/install-deps.sh, make build, make testdata. Run as root.
# Everything lives under one temp dir (daemon, sockets, a private copy of the shim, its compilation
# cache) and is removed on exit; only the wazero CLI is installed, once, into $TOOLS/bin.
#
# Settings (environment; defaults keep the whole run well under 15 minutes on 2 cores):
#   B1_ROUNDS=15 B1_COLD_ROUNDS=8 B2_N=500 B2_CONCURRENCY=4 B2_ROUNDS=5 B3_SIZES=1,10,100 B3_ROUNDS=3
#   B4_WORK=48 B4_ROUNDS=5 BENCH_ONLY=B1,B2,B3,B4 BENCH_OUT=docs/BENCHMARKS.md BENCH_TIMEOUT=840
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

VERSION=v2.4.2
WAZERO_VERSION=v1.12.0
GO=${GO:-go}
OUT=${BENCH_OUT:-docs/BENCHMARKS.md}
SHIM=bin/containerd-shim-wazero-v1
IMAGES=testdata/build/images
CPUBENCH=testdata/build/cpubench.wasm
WASMIMG=testdata/build/wasmimg

log() { printf 'bench.sh: %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { log "must run as root"; exit 1; }
[ -x "$SHIM" ] || { log "$SHIM missing (make build)"; exit 1; }
for f in "$IMAGES"/{hello,hello-go,native-hello,wasmtest,pause}.tar "$CPUBENCH" "$WASMIMG"; do
	[ -e "$f" ] || { log "$f missing (make testdata)"; exit 1; }
done

WAZERO=$TOOLS/bin/wazero
if ! "$WAZERO" version 2>/dev/null | grep -qx "$WAZERO_VERSION"; then
	log "installing the wazero CLI $WAZERO_VERSION into $TOOLS/bin"
	(cd / && GOBIN=$TOOLS/bin GOFLAGS= "$GO" install "github.com/tetratelabs/wazero/cmd/wazero@$WAZERO_VERSION")
fi

if [ -n "${MAKELEVEL:-}" ]; then COMMAND="make bench"; else COMMAND="scripts/bench.sh"; fi
NS=wzbench-$$
TMP=$(mktemp -d /tmp/wzbench.XXXXXX)
E=$TMP/containerd
BENCH_PID=

# rm_ns_cgroups: remove the (empty) cgroups containerd's default spec put at /<NS>/<ID>.
rm_ns_cgroups() {
	local d
	for d in /sys/fs/cgroup/*/"$NS" /sys/fs/cgroup/"$NS"; do
		[ -d "$d" ] || continue
		find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || log "could not remove cgroup $d"
	done
}

cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	if [ -n "$BENCH_PID" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
		kill -TERM "$BENCH_PID" 2>/dev/null
		wait "$BENCH_PID" 2>/dev/null
	fi
	if [ "$rc" -ne 0 ] && [ -f "$E/containerd.log" ]; then
		log "containerd log tail:"
		grep -v 'DEPRECATION' "$E/containerd.log" | tail -n "${BENCH_LOG_TAIL:-30}" >&2
	fi
	wz_cleanup "$E" # stops the daemon, kills its shims (and their runners / containers), unmounts
	rm_ns_cgroups
	rm -rf "$TMP"
	if [ "$rc" -eq 0 ]; then log "OK: results in $OUT"; else log "FAILED (exit $rc)"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

START=$(date +%s)
mkdir -p "$TMP/shimbin" "$TMP/fifo" "$TMP/wazero-cache"
# A private copy of the shim: its /proc/PID/exe tells our shims and runners apart from anyone else's.
cp "$SHIM" "$TMP/shimbin/containerd-shim-wazero-v1"
# The daemon's environment is the shim's: a bench-private compilation cache that B1c can empty.
export CONTAINERD_SHIM_WAZERO_CACHE_DIR=$TMP/cache

log "building bench/ and the cpubench image"
(cd bench && GOWORK=off GOFLAGS= "$GO" build -o "$TMP/bench" .)
"$WASMIMG" -o "$TMP/cpubench.tar" -name docker.io/library/wasm-cpubench:latest -entrypoint /cpubench.wasm "$CPUBENCH"

wz_start_containerd "$E" "$VERSION" "$TMP/shimbin"
BIN=$(wz_bin "$VERSION")
for t in "$IMAGES"/{hello,hello-go,native-hello,wasmtest,pause}.tar "$TMP/cpubench.tar"; do
	wz_ctr "$E" -n "$NS" images import --all-platforms "$t" >/dev/null 2> >(grep -v DEPRECATION >&2)
done
log "containerd $VERSION ready, images imported; running benchmarks (namespace $NS)"

# The bench runs in the background so that the trap can stop it; `timeout` bounds the whole run.
timeout "${BENCH_TIMEOUT:-840}" "$TMP/bench" \
	-address "$E/containerd.sock" -namespace "$NS" -ctr "$BIN/ctr" -fifo-dir "$TMP/fifo" \
	-cache-dir "$CONTAINERD_SHIM_WAZERO_CACHE_DIR" -daemon-log "$E/containerd.log" \
	-shim-exe "$TMP/shimbin/containerd-shim-wazero-v1" -runc-shim-exe "$(readlink -f "$BIN/containerd-shim-runc-v2")" \
	-containerd "$BIN/containerd" -runc "$(command -v runc)" \
	-wazero "$WAZERO" -wazero-cache "$TMP/wazero-cache" -cpubench-wasm "$CPUBENCH" \
	-rounds "${B1_ROUNDS:-15}" -cold-rounds "${B1_COLD_ROUNDS:-8}" \
	-n "${B2_N:-500}" -concurrency "${B2_CONCURRENCY:-4}" -b2-rounds "${B2_ROUNDS:-5}" \
	-sizes "${B3_SIZES:-1,10,100}" -b3-rounds "${B3_ROUNDS:-3}" \
	-cpu-work "${B4_WORK:-48}" -cpu-rounds "${B4_ROUNDS:-5}" \
	-only "${BENCH_ONLY:-B1,B2,B3,B4}" -out "$OUT" -command "$COMMAND" &
BENCH_PID=$!
wait "$BENCH_PID"
BENCH_PID=
log "total $(($(date +%s) - START))s (daemon setup, image import and all benchmarks)"
