//go:build linux

package integration

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCRIUpdate: the CRI's UpdateContainerResources (crictl update; Kubernetes in-place resize)
// raises a running wasm container's memory limit and CPU quota in its cgroup, and its guest grows
// past the cap of its old limit.
func TestCRIUpdate(t *testing.T) {
	forEachCRIDaemon(t, func(t *testing.T, c *criClient) {
		var tr tracked
		p := c.runPod("wz-update", "wazero", true)
		tr.track(t, p.id, p.inspect().Info.Pid)
		id, _ := p.run(ctrSpec{name: "grower", args: []string{"grow", "100", "5"},
			linux: map[string]any{"resources": map[string]any{"memory_limit_in_bytes": 64 << 20}}})
		info := c.waitState(id, stateRunning, 20*time.Second)
		tr.track(t, id, info.Info.Pid)
		memFile := cgroupFile(t, info.Info.Pid, "memory", "memory.limit_in_bytes", "memory.max")
		if got := readTrim(t, memFile); got != strconv.Itoa(64<<20) {
			t.Fatalf("%s = %s before the update, want %d", memFile, got, 64<<20)
		}
		c.must("update", "--memory", strconv.Itoa(256<<20), "--cpu-quota", "50000", "--cpu-period", "100000", id)
		if got := readTrim(t, memFile); got != strconv.Itoa(256<<20) {
			t.Errorf("%s = %s after crictl update, want %d", memFile, got, 256<<20)
		}
		if got := readTrim(t, cgroupFile(t, info.Info.Pid, "cpu", "cpu.cfs_quota_us", "cpu.max")); got != "50000" && got != "50000 100000" {
			t.Errorf("CPU quota after crictl update: %q, want 50000", got)
		}
		done := c.waitState(id, stateExited, 60*time.Second)
		if out := c.logs(id); done.Status.ExitCode != 0 || !strings.Contains(out, "grew 100 MiB") {
			t.Errorf("the guest did not grow past its old cap after crictl update: exit %d, logs:\n%s", done.Status.ExitCode, out)
		}
		c.removeAllAndCheck(&tr)
	})
}
