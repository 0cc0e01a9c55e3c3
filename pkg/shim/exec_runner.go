package shim

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/pkg/sys/reaper"
	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"go.opentelemetry.io/otel/attribute"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/engine"
	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// execIO are an exec process's stdio paths, as ExecProcessRequest gives them (see openStdio).
type execIO struct {
	Stdin, Stdout, Stderr string
}

// process is one exec process's running parts: a runner of its own (see Exec).
type process interface {
	Pid() int
	// Start lets the exec's guest code run.
	Start() error
	// Kill signals the exec's runner; ErrNotFound once it has exited.
	Kill(sig syscall.Signal) error
	// CloseStdin releases the shim's hold on the exec's stdin.
	CloseStdin()
	// Cleanup releases the exec's stdio and pipes once its runner has exited.
	Cleanup()
}

// wasmExec is an exec process: a runner spawned from the container's own configuration.
type wasmExec struct {
	inst    *wasmInstance
	runner  *engine.Runner
	stdio   *stdio
	exited  chan struct{}
	status  int // the runner's exit status, once exited is closed
	cleaned bool
}

// Exec prepares an exec process in the container: a runner spawned by the shim from the
// container's own spec, with proc (the exec's args, env, cwd, user, capabilities, no_new_privs,
// rlimits) in place of the container's process. It sees the container's filesystem (the same
// rootfs and mounts, rebuilt in a new mount namespace as the container's runner does; args[0] is
// looked up there, then in the image's wasm layers), joins the container's network namespace when
// the spec names one, runs in the container's cgroup, and writes to stdio of its own. It returns
// once the runner is ready (module compiled or loaded from the cache), waiting for Start.
//
// An exec process is always a WASI command: WAZERO_LISTEN and WAZERO_WAGI in its environment
// (inherited from the container's by ctr and the CRI plugin) are ignored, the container holds
// those addresses. A pod sandbox runs no module and cannot be exec'd into.
//
// Its steps: the runner's configuration (execConfig), its stdio and runner (spawnExec), the
// runner's configuration sent and its report awaited (configureExec), then the exec tracked for
// Update (trackExec). What a step acquires goes on one rollback list, run in reverse on error:
// the exec's stdio and runner handles (e.Cleanup), then its runner killed and reaped.
func (i *wasmInstance) Exec(ctx context.Context, execID string, proc *specs.Process, io execIO, onExit func(int, time.Time)) (_ process, retErr error) {
	fail := func(err error) error { return fmt.Errorf("exec %s in container %s: %w", execID, i.id, err) }
	cfg, release, err := i.execConfig(ctx, execID, proc)
	if err != nil {
		return nil, err
	}
	defer release() // once the runner has read the module, or failed to
	var cleanups []func()
	defer func() {
		if retErr != nil {
			for k := len(cleanups) - 1; k >= 0; k-- {
				cleanups[k]()
			}
		}
	}()

	e := &wasmExec{exited: make(chan struct{})}
	cleanups = append(cleanups, e.Cleanup)
	if err := i.spawnExec(ctx, e, execID, io, onExit); err != nil {
		return nil, fail(err)
	}
	cleanups = append(cleanups, func() {
		_ = e.runner.Cmd.Process.Kill()
		<-e.exited
	})
	if err := i.configureExec(ctx, e, execID, cfg); err != nil {
		return nil, fail(err)
	}
	i.trackExec(e, cfg)
	return e, nil
}

// execConfig is the configuration of an exec's runner: the container's spec as Update last left
// it, with proc as its process, and no listeners (see Exec). A pod sandbox is refused. release
// must be called once the runner has read the module (see runnerConfig).
func (i *wasmInstance) execConfig(ctx context.Context, execID string, proc *specs.Process) (_ *engine.Config, release func(), _ error) {
	i.specMu.Lock()
	spec := *i.spec // as Update last left it
	i.specMu.Unlock()
	if oci.IsSandbox(&spec) {
		return nil, nil, fmt.Errorf("container %s is a pod sandbox, which runs no module and has no filesystem to exec into: %w", i.id, errdefs.ErrInvalidArgument)
	}
	spec.Process = proc
	cfg, release, err := runnerConfig(ctx, &spec, i.id, i.rootDir, &i.rt.node, i.rt.images)
	if err != nil {
		return nil, nil, fmt.Errorf("exec %s in container %s: %w", execID, i.id, err)
	}
	cfg.Listen, cfg.WAGI, cfg.BindPrivileged = nil, nil, false
	cfg.ColdStart = execColdStart(proc.Env, i.rt.node.ColdStart)
	return cfg, release, nil
}

