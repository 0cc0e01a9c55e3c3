//go:build linux

package integration

// CRI tests: every daemon's CRI plugin driven by crictl (what the kubelet does), with runtime
// handler "wazero" (runtime_type io.containerd.wazero.v1, see daemon.config) and "runc".
//
// CRI objects live in containerd namespace k8s.io. Images are imported there with ctr: the pinned
// sandbox image (testdata pause.tar, never run by the wazero shim), wasmtest (platform wasip1/wasm)
// and native-hello (linux, for runc pods).

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	criNS        = "k8s.io"
	nativeImage  = "docker.io/library/native-hello:latest"
	crictlTO     = "20s"            // crictl --timeout
	crictlBound  = 60 * time.Second // bound of one crictl invocation
	stateRunning = "CONTAINER_RUNNING"
	stateExited  = "CONTAINER_EXITED"
)

var crictlBin = envOr("WZ_CRICTL", filepath.Join(toolsDir, "bin", "crictl"))

// criImported records the images imported into k8s.io per daemon version.
var criImported = struct {
	sync.Mutex
	m map[string]bool
}{m: map[string]bool{}}

// forEachCRIDaemon is forEachDaemon for CRI tests: crictl must exist, and the sandbox, wasm and
// native images are imported into namespace k8s.io.
func forEachCRIDaemon(t *testing.T, fn func(t *testing.T, c *criClient)) {
	t.Helper()
	requireSuite(t)
	if _, err := os.Stat(crictlBin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("crictl missing under CI: %v (run scripts/install-deps.sh)", err)
		}
		t.Skipf("crictl missing: %v (run scripts/install-deps.sh)", err)
	}
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		c := &criClient{t: t, d: d}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("containerd %s log (tail):\n%s", d.version, tail(d.logPath(), 150))
			}
		})
		c.importImages()
		fn(t, c)
	})
}

// criClient runs crictl and ctr -n k8s.io against one daemon for one test.
type criClient struct {
	t    *testing.T
	d    *daemon
	pods []string // sandbox ids created by this test (removed at cleanup if still there)
}

// ctrK8s runs this daemon's ctr in namespace k8s.io.
func (c *criClient) ctrK8s(args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), ctrTimeout)
	defer cancel()
	full := append([]string{"--address", c.d.sock(), "--namespace", criNS}, args...)
	return runCmd(ctx, filepath.Join(c.d.bin, "ctr"), full...)
}

func runCmd(ctx context.Context, bin string, args ...string) result {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = filteredEnv("CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE", "CONTAINER_RUNTIME_ENDPOINT", "IMAGE_SERVICE_ENDPOINT", "CRI_CONFIG_FILE")
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	r := result{stdout: so.String(), stderr: se.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.exit = ee.ExitCode()
	} else if err != nil {
		r.exit = -1
		r.stderr += "\n[harness] " + err.Error()
	}
	if ctx.Err() != nil {
		r.timedOut, r.exit = true, -1
	}
	return r
}

// importImages imports the CRI test images into k8s.io once per daemon. A wasip1/wasm image must
// be unpacked for that platform or CRI cannot create its container ("parent snapshot ... does not
// exist"): --platform wasip1/wasm does that; 2.x ctr also needs --local (the transfer service
// unpacks only the platforms of its unpack_config, the host's by default).
func (c *criClient) importImages() {
	t := c.t
	t.Helper()
	criImported.Lock()
	defer criImported.Unlock()
	if criImported.m[c.d.version] {
		return
	}
	wasm := []string{"images", "import", "--platform", "wasip1/wasm"}
	if !c.d.v1() {
		wasm = append(wasm, "--local")
	}
	for _, imp := range [][]string{
		{"images", "import", filepath.Join(imagesDir, "pause.tar")},
		{"images", "import", filepath.Join(imagesDir, "native-hello.tar")},
		append(wasm, filepath.Join(imagesDir, "wasmtest.tar")),
	} {
		if r := c.ctrK8s(imp...); r.exit != 0 {
			t.Fatalf("ctr -n k8s.io %s:\n%s", strings.Join(imp, " "), r)
		}
	}
	criImported.m[c.d.version] = true
}

// crictl runs crictl against the daemon's CRI endpoint.
func (c *criClient) crictl(args ...string) result {
	c.t.Helper()
	ep := "unix://" + c.d.sock()
	ctx, cancel := context.WithTimeout(context.Background(), crictlBound)
	defer cancel()
	// An empty config file of our own: no warning about a missing /etc/crictl.yaml, and nothing
	// from a crictl.yaml of the machine's.
	cfg := filepath.Join(c.d.dir, "crictl.yaml")
	if _, err := os.Stat(cfg); err != nil {
		os.WriteFile(cfg, nil, 0o644)
	}
	full := append([]string{"--config", cfg, "--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", crictlTO}, args...)
	r := runCmd(ctx, crictlBin, full...)
	if r.timedOut {
		c.t.Errorf("crictl %s: timed out after %s", strings.Join(args, " "), crictlBound)
	}
	return r
}

