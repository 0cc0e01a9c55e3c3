package shim

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// An arg or env entry with a NUL byte fails Create with InvalidArgument naming it (before: the
// runner's wazero trapped on the env entry, exit 134, and cut the arg short).
func TestRunnerConfigNUL(t *testing.T) {
	rootfs := t.TempDir()
	os.WriteFile(filepath.Join(rootfs, "m.wasm"), []byte("\x00asm\x01\x00\x00\x00"), 0o644)
	for _, tc := range []struct {
		args, env []string
		errHas    string
	}{
		{args: []string{"/m.wasm"}, env: []string{"A=1", "SECRET=ab\x00cd"}, errHas: `process.env[1] ("SECRET")`},
		{args: []string{"/m.wasm"}, env: []string{"NA\x00ME=x"}, errHas: `process.env[0] ("NA\x00ME")`},
		{args: []string{"/m.wasm", "ok", "b\x00d"}, errHas: "process.args[2]"},
		{args: []string{"/m.wasm\x00"}, errHas: "process.args[0]"},
	} {
		spec := &specs.Spec{Process: &specs.Process{Args: tc.args, Env: tc.env, Cwd: "/"}}
		_, _, err := runnerConfig(context.Background(), spec, "id", rootfs, noCache, nil)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.errHas) || !strings.Contains(err.Error(), "NUL") {
			t.Errorf("args %q env %q: err %v, want InvalidArgument naming %s and the NUL byte", tc.args, tc.env, err, tc.errHas)
		}
		if err != nil && strings.Contains(err.Error(), "cd") {
			t.Errorf("the error quotes the value: %v", err)
		}
	}
	spec := &specs.Spec{Process: &specs.Process{Args: []string{"/m.wasm", "a"}, Env: []string{"A=1"}, Cwd: "/"}}
	if _, _, err := runnerConfig(context.Background(), spec, "id", rootfs, noCache, nil); err != nil {
		t.Errorf("no NUL: %v", err)
	}
}
