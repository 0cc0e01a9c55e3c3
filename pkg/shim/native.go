package shim

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/pkg/sys/reaper"
	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/engine"
)

// Native containers: a container of a wazero pod whose process is a native Linux program (an
// ELF executable or a script, see oci.NativeProgram, or chosen by annotation) is run by runc, as
// containerd's own runc shim would run it, through go-runc: runc create and start with the bundle
// containerd wrote, the container's stdio handed to runc as files, its init process reaped by
// this shim's reaper (the shim is the child subreaper of everything runc starts). The pod's
// namespaces are those the CRI plugin puts in the spec (/proc/<sandbox runner pid>/ns/...), its
// cgroup the spec's cgroupsPath, created and removed by runc. See RATIONALE.md ("Native
// containers in wazero pods").

// RuncRootDir is the parent of runc's state directories of native containers: one per containerd
// namespace (RuncRootDir/<namespace>), never runc's default /run/runc nor containerd's runc shim's
// /run/containerd/runc, so that neither ever sees (or deletes) this shim's containers.
const RuncRootDir = "/run/containerd/wazero-runc"

// runcBinary is the runc executable looked up on the shim's PATH (containerd's).
const runcBinary = "runc"

// runcTimeout bounds each runc command but create (which the caller's context bounds).
const runcTimeout = 30 * time.Second

// nativeRuntime creates native containers.
type nativeRuntime struct {
	root string // runc --root: RuncRootDir/<namespace>
}

func newNativeRuntime(namespace string) *nativeRuntime {
	if namespace == "" {
		namespace = "default"
	}
	return &nativeRuntime{root: filepath.Join(RuncRootDir, namespace)}
}

// runc returns the go-runc handle for bundle, or an error naming runc when it is not on PATH.
func (n *nativeRuntime) runc(bundle string) (*runc.Runc, error) {
	path, err := exec.LookPath(runcBinary)
	if err != nil {
		return nil, fmt.Errorf("native containers are run by runc, which is not on the shim's PATH (%s): install runc (apt-get install runc) or choose the wasm runtime (annotation wazero.dev/runtime: wasm): %w",
			os.Getenv("PATH"), errdefs.ErrFailedPrecondition)
	}
	return &runc.Runc{
		Command:      path,
		Root:         n.root,
		Log:          filepath.Join(bundle, "runc-log.json"),
		LogFormat:    runc.JSON,
		PdeathSignal: syscall.SIGKILL,
	}, nil
}

// nativeInstance is one native container.
type nativeInstance struct {
	rt      *nativeRuntime
	r       *runc.Runc
	id      string
	ns      string // containerd namespace (for binary:// loggers)
	bundle  string
	rootfs  string // mounted by the shim, unmounted by Cleanup; empty when nothing was mounted
	spec    *specs.Spec
	pid     int
	cg      cgroup // nil when the spec names no cgroup or it cannot be opened
	stopOOM func()
	stdio   *stdio
	exited  chan struct{}
	status  int
	created bool // runc create succeeded: runc delete is owed

	mu      sync.Mutex
	cleaned bool
}

