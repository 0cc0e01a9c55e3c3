package shim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/pkg/sys/reaper"
	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/engine"
	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// containerRuntime creates the instances behind containers (wasm runners, or runc for native
// containers: runtime.go, native.go). The task service depends only on this, so
// its state machine and event order are tested with a fake.
type containerRuntime interface {
	// Create prepares the container of r and starts its runner, which waits for instance.Start.
	// onExit is called exactly once, from another goroutine, when the runner exits, unless
	// Create fails; onOOM each time the kernel OOM-kills in the container's cgroup.
	Create(ctx context.Context, r *taskAPI.CreateTaskRequest, onExit func(status int, at time.Time), onOOM func()) (instance, error)
}

// instance is one container's running parts.
type instance interface {
	Pid() int
	// Start lets guest code run.
	Start() error
	// Kill sends sig to the runner (and, with all, to its whole process group).
	Kill(sig syscall.Signal, all bool) error
	Pause() error
	Resume() error
	Stats() (*anypb.Any, error)
	// CloseStdin releases the shim's hold on the guest's stdin.
	CloseStdin()
	// Cleanup releases everything once the runner has exited: stdio, rootfs mount, cgroup.
	Cleanup(ctx context.Context) error
	// Exec prepares an exec process of the container (exec.go): a runner of its own, ready to
	// run proc's module once started. onExit is called exactly once, from another goroutine,
	// when that runner exits, unless Exec fails.
	Exec(ctx context.Context, execID string, proc *specs.Process, io execIO, onExit func(status int, at time.Time)) (process, error)
	// Update changes the container's resource limits live (update.go).
	Update(res *specs.LinuxResources) error
}

// wasmRuntime is the real runtime: runners in cgroups, with the rootfs mounted by the shim.
type wasmRuntime struct {
	self      string
	namespace string
	node      settings      // the node's settings, read once at start (settings.go)
	images    *imageModules // modules in image layers (image.go); nil: rootfs only
	runnerBin *runnerBinary // the runner executable beside the shim (runnerexe.go); nil: self
}

type wasmInstance struct {
	rt      *wasmRuntime
	id      string
	specMu  sync.Mutex
	spec    *specs.Spec        // the container's spec, guarded by specMu: exec processes are configured from it
	execs   map[*wasmExec]bool // exec runners not cleaned up yet, guarded by specMu (Update caps them)
	rootDir string             // the rootfs the guest sees as "/" (the mount, or spec.root.path)
	bundle  string
	rootfs  string // mounted by the shim, unmounted by Cleanup; empty when nothing was mounted
	runner  *engine.Runner
	cg      cgroup // nil when the spec names no cgroup
	stopOOM func() // stops the cgroup's OOM watch
	stdio   *stdio
	exited  chan struct{}
	status  int         // the runner's exit status, once exited is closed
	oomKill atomic.Bool // the kernel OOM-killed in the cgroup
	cleaned bool
}

// Create makes the container of r: it mounts the rootfs, chooses the runtime (a native program is
// handed to runc, native.go), creates the cgroup, spawns the runner and waits until it is ready
// (module compiled or loaded, mounts made, privileges dropped). Everything acquired is released
// if a later step fails (inst.Cleanup, and the runner killed once spawned).
func (w *wasmRuntime) Create(ctx context.Context, r *taskAPI.CreateTaskRequest, onExit func(int, time.Time), onOOM func()) (_ instance, retErr error) {
	if r.Terminal {
		return nil, fmt.Errorf("a terminal (tty) is not supported by this runtime (wasm or native containers); run without -t: %w", errdefs.ErrNotImplemented)
	}
	if r.Checkpoint != "" {
		return nil, fmt.Errorf("restoring a checkpoint is not supported: %w", errdefs.ErrNotImplemented)
	}
	spec, err := oci.LoadSpec(r.Bundle)
	if err != nil {
		return nil, err
	}
	inst := &wasmInstance{rt: w, id: r.ID, spec: spec, bundle: r.Bundle, exited: make(chan struct{})}
	defer func() {
		if retErr != nil {
			_ = inst.Cleanup(ctx)
		}
	}()
	if err := inst.mountRootfs(r); err != nil {
		return nil, err
	}
	cfg, release, native, err := w.chooseRuntime(ctx, r.ID, spec, inst.rootDir)
	if err != nil {
		return nil, err
	}
	if native {
		return w.handOff(ctx, r, spec, inst, onExit, onOOM)
	}
	// A module copied out of the image is held until the runner has read it, which it does first
	// thing in Configure, below: until then no other Create's eviction can remove it.
	defer release()
	if err := inst.makeCgroup(ctx, onOOM); err != nil {
		return nil, err
	}
	if inst.stdio, err = openStdio(ctx, r.ID, w.namespace, r.Stdin, r.Stdout, r.Stderr); err != nil {
		return nil, err
	}
	pid, err := inst.spawn(ctx, cfg, onExit)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			<-inst.exited
		}
	}()
	if inst.cg != nil {
		if err := addRunner(inst.cg, pid); err != nil {
			return nil, fmt.Errorf("put runner in cgroup %s: %w", inst.cgroupsPath(), err)
		}
	}
	start, _ := processStartTime(pid)
	if err := writeState(r.Bundle, persisted{Pid: pid, StartTime: start, CgroupsPath: inst.cgroupsPath()}); err != nil {
		return nil, fmt.Errorf("record shim state: %w", err)
	}
	if err := inst.awaitReady(ctx, cfg, pid); err != nil {
		return nil, err
	}
	return inst, nil
}

