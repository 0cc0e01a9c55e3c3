package integration

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCRIPodLoopLeaks: wasm pods created and removed in a loop, each with a container that exits
// early, one that fails to be created, one stopped with a grace period, and one whose exit races
// the pod's stop and removal. After each round nothing of the pod may be left (shim and runner
// processes, mounts, cgroups, network namespaces: removeAllAndCheck).
func TestCRIPodLoopLeaks(t *testing.T) {
	rounds := envInt("WZ_SOAK_CRI_ROUNDS", 3)
	forEachCRIDaemon(t, func(t *testing.T, c *criClient) {
		for round := 0; round < rounds; round++ {
			var tr tracked
			p := c.runPod(fmt.Sprintf("loop%d", round), "wazero", true)
			tr.track(t, p.id, p.inspect().Info.Pid)

			early, _ := p.run(ctrSpec{name: "early", args: []string{"exit", "3"}})
			tr.ids = append(tr.ids, early)
			if ci := c.waitState(early, stateExited, 20*time.Second); ci.Status.ExitCode != 3 {
				t.Errorf("round %d: early exit: exitCode %d, want 3", round, ci.Status.ExitCode)
			}

			// A container whose module does not exist: the CRI creates the container record, the
			// task (the shim's Create) fails at start, and leaves nothing.
			cfg := map[string]any{
				"metadata": map[string]any{"name": "bad", "attempt": 0},
				"image":    map[string]any{"image": testImage},
				"command":  []string{"/missing.wasm"},
				"log_path": "bad.log",
				"linux":    map[string]any{},
			}
			f := writeJSON(t, p.dir, "ctr-bad.json", cfg)
			bad := c.must("create", p.id, f, p.config)
			tr.ids = append(tr.ids, bad)
			if r := c.crictl("start", bad); r.exit == 0 {
				t.Errorf("round %d: starting a container of a missing module succeeded:\n%s", round, r)
			}

			stopped, _ := p.run(ctrSpec{name: "stopped", args: []string{"sleep", "60"}})
			tr.ids = append(tr.ids, stopped)
			c.waitState(stopped, stateRunning, 20*time.Second)
			c.must("stop", "-t", "2", stopped)
			if ci := c.inspect(stopped); ci.Status.State != stateExited {
				t.Errorf("round %d: after crictl stop the container is %s", round, ci.Status.State)
			}

			// Exits while the pod is being stopped and removed.
			racer, _ := p.run(ctrSpec{name: "racer", args: []string{"sleep", "0.05"}})
			tr.ids = append(tr.ids, racer)
			c.removeAllAndCheck(&tr)
		}
	})
}

// TestCRIPodShimSteady: a pod's shim lives as long as the pod, and in a Kubernetes pod that
// restarts its container it serves a new container again and again. After warm-up, 15 more
// containers created, run to their exit and removed leave the shim with the file descriptors,
// threads and child processes it had: a leak per container would grow without bound over a
// long-lived pod's restarts.
func TestCRIPodShimSteady(t *testing.T) {
	n := envInt("WZ_SOAK_POD_CONTAINERS", 15)
	forEachCRIDaemon(t, func(t *testing.T, c *criClient) {
		p := c.runPod("steady", "wazero", true)
		shim, ok := runnerOf(p.id)
		if !ok {
			t.Fatalf("no sandbox runner for pod %s", p.id)
		}
		shimPid := shim.ppid
		cycle := func(i int) {
			id, _ := p.run(ctrSpec{name: "c", attempt: i, args: []string{"exit", "0"}})
			c.waitState(id, stateExited, 20*time.Second)
			c.must("rm", id)
		}
		for i := range 3 { // warm-up: the shim's lazily made connections and goroutines
			cycle(i)
		}
		settle := func() (fds, threads, children int) {
			time.Sleep(time.Second)
			return fdCount(t, shimPid), procThreads(shimPid), len(childrenOf(shimPid))
		}
		fds0, thr0, ch0 := settle()
		targets0 := fdTargets(shimPid)
		for i := 3; i < 3+n; i++ {
			cycle(i)
		}
		fds1, thr1, ch1 := settle()
		t.Logf("pod shim %d after %d containers: fds %d -> %d, threads %d -> %d, children %d -> %d", shimPid, n, fds0, fds1, thr0, thr1, ch0, ch1)
		if fds1 > fds0 {
			t.Errorf("the pod's shim holds %d file descriptors after %d more containers, %d before; new: %v", fds1, n, fds0, newTargets(targets0, fdTargets(shimPid)))
		}
		if ch1 > ch0 {
			t.Errorf("the pod's shim has %d child processes after %d more containers, %d before (zombies or runners left)", ch1, n, ch0)
		}
		if thr1 > thr0+2 { // the Go runtime may start a thread or two on its own
			t.Errorf("the pod's shim has %d threads after %d more containers, %d before", thr1, n, thr0)
		}
		c.removePod(p.id, true)
	})
}

// procThreads is the Threads count of /proc/PID/status.
func procThreads(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return -1
}

// childrenOf lists the child processes of pid (zombies included).
func childrenOf(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if p, err := strconv.Atoi(e.Name()); err == nil {
			if _, ppid, _ := procStat(p); ppid == pid {
				out = append(out, p)
			}
		}
	}
	return out
}

// fdTargets maps the file descriptors of pid to what they point at.
func fdTargets(pid int) map[string]string {
	m := map[string]string{}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if l, err := os.Readlink(dir + "/" + e.Name()); err == nil {
			m[e.Name()] = l
		}
	}
	return m
}

// newTargets lists the descriptors of after that before did not have (or had pointing elsewhere).
func newTargets(before, after map[string]string) []string {
	var out []string
	for fd, l := range after {
		if before[fd] != l {
			out = append(out, fd+" -> "+l)
		}
	}
	return out
}
