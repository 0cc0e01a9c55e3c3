package shim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fakeCgroup2 lays out a unified hierarchy in a temporary directory: the root's controllers and
// subtree_control, and an existing parent group /k8s.io (the kernel creates a group's interface
// files on mkdir; a plain directory cannot, so the parent that cgroup2.NewManager writes
// subtree_control in is made here).
func fakeCgroup2(t *testing.T) (cgroupHost, string) {
	t.Helper()
	root := t.TempDir()
	for dir, files := range map[string]map[string]string{
		"": {
			"cgroup.controllers":     "cpuset cpu io memory hugetlb pids rdma misc\n",
			"cgroup.subtree_control": "",
		},
		"k8s.io": {
			"cgroup.controllers":     "cpuset cpu io memory hugetlb pids rdma misc\n",
			"cgroup.subtree_control": "",
			"cgroup.procs":           "",
		},
	} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range files {
			writeFile(t, filepath.Join(root, dir, name), content)
		}
	}
	stubDeviceFilter(t, nil)
	return cgroupHost{unified: true, mountpoint: root}, root
}

// fakeAttached lists the device filters "attached" since stubDeviceFilter: a plain directory takes
// no BPF program (TestDeviceFilterReal attaches for real).
var fakeAttached []struct {
	dir    string
	filter *deviceFilter
}

// stubDeviceFilter replaces the attach step, for the test, by one that records it and returns err.
func stubDeviceFilter(t *testing.T, err error) {
	t.Helper()
	saved := attachDeviceFilter
	fakeAttached = nil
	attachDeviceFilter = func(dir string, f *deviceFilter) error {
		fakeAttached = append(fakeAttached, struct {
			dir    string
			filter *deviceFilter
		}{dir, f})
		return err
	}
	t.Cleanup(func() { attachDeviceFilter = saved; fakeAttached = nil })
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func ptr[T any](v T) *T { return &v }

// testResources is what the CRI plugin puts in a burstable container's spec: limits, shares and
// the default device rules.
func testResources() *specs.LinuxResources {
	return &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: ptr[int64](64 << 20)},
		CPU:    &specs.LinuxCPU{Shares: ptr[uint64](512), Quota: ptr[int64](50000), Period: ptr[uint64](100000)},
		Pids:   &specs.LinuxPids{Limit: ptr[int64](100)},
		Devices: []specs.LinuxDeviceCgroup{
			{Allow: false, Access: "rwm"},
			{Allow: true, Type: "c", Major: ptr[int64](1), Minor: ptr[int64](3), Access: "rwm"},
		},
	}
}

