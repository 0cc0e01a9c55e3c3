//go:build linux

package k8s

// What a Kubernetes user does with wasm pods, through kubectl against a real kubelet: the deploy/
// manifests applied as they are, Jobs, restarts, probes, logs, stats, deletion and images pulled
// from a registry on the node (registry_test.go).
//
// Left for the issues that bring them (issue 18, item 3): in-place resize, pods mixing wasm and a
// native sidecar. Each belongs here as one more entry of the list in TestKubernetes.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	podTimeout   = 3 * time.Minute // bound on waiting for a pod to reach a state
	probeTimeout = 2 * time.Minute // bound on waiting for probes to change a pod
)

// TestKubernetes brings a node up per containerd version and runs the workloads on it in parallel.
func TestKubernetes(t *testing.T) {
	requireSuite(t)
	for _, v := range testedVersions() {
		t.Run(v, func(t *testing.T) {
			c := startCluster(t, v)
			// The node label deploy/runtimeclass.yaml's scheduling.nodeSelector asks for, then the
			// RuntimeClass, as the user applies them.
			c.kubectl(t, "label", "node", nodeName, "wazero.io/enabled=true")
			c.kubectl(t, "apply", "-f", filepath.Join(repoRoot, "deploy", "runtimeclass.yaml"))
			if h := c.kubectl(t, "get", "runtimeclass", "wazero", "-o", "jsonpath={.handler}"); h != "wazero" {
				t.Fatalf("RuntimeClass wazero has handler %q", h)
			}
			t.Run("workloads", func(t *testing.T) {
				for _, tc := range []struct {
					name string
					fn   func(t *testing.T, c *cluster)
				}{
					{"ExampleDeployment", testExampleDeployment},
					{"ExampleHTTPServer", testExampleHTTPServer},
					{"ExampleMixedPod", testExampleMixedPod},
					{"Job", testJob},
					{"RestartOnFailure", testRestartOnFailure},
					{"HTTPProbes", testHTTPProbes},
					{"TCPProbes", testTCPProbes},
					{"ExecProbes", testExecProbes},
					{"StatsSummary", testStatsSummary},
					{"GracefulDeletion", testGracefulDeletion},
					{"InstallerDaemonSet", testInstallerDaemonSet},
					{"RegistryPull", testRegistryPull},
					{"SharedServerPods", testSharedServerPods},
				} {
					t.Run(tc.name, func(t *testing.T) {
						t.Parallel()
						tc.fn(t, c)
					})
				}
			})
		})
	}
}

// --- helpers ---------------------------------------------------------------------------------

// podJSON is `kubectl get pod NAME -o json`, decoded ("" fields when absent).
func (c *cluster) podJSON(t *testing.T, name string) (map[string]any, result) {
	t.Helper()
	r := c.kubectlR("get", "pod", name, "-o", "json")
	if r.exit != 0 {
		return nil, r
	}
	return decode(t, r.stdout), r
}