// mountRootfs mounts r's rootfs (when containerd passes mounts) at the bundle's rootfs and sets
// inst.rootDir to the container's root: spec.root.path, relative to the bundle, when set.
func (inst *wasmInstance) mountRootfs(r *taskAPI.CreateTaskRequest) error {
	rootfs := filepath.Join(r.Bundle, "rootfs")
	if len(r.Rootfs) > 0 {
		if err := mountRootfs(r.Rootfs, rootfs); err != nil {
			return err
		}
		inst.rootfs = rootfs
	}
	if spec := inst.spec; spec.Root != nil && spec.Root.Path != "" {
		rootfs = spec.Root.Path
		if !filepath.IsAbs(rootfs) {
			rootfs = filepath.Join(r.Bundle, rootfs)
		}
	}
	inst.rootDir = rootfs
	return nil
}

// chooseRuntime decides which runtime runs container id (runtimechoice.go, docs/kubernetes.md
// "Mixed pods") and logs it: an annotation, else the module lookup of runnerConfig, else a native
// program at args[0]. The wasm path pays two map lookups. For a wasm container (or the pod
// sandbox) it returns the runner's config and the release of its module's hold; native is true
// when runc runs the container instead.
func (w *wasmRuntime) chooseRuntime(ctx context.Context, id string, spec *specs.Spec, rootfs string) (cfg *engine.Config, release func(), native bool, err error) {
	sandbox := oci.IsSandbox(spec)
	choice, annotation, err := oci.ChosenRuntime(spec)
	if err != nil && !sandbox {
		return nil, nil, false, err
	}
	if !sandbox && choice == oci.RuntimeNative {
		logChoice(ctx, id, oci.RuntimeNative, fmt.Sprintf("annotation %s=native", annotation))
		return nil, nil, true, nil
	}
	cfg, release, err = runnerConfig(ctx, spec, id, rootfs, &w.node, w.images)
	if err != nil {
		if !sandbox && choice == oci.RuntimeAuto {
			p := spec.Process
			if guest, kind, ok := oci.NativeProgram(rootfs, p.Args[0], p.Cwd, p.Env); ok {
				logChoice(ctx, id, oci.RuntimeNative, fmt.Sprintf("args[0] %q is %s, a native %s, not a WebAssembly module", p.Args[0], guest, kind))
				return nil, nil, true, nil
			}
		}
		return nil, nil, false, err
	}
	if !sandbox {
		reason := fmt.Sprintf("args[0] is the WebAssembly module %s", cfg.Module.GuestPath)
		if choice == oci.RuntimeWasm {
			reason = fmt.Sprintf("annotation %s=wasm; %s", annotation, reason)
		}
		logChoice(ctx, id, oci.RuntimeWasm, reason)
	}
	return cfg, release, false, nil
}

// cgroupsPath is the spec's linux.cgroupsPath, "" when it names none.
func (inst *wasmInstance) cgroupsPath() string {
	if inst.spec.Linux == nil {
		return ""
	}
	return inst.spec.Linux.CgroupsPath
}

