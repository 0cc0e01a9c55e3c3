//go:build linux

// Package k8s runs containerd-shim-wazero-v1 under Kubernetes itself: per tested containerd
// version, a one-node cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, a
// kubelet and a private containerd) comes up inside a network namespace of its own, and the tests
// drive it with kubectl, as a user would.
//
// Requirements: root; the Kubernetes binaries of kubeVersion and etcd in $TOOLS/kubernetes-VERSION/bin
// and the containerd builds (scripts/install-deps.sh); crictl in $TOOLS/bin; the CNI plugins in
// /usr/lib/cni; ../../bin/containerd-shim-wazero-v1 (make build); ../../testdata/build/images (make
// testdata). Without them the tests skip, except under CI=true, where they fail.
//
// Everything lives in a temporary directory and a network namespace the harness creates: the
// cluster listens on that namespace's loopback only, pods get addresses from a bridge inside it,
// and deleting the namespace removes the bridge and any rule the CNI plugins added. After the
// tests, TestMain checks that no process, mount, cgroup, network namespace, /var/log/containers
// link or kernel setting changed by the kubelet is left, and fails the run if one is.
package k8s

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wazero-shim/containerd-shim-wazero-v1/integration/testenv"
)

// kubeVersion is the Kubernetes release the tests run (scripts/install-deps.sh KUBERNETES_VERSION
// builds it); the kubelet must report it.
var kubeVersion = env.Kubernetes

const (
	shimName     = "containerd-shim-wazero-v1"
	runnerName   = "containerd-shim-wazero-v1-runner"
	serverName   = "containerd-shim-wazero-v1-server" // the shim's server, started by its entry (shimName)
	runtimeType  = "io.containerd.wazero.v1"
	sandboxImage = "registry.k8s.io/pause:3.10.2"
	cniBin       = "/usr/lib/cni"
	// podSubnet: the pods' addresses, on a bridge inside the cluster's network namespace only.
	podSubnet = "10.222.0.0/24"
	bridgeDev = "wzk8s0"
)

// env holds the tested versions (scripts/versions.sh, shared with the other suite and the scripts).
var env = testenv.MustRead(filepath.Join("..", ".."))

// testedVersions are the containerd releases the cluster runs on (subtests named after them):
// all of them, or $WZ_VERSIONS outside CI.
func testedVersions() []string { return env.Tested() }

var (
	repoRoot  = filepath.Join("..", "..")
	toolsDir  = envOr("TOOLS", "/var/tmp/wazero-shim-tools")
	kubeBin   = envOr("WZ_KUBE_BIN", filepath.Join(toolsDir, "kubernetes-"+kubeVersion, "bin"))
	crictlBin = envOr("WZ_CRICTL", filepath.Join(toolsDir, "bin", "crictl"))
	shimSrc   = envOr("WZ_SHIM_BIN", filepath.Join(repoRoot, "bin", shimName))
	imagesDir = envOr("WZ_IMAGES_DIR", filepath.Join(repoRoot, "testdata", "build", "images"))
	kubeBins  = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl"}
	// The system containerd versions (Debian's package), as in integration/harness_test.go.
	systemBins = env.SystemBins()
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func containerdBin(version string) string {
	if d, ok := systemBins[version]; ok {
		return d
	}
	return filepath.Join(toolsDir, "containerd-"+version, "bin")
}

// suite is the per-process state shared by the clusters.
var suite struct {
	skipReason              string
	tmp                     string
	shimDir                 string // copies of the shim and runner: their processes are found by /proc/PID/exe
	probeImage              string // testdata/probe packaged as an image tarball
	installerImage          string // the installer image tarball (installer_test.go)
	cgroups                 map[string]bool
	sysctls                 map[string]string
	varLogContainersExisted bool
	// ids are the sandbox and container ids the clusters' containerds logged: with cgroupsPerQOS
	// off, their cgroups are /k8s.io/<id> (and the shim's /containerd-shim-wazero-fill/<id>-...),
	// names another suite's containerd on the machine uses too, so only these ids count as ours.
	idsMu sync.Mutex
	ids   map[string]bool
}

var hexID = regexp.MustCompile(`\b[0-9a-f]{64}\b`)

// recordIDs adds the 64-hex ids in a containerd log to suite.ids.
func recordIDs(logPath string) {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return
	}
	suite.idsMu.Lock()
	defer suite.idsMu.Unlock()
	if suite.ids == nil {
		suite.ids = map[string]bool{}
	}
	for _, id := range hexID.FindAll(b, -1) {
		suite.ids[string(id)] = true
	}
}

