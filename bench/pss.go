package main

// Memory attribution (B3, B6): which processes are a runtime's shims and their descendants, and
// the sum of their PSS (proportional set size: each shared page split among the processes mapping
// it) from /proc/PID/smaps_rollup.

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procTable is every process's parent and executable (" (deleted)" trimmed), from /proc.
func procTable() (ppid map[int]int, exe map[int]string, err error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, nil, err
	}
	ppid, exe = map[int]int{}, map[int]string{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		ppid[pid] = pp
		x, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		exe[pid] = strings.TrimSuffix(x, " (deleted)")
	}
	return ppid, exe, nil
}

// runsShimOf reports whether exe is the shim of runtime (or wazero variant) rt: the bench's copy
// of the current build (or its server binary) for wazero and wazero-shared, the earlier build's for
// -before-shim-exe, containerd-shim-runc-v2 for runc.
func (b *bencher) runsShimOf(rt, exe string) bool {
	switch runtimeOf(rt) {
	case wasmRuntime:
		return isShimExe(exe, b.c.shimExe)
	case runcRuntime:
		return exe == b.c.runcShimExe
	case b.c.beforeShimExe:
		return isShimExe(exe, b.c.beforeShimExe)
	}
	return false
}

// pss sums the PSS (kB) of the shims of runtime rt that serve our daemon and all their descendants.
func (b *bencher) pss(rt string) (int64, int, error) {
	ppid, exe, err := procTable()
	if err != nil {
		return 0, 0, err
	}
	var roots []int
	for pid, x := range exe {
		if b.runsShimOf(rt, x) && b.isOurShim(pid) {
			roots = append(roots, pid)
		}
	}
	return pssTree(roots, ppid)
}

// pssOfTasks sums the PSS (kB) of the shims that serve the tasks whose pids are given and all their
// descendants, and counts those processes and the shims among them. A task's shim is its outermost
// ancestor in the unbroken chain of processes that run rt's shim (the server, even where a runner
// runs the server binary itself); a shim serving many of the tasks (the shared server, a pod's
// shim) counts once, and a shim serving none of them (one that lingers after its last task) not at
// all.
func (b *bencher) pssOfTasks(rt string, pids []int) (kb int64, procs, shims int, err error) {
	ppid, exe, err := procTable()
	if err != nil {
		return 0, 0, 0, err
	}
	roots, err := b.shimsOf(rt, pids, ppid, exe)
	if err != nil {
		return 0, 0, 0, err
	}
	kb, procs, err = pssTree(roots, ppid)
	return kb, procs, len(roots), err
}

// shimsOf finds the shim of every task pid (see pssOfTasks), without duplicates.
func (b *bencher) shimsOf(rt string, pids []int, ppid map[int]int, exe map[int]string) ([]int, error) {
	seen := map[int]bool{}
	var roots []int
	for _, pid := range pids {
		shim := 0
		for p, hops := ppid[pid], 0; p > 1 && hops < 64; p, hops = ppid[p], hops+1 {
			if b.runsShimOf(rt, exe[p]) {
				shim = p
			} else if shim != 0 {
				break
			}
		}
		if shim == 0 {
			return nil, fmt.Errorf("task pid %d (%s): no ancestor process runs the %s shim", pid, rtName(rt), rtName(rt))
		}
		if !seen[shim] {
			seen[shim] = true
			roots = append(roots, shim)
		}
	}
	return roots, nil
}

// pssTree sums the PSS (kB) of roots and all their descendants (ppid: every process's parent) and
// returns it with the number of processes.
func pssTree(roots []int, ppid map[int]int) (int64, int, error) {
	in := map[int]bool{}
	for _, r := range roots {
		in[r] = true
	}
	for changed := true; changed; { // add descendants until nothing changes
		changed = false
		for pid, pp := range ppid {
			if !in[pid] && in[pp] {
				in[pid], changed = true, true
			}
		}
	}
	var total int64
	for pid := range in {
		kb, err := pssOf(pid)
		if err != nil {
			return 0, 0, fmt.Errorf("pss of %d: %w", pid, err)
		}
		total += kb
	}
	return total, len(in), nil
}

// isShimExe reports whether exe runs the wazero shim installed as shim: shim itself (a shim that is
// one binary) or the server binary beside it, which the shim's entry starts (package shimentry).
func isShimExe(exe, shim string) bool {
	return exe == shim || exe == filepath.Join(filepath.Dir(shim), "containerd-shim-wazero-v1-server")
}

// isOurShim: the shim's command line names our daemon's socket (-address SOCK).
func (b *bencher) isOurShim(pid int) bool {
	cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	for _, a := range strings.Split(string(cl), "\x00") {
		if a == b.c.address {
			return true
		}
	}
	return false
}

func pssOf(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "Pss:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				return strconv.ParseInt(f[1], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no Pss line")
}
