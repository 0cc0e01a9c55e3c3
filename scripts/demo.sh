#!/usr/bin/env bash
# Demo: run a WASI module as a container through containerd with the wazero shim.
# Starts a private containerd (everything under a temp dir), imports the hello image, runs it with
#   ctr run --rm --runtime io.containerd.wazero.v1 docker.io/library/wasm-hello:latest demo-<pid> /hello.wasm from containerd
# on containerd v2.4.2, then on the older v2.2.9, then on v1.6.20 (Debian's apt package, `version = 2`
# config), and tears everything down on exit.
# Prerequisites (done by `make demo`): scripts/install-deps.sh, make build, make testdata. Run as root.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

IMAGE_TAR=${IMAGE_TAR:-testdata/build/images/hello.tar}
IMAGE=docker.io/library/wasm-hello:latest
VERSIONS=${DEMO_VERSIONS:-$WZ_CONTAINERD_VERSIONS}
SHIM_DIR=$PWD/bin
ID=demo-$$

[ "$(id -u)" -eq 0 ] || { echo "demo: must run as root" >&2; exit 1; }
[ -x "$SHIM_DIR/containerd-shim-wazero-v1" ] || { echo "demo: $SHIM_DIR/containerd-shim-wazero-v1 missing (make build)" >&2; exit 1; }
[ -f "$IMAGE_TAR" ] || { echo "demo: $IMAGE_TAR missing (make testdata)" >&2; exit 1; }

# ctr warns about cgroup v1 on every call on this kind of host; keep the demo output readable.
ctr_() { wz_ctr "$@" 2> >(grep -v 'DEPRECATION: The support for cgroup v1' >&2); }

TMP=$(mktemp -d /tmp/wzdemo.XXXXXX)
cleanup() {
	local rc=$?
	set +e
	for v in $VERSIONS; do
		if [ -d "$TMP/$v" ]; then
			wz_ctr "$TMP/$v" task kill -s SIGKILL "$ID" >/dev/null 2>&1
			wz_ctr "$TMP/$v" task rm -f "$ID" >/dev/null 2>&1
			wz_ctr "$TMP/$v" container rm "$ID" >/dev/null 2>&1
			wz_cleanup "$TMP/$v"
		fi
	done
	wz_rm_cgroups default "$ID"
	wz_unmount_under "$TMP"
	rm -rf "$TMP"
	if [ "$rc" -eq 0 ]; then echo "demo: OK"; else echo "demo: FAILED (exit $rc)" >&2; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for v in $VERSIONS; do
	E=$TMP/$v
	echo "=== containerd $v ==="
	wz_start_containerd "$E" "$v" "$SHIM_DIR"
	# --all-platforms: the image is wasip1/wasm, which a plain import filters out for this host
	ctr_ "$E" images import --all-platforms "$IMAGE_TAR" >/dev/null
	echo "+ ctr run --rm --runtime io.containerd.wazero.v1 $IMAGE $ID /hello.wasm from containerd"
	if ! ctr_ "$E" run --rm --fifo-dir "$E/fifo" --runtime io.containerd.wazero.v1 "$IMAGE" "$ID" /hello.wasm from containerd; then
		echo "demo: ctr run failed on containerd $v; daemon log tail:" >&2
		tail -n 20 "$E/containerd.log" >&2
		exit 1
	fi
	wz_cleanup "$E"
done
