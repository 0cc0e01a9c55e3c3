package shim

import (
	"context"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/runc/options"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/events"
	cruntime "github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	ptypes "github.com/containerd/containerd/v2/pkg/protobuf/types"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// service is the containerd task API (task v3 over ttrpc) for every container of one shim.
//
// Events leave in the order the contract requires (TaskCreate, TaskStart, TaskExit, TaskDelete)
// because each is queued on one channel while its container's lock is held, and an exit is
// handled under that same lock: an exit that happens while Start is still returning waits for
// Start to queue TaskStart first.
type service struct {
	rt     containerRuntime
	events chan any
	sd     shutdown.Service

	mu         sync.Mutex
	containers map[string]*container
	creating   map[string]bool // IDs whose Create is under way

	// shared is set when this server is the namespace's shared server (shared.go); nil for a
	// server of one task or pod.
	shared *sharedServer
}

// container is the state of one task. Its fields are guarded by mu.
type container struct {
	mu     sync.Mutex
	id     string
	bundle string
	stdin  string
	stdout string
	stderr string

	inst       instance
	phase      phase // lifecycle.go: every RPC asks it first
	exitStatus uint32
	exitedAt   time.Time
	exited     chan struct{} // closed when the runner has exited

	execs       map[string]*execProc // exec processes by exec ID (exec.go)
	initExiting bool                 // the runner has exited; its exec processes are being killed

	span      trace.SpanContext // the last lifecycle span (create, then start): the parent of the run's
	startedAt time.Time
}

// newService returns the task service. Events go to publisher in order, from one goroutine,
// until the shim shuts down.
func newService(ctx context.Context, rt containerRuntime, publisher events.Publisher, sd shutdown.Service) *service {
	s := &service{
		rt:         rt,
		events:     make(chan any, 256),
		sd:         sd,
		containers: map[string]*container{},
		creating:   map[string]bool{},
	}
	go s.forward(ctx, publisher)
	return s
}

func (s *service) forward(ctx context.Context, publisher events.Publisher) {
	ns, _ := namespaces.Namespace(ctx)
	ctx = namespaces.WithNamespace(context.Background(), ns)
	for e := range s.events {
		if err := publisher.Publish(ctx, cruntime.GetTopic(e), e); err != nil {
			log.G(ctx).WithError(err).WithField("topic", cruntime.GetTopic(e)).Error("publish event")
		}
	}
}

// RegisterTTRPC registers the task service (v3, and v2 for daemons that speak only that).
func (s *service) RegisterTTRPC(server *ttrpc.Server) error {
	taskAPI.RegisterTTRPCTaskService(server, s)
	return registerTaskV2(server, s)
}

func (s *service) get(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

// Create creates the task: mounts the rootfs, resolves and compiles the module in its runner,
// and leaves the runner waiting for Start.
func (s *service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (*taskAPI.CreateTaskResponse, error) {
	s.mu.Lock()
	if _, ok := s.containers[r.ID]; ok || s.creating[r.ID] {
		s.mu.Unlock()
		return nil, errgrpc.ToGRPC(fmt.Errorf("container %s: %w", r.ID, errdefs.ErrAlreadyExists))
	}
	// The ID is reserved while creating, but the container is visible to other calls (State,
	// Stats, Kill... which containerd may make at any time) only once it exists.
	s.creating[r.ID] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.creating, r.ID)
		s.mu.Unlock()
	}()
	if s.shared != nil {
		s.shared.arrived(r.ID, r.Bundle)
	}
	c := &container{id: r.ID, bundle: r.Bundle, stdin: r.Stdin, stdout: r.Stdout, stderr: r.Stderr,
		phase: phaseCreating, exited: make(chan struct{})}
	c.mu.Lock()
	defer c.mu.Unlock()

	ctx, span := startSpan(ctx, "wazero.create", attribute.String("container.id", r.ID))
	inst, err := s.rt.Create(ctx, r, func(status int, at time.Time) { s.exit(c, status, at) }, func() { s.oom(c) })
	endSpan(span, err)
	c.span = span.SpanContext()
	if err != nil {
		c.phase = phaseDeleted // the runner's exit, if it comes, is nobody's business
		if s.shared != nil {
			s.shared.left(r.ID)
		}
		return nil, toGRPCOnce(err)
	}
	c.inst = inst
	c.phase = phaseCreated
	s.mu.Lock()
	s.containers[r.ID] = c
	s.mu.Unlock()
	s.events <- &eventstypes.TaskCreate{
		ContainerID: r.ID,
		Bundle:      r.Bundle,
		Rootfs:      r.Rootfs,
		IO:          &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
		Checkpoint:  r.Checkpoint,
		Pid:         uint32(inst.Pid()),
	}
	return &taskAPI.CreateTaskResponse{Pid: uint32(inst.Pid())}, nil
}

// exit records a runner's exit and queues TaskExit. Its exec processes are killed first and
// their TaskExit queued before the container's, as runc's shim does.
func (s *service) exit(c *container, status int, at time.Time) {
	c.mu.Lock()
	c.initExiting = true
	c.mu.Unlock()
	s.killExecs(c)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.phase == phaseDeleted {
		return
	}
	if c.phase != phaseDeleting {
		c.phase = phaseStopped
	}
	c.exitStatus = uint32(status)
	c.exitedAt = at
	close(c.exited)
	if c.span.IsSampled() {
		// The guest's run, from Start (or the runner's start) to its exit, under the last span.
		began := c.startedAt
		if began.IsZero() {
			began = at
		}
		_, run := otel.Tracer(tracerName).Start(trace.ContextWithRemoteSpanContext(context.Background(), c.span), "wazero.run",
			trace.WithTimestamp(began), trace.WithAttributes(attribute.String("container.id", c.id), attribute.Int("exit.status", status)))
		run.End(trace.WithTimestamp(at))
	}
	s.events <- &eventstypes.TaskExit{
		ContainerID: c.id,
		ID:          c.id,
		Pid:         uint32(c.inst.Pid()),
		ExitStatus:  uint32(status),
		ExitedAt:    protobuf.ToTimestamp(at),
	}
}

// oom queues TaskOOM: containerd records it, and the CRI plugin reports the container as
// OOMKilled.
func (s *service) oom(c *container) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.phase == phaseDeleted {
		return
	}
	s.events <- &eventstypes.TaskOOM{ContainerID: c.id}
}

