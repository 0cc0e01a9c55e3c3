package shim

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/engine"
	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// moduleSource finds a container's module outside its rootfs: in the layers of its image. On
// success, release ends the hold on the module's file that keeps it from being removed (see
// modgc.go): it is called once the runner has read the module.
type moduleSource interface {
	module(ctx context.Context, id, args0 string) (_ oci.Module, release func(), _ error)
}

// runnerConfig builds what a runner needs from the spec: for a pod sandbox, just the namespaces
// to hold; for a workload, the resolved module (findModule), then the rest of its configuration
// (workloadConfig). Errors name the module or mount at fault.
//
// release, never nil, must be called once the runner has read the module (after its Configure):
// a module from the image's layers is held until then. On error nothing is held.
func runnerConfig(ctx context.Context, spec *specs.Spec, id, rootfs string, node *settings, images moduleSource) (_ *engine.Config, release func(), _ error) {
	sec, err := oci.ReadSecurity(spec)
	if err != nil {
		return nil, nil, err
	}
	if oci.IsSandbox(spec) {
		return &engine.Config{ID: id, Sandbox: true, NetNS: oci.NetNSPath(spec), Security: sec}, func() {}, nil
	}
	if err := noNUL(spec.Process); err != nil {
		return nil, nil, err
	}
	mod, release, err := findModule(ctx, spec.Process, id, rootfs, images)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := workloadConfig(spec, id, rootfs, node, sec, mod)
	if err != nil {
		release()
		return nil, nil, err
	}
	return cfg, release, nil
}

// findModule resolves the module of proc.Args[0]: in the rootfs first, which costs nothing more;
// only when it is not there are the image's own layers asked for one (images, nil for none). See
// RATIONALE.md. release, never nil on success, ends the hold on a module from the image's layers.
func findModule(ctx context.Context, proc *specs.Process, id, rootfs string, images moduleSource) (_ oci.Module, release func(), _ error) {
	release = func() {}
	mod, err := oci.ResolveModule(rootfs, proc.Args[0], proc.Cwd, proc.Env)
	if !errdefs.IsNotFound(err) || images == nil {
		return mod, release, err
	}
	m, rel, ierr := images.module(ctx, id, proc.Args[0])
	switch {
	case ierr == nil:
		if rel != nil {
			release = rel
		}
		return m, release, nil
	case oci.IsNoWasmLayer(ierr):
		// Keep the rootfs's error (and its kind): that is where most modules are.
		return oci.Module{}, nil, fmt.Errorf("%w; no module in the image's layers either: %s", err, strings.TrimSuffix(ierr.Error(), ": "+oci.ErrNoWasmLayer.Error()))
	default:
		return oci.Module{}, nil, ierr
	}
}

// workloadConfig is a workload runner's configuration around its module mod: mounts, what it
// serves (listen), the root preopen, the cold-start policy (the container's, else the node's),
// the guest's environment and the node's compilation cache.
func workloadConfig(spec *specs.Spec, id, rootfs string, node *settings, sec *oci.Security, mod oci.Module) (*engine.Config, error) {
	proc := spec.Process
	mounts, err := oci.BindMounts(spec)
	if err != nil {
		return nil, err
	}
	listen, wagi, err := serving(spec)
	if err != nil {
		return nil, err
	}
	rootPreopen, err := oci.RootPreopen(spec)
	if err != nil {
		return nil, err
	}
	coldStart, err := oci.ParseColdStart(proc.Env, node.ColdStart)
	if err != nil {
		return nil, err
	}
	// The cache and its size bound come from the shim's settings (containerd's environment),
	// which the runner, started with an environment of its own, does not see.
	cacheDir, maxBytes := node.CacheDir, node.CacheMaxBytes
	if cacheDir == "" {
		maxBytes = 0
	}
	return &engine.Config{
		ID:             id,
		Module:         mod,
		Args:           proc.Args,
		Env:            guestEnv(proc),
		Rootfs:         rootfs,
		RootReadOnly:   spec.Root != nil && spec.Root.Readonly,
		NoRootPreopen:  !rootPreopen,
		Mounts:         mounts,
		MemoryPages:    oci.MemoryPages(oci.MemoryLimit(spec)),
		MemoryLimit:    oci.MemoryLimit(spec),
		CacheDir:       cacheDir,
		CacheMaxBytes:  maxBytes,
		NetNS:          oci.NetNSPath(spec),
		Listen:         listen,
		WAGI:           wagi,
		ColdStart:      coldStart.Resolve(len(listen) > 0 || wagi != nil),
		BindPrivileged: oci.Has(sec.FinalCaps().Effective, unix.CAP_NET_BIND_SERVICE),
		Security:       sec,
	}, nil
}

// serving is what the container serves, from its environment: the addresses of WAZERO_LISTEN and
// the WAGI settings of WAZERO_WAGI. Either is refused for a container that asks for a network
// namespace of its own: the shim creates none (see oci.NetNSPath), and listening in the shim's
// would expose the container on the host's network, which it did not ask for.
func serving(spec *specs.Spec) (listen []oci.ListenAddr, wagi *oci.WAGI, _ error) {
	env := spec.Process.Env
	listen, err := oci.Listen(env)
	if err != nil {
		return nil, nil, err
	}
	if wagi, err = oci.ParseWAGI(env); err != nil {
		return nil, nil, err
	}
	if (len(listen) > 0 || wagi != nil) && oci.NewNetNS(spec) {
		variable := oci.ListenEnv
		if wagi != nil {
			variable = oci.WAGIEnv
		}
		return nil, nil, fmt.Errorf("%s is set, but the container asks for a new network namespace of its own, which this runtime does not create: give it a network namespace to join (Kubernetes pods have one) or host networking (ctr run --net-host): %w",
			variable, errdefs.ErrInvalidArgument)
	}
	return listen, wagi, nil
}

// guestEnv is the guest's environment: the process's, with PWD set to its working directory when
// that is not / and PWD is not set. WASI preview 1 has no working directory; PWD is how guests
// (Go's wasip1 runtime among them) learn it. See RATIONALE.md.
func guestEnv(proc *specs.Process) []string {
	env := proc.Env
	if cwd := filepath.Clean("/" + proc.Cwd); cwd != "/" {
		if _, ok := oci.Env(env, "PWD"); !ok {
			env = append(append([]string(nil), env...), "PWD="+cwd)
		}
	}
	return env
}

// noNUL refuses args and env entries with a NUL byte: WASI passes them as C strings, so the guest
// would see them cut (and wazero traps on env ones). The value is not quoted: it may be a secret.
func noNUL(proc *specs.Process) error {
	for i, a := range proc.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("process.args[%d] contains a NUL byte, which a WASI argument cannot hold: %w", i, errdefs.ErrInvalidArgument)
		}
	}
	for i, kv := range proc.Env {
		if strings.IndexByte(kv, 0) >= 0 {
			name, _, _ := strings.Cut(kv, "=")
			return fmt.Errorf("process.env[%d] (%q) contains a NUL byte, which a WASI environment variable cannot hold: %w", i, name, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// cloneflags are the namespaces the runner is created in besides its mount namespace.
func cloneflags(spec *specs.Spec) uintptr {
	if oci.IsSandbox(spec) {
		return oci.SandboxCloneflags(spec)
	}
	return 0
}