// create runs `runc create` for the container of r, whose spec is spec and whose rootfs the
// caller mounted at rootfs (ownership passes to the instance: "" when nothing was mounted).
func (n *nativeRuntime) create(ctx context.Context, r *taskAPI.CreateTaskRequest, spec *specs.Spec, rootfs, namespace string, onExit func(int, time.Time), onOOM func()) (_ instance, retErr error) {
	inst := &nativeInstance{rt: n, id: r.ID, ns: namespace, bundle: r.Bundle, rootfs: rootfs, spec: spec, exited: make(chan struct{})}
	defer func() {
		if retErr != nil {
			close(inst.exited)
			_ = inst.Cleanup(ctx)
		}
	}()
	rc, err := n.runc(r.Bundle)
	if err != nil {
		return nil, err
	}
	inst.r = rc
	cgroupsPath := ""
	if spec.Linux != nil {
		cgroupsPath = spec.Linux.CgroupsPath
	}
	// Recorded before runc creates anything: a shim that dies from here on leaves the `delete`
	// action what it needs to run `runc delete --force` (Manager.Stop).
	if err := writeState(r.Bundle, persisted{Native: true, RuncRoot: n.root, CgroupsPath: cgroupsPath}); err != nil {
		return nil, fmt.Errorf("record shim state: %w", err)
	}
	if inst.stdio, err = openStdio(ctx, r.ID, namespace, r.Stdin, r.Stdout, r.Stderr); err != nil {
		return nil, err
	}
	// runc hands its own stdio to the container's process: every stream must be a file, or
	// go-runc would read runc's output through a pipe the container keeps open.
	fio, err := newFileIO(inst.stdio.runner)
	if err != nil {
		return nil, err
	}
	pidFile := filepath.Join(r.Bundle, "init.pid")
	// Subscribed before runc create: the init process may exit (killed) before its pid is read.
	ec := reaper.Default.Subscribe()
	err = rc.Create(ctx, r.ID, r.Bundle, &runc.CreateOpts{IO: fio, PidFile: pidFile})
	fio.closeNull()
	inst.stdio.runnerDone()
	if err != nil {
		reaper.Default.Unsubscribe(ec)
		// runc may have created the container before it failed: delete whatever it left.
		inst.created = true
		return nil, fmt.Errorf("container %s: runc create (native container, runc %s): %s: %w", r.ID, rc.Command, runcError(r.Bundle, err), errdefs.ErrFailedPrecondition)
	}
	inst.created = true
	if inst.pid, err = runc.ReadPidFile(pidFile); err != nil {
		reaper.Default.Unsubscribe(ec)
		return nil, fmt.Errorf("container %s: read runc's pid file: %w", r.ID, err)
	}
	go inst.wait(ec, onExit)
	start, _ := processStartTime(inst.pid)
	if err := writeState(r.Bundle, persisted{Pid: inst.pid, StartTime: start, CgroupsPath: cgroupsPath, Native: true, RuncRoot: n.root}); err != nil {
		return nil, fmt.Errorf("record shim state: %w", err)
	}
	if cgroupsPath != "" {
		if inst.cg, err = loadCgroup(cgroupsPath); err != nil {
			log.G(ctx).WithError(err).WithField("id", r.ID).Warn("native container: cannot open its cgroup: no stats, no OOM events")
		} else if inst.stopOOM, err = inst.cg.WatchOOM(onOOM); err != nil {
			log.G(ctx).WithError(err).WithField("id", r.ID).Warn("cannot watch for OOM kills")
		}
	}
	log.G(ctx).WithFields(log.Fields{"id": r.ID, "pid": inst.pid, "runcRoot": n.root}).Info("native container created by runc")
	return inst, nil
}

// wait waits for the init process's exit, seen by the reaper, and reports it.
func (i *nativeInstance) wait(ec chan runc.Exit, onExit func(int, time.Time)) {
	for e := range ec {
		if e.Pid != i.pid {
			continue
		}
		reaper.Default.Unsubscribe(ec)
		i.status = e.Status
		at := e.Timestamp
		if st, err := readState(i.bundle); err == nil {
			st.Exited, st.ExitStatus, st.ExitedAt = true, uint32(e.Status), at
			_ = writeState(i.bundle, st)
		}
		close(i.exited)
		onExit(e.Status, at)
		return
	}
}

func (i *nativeInstance) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), runcTimeout)
}

func (i *nativeInstance) Pid() int { return i.pid }

func (i *nativeInstance) Start() error {
	ctx, cancel := i.ctx()
	defer cancel()
	if err := i.r.Start(ctx, i.id); err != nil {
		return fmt.Errorf("container %s: runc start: %s", i.id, runcError(i.bundle, err))
	}
	return nil
}

// Kill signals the init process through runc (with all, every process of the container).
func (i *nativeInstance) Kill(sig syscall.Signal, all bool) error {
	select {
	case <-i.exited:
		return fmt.Errorf("process already finished: %w", errdefs.ErrNotFound)
	default:
	}
	ctx, cancel := i.ctx()
	defer cancel()
	if err := i.r.Kill(ctx, i.id, int(sig), &runc.KillOpts{All: all}); err != nil {
		select {
		case <-i.exited:
			return fmt.Errorf("process already finished: %w", errdefs.ErrNotFound)
		default:
		}
		msg := runcError(i.bundle, err)
		if strings.Contains(msg, "not running") || strings.Contains(msg, "process already finished") {
			return fmt.Errorf("process already finished: %w", errdefs.ErrNotFound)
		}
		return fmt.Errorf("container %s: runc kill: %s", i.id, msg)
	}
	return nil
}

