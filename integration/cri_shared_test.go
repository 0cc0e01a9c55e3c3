//go:build linux

package integration

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestCRISharedServer: pods that ask for the shared server (the pod annotation
// wazero.dev/shared-server, passed on by the runtime's pod_annotations) run their sandboxes and
// containers under one server process; a pod that does not ask keeps its own; removing one pod
// leaves the other's containers running; after the last pod the server leaves with its linger.
func TestCRISharedServer(t *testing.T) {
	const linger = 3 * time.Second
	forEachCRIDaemon(t, func(t *testing.T, c *criClient) {
		ask := map[string]string{"wazero.dev/shared-server": linger.String()}
		p1 := c.runPodAnnotated("shared-1", "wazero", true, ask)
		p2 := c.runPodAnnotated("shared-2", "wazero", true, ask)
		own := c.runPod("own", "wazero", true)
		s1, _ := p1.run(ctrSpec{name: "s", args: []string{"sleep", "300"}})
		s2, _ := p2.run(ctrSpec{name: "s", args: []string{"sleep", "300"}})
		s3, _ := own.run(ctrSpec{name: "s", args: []string{"sleep", "300"}})
		h, _ := p2.run(ctrSpec{name: "h", args: []string{"hello"}})
		for _, id := range []string{s1, s2, s3} {
			c.waitState(id, stateRunning, 20*time.Second)
		}
		parent := func(id string) int {
			t.Helper()
			r, ok := runnerOf(id)
			if !ok {
				t.Fatalf("no runner process for %s", id)
			}
			return r.ppid
		}
		server := parent(s1)
		_, _, start := procStat(server)
		srv := shimProc{pid: server, start: start}
		for _, id := range []string{p1.id, p2.id, s2} {
			if got := parent(id); got != server {
				t.Errorf("the runner of %s runs under %d, want the shared server %d (the runner of %s's)", id, got, server, s1)
			}
		}
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", server)); exe != suite.serverBin {
			t.Fatalf("the runners' parent %d runs %q, want the shim server %s", server, exe, suite.serverBin)
		}
		if got := parent(s3); got == server {
			t.Errorf("a pod without the annotation runs under the shared server %d", server)
		}
		if hi := c.waitState(h, stateExited, 20*time.Second); hi.Status.ExitCode != 0 {
			t.Errorf("hello in a shared pod: exit code %d, want 0", hi.Status.ExitCode)
		}
		if out := c.logs(h); !strings.Contains(out, "hello from wasm") {
			t.Errorf("crictl logs of hello in a shared pod = %q", out)
		}

		// One pod goes: the other's container runs on, under the same server.
		c.removePod(p1.id, true)
		if st := c.inspect(s2); st.Status.State != stateRunning {
			t.Fatalf("after the other pod's removal %s is %s, want %s", s2, st.Status.State, stateRunning)
		}
		if got := parent(s2); got != server {
			t.Fatalf("after the other pod's removal %s runs under %d, want %d", s2, got, server)
		}
		c.removePod(p2.id, true)
		c.removePod(own.id, true)

		// The last pod gone, the server leaves after its linger.
		deadline := time.Now().Add(linger + 30*time.Second)
		for srv.alive() {
			if time.Now().After(deadline) {
				t.Fatalf("the shared server %d still runs %s after its last pod's removal (linger %s)", server, linger+30*time.Second, linger)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}
