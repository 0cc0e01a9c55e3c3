package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// DefaultCacheDir is the node-wide compilation cache used when CacheDirEnv is not set.
const DefaultCacheDir = "/var/lib/containerd-shim-wazero/cache"

// CacheDirEnv names the environment variable of the shim (and so of containerd) that moves the
// compilation cache. The directory is created mode 0700: compiled machine code is read only from
// a place no container can write.
const CacheDirEnv = "CONTAINERD_SHIM_WAZERO_CACHE_DIR"

// CacheDir returns the compilation cache directory: $CONTAINERD_SHIM_WAZERO_CACHE_DIR, or DefaultCacheDir.
func CacheDir() string {
	if d := os.Getenv(CacheDirEnv); d != "" {
		return d
	}
	return DefaultCacheDir
}

// DefaultCacheMaxBytes bounds the compilation cache when CacheMaxBytesEnv is not set: 2 GiB.
const DefaultCacheMaxBytes int64 = 2 << 30

// CacheMaxBytesEnv names the environment variable of the shim (and so of containerd) that bounds
// the total size of the compilation cache's entries, in bytes; 0 means unbounded. Beyond it, the
// least recently used entries are removed after each compile.
const CacheMaxBytesEnv = "CONTAINERD_SHIM_WAZERO_CACHE_MAX_BYTES"

// CacheMaxBytes returns the compilation cache's size bound: $CONTAINERD_SHIM_WAZERO_CACHE_MAX_BYTES
// (a number of bytes, 0 for unbounded), or DefaultCacheMaxBytes when it is unset. A value that is
// not a non-negative integer gives DefaultCacheMaxBytes and an error saying so.
func CacheMaxBytes() (int64, error) {
	return bytesEnv(CacheMaxBytesEnv, DefaultCacheMaxBytes)
}

// DefaultModulesMaxBytes bounds the modules directory (ModulesDir) when ModulesMaxBytesEnv is not
// set: 1 GiB. Modules are smaller than their compiled code, and an evicted one costs only a local
// copy out of containerd's content store, which still holds the layer.
const DefaultModulesMaxBytes int64 = 1 << 30

// ModulesMaxBytesEnv names the environment variable of the shim (and so of containerd) that
// bounds the total size of the modules copied out of images into ModulesDir, in bytes; 0 means
// unbounded. Beyond it, the least recently used modules are removed after each copy.
const ModulesMaxBytesEnv = "CONTAINERD_SHIM_WAZERO_MODULES_MAX_BYTES"

// ModulesMaxBytes returns the modules directory's size bound:
// $CONTAINERD_SHIM_WAZERO_MODULES_MAX_BYTES (a number of bytes, 0 for unbounded), or
// DefaultModulesMaxBytes when it is unset. A value that is not a non-negative integer gives
// DefaultModulesMaxBytes and an error saying so.
func ModulesMaxBytes() (int64, error) {
	return bytesEnv(ModulesMaxBytesEnv, DefaultModulesMaxBytes)
}

// bytesEnv reads the size bound in the environment variable name: def when it is unset or blank,
// def and an error when it is not a non-negative integer.
func bytesEnv(name string, def int64) (int64, error) {
	v, ok := os.LookupEnv(name)
	if !ok || strings.TrimSpace(v) == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return def, fmt.Errorf("%s=%q is not a number of bytes (0 for unbounded): using %d", name, v, def)
	}
	return n, nil
}

// ColdStartEnv names the environment variable of the shim (and so of containerd) that sets the
// node's cold-start policy for containers whose process.env does not choose one
// (oci.ColdStartEnv): auto (the default), compile or interpret. See docs/coldstart.md.
const ColdStartEnv = "CONTAINERD_SHIM_WAZERO_COLD_START"

// ColdStartDefault returns the node's cold-start policy: $CONTAINERD_SHIM_WAZERO_COLD_START, or
// oci.ColdStartAuto when it is unset. A bad value gives oci.ColdStartAuto and an error saying so.
func ColdStartDefault() (oci.ColdStart, error) {
	c, err := oci.ParseColdStartDefault(ColdStartEnv, os.Getenv(ColdStartEnv))
	if err != nil {
		return oci.ColdStartAuto, err
	}
	return c, nil
}

// ModulesDir returns the node-wide directory of modules copied out of containerd's content store
// (images that carry the module in a wasm layer, see docs/images.md): "modules" beside the
// compilation cache directory cacheDir, so /var/lib/containerd-shim-wazero/modules by default.
// Modules are stored as sha256/<hex>.wasm, named by their digest. Like the cache, it is root's
// only (mode 0700).
func ModulesDir(cacheDir string) string {
	if cacheDir == "" {
		cacheDir = DefaultCacheDir
	}
	return filepath.Join(filepath.Dir(filepath.Clean(cacheDir)), "modules")
}

