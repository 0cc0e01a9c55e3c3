package shim

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fakeCgroup1 lays out v1 controller hierarchies (cpu, memory, pids, freezer, devices) in a
// temporary directory, as separate mounts under one root like /sys/fs/cgroup.
func fakeCgroup1(t *testing.T) (cgroupHost, string) {
	t.Helper()
	root := t.TempDir()
	hierarchy := func() ([]cgroup1.Subsystem, error) {
		return []cgroup1.Subsystem{
			cgroup1.NewCpu(root), cgroup1.NewMemory(root), cgroup1.NewPids(root),
			cgroup1.NewFreezer(root), cgroup1.NewDevices(root),
		}, nil
	}
	for _, c := range []string{"cpu", "memory", "pids", "freezer", "devices"} {
		if err := os.MkdirAll(filepath.Join(root, c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return cgroupHost{v1: hierarchy}, root
}

func TestCgroupHostProduction(t *testing.T) {
	h := hostCgroups()
	if h.mountpoint != "/sys/fs/cgroup" || h.v1 != nil {
		t.Errorf("hostCgroups() = %+v, want mountpoint /sys/fs/cgroup and the default v1 hierarchy", h)
	}
	if h.unified != (cgroups.Mode() == cgroups.Unified) {
		t.Errorf("unified = %v, but cgroups.Mode() = %v", h.unified, cgroups.Mode())
	}
}

func TestCheckCgroupsPath(t *testing.T) {
	for path, want := range map[string]string{
		"/k8s.io/abc":                         "",
		"/kubepods/burstable/pod123/abc":      "",
		"kubepods.slice:cri-containerd:abc":   "systemd driver",
		"system.slice:docker:abc":             "SystemdCgroup = false",
		"k8s.io/abc":                          "must be an absolute cgroupfs path",
		"":                                    "must be an absolute cgroupfs path",
		"kubepods-besteffort.slice:cri:x:y":   "must be an absolute cgroupfs path",
		"/kubepods.slice/kubepods-pod.slice/": "",
	} {
		err := checkCgroupsPath(path)
		switch {
		case want == "" && err != nil:
			t.Errorf("%q: %v", path, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: got %v, want an error containing %q", path, err, want)
		case want != "" && !errdefs.IsInvalidArgument(err):
			t.Errorf("%q: %v is not an InvalidArgument error (containerd 1.6 would print it as \"unknown\")", path, err)
		}
	}
}

func TestCgroupV1RefusesPaths(t *testing.T) {
	h, root := fakeCgroup1(t)
	for _, p := range []string{"kubepods.slice:cri-containerd:abc", "k8s.io/abc"} {
		if _, err := h.create(p, testResources()); err == nil {
			t.Errorf("create(%q) succeeded", p)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(root, "memory"))
	if len(entries) != 0 {
		t.Errorf("a refused path left %d entries in the memory hierarchy", len(entries))
	}
}

func TestCgroupV1Fake(t *testing.T) {
	h, root := fakeCgroup1(t)
	cg, err := h.create("/k8s.io/abc", testResources())
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, ok := cg.(v1cgroup); !ok {
		t.Fatalf("got %T, want v1cgroup", cg)
	}
	dir := func(c string) string { return filepath.Join(root, c, "k8s.io", "abc") }
	for file, want := range map[string]string{
		"memory/memory.limit_in_bytes": "67108864",
		"cpu/cpu.cfs_quota_us":         "50000",
		"cpu/cpu.cfs_period_us":        "100000",
		"cpu/cpu.shares":               "512",
		"pids/pids.max":                "100",
		// v1 applies the device rules (the second write overwrites the plain file's first rule).
		"devices/devices.allow": "c 1:3 rwm",
		"devices/devices.deny":  "a *:* rwm",
	} {
		c, f, _ := strings.Cut(file, "/")
		if got := readFile(t, filepath.Join(dir(c), f)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}

	pid := os.Getpid()
	if err := cg.AddProc(uint64(pid)); err != nil {
		t.Fatalf("AddProc: %v", err)
	}
	for _, c := range []string{"cpu", "memory", "pids", "freezer", "devices"} {
		if got := readFile(t, filepath.Join(dir(c), "cgroup.procs")); got != strconv.Itoa(pid) {
			t.Errorf("%s cgroup.procs = %q, want %d", c, got, pid)
		}
	}

	if err := cg.Freeze(); err != nil {
		t.Fatalf("Freeze: %v", err)
	}
	if got := readFile(t, filepath.Join(dir("freezer"), "freezer.state")); got != "FROZEN" {
		t.Errorf("freezer.state = %q, want FROZEN", got)
	}
	if err := cg.Thaw(); err != nil {
		t.Fatalf("Thaw: %v", err)
	}
	if got := readFile(t, filepath.Join(dir("freezer"), "freezer.state")); got != "THAWED" {
		t.Errorf("freezer.state = %q, want THAWED", got)
	}

	mem := dir("memory")
	writeFile(t, filepath.Join(mem, "memory.stat"), "cache 1048576\nrss 4194304\ntotal_inactive_file 524288\n")
	writeFile(t, filepath.Join(mem, "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
	writeFile(t, filepath.Join(mem, "memory.usage_in_bytes"), "5242880\n")
	writeFile(t, filepath.Join(mem, "memory.max_usage_in_bytes"), "6291456\n")
	writeFile(t, filepath.Join(mem, "memory.failcnt"), "0\n")
	writeFile(t, filepath.Join(dir("pids"), "pids.current"), "7\n")
	a, err := cg.Metrics()
	if err != nil {
		t.Fatalf("Metrics: %v", err)
	}
	if want := "io.containerd.cgroups.v1.Metrics"; a.GetTypeUrl() != want {
		t.Errorf("type URL %q, want %q", a.GetTypeUrl(), want)
	}
	v, err := typeurl.UnmarshalAny(a)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := v.(*v1stats.Metrics)
	if !ok {
		t.Fatalf("got %T, want *stats.Metrics (v1)", v)
	}
	if got := m.GetMemory().GetUsage(); got.GetUsage() != 5242880 || got.GetLimit() != 64<<20 || got.GetMax() != 6291456 {
		t.Errorf("memory usage %+v, want usage 5242880 limit %d max 6291456", got, 64<<20)
	}
	if got := m.GetMemory().GetTotalInactiveFile(); got != 524288 {
		t.Errorf("total_inactive_file %d, want 524288", got)
	}
	if got := m.GetMemoryOomControl().GetOomKill(); got != 1 {
		t.Errorf("oom_kill %d, want 1", got)
	}
	if got := m.GetPids(); got.GetCurrent() != 7 || got.GetLimit() != 100 {
		t.Errorf("pids %+v, want current 7 limit 100", got)
	}

	if err := cg.Delete(); err == nil {
		t.Fatal("Delete of a cgroup with a process succeeded")
	}
	for _, c := range []string{"cpu", "memory", "pids", "freezer", "devices"} {
		writeFile(t, filepath.Join(dir(c), "cgroup.procs"), "") // the runner exited
	}
	loaded, err := h.load("/k8s.io/abc")
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if err := deleteCgroup(loaded); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for _, c := range []string{"cpu", "memory", "pids", "freezer", "devices"} {
		if _, err := os.Stat(dir(c)); !os.IsNotExist(err) {
			t.Errorf("%s still exists (%v)", dir(c), err)
		}
	}
}

// On v1, cgroup1.New writes every one of the spec's device rules, in order, to devices.deny or
// devices.allow (the kernel keeps the list). The two files are FIFOs here, so each write is seen,
// not only the last one a plain file would keep. (Writes that follow each other quickly can
// arrive in one read: the rules are split out of it again.)
func TestCgroupV1DeviceRules(t *testing.T) {
	h, root := fakeCgroup1(t)
	dir := filepath.Join(root, "devices", "k8s.io", "abc")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	type fifo struct {
		mu     sync.Mutex
		writes []string
		done   chan struct{}
	}
	rule := regexp.MustCompile(`[abc] [0-9*]+:[0-9*]+ [rwm]*`)
	var stop atomic.Bool
	fifos := map[string]*fifo{}
	for _, name := range []string{"devices.allow", "devices.deny"} {
		path := filepath.Join(dir, name)
		if err := syscall.Mkfifo(path, 0o600); err != nil {
			t.Fatal(err)
		}
		f := &fifo{done: make(chan struct{})}
		fifos[name] = f
		go func() { // one open-read-close per write (os.WriteFile opens the file for each rule)
			defer close(f.done)
			for !stop.Load() {
				b, err := os.ReadFile(path) // blocks until a writer opens the FIFO
				if err != nil {
					return
				}
				f.mu.Lock()
				f.writes = append(f.writes, rule.FindAllString(string(b), -1)...)
				f.mu.Unlock()
			}
		}()
		t.Cleanup(func() { // wake a reader still waiting for a writer
			stop.Store(true)
			for {
				select {
				case <-f.done:
					return
				default:
				}
				if w, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					w.Close()
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	res := &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"}, // the CRI's deny-all: no type, no numbers
		{Allow: true, Type: "c", Major: ptr[int64](1), Minor: ptr[int64](3), Access: "rwm"},
		{Allow: true, Type: "c", Major: ptr[int64](136), Access: "rwm"},
		{Allow: true, Type: "c", Access: "m"},
		{Allow: false, Type: "c", Major: ptr[int64](1), Minor: ptr[int64](11), Access: "w"},
	}}
	if _, err := h.create("/k8s.io/abc", res); err != nil {
		t.Fatalf("create: %v", err)
	}
	// The writes are all done; let the readers record the last one before stopping them.
	writes := func(name string) []string {
		f := fifos[name]
		f.mu.Lock()
		defer f.mu.Unlock()
		return append([]string(nil), f.writes...)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(writes("devices.allow"))+len(writes("devices.deny")) < 5 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	stop.Store(true)
	for name, want := range map[string][]string{
		"devices.deny":  {"a *:* rwm", "c 1:11 w"},
		"devices.allow": {"c 1:3 rwm", "c 136:* rwm", "c *:* m"},
	} {
		if got := writes(name); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s written %q, want %q", name, got, want)
		}
	}
}

// TestCgroupHelperProcess is the child of TestCgroupV1Real, not a test: it allocates memory when
// told to on stdin.
func TestCgroupHelperProcess(t *testing.T) {
	if os.Getenv("WAZERO_SHIM_CGROUP_HELPER") != "1" {
		t.Skip("helper process")
	}
	var keep [][]byte
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "touch": // 8 MiB, charged to the cgroup the process is in now
			b := make([]byte, 8<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			keep = append(keep, b)
			fmt.Println("ok")
		case "alloc": // until the OOM killer ends it
			for {
				b := make([]byte, 1<<20)
				for i := 0; i < len(b); i += 4096 {
					b[i] = 1
				}
				keep = append(keep, b)
			}
		}
	}
	os.Exit(0)
}

// TestCgroupV1Real runs on a real v1 (or hybrid) hierarchy as root: this repository's CI host.
// It skips elsewhere, unless CI=true on a v1 host as root, where not being able to run fails.
func TestCgroupV1Real(t *testing.T) {
	if os.Geteuid() != 0 || cgroups.Mode() == cgroups.Unified || cgroups.Mode() == cgroups.Unavailable {
		t.Skipf("needs root on a cgroup v1 or hybrid host (euid %d, mode %v)", os.Geteuid(), cgroups.Mode())
	}
	unavailable := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
	const memRoot = "/sys/fs/cgroup/memory"
	if _, err := os.Stat(filepath.Join(memRoot, "memory.limit_in_bytes")); err != nil {
		unavailable("no v1 memory controller at %s: %v", memRoot, err)
	}
	rnd := make([]byte, 6)
	_, _ = rand.Read(rnd)
	path := "/wazero-shim-test-" + hex.EncodeToString(rnd)

	const limit = 64 << 20 // room for the race detector's shadow memory
	res := testResources()
	res.Memory = &specs.LinuxMemory{Limit: ptr[int64](limit), Swap: ptr[int64](limit)}
	cg, err := hostCgroups().create(path, res)
	if err != nil {
		if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EROFS) {
			unavailable("cannot create a cgroup: %v", err)
		}
		t.Fatalf("create: %v", err)
	}
	memDir := filepath.Join(memRoot, path)
	t.Cleanup(func() {
		if _, err := os.Stat(memDir); err == nil {
			_ = deleteCgroup(cg)
		}
	})
	if got := readFile(t, filepath.Join(memDir, "memory.limit_in_bytes")); got != strconv.Itoa(limit) {
		t.Errorf("memory.limit_in_bytes = %s, want %d", got, limit)
	}
	if got := readFile(t, filepath.Join("/sys/fs/cgroup/pids", path, "pids.max")); got != "100" {
		t.Errorf("pids.max = %s, want 100", got)
	}
	// The kernel's list after the spec's rules (deny all, allow c 1:3 rwm).
	if got := readFile(t, filepath.Join("/sys/fs/cgroup/devices", path, "devices.list")); got != "c 1:3 rwm" {
		t.Errorf("devices.list = %q, want %q", got, "c 1:3 rwm")
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestCgroupHelperProcess$")
	cmd.Env = append(os.Environ(), "WAZERO_SHIM_CGROUP_HELPER=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	lines := bufio.NewScanner(stdout)
	ready := make(chan bool, 1)
	go func() {
		found := false
		for lines.Scan() {
			if lines.Text() == "ok" && !found {
				found = true
				ready <- true
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()

	ooms := make(chan struct{}, 10)
	stop, err := cg.WatchOOM(func() { ooms <- struct{}{} })
	if err != nil {
		t.Fatalf("WatchOOM: %v", err)
	}
	defer stop()

	if err := cg.AddProc(uint64(cmd.Process.Pid)); err != nil {
		t.Fatalf("AddProc: %v", err)
	}
	for _, c := range []string{"memory", "pids", "freezer", "cpu"} {
		procs := readFile(t, filepath.Join("/sys/fs/cgroup", c, path, "cgroup.procs"))
		if procs != strconv.Itoa(cmd.Process.Pid) {
			t.Errorf("%s cgroup.procs = %q, want %d", c, procs, cmd.Process.Pid)
		}
	}

	if _, err := io.WriteString(stdin, "touch\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready:
	case err := <-exited:
		exited <- err
		t.Fatalf("helper ended before allocating: %v (OOM events: %d)", err, len(ooms))
	case <-time.After(10 * time.Second):
		t.Fatal("helper did not allocate")
	}
	a, err := cg.Metrics()
	if err != nil {
		t.Fatalf("Metrics: %v", err)
	}
	v, err := typeurl.UnmarshalAny(a)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := v.(*v1stats.Metrics)
	if !ok {
		t.Fatalf("got %T, want *stats.Metrics (v1)", v)
	}
	if u := m.GetMemory().GetUsage(); u.GetUsage() < 8<<20 || u.GetLimit() != limit {
		t.Errorf("memory %+v, want usage >= 8 MiB (the helper's allocation) and limit %d", u, limit)
	}
	if got := m.GetPids(); got.GetCurrent() < 1 || got.GetLimit() != 100 { // v1 pids counts threads
		t.Errorf("pids %+v, want current >= 1 and limit 100", got)
	}

	freezerState := filepath.Join("/sys/fs/cgroup/freezer", path, "freezer.state")
	if err := cg.Freeze(); err != nil {
		t.Fatalf("Freeze: %v", err)
	}
	if got := readFile(t, freezerState); got != "FROZEN" {
		t.Errorf("freezer.state = %s, want FROZEN", got)
	}
	if err := cg.Thaw(); err != nil {
		t.Fatalf("Thaw: %v", err)
	}
	if got := readFile(t, freezerState); got != "THAWED" {
		t.Errorf("freezer.state = %s, want THAWED", got)
	}

	if _, err := io.WriteString(stdin, "alloc\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ooms:
	case <-time.After(20 * time.Second):
		t.Fatal("no OOM event")
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("helper ended with %v, want killed by SIGKILL", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("helper still running after the OOM event")
	}

	stop()
	if err := deleteCgroup(cg); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for _, c := range []string{"memory", "pids", "freezer", "cpu", "devices"} {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", c, path)); !os.IsNotExist(err) {
			t.Errorf("%s/%s still exists (%v)", c, path, err)
		}
	}
	select {
	case <-ooms:
		t.Error("removing the cgroup was reported as an OOM kill")
	case <-time.After(100 * time.Millisecond):
	}
}

// TestCgroupV1BadDeviceRule: a device rule the kernel would refuse with a bare EINVAL is refused
// by name before any directory is made.
func TestCgroupV1BadDeviceRule(t *testing.T) {
	h, root := fakeCgroup1(t)
	res := &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: true, Type: "q", Access: "rwm"}}}
	cg, err := h.create("/k8s.io/bad", res)
	if err == nil {
		_ = cg.Delete()
		t.Fatal("create succeeded, want an error")
	}
	if want := `linux.resources.devices[0] (allow q *:* rwm): type "q" is not a, b or c`; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	for _, c := range []string{"cpu", "memory", "pids", "freezer", "devices"} {
		if _, err := os.Stat(filepath.Join(root, c, "k8s.io", "bad")); err == nil {
			t.Errorf("%s hierarchy: the cgroup directory was made", c)
		}
	}
}

// TestCgroupV1RefusedLimitLeavesNothing: cgroup1.New makes the directories before it writes the
// limits; when the kernel refuses one (no CPU 9999 for cpuset.cpus), create removes them.
func TestCgroupV1RefusedLimitLeavesNothing(t *testing.T) {
	if os.Geteuid() != 0 || cgroups.Mode() == cgroups.Unified || cgroups.Mode() == cgroups.Unavailable {
		t.Skipf("needs root on a cgroup v1 or hybrid host (euid %d, mode %v)", os.Geteuid(), cgroups.Mode())
	}
	if _, err := os.Stat("/sys/fs/cgroup/cpuset/cpuset.cpus"); err != nil {
		t.Skipf("no v1 cpuset controller: %v", err)
	}
	rnd := make([]byte, 6)
	_, _ = rand.Read(rnd)
	path := "/wazero-shim-test-" + hex.EncodeToString(rnd)
	cg, err := hostCgroups().create(path, &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "9999"}})
	if err == nil {
		_ = deleteCgroup(cg)
		t.Fatal("create with cpuset.cpus 9999 succeeded, want the kernel's refusal")
	}
	if !strings.Contains(err.Error(), "cpuset.cpus") {
		t.Errorf("error %q does not name cpuset.cpus", err)
	}
	left, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", path))
	for _, d := range left {
		t.Errorf("left behind: %s", d)
		_ = os.Remove(d)
	}
}

// TestCgroupAddProcGone: moving a process that has already ended into a container's cgroup, on
// this host's hierarchy, either succeeds (a zombie not yet reaped: the kernel moves it) or fails
// with an error that is ESRCH (reaped). addRunner relies on it: neither is a cgroup error, and
// the wait for the runner's report then says how it ended.
func TestCgroupAddProcGone(t *testing.T) {
	if os.Geteuid() != 0 || cgroups.Mode() == cgroups.Unavailable {
		t.Skipf("needs root and cgroups (euid %d, mode %v)", os.Geteuid(), cgroups.Mode())
	}
	rnd := make([]byte, 6)
	_, _ = rand.Read(rnd)
	cg, err := hostCgroups().create("/wazero-shim-test-"+hex.EncodeToString(rnd), testResources())
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() { _ = deleteCgroup(cg) })

	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	deadline := time.Now().Add(10 * time.Second)
	for {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		if _, rest, _ := strings.Cut(string(stat), ") "); strings.HasPrefix(rest, "Z") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d did not become a zombie: %s", pid, stat)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cg.AddProc(uint64(pid)); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Errorf("AddProc of a zombie: %v, want success or ESRCH", err)
	}
	_ = cmd.Wait()
	if err := cg.AddProc(uint64(pid)); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("AddProc of a reaped process: %v, want ESRCH", err)
	}
	if err := addRunner(cg, pid); err != nil {
		t.Errorf("addRunner of a reaped runner: %v, want nil", err)
	}
}
