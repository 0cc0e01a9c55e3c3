package shim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/engine"
	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// The test binary is a filler when started as one (startFiller runs os.Args[0] with
// engine.FillArg), as the shim binary is. An init function rather than a TestMain: the package
// has none, and this one must not take its place.
func init() {
	if len(os.Args) > 1 && os.Args[1] == engine.FillArg {
		os.Exit(engine.FillMain())
	}
}

// startModule is the smallest module a runner accepts: (module (func (export "_start"))).
var startModule = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
	0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type: () -> ()
	0x03, 0x02, 0x01, 0x00, // func 0: type 0
	0x07, 0x0a, 0x01, 0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x00, // export "_start"
	0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code: no locals, end
}

// fillTestConfig is a filler's Config for a module file holding code, with a fresh cache.
func fillTestConfig(t *testing.T, code []byte) (*engine.Config, *os.File) {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "m.wasm")
	if err := os.WriteFile(p, code, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &engine.Config{
		ID: "fill-test", Module: oci.Module{GuestPath: "/m.wasm", HostPath: p}, Args: []string{"m.wasm"},
		Rootfs: dir, MemoryPages: oci.MaxPages, CacheDir: filepath.Join(dir, "cache"), NoIsolation: true,
	}, f
}

// holdFillSlots takes every fill slot of cacheDir (the filler's locks/fill-N.lock, one per CPU),
// so a filler waits at its slot; release lets it go on.
func holdFillSlots(t *testing.T, cacheDir string) (release func()) {
	t.Helper()
	ld := filepath.Join(cacheDir, "locks")
	if err := os.MkdirAll(ld, 0o700); err != nil {
		t.Fatal(err)
	}
	var held []*os.File
	for i := range goruntime.NumCPU() {
		f, err := os.OpenFile(filepath.Join(ld, fmt.Sprintf("fill-%d.lock", i)), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			t.Fatal(err)
		}
		held = append(held, f)
	}
	released := false
	release = func() {
		if !released {
			released = true
			for _, f := range held {
				f.Close()
			}
		}
	}
	t.Cleanup(release)
	return release
}

// A module over the cap starts no filler and creates no cgroup.
func TestFillerTooBig(t *testing.T) {
	root := t.TempDir()
	fc := fillCgroups{h: cgroupHost{unified: true, mountpoint: root}, parent: "/fill"}
	cfg, f := fillTestConfig(t, startModule)
	_, err := fc.startFiller(context.Background(), "/nonexistent", cfg, f, engine.FillLimits{MaxModuleBytes: int64(len(startModule)) - 1}, nil, nil)
	if !errors.Is(err, engine.ErrFillTooBig) {
		t.Fatalf("startFiller of a module over the cap: %v, want ErrFillTooBig", err)
	}
	if _, err := os.Stat(filepath.Join(root, "fill")); !os.IsNotExist(err) {
		t.Errorf("a cgroup was created for a module over the cap (%v)", err)
	}
}

