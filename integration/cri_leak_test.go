package integration

import (
	"fmt"
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
