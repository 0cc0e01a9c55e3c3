package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
)

// fakeExec is an exec process whose exit the test decides (or a SIGKILL/SIGTERM causes).
type fakeExec struct {
	mu      sync.Mutex
	pid     int
	onExit  func(int, time.Time)
	started bool
	exited  bool
	cleaned bool
}

func (i *fakeInstance) Exec(ctx context.Context, execID string, proc *specs.Process, io execIO, onExit func(int, time.Time)) (process, error) {
	if proc.Args[0] == "/missing.wasm" {
		return nil, fmt.Errorf("module /missing.wasm not found: %w", errdefs.ErrNotFound)
	}
	i.execs++
	return &fakeExec{pid: 2000 + i.execs, onExit: onExit}, nil
}

func (e *fakeExec) exit(status int) {
	e.mu.Lock()
	if e.exited {
		e.mu.Unlock()
		return
	}
	e.exited = true
	e.mu.Unlock()
	e.onExit(status, time.Now())
}

func (e *fakeExec) Pid() int     { return e.pid }
func (e *fakeExec) Start() error { e.started = true; return nil }
func (e *fakeExec) Kill(sig syscall.Signal) error {
	e.mu.Lock()
	done := e.exited
	e.mu.Unlock()
	if done {
		return fmt.Errorf("process already finished: %w", errdefs.ErrNotFound)
	}
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		go e.exit(128 + int(sig))
	}
	return nil
}
func (e *fakeExec) CloseStdin() {}
func (e *fakeExec) Cleanup()    { e.cleaned = true }

func execReq(t *testing.T, id, execID string, args ...string) *taskAPI.ExecProcessRequest {
	t.Helper()
	data, err := json.Marshal(&specs.Process{Args: args, Cwd: "/"})
	if err != nil {
		t.Fatal(err)
	}
	return &taskAPI.ExecProcessRequest{ID: id, ExecID: execID,
		Spec: &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: data}}
}

func startRunning(t *testing.T, s *service, id string) {
	t.Helper()
	create(t, s, id)
	if _, err := s.Start(context.Background(), &taskAPI.StartRequest{ID: id}); err != nil {
		t.Fatal(err)
	}
}

func TestExecEventOrder(t *testing.T) {
	s, rt, rec, _ := newTestService(t)
	ctx := context.Background()
	startRunning(t, s, "c")
	if _, err := s.Exec(ctx, execReq(t, "c", "e1", "/testprog.wasm", "exit", "3")); err != nil {
		t.Fatal(err)
	}
	st, err := s.Start(ctx, &taskAPI.StartRequest{ID: "c", ExecID: "e1"})
	if err != nil || st.Pid != 2001 {
		t.Fatalf("start exec: %v %v, want pid 2001", st, err)
	}
	p, err := s.Pids(ctx, &taskAPI.PidsRequest{ID: "c"})
	if err != nil || len(p.Processes) != 2 || p.Processes[1].Pid != 2001 || p.Processes[1].Info == nil {
		t.Fatalf("pids %v %v, want the container's runner and the exec's with its details", p, err)
	}
	s.execByID(t, "c", "e1").exit(3)
	w, err := s.Wait(ctx, &taskAPI.WaitRequest{ID: "c", ExecID: "e1"})
	if err != nil || w.ExitStatus != 3 {
		t.Fatalf("wait exec: %v %v, want 3", w, err)
	}
	state, err := s.State(ctx, &taskAPI.StateRequest{ID: "c", ExecID: "e1"})
	if err != nil || state.Status != tasktypes.Status_STOPPED || state.ExitStatus != 3 || state.ExecID != "e1" {
		t.Fatalf("state exec: %v %v", state, err)
	}
	d, err := s.Delete(ctx, &taskAPI.DeleteRequest{ID: "c", ExecID: "e1"})
	if err != nil || d.ExitStatus != 3 || d.Pid != 2001 {
		t.Fatalf("delete exec: %v %v", d, err)
	}
	_, err = s.State(ctx, &taskAPI.StateRequest{ID: "c", ExecID: "e1"})
	if !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Fatalf("state of a deleted exec: %v, want not found", err)
	}
	rt.instances["c"].exit(0)
	got := rec.waitFor(t, 6)
	want := []string{"/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exec-started", "/tasks/exit", "/tasks/exit"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if e := rec.events[4].(*eventstypes.TaskExit); e.ID != "e1" || e.ExitStatus != 3 || e.Pid != 2001 {
		t.Errorf("exec's TaskExit %v, want ID e1, status 3, pid 2001", e)
	}
	if e := rec.events[5].(*eventstypes.TaskExit); e.ID != "c" {
		t.Errorf("container's TaskExit %v, want ID c", e)
	}
}

// execByID returns the fake behind a container's exec process.
func (s *service) execByID(t *testing.T, id, execID string) *fakeExec {
	t.Helper()
	_, e, err := s.getExec(id, execID)
	if err != nil {
		t.Fatal(err)
	}
	return e.proc.(*fakeExec)
}

