package integration

import (
	"testing"
	"time"
)

// TestCRISecurityContextLikeRunc: a Kubernetes-style security context (runAsUser, runAsGroup,
// supplementalGroups, capabilities drop ALL plus one added, no_new_privs, seccomp RuntimeDefault,
// oom_score_adj) through the CRI, on a wazero pod and a runc pod of one daemon: the wazero runner
// and runc's process must end with the same ids, groups, capability sets, no_new_privs, seccomp
// mode, limits and oom_score_adj. So must the two pods' sandbox processes.
func TestCRISecurityContextLikeRunc(t *testing.T) {
	forEachCRIDaemon(t, func(t *testing.T, c *criClient) {
		var tr tracked
		rp := c.runPod("runc-sec", "runc", true)
		wp := c.runPod("wasm-sec", "wazero", true)
		rpid, wpid := rp.inspect().Info.Pid, wp.inspect().Info.Pid
		tr.track(t, rp.id, rpid)
		tr.track(t, wp.id, wpid)
		compareSecContext(t, "pod sandbox", readSecContext(t, wpid), readSecContext(t, rpid))
		for _, tc := range []struct {
			name string
			sc   map[string]any
		}{
			{"restricted", map[string]any{
				"run_as_user":         map[string]any{"value": 1000},
				"run_as_group":        map[string]any{"value": 3000},
				"supplemental_groups": []int{4000, 5000},
				"capabilities":        map[string]any{"drop_capabilities": []string{"ALL"}, "add_capabilities": []string{"NET_BIND_SERVICE"}},
				"no_new_privs":        true,
				"seccomp":             map[string]any{"profile_type": 0}, // RuntimeDefault
			}},
			{"root with defaults", map[string]any{}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				linux := map[string]any{"security_context": tc.sc, "resources": map[string]any{"oom_score_adj": 1000}}
				rn, _ := rp.run(ctrSpec{name: "native-" + randHex(3), image: sandboxImage, command: []string{"/pause"}, linux: linux})
				wn, _ := wp.run(ctrSpec{name: "wasm-" + randHex(3), args: []string{"sleep", "60"}, linux: linux})
				tr.ids = append(tr.ids, rn, wn)
				ri := c.waitState(rn, stateRunning, 20*time.Second)
				wi := c.waitState(wn, stateRunning, 20*time.Second)
				r, w := readSecContext(t, ri.Info.Pid), readSecContext(t, wi.Info.Pid)
				if tc.name == "restricted" && w.status["Uid"] != "1000 1000 1000 1000" {
					t.Errorf("the runner's Uid is %q, want 1000", w.status["Uid"])
				}
				if w.oomAdj != "1000" {
					t.Errorf("the runner's oom_score_adj is %s, want 1000", w.oomAdj)
				}
				compareSecContext(t, tc.name, w, r)
				c.must("stop", "-t", "0", rn)
				c.must("stop", "-t", "0", wn)
			})
		}
		c.removeAllAndCheck(&tr)
	})
}