func TestCgroupV2CreateAppliesResources(t *testing.T) {
	h, root := fakeCgroup2(t)
	cg, err := h.create("/k8s.io/abc", testResources())
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, ok := cg.(v2cgroup); !ok {
		t.Fatalf("got %T, want v2cgroup", cg)
	}
	dir := filepath.Join(root, "k8s.io", "abc")
	wantWeight := strconv.FormatUint(cgroup2.ConvertCPUSharesToCgroupV2Value(512), 10)
	for file, want := range map[string]string{
		"memory.max": "67108864",
		"cpu.max":    "50000 100000",
		"cpu.weight": wantWeight,
		"pids.max":   "100",
	} {
		if got := readFile(t, filepath.Join(dir, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	// The controllers are enabled for the new group in every ancestor, root included.
	for _, parent := range []string{root, filepath.Join(root, "k8s.io")} {
		got := readFile(t, filepath.Join(parent, "cgroup.subtree_control"))
		for _, c := range []string{"+cpu", "+memory", "+pids"} {
			if !strings.Contains(got, c) {
				t.Errorf("%s/cgroup.subtree_control = %q, missing %s", parent, got, c)
			}
		}
	}
	// Nothing is written that the spec did not ask for.
	for _, file := range []string{"memory.swap.max", "memory.low", "io.max", "cpuset.cpus"} {
		if _, err := os.Stat(filepath.Join(dir, file)); err == nil {
			t.Errorf("%s written", file)
		}
	}
}

// The spec's device rules reach the device-filter step on v2, built into the program for the new
// group's directory, before any process can join.
func TestCgroupV2AttachesDeviceFilter(t *testing.T) {
	h, root := fakeCgroup2(t)
	res := testResources()
	cg, err := h.create("/k8s.io/abc", res)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if len(fakeAttached) != 1 {
		t.Fatalf("%d device filters attached, want 1", len(fakeAttached))
	}
	got := fakeAttached[0]
	if want := filepath.Join(root, "k8s.io", "abc"); got.dir != want {
		t.Errorf("filter attached to %s, want %s", got.dir, want)
	}
	if s := describeRules(got.filter.rules); s != "deny a *:* rwm; allow c 1:3 rwm" {
		t.Errorf("rules %s", s)
	}
	for _, c := range []struct {
		dev    string
		access string
		want   bool
	}{
		{"c 1:3", "rw", true}, {"c 1:3", "m", true}, {"c 1:11", "r", false}, {"c 1:11", "m", false}, {"b 1:3", "r", false},
	} {
		if ok := runDeviceFilter(t, got.filter, c.dev, c.access); ok != c.want {
			t.Errorf("%s %s: allowed %v, want %v", c.dev, c.access, ok, c.want)
		}
	}
	if len(res.Devices) != 2 || res.Devices[0].Type != "" || res.Devices[0].Major != nil {
		t.Errorf("the caller's spec was modified: %+v", res.Devices)
	}
	if err := cg.AddProc(uint64(os.Getpid())); err != nil {
		t.Fatal(err)
	}
	if len(fakeAttached) != 1 {
		t.Errorf("AddProc attached again")
	}
}

func TestCgroupV2NoDeviceRulesNoFilter(t *testing.T) {
	h, _ := fakeCgroup2(t)
	res := testResources()
	res.Devices = nil
	if _, err := h.create("/k8s.io/abc", res); err != nil {
		t.Fatal(err)
	}
	if _, err := h.create("/k8s.io/def", &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{}}); err != nil {
		t.Fatal(err)
	}
	if len(fakeAttached) != 0 {
		t.Errorf("%d device filters attached for a spec without device rules", len(fakeAttached))
	}
}

// If the kernel refuses the program, Create fails, says what to do, and leaves no directory.
func TestCgroupV2DeviceFilterRefused(t *testing.T) {
	h, root := fakeCgroup2(t)
	stubDeviceFilter(t, fmt.Errorf("BPF_PROG_ATTACH: %w", syscall.EPERM))
	_, err := h.create("/k8s.io/abc", &specs.LinuxResources{Devices: testResources().Devices})
	if err == nil {
		t.Fatal("create succeeded without its device filter")
	}
	for _, want := range []string{"/k8s.io/abc", "linux.resources.devices", "eBPF", "CAP_SYS_ADMIN", "not started"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if !errors.Is(err, syscall.EPERM) {
		t.Errorf("error %v does not wrap EPERM", err)
	}
	if _, err := os.Stat(filepath.Join(root, "k8s.io", "abc")); !os.IsNotExist(err) {
		t.Errorf("the cgroup directory was left behind (%v)", err)
	}
}

// A rule the conversion refuses fails Create before the directory is made.
func TestCgroupV2BadDeviceRule(t *testing.T) {
	h, root := fakeCgroup2(t)
	_, err := h.create("/k8s.io/abc", &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: true, Type: "p", Access: "rwm"}}})
	if err == nil || !strings.Contains(err.Error(), "/k8s.io/abc") || !strings.Contains(err.Error(), `type "p"`) {
		t.Errorf("create: %v, want an error naming the cgroup and the type", err)
	}
	if _, err := os.Stat(filepath.Join(root, "k8s.io", "abc")); !os.IsNotExist(err) {
		t.Errorf("the cgroup directory was made (%v)", err)
	}
	if len(fakeAttached) != 0 {
		t.Error("a filter was attached")
	}
}

func TestCgroupV2NilResources(t *testing.T) {
	h, root := fakeCgroup2(t)
	if _, err := h.create("/k8s.io/none", nil); err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "k8s.io", "none")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "k8s.io", "none", "memory.max")); err == nil {
		t.Error("memory.max written without a limit")
	}
}