// must runs crictl and fails the test unless it exits 0; it returns the trimmed stdout.
func (c *criClient) must(args ...string) string {
	c.t.Helper()
	r := c.crictl(args...)
	if r.exit != 0 {
		c.t.Fatalf("crictl %s:\n%s", strings.Join(args, " "), r)
	}
	return strings.TrimSpace(r.stdout)
}

func writeJSON(t *testing.T, dir, name string, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// pod is one pod sandbox created by runPod.
type pod struct {
	c       *criClient
	id      string
	handler string
	config  string // pod config file
	dir     string // where container configs are written
	logDir  string // the pod's log_directory
}

// runPod runs a pod sandbox (crictl runp --runtime handler) with a fresh log directory; hostNet
// selects NamespaceMode NODE for the network. It is removed at the end of the test.
func (c *criClient) runPod(name, handler string, hostNet bool) *pod {
	c.t.Helper()
	return c.runPodAnnotated(name, handler, hostNet, nil)
}

// runPodAnnotated is runPod with pod annotations.
func (c *criClient) runPodAnnotated(name, handler string, hostNet bool, annotations map[string]string) *pod {
	t := c.t
	t.Helper()
	dir := t.TempDir()
	uid := name + "-" + randHex(4)
	cfg := map[string]any{
		"metadata":      map[string]any{"name": uid, "namespace": "default", "uid": uid, "attempt": 0},
		"log_directory": filepath.Join(dir, "logs"),
	}
	if annotations != nil {
		cfg["annotations"] = annotations
	}
	if hostNet {
		cfg["linux"] = map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"network": 2}}}
	} else {
		cfg["linux"] = map[string]any{}
	}
	p := &pod{c: c, handler: handler, dir: dir, logDir: filepath.Join(dir, "logs")}
	p.config = writeJSON(t, dir, "pod.json", cfg)
	r := c.crictl("runp", "--runtime", handler, p.config)
	if r.exit != 0 {
		t.Fatalf("crictl runp --runtime %s:\n%s", handler, r)
	}
	p.id = strings.TrimSpace(r.stdout)
	c.pods = append(c.pods, p.id)
	t.Cleanup(func() {
		if t.Failed() {
			p.dumpLogs()
		}
		c.removePod(p.id, false)
	})
	return p
}

// dumpLogs logs the pod's container log files (a runner's own failure goes to its stderr).
func (p *pod) dumpLogs() {
	ents, _ := os.ReadDir(p.logDir)
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(p.logDir, e.Name()))
		p.c.t.Logf("pod %s log %s:\n%s", p.id, e.Name(), b)
	}
}

// ctrSpec is the part of a CRI ContainerConfig the tests use.
type ctrSpec struct {
	name        string
	attempt     int
	image       string   // default testImage
	command     []string // replaces the image entrypoint
	args        []string // replaces the image cmd
	envs        map[string]string
	mounts      map[string]string // container path -> host path
	linux       map[string]any    // the LinuxContainerConfig (security_context, resources); nil: empty
	annotations map[string]string
}

// tryCreate runs crictl create for s and returns the container's id and log file, and crictl's
// result (a failed create is the caller's to judge).
func (p *pod) tryCreate(s ctrSpec) (id, logPath string, r result) {
	t := p.c.t
	t.Helper()
	if s.image == "" {
		s.image = testImage
	}
	logName := fmt.Sprintf("%s-%d.log", s.name, s.attempt)
	cfg := map[string]any{
		"metadata": map[string]any{"name": s.name, "attempt": s.attempt},
		"image":    map[string]any{"image": s.image},
		"log_path": logName,
		"linux":    map[string]any{},
	}
	if s.linux != nil {
		cfg["linux"] = s.linux
	}
	if s.command != nil {
		cfg["command"] = s.command
	}
	if s.annotations != nil {
		cfg["annotations"] = s.annotations
	}
	if s.args != nil {
		cfg["args"] = s.args
	}
	var envs []map[string]string
	for k, v := range s.envs {
		envs = append(envs, map[string]string{"key": k, "value": v})
	}
	if envs != nil {
		cfg["envs"] = envs
	}
	var mounts []map[string]any
	for cp, hp := range s.mounts {
		mounts = append(mounts, map[string]any{"container_path": cp, "host_path": hp})
	}
	if mounts != nil {
		cfg["mounts"] = mounts
	}
	f := writeJSON(t, p.dir, fmt.Sprintf("ctr-%s-%d.json", s.name, s.attempt), cfg)
	r = p.c.crictl("create", p.id, f, p.config)
	return strings.TrimSpace(r.stdout), filepath.Join(p.logDir, logName), r
}

