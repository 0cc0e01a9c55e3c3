//go:build linux

package k8s

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testSharedServerPods: two pods that ask for the shared server (the pod annotation
// wazero.dev/shared-server, passed on by the runtime's pod_annotations) run under one shim server
// process on a real kubelet's node; deleted, the server leaves after its linger.
func testSharedServerPods(t *testing.T, c *cluster) {
	const linger = 5 * time.Second
	var pods []string
	for _, name := range []string{"wasm-shared-a", "wasm-shared-b"} {
		c.apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  annotations:
    wazero.dev/shared-server: %q
spec:
  runtimeClassName: wazero
  terminationGracePeriodSeconds: 1
  containers:
    - name: sleeper
      image: docker.io/library/wasmtest:latest
      imagePullPolicy: Never
      args: ["sleep", "300"]
`, name, linger.String()))
		pods = append(pods, name)
	}
	defer c.kubectlR(append([]string{"delete", "pod", "--wait=false"}, pods...)...)
	var servers []int
	for _, name := range pods {
		p := c.waitPod(t, name, "running", podTimeout, func(p map[string]any) bool {
			return str(jsonPath(p, "status", "phase")) == "Running"
		})
		id := strings.TrimPrefix(str(jsonPath(p, "status", "containerStatuses", 0, "containerID")), "containerd://")
		runner, ppid := runnerProc(id)
		if runner == 0 {
			t.Fatalf("pod %s: no runner process for container %q", name, id)
		}
		servers = append(servers, ppid)
	}
	if servers[0] != servers[1] {
		t.Fatalf("the two pods' runners run under servers %d and %d, want one shared server", servers[0], servers[1])
	}
	server := servers[0]
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", server)); !strings.HasPrefix(exe, suite.shimDir+"/") {
		t.Fatalf("the runners' parent %d runs %q, not the suite's shim server", server, exe)
	}
	c.kubectl(t, append([]string{"delete", "pod", "--wait=true", "--timeout=2m"}, pods...)...)
	c.wait(t, "the shared server to leave after its last pod", linger+time.Minute, func() (bool, string) {
		return !procAlive(server), fmt.Sprintf("server %d still runs", server)
	})
}

// runnerProc finds the runner process of container id (a process of the suite's shim or runner
// binary with the arguments "runner ID") and returns its pid and parent; 0, 0 when none runs.
func runnerProc(id string) (pid, ppid int) {
	for _, p := range ourPIDs() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
		if err != nil {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(argv) > 2 && argv[1] == "runner" && argv[2] == id {
			st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
			if err != nil {
				continue
			}
			f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:]))
			pp, _ := strconv.Atoi(f[1])
			return p, pp
		}
	}
	return 0, 0
}

// procAlive reports whether pid is a live process (not a zombie).
func procAlive(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(st, ')')
	return i < 0 || i+2 >= len(st) || (st[i+2] != 'Z' && st[i+2] != 'X')
}
