package shim

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
)

// into brings container id of s into phase p through the service's own RPCs, and returns a
// function that lets a phase that is held open (deleting) finish.
func into(t *testing.T, s *service, rt *fakeRuntime, id string, p phase) (release func()) {
	t.Helper()
	ctx := context.Background()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("into %s: %v", p, err)
		}
	}
	create(t, s, id)
	release = func() {}
	switch p {
	case phaseCreated:
	case phaseRunning, phasePaused, phaseStopped, phaseDeleted:
		must(s.Start(ctx, &taskAPI.StartRequest{ID: id}))
		switch p {
		case phasePaused:
			must(s.Pause(ctx, &taskAPI.PauseRequest{ID: id}))
		case phaseStopped, phaseDeleted:
			rt.instances[id].exit(0)
			if p == phaseDeleted {
				must(s.Delete(ctx, &taskAPI.DeleteRequest{ID: id}))
			}
		}
	case phaseDeleting:
		// A Delete of a created task whose runner is slow to die holds the container in
		// deleting until the runner exits.
		inst := rt.instances[id]
		inst.noExitOnKill = true
		done := make(chan error, 1)
		go func() {
			_, err := s.Delete(ctx, &taskAPI.DeleteRequest{ID: id})
			done <- err
		}()
		c, _ := s.get(id)
		for end := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			c.mu.Lock()
			ph := c.phase
			c.mu.Unlock()
			if ph == phaseDeleting {
				break
			}
			if time.Now().After(end) {
				t.Fatalf("container never reached deleting (is %s)", ph)
			}
		}
		release = func() {
			inst.exit(137)
			if err := <-done; err != nil {
				t.Errorf("the held Delete: %v", err)
			}
		}
	default:
		t.Fatalf("cannot bring a container into %s", p)
	}
	return release
}

// do makes call cl on container id, with a short deadline for the calls that wait.
func do(s *service, id string, cl call) error {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var err error
	switch cl {
	case callStart:
		_, err = s.Start(ctx, &taskAPI.StartRequest{ID: id})
	case callKill:
		_, err = s.Kill(ctx, &taskAPI.KillRequest{ID: id, Signal: uint32(syscall.SIGUSR1)})
	case callDelete:
		_, err = s.Delete(ctx, &taskAPI.DeleteRequest{ID: id})
	case callPause:
		_, err = s.Pause(ctx, &taskAPI.PauseRequest{ID: id})
	case callResume:
		_, err = s.Resume(ctx, &taskAPI.ResumeRequest{ID: id})
	case callState:
		_, err = s.State(ctx, &taskAPI.StateRequest{ID: id})
	case callWait:
		_, err = s.Wait(ctx, &taskAPI.WaitRequest{ID: id})
	case callPids:
		_, err = s.Pids(ctx, &taskAPI.PidsRequest{ID: id})
	case callStats:
		_, err = s.Stats(ctx, &taskAPI.StatsRequest{ID: id})
	case callCloseIO:
		_, err = s.CloseIO(ctx, &taskAPI.CloseIORequest{ID: id, Stdin: true})
	}
	return errgrpc.ToNative(err)
}

// TestEveryCallInEveryPhase makes every task call in every phase a container can be in, through
// the service, and checks it proceeds or is refused with the kind the lifecycle table gives.
func TestEveryCallInEveryPhase(t *testing.T) {
	for p := phaseCreated; p <= phaseDeleted; p++ {
		for cl := call(0); cl < numCalls; cl++ {
			t.Run(p.String()+"/"+cl.String(), func(t *testing.T) {
				s, rt, _, _ := newTestService(t)
				release := into(t, s, rt, "c", p)
				defer release()
				err := do(s, "c", cl)
				want := rules[p][cl].kind
				switch {
				case want == nil && cl == callWait && p != phaseStopped && p != phaseDeleting:
					// Allowed, and waiting for an exit that does not come.
					if !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("wait: %v, want it to block until the deadline", err)
					}
				case want == nil && cl == callWait && p == phaseDeleting:
					if err != nil && !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("wait: %v", err)
					}
				case want == nil:
					if err != nil {
						t.Errorf("%s in %s: %v, want it allowed", cl, p, err)
					}
				case !errors.Is(err, want):
					t.Errorf("%s in %s: %v, want an error of kind %v", cl, p, err, want)
				}
			})
		}
	}
}

// TestConcurrentDeletes: of two Deletes racing on a stopped task, one deletes it and the other is
// told it is not found; one TaskDelete is published.
func TestConcurrentDeletes(t *testing.T) {
	for i := 0; i < 50; i++ {
		s, rt, rec, _ := newTestService(t)
		into(t, s, rt, "c", phaseStopped)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for j := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.Delete(context.Background(), &taskAPI.DeleteRequest{ID: "c"})
				errs[j] = errgrpc.ToNative(err)
			}()
		}
		wg.Wait()
		ok, notFound := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errdefs.IsNotFound(err):
				notFound++
			default:
				t.Fatalf("delete: %v", err)
			}
		}
		if ok != 1 || notFound != 1 {
			t.Fatalf("two concurrent deletes: %d succeeded, %d not found; want 1 and 1 (%v)", ok, notFound, errs)
		}
		topics := rec.waitFor(t, 4)
		time.Sleep(10 * time.Millisecond)
		rec.mu.Lock()
		n := 0
		for _, tp := range rec.topics {
			if tp == "/tasks/delete" {
				n++
			}
		}
		rec.mu.Unlock()
		if n != 1 {
			t.Fatalf("%d TaskDelete events (%v), want 1", n, topics)
		}
	}
}