// The filler's cgroup gets the memory and CPU limits, on v1 and v2 (fake hierarchies).
func TestFillCgroupResourcesFake(t *testing.T) {
	l := engine.FillLimits{MemoryBytes: 300 << 20, CPUs: 1.5}
	t.Run("v1", func(t *testing.T) {
		h, root := fakeCgroup1(t)
		fc := fillCgroups{h: h, parent: "/fill"}
		c, err := fc.create("ctr/1", l)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(c.path, "/fill/ctr_1-") {
			t.Errorf("path %s, want /fill/ctr_1-<random>", c.path)
		}
		if got := readFile(t, filepath.Join(root, "memory", c.path, "memory.limit_in_bytes")); got != strconv.Itoa(300<<20) {
			t.Errorf("memory.limit_in_bytes = %s", got)
		}
		if got := readFile(t, filepath.Join(root, "cpu", c.path, "cpu.cfs_quota_us")); got != "150000" {
			t.Errorf("cpu.cfs_quota_us = %s, want 150000", got)
		}
		if got := readFile(t, filepath.Join(root, "cpu", c.path, "cpu.cfs_period_us")); got != "100000" {
			t.Errorf("cpu.cfs_period_us = %s, want 100000", got)
		}
		// The fillers together weigh about a tenth of a container against other cgroups.
		if got := readFile(t, filepath.Join(root, "cpu", "fill", "cpu.shares")); got != "110" {
			t.Errorf("the fillers' parent cpu.shares = %s, want 110", got)
		}
	})
	t.Run("v2", func(t *testing.T) {
		h, root := fakeCgroup2(t)
		fc := fillCgroups{h: h, parent: "/fill"}
		// The kernel gives the parent its interface files when it is created.
		if err := os.MkdirAll(filepath.Join(root, "fill"), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(root, "fill", "cgroup.subtree_control"), "")
		c, err := fc.create("ctr", l)
		if err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, filepath.Join(root, c.path, "memory.max")); got != strconv.Itoa(300<<20) {
			t.Errorf("memory.max = %s", got)
		}
		if got := readFile(t, filepath.Join(root, c.path, "cpu.max")); got != "150000 100000" {
			t.Errorf("cpu.max = %s, want 150000 100000", got)
		}
		if got := readFile(t, filepath.Join(root, "fill", "cpu.weight")); got != "10" {
			t.Errorf("the fillers' parent cpu.weight = %s, want 10", got)
		}
	})
}

