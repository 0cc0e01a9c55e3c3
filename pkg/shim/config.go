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
// to hold; for a workload, the resolved module, args, env, mounts and memory cap. Errors name the
// module or mount at fault.
//
// The module is looked up in the rootfs first, which costs nothing more; only when args[0] is not
// there are the image's own layers asked for one (images, nil for none). See RATIONALE.md.
//
// release, never nil, must be called once the runner has read the module (after its Configure):
// a module from the image's layers is held until then.
func runnerConfig(ctx context.Context, spec *specs.Spec, id, rootfs string, node *settings, images moduleSource) (_ *engine.Config, release func(), retErr error) {
	hold := func() {}
	defer func() {
		if retErr != nil {
			hold()
		}
	}()
	sec, err := oci.ReadSecurity(spec)
	if err != nil {
		return nil, nil, err
	}
	if oci.IsSandbox(spec) {
		return &engine.Config{ID: id, Sandbox: true, NetNS: oci.NetNSPath(spec), Security: sec}, hold, nil
	}
	proc := spec.Process
	if err := noNUL(proc); err != nil {
		return nil, nil, err
	}
	mod, err := oci.ResolveModule(rootfs, proc.Args[0], proc.Cwd, proc.Env)
	if errdefs.IsNotFound(err) && images != nil {
		m, rel, ierr := images.module(ctx, id, proc.Args[0])
		switch {
		case ierr == nil:
			mod, err = m, nil
			if rel != nil {
				hold = rel
			}
		case oci.IsNoWasmLayer(ierr):
			// Keep the rootfs's error (and its kind): that is where most modules are.
			err = fmt.Errorf("%w; no module in the image's layers either: %s", err, strings.TrimSuffix(ierr.Error(), ": "+oci.ErrNoWasmLayer.Error()))
		default:
			err = ierr
		}
	}
	if err != nil {
		return nil, nil, err
	}
	mounts, err := oci.BindMounts(spec)
	if err != nil {
		return nil, nil, err
	}
	listen, err := oci.Listen(proc.Env)
	if err != nil {
		return nil, nil, err
	}
	wagi, err := oci.ParseWAGI(proc.Env)
	if err != nil {
		return nil, nil, err
	}
	if (len(listen) > 0 || wagi != nil) && oci.NewNetNS(spec) {
		// The shim creates no network namespace (see oci.NetNSPath): listening in the shim's
		// would expose the container on the host's network, which it did not ask for.
		variable := oci.ListenEnv
		if wagi != nil {
			variable = oci.WAGIEnv
		}
		return nil, nil, fmt.Errorf("%s is set, but the container asks for a new network namespace of its own, which this runtime does not create: give it a network namespace to join (Kubernetes pods have one) or host networking (ctr run --net-host): %w",
			variable, errdefs.ErrInvalidArgument)
	}
	rootPreopen, err := oci.RootPreopen(spec)
	if err != nil {
		return nil, nil, err
	}
	// The container's cold-start policy, else the node's.
	coldStart, err := oci.ParseColdStart(proc.Env, node.ColdStart)
	if err != nil {
		return nil, nil, err
	}
	env := proc.Env
	if cwd := filepath.Clean("/" + proc.Cwd); cwd != "/" {
		if _, ok := oci.Env(env, "PWD"); !ok {
			// WASI preview 1 has no working directory; PWD is how guests (Go's wasip1 runtime
			// among them) learn it. See RATIONALE.md.
			env = append(append([]string(nil), env...), "PWD="+cwd)
		}
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
		Env:            env,
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
	}, hold, nil
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
