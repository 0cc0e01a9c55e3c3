package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"go.opentelemetry.io/otel/attribute"
)

// execProc is the state of one exec process of a container (ctr task exec, crictl exec, CRI
// ExecSync, kubectl exec, exec probes). Its fields are guarded by its container's mu, so its
// events and its container's leave in one order.
//
// Its life follows runc's shim (exec_state.go): Exec adds it (TaskExecAdded) with its runner
// ready; Start lets it run (TaskExecStarted); its runner's exit stops it (TaskExit with its exec
// ID); Delete removes it, without an event. When the container's own process exits, every exec
// process is killed and its TaskExit published before the container's.
type execProc struct {
	id     string
	stdin  string
	stdout string
	stderr string

	proc       process       // nil until Exec has prepared it
	phase      phase         // phaseCreating until Exec returns, then created, running, stopped
	ready      chan struct{} // closed once Exec has returned (proc set, or phase deleted)
	exitStatus uint32
	exitedAt   time.Time
	exited     chan struct{} // closed when the exec's runner has exited
}

// execRules is what each call does to an exec process in each phase, as runc's shim does.
var execRules = map[phase]map[call]rule{
	phaseCreating: {
		callStart:   {errdefs.ErrFailedPrecondition, "wait for Exec to return"},
		callKill:    {errdefs.ErrFailedPrecondition, "wait for Exec to return"},
		callDelete:  {errdefs.ErrFailedPrecondition, "wait for Exec to return"},
		callCloseIO: {errdefs.ErrFailedPrecondition, "wait for Exec to return"},
	},
	phaseCreated: {},
	phaseRunning: {
		callStart:  {errdefs.ErrFailedPrecondition, "it was started already"},
		callDelete: {errdefs.ErrFailedPrecondition, "kill it before deleting it"},
	},
	phaseStopped: {
		callStart: {errdefs.ErrFailedPrecondition, "it has exited; exec again"},
		callKill:  {errdefs.ErrNotFound, "process already finished"},
	},
	phaseDeleting: {
		callStart:  {errdefs.ErrNotFound, "it is being deleted"},
		callKill:   {errdefs.ErrNotFound, "process already finished"},
		callDelete: {errdefs.ErrNotFound, "another Delete is removing it"},
	},
}

// allow returns nil when call may proceed on exec process e, else an error of the rule's
// errdefs kind naming the container, the exec and what to do.
func (e *execProc) allow(containerID string, c call) error {
	r := execRules[e.phase][c]
	if r.kind == nil {
		return nil
	}
	return fmt.Errorf("%s exec %s in container %s: it is %s: %s: %w", c, e.id, containerID, e.phase, r.why, r.kind)
}

// getExec returns container id and its exec process execID.
func (s *service) getExec(id, execID string) (*container, *execProc, error) {
	c, err := s.get(id)
	if err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.execs[execID]
	if !ok {
		return nil, nil, fmt.Errorf("exec %s in container %s: %w", execID, id, errdefs.ErrNotFound)
	}
	return c, e, nil
}

