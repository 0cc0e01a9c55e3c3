package shim

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
)

// fakeRuntime hands out fakeInstances and lets a test decide when each one exits.
type fakeRuntime struct {
	mu        sync.Mutex
	instances map[string]*fakeInstance
	createErr error
	// exitDuringCreate makes the runner exit while Create is still running.
	exitDuringCreate bool
	// block, when set, holds Create until it is closed.
	block chan struct{}
}

type fakeInstance struct {
	pid     int
	onExit  func(int, time.Time)
	onOOM   func()
	started bool
	killed  []syscall.Signal
	cleaned bool
	exited  bool
	// exitOnStart makes the guest exit (with this status) as soon as Start lets it run.
	exitOnStart *int
	// noExitOnKill keeps the runner alive after SIGKILL and SIGTERM (a runner slow to die).
	noExitOnKill bool
	execs        int                     // exec processes made (exec_test.go)
	updates      []*specs.LinuxResources // Update calls (update_test.go)
}

func (f *fakeRuntime) Create(ctx context.Context, r *taskAPI.CreateTaskRequest, onExit func(int, time.Time), onOOM func()) (instance, error) {
	if f.createErr != nil {
		return nil, f.createErr
	}
	if f.block != nil {
		<-f.block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	inst := &fakeInstance{pid: 1000 + len(f.instances), onExit: onExit, onOOM: onOOM}
	f.instances[r.ID] = inst
	if f.exitDuringCreate {
		// The exit is reported from another goroutine while Create has not returned yet.
		go inst.exit(3)
		time.Sleep(20 * time.Millisecond)
	}
	return inst, nil
}

func (i *fakeInstance) exit(status int) {
	i.exited = true
	i.onExit(status, time.Now())
}

func (i *fakeInstance) Pid() int { return i.pid }
func (i *fakeInstance) Start() error {
	i.started = true
	if i.exitOnStart != nil {
		// A guest that exits at once: its exit races with Start returning.
		go i.exit(*i.exitOnStart)
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}
func (i *fakeInstance) Kill(sig syscall.Signal, all bool) error {
	i.killed = append(i.killed, sig)
	if (sig == syscall.SIGKILL || sig == syscall.SIGTERM) && !i.noExitOnKill {
		go i.exit(128 + int(sig))
	}
	return nil
}
func (i *fakeInstance) Pause() error                  { return nil }
func (i *fakeInstance) Resume() error                 { return nil }
func (i *fakeInstance) Stats() (*anypb.Any, error)    { return &anypb.Any{}, nil }
func (i *fakeInstance) CloseStdin()                   {}
func (i *fakeInstance) Cleanup(context.Context) error { i.cleaned = true; return nil }

// recorder is a fake event publisher that keeps topics in order.
type recorder struct {
	mu     sync.Mutex
	topics []string
	events []events.Event
}

func (r *recorder) Publish(ctx context.Context, topic string, e events.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.topics = append(r.topics, topic)
	r.events = append(r.events, e)
	return nil
}

func (r *recorder) waitFor(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		if len(r.topics) >= n {
			out := append([]string(nil), r.topics...)
			r.mu.Unlock()
			return out
		}
		r.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Fatalf("got %d events %v, want %d", len(r.topics), r.topics, n)
	return nil
}

type fakeShutdown struct {
	once sync.Once
	done chan struct{}
}

func (f *fakeShutdown) Shutdown()                                    { f.once.Do(func() { close(f.done) }) }
func (f *fakeShutdown) RegisterCallback(func(context.Context) error) {}
func (f *fakeShutdown) Done() <-chan struct{}                        { return f.done }
func (f *fakeShutdown) Err() error                                   { return nil }

func newTestService(t *testing.T) (*service, *fakeRuntime, *recorder, *fakeShutdown) {
	t.Helper()
	rt := &fakeRuntime{instances: map[string]*fakeInstance{}}
	rec := &recorder{}
	sd := &fakeShutdown{done: make(chan struct{})}
	ctx := namespaces.WithNamespace(context.Background(), "test")
	return newService(ctx, rt, rec, sd), rt, rec, sd
}

func create(t *testing.T, s *service, id string) {
	t.Helper()
	if _, err := s.Create(context.Background(), &taskAPI.CreateTaskRequest{ID: id, Bundle: "/b/" + id}); err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
}

func TestEventOrder(t *testing.T) {
	want := []string{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"}
	tests := []struct {
		name string
		run  func(t *testing.T, s *service, rt *fakeRuntime)
	}{
		{"exit after start", func(t *testing.T, s *service, rt *fakeRuntime) {
			create(t, s, "c")
			if _, err := s.Start(context.Background(), &taskAPI.StartRequest{ID: "c"}); err != nil {
				t.Fatal(err)
			}
			rt.instances["c"].exit(0)
		}},
		{"exit while start is returning", func(t *testing.T, s *service, rt *fakeRuntime) {
			create(t, s, "c")
			zero := 0
			rt.instances["c"].exitOnStart = &zero
			if _, err := s.Start(context.Background(), &taskAPI.StartRequest{ID: "c"}); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, rt, rec, _ := newTestService(t)
			tc.run(t, s, rt)
			if _, err := s.Wait(context.Background(), &taskAPI.WaitRequest{ID: "c"}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Delete(context.Background(), &taskAPI.DeleteRequest{ID: "c"}); err != nil {
				t.Fatal(err)
			}
			got := rec.waitFor(t, 4)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("events %v, want %v", got, want)
			}
		})
	}
}

func TestExitDuringCreateComesAfterTaskCreate(t *testing.T) {
	s, rt, rec, _ := newTestService(t)
	rt.exitDuringCreate = true
	create(t, s, "c")
	got := rec.waitFor(t, 2)
	if got[0] != "/tasks/create" || got[1] != "/tasks/exit" {
		t.Fatalf("events %v, want create then exit", got)
	}
	if _, err := s.Start(context.Background(), &taskAPI.StartRequest{ID: "c"}); !errdefs.IsFailedPrecondition(errgrpc.ToNative(err)) {
		t.Fatalf("start of an exited task: %v, want failed precondition", err)
	}
}

func TestIllegalCallsAreExplicitErrors(t *testing.T) {
	s, rt, _, _ := newTestService(t)
	ctx := context.Background()
	check := func(name string, err error, is func(error) bool) {
		t.Helper()
		if !is(errgrpc.ToNative(err)) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	_, err := s.State(ctx, &taskAPI.StateRequest{ID: "nope"})
	check("state of unknown", err, errdefs.IsNotFound)

	create(t, s, "c")
	_, err = s.Create(ctx, &taskAPI.CreateTaskRequest{ID: "c"})
	check("create twice", err, errdefs.IsAlreadyExists)
	_, err = s.Exec(ctx, &taskAPI.ExecProcessRequest{ID: "c", ExecID: "e"})
	check("exec without a process spec", err, errdefs.IsInvalidArgument)
	_, err = s.Update(ctx, &taskAPI.UpdateTaskRequest{ID: "c"})
	check("update without resources", err, errdefs.IsInvalidArgument)
	_, err = s.Checkpoint(ctx, &taskAPI.CheckpointTaskRequest{ID: "c"})
	check("checkpoint", err, errdefs.IsNotImplemented)
	_, err = s.ResizePty(ctx, &taskAPI.ResizePtyRequest{ID: "c"})
	check("resize", err, errdefs.IsNotImplemented)
	_, err = s.Start(ctx, &taskAPI.StartRequest{ID: "c", ExecID: "e"})
	check("start an unknown exec", err, errdefs.IsNotFound)
	_, err = s.Resume(ctx, &taskAPI.ResumeRequest{ID: "c"})
	check("resume a created task", err, errdefs.IsFailedPrecondition)

	if _, err := s.Start(ctx, &taskAPI.StartRequest{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Start(ctx, &taskAPI.StartRequest{ID: "c"})
	check("start twice", err, errdefs.IsFailedPrecondition)
	_, err = s.Delete(ctx, &taskAPI.DeleteRequest{ID: "c"})
	check("delete running", err, errdefs.IsFailedPrecondition)

	st, err := s.State(ctx, &taskAPI.StateRequest{ID: "c"})
	if err != nil || st.Status != tasktypes.Status_RUNNING || st.Pid != 1000 {
		t.Fatalf("state %v %v, want running pid 1000", st, err)
	}
	if _, err := s.Kill(ctx, &taskAPI.KillRequest{ID: "c", Signal: uint32(syscall.SIGTERM)}); err != nil {
		t.Fatal(err)
	}
	w, err := s.Wait(ctx, &taskAPI.WaitRequest{ID: "c"})
	if err != nil || w.ExitStatus != 143 {
		t.Fatalf("wait: %v %v, want 143", w, err)
	}
	_, err = s.Kill(ctx, &taskAPI.KillRequest{ID: "c", Signal: uint32(syscall.SIGKILL)})
	check("kill exited", err, errdefs.IsNotFound)
	d, err := s.Delete(ctx, &taskAPI.DeleteRequest{ID: "c"})
	if err != nil || d.ExitStatus != 143 || !rt.instances["c"].cleaned {
		t.Fatalf("delete: %v %v cleaned=%v", d, err, rt.instances["c"].cleaned)
	}
	_, err = s.Delete(ctx, &taskAPI.DeleteRequest{ID: "c"})
	check("delete twice", err, errdefs.IsNotFound)
}

func TestDeleteCreatedKillsRunner(t *testing.T) {
	s, rt, rec, _ := newTestService(t)
	create(t, s, "c")
	if _, err := s.Delete(context.Background(), &taskAPI.DeleteRequest{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	inst := rt.instances["c"]
	if len(inst.killed) == 0 || inst.killed[0] != syscall.SIGKILL || !inst.cleaned {
		t.Fatalf("killed %v cleaned %v, want SIGKILL and cleanup", inst.killed, inst.cleaned)
	}
	got := rec.waitFor(t, 3)
	if fmt.Sprint(got) != "[/tasks/create /tasks/exit /tasks/delete]" {
		t.Fatalf("events %v", got)
	}
}

func TestCreateErrorKeepsKindAndFreesID(t *testing.T) {
	s, rt, rec, _ := newTestService(t)
	rt.createErr = fmt.Errorf("module /x.wasm not found: %w", errdefs.ErrNotFound)
	_, err := s.Create(context.Background(), &taskAPI.CreateTaskRequest{ID: "c"})
	if !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Fatalf("create error %v lost its kind", err)
	}
	rt.createErr = nil
	create(t, s, "c") // the ID is free again
	rec.waitFor(t, 1)
}

func TestShutdownWaitsForLastContainer(t *testing.T) {
	s, _, _, sd := newTestService(t)
	create(t, s, "c")
	if _, err := s.Shutdown(context.Background(), &taskAPI.ShutdownRequest{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sd.Done():
		t.Fatal("shim shut down while it still had a container")
	default:
	}
	if _, err := s.Delete(context.Background(), &taskAPI.DeleteRequest{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Shutdown(context.Background(), &taskAPI.ShutdownRequest{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sd.Done():
	case <-time.After(time.Second):
		t.Fatal("shim did not shut down with no container left")
	}
}

func TestOOMEventBeforeExit(t *testing.T) {
	s, rt, rec, _ := newTestService(t)
	create(t, s, "c")
	if _, err := s.Start(context.Background(), &taskAPI.StartRequest{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	inst := rt.instances["c"]
	inst.onOOM()
	inst.exit(137)
	got := rec.waitFor(t, 4)
	if fmt.Sprint(got) != "[/tasks/create /tasks/start /tasks/oom /tasks/exit]" {
		t.Fatalf("events %v", got)
	}
}

// TestCallsDuringCreate checks that a container being created is invisible to every other call
// (containerd collects metrics at any time) and keeps the shim from shutting down.
func TestCallsDuringCreate(t *testing.T) {
	s, rt, _, sd := newTestService(t)
	rt.block = make(chan struct{})
	done := make(chan error)
	go func() {
		_, err := s.Create(context.Background(), &taskAPI.CreateTaskRequest{ID: "c"})
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	ctx := context.Background()
	if _, err := s.Stats(ctx, &taskAPI.StatsRequest{ID: "c"}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Errorf("stats during create: %v, want not found", err)
	}
	if _, err := s.State(ctx, &taskAPI.StateRequest{ID: "c"}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Errorf("state during create: %v, want not found", err)
	}
	if r, err := s.Connect(ctx, &taskAPI.ConnectRequest{ID: "c"}); err != nil || r.TaskPid != 0 {
		t.Errorf("connect during create: %v %v", r, err)
	}
	if _, err := s.Create(ctx, &taskAPI.CreateTaskRequest{ID: "c"}); !errdefs.IsAlreadyExists(errgrpc.ToNative(err)) {
		t.Errorf("second create during create: %v, want already exists", err)
	}
	s.Shutdown(ctx, &taskAPI.ShutdownRequest{})
	select {
	case <-sd.Done():
		t.Error("shim shut down during a create")
	default:
	}
	close(rt.block)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := s.State(ctx, &taskAPI.StateRequest{ID: "c"}); err != nil {
		t.Errorf("state after create: %v", err)
	}
}