func TestCgroupV2RefusesPaths(t *testing.T) {
	h, root := fakeCgroup2(t)
	for _, tc := range []struct{ path, want string }{
		{"kubepods.slice:cri-containerd:abc", "SystemdCgroup = false"},
		{"k8s.io/abc", "absolute cgroupfs path"},
	} {
		_, err := h.create(tc.path, testResources())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("create(%q) = %v, want an error containing %q", tc.path, err, tc.want)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(root, "k8s.io"))
	for _, e := range entries {
		if e.IsDir() {
			t.Errorf("a refused path left %s behind", e.Name())
		}
	}
}

func TestCgroupV2AddProcFreezeThaw(t *testing.T) {
	h, root := fakeCgroup2(t)
	cg, err := h.create("/k8s.io/abc", testResources())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "k8s.io", "abc")
	pid := os.Getpid()
	if err := cg.AddProc(uint64(pid)); err != nil {
		t.Fatalf("AddProc: %v", err)
	}
	if got := readFile(t, filepath.Join(dir, "cgroup.procs")); got != strconv.Itoa(pid) {
		t.Errorf("cgroup.procs = %q, want %d", got, pid)
	}
	// cgroup2 v3.1.3 confirms the state by reading cgroup.freeze back (not cgroup.events), so a
	// plain file completes the handshake.
	if err := cg.Freeze(); err != nil {
		t.Fatalf("Freeze: %v", err)
	}
	if got := readFile(t, filepath.Join(dir, "cgroup.freeze")); got != "1" {
		t.Errorf("frozen: cgroup.freeze = %q, want 1", got)
	}
	if err := cg.Thaw(); err != nil {
		t.Fatalf("Thaw: %v", err)
	}
	if got := readFile(t, filepath.Join(dir, "cgroup.freeze")); got != "0" {
		t.Errorf("thawed: cgroup.freeze = %q, want 0", got)
	}
}

func TestCgroupV2Metrics(t *testing.T) {
	h, root := fakeCgroup2(t)
	cg, err := h.create("/k8s.io/abc", testResources())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "k8s.io", "abc")
	writeFile(t, filepath.Join(dir, "memory.current"), "5242880\n")
	writeFile(t, filepath.Join(dir, "memory.stat"), "anon 4194304\nfile 1048576\ninactive_file 524288\n")
	writeFile(t, filepath.Join(dir, "memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
	writeFile(t, filepath.Join(dir, "pids.current"), "7\n")
	writeFile(t, filepath.Join(dir, "cpu.stat"), "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")

	a, err := cg.Metrics()
	if err != nil {
		t.Fatalf("Metrics: %v", err)
	}
	if want := "io.containerd.cgroups.v2.Metrics"; a.GetTypeUrl() != want {
		t.Errorf("type URL %q, want %q", a.GetTypeUrl(), want)
	}
	v, err := typeurl.UnmarshalAny(a)
	if err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	m, ok := v.(*v2stats.Metrics)
	if !ok {
		t.Fatalf("got %T, want *stats.Metrics (v2)", v)
	}
	if got := m.GetMemory().GetUsage(); got != 5242880 {
		t.Errorf("memory usage %d, want 5242880", got)
	}
	if got := m.GetMemory().GetUsageLimit(); got != 64<<20 {
		t.Errorf("memory limit %d, want %d", got, 64<<20)
	}
	if got := m.GetMemory().GetAnon(); got != 4194304 {
		t.Errorf("anon %d, want 4194304", got)
	}
	if got := m.GetMemory().GetInactiveFile(); got != 524288 {
		t.Errorf("inactive_file %d, want 524288 (the CRI working set subtracts it)", got)
	}
	if got := m.GetMemoryEvents().GetOomKill(); got != 1 {
		t.Errorf("oom_kill %d, want 1", got)
	}
	if got := m.GetPids(); got.GetCurrent() != 7 || got.GetLimit() != 100 {
		t.Errorf("pids %+v, want current 7 limit 100", got)
	}
	if got := m.GetCPU().GetUsageUsec(); got != 1500 {
		t.Errorf("cpu usage %d, want 1500", got)
	}
}

func TestCgroupV2Delete(t *testing.T) {
	h, root := fakeCgroup2(t)
	cg, err := h.create("/k8s.io/abc", testResources())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "k8s.io", "abc")
	if err := cg.AddProc(uint64(os.Getpid())); err != nil {
		t.Fatal(err)
	}
	if err := cg.Delete(); err == nil {
		t.Fatal("Delete of a cgroup with a process succeeded")
	}
	writeFile(t, filepath.Join(dir, "cgroup.procs"), "") // the runner exited
	// The `delete` action loads the cgroup by path alone.
	loaded, err := h.load("/k8s.io/abc")
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if err := deleteCgroup(loaded); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists (%v)", dir, err)
	}
	if _, err := os.Stat(filepath.Join(root, "k8s.io")); err != nil {
		t.Errorf("the parent was removed: %v", err)
	}
}

