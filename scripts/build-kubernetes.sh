#!/usr/bin/env bash
# Builds the Kubernetes node binaries the Kubernetes integration tests (integration/k8s) run, from
# the Go module proxy alone (there are no release downloads on the machines this project runs on):
#
#   build-kubernetes.sh KUBERNETES_VERSION ETCD_VERSION OUT_DIR
#
# puts kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl (KUBERNETES_VERSION,
# e.g. v1.37.2) and etcd (ETCD_VERSION, e.g. v3.7.3) into OUT_DIR, all built with CGO_ENABLED=0.
# Called by scripts/install-deps.sh, which decides whether they are needed (idempotent there).
#
# How (what the module proxy serves is not buildable as is):
#   - k8s.io/kubernetes: its go.work is removed and its ./staging/src/k8s.io/* replaces are dropped:
#     a module zip leaves out the staging directories (they are modules of their own), so the
#     published k8s.io/*@v0.<minor>.<patch> modules, the same sources, stand in for them. The sample
#     modules nothing here imports (sample-cli-plugin, sample-controller) are dropped from require.
#     vendor/ is ignored (-mod=mod): its staging entries are symlinks the zip does not carry.
#   - etcd: go.etcd.io/etcd/server/v3, whose main is at the module root; its replaces point at
#     sibling directories of the etcd repository and are dropped for the published modules.
# A cold build takes about 15 minutes on 2 cores (about 4 GB of build cache, 2.5 GB peak memory).
set -euo pipefail

K8S_VERSION=${1:?usage: build-kubernetes.sh KUBERNETES_VERSION ETCD_VERSION OUT_DIR}
ETCD_VERSION=${2:?usage: build-kubernetes.sh KUBERNETES_VERSION ETCD_VERSION OUT_DIR}
OUT=${3:?usage: build-kubernetes.sh KUBERNETES_VERSION ETCD_VERSION OUT_DIR}
GO=${GO:-go}
# v1.37.2 -> v0.37.2: the staging modules are published with the same minor and patch.
STAGING_VERSION=v0.${K8S_VERSION#v1.}

log() { printf 'build-kubernetes: %s\n' "$*"; }

src=$(mktemp -d /var/tmp/wazero-shim-k8s-src.XXXXXX)
trap 'chmod -R u+w "$src" 2>/dev/null; rm -rf "$src"' EXIT
mkdir -p "$OUT"

# fetch MODULE@VERSION DIR: a writable copy of the module's source in DIR.
fetch() {
	local dir
	dir=$(cd / && GOFLAGS=-mod=mod "$GO" mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -n "$dir" ] && [ -d "$dir" ] || { log "go mod download $1 gave no directory" >&2; exit 1; }
	cp -r "$dir" "$2"
	chmod -R u+w "$2"
}

# --- etcd -------------------------------------------------------------------------------------
start=$(date +%s)
log "etcd $ETCD_VERSION: building into $OUT"
fetch "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "$src/etcd"
(
	cd "$src/etcd"
	# Drop the replace block (sibling directories of the etcd repository).
	sed -i '/^replace (/,/^)/d; /^replace go\.etcd\.io\//d' go.mod
	CGO_ENABLED=0 GOWORK=off GOFLAGS=-mod=mod "$GO" build -trimpath -o "$OUT/etcd.tmp" .
)
mv "$OUT/etcd.tmp" "$OUT/etcd"
log "etcd $ETCD_VERSION: built in $(($(date +%s) - start))s"

# --- kubernetes -------------------------------------------------------------------------------
start=$(date +%s)
log "kubernetes $K8S_VERSION: building kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl into $OUT (staging modules at $STAGING_VERSION)"
fetch "k8s.io/kubernetes@$K8S_VERSION" "$src/kubernetes"
(
	cd "$src/kubernetes"
	rm -f go.work go.work.sum
	# The staging replaces go; the staging modules' requires (v0.0.0) become the published version;
	# the two sample modules go altogether.
	sed -i '/^replace (/,/^)/{/=> \.\/staging\//d}' go.mod
	sed -i -E '/^[[:space:]]*k8s\.io\/sample-(cli-plugin|controller) v0\.0\.0/d' go.mod
	sed -i -E "s#^([[:space:]]*k8s\.io/[a-z0-9-]+) v0\.0\.0(\$|[[:space:]])#\1 $STAGING_VERSION\2#" go.mod
	# An emptied replace block is harmless, but leave none behind.
	sed -i '/^replace ($/{N;/^replace (\n)$/d}' go.mod
	if grep -q '=> ./staging' go.mod; then
		log "go.mod still has staging replaces" >&2
		exit 1
	fi
	# The version the binaries report (kubectl version, the node's kubeletVersion), as Kubernetes'
	# own build (hack/lib/version.sh) stamps it.
	minor=${K8S_VERSION#v1.}
	minor=${minor%%.*}
	ldflags=
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags="$ldflags -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
	done
	for cmd in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
		CGO_ENABLED=0 GOWORK=off GOFLAGS=-mod=mod "$GO" build -trimpath \
			-ldflags "$ldflags" \
			-o "$OUT/$cmd.tmp" "./cmd/$cmd"
		mv "$OUT/$cmd.tmp" "$OUT/$cmd"
		log "kubernetes $K8S_VERSION: $cmd built ($(($(date +%s) - start))s so far)"
	done
)
log "kubernetes $K8S_VERSION: built in $(($(date +%s) - start))s"