// Exec adds an exec process to a container that is created or running: its runner is spawned and
// prepared (module found and compiled or loaded) before Exec returns, so a bad module fails here,
// naming it. The exec runs only once Start is called.
func (s *service) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (*emptypb, error) {
	if r.ExecID == "" {
		return nil, errgrpc.ToGRPC(fmt.Errorf("exec in container %s: the exec ID is empty: %w", r.ID, errdefs.ErrInvalidArgument))
	}
	if r.Terminal {
		return nil, errgrpc.ToGRPC(fmt.Errorf("exec %s in container %s: a terminal (tty) is not supported for wasm containers; exec without -t (kubectl exec -i, crictl exec -i): %w", r.ExecID, r.ID, errdefs.ErrNotImplemented))
	}
	proc, err := execSpec(r)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	c, err := s.get(r.ID)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	c.mu.Lock()
	if err := c.allowExec(r.ExecID); err != nil {
		c.mu.Unlock()
		return nil, errgrpc.ToGRPC(err)
	}
	e := &execProc{id: r.ExecID, stdin: r.Stdin, stdout: r.Stdout, stderr: r.Stderr,
		phase: phaseCreating, ready: make(chan struct{}), exited: make(chan struct{})}
	if c.execs == nil {
		c.execs = map[string]*execProc{}
	}
	c.execs[r.ExecID] = e
	c.mu.Unlock()

	// The container's lock is not held while the exec's module compiles: the container answers
	// State, Kill... meanwhile. Its exit waits for e.ready before it kills the exec (exit).
	ctx, span := startSpan(ctx, "wazero.exec", attribute.String("container.id", r.ID), attribute.String("exec.id", r.ExecID))
	p, err := c.inst.Exec(ctx, r.ExecID, proc, execIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr},
		func(status int, at time.Time) { s.execExit(c, e, status, at) })
	endSpan(span, err)

	c.mu.Lock()
	defer c.mu.Unlock()
	defer close(e.ready)
	if err != nil {
		e.phase = phaseDeleted
		delete(c.execs, r.ExecID)
		return nil, toGRPCOnce(err)
	}
	e.proc = p
	e.phase = phaseCreated
	s.events <- &eventstypes.TaskExecAdded{ContainerID: r.ID, ExecID: r.ExecID}
	return empty, nil
}

// execSpec decodes the exec's process spec (an OCI runtime-spec Process, as JSON).
func execSpec(r *taskAPI.ExecProcessRequest) (*specs.Process, error) {
	if r.Spec == nil || len(r.Spec.GetValue()) == 0 {
		return nil, fmt.Errorf("exec %s in container %s: no process spec: %w", r.ExecID, r.ID, errdefs.ErrInvalidArgument)
	}
	var p specs.Process
	if err := json.Unmarshal(r.Spec.GetValue(), &p); err != nil {
		return nil, fmt.Errorf("exec %s in container %s: decode the process spec (%s): %v: %w", r.ExecID, r.ID, r.Spec.GetTypeUrl(), err, errdefs.ErrInvalidArgument)
	}
	if len(p.Args) == 0 {
		return nil, fmt.Errorf("exec %s in container %s: the process has no args: args[0] must name the .wasm module to run: %w", r.ExecID, r.ID, errdefs.ErrInvalidArgument)
	}
	if p.Terminal {
		return nil, fmt.Errorf("exec %s in container %s: process.terminal is set, but a terminal (tty) is not supported for wasm containers; exec without -t: %w", r.ExecID, r.ID, errdefs.ErrNotImplemented)
	}
	return &p, nil
}

// allowExec says whether an exec process execID may be added now: the container must be
// created or running (not paused: its cgroup is frozen), its process not exiting, and the ID new.
func (c *container) allowExec(execID string) error {
	switch {
	case c.phase == phaseDeleting || c.phase == phaseDeleted:
		return fmt.Errorf("exec %s in container %s: it is %s: %w", execID, c.id, c.phase, errdefs.ErrNotFound)
	case c.phase != phaseCreated && c.phase != phaseRunning || c.initExiting:
		why := "its process has exited"
		if c.phase == phasePaused {
			why = "it is paused; resume it first"
		} else if c.phase == phaseCreating {
			why = "wait for Create to return"
		}
		return fmt.Errorf("exec %s in container %s: %s: %w", execID, c.id, why, errdefs.ErrFailedPrecondition)
	}
	if _, ok := c.execs[execID]; ok {
		return fmt.Errorf("exec %s in container %s: an exec process with this ID exists: %w", execID, c.id, errdefs.ErrAlreadyExists)
	}
	return nil
}

// execExit records an exec runner's exit and queues its TaskExit.
func (s *service) execExit(c *container, e *execProc, status int, at time.Time) {
	<-e.ready // an exit during Exec is Exec's failure, or is published after TaskExecAdded
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.phase == phaseDeleted {
		return
	}
	if e.phase != phaseDeleting {
		e.phase = phaseStopped
	}
	e.exitStatus = uint32(status)
	e.exitedAt = at
	s.events <- &eventstypes.TaskExit{
		ContainerID: c.id,
		ID:          e.id,
		Pid:         uint32(e.proc.Pid()),
		ExitStatus:  uint32(status),
		ExitedAt:    protobuf.ToTimestamp(at),
	}
	close(e.exited)
}