// fakeOOMCgroup is a v2 cgroup with the files WatchOOM watches: memory.events (the counters) and
// cgroup.events (populated, which ends the library's watch when it drops to 0).
func fakeOOMCgroup(t *testing.T, memoryEvents string) (cgroup, string) {
	t.Helper()
	h, root := fakeCgroup2(t)
	cg, err := h.create("/k8s.io/oom", testResources())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "k8s.io", "oom")
	writeFile(t, filepath.Join(dir, "memory.events"), memoryEvents)
	writeFile(t, filepath.Join(dir, "cgroup.events"), "populated 1\nfrozen 0\n")
	return cg, dir
}

func watchOOM(t *testing.T, cg cgroup) <-chan struct{} {
	t.Helper()
	ooms := make(chan struct{}, 10)
	stop, err := cg.WatchOOM(func() { ooms <- struct{}{} })
	if err != nil {
		t.Fatalf("WatchOOM: %v", err)
	}
	t.Cleanup(stop)
	return ooms
}

func expectOOM(t *testing.T, ooms <-chan struct{}, want bool, what string) {
	t.Helper()
	wait := 200 * time.Millisecond
	if want {
		wait = 5 * time.Second
	}
	select {
	case <-ooms:
		if !want {
			t.Errorf("%s: onOOM called", what)
		}
	case <-time.After(wait):
		if want {
			t.Errorf("%s: onOOM not called", what)
		}
	}
}

func TestCgroupV2WatchOOM(t *testing.T) {
	cg, dir := fakeOOMCgroup(t, "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n")
	ooms := watchOOM(t, cg)
	events := filepath.Join(dir, "memory.events")

	writeFile(t, events, "low 0\nhigh 0\nmax 4\noom 0\noom_kill 0\noom_group_kill 0\n")
	expectOOM(t, ooms, false, "memory.max reached without a kill")

	writeFile(t, events, "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\noom_group_kill 0\n")
	expectOOM(t, ooms, true, "first kill")

	writeFile(t, events, "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n")
	expectOOM(t, ooms, false, "no new kill")

	writeFile(t, events, "low 0\nhigh 0\nmax 15\noom 2\noom_kill 2\noom_group_kill 0\n")
	expectOOM(t, ooms, true, "second kill")
}

// Kills counted before the watch began (a cgroup directory left behind under the same path) are
// not reported when memory.events next changes for another reason.
func TestCgroupV2WatchOOMIgnoresEarlierKills(t *testing.T) {
	cg, dir := fakeOOMCgroup(t, "low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\noom_group_kill 0\n")
	ooms := watchOOM(t, cg)
	writeFile(t, filepath.Join(dir, "memory.events"), "low 0\nhigh 0\nmax 6\noom 2\noom_kill 2\noom_group_kill 0\n")
	expectOOM(t, ooms, false, "memory.max reached, no new kill")
	writeFile(t, filepath.Join(dir, "memory.events"), "low 0\nhigh 0\nmax 7\noom 3\noom_kill 3\noom_group_kill 0\n")
	expectOOM(t, ooms, true, "new kill")
}

func TestCgroupV2WatchOOMStop(t *testing.T) {
	cg, dir := fakeOOMCgroup(t, "oom_kill 0\n")
	ooms := make(chan struct{}, 10)
	stop, err := cg.WatchOOM(func() { ooms <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	stop()
	stop() // idempotent
	writeFile(t, filepath.Join(dir, "memory.events"), "oom_kill 1\n")
	expectOOM(t, ooms, false, "after stop")
}