func knownID(name string) bool {
	if len(name) < 64 {
		return false
	}
	suite.idsMu.Lock()
	defer suite.idsMu.Unlock()
	return suite.ids[name[:64]]
}

func preconditions() string {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "must run as root")
	}
	for _, b := range kubeBins {
		if _, err := os.Stat(filepath.Join(kubeBin, b)); err != nil {
			missing = append(missing, filepath.Join(kubeBin, b)+" (run scripts/install-deps.sh)")
		}
	}
	if out, err := exec.Command(filepath.Join(kubeBin, "kubelet"), "--version").Output(); err == nil &&
		!strings.Contains(string(out), kubeVersion) {
		missing = append(missing, fmt.Sprintf("kubelet reports %q, want %s", strings.TrimSpace(string(out)), kubeVersion))
	}
	for _, v := range testedVersions() {
		for _, b := range []string{"containerd", "ctr", "containerd-shim-runc-v2"} {
			if _, err := os.Stat(filepath.Join(containerdBin(v), b)); err != nil {
				missing = append(missing, filepath.Join(containerdBin(v), b)+" (run scripts/install-deps.sh)")
			}
		}
	}
	for _, f := range []string{crictlBin, shimSrc, filepath.Join(cniBin, "bridge"), filepath.Join(cniBin, "host-local"),
		filepath.Join(imagesDir, "wasmtest.tar"), filepath.Join(imagesDir, "pause.tar"),
		filepath.Join(imagesDir, "hello.tar"), filepath.Join(imagesDir, "httpserver.tar")} {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f+" (run make deps build testdata)")
		}
	}
	for _, b := range []string{"nsenter", "ip"} {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b+" not on PATH")
		}
	}
	return strings.Join(missing, "; ")
}

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	if reason := preconditions(); reason != "" {
		suite.skipReason = reason
		return m.Run()
	}
	if err := setupSuite(); err != nil {
		fmt.Fprintln(os.Stderr, "k8s: setup:", err)
		teardownSuite()
		return 1
	}
	code := m.Run()
	// Clusters tear themselves down at the end of their subtest; what is left now is a leak.
	leaks := checkLeaks()
	teardownSuite()
	if len(leaks) > 0 {
		fmt.Fprintln(os.Stderr, "k8s: LEAK CHECK FAILED:")
		for _, l := range leaks {
			fmt.Fprintln(os.Stderr, "  -", l)
		}
		return 1
	}
	fmt.Fprintln(os.Stderr, "k8s: leak check passed (no processes, mounts, cgroups, network namespaces, log links or kernel settings left)")
	return code
}

// kubeletSysctls are the kernel settings a kubelet sets at start (its container manager's
// setupKernelTunables, unless protectKernelDefaults): saved before and restored after the tests.
var kubeletSysctls = []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}

func setupSuite() error {
	tmp, err := os.MkdirTemp("", "wzk8s-")
	if err != nil {
		return err
	}
	suite.tmp = tmp
	suite.shimDir = filepath.Join(tmp, "shimbin")
	if err := os.MkdirAll(suite.shimDir, 0o755); err != nil {
		return err
	}
	if err := copyFile(shimSrc, filepath.Join(suite.shimDir, shimName)); err != nil {
		return err
	}
	for _, name := range []string{runnerName, serverName} {
		if src := filepath.Join(filepath.Dir(shimSrc), name); isFile(src) {
			if err := copyFile(src, filepath.Join(suite.shimDir, name)); err != nil {
				return err
			}
		}
	}
	suite.cgroups = cgroupSet()
	suite.sysctls = map[string]string{}
	for _, k := range kubeletSysctls {
		if b, err := os.ReadFile("/proc/sys/" + k); err == nil {
			suite.sysctls[k] = strings.TrimSpace(string(b))
		}
	}
	_, err = os.Stat("/var/log/containers")
	suite.varLogContainersExisted = err == nil
	if err := buildInstallerImage(); err != nil {
		return err
	}
	return buildProbeImage()
}

