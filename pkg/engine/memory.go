package engine

import (
	"runtime"
	"runtime/debug"
)

// releaseThreshold is how much a runner must have allocated, in all, before releaseGarbage returns
// its free heap to the kernel: a cold compile or a large module leaves that much garbage.
const releaseThreshold = 4 << 20

// releaseGarbage collects the garbage that compiling or loading the module left, and returns the
// freed memory to the kernel, when the runner has allocated releaseThreshold or more in all. A
// runner that waits for its guest allocates almost nothing more, so the Go runtime would otherwise
// keep that memory for the container's whole life; runners that allocated less (small modules from
// the cache, sandboxes) skip it, since a GC cycle would touch more memory than it frees. Called
// after the ready report, so it never delays Create. The measurements behind the rule:
// RATIONALE.md, "Why a runner returns its garbage to the kernel once it is ready".
//
// The total comes from runtime.ReadMemStats (TotalAlloc, the same count as runtime/metrics'
// /gc/heap/allocs:bytes): linking runtime/metrics would make every runner build its table of
// metric descriptions at start (docs/PERFORMANCE.md, "Session 6: start-up levers").
func releaseGarbage() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if ms.TotalAlloc >= releaseThreshold {
		debug.FreeOSMemory()
	}
}
