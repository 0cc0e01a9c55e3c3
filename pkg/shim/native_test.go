package shim

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/engine"
)

func TestRuncError(t *testing.T) {
	bundle := t.TempDir()
	base := errors.New("runc did not terminate successfully: exit status 1")
	if got := runcError(bundle, base); got != base.Error() {
		t.Errorf("without a log: %q", got)
	}
	log := `{"level":"info","msg":"starting","time":"x"}
{"level":"error","msg":"first failure","time":"x"}
not json
{"level":"error","msg":"exec: \"/nope\": no such file or directory","time":"x"}
{"level":"warning","msg":"later warning","time":"x"}
`
	if err := os.WriteFile(filepath.Join(bundle, "runc-log.json"), []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	got := runcError(bundle, base)
	if !strings.HasPrefix(got, `exec: "/nope": no such file or directory`) || !strings.Contains(got, "exit status 1") {
		t.Errorf("runcError = %q, want the last error runc logged, then the command's error", got)
	}
}

func TestFileIO(t *testing.T) {
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	f, err := newFileIO(engine.Stdio{Stdout: out})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("true")
	f.Set(cmd)
	if cmd.Stdout != out {
		t.Errorf("stdout is not the given file")
	}
	for name, s := range map[string]any{"stdin": cmd.Stdin, "stderr": cmd.Stderr} {
		if fl, ok := s.(*os.File); !ok || fl.Name() != os.DevNull {
			t.Errorf("%s = %v, want %s (go-runc would otherwise read runc's output through a pipe the container holds)", name, s, os.DevNull)
		}
	}
	f.closeNull()
	if _, err := out.Write([]byte("x")); err != nil {
		t.Errorf("closeNull closed the container's own file: %v", err)
	}
}

// TestPersistedNativeFields: the state file's native fields are the contract the `delete` action
// (Manager.Stop) reads after a shim died.
func TestPersistedNativeFields(t *testing.T) {
	bundle := t.TempDir()
	if err := writeState(bundle, persisted{Pid: 7, Native: true, RuncRoot: "/run/containerd/wazero-runc/k8s.io"}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(bundle, stateFile))
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || m["native"] != true || m["runcRoot"] != "/run/containerd/wazero-runc/k8s.io" {
		t.Errorf("state file %s, want native and runcRoot", raw)
	}
	if err := writeState(bundle, persisted{Pid: 7}); err != nil {
		t.Fatal(err)
	}
	raw, _ = os.ReadFile(filepath.Join(bundle, stateFile))
	if strings.Contains(string(raw), "native") || strings.Contains(string(raw), "runcRoot") {
		t.Errorf("a wasm container's state file %s has native fields", raw)
	}
}

func TestRuncMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := newNativeRuntime("k8s.io").runc(t.TempDir())
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "runc") || !strings.Contains(err.Error(), "wazero.dev/runtime") {
		t.Errorf("runc not on PATH: %v, want a FailedPrecondition naming runc and the annotation", err)
	}
	if got := newNativeRuntime("k8s.io").root; got != filepath.Join(RuncRootDir, "k8s.io") {
		t.Errorf("runc root %s", got)
	}
}

// TestFinishCleanup: the shim's state is removed from the bundle whatever failed before; the
// first of the caller's errors is returned; a rootfs that is not mounted, and no stdio, are fine.
func TestFinishCleanup(t *testing.T) {
	bundle := t.TempDir()
	state := filepath.Join(bundle, stateFile)
	first, second := errors.New("runc delete failed"), errors.New("remove cgroup failed")
	for _, tc := range []struct {
		errs []error
		want error
	}{{nil, nil}, {[]error{first, second}, first}} {
		if err := os.WriteFile(state, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := finishCleanup(context.Background(), tc.errs, nil, t.TempDir(), bundle); err != tc.want {
			t.Errorf("errs %v: returned %v, want %v", tc.errs, err, tc.want)
		}
		if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("errs %v: state file left: %v", tc.errs, err)
		}
	}
}