// TestFillerCgroupReal starts a filler as the shim does, as root on the host's cgroups (v1,
// hybrid or v2), and looks at it while it waits for a fill slot: in its own cgroup under the
// parent, with the memory and CPU limits, oom_score_adj 1000, and past the go byte only once it
// was there. A sweep leaves its populated cgroup and removes an empty stale one. Once it has
// compiled, its cgroup is gone. It skips without root or cgroups, unless CI=true, where it fails.
func TestFillerCgroupReal(t *testing.T) {
	unavailable := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
	if os.Geteuid() != 0 || cgroups.Mode() == cgroups.Unavailable {
		unavailable("needs root and cgroups (euid %d, mode %v)", os.Geteuid(), cgroups.Mode())
	}
	rnd := make([]byte, 6)
	_, _ = rand.Read(rnd)
	fc := fillCgroups{h: hostCgroups(), parent: fillCgroupParent + "-test-" + hex.EncodeToString(rnd)}
	t.Cleanup(func() { // after the filler's cleanup below: with what a failed test left in it
		for _, r := range fc.roots("") {
			entries, _ := os.ReadDir(r)
			for _, e := range entries {
				if e.IsDir() {
					_ = os.Remove(filepath.Join(r, e.Name()))
				}
			}
			if err := os.Remove(r); err != nil && !os.IsNotExist(err) {
				t.Errorf("remove the test parent: %v", err)
			}
		}
	})
	memFile, cpuFile := func(path string) string { // the memory limit and CPU quota files of path
		return filepath.Join(fc.h.mountpoint, path, "memory.max")
	}, func(path string) string {
		return filepath.Join(fc.h.mountpoint, path, "cpu.max")
	}
	if !fc.h.unified {
		memFile = func(path string) string { return filepath.Join("/sys/fs/cgroup/memory", path, "memory.limit_in_bytes") }
		cpuFile = func(path string) string { return filepath.Join("/sys/fs/cgroup/cpu", path, "cpu.cfs_quota_us") }
	}

	// A stale cgroup, as a filler whose shim exited leaves it.
	stale, err := fc.create("stale", engine.FillLimits{MemoryBytes: 64 << 20})
	if err != nil {
		if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EROFS) {
			unavailable("cannot create a cgroup: %v", err)
		}
		t.Fatalf("create: %v", err)
	}

	cfg, module := fillTestConfig(t, startModule)
	release := holdFillSlots(t, cfg.CacheDir)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	l := engine.FillLimits{MemoryBytes: 300 << 20, CPUs: 0.5, MaxModuleBytes: 1 << 20}
	run, err := fc.startFiller(context.Background(), self, cfg, module, l, nil, nil)
	if err != nil {
		t.Fatalf("startFiller: %v", err)
	}
	pid := run.filler.Cmd.Process.Pid
	t.Cleanup(func() {
		select {
		case <-run.done:
		default:
			_ = syscall.Kill(pid, syscall.SIGKILL)
			<-run.done
		}
	})
	if !strings.HasPrefix(run.cg.path, fc.parent+"/fill-test-") {
		t.Errorf("cgroup %s, want one under %s named after the container", run.cg.path, fc.parent)
	}

	// In its cgroup as soon as startFiller returns, in every hierarchy.
	cg := readFile(t, fmt.Sprintf("/proc/%d/cgroup", pid))
	for _, line := range strings.Split(cg, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		ctl := parts[1]
		want := fc.h.unified && ctl == "" || !fc.h.unified && (strings.Contains(ctl, "memory") || strings.Contains(ctl, "cpu") || strings.Contains(ctl, "pids"))
		if want && parts[2] != run.cg.path {
			t.Errorf("/proc/%d/cgroup: %q, want the filler's cgroup %s", pid, line, run.cg.path)
		}
	}
	if got := readFile(t, memFile(run.cg.path)); got != strconv.Itoa(300<<20) {
		t.Errorf("%s = %s, want %d", memFile(run.cg.path), got, 300<<20)
	}
	if got, want := readFile(t, cpuFile(run.cg.path)), map[bool]string{true: "50000 100000", false: "50000"}[fc.h.unified]; got != want {
		t.Errorf("%s = %s, want %s", cpuFile(run.cg.path), got, want)
	}

	// Past the go byte (it executed itself again in its cgroup) and waiting for a slot, with the
	// OOM killer's highest preference.
	deadline := time.Now().Add(20 * time.Second)
	for {
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		adj, _ := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid))
		if strings.Contains(string(env), "WAZERO_FILL_STAGE=running") && strings.TrimSpace(string(adj)) == "1000" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the filler did not get past its go byte with oom_score_adj 1000: environ %q, oom_score_adj %q", env, adj)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // at its slot by now
	if got := readFile(t, fmt.Sprintf("/proc/%d/oom_score_adj", pid)); got != "1000" {
		t.Errorf("oom_score_adj = %s, want 1000", got)
	}
	select {
	case <-run.done:
		t.Fatalf("the filler finished while every fill slot was held: %+v %v", run.res, run.err)
	default:
	}

	if n := fc.sweep(0); n != 1 {
		t.Errorf("sweep removed %d cgroups, want 1 (the stale one)", n)
	}
	for _, r := range fc.roots("") {
		if _, err := os.Stat(filepath.Join(r, filepath.Base(stale.path))); !os.IsNotExist(err) {
			t.Errorf("the stale cgroup is still in %s (%v)", r, err)
		}
		if _, err := os.Stat(filepath.Join(r, filepath.Base(run.cg.path))); err != nil {
			t.Errorf("the sweep removed the running filler's cgroup in %s: %v", r, err)
		}
	}

	release()
	select {
	case <-run.done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the filler did not finish once a slot was free")
	}
	if run.err != nil || run.res.CacheHit {
		t.Errorf("filler: %+v, %v; want a compile", run.res, run.err)
	}
	if run.rmErr != nil {
		t.Errorf("remove the filler's cgroup: %v", run.rmErr)
	}
	for _, r := range fc.roots("") {
		if _, err := os.Stat(filepath.Join(r, filepath.Base(run.cg.path))); !os.IsNotExist(err) {
			t.Errorf("the filler's cgroup is still in %s after it exited (%v)", r, err)
		}
	}
}