// Start lets the module run.
func (s *service) Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	if r.ExecID != "" {
		resp, err := s.startExec(r)
		return resp, errgrpc.ToGRPC(err)
	}
	c, err := s.get(r.ID)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.phase.allow(r.ID, callStart); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	_, span := startSpan(ctx, "wazero.start", attribute.String("container.id", r.ID))
	err = c.inst.Start()
	endSpan(span, err)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	c.span, c.startedAt = span.SpanContext(), time.Now()
	c.phase = phaseRunning
	pid := uint32(c.inst.Pid())
	s.events <- &eventstypes.TaskStart{ContainerID: r.ID, Pid: pid}
	return &taskAPI.StartResponse{Pid: pid}, nil
}

// Delete removes a task that is not running: it releases the stdio, the rootfs mount and the
// cgroup. A created task that never started is killed first.
func (s *service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	if r.ExecID != "" {
		resp, err := s.deleteExec(r)
		return resp, errgrpc.ToGRPC(err)
	}
	c, err := s.get(r.ID)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	c.mu.Lock()
	if err := c.phase.allow(r.ID, callDelete); err != nil {
		c.mu.Unlock()
		return nil, errgrpc.ToGRPC(err)
	}
	if c.phase == phaseCreated {
		_ = c.inst.Kill(syscall.SIGKILL, true)
	}
	// From here on every other call sees a container being deleted: a second Delete is refused
	// (ErrNotFound) instead of publishing a second TaskDelete.
	c.phase = phaseDeleting
	c.mu.Unlock()
	ctx, span := startSpan(ctx, "wazero.delete", attribute.String("container.id", r.ID))
	defer span.End()
	<-c.exited

	c.mu.Lock()
	defer c.mu.Unlock()
	for id, e := range c.execs {
		// Exec processes nobody deleted: all have exited with the container's runner (exit).
		if e.proc != nil {
			e.proc.Cleanup()
		}
		e.phase = phaseDeleted
		delete(c.execs, id)
	}
	if err := c.inst.Cleanup(ctx); err != nil {
		log.G(ctx).WithError(err).WithField("id", r.ID).Warn("cleanup after delete")
	}
	c.phase = phaseDeleted
	s.mu.Lock()
	delete(s.containers, r.ID)
	s.mu.Unlock()
	if s.shared != nil {
		s.shared.left(r.ID)
	}
	pid := uint32(c.inst.Pid())
	s.events <- &eventstypes.TaskDelete{
		ContainerID: r.ID,
		ID:          r.ID,
		Pid:         pid,
		ExitStatus:  c.exitStatus,
		ExitedAt:    protobuf.ToTimestamp(c.exitedAt),
	}
	return &taskAPI.DeleteResponse{Pid: pid, ExitStatus: c.exitStatus, ExitedAt: protobuf.ToTimestamp(c.exitedAt)}, nil
}

