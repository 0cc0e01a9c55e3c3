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
#   B4_WORK=48 B4_ROUNDS=5 B5_ROUNDS=10 B6_N=500 B6_CONCURRENCY=4 B6_RUNTIMES=wazero (or wazero,runc)
#   B7_ROUNDS=3 B7_DURATION=10s B7_WARMUP=1s B7_THREADS=1 B7_CONNECTIONS=16 B7_VARIANTS=wasm,native,native1,wagi
#   (B7_VARIANTS may add cli: the wasm server under `wazero run` on the host)
#   BENCH_ONLY=B1,B2,B3,B4,B5,B6,B7 BENCH_OUT=docs/BENCHMARKS.md BENCH_TIMEOUT=840
# BENCH_ONLY with a subset (e.g. BENCH_ONLY=B7) is a partial run: it leaves the full run's results in
# BENCH_OUT alone and writes its own section at the end of the file, replacing the one an earlier run of
# the same BENCH_ONLY wrote; a full run rewrites the whole file (bench/main.go, writeMarkdown).
# B5 and B6 drive the daemon's CRI plugin with crictl ($TOOLS/bin/crictl, from scripts/install-deps.sh);
# their pods live in containerd namespace k8s.io (host network, no CNI). B7 loads HTTP servers with wrk
# (apt, scripts/install-deps.sh) on loopback ports of the host network (about 80 s with the defaults).
#
# Before and after (bench/baseline.go): BENCH_BASELINE_SHIM=/path/to/containerd-shim-wazero-v1 (an earlier
# build, its runner binary beside it) or BENCH_BASELINE_REF=COMMIT (built here, as `make build` does, in a
# git worktree of COMMIT under the temp dir) adds that build to B1, B2, B3, B4 and B7's wazero variants:
# each round runs both shim builds and the baseline, and the tables get a before → after column. Unset
# (the default), nothing changes.
#   BENCH_ONLY=B1,B2,B3 BENCH_BASELINE_REF=812ff23 scripts/bench.sh    # the cost of confinement (issue 10)
#   BENCH_ONLY=B4,B7 BENCH_BASELINE_REF=2889112 scripts/bench.sh       # the WASI layer's cost (issue 19)
# The earlier build is registered under its absolute path as the runtime name, from a directory of its
# own, so each build finds its own runner beside it (pkg/shim/runnerexe.go pairs them by build stamp).
# A partial before/after run writes a section of its own (BENCH_TIMEOUT defaults to 1500 s then).
#
# Shared server (bench/shared.go): BENCH_SHARED=1 adds to B1 (all series), B2, B3, B5 and B6 a wazero
# variant, rows `wazero-shared`: the current shim with the annotation wazero.dev/shared-server=30s
# in every container's spec (`ctr run --annotation`, or the Go client's oci.WithAnnotations), so one
# server per namespace serves its tasks, measured in the same rounds as `wazero` (and `wazero-before`).
# B5 and B6 put it on the pod (crictl runp's JSON "annotations", handler wazero; the daemon's
# pod_annotations = ["wazero.dev/*"] passes it on): B5 runs the variant in each round between wazero
# and runc; B6 runs a batch of it after the wazero batch (before runc's, if B6_RUNTIMES has runc),
# counts the server once (from the pods' task pids), notes whether one server served all the pods,
# and waits for it to exit after teardown (30 s).
# B3 waits for that server to exit (30 s after its last container) before each `wazero` batch, B6
# before it starts; the one left at the end is stopped by the cleanup ("killed 1 leftover shim
# process"). Unset (the default), nothing changes; set, a partial run writes a section of its own and
# BENCH_TIMEOUT defaults to 1500 s (1920 s when B6 runs).
#   BENCH_ONLY=B1,B2,B3 BENCH_SHARED=1 scripts/bench.sh
#   BENCH_ONLY=B5,B6 BENCH_SHARED=1 B6_RUNTIMES=wazero,runc scripts/bench.sh
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

VERSION=$WZ_BENCH_CONTAINERD
WAZERO_VERSION=v1.12.0
GO=${GO:-go}
OUT=${BENCH_OUT:-docs/BENCHMARKS.md}
SHIM=bin/containerd-shim-wazero-v1
IMAGES=testdata/build/images
CPUBENCH=testdata/build/cpubench.wasm
WASMIMG=testdata/build/wasmimg
CRICTL=${WZ_CRICTL:-$TOOLS/bin/crictl}

