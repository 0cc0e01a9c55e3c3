package shim

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/pkg/sys/reaper"
	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// nativeExec is an exec process of a native container (kubectl exec, exec probes, crictl exec):
// `runc exec --detach` of the given process in the container, run at Start, as containerd's runc
// shim does. Until Start nothing runs: a Kill before it (the container exited, the exec was
// deleted unstarted) reports an exit of 137 without a process.
type nativeExec struct {
	inst   *nativeInstance
	id     string
	proc   *specs.Process
	stdio  *stdio
	onExit func(int, time.Time)

	mu      sync.Mutex
	pid     int
	handle  *os.Process // the exec's process handle (a pidfd) once it runs
	started bool
	exited  chan struct{}
	once    sync.Once // reports the exit once
	cleaned bool
}

// Exec prepares an exec process: its stdio is opened now, runc runs it at Start.
func (i *nativeInstance) Exec(ctx context.Context, execID string, proc *specs.Process, io execIO, onExit func(int, time.Time)) (process, error) {
	if proc.Terminal {
		return nil, fmt.Errorf("exec %s in container %s: a terminal (tty) is not supported; exec without -t: %w", execID, i.id, errdefs.ErrNotImplemented)
	}
	st, err := openStdio(ctx, i.id, i.ns, io.Stdin, io.Stdout, io.Stderr)
	if err != nil {
		return nil, fmt.Errorf("exec %s in container %s: %w", execID, i.id, err)
	}
	return &nativeExec{inst: i, id: execID, proc: proc, stdio: st, onExit: onExit, exited: make(chan struct{})}, nil
}

func (e *nativeExec) Pid() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pid
}

// Start runs `runc exec --detach`: once it returns the process runs, reparented to the shim, and
// its exit comes through the reaper.
func (e *nativeExec) Start() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started {
		return fmt.Errorf("exec %s in container %s was started already: %w", e.id, e.inst.id, errdefs.ErrFailedPrecondition)
	}
	fio, err := newFileIO(e.stdio.runner)
	if err != nil {
		return err
	}
	defer fio.closeNull()
	pidFile := filepath.Join(e.inst.bundle, "exec-"+e.id+".pid")
	defer os.Remove(pidFile)
	ctx, cancel := context.WithTimeout(context.Background(), runcTimeout)
	defer cancel()
	ec := reaper.Default.Subscribe()
	err = e.inst.r.Exec(ctx, e.inst.id, *e.proc, &runc.ExecOpts{IO: fio, PidFile: pidFile, Detach: true})
	e.stdio.runnerDone()
	if err != nil {
		reaper.Default.Unsubscribe(ec)
		return fmt.Errorf("runc exec (native container): %s: %w", runcError(e.inst.bundle, err), errdefs.ErrFailedPrecondition)
	}
	pid, err := runc.ReadPidFile(pidFile)
	if err != nil {
		reaper.Default.Unsubscribe(ec)
		return fmt.Errorf("read runc's exec pid file: %w", err)
	}
	e.pid, e.started = pid, true
	if p, err := os.FindProcess(pid); err == nil {
		e.handle = p
	}
	go func() {
		for x := range ec {
			if x.Pid != pid {
				continue
			}
			reaper.Default.Unsubscribe(ec)
			e.mu.Lock()
			if e.handle != nil {
				_ = e.handle.Release()
				e.handle = nil
			}
			e.mu.Unlock()
			e.exit(x.Status, x.Timestamp)
			return
		}
	}()
	log.L.WithFields(log.Fields{"id": e.inst.id, "exec": e.id, "pid": pid}).Info("native exec started by runc")
	return nil
}

// exit reports the exec's exit once.
func (e *nativeExec) exit(status int, at time.Time) {
	e.once.Do(func() {
		close(e.exited)
		e.onExit(status, at)
	})
}

// Kill signals the exec's process through its handle. An exec never started "exits" with 137.
func (e *nativeExec) Kill(sig syscall.Signal) error {
	select {
	case <-e.exited:
		return fmt.Errorf("process already finished: %w", errdefs.ErrNotFound)
	default:
	}
	e.mu.Lock()
	started, h := e.started, e.handle
	e.mu.Unlock()
	if !started {
		if sig == syscall.SIGKILL {
			go e.exit(128+int(syscall.SIGKILL), time.Now())
		}
		return nil
	}
	if h == nil {
		return fmt.Errorf("process already finished: %w", errdefs.ErrNotFound)
	}
	return signalRunner(h, sig, false)
}

func (e *nativeExec) CloseStdin() { e.stdio.CloseStdin() }

func (e *nativeExec) Cleanup() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cleaned {
		return
	}
	e.cleaned = true
	e.stdio.Close()
}