// State reports the task's status, pid, stdio and exit.
func (s *service) State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	if r.ExecID != "" {
		resp, err := s.stateExec(r)
		return resp, errgrpc.ToGRPC(err)
	}
	c, err := s.get(r.ID)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.phase.allow(r.ID, callState); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &taskAPI.StateResponse{
		ID:         c.id,
		Bundle:     c.bundle,
		Pid:        uint32(c.inst.Pid()),
		Status:     c.phase.status(),
		Stdin:      c.stdin,
		Stdout:     c.stdout,
		Stderr:     c.stderr,
		ExitStatus: c.exitStatus,
		ExitedAt:   protobuf.ToTimestamp(c.exitedAt),
	}, nil
}

// Wait blocks until the task exits and returns its exit status.
func (s *service) Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	if r.ExecID != "" {
		resp, err := s.waitExec(ctx, r)
		return resp, errgrpc.ToGRPC(err)
	}
	c, err := s.get(r.ID)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	select {
	case <-c.exited:
	case <-ctx.Done():
		return nil, errgrpc.ToGRPC(ctx.Err())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return &taskAPI.WaitResponse{ExitStatus: c.exitStatus, ExitedAt: protobuf.ToTimestamp(c.exitedAt)}, nil
}

// Kill signals the task. A task that has exited answers ErrNotFound. With all, the container's
// exec processes get the signal too (runc's kill --all signals every process in the container).
func (s *service) Kill(ctx context.Context, r *taskAPI.KillRequest) (*emptypb, error) {
	if r.ExecID != "" {
		if err := s.killExec(r); err != nil {
			return nil, errgrpc.ToGRPC(err)
		}
		return empty, nil
	}
	c, err := s.get(r.ID)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.phase.allow(r.ID, callKill); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	sig := syscall.Signal(r.Signal)
	if err := c.inst.Kill(sig, r.All); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	if r.All {
		for _, e := range c.execs {
			if e.phase == phaseCreated || e.phase == phaseRunning {
				_ = e.proc.Kill(sig)
			}
		}
	}
	if c.phase == phasePaused && (sig == syscall.SIGKILL || sig == syscall.SIGTERM) {
		_ = c.inst.Resume() // a frozen process cannot act on a signal
	}
	return empty, nil
}

