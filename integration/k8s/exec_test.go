//go:build linux

package k8s

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testExecProbes: kubectl exec (no tty) runs a wasm command in a running wasm container that
// reads the pod's volume and returns its exit code; exec readiness and liveness probes pass, a
// failing readiness probe makes the pod unready without a restart, a failing liveness probe
// restarts the container.
func testExecProbes(t *testing.T, c *cluster) {
	const name = "wasm-exec-probes"
	state := c.stateDir(t, name, "ready", "live")
	if err := os.WriteFile(filepath.Join(state, "msg"), []byte("hello from the volume"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  runtimeClassName: wazero
  containers:
    - name: sleeper
      image: docker.io/library/wasmtest:latest
      imagePullPolicy: Never
      command: ["/testprog.wasm", "sleep", "3600"]
      volumeMounts:
        - {name: state, mountPath: /state}
      readinessProbe:
        exec: {command: ["/testprog.wasm", "read", "/state/ready"]}
        periodSeconds: 1
        timeoutSeconds: 5
        failureThreshold: 1
      livenessProbe:
        exec: {command: ["/testprog.wasm", "read", "/state/live"]}
        periodSeconds: 1
        timeoutSeconds: 5
        failureThreshold: 2
  volumes:
    - name: state
      hostPath: {path: %q, type: Directory}
`, name, state))
	defer c.kubectlR("delete", "pod", name, "--wait=false")
	c.waitPod(t, name, "Ready", podTimeout, podReady)

	if got := c.kubectl(t, "exec", name, "--", "/testprog.wasm", "read", "/state/msg"); got != "hello from the volume" {
		t.Errorf("kubectl exec read: %q, want %q", got, "hello from the volume")
	}
	if r := c.kubectlR("exec", name, "--", "/testprog.wasm", "exit", "3"); r.exit != 3 {
		t.Errorf("kubectl exec of a command exiting 3: kubectl exited %d\n%s", r.exit, r)
	}

	os.Remove(filepath.Join(state, "ready"))
	p := c.waitPod(t, name, "unready after the exec readiness probe fails", probeTimeout, func(p map[string]any) bool { return !podReady(p) })
	if n := restarts(p); n != 0 {
		t.Errorf("a failing readiness probe restarted the container (%d restarts): %s", n, describe(p))
	}
	os.WriteFile(filepath.Join(state, "ready"), nil, 0o644)
	c.waitPod(t, name, "Ready again", probeTimeout, podReady)

	os.Remove(filepath.Join(state, "live"))
	c.waitPod(t, name, "restarted after the exec liveness probe fails", probeTimeout, func(p map[string]any) bool { return restarts(p) >= 1 })
	os.WriteFile(filepath.Join(state, "live"), nil, 0o644)
	c.waitPod(t, name, "Ready after the restart", podTimeout, podReady)
	evs := c.events(t, name)
	if !hasEvent(evs, "Liveness probe failed") || !hasEvent(evs, "Readiness probe failed") {
		t.Errorf("events lack the exec probe failures: %q", evs)
	}
	for _, e := range evs {
		if strings.Contains(e, "not implemented") {
			t.Errorf("an exec was refused: %s", e)
		}
	}
}
