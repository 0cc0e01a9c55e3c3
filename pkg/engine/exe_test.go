package engine

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
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
