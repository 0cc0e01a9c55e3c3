package integration

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestCRIKilledWhileStarting: the runner, or the pod's shim, SIGKILLed while the CRI plugin's
// StartContainer creates the task (the kubelet's CreateContainer makes no task: a CRI container
// gets its runner in StartContainer), during a cold compile. StartContainer fails with an error
// instead of hanging, the container and then the pod can be removed, and no runner or shim of
// the pod is left (the suite's leak check covers mounts and cgroups).
func TestCRIKilledWhileStarting(t *testing.T) {
	forEachCRIDaemon(t, func(t *testing.T, c *criClient) {
		for _, victim := range []string{"runner", "shim"} {
			t.Run(victim, func(t *testing.T) {
				c.t = t
				resetCache(t, c.d) // a cold compile of the biggest test module: Create takes a while
				p := c.runPod("killstart-"+victim, "wazero", true)
				id, _ := p.create(ctrSpec{name: "c", command: []string{"/httpserver.wasm"},
					envs: map[string]string{"WAZERO_COLD_START": "compile"}})
				killed := killOnceRunning(id, victim)
				start := c.crictl("start", id)
				what := <-killed
				t.Logf("killed %s; crictl start:\n%s", what, start)
				if !strings.HasPrefix(what, victim) || !strings.HasSuffix(what, "<nil>") {
					t.Fatalf("kill during StartContainer: %s", what)
				}
				if start.timedOut {
					t.Fatalf("crictl start hung after the %s was killed", victim)
				}
				if start.exit == 0 {
					t.Errorf("crictl start succeeded although the %s was killed while it created the task", victim)
				} else if victim == "runner" && !strings.Contains(start.stderr, runnerKilledWant) {
					t.Errorf("crictl start's error does not say %q", runnerKilledWant)
				} else if strings.TrimSpace(start.stderr) == "" {
					t.Errorf("crictl start failed without saying why")
				}
				if ci := c.inspect(id); ci.Status.State == stateRunning {
					t.Errorf("the container is reported running after its failed start")
				}
				if r := c.crictl("rm", "--force", id); r.exit != 0 {
					t.Errorf("crictl rm --force %s:\n%s", id, r)
				}
				// The kubelet retries RemovePodSandbox; right after a shim's death containerd may still
				// be cleaning up after it and refuse once ("failed to delete task: ttrpc: closed").
				removed := false
				for i, deadline := 0, time.Now().Add(30*time.Second); time.Now().Before(deadline); i++ {
					c.crictl("stopp", p.id)
					r := c.crictl("rmp", "--force", p.id)
					if r.exit == 0 {
						t.Logf("pod removed at attempt %d", i+1)
						removed = true
						break
					}
					t.Logf("crictl rmp attempt %d:\n%s", i+1, r)
					time.Sleep(time.Second)
				}
				if !removed {
					t.Errorf("the pod %s could not be removed in 30 s", p.id)
				}
				waitGone(t, "processes of the pod", func() []string { return procsOf(id, p.id) })
			})
		}
	})
}

// TestCRIContainerdRestart: containerd restarted while a wasm pod runs, as a node upgrade or a
// crash does. The pod and its container keep running (same runner), the CRI plugin reconnects to
// the pod's shim and lists them as running, the container's later exit is reported with its
// status, and the pod is removed with nothing left.
func TestCRIContainerdRestart(t *testing.T) {
	forEachCRIDaemon(t, func(t *testing.T, c *criClient) {
		p := c.runPod("restart", "wazero", true)
		id, _ := p.run(ctrSpec{name: "c", command: testprog("sleep", "15")})
		before := c.waitState(id, stateRunning, 20*time.Second)
		runner, ok := runnerOf(id)
		if !ok {
			t.Fatalf("no runner for %s", id)
		}
		c.d.stop()
		if err := c.d.start(); err != nil {
			t.Fatalf("restart containerd: %v", err)
		}
		// The CRI plugin may answer before it has recovered its containers.
		var after ctrInspect
		deadline := time.Now().Add(30 * time.Second)
		for {
			r := c.crictl("inspect", "-o", "json", id)
			if r.exit == 0 && json.Unmarshal([]byte(r.stdout), &after) == nil && after.Status.State != "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("crictl inspect %s after the restart:\n%s", id, r)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if after.Status.State != stateRunning {
			t.Errorf("after the restart the container is %s, want %s", after.Status.State, stateRunning)
		}
		if after.Info.Pid != 0 && after.Info.Pid != before.Info.Pid {
			t.Errorf("after the restart the container's pid is %d, want %d", after.Info.Pid, before.Info.Pid)
		}
		if !runner.alive() {
			t.Errorf("the runner %d did not survive containerd's restart", runner.pid)
		}
		if ps := c.crictl("pods", "--id", p.id, "-q", "--state", "ready"); strings.TrimSpace(ps.stdout) != p.id {
			t.Errorf("after the restart the pod is not listed ready:\n%s", ps)
		}
		exited := c.waitState(id, stateExited, 30*time.Second)
		if exited.Status.ExitCode != 0 {
			t.Errorf("the container's exit after the restart: status %d, want 0", exited.Status.ExitCode)
		}
		if r := c.crictl("rm", id); r.exit != 0 {
			t.Errorf("crictl rm %s:\n%s", id, r)
		}
		c.removePod(p.id, true)
		waitGone(t, "processes of the pod", func() []string { return procsOf(id, p.id) })
	})
}
