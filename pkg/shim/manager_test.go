package shim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"
	cshim "github.com/containerd/containerd/v2/pkg/shim"
)

// TestStopRemovesCgroupOfUnrecordedRunner: a shim that died after its runner joined the
// container's cgroup but before it recorded the runner's pid left a state file with the cgroup
// only. The `delete` action must kill what is in the cgroup and remove it, and report 137.
func TestStopRemovesCgroupOfUnrecordedRunner(t *testing.T) {
	if os.Geteuid() != 0 || cgroups.Mode() == cgroups.Unavailable {
		if os.Getenv("CI") == "true" {
			t.Fatalf("needs root and cgroups (euid %d, mode %v)", os.Geteuid(), cgroups.Mode())
		}
		t.Skipf("needs root and cgroups (euid %d, mode %v)", os.Geteuid(), cgroups.Mode())
	}
	rnd := make([]byte, 6)
	_, _ = rand.Read(rnd)
	path := "/wazero-shim-test-stop-" + hex.EncodeToString(rnd)
	cg, err := hostCgroups().create(path, testResources())
	if err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	t.Cleanup(func() { killCgroup(cg); _ = deleteCgroup(cg) })
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill() })
	if err := cg.AddProc(uint64(cmd.Process.Pid)); err != nil {
		t.Fatal(err)
	}
	bundle := t.TempDir()
	if err := writeState(bundle, persisted{CgroupsPath: path}); err != nil {
		t.Fatal(err)
	}
	ctx := context.WithValue(context.Background(), cshim.OptsKey{}, cshim.Opts{BundlePath: bundle})
	st, err := NewManager("io.containerd.wazero.v1").Stop(ctx, "c")
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if st.ExitStatus != 128+int(syscall.SIGKILL) {
		t.Errorf("exit status %d, want 137", st.ExitStatus)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Error("the process in the cgroup still runs after the delete action")
	}
	if pids, err := cg.Procs(); err == nil && len(pids) > 0 {
		t.Errorf("cgroup still holds %v", pids)
	}
	for _, root := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup"} {
		if _, err := os.Stat(filepath.Join(root, path)); err == nil {
			t.Errorf("cgroup %s left under %s", path, root)
		}
	}
}