// create creates a container in the pod and returns its id and log file.
func (p *pod) create(s ctrSpec) (id, logPath string) {
	p.c.t.Helper()
	id, logPath, r := p.tryCreate(s)
	if r.exit != 0 {
		p.c.t.Fatalf("crictl create %s (image %s):\n%s", s.name, s.image, r)
	}
	return id, logPath
}

// run creates and starts a container.
func (p *pod) run(s ctrSpec) (id, logPath string) {
	p.c.t.Helper()
	id, logPath = p.create(s)
	p.c.must("start", id)
	return id, logPath
}

// ctrInspect is what the tests read from `crictl inspect -o json`.
type ctrInspect struct {
	Status struct {
		State    string `json:"state"`
		ExitCode int    `json:"exitCode"`
		Reason   string `json:"reason"`
		LogPath  string `json:"logPath"`
	} `json:"status"`
	Info struct {
		Pid int `json:"pid"`
	} `json:"info"`
}

func (c *criClient) inspect(id string) ctrInspect {
	c.t.Helper()
	var ci ctrInspect
	out := c.must("inspect", "-o", "json", id)
	if err := json.Unmarshal([]byte(out), &ci); err != nil {
		c.t.Fatalf("crictl inspect %s: %v\n%s", id, err, out)
	}
	return ci
}

