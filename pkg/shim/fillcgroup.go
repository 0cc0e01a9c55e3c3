package shim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/engine"
)

// Fillers (engine.FillCache, the background compiles of the interpret cold-start policy) run in
// cgroups of their own, one per filler, under one node-wide parent: a memory and a CPU limit
// (engine.FillLimits) bound each, as a container is bounded, where before they ran unbounded in
// the shim's cgroup. The shim creates the cgroup, starts the filler, moves it in, and only then
// lets it read its module (FillOptions.Started). The cgroup is removed when the filler has
// exited; one left behind by a shim that exited first (a short container is often deleted before
// its module's compile ends) is removed by the next filler's start on the node (fillCgroups.sweep).

// fillCgroupParent is the parent of the fillers' cgroups, at the root of each hierarchy.
const fillCgroupParent = "/containerd-shim-wazero-fill"

// fillCgroupStale is how old an empty filler cgroup must be before a sweep removes it: a cgroup
// just created is empty until its filler is moved in, a few milliseconds later.
const fillCgroupStale = time.Minute

// fillCgroups creates the fillers' cgroups under parent in the hierarchies of h.
type fillCgroups struct {
	h      cgroupHost
	parent string
}

// hostFillCgroups are the node's filler cgroups: under fillCgroupParent in the host's hierarchies.
func hostFillCgroups() fillCgroups { return fillCgroups{h: hostCgroups(), parent: fillCgroupParent} }

// fillCgroup is one filler's cgroup.
type fillCgroup struct {
	path string // under fillCgroups.parent
	cg   cgroup
}

// fillResources is what limits a filler's cgroup.
func (fc fillCgroups) resources(l engine.FillLimits) *specs.LinuxResources {
	res := &specs.LinuxResources{}
	if l.MemoryBytes > 0 {
		limit := l.MemoryBytes
		res.Memory = &specs.LinuxMemory{Limit: &limit}
		if fc.swapAccounted() {
			swap := limit // memory+swap: no swap beyond the memory limit
			res.Memory.Swap = &swap
		}
	}
	if q := l.CPUQuota(); q > 0 {
		period := uint64(engine.CPUPeriod)
		res.CPU = &specs.LinuxCPU{Quota: &q, Period: &period}
	}
	return res
}

// swapAccounted tells whether swap can be limited: memory.memsw.* on v1. On v2 create tries
// memory.swap.max and does without when the kernel has none.
func (fc fillCgroups) swapAccounted() bool {
	if fc.h.unified {
		return true
	}
	for _, root := range fc.roots("memory") {
		if _, err := os.Stat(filepath.Join(root, "memory.memsw.limit_in_bytes")); err == nil {
			return true
		}
	}
	return false
}

// roots returns the directories that hold the fillers' cgroups: the parent in the v2 hierarchy,
// or in each v1 hierarchy (only the named controller's with a non-empty only).
func (fc fillCgroups) roots(only cgroup1.Name) []string {
	if fc.h.unified {
		return []string{filepath.Join(fc.h.mountpoint, fc.parent)}
	}
	hierarchy := fc.h.v1
	if hierarchy == nil {
		hierarchy = cgroup1.Default
	}
	subsystems, err := hierarchy()
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var roots []string
	for _, s := range subsystems {
		p, ok := s.(interface{ Path(string) string })
		if !ok || (only != "" && s.Name() != only) {
			continue
		}
		if d := p.Path(fc.parent); !seen[d] {
			seen[d] = true
			roots = append(roots, d)
		}
	}
	return roots
}

// create creates the cgroup of a filler of container id, with limits l, and first removes the
// stale ones on the node.
func (fc fillCgroups) create(id string, l engine.FillLimits) (*fillCgroup, error) {
	fc.sweep(fillCgroupStale)
	rnd := make([]byte, 4)
	_, _ = rand.Read(rnd)
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, id)
	if len(name) > 64 {
		name = name[:64]
	}
	path := fc.parent + "/" + name + "-" + hex.EncodeToString(rnd)
	res := fc.resources(l)
	cg, err := fc.h.create(path, res)
	if err != nil && res.Memory != nil && res.Memory.Swap != nil && fc.h.unified {
		res.Memory.Swap = nil // no swap accounting (memory.swap.max)
		cg, err = fc.h.create(path, res)
	}
	if err != nil {
		return nil, err
	}
	fc.lowerWeight()
	return &fillCgroup{path: path, cg: cg}, nil
}

// Fillers' CPU weight, for all of them together (their parent's): about a tenth of a container's,
// as nice 10 was in the shim's cgroup before fillers had cgroups of their own. A cgroup's weight
// counts against its siblings, so it is the parent's that makes the fillers yield to the
// containers (whose cgroups default to cpu.shares 1024, cpu.weight 100); the CPU quota still
// bounds them when the node is idle.
const (
	fillCPUShares = 110 // v1 cpu.shares (default 1024)
	fillCPUWeight = 10  // v2 cpu.weight (default 100)
)

