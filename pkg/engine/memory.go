package engine

import (
	"runtime/debug"
	"runtime/metrics"
)

// releaseThreshold is how much a runner must have allocated, in all, before releaseGarbage returns
// its free heap to the kernel: a cold compile or a large module leaves that much garbage.
const releaseThreshold = 4 << 20

// releaseGarbage collects the garbage that compiling or loading the module left, and returns the
// freed memory to the kernel, when there is enough of it to matter. A runner that waits for its
// guest allocates almost nothing more, so the Go runtime would otherwise keep that memory for the
// container's whole life: measured, a runner that compiled /testprog.wasm (cache miss) kept
// 14-15 MB of anonymous memory instead of 4.8 MB, and one that loaded the 9 MB httpserver.wasm
// from the cache 87 MB instead of 77 MB. It costs one GC: 2.5 ms after loading a 2.6 MB module,
// 7 ms after a 9 MB one; runners that allocated less (small modules from the cache, sandboxes)
// skip it, since a GC cycle touches more memory than their little garbage (measured: +0.1 MB).
func releaseGarbage() {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 && s[0].Value.Uint64() >= releaseThreshold {
		debug.FreeOSMemory()
	}
}
