#!/usr/bin/env bash
# Installs everything the demo and the integration tests need (run as root; idempotent):
#   - Debian packages: runc, a WASI C toolchain, wabt, CNI plugins, hyperfine and wrk (benchmarks),
#     iproute2, and containerd (Debian 12: 1.6.20, the tested v1.6.20 in /usr/bin; its service is
#     not started)
#   - containerd, ctr and containerd-shim-runc-v2 for each tested containerd 2.x version,
#     built from the Go module proxy into $TOOLS/containerd-<version>/bin
#   - crictl (cri-tools, for the CRI integration tests), built into $TOOLS/bin/crictl
#   - Kubernetes (kubelet, control plane, kubectl) and etcd for integration/k8s, built into
#     $TOOLS/kubernetes-<version>/bin by scripts/build-kubernetes.sh (see its block below)
# Fast when everything is already present. TOOLS defaults to /var/tmp/wazero-shim-tools.
set -euo pipefail

TOOLS=${TOOLS:-/var/tmp/wazero-shim-tools}
# shellcheck source=scripts/versions.sh
. "$(dirname "$0")/versions.sh"
# containerd versions to build: the tested ones but the system ones, which come from the apt
# package (scripts/lib.sh wz_bin).
default_built=()
for v in $WZ_CONTAINERD_VERSIONS; do
	case " $WZ_CONTAINERD_SYSTEM " in *" $v "*) ;; *) default_built+=("$v") ;; esac
done
CONTAINERD_VERSIONS=${CONTAINERD_VERSIONS:-"${default_built[*]}"}
APT_PACKAGES=(runc containerd clang lld wasi-libc libclang-rt-14-dev-wasm32 wabt containernetworking-plugins hyperfine wrk iproute2)
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
	# The containerd package would start a system containerd (/run/containerd/containerd.sock) where
	# an init system runs services. The tests only use its binaries with private daemons: a
	# policy-rc.d that denies every start (exit 101) keeps invoke-rc.d / deb-systemd-invoke from
	# starting it during the install. An existing policy-rc.d is left alone.
	policy=/usr/sbin/policy-rc.d
	own_policy=
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\n# written by install-deps.sh for the duration of an apt-get install\nexit 101\n' >"$policy"
		chmod 0755 "$policy"
		own_policy=1
		trap '[ -z "$own_policy" ] || rm -f "$policy"' EXIT
	fi
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	if [ -n "$own_policy" ]; then
		rm -f "$policy"
		own_policy=
	fi
	log "apt packages: installed ${missing[*]}"
	# We just installed containerd: under systemd its unit is now enabled (policy-rc.d only blocks
	# the start), so a reboot would start it, and a policy-rc.d of the machine's own may have let it
	# start already. Stop and disable it: the tests never use a system containerd. Only done in the
	# run that installs the package, so a containerd the machine's owner set up is never touched.
	if [[ " ${missing[*]} " == *" containerd "* ]] && [ -d /run/systemd/system ]; then
		log "disabling the system containerd.service the package installed (the tests use private daemons)"
		systemctl disable --now containerd.service >/dev/null 2>&1 || true
	fi
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

# --- crictl ----------------------------------------------------------------------------------
# The CRI integration tests (integration/cri_test.go) drive the daemons' CRI plugin with crictl.
# `go install sigs.k8s.io/cri-tools/cmd/crictl@VERSION` is refused by the module proxy here (no
# @v/list, no sumdb entry), so download the module zip, copy it out of the module cache and build it.
CRICTL_VERSION=${CRICTL_VERSION:-$WZ_CRICTL_VERSION}
crictl=$TOOLS/bin/crictl
if [ -x "$crictl" ]; then
	log "crictl: present in $crictl"
else
	log "crictl $CRICTL_VERSION: building into $crictl"
	mkdir -p "$TOOLS/bin"
	src=$(mktemp -d)
	(cd / && GONOSUMDB=sigs.k8s.io/cri-tools GOFLAGS=-mod=mod "$GO" mod download "sigs.k8s.io/cri-tools@$CRICTL_VERSION")
	cp -r "$("$GO" env GOMODCACHE)/sigs.k8s.io/cri-tools@$CRICTL_VERSION" "$src/cri-tools"
	chmod -R u+w "$src/cri-tools"
	(cd "$src/cri-tools" && CGO_ENABLED=0 GOFLAGS= "$GO" build -trimpath -o "$crictl.tmp" ./cmd/crictl)
	mv "$crictl.tmp" "$crictl"
	rm -rf "$src"
	log "crictl $CRICTL_VERSION: built"
fi

# --- Kubernetes (integration/k8s) ------------------------------------------------------------
# The Kubernetes tests (integration/k8s, issue 18) run a real node: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet and kubectl, built from the Go module proxy by
# scripts/build-kubernetes.sh into $TOOLS/kubernetes-<version>/bin (about 15 minutes and 4 GB of
# build cache the first time; skipped when the binaries report the version). WZ_SKIP_KUBERNETES=1
# skips this block (the Kubernetes tests then skip, or fail under CI=true).
KUBERNETES_VERSION=${KUBERNETES_VERSION:-$WZ_KUBERNETES_VERSION}
ETCD_VERSION=${ETCD_VERSION:-$WZ_ETCD_VERSION}
kube_bin=$TOOLS/kubernetes-$KUBERNETES_VERSION/bin
have_kubernetes() {
	local b
	for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
		[ -x "$kube_bin/$b" ] || return 1
	done
	"$kube_bin/kubelet" --version 2>/dev/null | grep -qF "$KUBERNETES_VERSION" &&
		"$kube_bin/etcd" --version 2>/dev/null | grep -qF "${ETCD_VERSION#v}"
}
if [ "${WZ_SKIP_KUBERNETES:-}" = 1 ]; then
	log "kubernetes: skipped (WZ_SKIP_KUBERNETES=1)"
elif have_kubernetes; then
	log "kubernetes $KUBERNETES_VERSION, etcd $ETCD_VERSION: present in $kube_bin"
else
	log "kubernetes $KUBERNETES_VERSION, etcd $ETCD_VERSION: building into $kube_bin (about 15 minutes the first time)"
	start=$(date +%s)
	GO=$GO "$(dirname "$0")/build-kubernetes.sh" "$KUBERNETES_VERSION" "$ETCD_VERSION" "$kube_bin"
	have_kubernetes || { log "kubernetes: built, but $kube_bin/kubelet --version is not $KUBERNETES_VERSION" >&2; exit 1; }
	log "kubernetes $KUBERNETES_VERSION: built in $(($(date +%s) - start))s"
fi
# --- end of Kubernetes -----------------------------------------------------------------------

# The apt containerd must be the 1.6.20 the tests name v1.6.20 (integration/harness_test.go checks it too).
if ! /usr/bin/containerd --version 2>/dev/null | grep -Eq '[[:space:]]1\.6\.20([~+[:space:]-]|$)'; then
	log "warning: /usr/bin/containerd is not 1.6.20 (tests of v1.6.20 will refuse it): $(/usr/bin/containerd --version 2>&1)" >&2
fi

log "done (TOOLS=$TOOLS)"