// makeCgroup creates the container's cgroup with the spec's resources and watches it for OOM
// kills (onOOM), when the spec names one. The path is recorded in the bundle's state first, so a
// shim that dies from here on leaves the `delete` action what it needs to remove the cgroup and
// whatever is in it (Manager.Stop).
func (inst *wasmInstance) makeCgroup(ctx context.Context, onOOM func()) (err error) {
	path := inst.cgroupsPath()
	if path == "" {
		return nil
	}
	if err := writeState(inst.bundle, persisted{CgroupsPath: path}); err != nil {
		return fmt.Errorf("record shim state: %w", err)
	}
	if inst.cg, err = newCgroup(path, inst.spec.Linux.Resources); err != nil {
		return err
	}
	if inst.stopOOM, err = inst.cg.WatchOOM(func() { inst.oomKill.Store(true); onOOM() }); err != nil {
		log.G(ctx).WithError(err).WithField("id", inst.id).Warn("cannot watch for OOM kills")
	}
	return nil
}

// spawn starts the container's runner through the reaper (it waits for its config) and a
// goroutine that, when the runner exits, records the status in the bundle's state, closes
// inst.exited and calls onExit. It returns the runner's pid.
func (inst *wasmInstance) spawn(ctx context.Context, cfg *engine.Config, onExit func(int, time.Time)) (int, error) {
	w := inst.rt
	var ec chan runc.Exit
	exe := w.runnerBin.open(ctx)
	var err error
	inst.runner, err = engine.Spawn(w.self, inst.id, inst.stdio.runner, engine.SpawnOptions{
		Start: func(cmd *exec.Cmd) (err error) {
			ec, err = reaper.Default.Start(cmd)
			return err
		},
		Cloneflags: cloneflags(inst.spec),
		MaxProcs:   sandboxMaxProcs(cfg),
		Exe:        exe,
	})
	if exe != nil {
		exe.Close()
	}
	inst.stdio.runnerDone()
	if err != nil {
		close(inst.exited)
		return 0, err
	}
	go func() {
		status, _ := reaper.Default.Wait(inst.runner.Cmd, ec)
		at := time.Now()
		inst.status = status
		// The reaper reaped it, not Cmd.Wait, so the process handle's pidfd is still open: a pod's
		// shim would keep one per container it ever ran (TestCRIPodShimSteady).
		_ = inst.runner.Cmd.Process.Release()
		if st, err := readState(inst.bundle); err == nil {
			st.Exited, st.ExitStatus, st.ExitedAt = true, uint32(status), at
			_ = writeState(inst.bundle, st)
		}
		close(inst.exited)
		onExit(status, at)
	}()
	return inst.runner.Pid(), nil
}

// awaitReady sends the runner its config and waits until it is ready, then records the compile
// or cache load as a trace span, logs "runner ready" (the tests and the benchmarks read its
// fields), and starts a background compile when the module runs interpreted.
func (inst *wasmInstance) awaitReady(ctx context.Context, cfg *engine.Config, pid int) error {
	began := time.Now()
	ready, err := inst.runner.ConfigureContext(ctx, cfg)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("container %s: Create was given up (%w) while the runner prepared module %s; the runner was stopped", inst.id, ctx.Err(), cfg.Module.GuestPath)
	}
	if err != nil {
		return fmt.Errorf("container %s: %w: %w", inst.id, inst.explain(err, cfg, oci.MemoryLimit(inst.spec)), errdefs.ErrFailedPrecondition)
	}
	phase := "wazero.compile"
	if ready.CacheHit {
		phase = "wazero.cache_load"
	}
	recordPhase(ctx, phase, began, time.Duration(ready.CompileMillis)*time.Millisecond,
		attribute.String("module", cfg.Module.GuestPath), attribute.String("module.digest", ready.Digest),
		attribute.Bool("cache.hit", ready.CacheHit), attribute.Bool("interpreted", ready.Interpreted))
	if ready.CacheProblem != "" {
		log.G(ctx).WithFields(log.Fields{"id": inst.id, "module": cfg.Module.GuestPath}).Warn(ready.CacheProblem)
	}
	log.G(ctx).WithFields(log.Fields{
		"id": inst.id, "module": cfg.Module.GuestPath, "sandbox": cfg.Sandbox, "pid": pid, "cacheHit": ready.CacheHit,
		"digest": ready.Digest, "compileMillis": ready.CompileMillis, "readyMillis": time.Since(began).Milliseconds(),
		"interpreted": ready.Interpreted, "pageFaults": ready.PageFaults, "hugePageBytes": ready.HugePageBytes,
	}).Info("runner ready")
	if ready.Interpreted {
		inst.rt.fillCache(ctx, cfg)
	}
	if ready.Evicted > 0 {
		log.G(ctx).WithFields(log.Fields{"id": inst.id, "evicted": ready.Evicted, "evictedBytes": ready.EvictedBytes, "maxBytes": cfg.CacheMaxBytes}).
			Info("compilation cache: removed least recently used entries")
	}
	return nil
}

