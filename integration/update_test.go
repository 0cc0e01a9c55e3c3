//go:build linux

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
)

// updateTask sends containerd's Tasks.Update for container id with res, as containerd's client
// does (task.Update(ctx, containerd.WithResources(res))): ctr has no `task update` command in the
// tested releases, and crictl's `update` goes through the CRI plugin (TestCRIUpdate).
func updateTask(t *testing.T, d *daemon, id string, res *specs.LinuxResources) error {
	t.Helper()
	data, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("unix://"+d.sock(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), d.ns), ctrTimeout)
	defer cancel()
	_, err = tasksapi.NewTasksClient(conn).Update(ctx, &tasksapi.UpdateTaskRequest{ContainerID: id,
		Resources: &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources", Value: data}})
	return err
}

func i64(v int64) *int64   { return &v }
func u64(v uint64) *uint64 { return &v }

// cgroupFile returns the path of file (memory.limit_in_bytes, cpu.cfs_quota_us...) in the cgroup
// of pid for controller (memory, cpu, pids) on cgroup v1, or of v2file in its v2 cgroup.
func cgroupFile(t *testing.T, pid int, controller, file, v2file string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatalf("cgroups of %d: %v", pid, err)
	}
	var v2 string
	for _, l := range lines(string(b)) {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2 = parts[2]
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == controller {
				return filepath.Join("/sys/fs/cgroup", controller, parts[2], file)
			}
		}
	}
	return filepath.Join("/sys/fs/cgroup", v2, v2file)
}

func readTrim(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Errorf("read %s: %v", p, err)
	}
	return strings.TrimSpace(string(b))
}

// TestUpdate: containerd's Tasks.Update changes a running wasm container's limits live: the memory limit
// in its cgroup and its guest's linear-memory cap (a guest that could not grow past 48 MiB under
// 64 MiB grows to 100 MiB once the limit is raised to 256 MiB), the CPU quota, the pids limit.
func TestUpdate(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		t.Run("control-without-update", func(t *testing.T) {
			r := d.run(t, runOpts{args: testprog("grow", "100"), memoryLimit: 64 << 20})
			if r.exit != 3 || !strings.Contains(r.stderr+r.stdout, oomWant) {
				t.Fatalf("grow 100 under 64 MiB: exit %d, want 3 and %q", r.exit, oomWant)
			}
		})
		t.Run("memory-cpu-pids", func(t *testing.T) {
			id := newID(t, d)
			logf := filepath.Join(t.TempDir(), "out.log")
			runDetached(t, d, id, testprog("grow", "100", "4"), "--memory-limit", strconv.Itoa(64<<20), "--log-uri", "file://"+logf)
			var pid int
			for p := range taskPids(t, d, id) {
				pid = p
			}
			memFile := cgroupFile(t, pid, "memory", "memory.limit_in_bytes", "memory.max")
			if got := readTrim(t, memFile); got != strconv.Itoa(64<<20) {
				t.Fatalf("%s = %s before the update, want %d", memFile, got, 64<<20)
			}
			if err := updateTask(t, d, id, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(256 << 20)}}); err != nil {
				t.Fatalf("update the memory limit: %v", err)
			}
			if got := readTrim(t, memFile); got != strconv.Itoa(256<<20) {
				t.Errorf("%s = %s after the update, want %d", memFile, got, 256<<20)
			}
			if err := updateTask(t, d, id, &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(50000), Period: u64(100000)}}); err != nil {
				t.Errorf("update the CPU quota: %v", err)
			} else if got := readTrim(t, cgroupFile(t, pid, "cpu", "cpu.cfs_quota_us", "cpu.max")); got != "50000" && got != "50000 100000" {
				t.Errorf("CPU quota after the update: %q, want 50000", got)
			}
			if err := updateTask(t, d, id, &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(77)}}); err != nil {
				t.Errorf("update the pids limit: %v", err)
			} else if got := readTrim(t, cgroupFile(t, pid, "pids", "pids.max", "pids.max")); got != "77" {
				t.Errorf("pids.max after the update: %q, want 77", got)
			}
			if got := readTrim(t, memFile); got != strconv.Itoa(256<<20) {
				t.Errorf("%s = %s after updates of other limits, want %d still", memFile, got, 256<<20)
			}
			d.waitStatus(t, id, "STOPPED", 60*time.Second)
			_, rmErr, _ := d.ctr(t, "task", "rm", id)
			out, _ := os.ReadFile(logf)
			if strings.Contains(rmErr, "non-zero exit code") || !strings.Contains(string(out), "grew 100 MiB") {
				t.Errorf("the guest did not grow past its old cap after the update: ctr task rm: %q; output:\n%s", rmErr, out)
			}
		})
		t.Run("refused", func(t *testing.T) {
			id := newID(t, d)
			runDetached(t, d, id, testprog("sleep", "60"))
			err := updateTask(t, d, id, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(-7)}})
			if err == nil || !strings.Contains(err.Error(), "memory limit -7 is negative") {
				t.Errorf("update with a negative memory limit: %v", err)
			}
			killRemove(t, d, id)
		})
	})
}