// spawnExec opens the exec's stdio (io) and spawns its runner, reaped by the reaper; onExit is
// called with its exit status once it is reaped, after e.exited is closed. When the spawn fails
// e.exited is closed at once; what was opened is left for e.Cleanup.
func (i *wasmInstance) spawnExec(ctx context.Context, e *wasmExec, execID string, io execIO, onExit func(int, time.Time)) error {
	var err error
	if e.stdio, err = openStdio(ctx, i.id, i.rt.namespace, io.Stdin, io.Stdout, io.Stderr); err != nil {
		return err
	}
	var ec chan runc.Exit
	exe := i.rt.runnerBin.open(ctx)
	e.runner, err = engine.Spawn(i.rt.self, i.id, e.stdio.runner, engine.SpawnOptions{
		Start: func(cmd *exec.Cmd) (err error) {
			ec, err = reaper.Default.Start(cmd)
			return err
		},
		Exe:    exe,
		ExecID: execID,
	})
	if exe != nil {
		exe.Close()
	}
	e.stdio.runnerDone()
	if err != nil {
		close(e.exited)
		return err
	}
	go func() {
		status, _ := reaper.Default.Wait(e.runner.Cmd, ec)
		at := time.Now()
		e.status = status
		_ = e.runner.Cmd.Process.Release() // reaped by the reaper: close the handle's pidfd
		close(e.exited)
		onExit(status, at)
	}()
	return nil
}

// configureExec puts the exec's runner in the container's cgroup, before its configuration is
// sent (the exec's compile is charged to the container, as runc's exec is), then sends cfg and
// waits for the runner's report; the compile or cache load is recorded as a trace phase and
// logged. A runner that died says its exit status.
func (i *wasmInstance) configureExec(ctx context.Context, e *wasmExec, execID string, cfg *engine.Config) error {
	if i.cg != nil {
		if err := addRunner(i.cg, e.runner.Pid()); err != nil {
			return fmt.Errorf("put its runner in the container's cgroup: %w", err)
		}
	}
	began := time.Now()
	ready, err := e.runner.ConfigureContext(ctx, cfg)
	if err != nil {
		if errors.Is(err, engine.ErrRunnerDied) {
			select {
			case <-e.exited:
				err = fmt.Errorf("%w (exit status %d; a status of 137 is a SIGKILL, most often the OOM killer at the container's memory limit)", err, e.status)
			case <-time.After(2 * time.Second):
			}
		}
		return fmt.Errorf("module %s: %w: %w", cfg.Module.GuestPath, err, errdefs.ErrFailedPrecondition)
	}
	phase := "wazero.compile"
	if ready.CacheHit {
		phase = "wazero.cache_load"
	}
	recordPhase(ctx, phase, began, time.Duration(ready.CompileMillis)*time.Millisecond,
		attribute.String("module", cfg.Module.GuestPath), attribute.Bool("cache.hit", ready.CacheHit))
	log.G(ctx).WithFields(log.Fields{
		"id": i.id, "exec": execID, "module": cfg.Module.GuestPath, "pid": e.runner.Pid(),
		"cacheHit": ready.CacheHit, "compileMillis": ready.CompileMillis, "interpreted": ready.Interpreted,
	}).Info("exec runner ready")
	return nil
}

// trackExec registers a ready exec with its container: from now on Update moves the exec's guest
// memory cap with the container's limit. The cap it started with (cfg's) is the one the spec had
// when it was configured; one that an Update changed meanwhile is applied here.
func (i *wasmInstance) trackExec(e *wasmExec, cfg *engine.Config) {
	i.specMu.Lock()
	defer i.specMu.Unlock()
	if i.execs == nil {
		i.execs = map[*wasmExec]bool{}
	}
	i.execs[e] = true
	e.inst = i
	if now := oci.MemoryPages(oci.MemoryLimit(i.spec)); now != cfg.MemoryPages && !hasWAGI(i.spec) {
		_ = e.runner.SetMemoryPages(now) // an Update came while the exec was being prepared
	}
}

// execColdStart is an exec process's cold-start policy: compile on a cache miss, so the compiled
// module is cached and the next exec of it (an exec probe's next run) loads it; interpret only
// when the environment asks for it (WAZERO_COLD_START=interpret, or the node's default). No
// background compile is started for an exec: a filler holds the module's file open, in the
// container's rootfs, and would keep its unmount busy when the container is deleted while
// execs' fillers wait for a slot.
func execColdStart(env []string, node oci.ColdStart) oci.ColdStart {
	c, _ := oci.ParseColdStart(env, node) // a bad value failed in runnerConfig already
	if c == oci.ColdStartInterpret {
		return c
	}
	return oci.ColdStartCompile
}

func (e *wasmExec) Pid() int     { return e.runner.Pid() }
func (e *wasmExec) Start() error { return e.runner.Start() }

// Kill signals the exec's runner alone (not its process group: the runner is its group's only
// process).
func (e *wasmExec) Kill(sig syscall.Signal) error {
	select {
	case <-e.exited: // reaped, its handle released
		return fmt.Errorf("process already finished: %w", errdefs.ErrNotFound)
	default:
	}
	return signalRunner(e.runner.Cmd.Process, sig, false)
}

func (e *wasmExec) CloseStdin() { e.stdio.CloseStdin() }

func (e *wasmExec) Cleanup() {
	if e.cleaned {
		return
	}
	e.cleaned = true
	if e.inst != nil {
		e.inst.specMu.Lock()
		delete(e.inst.execs, e)
		e.inst.specMu.Unlock()
	}
	if e.runner != nil {
		e.runner.Close()
	}
	if e.stdio != nil {
		e.stdio.Close()
	}
}