// Pids lists the task's processes: its runner, and the runner of each exec process that runs,
// with its exec ID (runc's ProcessDetails, which `ctr task ps` shows).
func (s *service) Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.phase.allow(r.ID, callPids); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	if c.phase.status() == tasktypes.Status_STOPPED {
		return &taskAPI.PidsResponse{}, nil
	}
	procs := []*tasktypes.ProcessInfo{{Pid: uint32(c.inst.Pid())}}
	for _, e := range c.execs {
		if e.phase != phaseCreated && e.phase != phaseRunning {
			continue
		}
		info := &tasktypes.ProcessInfo{Pid: uint32(e.proc.Pid())}
		if a, err := typeurl.MarshalAnyToProto(&options.ProcessDetails{ExecID: e.id}); err == nil {
			info.Info = a
		}
		procs = append(procs, info)
	}
	return &taskAPI.PidsResponse{Processes: procs}, nil
}

// Pause freezes the task through its cgroup.
func (s *service) Pause(ctx context.Context, r *taskAPI.PauseRequest) (*emptypb, error) {
	return s.freeze(ctx, r.ID, true)
}

// Resume thaws a paused task.
func (s *service) Resume(ctx context.Context, r *taskAPI.ResumeRequest) (*emptypb, error) {
	return s.freeze(ctx, r.ID, false)
}

func (s *service) freeze(ctx context.Context, id string, pause bool) (*emptypb, error) {
	c, err := s.get(id)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cl, next := callPause, phasePaused
	if !pause {
		cl, next = callResume, phaseRunning
	}
	if err := c.phase.allow(id, cl); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	op, event := c.inst.Pause, any(&eventstypes.TaskPaused{ContainerID: id})
	if !pause {
		op, event = c.inst.Resume, &eventstypes.TaskResumed{ContainerID: id}
	}
	if err := op(); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	c.phase = next
	s.events <- event
	return empty, nil
}

// CloseIO closes the task's stdin.
func (s *service) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) (*emptypb, error) {
	if r.ExecID != "" {
		if err := s.closeIOExec(r); err != nil {
			return nil, errgrpc.ToGRPC(err)
		}
		return empty, nil
	}
	c, err := s.get(r.ID)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	c.mu.Lock()
	err = c.phase.allow(r.ID, callCloseIO)
	c.mu.Unlock()
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	if r.Stdin {
		c.inst.CloseStdin()
	}
	return empty, nil
}

// Stats returns the task's cgroup metrics.
func (s *service) Stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	c.mu.Lock()
	err = c.phase.allow(r.ID, callStats)
	c.mu.Unlock()
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	st, err := c.inst.Stats()
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &taskAPI.StatsResponse{Stats: st}, nil
}

// Connect returns the shim's and the task's pids.
func (s *service) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	resp := &taskAPI.ConnectResponse{ShimPid: uint32(os.Getpid()), Version: Version}
	if c, err := s.get(r.ID); err == nil {
		resp.TaskPid = uint32(c.inst.Pid())
	}
	return resp, nil
}

// Shutdown stops the shim once it serves no container; a shared server (shared.go) waits its
// linger for the next task first.
func (s *service) Shutdown(ctx context.Context, r *taskAPI.ShutdownRequest) (*emptypb, error) {
	if s.tasks() > 0 {
		return empty, nil
	}
	if s.shared != nil {
		s.shared.idle()
		return empty, nil
	}
	s.sd.Shutdown()
	return empty, nil
}

// tasks counts the containers the service holds or is creating.
func (s *service) tasks() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.containers) + len(s.creating)
}

// share makes the service the namespace's shared server sh: it leaves through containerd's
// shutdown service once sh decides so, and sh's linger starts now (a first task's claim keeps it).
func (s *service) share(sh *sharedServer) {
	sh.tasks, sh.leave = s.tasks, s.sd.Shutdown
	s.shared = sh
	sh.idle()
}

// ResizePty is not supported: wasm containers have no terminal.
func (s *service) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (*emptypb, error) {
	return nil, errgrpc.ToGRPC(fmt.Errorf("resize pty: wasm containers have no terminal: %w", errdefs.ErrNotImplemented))
}

// Checkpoint is not supported.
func (s *service) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) (*emptypb, error) {
	return nil, errgrpc.ToGRPC(fmt.Errorf("checkpoint: %w", errdefs.ErrNotImplemented))
}

type emptypb = ptypes.Empty

var empty = &ptypes.Empty{}