func num(v any) float64 {
	f, _ := v.(float64)
	return f
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// podReady reports the pod's Ready condition.
func podReady(p map[string]any) bool {
	conds, _ := jsonPath(p, "status", "conditions").([]any)
	for _, cd := range conds {
		if str(jsonPath(cd, "type")) == "Ready" {
			return str(jsonPath(cd, "status")) == "True"
		}
	}
	return false
}

func restarts(p map[string]any) int {
	return int(num(jsonPath(p, "status", "containerStatuses", 0, "restartCount")))
}

// describe is a one-line summary of a pod for failure messages.
func describe(p map[string]any) string {
	b, _ := json.Marshal(jsonPath(p, "status", "containerStatuses"))
	return fmt.Sprintf("phase %s ready %v containerStatuses %s", str(jsonPath(p, "status", "phase")), podReady(p), b)
}

// waitPod polls the pod until cond holds.
func (c *cluster) waitPod(t *testing.T, name, what string, timeout time.Duration, cond func(p map[string]any) bool) map[string]any {
	t.Helper()
	var last map[string]any
	c.wait(t, "pod "+name+": "+what, timeout, func() (bool, string) {
		p, r := c.podJSON(t, name)
		if p == nil {
			return false, r.String()
		}
		last = p
		return cond(p), describe(p)
	})
	return last
}

// stateDir is a host directory the pod mounts at /state (testdata/probe reads and writes there).
func (c *cluster) stateDir(t *testing.T, name string, files ...string) string {
	t.Helper()
	d := filepath.Join(c.dir, "state", name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(d, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// events lists "REASON: MESSAGE" of the events about an object.
func (c *cluster) events(t *testing.T, name string) []string {
	t.Helper()
	out := c.kubectl(t, "get", "events", "--field-selector", "involvedObject.name="+name, "-o", "json")
	var list struct {
		Items []struct{ Reason, Message string }
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	var evs []string
	for _, e := range list.Items {
		evs = append(evs, e.Reason+": "+e.Message)
	}
	return evs
}

func hasEvent(evs []string, substr string) bool {
	for _, e := range evs {
		if strings.Contains(e, substr) {
			return true
		}
	}
	return false
}

// podsOf lists the names of the pods with a label selector.
func (c *cluster) podsOf(t *testing.T, selector string) []map[string]any {
	t.Helper()
	return c.podsOfNS(t, "default", selector)
}

// podsOfNS is podsOf in namespace ns.
func (c *cluster) podsOfNS(t *testing.T, ns, selector string) []map[string]any {
	t.Helper()
	r := c.kubectlR("-n", ns, "get", "pods", "-l", selector, "-o", "json")
	if r.exit != 0 {
		return nil
	}
	items, _ := decode(t, r.stdout)["items"].([]any)
	var out []map[string]any
	for _, it := range items {
		if m, ok := it.(map[string]any); ok && jsonPath(m, "metadata", "deletionTimestamp") == nil {
			out = append(out, m)
		}
	}
	return out
}

func podName(p map[string]any) string { return str(jsonPath(p, "metadata", "name")) }

// --- the deploy/ manifests -------------------------------------------------------------------

// testExampleDeployment applies deploy/example-deployment.yaml unchanged: its module prints its
// args and exits 0, so the Deployment restarts it; each replica's log shows the args and its
// last run ended with 0.
func testExampleDeployment(t *testing.T, c *cluster) {
	c.kubectl(t, "apply", "-f", filepath.Join(repoRoot, "deploy", "example-deployment.yaml"))
	defer c.kubectlR("delete", "deployment", "wasm-hello", "--wait=false")
	want := "hello from wasm --greeting hello from wasm"
	c.wait(t, "both wasm-hello replicas ran the module and were restarted by the Deployment", podTimeout, func() (bool, string) {
		pods := c.podsOf(t, "app=wasm-hello")
		if len(pods) != 2 {
			return false, fmt.Sprintf("%d pods", len(pods))
		}
		for _, p := range pods {
			if restarts(p) < 1 || jsonPath(p, "status", "containerStatuses", 0, "lastState", "terminated", "exitCode") != float64(0) {
				return false, podName(p) + ": " + describe(p)
			}
			r := c.kubectlR("logs", podName(p))
			if r.exit != 0 || strings.TrimSpace(r.stdout) != want {
				return false, podName(p) + " logs: " + r.String()
			}
		}
		return true, ""
	})
}

// testExampleHTTPServer applies deploy/example-httpserver.yaml unchanged: the rollout completes
// (readiness probes pass), the Service's EndpointSlice lists both pods as ready, the API server's
// proxy reaches the module through the pod and the Service, and a deleted pod is replaced by a
// new one that serves too.
func testExampleHTTPServer(t *testing.T, c *cluster) {
	c.kubectl(t, "apply", "-f", filepath.Join(repoRoot, "deploy", "example-httpserver.yaml"))
	defer c.kubectlR("delete", "-f", filepath.Join(repoRoot, "deploy", "example-httpserver.yaml"), "--wait=false")
	c.kubectl(t, "rollout", "status", "deployment/wasm-httpserver", "--timeout=4m")
	readyEndpoints := func() (int, string) {
		out := c.kubectl(t, "get", "endpointslices", "-l", "kubernetes.io/service-name=wasm-httpserver", "-o", "json")
		var list struct {
			Items []struct {
				Endpoints []struct {
					Addresses  []string
					Conditions struct{ Ready *bool }
				}
			}
		}
		json.Unmarshal([]byte(out), &list)
		n := 0
		for _, it := range list.Items {
			for _, e := range it.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					n++
				}
			}
		}
		return n, out
	}
	c.wait(t, "two ready endpoints of Service wasm-httpserver", podTimeout, func() (bool, string) {
		n, out := readyEndpoints()
		return n == 2, out
	})
	pods := c.podsOf(t, "app=wasm-httpserver")
	if len(pods) != 2 {
		t.Fatalf("%d wasm-httpserver pods, want 2", len(pods))
	}
	for _, p := range pods {
		if ip := str(jsonPath(p, "status", "podIP")); !strings.HasPrefix(ip, strings.TrimSuffix(podSubnet, "0/24")) {
			t.Errorf("pod %s has IP %q, not one of the bridge's %s", podName(p), ip, podSubnet)
		}
		if got := c.kubectl(t, "get", "--raw", "/api/v1/namespaces/default/pods/"+podName(p)+":8080/proxy/hello"); got != "hello from wasm http" {
			t.Errorf("GET /hello through pod %s: %q", podName(p), got)
		}
	}
	if got := c.kubectl(t, "get", "--raw", "/api/v1/namespaces/default/services/wasm-httpserver:http/proxy/health"); got != "ok" {
		t.Errorf("GET /health through the Service: %q", got)
	}
	// A pod in a deleted pod's place.
	gone := podName(pods[0])
	c.kubectl(t, "delete", "pod", gone, "--wait=true", "--timeout=2m")
	c.wait(t, "a new ready pod in the deleted "+gone+"'s place", podTimeout, func() (bool, string) {
		pods := c.podsOf(t, "app=wasm-httpserver")
		ready := 0
		for _, p := range pods {
			if podName(p) == gone {
				return false, gone + " still listed"
			}
			if podReady(p) {
				ready++
			}
		}
		n, out := readyEndpoints()
		return ready == 2 && n == 2, fmt.Sprintf("%d ready pods; endpoints %s", ready, out)
	})
	for _, p := range c.podsOf(t, "app=wasm-httpserver") {
		if got := c.kubectl(t, "get", "--raw", "/api/v1/namespaces/default/pods/"+podName(p)+":8080/proxy/hello"); got != "hello from wasm http" {
			t.Errorf("GET /hello through pod %s: %q", podName(p), got)
		}
	}
}

// --- Jobs and restarts -----------------------------------------------------------------------

func testJob(t *testing.T, c *cluster) {
	c.apply(t, `apiVersion: batch/v1
kind: Job
metadata:
  name: wasm-job
spec:
  backoffLimit: 0
  template:
    spec:
      runtimeClassName: wazero
      restartPolicy: Never
      containers:
        - name: job
          image: docker.io/library/wasmtest:latest
          imagePullPolicy: Never
          args: ["args", "one", "two words"]
`)
	defer c.kubectlR("delete", "job", "wasm-job", "--wait=false")
	c.kubectl(t, "wait", "--for=condition=complete", "job/wasm-job", "--timeout=3m")
	if s := c.kubectl(t, "get", "job", "wasm-job", "-o", "jsonpath={.status.succeeded}"); s != "1" {
		t.Errorf("job succeeded = %q, want 1", s)
	}
	logs := c.kubectl(t, "logs", "job/wasm-job")
	want := "argv[0]=/testprog.wasm\nargv[1]=args\nargv[2]=one\nargv[3]=two words\n"
	if logs != want {
		t.Errorf("kubectl logs job/wasm-job = %q, want %q", logs, want)
	}
}

// testRestartOnFailure: restartPolicy OnFailure restarts a module that exits 7; its second run
// exits 0 and the pod Succeeds. kubectl logs shows the second run, --previous the first.
func testRestartOnFailure(t *testing.T, c *cluster) {
	state := c.stateDir(t, "onfailure")
	c.apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: wasm-onfailure
spec:
  runtimeClassName: wazero
  restartPolicy: OnFailure
  containers:
    - name: once
      image: docker.io/library/wasm-probe:latest
      imagePullPolicy: Never
      args: ["fail-once", "7"]
      volumeMounts:
        - {name: state, mountPath: /state}
  volumes:
    - name: state
      hostPath: {path: %q, type: Directory}
`, state))
	defer c.kubectlR("delete", "pod", "wasm-onfailure", "--wait=false")
	p := c.waitPod(t, "wasm-onfailure", "Succeeded", podTimeout, func(p map[string]any) bool {
		return str(jsonPath(p, "status", "phase")) == "Succeeded"
	})
	if n := restarts(p); n != 1 {
		t.Errorf("restartCount %d, want 1: %s", n, describe(p))
	}
	if code := jsonPath(p, "status", "containerStatuses", 0, "lastState", "terminated", "exitCode"); code != float64(7) {
		t.Errorf("lastState exit code %v, want 7: %s", code, describe(p))
	}
	if code := jsonPath(p, "status", "containerStatuses", 0, "state", "terminated", "exitCode"); code != float64(0) {
		t.Errorf("final exit code %v, want 0: %s", code, describe(p))
	}
	if got := c.kubectl(t, "logs", "wasm-onfailure"); got != "probe: second run, exiting 0\n" {
		t.Errorf("kubectl logs: %q", got)
	}
	if got := c.kubectl(t, "logs", "--previous", "wasm-onfailure"); got != "probe: first run, exiting 7\n" {
		t.Errorf("kubectl logs --previous: %q", got)
	}
}

// --- probes ----------------------------------------------------------------------------------

// probePod is a wasm-probe server pod with /state from the host; probes is the YAML of its probes.
func (c *cluster) probePod(t *testing.T, name, state, probes string) {
	t.Helper()
	c.apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  runtimeClassName: wazero
  containers:
    - name: server
      image: docker.io/library/wasm-probe:latest
      imagePullPolicy: Never
      args: ["serve"]
      env:
        - {name: WAZERO_LISTEN, value: ":8080,:8081"}
      volumeMounts:
        - {name: state, mountPath: /state}
      # The first start on a node may still be compiling or interpreting: probes wait for it.
      startupProbe:
        httpGet: {path: /hello, port: 8080}
        periodSeconds: 1
        timeoutSeconds: 5
        failureThreshold: 120
%s
  volumes:
    - name: state
      hostPath: {path: %q, type: Directory}
`, name, probes, state))
}

// testHTTPProbes: httpGet readiness and liveness pass; a failing readiness probe makes the pod
// unready without a restart, a failing liveness probe restarts the container.
func testHTTPProbes(t *testing.T, c *cluster) {
	const name = "wasm-http-probes"
	state := c.stateDir(t, name, "ready", "live", "tcp")
	c.probePod(t, name, state, `      readinessProbe:
        httpGet: {path: /ready, port: 8080}
        periodSeconds: 1
        timeoutSeconds: 5
        failureThreshold: 1
      livenessProbe:
        httpGet: {path: /live, port: 8080}
        periodSeconds: 1
        timeoutSeconds: 5
        failureThreshold: 2`)
	defer c.kubectlR("delete", "pod", name, "--wait=false")
	c.waitPod(t, name, "Ready", podTimeout, podReady)

	os.Remove(filepath.Join(state, "ready"))
	p := c.waitPod(t, name, "unready after /ready fails", probeTimeout, func(p map[string]any) bool { return !podReady(p) })
	if n := restarts(p); n != 0 {
		t.Errorf("a failing readiness probe restarted the container (%d restarts): %s", n, describe(p))
	}
	os.WriteFile(filepath.Join(state, "ready"), nil, 0o644)
	c.waitPod(t, name, "Ready again", probeTimeout, podReady)

	os.Remove(filepath.Join(state, "live"))
	c.waitPod(t, name, "restarted after /live fails", probeTimeout, func(p map[string]any) bool { return restarts(p) >= 1 })
	os.WriteFile(filepath.Join(state, "live"), nil, 0o644)
	p = c.waitPod(t, name, "Ready after the restart", podTimeout, podReady)
	if code := jsonPath(p, "status", "containerStatuses", 0, "lastState", "terminated", "exitCode"); code == nil {
		t.Errorf("no terminated lastState after the liveness restart: %s", describe(p))
	}
	evs := c.events(t, name)
	if !hasEvent(evs, "Liveness probe failed") || !hasEvent(evs, "Readiness probe failed") {
		t.Errorf("events lack the probe failures: %q", evs)
	}
	if !hasEvent(evs, "failed liveness probe, will be restarted") {
		t.Errorf("events lack the kubelet's restart for the liveness probe: %q", evs)
	}
}

// testTCPProbes: tcpSocket probes on the module's declared listeners pass; once the module closes
// its second listener, the liveness probe on it fails and the container is restarted.
func testTCPProbes(t *testing.T, c *cluster) {
	const name = "wasm-tcp-probes"
	state := c.stateDir(t, name, "ready", "live", "tcp")
	c.probePod(t, name, state, `      readinessProbe:
        tcpSocket: {port: 8080}
        periodSeconds: 1
        failureThreshold: 1
      livenessProbe:
        tcpSocket: {port: 8081}
        periodSeconds: 1
        timeoutSeconds: 2
        failureThreshold: 2`)
	defer c.kubectlR("delete", "pod", name, "--wait=false")
	p := c.waitPod(t, name, "Ready", podTimeout, podReady)
	if n := restarts(p); n != 0 {
		t.Fatalf("restarted before the listener was closed: %s", describe(p))
	}
	os.Remove(filepath.Join(state, "tcp"))
	c.waitPod(t, name, "restarted after port 8081 closes", probeTimeout, func(p map[string]any) bool { return restarts(p) >= 1 })
	os.WriteFile(filepath.Join(state, "tcp"), nil, 0o644)
	c.waitPod(t, name, "Ready after the restart", podTimeout, podReady)
	if evs := c.events(t, name); !hasEvent(evs, "Liveness probe failed") {
		t.Errorf("events lack the liveness failure: %q", evs)
	}
}

// --- stats -----------------------------------------------------------------------------------

// testStatsSummary: the kubelet's /stats/summary (behind kubectl top and autoscaling) reports a
// running wasm container's CPU and memory.
func testStatsSummary(t *testing.T, c *cluster) {
	const name = "wasm-stats"
	c.apply(t, `apiVersion: v1
kind: Pod
metadata:
  name: wasm-stats
spec:
  runtimeClassName: wazero
  containers:
    - name: spin
      image: docker.io/library/wasmtest:latest
      imagePullPolicy: Never
      args: ["spin", "3600"]
      resources:
        limits: {cpu: 100m, memory: 64Mi}
`)
	defer c.kubectlR("delete", "pod", name, "--wait=false")
	c.waitPod(t, name, "Running", podTimeout, func(p map[string]any) bool { return str(jsonPath(p, "status", "phase")) == "Running" })
	var firstCPU float64
	c.wait(t, "wasm-stats CPU and memory in /stats/summary", podTimeout, func() (bool, string) {
		r := c.kubeletR("/stats/summary")
		if r.exit != 0 {
			return false, r.String()
		}
		s := decode(t, r.stdout)
		pods, _ := s["pods"].([]any)
		for _, p := range pods {
			if str(jsonPath(p, "podRef", "name")) != name {
				continue
			}
			ctr := jsonPath(p, "containers", 0)
			cpu := num(jsonPath(ctr, "cpu", "usageCoreNanoSeconds"))
			mem := num(jsonPath(ctr, "memory", "workingSetBytes"))
			b, _ := json.Marshal(ctr)
			if str(jsonPath(ctr, "name")) != "spin" || cpu <= 0 || mem <= 0 {
				return false, string(b)
			}
			if firstCPU == 0 {
				firstCPU = cpu
				return false, "first sample " + string(b)
			}
			// The spinning guest keeps using CPU: a later sample shows more.
			return cpu > firstCPU, string(b)
		}
		return false, "pod not in the summary"
	})
}

// --- deletion --------------------------------------------------------------------------------

// testGracefulDeletion: deleting a pod whose module sleeps finishes without waiting out its long
// terminationGracePeriodSeconds (the container stops on the kubelet's SIGTERM), and a new pod of
// the same name then runs in its place with its own log.
func testGracefulDeletion(t *testing.T, c *cluster) {
	const name = "wasm-graceful"
	pod := func(args string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  runtimeClassName: wazero
  restartPolicy: Never
  terminationGracePeriodSeconds: 600
  containers:
    - name: main
      image: docker.io/library/wasmtest:latest
      imagePullPolicy: Never
      args: %s
`, name, args)
	}
	c.apply(t, pod(`["sleep", "3600"]`))
	p := c.waitPod(t, name, "Running", podTimeout, func(p map[string]any) bool { return str(jsonPath(p, "status", "phase")) == "Running" })
	uid := str(jsonPath(p, "metadata", "uid"))
	// 600 s of grace; deletion must end long before: kubectl gives up after 3 minutes.
	start := time.Now()
	c.kubectl(t, "delete", "pod", name, "--wait=true", "--timeout=3m")
	t.Logf("pod deleted in %s (grace period 600s)", time.Since(start).Round(100*time.Millisecond))

	c.apply(t, pod(`["hello"]`))
	defer c.kubectlR("delete", "pod", name, "--wait=false")
	p = c.waitPod(t, name, "Succeeded", podTimeout, func(p map[string]any) bool { return str(jsonPath(p, "status", "phase")) == "Succeeded" })
	if str(jsonPath(p, "metadata", "uid")) == uid {
		t.Fatalf("the new pod has the deleted pod's uid %s", uid)
	}
	if got := c.kubectl(t, "logs", name); got != "hello from wasm\n" {
		t.Errorf("kubectl logs of the new pod: %q", got)
	}
}

var _ = strconv.Itoa

// testExampleMixedPod applies deploy/example-mixed-pod.yaml unchanged: a wazero pod whose native
// init container (run by runc under the shim) completes, whose wasm server and native sidecar
// both turn ready on their probes, and which serves both through the API server's proxy: the
// wasm module on :8080 and the native server on :15000 of the same pod IP.
func testExampleMixedPod(t *testing.T, c *cluster) {
	manifest := filepath.Join(repoRoot, "deploy", "example-mixed-pod.yaml")
	c.kubectl(t, "apply", "-f", manifest)
	defer c.kubectlR("delete", "-f", manifest, "--wait=false")
	c.kubectl(t, "rollout", "status", "deployment/mixed-pod", "--timeout=4m")
	pods := c.podsOf(t, "app=mixed-pod")
	if len(pods) != 1 {
		t.Fatalf("%d mixed-pod pods, want 1", len(pods))
	}
	p := pods[0]
	name := podName(p)
	inits, _ := jsonPath(p, "status", "initContainerStatuses").([]any)
	if len(inits) != 1 || num(jsonPath(inits[0], "state", "terminated", "exitCode")) != 0 || str(jsonPath(inits[0], "state", "terminated", "reason")) != "Completed" {
		t.Errorf("init container status %v, want one Completed with exit code 0", inits)
	}
	if out := c.kubectl(t, "logs", name, "-c", "init-config"); !strings.Contains(out, "wrote /shared/greeting.txt") {
		t.Errorf("kubectl logs -c init-config = %q", out)
	}
	if got := c.kubectl(t, "get", "--raw", "/api/v1/namespaces/default/pods/"+name+":8080/proxy/hello"); got != "hello from wasm http" {
		t.Errorf("GET /hello of the wasm container through pod %s: %q", name, got)
	}
	if got := c.kubectl(t, "get", "--raw", "/api/v1/namespaces/default/pods/"+name+":15000/proxy/health"); got != "ok" {
		t.Errorf("GET /health of the native sidecar through pod %s: %q", name, got)
	}
}