// logChoice logs which runtime runs container id, and why (docs/kubernetes.md, "Mixed pods").
func logChoice(ctx context.Context, id string, rt oci.Runtime, reason string) {
	log.G(ctx).WithFields(log.Fields{"id": id, "runtime": string(rt), "reason": reason}).Info("container runtime chosen")
}

// handOff gives the container of r to the native runtime: the rootfs the wasm Create mounted
// becomes the native instance's to unmount.
func (w *wasmRuntime) handOff(ctx context.Context, r *taskAPI.CreateTaskRequest, spec *specs.Spec, inst *wasmInstance, onExit func(int, time.Time), onOOM func()) (instance, error) {
	mounted := inst.rootfs
	inst.rootfs = ""
	return newNativeRuntime(w.namespace).create(ctx, r, spec, mounted, w.namespace, onExit, onOOM)
}

// explain turns a runner that died before it was ready into a message that says why, when the
// kernel says it was the OOM killer: the memory limit is too small for the module.
func (i *wasmInstance) explain(err error, cfg *engine.Config, limit int64) error {
	if !errors.Is(err, engine.ErrRunnerDied) {
		return err
	}
	select {
	case <-i.exited:
	case <-time.After(2 * time.Second):
		return err
	}
	if i.status == 128+int(syscall.SIGKILL) && (i.oomKill.Load() || limit > 0) {
		by := ""
		if i.oomKill.Load() {
			by = " by the OOM killer"
		}
		return fmt.Errorf("the runner of module %s was killed (SIGKILL%s) while loading it: the container's memory limit of %d MiB is too small for this module; raise the limit",
			cfg.Module.GuestPath, by, limit>>20)
	}
	if i.status > 128 {
		return fmt.Errorf("%w: killed by signal %d (%v)", engine.ErrRunnerDied, i.status-128, syscall.Signal(i.status-128))
	}
	return fmt.Errorf("%w (exit status %d)", err, i.status)
}

func (i *wasmInstance) Pid() int     { return i.runner.Pid() }
func (i *wasmInstance) Start() error { return i.runner.Start() }

// Kill signals the runner through its process handle, a pidfd (Go's os.Process on Linux): once
// the runner has exited and been reaped, its pid may be another process's, and a signal by pid
// could reach it. With all, the runner's process group gets the signal, once the handle shows
// the runner (its leader, engine.Spawn) is still there.
func (i *wasmInstance) Kill(sig syscall.Signal, all bool) error {
	select {
	case <-i.exited: // reaped, its handle released
		return fmt.Errorf("process already finished: %w", errdefs.ErrNotFound)
	default:
	}
	return signalRunner(i.runner.Cmd.Process, sig, all)
}

// signalRunner is Kill for any runner, the container's or an exec process's. A handle released
// after the reaper reaped the runner counts as finished.
func signalRunner(p *os.Process, sig syscall.Signal, all bool) error {
	err := p.Signal(syscall.Signal(0))
	if err == nil {
		if all {
			err = syscall.Kill(-p.Pid, sig)
		} else {
			err = p.Signal(sig)
		}
	}
	if errors.Is(err, os.ErrProcessDone) || errors.Is(err, syscall.ESRCH) || err != nil && strings.Contains(err.Error(), "process already released") {
		return fmt.Errorf("process already finished: %w", errdefs.ErrNotFound)
	}
	return err
}

func (i *wasmInstance) Pause() error {
	if i.cg == nil {
		return fmt.Errorf("pause needs a cgroup (linux.cgroupsPath): %w", errdefs.ErrFailedPrecondition)
	}
	return i.cg.Freeze()
}

func (i *wasmInstance) Resume() error {
	if i.cg == nil {
		return fmt.Errorf("resume needs a cgroup (linux.cgroupsPath): %w", errdefs.ErrFailedPrecondition)
	}
	return i.cg.Thaw()
}

func (i *wasmInstance) Stats() (*anypb.Any, error) {
	if i.cg == nil {
		return nil, fmt.Errorf("stats need a cgroup (linux.cgroupsPath): %w", errdefs.ErrNotFound)
	}
	return i.cg.Metrics()
}

func (i *wasmInstance) CloseStdin() { i.stdio.CloseStdin() }