// buildProbeImage compiles testdata/probe for wasip1 and packages it with cmd/wasmimg as
// docker.io/library/wasm-probe:latest (entrypoint /probe.wasm).
func buildProbeImage() error {
	dir := filepath.Join(suite.tmp, "probe")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	wasm := filepath.Join(dir, "probe.wasm")
	build := exec.Command("go", "build", "-trimpath", "-o", wasm, "./testdata/probe")
	build.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building testdata/probe: %v\n%s", err, out)
	}
	suite.probeImage = filepath.Join(dir, "probe.tar")
	img := exec.Command("go", "run", "./cmd/wasmimg", "-o", suite.probeImage, "-name", "docker.io/library/wasm-probe:latest",
		"-entrypoint", "/probe.wasm", wasm+"=/probe.wasm")
	img.Dir = repoRoot
	if out, err := img.CombinedOutput(); err != nil {
		return fmt.Errorf("packaging the probe image: %v\n%s", err, out)
	}
	return nil
}

func teardownSuite() {
	for _, pid := range ourPIDs() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if suite.tmp != "" {
		for _, mp := range mountsUnder(suite.tmp) {
			if syscall.Unmount(mp, 0) != nil {
				syscall.Unmount(mp, syscall.MNT_DETACH)
			}
		}
		removeLogLinks()
	}
	removeNewCgroups()
	for k, v := range suite.sysctls {
		os.WriteFile("/proc/sys/"+k, []byte(v), 0o644)
	}
	for _, ns := range ourNetns() {
		exec.Command("ip", "netns", "del", ns).Run()
	}
	if suite.tmp != "" {
		if err := os.RemoveAll(suite.tmp); err != nil {
			fmt.Fprintln(os.Stderr, "k8s: cleanup:", err)
		}
	}
}

func checkLeaks() []string {
	leaks := testenv.Lingering(ourPIDs, 10*time.Second, "process")
	for _, mp := range mountsUnder(suite.tmp) {
		leaks = append(leaks, "mount left: "+mp)
	}
	for _, d := range newCgroups() {
		leaks = append(leaks, "cgroup left: "+d)
	}
	for _, ns := range ourNetns() {
		leaks = append(leaks, "network namespace left: "+ns)
	}
	for _, l := range logLinks() {
		leaks = append(leaks, "/var/log/containers link left: "+l)
	}
	for k, v := range suite.sysctls {
		if b, _ := os.ReadFile("/proc/sys/" + k); strings.TrimSpace(string(b)) != v {
			leaks = append(leaks, fmt.Sprintf("kernel setting %s is %q, was %q (not restored)", k, strings.TrimSpace(string(b)), v))
		}
	}
	return leaks
}

// ourPIDs lists live processes this suite started: the shim and runner copies (by executable), and
// every process whose command line or executable names the suite's directory or the Kubernetes
// binaries (etcd, the control plane, kubelets, containerd daemons with configs in the directory).
func ourPIDs() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	kb := filepath.Clean(kubeBin) + "/"
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			if i := bytes.LastIndexByte(st, ')'); i >= 0 && i+2 < len(st) && (st[i+2] == 'Z' || st[i+2] == 'X') {
				continue
			}
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		exe = strings.TrimSuffix(exe, " (deleted)")
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.HasPrefix(exe, suite.shimDir+"/") || strings.HasPrefix(exe, kb) ||
			(suite.tmp != "" && bytes.Contains(cmdline, []byte(suite.tmp+"/"))) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// mountsUnder lists mount points at or below dir, deepest first (testenv.MountsUnder).