// waitState polls crictl inspect until id is in state want.
func (c *criClient) waitState(id, want string, timeout time.Duration) ctrInspect {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ci := c.inspect(id)
		if ci.Status.State == want {
			return ci
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("container %s: state %s (exit %d, reason %q), want %s after %s", id, ci.Status.State, ci.Status.ExitCode, ci.Status.Reason, want, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logs returns `crictl logs` of id, stdout and stderr together.
func (c *criClient) logs(id string) string {
	c.t.Helper()
	r := c.crictl("logs", id)
	if r.exit != 0 {
		c.t.Errorf("crictl logs %s:\n%s", id, r)
	}
	return r.stdout + r.stderr
}

// podInspect is what the tests read from `crictl inspectp -o json`.
type podInspect struct {
	Status struct {
		State   string `json:"state"`
		Network struct {
			IP string `json:"ip"`
		} `json:"network"`
	} `json:"status"`
	Info struct {
		Pid         int `json:"pid"`
		RuntimeSpec struct {
			Linux struct {
				Namespaces []struct {
					Type string `json:"type"`
					Path string `json:"path"`
				} `json:"namespaces"`
				CgroupsPath string `json:"cgroupsPath"`
			} `json:"linux"`
		} `json:"runtimeSpec"`
	} `json:"info"`
}

func (p *pod) inspect() podInspect {
	t := p.c.t
	t.Helper()
	var pi podInspect
	out := p.c.must("inspectp", "-o", "json", p.id)
	if err := json.Unmarshal([]byte(out), &pi); err != nil {
		t.Fatalf("crictl inspectp %s: %v\n%s", p.id, err, out)
	}
	return pi
}

// removePod stops and removes a pod (and its containers); strict fails the test on errors.
func (c *criClient) removePod(id string, strict bool) {
	c.t.Helper()
	for i, p := range c.pods {
		if p == id {
			c.pods = append(c.pods[:i], c.pods[i+1:]...)
			break
		}
	}
	for _, args := range [][]string{{"stopp", id}, {"rmp", "--force", id}} {
		r := c.crictl(args...)
		if r.exit != 0 && (strict || !strings.Contains(r.stderr, "not found")) {
			if strict {
				c.t.Errorf("crictl %s:\n%s", strings.Join(args, " "), r)
			} else {
				c.t.Logf("cleanup: crictl %s:\n%s", strings.Join(args, " "), r)
			}
		}
	}
	if strict {
		return
	}
	// After a failure (a crashed shim, for one) the CRI plugin may still list a container as
	// running and refuse rmp: stop and remove the pod's containers one by one, then retry.
	ps := c.crictl("ps", "-a", "-q", "--pod", id)
	if ps.exit != 0 || strings.TrimSpace(ps.stdout) == "" {
		return
	}
	for _, cid := range strings.Fields(ps.stdout) {
		c.crictl("stop", "--timeout", "0", cid)
		if r := c.crictl("rm", "--force", cid); r.exit != 0 {
			c.t.Logf("cleanup: crictl rm --force %s:\n%s", cid, r)
		}
	}
	if r := c.crictl("rmp", "--force", id); r.exit != 0 {
		c.t.Logf("cleanup: crictl rmp --force %s (retry):\n%s", id, r)
	}
}

// ---- processes, namespaces, cgroups ----------------------------------------------------------

// criShims lists the shim server processes of this daemon's CRI namespace.
func (c *criClient) criShims() []shimProc {
	var out []shimProc
	for _, p := range shimProcs() {
		if !p.isRunner() && p.flag("address") == c.d.sock() && p.flag("namespace") == criNS {
			out = append(out, p)
		}
	}
	return out
}

// runnerOf returns the live runner of container id, if any.
func runnerOf(id string) (shimProc, bool) {
	for _, p := range shimProcs() {
		if p.isRunner() && len(p.argv) > 2 && p.argv[2] == id {
			return p, true
		}
	}
	return shimProc{}, false
}

func nsInode(t *testing.T, pid any, kind string) string {
	t.Helper()
	l, err := os.Readlink(fmt.Sprintf("/proc/%v/ns/%s", pid, kind))
	if err != nil {
		t.Fatalf("namespace %s of %v: %v", kind, pid, err)
	}
	return l
}

// procCgroups returns the cgroup directories of pid under /sys/fs/cgroup (one per v1 hierarchy,
// or the v2 one), excluding root cgroups.
func procCgroups(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range lines(string(b)) {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 || f[2] == "/" {
			continue
		}
		ctrl := f[1]
		switch {
		case ctrl == "": // v2 (on hybrid: the unified mount)
			if fi, err := os.Stat("/sys/fs/cgroup/unified"); err == nil && fi.IsDir() {
				ctrl = "unified"
			}
		case strings.HasPrefix(ctrl, "name="):
			ctrl = strings.TrimPrefix(ctrl, "name=")
		}
		p := filepath.Join("/sys/fs/cgroup", ctrl, f[2])
		if _, err := os.Stat(p); err != nil {
			// v1 controllers mounted together (cpu,cpuacct): the mount may be named either way.
			for _, alt := range strings.Split(ctrl, ",") {
				if q := filepath.Join("/sys/fs/cgroup", alt, f[2]); alt != ctrl {
					if _, err := os.Stat(q); err == nil {
						p = q
						break
					}
				}
			}
		}
		out = append(out, p)
	}
	return out
}

// extraCgroups are cgroup directories seen for CRI containers: checkLeaks reports those still
// present, teardownSuite removes them.
var extraCgroups struct {
	sync.Mutex
	dirs map[string]bool
}

func noteCgroups(dirs []string) {
	extraCgroups.Lock()
	defer extraCgroups.Unlock()
	if extraCgroups.dirs == nil {
		extraCgroups.dirs = map[string]bool{}
	}
	for _, d := range dirs {
		extraCgroups.dirs[d] = true
	}
}

// leftCgroups returns the noted cgroup directories that still exist.
func leftCgroups() []string {
	extraCgroups.Lock()
	defer extraCgroups.Unlock()
	var out []string
	for d := range extraCgroups.dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

// removeExtraCgroups removes the noted cgroups still there, killing what runs in them.
func removeExtraCgroups() {
	dirs := leftCgroups()
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		for i := 0; i < 50 && os.Remove(d) != nil; i++ {
			b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// tracked is what a test saw of its pods while they ran, checked by removeAllAndCheck.
type tracked struct {
	ids     []string // sandbox and container ids
	cgroups []string
	netns   []string // network namespace files of sandboxes
}

// track records a running container or sandbox (by its process) for the final checks. Its
// process must be in its own cgroup: the CRI plugin's linux.cgroupsPath, which is /k8s.io/<id>
// (containerd's default, namespace/id) when the pod config has no cgroup_parent.
func (tr *tracked) track(t *testing.T, id string, pid int) {
	t.Helper()
	tr.ids = append(tr.ids, id)
	if pid <= 0 {
		t.Errorf("%s: no pid from crictl inspect", id)
		return
	}
	cg := procCgroups(pid)
	noteCgroups(cg)
	tr.cgroups = append(tr.cgroups, cg...)
	own := 0
	for _, d := range cg {
		if strings.HasSuffix(d, "/"+criNS+"/"+id) {
			own++
		}
	}
	if own == 0 {
		t.Errorf("process %d of %s is in no cgroup /%s/%s: %v", pid, id, criNS, id, cg)
	}
}

// removeAllAndCheck stops and removes every pod of the test, then checks that nothing of them is
// left: shim or runner processes, mounts under the daemon's directory, cgroups, netns files.
func (c *criClient) removeAllAndCheck(tr *tracked) {
	t := c.t
	t.Helper()
	for _, id := range append([]string(nil), c.pods...) {
		c.removePod(id, true)
	}
	var left []string
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		left = nil
		for _, p := range c.criShims() {
			left = append(left, fmt.Sprintf("shim process %d: %s", p.pid, strings.Join(p.argv, " ")))
		}
		for _, id := range tr.ids {
			if p, ok := runnerOf(id); ok {
				left = append(left, fmt.Sprintf("runner %d of %s", p.pid, id))
			}
		}
		for _, mp := range mountsUnder(c.d.dir) {
			for _, id := range tr.ids {
				if strings.Contains(mp, id) {
					left = append(left, "mount "+mp)
					break
				}
			}
			if strings.Contains(mp, "/netns/") {
				left = append(left, "netns mount "+mp)
			}
		}
		for _, cg := range tr.cgroups {
			if _, err := os.Stat(cg); err == nil {
				left = append(left, "cgroup "+cg)
			}
		}
		for _, ns := range tr.netns {
			if _, err := os.Stat(ns); err == nil {
				left = append(left, "netns file "+ns)
			}
		}
		for _, ns := range netnsFiles(c.d) {
			left = append(left, "netns file under the state dir "+ns)
		}
		if len(left) == 0 || time.Now().After(end) {
			break
		}
	}
	if len(left) > 0 {
		t.Errorf("left after crictl stopp + rmp of every pod:\n  %s", strings.Join(left, "\n  "))
	}
	if r := c.must("pods", "-q"); r != "" {
		t.Errorf("crictl pods still lists: %s", r)
	}
	c.pods = nil
}

// netnsFiles lists files in directories named "netns" under the daemon's state dir (CRI's
// netns_mounts_under_state_dir).
func netnsFiles(d *daemon) []string {
	var out []string
	filepath.WalkDir(filepath.Join(d.dir, "state"), func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() && filepath.Base(filepath.Dir(p)) == "netns" {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Errorf("%v", err)
	}
	return string(b)
}

// ---- tests -----------------------------------------------------------------------------------

// TestCRIPod: a host-network wazero pod with several containers: logs (stdout and stderr), exit
// codes, one shim for the whole pod, a restart (attempt 1), stop with a grace period, stats, and
// nothing left after the pod's removal.
func TestCRIPod(t *testing.T) {
	forEachCRIDaemon(t, func(t *testing.T, c *criClient) {
		var tr tracked
		shimsBefore := len(c.criShims())
		if shimsBefore != 0 {
			t.Fatalf("%d CRI shim(s) of this daemon alive before the test", shimsBefore)
		}
		p := c.runPod("wz-pod", "wazero", true)
		pi := p.inspect()
		if pi.Status.State != "SANDBOX_READY" {
			t.Fatalf("pod state %s, want SANDBOX_READY", pi.Status.State)
		}
		tr.track(t, p.id, pi.Info.Pid)
		t.Logf("sandbox %s pid %d cgroupsPath %q", p.id, pi.Info.Pid, pi.Info.RuntimeSpec.Linux.CgroupsPath)

		a, aLog := p.run(ctrSpec{name: "a", args: []string{"hello"}})
		b, _ := p.run(ctrSpec{name: "b", args: []string{"sleep", "300"}})
		e, _ := p.run(ctrSpec{name: "e", args: []string{"stderr", "oops-on-stderr"}})
		x, _ := p.run(ctrSpec{name: "x", args: []string{"exit", "42"}})
		bi := c.waitState(b, stateRunning, 20*time.Second)
		tr.track(t, b, bi.Info.Pid)
		tr.ids = append(tr.ids, a, e, x)

		ai := c.waitState(a, stateExited, 20*time.Second)
		if ai.Status.ExitCode != 0 {
			t.Errorf("container a (hello): exitCode %d, want 0", ai.Status.ExitCode)
		}
		if out := c.logs(a); !strings.Contains(out, "hello from wasm") {
			t.Errorf("crictl logs a = %q, want it to contain %q", out, "hello from wasm")
		}
		if ei := c.waitState(e, stateExited, 20*time.Second); ei.Status.ExitCode != 0 {
			t.Errorf("container e (stderr): exitCode %d, want 0", ei.Status.ExitCode)
		}
		if out := c.logs(e); !strings.Contains(out, "oops-on-stderr") {
			t.Errorf("crictl logs e = %q, want the stderr line %q", out, "oops-on-stderr")
		}
		if xi := c.waitState(x, stateExited, 20*time.Second); xi.Status.ExitCode != 42 {
			t.Errorf("container x (exit 42): exitCode %d, want 42", xi.Status.ExitCode)
		}
		if ps := c.must("ps", "--state", "Running", "-q"); !strings.Contains(ps, b) {
			t.Errorf("crictl ps --state Running does not list b %s:\n%s", b, ps)
		}

		// One shim serves the sandbox and every container of the pod.
		shims := c.criShims()
		if len(shims) != 1 {
			t.Errorf("pod with 4 containers is served by %d shim processes, want 1: %v", len(shims), shims)
		}
		for _, id := range []string{p.id, b} {
			r, ok := runnerOf(id)
			if !ok {
				t.Errorf("no runner process for %s", id)
				continue
			}
			if len(shims) == 1 && r.ppid != shims[0].pid {
				t.Errorf("runner of %s (pid %d) has parent %d, want the pod's shim %d", id, r.pid, r.ppid, shims[0].pid)
			}
		}

		// Restart: the kubelet creates attempt 1 from the same config after a exited.
		a1, a1Log := p.run(ctrSpec{name: "a", attempt: 1, args: []string{"hello"}})
		tr.ids = append(tr.ids, a1)
		if a1i := c.waitState(a1, stateExited, 20*time.Second); a1i.Status.ExitCode != 0 {
			t.Errorf("restarted a (attempt 1): exitCode %d, want 0", a1i.Status.ExitCode)
		}
		if out := c.logs(a1); !strings.Contains(out, "hello from wasm") {
			t.Errorf("crictl logs of restarted a = %q, want %q", out, "hello from wasm")
		}
		if got := readFile(t, a1Log); strings.Count(got, "hello from wasm") != 1 {
			t.Errorf("log file of attempt 1 %s:\n%s\nwant exactly one %q", a1Log, got, "hello from wasm")
		}
		if got := readFile(t, aLog); strings.Count(got, "hello from wasm") != 1 {
			t.Errorf("log file of attempt 0 %s:\n%s\nwant exactly one %q", aLog, got, "hello from wasm")
		}

		// Stats of the running container come from its cgroup (the shim's Stats).
		checkStats(t, c, b)

		// Stop with a grace period: SIGTERM ends the guest (no handler), well before the timeout.
		br, _ := runnerOf(b)
		start := time.Now()
		c.must("stop", "--timeout", "2", b)
		if el := time.Since(start); el > 10*time.Second {
			t.Errorf("crictl stop --timeout 2 took %s", el)
		} else {
			t.Logf("crictl stop --timeout 2: %s", el.Round(time.Millisecond))
		}
		bs := c.inspect(b)
		if bs.Status.State != stateExited || (bs.Status.ExitCode != 143 && bs.Status.ExitCode != 137) {
			t.Errorf("b after crictl stop: state %s exitCode %d, want %s with 143 (SIGTERM) or 137", bs.Status.State, bs.Status.ExitCode, stateExited)
		}
		if br.pid != 0 && br.alive() {
			t.Errorf("runner %d of b still alive after crictl stop", br.pid)
		}
		if len(shims) == 1 && !shims[0].alive() {
			t.Errorf("the pod's shim exited when b stopped, while the sandbox still runs")
		}

		c.removeAllAndCheck(&tr)
	})
}

// statsValue reads a CRI UInt64Value ({"value": "N"}; protojson writes uint64 as a string).
type statsValue struct {
	Value json.RawMessage `json:"value"`
}

func (v *statsValue) get() (uint64, bool) {
	if v == nil || v.Value == nil {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.Trim(string(v.Value), `"`), 10, 64)
	return n, err == nil
}

func checkStats(t *testing.T, c *criClient, id string) {
	t.Helper()
	var out string
	for end := time.Now().Add(15 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		out = c.must("stats", "-o", "json", "--id", id)
		var st struct {
			Stats []struct {
				CPU *struct {
					UsageCoreNanoSeconds *statsValue `json:"usageCoreNanoSeconds"`
				} `json:"cpu"`
				Memory *struct {
					WorkingSetBytes *statsValue `json:"workingSetBytes"`
					UsageBytes      *statsValue `json:"usageBytes"`
				} `json:"memory"`
			} `json:"stats"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("crictl stats -o json: %v\n%s", err, out)
		}
		var msg []string
		if len(st.Stats) != 1 {
			msg = append(msg, fmt.Sprintf("%d entries, want 1", len(st.Stats)))
		} else {
			s := st.Stats[0]
			if s.CPU == nil {
				msg = append(msg, "no cpu")
			} else if _, ok := s.CPU.UsageCoreNanoSeconds.get(); !ok {
				msg = append(msg, "no cpu.usageCoreNanoSeconds")
			}
			if s.Memory == nil {
				msg = append(msg, "no memory")
			} else {
				if n, _ := s.Memory.WorkingSetBytes.get(); n == 0 {
					msg = append(msg, "memory.workingSetBytes missing or 0")
				}
				if n, _ := s.Memory.UsageBytes.get(); n == 0 {
					msg = append(msg, "memory.usageBytes missing or 0")
				}
			}
		}
		if len(msg) == 0 {
			t.Logf("crictl stats -o json --id %s:\n%s", id, out)
			return
		}
		if time.Now().After(end) {
			t.Errorf("crictl stats of running container %s: %s\n%s", id, strings.Join(msg, "; "), out)
			return
		}
	}
}

// TestCRIEnvAndVolume: two containers of a pod share a host directory; env from the config.
func TestCRIEnvAndVolume(t *testing.T) {
	forEachCRIDaemon(t, func(t *testing.T, c *criClient) {
		var tr tracked
		host := t.TempDir()
		p := c.runPod("wz-vol", "wazero", true)
		tr.track(t, p.id, p.inspect().Info.Pid)
		mounts := map[string]string{"/data": host}

		w, _ := p.run(ctrSpec{name: "writer", args: []string{"write", "/data/shared.txt", "from-writer"}, mounts: mounts})
		tr.ids = append(tr.ids, w)
		if wi := c.waitState(w, stateExited, 20*time.Second); wi.Status.ExitCode != 0 {
			t.Fatalf("writer: exitCode %d, want 0; logs:\n%s", wi.Status.ExitCode, c.logs(w))
		}
		if b, err := os.ReadFile(filepath.Join(host, "shared.txt")); err != nil || string(b) != "from-writer" {
			t.Errorf("host file: %q, %v; want %q", b, err, "from-writer")
		}
		r, _ := p.run(ctrSpec{name: "reader", args: []string{"read", "/data/shared.txt"}, mounts: mounts})
		tr.ids = append(tr.ids, r)
		if ri := c.waitState(r, stateExited, 20*time.Second); ri.Status.ExitCode != 0 {
			t.Errorf("reader: exitCode %d, want 0", ri.Status.ExitCode)
		}
		if out := c.logs(r); !strings.Contains(out, "from-writer") {
			t.Errorf("crictl logs reader = %q, want %q", out, "from-writer")
		}

		en, _ := p.run(ctrSpec{name: "env", args: []string{"env"}, envs: map[string]string{"GREETING": "hi"}})
		tr.ids = append(tr.ids, en)
		c.waitState(en, stateExited, 20*time.Second)
		out := c.logs(en)
		for _, want := range []string{"GREETING=hi", "PATH=/bin"} {
			if !hasLine(out, want) {
				t.Errorf("env output has no line %q:\n%s", want, out)
			}
		}
		c.removeAllAndCheck(&tr)
	})
}

// TestCRINetwork: a pod in its own network namespace from a CNI bridge network: a pod IP, the
// workload runner in the sandbox's network namespace, the sandbox in new IPC and UTS namespaces.
func TestCRINetwork(t *testing.T) {
	forEachCRIDaemon(t, func(t *testing.T, c *criClient) {
		var tr tracked
		n := c.bridgeNetwork(t)
		p := c.runPod("wz-net", "wazero", false)
		pi := p.inspect()
		tr.track(t, p.id, pi.Info.Pid)
		for _, ns := range pi.Info.RuntimeSpec.Linux.Namespaces {
			if ns.Type == "network" && ns.Path != "" {
				tr.netns = append(tr.netns, ns.Path)
			}
		}
		t.Logf("pod %s: ip %q, sandbox pid %d, network namespace %v", p.id, pi.Status.Network.IP, pi.Info.Pid, tr.netns)
		if !strings.HasPrefix(pi.Status.Network.IP, n.prefix) {
			t.Errorf("pod IP %q, want one from %s0/24", pi.Status.Network.IP, n.prefix)
		}
		if len(tr.netns) != 1 {
			t.Errorf("sandbox spec has network namespace paths %v, want one", tr.netns)
		}

		w, _ := p.run(ctrSpec{name: "sleeper", args: []string{"sleep", "300"}})
		wi := c.waitState(w, stateRunning, 20*time.Second)
		tr.track(t, w, wi.Info.Pid)

		sb, ok := runnerOf(p.id)
		if !ok {
			t.Fatalf("no sandbox runner for %s", p.id)
		}
		wr, ok := runnerOf(w)
		if !ok {
			t.Fatalf("no runner for %s", w)
		}
		if pi.Info.Pid != sb.pid {
			t.Errorf("inspectp pid %d, sandbox runner pid %d", pi.Info.Pid, sb.pid)
		}
		self := nsInode(t, "self", "net")
		sbNet, wNet := nsInode(t, sb.pid, "net"), nsInode(t, wr.pid, "net")
		if sbNet == self {
			t.Errorf("sandbox runner is in the host network namespace %s", self)
		}
		if wNet != sbNet {
			t.Errorf("workload runner network namespace %s, sandbox %s: want the same", wNet, sbNet)
		}
		for _, kind := range []string{"ipc", "uts"} {
			if got, host := nsInode(t, sb.pid, kind), nsInode(t, "self", kind); got == host {
				t.Errorf("sandbox %s namespace %s is the host's", kind, got)
			}
		}
		if len(tr.netns) == 1 {
			var st1, st2 syscall.Stat_t
			if err1, err2 := syscall.Stat(tr.netns[0], &st1), syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", sb.pid), &st2); err1 != nil || err2 != nil || st1.Ino != st2.Ino {
				t.Errorf("netns file %s (inode %d, %v) is not the sandbox runner's network namespace (inode %d, %v)", tr.netns[0], st1.Ino, err1, st2.Ino, err2)
			}
		}
		c.removeAllAndCheck(&tr)
	})
}

// cniReady reports whether the CRI plugin's NetworkReady condition is true.
func (c *criClient) cniReady() bool {
	r := c.crictl("info", "-o", "json")
	var info struct {
		Status struct {
			Conditions []struct {
				Type   string `json:"type"`
				Status bool   `json:"status"`
			} `json:"conditions"`
		} `json:"status"`
	}
	if r.exit != 0 || json.Unmarshal([]byte(r.stdout), &info) != nil {
		return false
	}
	for _, cd := range info.Status.Conditions {
		if cd.Type == "NetworkReady" {
			return cd.Status
		}
	}
	return false
}

// TestCRIRuncAndWasm: a runc pod and a wazero pod side by side on one daemon.
func TestCRIRuncAndWasm(t *testing.T) {
	forEachCRIDaemon(t, func(t *testing.T, c *criClient) {
		var tr tracked
		rp := c.runPod("runc-pod", "runc", true)
		wp := c.runPod("wasm-pod", "wazero", true)
		tr.track(t, wp.id, wp.inspect().Info.Pid)
		tr.track(t, rp.id, rp.inspect().Info.Pid)
		rn, _ := rp.run(ctrSpec{name: "native", image: nativeImage, args: []string{"via-cri"}})
		wn, _ := wp.run(ctrSpec{name: "wasm", args: []string{"hello"}})
		tr.ids = append(tr.ids, rn, wn)
		if ri := c.waitState(rn, stateExited, 20*time.Second); ri.Status.ExitCode != 0 {
			t.Errorf("runc container: exitCode %d, want 0", ri.Status.ExitCode)
		}
		if wi := c.waitState(wn, stateExited, 20*time.Second); wi.Status.ExitCode != 0 {
			t.Errorf("wasm container: exitCode %d, want 0", wi.Status.ExitCode)
		}
		if out := c.logs(rn); !strings.Contains(out, "hello from native via-cri") {
			t.Errorf("crictl logs of the runc container = %q, want %q", out, "hello from native via-cri")
		}
		if out := c.logs(wn); !strings.Contains(out, "hello from wasm") {
			t.Errorf("crictl logs of the wasm container = %q, want %q", out, "hello from wasm")
		}
		if n := len(c.criShims()); n != 1 {
			t.Errorf("%d wazero shim processes for one wasm pod (the runc pod has its own runc shim), want 1", n)
		}
		c.removeAllAndCheck(&tr)
	})
}

// cniBridge is a CNI bridge network made for one test: a unique bridge, a /24 of 10.88.100-199
// with host-local IPAM, written as the daemon's only conflist.
type cniBridge struct {
	bridge  string // the bridge's name, wzbr<random>
	network string // the CNI network name
	prefix  string // "10.88.N.": the pod IPs are prefix+"10" .. prefix+"200", the gateway prefix+"1"
	ipamDir string // host-local's data directory
}

// bridgeNetwork writes a CNI bridge conflist for the daemon, waits for the CRI plugin to load it,
// and removes the bridge and the conflist when the test ends. isGateway is false, so the bridge
// plugin never turns on IP forwarding on the host.
func (c *criClient) bridgeNetwork(t *testing.T) cniBridge {
	t.Helper()
	n := cniBridge{bridge: "wzbr" + randHex(3)}
	n.network = "wzit-" + n.bridge
	n.prefix = fmt.Sprintf("10.88.%d.", 100+int(randHex(1)[0])%100)
	n.ipamDir = filepath.Join(t.TempDir(), "ipam")
	t.Cleanup(func() {
		if _, err := os.Stat("/sys/class/net/" + n.bridge); err == nil {
			if out, err := exec.Command("ip", "link", "del", n.bridge).CombinedOutput(); err != nil {
				t.Errorf("ip link del %s: %v %s", n.bridge, err, out)
			}
		}
	})
	if r, err := exec.Command("ip", "-4", "route", "show", "match", n.prefix+"1").CombinedOutput(); err == nil && strings.Contains(string(r), "/24") {
		t.Fatalf("the host already routes %s0/24:\n%s", n.prefix, r)
	}
	conf := filepath.Join(c.d.dir, "cni", "10-wzit.conflist")
	writeJSON(t, filepath.Dir(conf), filepath.Base(conf), map[string]any{
		"cniVersion": "1.0.0",
		"name":       n.network,
		"plugins": []any{map[string]any{
			"type": "bridge", "bridge": n.bridge, "isGateway": false, "ipMasq": false,
			"ipam": map[string]any{
				"type": "host-local",
				"ranges": [][]map[string]string{{{
					"subnet": n.prefix + "0/24", "rangeStart": n.prefix + "10", "rangeEnd": n.prefix + "200", "gateway": n.prefix + "1",
				}}},
				"dataDir": n.ipamDir,
			},
		}},
	})
	t.Cleanup(func() { os.Remove(conf) })
	// The CRI plugin picks up the new CNI config asynchronously (fsnotify).
	for end := time.Now().Add(15 * time.Second); !c.cniReady() && time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
	}
	return n
}
