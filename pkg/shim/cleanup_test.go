package shim

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

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