// Config is everything a runner needs to run one module. The shim sends it as JSON.
type Config struct {
	// ID is the container ID, used in messages.
	ID string `json:"id"`
	// Module is the module to run.
	Module oci.Module `json:"module"`
	// Args is process.args, passed to the guest unchanged (args[0] included).
	Args []string `json:"args"`
	// Env is process.env, passed to the guest unchanged and in order.
	Env []string `json:"env"`
	// Rootfs is the host path of the container's mounted root filesystem. It becomes the guest's "/".
	Rootfs string `json:"rootfs"`
	// RootReadOnly makes the whole rootfs read-only to the guest (root.readonly in the spec).
	RootReadOnly bool `json:"rootReadOnly,omitempty"`
	// NoRootPreopen leaves the rootfs out of the guest's preopens (oci.RootPreopenAnnotation):
	// only the directory bind mounts are preopened, from descriptor 3 on.
	NoRootPreopen bool `json:"noRootPreopen,omitempty"`
	// Mounts are the bind mounts the guest sees at their destinations.
	Mounts []oci.Mount `json:"mounts,omitempty"`
	// MemoryPages caps the guest's linear memory, in 64 KiB pages (see oci.MemoryPages).
	MemoryPages uint32 `json:"memoryPages"`
	// CacheDir is the compilation cache directory; empty disables the cache.
	CacheDir string `json:"cacheDir,omitempty"`
	// CacheMaxBytes bounds the total size of the cache's entries: after compiling a module the
	// runner removes the least recently used entries beyond it (never the one it just wrote).
	// 0 means unbounded.
	CacheMaxBytes int64 `json:"cacheMaxBytes,omitempty"`
	// Sandbox makes the runner a pod sandbox (the "pause" container of a Kubernetes pod): it runs
	// no module and holds the pod's namespaces (those Spawn created, and NetNS) until it gets
	// SIGTERM or SIGINT, when it exits 0, or is killed. Module, Args and Rootfs are ignored.
	Sandbox bool `json:"sandbox,omitempty"`
	// NetNS is the network namespace the runner joins before anything else (a path such as
	// /var/run/netns/cni-... or /proc/PID/ns/net); empty keeps the shim's.
	NetNS string `json:"netns,omitempty"`
	// Listen are the TCP addresses the container declared in WAZERO_LISTEN (oci.ListenEnv). The
	// runner listens on each at Create, in its network namespace, and the guest gets them as
	// preopened sockets in this order, after its preopened directories; their fd numbers are in
	// the guest's WAZERO_LISTEN_FDS (oci.ListenFDsEnv). See listen.go.
	Listen []oci.ListenAddr `json:"listen,omitempty"`
	// BindPrivileged allows Listen ports below the network namespace's
	// net.ipv4.ip_unprivileged_port_start: the container's process has CAP_NET_BIND_SERVICE.
	// Without it such a port is refused with "permission denied", as the kernel would refuse the
	// process itself (the runner runs as root, so the kernel never would).
	BindPrivileged bool `json:"bindPrivileged,omitempty"`
	// WAGI, when set, selects the per-request mode (oci.WAGIEnv): the runner serves HTTP on
	// WAGI.Listen itself and runs a fresh instance of the module for each request, CGI style.
	// Listen must then be empty. See wagi.go.
	WAGI *oci.WAGI `json:"wagi,omitempty"`
	// MemoryLimit is the container's memory limit in bytes (0: none). In the per-request mode
	// the runner's Go heap holds every instance's memory, so its garbage collector is told to
	// stay under this (runtime/debug.SetMemoryLimit).
	MemoryLimit int64 `json:"memoryLimit,omitempty"`
	// ColdStart is what to do when the module is not in the compilation cache yet:
	// oci.ColdStartInterpret runs it in wazero's interpreter (Prepared.Interpreted) and leaves
	// the compile to FillCache; anything else (oci.ColdStartCompile, "") compiles it first. The
	// shim resolves oci.ColdStartAuto before it gets here.
	ColdStart oci.ColdStart `json:"coldStart,omitempty"`
	// Security is the container's security context (user, capabilities, no_new_privs, rlimits,
	// oom_score_adj, seccomp), applied by the runner to itself after its privileged setup and
	// before guest code runs (drop_linux.go). nil keeps the runner as it was started (root): for
	// unit tests only; the shim always sends one.
	Security *oci.Security `json:"security,omitempty"`
	// NoIsolation skips the private mount namespace and pivot_root: the guest's "/" is then a wazero
	// preopen of Rootfs. For unit tests that run without root; the shim always isolates.
	NoIsolation bool `json:"noIsolation,omitempty"`
}
