package integration

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
)

// Leak accounting: many containers run and removed, one after another and at once, then nothing
// of theirs may be left: processes, mounts, cgroups, containerd's file descriptors, task state,
// FIFOs. The sizes fit CI's time; `make soak` runs 1000 and 100 (WZ_SOAK_SEQUENTIAL,
// WZ_SOAK_CONCURRENT).

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// fdCount is how many file descriptors pid holds.
func fdCount(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("fds of %d: %v", pid, err)
	}
	return len(ents)
}

// entries lists what is in dir (nothing when it does not exist).
func entries(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestLeaksAfterManyRuns(t *testing.T) {
	seq := envInt("WZ_SOAK_SEQUENTIAL", 15)
	conc := envInt("WZ_SOAK_CONCURRENT", 6)
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		// One run first, so what containerd keeps for good (plugins' fds, the image's
		// snapshot) is in the baseline.
		if r := d.run(t, runOpts{args: testprog("hello")}); r.exit != 0 {
			t.Fatalf("warm-up run: exit %d\n%s", r.exit, r)
		}
		fdsBefore := fdCount(t, d.cmd.Process.Pid)
		for i := 0; i < seq; i++ {
			r := d.run(t, runOpts{args: testprog("hello")})
			if r.exit != 0 || r.stdout != "hello from wasm\n" {
				t.Fatalf("sequential run %d: exit %d\n%s", i, r.exit, r)
			}
		}
		var wg sync.WaitGroup
		errs := make(chan string, conc)
		for i := 0; i < conc; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Half of them fail at Create (a missing module), which must leave nothing either.
				args := testprog("exit", "3")
				want := 3
				if i%2 == 1 {
					args, want = []string{"/missing.wasm"}, -1
				}
				r := d.run(t, runOpts{args: args})
				if (want >= 0 && r.exit != want) || (want < 0 && r.exit == 0) {
					errs <- fmt.Sprintf("concurrent run %d: exit %d\n%s", i, r.exit, r)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
		// The same accounting as the bad-input corpus's (daemonLeaks): processes, mounts,
		// cgroups, task state, FIFOs, module copies and containerd's descriptors.
		leaks := daemonLeaks(t, d, fdsBefore)
		t.Logf("%d sequential and %d concurrent runs", seq, conc)
		for _, l := range leaks {
			t.Errorf("left behind: %s", l)
		}
	})
}
