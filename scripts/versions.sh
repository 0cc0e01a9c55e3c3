# The versions of everything the tests, the demo and the benchmarks run against, in one place.
# Sourced by scripts/*.sh; read by integration/testenv (Go) for the integration suites. One
# assignment a line, KEY="value", so both can read it. Override any of them from the environment
# only where the script that uses it says so.

# containerd releases the integration suites and the demo run on, newest first.
WZ_CONTAINERD_VERSIONS="v2.4.2 v2.2.9 v1.6.20"
# Of those, the ones that come from Debian's package (in /usr/bin) rather than a build under $TOOLS.
WZ_CONTAINERD_SYSTEM="v1.6.20"
# The one release the benchmarks and the perf script measure on.
WZ_BENCH_CONTAINERD="v2.4.2"
# cri-tools (crictl), Kubernetes and etcd, built from the Go module proxy by install-deps.sh.
WZ_CRICTL_VERSION="v1.34.0"
WZ_KUBERNETES_VERSION="v1.37.2"
WZ_ETCD_VERSION="v3.7.3"
