package engine

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The build recipes must set the variable the shim checks runner binaries against.
func TestBuildRecipesSetBuildStamp(t *testing.T) {
	for _, f := range []string{"../../Makefile", "../../deploy/Dockerfile.installer"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "-X "+BuildStampVar+"=") {
			t.Errorf("%s does not set %s with -X", f, BuildStampVar)
		}
	}
}

// Spawn with Exe runs the runner from the open file: the process is that binary, named
// runnerComm, with argv[0] the file's name and no descriptor left on it.
func TestSpawnExe(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("Spawn needs root (CLONE_NEWNS)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Spawn("/nonexistent", t.Name(), Stdio{}, SpawnOptions{Exe: exe})
	exe.Close()
	if err != nil {
		t.Fatalf("Spawn: %v", err)
	}
	t.Cleanup(func() {
		r.Close()
		if r.Cmd.ProcessState == nil {
			r.Cmd.Process.Kill()
			r.Cmd.Wait()
		}
	})
	if _, err := r.Configure(testConfig(t, "testprog.wasm", "exit", "7")); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	proc := filepath.Join("/proc", strconv.Itoa(r.Pid()))
	if got, _ := os.Readlink(filepath.Join(proc, "exe")); got != self {
		t.Errorf("runner executable %q, want %q", got, self)
	}
	if b, _ := os.ReadFile(filepath.Join(proc, "comm")); strings.TrimSpace(string(b)) != runnerComm {
		t.Errorf("runner comm %q, want %q", b, runnerComm)
	}
	if b, _ := os.ReadFile(filepath.Join(proc, "cmdline")); !strings.HasPrefix(string(b), self+"\x00"+RunnerArg+"\x00") {
		t.Errorf("runner argv %q", b)
	}
	if target, err := os.Readlink(filepath.Join(proc, "fd", strconv.Itoa(runnerExeFD))); err == nil {
		t.Errorf("runner fd %d still open on %s", runnerExeFD, target)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if code := wait(t, r); code != 7 {
		t.Errorf("exit code %d, want 7", code)
	}
}

// A descriptor at runnerExeFD that is not the runner's own executable stays open.
func TestCloseOwnExeKeepsOthers(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	closeOwnExe(int(f.Fd()))
	if _, err := f.Stat(); err != nil {
		t.Errorf("closeOwnExe closed an unrelated descriptor: %v", err)
	}
}

// SIGQUIT kills a runner as it kills a native process: killed by the signal (the shim reports
// 128+3), with no Go stack dump in the container's log. Before Start (while it waits) and while
// the guest runs, also as the confined (non-root, seccomp) process a restricted pod gets.
func TestRunnerSIGQUIT(t *testing.T) {
	for _, c := range []struct{ started, confined bool }{{false, false}, {true, false}, {true, true}} {
		started := c.started
		r, stdout, stderr := spawn(t)
		cfg := testConfig(t, "testprog.wasm", "sleep", "30")
		if c.confined {
			confine(t, cfg)
		}
		if _, err := r.Configure(cfg); err != nil {
			t.Fatalf("Configure: %v", err)
		}
		if started {
			if err := r.Start(); err != nil {
				t.Fatal(err)
			}
			for end := time.Now().Add(10 * time.Second); stdout() == "" && time.Now().Before(end); {
				time.Sleep(10 * time.Millisecond)
			}
		}
		r.Cmd.Process.Signal(syscall.SIGQUIT)
		wait(t, r)
		ws, _ := r.Cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ws.Signaled() || ws.Signal() != syscall.SIGQUIT {
			t.Errorf("started=%v: runner ended with %v, want killed by SIGQUIT", started, r.Cmd.ProcessState)
		}
		if ws.CoreDump() {
			t.Errorf("started=%v: the runner dumped core", started)
		}
		if strings.Contains(stderr(), "goroutine ") || strings.Contains(stderr(), "SIGQUIT") {
			t.Errorf("started=%v: stderr has Go's stack dump: %.300q", started, stderr())
		}
	}
}