// killExecs kills every exec process of c and waits until their exits are published: what runc's
// shim does when a container's process exits, so the container's TaskExit comes last. Called
// without c's lock, once c.initExiting refuses new execs.
func (s *service) killExecs(c *container) {
	c.mu.Lock()
	execs := make([]*execProc, 0, len(c.execs))
	for _, e := range c.execs {
		execs = append(execs, e)
	}
	c.mu.Unlock()
	for _, e := range execs {
		<-e.ready
		if e.proc == nil {
			continue
		}
		_ = e.proc.Kill(syscall.SIGKILL)
		<-e.exited // closed by execExit under c's lock, after it queued the exec's TaskExit
	}
}

// startExec lets exec process e run and queues TaskExecStarted.
func (s *service) startExec(r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	c, e, err := s.getExec(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := e.allow(r.ID, callStart); err != nil {
		return nil, err
	}
	if c.initExiting {
		return nil, fmt.Errorf("start exec %s in container %s: the container's process has exited: %w", e.id, c.id, errdefs.ErrFailedPrecondition)
	}
	if err := e.proc.Start(); err != nil {
		return nil, fmt.Errorf("start exec %s in container %s: %w", e.id, c.id, err)
	}
	e.phase = phaseRunning
	pid := uint32(e.proc.Pid())
	s.events <- &eventstypes.TaskExecStarted{ContainerID: r.ID, ExecID: e.id, Pid: pid}
	return &taskAPI.StartResponse{Pid: pid}, nil
}

// deleteExec removes a stopped exec process (a created one is killed first). No event: runc's
// shim publishes TaskDelete only for a container.
func (s *service) deleteExec(r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	c, e, err := s.getExec(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if err := e.allow(r.ID, callDelete); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	if e.phase == phaseCreated {
		_ = e.proc.Kill(syscall.SIGKILL)
	}
	e.phase = phaseDeleting
	c.mu.Unlock()
	<-e.exited

	c.mu.Lock()
	defer c.mu.Unlock()
	e.proc.Cleanup()
	e.phase = phaseDeleted
	delete(c.execs, e.id)
	return &taskAPI.DeleteResponse{Pid: uint32(e.proc.Pid()), ExitStatus: e.exitStatus, ExitedAt: protobuf.ToTimestamp(e.exitedAt)}, nil
}

// stateExec reports an exec process's status, pid, stdio and exit.
func (s *service) stateExec(r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	c, e, err := s.getExec(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var pid uint32
	if e.proc != nil {
		pid = uint32(e.proc.Pid())
	}
	return &taskAPI.StateResponse{
		ID:         e.id,
		ExecID:     e.id,
		Bundle:     c.bundle,
		Pid:        pid,
		Status:     e.phase.status(),
		Stdin:      e.stdin,
		Stdout:     e.stdout,
		Stderr:     e.stderr,
		ExitStatus: e.exitStatus,
		ExitedAt:   protobuf.ToTimestamp(e.exitedAt),
	}, nil
}

// waitExec blocks until exec process e exits and returns its exit status.
func (s *service) waitExec(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	c, e, err := s.getExec(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.exited:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return &taskAPI.WaitResponse{ExitStatus: e.exitStatus, ExitedAt: protobuf.ToTimestamp(e.exitedAt)}, nil
}

// killExec signals exec process e's runner. An exec that has exited answers ErrNotFound.
func (s *service) killExec(r *taskAPI.KillRequest) error {
	c, e, err := s.getExec(r.ID, r.ExecID)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := e.allow(r.ID, callKill); err != nil {
		return err
	}
	return e.proc.Kill(syscall.Signal(r.Signal))
}

// closeIOExec closes exec process e's stdin.
func (s *service) closeIOExec(r *taskAPI.CloseIORequest) error {
	c, e, err := s.getExec(r.ID, r.ExecID)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := e.allow(r.ID, callCloseIO); err != nil {
		return err
	}
	if r.Stdin && e.proc != nil {
		e.proc.CloseStdin()
	}
	return nil
}