// Cleanup releases the runner's pipes, stops the OOM watch and removes the container's cgroup,
// then releases the stdio and the rootfs mount and removes the shim's state (finishCleanup).
func (i *wasmInstance) Cleanup(ctx context.Context) error {
	if i.cleaned {
		return nil
	}
	i.cleaned = true
	if i.runner != nil {
		i.runner.Close()
	}
	var errs []error
	if i.stopOOM != nil {
		i.stopOOM()
	}
	if i.cg != nil {
		if err := deleteCgroup(i.cg); err != nil {
			errs = append(errs, fmt.Errorf("remove cgroup: %w", err))
		}
	}
	return finishCleanup(ctx, errs, i.stdio, i.rootfs, i.bundle)
}

// deleteCgroup removes a cgroup, retrying briefly while the kernel finishes tearing down the
// exited runner (rmdir fails with EBUSY until then).
func deleteCgroup(cg cgroup) error {
	var err error
	for i := 0; i < 50; i++ {
		if err = cg.Delete(); err == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return err
}

// sandboxMaxProcs gives a pod sandbox's runner, which runs no guest, a single P (see
// engine.SpawnOptions.MaxProcs; workloads get Spawn's default, also 1, raised for cold compiles).
func sandboxMaxProcs(cfg *engine.Config) int {
	if cfg.Sandbox {
		return 1
	}
	return 0
}

// fillCache starts a filler that compiles the module of cfg into the node's compilation cache,
// in the background, for the container's runner runs it in the interpreter (the module's first
// run on the node, cold-start policy interpret). The filler runs in a cgroup of its own with a
// memory and a CPU limit (fillcgroup.go), outlives the container if it must, and its result is
// logged. Failing to start it only costs the next run another interpreted start, so it is
// logged, not returned; so is a module bigger than the fillers' cap, which is not compiled in the
// background at all.
func (w *wasmRuntime) fillCache(ctx context.Context, cfg *engine.Config) {
	lg := log.G(ctx).WithFields(log.Fields{"id": cfg.ID, "module": cfg.Module.GuestPath})
	limits := w.node.Fill
	// Copied here, while the rootfs is surely mounted, into memory the filler reads: it never
	// holds the rootfs (fillModule).
	f, err := fillModule(cfg.Module.HostPath, limits.MaxModuleBytes)
	if err != nil {
		lg.WithError(err).Warn("compilation cache: cannot fill it in the background")
		return
	}
	defer f.Close()
	var ec chan runc.Exit
	run, err := hostFillCgroups().startFiller(ctx, w.self, cfg, f, limits, func(cmd *exec.Cmd) (err error) {
		ec, err = reaper.Default.Start(cmd)
		return err
	}, func(cmd *exec.Cmd) (int, error) {
		defer cmd.Process.Release() // reaped by the reaper: close the handle's pidfd
		return reaper.Default.Wait(cmd, ec)
	})
	if errors.Is(err, engine.ErrFillTooBig) {
		lg.WithError(err).Warn("compilation cache: module too big to compile in the background; it runs in the interpreter, now and at its later starts, until it is compiled (WAZERO_COLD_START=compile)")
		return
	}
	if err != nil {
		lg.WithError(err).Warn("compilation cache: cannot fill it in the background")
		return
	}
	lg = lg.WithFields(log.Fields{"fillerPid": run.filler.Cmd.Process.Pid, "cgroup": run.cg.path})
	lg.WithFields(log.Fields{"memoryLimit": run.limits.MemoryBytes, "cpus": run.limits.CPUs}).
		Info("compilation cache: compiling in the background (the container runs in the interpreter)")
	go func() {
		<-run.done
		if run.rmErr != nil {
			lg.WithError(run.rmErr).Warn("compilation cache: cannot remove the background compile's cgroup")
		}
		res, err := run.res, run.err
		switch {
		case errors.Is(err, engine.ErrFillTooBig):
			lg.WithError(err).Warn("compilation cache: module too big to compile in the background")
		case err != nil && run.killedBySIGKILL():
			lg.WithError(err).WithField("memoryLimit", run.limits.MemoryBytes).
				Warn("compilation cache: background compile killed (SIGKILL), most likely by the OOM killer at its cgroup's memory limit (" + engine.FillMemoryBytesEnv + ")")
		case err != nil:
			lg.WithError(err).Warn("compilation cache: background compile failed")
		default:
			if res.CacheProblem != "" {
				lg.Warn(res.CacheProblem)
			}
			lg.WithFields(log.Fields{"compileMillis": res.CompileMillis, "slotMillis": res.SlotMillis, "cacheHit": res.CacheHit, "evicted": res.Evicted}).
				Info("compilation cache: background compile done")
		}
	}()
}
