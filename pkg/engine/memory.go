package engine

import (
	"runtime/debug"
	"runtime/metrics"
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
func releaseGarbage() {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 && s[0].Value.Uint64() >= releaseThreshold {
		debug.FreeOSMemory()
	}
}