// The container's exit kills its exec processes, and their TaskExit comes before the container's.
func TestContainerExitKillsExecs(t *testing.T) {
	s, rt, rec, _ := newTestService(t)
	ctx := context.Background()
	startRunning(t, s, "c")
	for _, id := range []string{"running", "created"} {
		if _, err := s.Exec(ctx, execReq(t, "c", id, "/testprog.wasm", "sleep", "60")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Start(ctx, &taskAPI.StartRequest{ID: "c", ExecID: "running"}); err != nil {
		t.Fatal(err)
	}
	rt.instances["c"].exit(0)
	got := rec.waitFor(t, 8)
	if got[len(got)-1] != "/tasks/exit" || got[len(got)-2] != "/tasks/exit" || got[len(got)-3] != "/tasks/exit" {
		t.Fatalf("events %v, want three exits last", got)
	}
	rec.mu.Lock()
	last := rec.events[len(rec.events)-1].(*eventstypes.TaskExit)
	rec.mu.Unlock()
	if last.ID != "c" {
		t.Fatalf("last TaskExit is %s's, want the container's", last.ID)
	}
	for _, id := range []string{"running", "created"} {
		w, err := s.Wait(ctx, &taskAPI.WaitRequest{ID: "c", ExecID: id})
		if err != nil || w.ExitStatus != 137 {
			t.Errorf("exec %s: wait %v %v, want 137 (SIGKILL)", id, w, err)
		}
	}
	_, err := s.Exec(ctx, execReq(t, "c", "late", "/testprog.wasm", "hello"))
	if !errdefs.IsFailedPrecondition(errgrpc.ToNative(err)) {
		t.Fatalf("exec into an exited container: %v, want failed precondition", err)
	}
	if _, err := s.Delete(ctx, &taskAPI.DeleteRequest{ID: "c"}); err != nil {
		t.Fatal(err)
	}
}

func TestExecIllegalCalls(t *testing.T) {
	s, _, _, _ := newTestService(t)
	ctx := context.Background()
	check := func(name string, err error, is func(error) bool) {
		t.Helper()
		if !is(errgrpc.ToNative(err)) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	_, err := s.Exec(ctx, execReq(t, "nope", "e", "/testprog.wasm"))
	check("exec into an unknown container", err, errdefs.IsNotFound)
	startRunning(t, s, "c")
	_, err = s.Exec(ctx, execReq(t, "c", "", "/testprog.wasm"))
	check("empty exec ID", err, errdefs.IsInvalidArgument)
	_, err = s.Exec(ctx, execReq(t, "c", "e"))
	check("no args", err, errdefs.IsInvalidArgument)
	r := execReq(t, "c", "e", "/testprog.wasm")
	r.Terminal = true
	_, err = s.Exec(ctx, r)
	check("terminal", err, errdefs.IsNotImplemented)
	_, err = s.Exec(ctx, execReq(t, "c", "e", "/missing.wasm"))
	check("missing module", err, errdefs.IsNotFound)
	_, err = s.State(ctx, &taskAPI.StateRequest{ID: "c", ExecID: "e"})
	check("state of a failed exec", err, errdefs.IsNotFound)

	if _, err := s.Exec(ctx, execReq(t, "c", "e", "/testprog.wasm")); err != nil {
		t.Fatal(err)
	}
	_, err = s.Exec(ctx, execReq(t, "c", "e", "/testprog.wasm"))
	check("exec ID twice", err, errdefs.IsAlreadyExists)
	if _, err := s.Start(ctx, &taskAPI.StartRequest{ID: "c", ExecID: "e"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Start(ctx, &taskAPI.StartRequest{ID: "c", ExecID: "e"})
	check("start twice", err, errdefs.IsFailedPrecondition)
	_, err = s.Delete(ctx, &taskAPI.DeleteRequest{ID: "c", ExecID: "e"})
	check("delete a running exec", err, errdefs.IsFailedPrecondition)
	if _, err := s.Kill(ctx, &taskAPI.KillRequest{ID: "c", ExecID: "e", Signal: uint32(syscall.SIGTERM)}); err != nil {
		t.Fatal(err)
	}
	if w, err := s.Wait(ctx, &taskAPI.WaitRequest{ID: "c", ExecID: "e"}); err != nil || w.ExitStatus != 143 {
		t.Fatalf("wait: %v %v, want 143", w, err)
	}
	_, err = s.Kill(ctx, &taskAPI.KillRequest{ID: "c", ExecID: "e", Signal: uint32(syscall.SIGKILL)})
	check("kill an exited exec", err, errdefs.IsNotFound)

	// A created exec that is deleted is killed first; the container's Delete cleans up what
	// nobody deleted.
	if _, err := s.Exec(ctx, execReq(t, "c", "never-started", "/testprog.wasm")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, &taskAPI.DeleteRequest{ID: "c", ExecID: "never-started"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pause(ctx, &taskAPI.PauseRequest{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Exec(ctx, execReq(t, "c", "p", "/testprog.wasm"))
	check("exec into a paused container", err, errdefs.IsFailedPrecondition)
}

func (i *fakeInstance) Update(res *specs.LinuxResources) error {
	i.updates = append(i.updates, res)
	return nil
}
