package shim

import (
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/engine"
	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// runnerConfig builds what a runner needs from the spec: for a pod sandbox, just the namespaces
// to hold; for a workload, the resolved module, args, env, mounts and memory cap. Errors name the
// module or mount at fault.
func runnerConfig(spec *specs.Spec, id, rootfs, cacheDir string) (*engine.Config, error) {
	if oci.IsSandbox(spec) {
		return &engine.Config{ID: id, Sandbox: true, NetNS: oci.NetNSPath(spec)}, nil
	}
	proc := spec.Process
	mod, err := oci.ResolveModule(rootfs, proc.Args[0], proc.Cwd, proc.Env)
	if err != nil {
		return nil, err
	}
	mounts, err := oci.BindMounts(spec)
	if err != nil {
		return nil, err
	}
	env := proc.Env
	if cwd := filepath.Clean("/" + proc.Cwd); cwd != "/" {
		if _, ok := oci.Env(env, "PWD"); !ok {
			// WASI preview 1 has no working directory; PWD is how guests (Go's wasip1 runtime
			// among them) learn it. See RATIONALE.md.
			env = append(append([]string(nil), env...), "PWD="+cwd)
		}
	}
	return &engine.Config{
		ID:           id,
		Module:       mod,
		Args:         proc.Args,
		Env:          env,
		Rootfs:       rootfs,
		RootReadOnly: spec.Root != nil && spec.Root.Readonly,
		Mounts:       mounts,
		MemoryPages:  oci.MemoryPages(oci.MemoryLimit(spec)),
		CacheDir:     cacheDir,
		NetNS:        oci.NetNSPath(spec),
	}, nil
}

// cloneflags are the namespaces the runner is created in besides its mount namespace.
func cloneflags(spec *specs.Spec) uintptr {
	if oci.IsSandbox(spec) {
		return oci.SandboxCloneflags(spec)
	}
	return 0
}
