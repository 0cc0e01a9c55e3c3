#!/usr/bin/env bash
# Installs everything the demo and the integration tests need (run as root; idempotent):
#   - Debian packages: runc, a WASI C toolchain, wabt, CNI plugins, hyperfine, iproute2
#   - containerd, ctr and containerd-shim-runc-v2 for each tested containerd version,
#     built from the Go module proxy into $TOOLS/containerd-<version>/bin
# Fast when everything is already present. TOOLS defaults to /var/tmp/wazero-shim-tools.
set -euo pipefail

TOOLS=${TOOLS:-/var/tmp/wazero-shim-tools}
CONTAINERD_VERSIONS=${CONTAINERD_VERSIONS:-"v2.4.2 v2.2.9"}
APT_PACKAGES=(runc clang lld wasi-libc libclang-rt-14-dev-wasm32 wabt containernetworking-plugins hyperfine iproute2)
GO=${GO:-go}

log() { printf 'install-deps: %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
	log "must run as root (apt-get install)" >&2
	exit 1
fi

# --- Debian packages -------------------------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do
	# "install ok installed" is the only state that means the package is really there.
	if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -eq 0 ]; then
	log "apt packages: all present (${APT_PACKAGES[*]})"
else
	log "apt packages: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	log "apt packages: installed ${missing[*]}"
fi

# --- containerd builds -----------------------------------------------------------------------
command -v "$GO" >/dev/null || { log "go not found on PATH" >&2; exit 1; }

# have_containerd VERSION: true if the three binaries exist and the daemon reports VERSION.
have_containerd() {
	local v=$1 bin=$TOOLS/containerd-$1/bin out
	for b in containerd ctr containerd-shim-runc-v2; do
		[ -x "$bin/$b" ] || return 1
	done
	# e.g. "containerd github.com/containerd/containerd/v2 2.4.2+unknown "
	out=$("$bin/containerd" --version 2>/dev/null) || return 1
	grep -Eq "[[:space:]]v?${v#v}([+[:space:]-]|$)" <<<"$out"
}

for v in $CONTAINERD_VERSIONS; do
	bin=$TOOLS/containerd-$v/bin
	if have_containerd "$v"; then
		log "containerd $v: present in $bin"
		continue
	fi
	log "containerd $v: building containerd, ctr, containerd-shim-runc-v2 into $bin (takes a few minutes)"
	mkdir -p "$bin"
	start=$(date +%s)
	# Build in a throwaway module-less directory so the project's go.mod does not interfere.
	(cd / && GOBIN=$bin GOFLAGS= "$GO" install \
		"github.com/containerd/containerd/v2/cmd/containerd@$v" \
		"github.com/containerd/containerd/v2/cmd/ctr@$v" \
		"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$v")
	if ! have_containerd "$v"; then
		log "containerd $v: build finished but $bin/containerd --version does not report $v" >&2
		"$bin/containerd" --version >&2 || true
		exit 1
	fi
	log "containerd $v: built in $(($(date +%s) - start))s: $("$bin/containerd" --version)"
done

log "done (TOOLS=$TOOLS)"