func (i *nativeInstance) Pause() error {
	ctx, cancel := i.ctx()
	defer cancel()
	if err := i.r.Pause(ctx, i.id); err != nil {
		return fmt.Errorf("container %s: runc pause: %s: %w", i.id, runcError(i.bundle, err), errdefs.ErrFailedPrecondition)
	}
	return nil
}

func (i *nativeInstance) Resume() error {
	ctx, cancel := i.ctx()
	defer cancel()
	if err := i.r.Resume(ctx, i.id); err != nil {
		return fmt.Errorf("container %s: runc resume: %s: %w", i.id, runcError(i.bundle, err), errdefs.ErrFailedPrecondition)
	}
	return nil
}

// Stats reads the container's cgroup, which runc created at the spec's cgroupsPath.
func (i *nativeInstance) Stats() (*anypb.Any, error) {
	if i.cg == nil {
		return nil, fmt.Errorf("stats need a cgroup (linux.cgroupsPath): %w", errdefs.ErrNotFound)
	}
	return i.cg.Metrics()
}

func (i *nativeInstance) CloseStdin() { i.stdio.CloseStdin() }

// Update changes the container's resources with runc update.
func (i *nativeInstance) Update(res *specs.LinuxResources) error {
	if res == nil {
		return nil
	}
	ctx, cancel := i.ctx()
	defer cancel()
	if err := i.r.Update(ctx, i.id, res); err != nil {
		return fmt.Errorf("container %s: runc update: %s: %w", i.id, runcError(i.bundle, err), errdefs.ErrInvalidArgument)
	}
	return nil
}

// Cleanup deletes the container from runc (its processes, cgroup and state), then releases the
// stdio and the rootfs mount and removes the shim's state (finishCleanup).
func (i *nativeInstance) Cleanup(ctx context.Context) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.cleaned {
		return nil
	}
	i.cleaned = true
	var errs []error
	if i.stopOOM != nil {
		i.stopOOM()
	}
	if i.created && i.r != nil {
		if err := runcDelete(i.r, i.id); err != nil {
			errs = append(errs, err)
		}
	}
	return finishCleanup(ctx, errs, i.stdio, i.rootfs, i.bundle)
}

// runcDelete runs `runc delete --force id`; a container runc does not know is already deleted.
func runcDelete(r *runc.Runc, id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), runcTimeout)
	defer cancel()
	err := r.Delete(ctx, id, &runc.DeleteOpts{Force: true})
	if err != nil && !strings.Contains(err.Error(), "does not exist") {
		return fmt.Errorf("runc delete --force %s: %w", id, err)
	}
	return nil
}

// runcError is err with the last error runc wrote to its JSON log in bundle, which says why.
func runcError(bundle string, err error) string {
	f, ferr := os.Open(filepath.Join(bundle, "runc-log.json"))
	if ferr != nil {
		return err.Error()
	}
	defer f.Close()
	last := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && (e.Level == "error" || e.Level == "fatal") && e.Msg != "" {
			last = e.Msg
		}
	}
	if last == "" {
		return err.Error()
	}
	return fmt.Sprintf("%s (%v)", last, err)
}

// fileIO gives runc the container's stdio files; a missing stream is /dev/null.
type fileIO struct {
	in, out, err *os.File
	null         *os.File
}

func newFileIO(s engine.Stdio) (*fileIO, error) {
	f := &fileIO{in: s.Stdin, out: s.Stdout, err: s.Stderr}
	if f.in == nil || f.out == nil || f.err == nil {
		null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		f.null = null
		for _, p := range []**os.File{&f.in, &f.out, &f.err} {
			if *p == nil {
				*p = null
			}
		}
	}
	return f, nil
}

func (f *fileIO) Set(cmd *exec.Cmd) {
	cmd.Stdin, cmd.Stdout, cmd.Stderr = f.in, f.out, f.err
}

// closeNull closes the /dev/null the IO opened; the stdio files are the stdio's to close.
func (f *fileIO) closeNull() {
	if f.null != nil {
		f.null.Close()
	}
}

func (f *fileIO) Close() error          { f.closeNull(); return nil }
func (f *fileIO) Stdin() io.WriteCloser { return nil }
func (f *fileIO) Stdout() io.ReadCloser { return nil }
func (f *fileIO) Stderr() io.ReadCloser { return nil }

var _ runc.IO = (*fileIO)(nil)
