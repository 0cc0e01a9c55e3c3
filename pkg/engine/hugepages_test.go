package engine

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// vmaFlags reads /proc/PID/smaps and returns the VmFlags of each mapping, keyed by its start
// address, and the end address of each.
func vmaFlags(t *testing.T, pid string) (flags map[uintptr][]string, ends map[uintptr]uintptr) {
	t.Helper()
	f, err := os.Open("/proc/" + pid + "/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flags, ends = map[uintptr][]string{}, map[uintptr]uintptr{}
	var cur uintptr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "VmFlags:"); ok {
			flags[cur] = strings.Fields(v)
			continue
		}
		rng, _, _ := strings.Cut(line, " ")
		lo, hi, ok := strings.Cut(rng, "-")
		if !ok {
			continue
		}
		a, err1 := strconv.ParseUint(lo, 16, 64)
		b, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		cur = uintptr(a)
		ends[cur] = uintptr(b)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return flags, ends
}

// flagsCovering returns the VmFlags of every mapping that overlaps [lo, hi).
func flagsCovering(t *testing.T, lo, hi uintptr) []string {
	flags, ends := vmaFlags(t, "self")
	var all []string
	for start, end := range ends {
		if start < hi && lo < end {
			all = append(all, flags[start]...)
		}
	}
	return all
}

func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if x == f {
			return true
		}
	}
	return false
}

// adviseHugeHeap advises huge pages for a heap region sized for the module (smaps: "hg"), and its undo
// takes the advice back ("nh", no "hg"); a small module gets no advice.
func TestHugeHeap(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage/enabled"); err != nil {
		t.Skipf("no transparent huge pages in this kernel: %v", err)
	}
	lo, hi, undo := adviseHugeHeap(3 << 20)
	if hi <= lo {
		t.Fatal("no huge page advice for a 3 MiB module")
	}
	if want := uintptr(hugeHeapFactor * 3 << 20); hi-lo < want {
		t.Errorf("advised %d bytes, want at least %d (%d times the module)", hi-lo, want, hugeHeapFactor)
	}
	if f := flagsCovering(t, lo, hi); !hasFlag(f, "hg") {
		t.Errorf("advised range %#x-%#x has VmFlags %v, want hg", lo, hi, f)
	}
	undo()
	if f := flagsCovering(t, lo, hi); hasFlag(f, "hg") || !hasFlag(f, "nh") {
		t.Errorf("after undo, range %#x-%#x has VmFlags %v, want nh and no hg", lo, hi, f)
	}

	if lo, hi, _ := adviseHugeHeap(hugeHeapMinModule - 1); hi > lo {
		t.Errorf("advice for a module under %d bytes: %#x-%#x", hugeHeapMinModule, lo, hi)
	}
}

// A runner preparing a large module (the 2.6 MB Go hello) had huge pages for its Prepare's heap
// (its report's HugePageBytes) and took the advice back before it reported ready: no mapping of
// the ready runner has "hg" (khugepaged would collapse the idle runner's sparse heap into huge
// pages). A runner of a small module asks for none. Both report their page faults.
func TestRunnerHugePagesTakenBack(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage/enabled"); err != nil {
		t.Skipf("no transparent huge pages in this kernel: %v", err)
	}
	for _, tc := range []struct {
		name, module string
		limit        int64
		advised      bool
	}{
		{"large module", "hello-go.wasm", 0, true},
		{"small module", "testprog.wasm", 0, false},
		// The Go hello loads under 25 MiB with small pages; huge pages need room beyond that.
		{"tight memory limit", "hello-go.wasm", 32 << 20, false},
		{"ample memory limit", "hello-go.wasm", 64 << 20, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Ready, the runner waits for the start byte: its heap is what an idle container's is.
			r, _, stderr := spawn(t)
			cfg := testConfig(t, tc.module)
			cfg.MemoryLimit = tc.limit
			ready, err := r.Configure(cfg)
			if err != nil {
				t.Fatalf("Configure: %v (stderr %q)", err, stderr())
			}
			if ready.PageFaults <= 0 {
				t.Errorf("report of %d page faults", ready.PageFaults)
			}
			if tc.advised && ready.HugePageBytes < hugeHeapMin {
				t.Errorf("%s: %d bytes of heap in huge pages, want at least %d", tc.module, ready.HugePageBytes, hugeHeapMin)
			}
			if !tc.advised && ready.HugePageBytes != 0 {
				t.Errorf("%s: %d bytes of heap in huge pages, want none", tc.module, ready.HugePageBytes)
			}
			flags, _ := vmaFlags(t, strconv.Itoa(r.Cmd.Process.Pid))
			for start, f := range flags {
				if hasFlag(f, "hg") {
					t.Errorf("the ready runner's mapping at %#x still advises huge pages (VmFlags %v)", start, f)
				}
			}
		})
	}
}