// lowerWeight sets the fillers' parent cgroup's CPU weight (fillCPUShares, fillCPUWeight). A
// failure only costs the container's interpreted first run some CPU, so it is not an error.
func (fc fillCgroups) lowerWeight() {
	if fc.h.unified {
		_ = os.WriteFile(filepath.Join(fc.h.mountpoint, fc.parent, "cpu.weight"), []byte(strconv.Itoa(fillCPUWeight)), 0)
		return
	}
	for _, root := range fc.roots(cgroup1.Cpu) {
		_ = os.WriteFile(filepath.Join(root, "cpu.shares"), []byte(strconv.Itoa(fillCPUShares)), 0)
	}
}

// remove removes the cgroup once its filler has exited.
func (c *fillCgroup) remove() error { return deleteCgroup(c.cg) }

// sweep removes the fillers' cgroups that hold no process and are older than age: those whose
// filler outlived its shim. It returns how many it removed.
func (fc fillCgroups) sweep(age time.Duration) int {
	removed := map[string]bool{}
	for _, root := range fc.roots("") {
		entries, err := os.ReadDir(root)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			dir := filepath.Join(root, e.Name())
			fi, err := os.Stat(dir)
			if err != nil || time.Since(fi.ModTime()) < age {
				continue
			}
			procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
			if err != nil || len(strings.TrimSpace(string(procs))) > 0 {
				continue
			}
			if err := os.Remove(dir); err == nil {
				removed[e.Name()] = true
			}
		}
	}
	return len(removed)
}

// fillerRun is a filler started by startFiller: done is closed once it has exited and its cgroup
// is removed, and then res and err are its report, status its exit status (128+signal when a
// signal killed it) and rmErr the cgroup's removal.
type fillerRun struct {
	filler *engine.Filler
	cg     *fillCgroup
	limits engine.FillLimits
	done   chan struct{}
	res    engine.FillResult
	err    error
	status int
	rmErr  error
}

// killedBySIGKILL tells whether the filler was SIGKILLed: in its cgroup, most likely by the OOM
// killer at its memory limit.
func (r *fillerRun) killedBySIGKILL() bool { return r.status == 128+int(syscall.SIGKILL) }

// cmdWait waits for cmd as exec.Cmd does and returns its exit status as the reaper does.
func cmdWait(cmd *exec.Cmd) (int, error) {
	err := cmd.Wait()
	if st, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && st.Signaled() {
		return 128 + int(st.Signal()), nil
	}
	if cmd.ProcessState != nil {
		return cmd.ProcessState.ExitCode(), nil
	}
	return -1, err
}

// startFiller starts a filler (the shim binary self with engine.FillArg) that compiles the module
// of cfg, open as module, into the cache, in a cgroup of its own with limits l (for the module's
// size: FillLimits.ForModule, in fillerRun.limits). start and wait
// start and wait for the command (the reaper's in the shim; nil: exec.Cmd's). A module bigger
// than l.MaxModuleBytes gives an error wrapping engine.ErrFillTooBig; a cgroup that cannot be
// created gives an error and no filler: an unbounded background compile is what the cgroup is
// there to prevent, and the container runs in the interpreter anyway.
func (fc fillCgroups) startFiller(_ context.Context, self string, cfg *engine.Config, module *os.File, l engine.FillLimits,
	start func(*exec.Cmd) error, wait func(*exec.Cmd) (int, error)) (*fillerRun, error) {
	size := int64(-1)
	if fi, err := module.Stat(); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
	}
	if l.MaxModuleBytes > 0 && size > l.MaxModuleBytes {
		return nil, fmt.Errorf("%w: %s is %d bytes, more than %s=%d", engine.ErrFillTooBig, cfg.Module.GuestPath, size, engine.FillMaxModuleBytesEnv, l.MaxModuleBytes)
	}
	l = l.ForModule(size)
	fcg, err := fc.create(cfg.ID, l)
	if err != nil {
		return nil, fmt.Errorf("cgroup for the background compile: %w", err)
	}
	if wait == nil {
		wait = cmdWait
	}
	filler, err := engine.FillCache(self, cfg, module, engine.FillOptions{
		Start:  start,
		Limits: l,
		Started: func(pid int) error {
			if err := fcg.cg.AddProc(uint64(pid)); err != nil {
				return fmt.Errorf("put the background compile in cgroup %s: %w", fcg.path, err)
			}
			return nil
		},
	})
	if err != nil {
		if filler != nil {
			_, _ = wait(filler.Cmd)
		}
		if rmErr := fcg.remove(); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("remove cgroup %s: %w", fcg.path, rmErr))
		}
		return nil, err
	}
	run := &fillerRun{filler: filler, cg: fcg, limits: l, done: make(chan struct{})}
	go func() {
		defer close(run.done)
		run.res, run.err = filler.Result()
		run.status, _ = wait(filler.Cmd)
		run.rmErr = fcg.remove()
	}()
	return run, nil
}