var mountsUnder = testenv.MountsUnder

// cgroupSet lists the cgroup directories up to three levels below each hierarchy's root.
func cgroupSet() map[string]bool {
	set := map[string]bool{}
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		roots = []string{"/sys/fs/cgroup"} // unified (v2) only
	}
	for _, r := range roots {
		var walk func(d string, depth int)
		walk = func(d string, depth int) {
			ents, err := os.ReadDir(d)
			if err != nil {
				return
			}
			for _, e := range ents {
				if e.IsDir() {
					p := filepath.Join(d, e.Name())
					set[p] = true
					if depth < 3 {
						walk(p, depth+1)
					}
				}
			}
		}
		walk(r, 1)
	}
	return set
}

// newCgroups: cgroup directories of the clusters (named after the suite, or below CRI's default
// /k8s.io parent or the shim's filler parent and named after an id the clusters' containerds
// logged) that were not there when the suite started, deepest first.
func newCgroups() []string {
	if suite.cgroups == nil {
		return nil
	}
	var out []string
	for d := range cgroupSet() {
		ours := strings.Contains(d, "/"+suiteTag()) ||
			((strings.Contains(d, "/k8s.io/") || strings.Contains(d, "/containerd-shim-wazero-fill/")) && knownID(filepath.Base(d)))
		if ours && !suite.cgroups[d] {
			out = append(out, d)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out
}

func removeNewCgroups() {
	for _, d := range newCgroups() {
		os.Remove(d) // rmdir: only empty cgroups go
	}
}

// suiteTag names this run's network namespaces and cgroups: wzk8s-<suffix of the suite's directory>.
func suiteTag() string { return "wzk8s-" + strings.TrimPrefix(filepath.Base(suite.tmp), "wzk8s-") }

// ourNetns lists the network namespaces of this suite (ip netns names suiteTag()-VERSION).
func ourNetns() []string {
	if suite.tmp == "" {
		return nil
	}
	prefix := suiteTag()
	ents, _ := os.ReadDir("/run/netns")
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// logLinks lists the kubelet's links in /var/log/containers that point into the suite's directory.
func logLinks() []string {
	ents, _ := os.ReadDir("/var/log/containers")
	var out []string
	for _, e := range ents {
		p := filepath.Join("/var/log/containers", e.Name())
		if t, err := os.Readlink(p); err == nil && suite.tmp != "" && strings.HasPrefix(t, suite.tmp+"/") {
			out = append(out, p)
		}
	}
	return out
}

func removeLogLinks() {
	for _, l := range logLinks() {
		os.Remove(l)
	}
	if !suite.varLogContainersExisted {
		os.Remove("/var/log/containers") // only if empty
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// requireSuite skips the test when preconditions are missing, or fails it under CI=true.
func requireSuite(t *testing.T) {
	t.Helper()
	if suite.skipReason == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("Kubernetes test preconditions not met under CI: %s", suite.skipReason)
	}
	t.Skipf("Kubernetes test preconditions not met: %s", suite.skipReason)
}

// result is what one command produced.
type result struct {
	stdout, stderr string
	exit           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.exit, r.stdout, r.stderr)
}

func run(ctx context.Context, env []string, bin string, args ...string) result {
	cmd := exec.CommandContext(ctx, bin, args...)
	if env != nil {
		cmd.Env = env
	}
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
		r.exit = -1
		r.stderr += "\n[harness] timed out"
	}
	return r
}

// eventually polls cond every interval until it reports true or timeout passes; it then fails the
// test with cond's last description. The timeouts are bounds on waiting, never what is asserted.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, desc := cond()
		if ok {
			return
		}
		last = desc
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s; last: %s", what, timeout, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// jsonGet decodes b into a generic value and follows path (map keys, or indexes for lists).
func jsonPath(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("decoding %q: %v", s, err)
	}
	return m
}