// A guest's linear memory gets huge pages for the whole 2 MiB pages within its declared minimum
// (hg), nothing beyond it; a guest whose minimum is under 2 MiB gets none.
func TestGuestHugePages(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage/enabled"); err != nil {
		t.Skipf("no transparent huge pages in this kernel: %v", err)
	}
	for _, tc := range []struct {
		name         string
		initial      uint64
		advisedBytes uintptr
	}{{"5 MiB minimum", 5 << 20, 4 << 20}, {"1 MiB minimum", 1 << 20, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			m := &cappedMemory{limit: &memoryCap{hugePages: true}, max: 64 << 20}
			m.limit.pages.Store(1024)
			buf := m.Reallocate(tc.initial)
			defer m.Free()
			if uint64(len(buf)) != tc.initial {
				t.Fatalf("Reallocate gave %d bytes, want %d", len(buf), tc.initial)
			}
			base := uintptr(unsafe.Pointer(&m.mapping[0]))
			lo, hi := hugePagesIn(base, uintptr(tc.initial))
			if tc.advisedBytes == 0 {
				if f := flagsCovering(t, base, base+uintptr(len(m.mapping))); hasFlag(f, "hg") {
					t.Errorf("a %s memory has VmFlags %v, want no hg", tc.name, f)
				}
				return
			}
			if hi-lo < tc.advisedBytes-hugePageSize {
				t.Fatalf("only %d bytes of whole huge pages in the minimum (mapping at %#x)", hi-lo, base)
			}
			if f := flagsCovering(t, lo, hi); !hasFlag(f, "hg") {
				t.Errorf("the minimum's huge pages %#x-%#x have VmFlags %v, want hg", lo, hi, f)
			}
			if f := flagsCovering(t, base+uintptr(tc.initial)+hugePageSize, base+uintptr(len(m.mapping))); hasFlag(f, "hg") {
				t.Errorf("memory beyond the minimum has VmFlags %v, want no hg", f)
			}
		})
	}
}

// Huge pages only where the container's memory limit leaves room for them: none or at least eight
// times the module plus 16 MiB for the Prepare's heap, plus the guest's whole minimum for its
// memory's.
func TestHugePagesFit(t *testing.T) {
	const mib = 1 << 20
	goHello := int64(2624311)
	for _, tc := range []struct {
		limit, module, min int64
		heap, guest        bool
	}{
		{0, goHello, 38 * 65536, true, true},
		{24 * mib, goHello, 38 * 65536, false, false},
		{37 * mib, goHello, 38 * 65536, true, false},
		{40 * mib, goHello, 38 * 65536, true, true},
		{40 * mib, 50 << 10, 32 * mib, true, false}, // a small module declaring a large memory
		{64 * mib, 50 << 10, 32 * mib, true, true},
	} {
		if got := hugePagesFit(tc.limit, tc.module); got != tc.heap {
			t.Errorf("hugePagesFit(limit %d, module %d) = %v, want %v", tc.limit, tc.module, got, tc.heap)
		}
		if got := guestHugePagesFit(tc.limit, tc.module, tc.min); got != tc.guest {
			t.Errorf("guestHugePagesFit(limit %d, module %d, min %d) = %v, want %v", tc.limit, tc.module, tc.min, got, tc.guest)
		}
	}
}

// Prepare gives a guest's memory huge pages for its minimum only where the container's memory
// limit leaves room for them: the Go hello (2.6 MB, a 2.4 MB minimum) without a limit and under
// 64 MiB, not under 32 MiB.
func TestPrepareGuestHugePagesByLimit(t *testing.T) {
	for _, tc := range []struct {
		limit int64
		want  bool
	}{{0, true}, {64 << 20, true}, {32 << 20, false}} {
		cfg := testConfig(t, "hello-go.wasm")
		cfg.MemoryLimit = tc.limit
		if got := prepare(t, cfg).memCap.hugePages; got != tc.want {
			t.Errorf("memory limit %d: huge pages for the guest's minimum %v, want %v", tc.limit, got, tc.want)
		}
	}
}