log() { printf 'bench.sh: %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { log "must run as root"; exit 1; }
[ -x "$SHIM" ] || { log "$SHIM missing (make build)"; exit 1; }
# B7 images: the HTTP servers of the variants in bench/http.go (httpVariants).
B7_IMAGES=("$IMAGES"/{httpserver,native-httpserver,wagi}.tar)
for f in "$IMAGES"/{hello,hello-go,native-hello,wasmtest,pause}.tar "${B7_IMAGES[@]}" "$CPUBENCH" "$WASMIMG"; do
	[ -e "$f" ] || { log "$f missing (make testdata)"; exit 1; }
done
# crictl and wrk are needed only by the benchmarks that use them (B5/B6, B7).
ONLY=,${BENCH_ONLY:-B1,B2,B3,B4,B5,B6,B7},
ONLY=${ONLY// /}
case $ONLY in *,B5,* | *,B6,*) [ -x "$CRICTL" ] || { log "$CRICTL missing (scripts/install-deps.sh)"; exit 1; } ;; esac
WRK=$(command -v wrk || true)
case $ONLY in *,B7,*) [ -n "$WRK" ] || { log "wrk missing (scripts/install-deps.sh)"; exit 1; } ;; esac
WRK=${WRK:-wrk}

WAZERO=$TOOLS/bin/wazero
if ! "$WAZERO" version 2>/dev/null | grep -qx "$WAZERO_VERSION"; then
	log "installing the wazero CLI $WAZERO_VERSION into $TOOLS/bin"
	(cd / && GOBIN=$TOOLS/bin GOFLAGS= "$GO" install "github.com/tetratelabs/wazero/cmd/wazero@$WAZERO_VERSION")
fi

if [ -n "${MAKELEVEL:-}" ]; then COMMAND="make bench"; else COMMAND="scripts/bench.sh"; fi
SHARED_ARGS=()
case ${BENCH_SHARED:-} in
"" | 0) ;;
1)
	SHARED_ARGS=(-shared-variant)
	COMMAND="BENCH_SHARED=1 $COMMAND"
	;;
*) log "BENCH_SHARED=$BENCH_SHARED: set 1 (or leave unset)"; exit 1 ;;
esac
BASE_SHIM=${BENCH_BASELINE_SHIM:-}
BASE_REF=${BENCH_BASELINE_REF:-}
BASE_COMMIT=
if [ -n "$BASE_SHIM" ]; then
	[ -z "$BASE_REF" ] || { log "set BENCH_BASELINE_SHIM or BENCH_BASELINE_REF, not both"; exit 1; }
	[ -x "$BASE_SHIM" ] || { log "BENCH_BASELINE_SHIM=$BASE_SHIM: not an executable"; exit 1; }
	COMMAND="BENCH_BASELINE_SHIM=$BASE_SHIM $COMMAND"
elif [ -n "$BASE_REF" ]; then
	BASE_COMMIT=$(git rev-parse --verify --quiet "$BASE_REF^{commit}") || { log "BENCH_BASELINE_REF=$BASE_REF: no such commit"; exit 1; }
	COMMAND="BENCH_BASELINE_REF=$BASE_REF $COMMAND"
fi
NS=wzbench-$$
TMP=$(mktemp -d /tmp/wzbench.XXXXXX)
E=$TMP/containerd
BENCH_PID=
BASE_TREE=

