package engine

import (
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Huge pages for the heap of a runner's Prepare.
//
// A runner is a new process: every page its Prepare touches is fresh to it, and the kernel
// faults each one in. For a large module that is thousands of faults (the 2.6 MB Go hello: about
// 5,400, of which 2,300 are wazero's copy of the cached machine code and most of the rest the Go
// heap that decoding the module fills). On virtual machines whose page faults trap to the
// hypervisor, such as this project's CI machines (shadow page tables), a fault costs 20-40 µs and
// the faults were most of that Prepare (docs/PERFORMANCE.md, "Session 8").
//
// adviseHugeHeap makes the Go heap map a region sized for the module's decoding up front and
// advises the kernel to back it with transparent huge pages (MADV_HUGEPAGE): one fault per 2 MiB
// instead of 512. The advice lasts only for the Prepare: the undo function advises MADV_NOHUGEPAGE again,
// so that khugepaged never collapses the idle runner's sparse heap into huge pages (its default
// max_ptes_none would fill a 2 MiB page around one live 4 KiB page), and releaseGarbage then
// returns the free parts of the huge pages to the kernel as it did before (the huge pages are
// split). Where transparent huge pages are off ("never"), or a huge page cannot be had (no free
// 2 MiB block, or the container's memory limit reached), the kernel uses small pages as without
// the advice. RATIONALE.md, "Why a runner's Prepare asks for huge pages".

// hugeHeapMinModule is the smallest module for which adviseHugeHeap advises: 1 MiB. Smaller
// modules (a C handler: tens of KB, about 300 faults in all) leave too little heap for huge pages
// to save anything, and would pay the collection that adviseHugeHeap runs.
const hugeHeapMinModule = 1 << 20

// hugeHeapFactor sizes the advised region: this many times the module's size (the Go hello's
// Prepare allocates about 10 MB, nearly all of it live at the end, for its 2.6 MB), at least
// hugeHeapMin and at most hugeHeapMax.
const (
	hugeHeapFactor = 4
	hugeHeapMin    = 8 << 20
	hugeHeapMax    = 64 << 20
)

// A huge page is charged to the container whole, so huge pages can raise a runner's peak memory
// by up to a page per partly used one: the top of the Prepare's region, and the guest's last page
// within its minimum. Under a container memory limit close to what the runner needs, that can be
// the difference between loading and being OOM-killed (the Go hello loaded under a 24 MiB limit
// with small pages, and not with huge ones; both loaded under 25 MiB). So a runner uses huge pages
// only when the container has no memory limit, or one of at least hugePagesLimitFactor times the
// module's size plus hugePagesLimitSlack: well above the about 8 times the module's size plus 4
// MiB that a runner needs with small pages (hugePagesFit).
const (
	hugePagesLimitFactor = 8
	hugePagesLimitSlack  = 16 << 20
)

// hugePagesFit reports whether a container with memory limit (bytes, 0 for none) leaves a runner
// of a module of moduleSize bytes the room for huge pages.
func hugePagesFit(limit, moduleSize int64) bool {
	return limit <= 0 || limit >= hugePagesLimitFactor*moduleSize+hugePagesLimitSlack
}

// guestHugePagesFit reports whether a container with memory limit (bytes, 0 for none) leaves room
// for huge pages within a guest's declared minimum of minBytes, on top of a runner's: those pages
// may commit the whole minimum, also where the guest touches it only here and there.
func guestHugePagesFit(limit, moduleSize, minBytes int64) bool {
	return limit <= 0 || limit >= hugePagesLimitFactor*moduleSize+minBytes+hugePagesLimitSlack
}

// hugePageSize is the size of a transparent huge page on amd64 and arm64 (with 4 KiB pages).
const hugePageSize = 2 << 20

// adviseHugeHeap prepares the Go heap for the Prepare of a module of moduleSize bytes: it grows
// the heap's mapping by a region of hugeHeapFactor times that size, advises huge pages for the
// region's whole 2 MiB pages, and frees it again (a collection) for the Prepare's allocations to
// reuse. It returns the advised range [lo, hi) and the function that takes the advice back, to
// call once the Prepare is done. For a module under hugeHeapMinModule it does nothing (an empty
// range). The advice is only ever a hint: an error from madvise (a kernel without transparent huge
// pages) leaves the heap as it was.
func adviseHugeHeap(moduleSize int64) (lo, hi uintptr, undo func()) {
	if moduleSize < hugeHeapMinModule {
		return 0, 0, func() {}
	}
	n := min(max(hugeHeapFactor*moduleSize, hugeHeapMin), hugeHeapMax) + hugePageSize
	region := make([]byte, n)
	lo, hi = hugePagesIn(uintptr(unsafe.Pointer(&region[0])), uintptr(n))
	if hi <= lo || madviseRange(lo, hi, unix.MADV_HUGEPAGE) != nil {
		return 0, 0, func() {}
	}
	runtime.KeepAlive(region)
	region = nil
	// The region is free now: the page allocator hands its lowest free addresses out first, so
	// the module's bytes and its decoding land in it.
	runtime.GC()
	return lo, hi, func() { _ = madviseRange(lo, hi, unix.MADV_NOHUGEPAGE) }
}

// hugePagesIn returns the bounds of the whole huge pages within [addr, addr+n).
func hugePagesIn(addr, n uintptr) (lo, hi uintptr) {
	lo = (addr + hugePageSize - 1) &^ (hugePageSize - 1)
	hi = (addr + n) &^ (hugePageSize - 1)
	return lo, hi
}

// madviseRange gives the kernel advice for the range [lo, hi) of this process's heap, which the
// Go runtime keeps mapped (it never unmaps its heap).
func madviseRange(lo, hi uintptr, advice int) error {
	if _, _, errno := unix.Syscall(unix.SYS_MADVISE, lo, hi-lo, uintptr(advice)); errno != 0 {
		return errno
	}
	return nil
}

// adviseGuestHugePages advises huge pages for the whole 2 MiB pages of a guest's linear memory
// (mapping, just reserved) that lie within its declared minimum (initial bytes): the memory the
// module says it needs from its start, which its data segments and its start-up fill (a Go guest
// declares 2.4 MB or more: about 450 of its 770 faults at start). Nothing beyond the minimum is
// advised, so a huge page never commits memory the module did not declare, and khugepaged can
// fill at most that range; a guest whose minimum is under 2 MiB (a C guest: 128 KiB) gets none.
// The allocator calls it only where the container's memory limit leaves room for the whole
// minimum (guestHugePagesFit).
func adviseGuestHugePages(mapping []byte, initial uint64) {
	n := min(initial, uint64(len(mapping)))
	if n < hugePageSize {
		return
	}
	base := uintptr(unsafe.Pointer(&mapping[0]))
	lo, hi := hugePagesIn(base, uintptr(n))
	if hi > lo {
		_ = unix.Madvise(mapping[lo-base:hi-base], unix.MADV_HUGEPAGE)
	}
}

// moduleSize is the size of the module file at path, or 0 if it cannot be read (Prepare then
// reports the error).
func moduleSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}
