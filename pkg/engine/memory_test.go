package engine

import (
	"runtime"
	"testing"
)

var sink []byte

// After a runner allocated more than releaseThreshold, releaseGarbage leaves no free heap memory
// resident.
func TestReleaseGarbage(t *testing.T) {
	for i := 0; i < 64; i++ {
		sink = make([]byte, 256<<10) // 16 MiB of garbage in all
	}
	sink = nil
	releaseGarbage()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	if kept := m.HeapIdle - m.HeapReleased; kept > 2<<20 {
		t.Errorf("%d KiB of free heap still resident after releaseGarbage", kept>>10)
	}
}