# rm_ns_cgroups: remove the (empty) cgroups containerd's default spec put at /<NS>/<ID>.
rm_ns_cgroups() {
	local d
	for d in /sys/fs/cgroup/*/"$NS" /sys/fs/cgroup/"$NS"; do
		[ -d "$d" ] || continue
		find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || log "could not remove cgroup $d"
	done
}

# rm_cri_cgroups: remove the cgroups /k8s.io/<id> of the CRI pods and containers the bench created
# (listed in $TMP/cri-ids; normally already gone after crictl rmp). k8s.io itself is shared: kept.
rm_cri_cgroups() {
	local id d n=0
	[ -f "$TMP/cri-ids" ] || return 0
	while read -r id; do
		[ -n "$id" ] || continue
		for d in /sys/fs/cgroup/*/k8s.io/"$id" /sys/fs/cgroup/k8s.io/"$id"; do
			[ -d "$d" ] || continue
			rmdir "$d" 2>/dev/null && n=$((n + 1)) || log "could not remove cgroup $d"
		done
	done <"$TMP/cri-ids"
	[ "$n" -eq 0 ] || log "removed $n leftover CRI cgroup(s)"
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
	rm_cri_cgroups
	if [ -n "$BASE_TREE" ]; then
		git worktree remove --force "$BASE_TREE" 2>/dev/null || { rm -rf "$BASE_TREE"; git worktree prune; }
	fi
	rm -rf "$TMP"
	if [ "$rc" -eq 0 ]; then log "OK: results in $OUT"; else log "FAILED (exit $rc)"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

START=$(date +%s)
mkdir -p "$TMP/shimbin" "$TMP/fifo" "$TMP/wazero-cache"
# A private copy of the shim: its /proc/PID/exe tells our shims apart from anyone else's (runners are
# their descendants). The runner binary built with it goes beside it, where the shim looks for it.
cp "$SHIM" "$TMP/shimbin/containerd-shim-wazero-v1"
for b in runner server; do # the runner, and the server the shim's entry starts (when built)
	if [ -x "bin/containerd-shim-wazero-v1-$b" ]; then
		cp "bin/containerd-shim-wazero-v1-$b" "$TMP/shimbin/containerd-shim-wazero-v1-$b"
	fi
done
# The earlier build (BENCH_BASELINE_SHIM/_REF) gets a directory of its own: its runner binary, which
# carries its build stamp, must be beside it under the same name as the current build's.
BASE_ARGS=()
if [ -n "$BASE_COMMIT" ]; then
	BASE_TREE=$TMP/baseline-src
	log "building the baseline shim from $BASE_REF ($(git log -1 --format='%h %s' "$BASE_COMMIT" | cut -c1-80)) in a worktree"
	git worktree add --detach "$BASE_TREE" "$BASE_COMMIT" >/dev/null 2>&1 || { log "git worktree add $BASE_COMMIT failed"; exit 1; }
	# The same build as `make build` there (its Makefile: -trimpath, CGO_ENABLED=0, the build stamp of
	# its own sources in LDFLAGS).
	make -s -C "$BASE_TREE" build GO="$GO" >&2
	BASE_SHIM=$BASE_TREE/bin/containerd-shim-wazero-v1
	BASE_LABEL="commit $(git rev-parse --short "$BASE_COMMIT")"
elif [ -n "$BASE_SHIM" ]; then
	BASE_LABEL="BENCH_BASELINE_SHIM"
fi
if [ -n "$BASE_SHIM" ]; then
	mkdir -p "$TMP/shimbin-before"
	cp "$BASE_SHIM" "$TMP/shimbin-before/containerd-shim-wazero-v1"
	if [ -x "$(dirname "$BASE_SHIM")/containerd-shim-wazero-v1-runner" ]; then
		cp "$(dirname "$BASE_SHIM")/containerd-shim-wazero-v1-runner" "$TMP/shimbin-before/"
	else
		log "warning: no runner binary beside $BASE_SHIM: its runners run from the shim binary itself"
	fi
	if [ -x "$(dirname "$BASE_SHIM")/containerd-shim-wazero-v1-server" ]; then
		cp "$(dirname "$BASE_SHIM")/containerd-shim-wazero-v1-server" "$TMP/shimbin-before/"
	fi
	BASE_ARGS=(-before-shim-exe "$TMP/shimbin-before/containerd-shim-wazero-v1" -before-label "$BASE_LABEL")
fi
# The daemon's environment is the shim's: a bench-private compilation cache that B1c can empty.
export CONTAINERD_SHIM_WAZERO_CACHE_DIR=$TMP/cache

log "building bench/ and the cpubench image"
(cd bench && GOWORK=off GOFLAGS= "$GO" build -o "$TMP/bench" .)
# B1e: the node's warm agent (wazero-shim-installer -warm-cache) compiles before the first run.
CGO_ENABLED=0 "$GO" build -o "$TMP/wazero-shim-installer" ./cmd/wazero-shim-installer
"$WASMIMG" -o "$TMP/cpubench.tar" -name docker.io/library/wasm-cpubench:latest -entrypoint /cpubench.wasm "$CPUBENCH"

wz_start_containerd "$E" "$VERSION" "$TMP/shimbin"
BIN=$(wz_bin "$VERSION")
for t in "$IMAGES"/{hello,hello-go,native-hello,wasmtest,pause}.tar "${B7_IMAGES[@]}" "$TMP/cpubench.tar"; do
	wz_ctr "$E" -n "$NS" images import --all-platforms "$t" >/dev/null 2> >(grep -v DEPRECATION >&2)
done
# For the CRI plugin (B5, B6), as integration/cri_test.go does: the pinned sandbox image, and wasmtest
# unpacked for wasip1/wasm (2.x ctr needs --local for that, or the transfer service unpacks only the
# host's platform).
wz_ctr "$E" -n k8s.io images import "$IMAGES/pause.tar" >/dev/null 2> >(grep -v DEPRECATION >&2)
wz_ctr "$E" -n k8s.io images import --platform wasip1/wasm --local "$IMAGES/wasmtest.tar" >/dev/null 2> >(grep -v DEPRECATION >&2)
log "containerd $VERSION ready, images imported; running benchmarks (namespace $NS)"

# The bench runs in the background so that the trap can stop it; `timeout` bounds the whole run.
if [ -n "$BASE_SHIM" ] || [ ${#SHARED_ARGS[@]} -gt 0 ]; then DEFAULT_TIMEOUT=1500; else DEFAULT_TIMEOUT=840; fi
# B6's wazero-shared batch (BENCH_SHARED=1): another B6_N pods, then the server's linger; about 5 minutes.
case $ONLY in *,B6,*) [ ${#SHARED_ARGS[@]} -eq 0 ] || DEFAULT_TIMEOUT=$((DEFAULT_TIMEOUT + 420)) ;; esac
timeout "${BENCH_TIMEOUT:-$DEFAULT_TIMEOUT}" "$TMP/bench" "${BASE_ARGS[@]}" "${SHARED_ARGS[@]}" \
	-address "$E/containerd.sock" -namespace "$NS" -ctr "$BIN/ctr" -fifo-dir "$TMP/fifo" \
	-cache-dir "$CONTAINERD_SHIM_WAZERO_CACHE_DIR" -daemon-log "$E/containerd.log" -warm-agent "$TMP/wazero-shim-installer" \
	-shim-exe "$TMP/shimbin/containerd-shim-wazero-v1" -runc-shim-exe "$(readlink -f "$BIN/containerd-shim-runc-v2")" \
	-containerd "$BIN/containerd" -runc "$(command -v runc)" \
	-wazero "$WAZERO" -wazero-cache "$TMP/wazero-cache" -cpubench-wasm "$CPUBENCH" -httpserver-wasm testdata/build/httpserver.wasm \
	-rounds "${B1_ROUNDS:-15}" -cold-rounds "${B1_COLD_ROUNDS:-8}" \
	-n "${B2_N:-500}" -concurrency "${B2_CONCURRENCY:-4}" -b2-rounds "${B2_ROUNDS:-5}" \
	-sizes "${B3_SIZES:-1,10,100}" -b3-rounds "${B3_ROUNDS:-3}" \
	-cpu-work "${B4_WORK:-48}" -cpu-rounds "${B4_ROUNDS:-5}" \
	-crictl "$CRICTL" -work-dir "$TMP/cri" -cri-ids "$TMP/cri-ids" -daemon-dir "$E" -daemon-pid "$(cat "$E/containerd.pid")" \
	-b5-rounds "${B5_ROUNDS:-10}" -b6-n "${B6_N:-500}" -b6-concurrency "${B6_CONCURRENCY:-4}" -b6-runtimes "${B6_RUNTIMES:-wazero}" \
	-wrk "$WRK" -b7-rounds "${B7_ROUNDS:-3}" -b7-duration "${B7_DURATION:-10s}" -b7-warmup "${B7_WARMUP:-1s}" \
	-b7-threads "${B7_THREADS:-1}" -b7-connections "${B7_CONNECTIONS:-16}" -b7-variants "${B7_VARIANTS:-wasm,native,native1,wagi}" \
	-only "${BENCH_ONLY:-B1,B2,B3,B4,B5,B6,B7}" -out "$OUT" -command "$COMMAND" &
BENCH_PID=$!
wait "$BENCH_PID"
BENCH_PID=
log "total $(($(date +%s) - START))s (daemon setup, image import and all benchmarks)"
