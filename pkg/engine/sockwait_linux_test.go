package engine

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
)

// memoryModule is a module with one page of memory and nothing else, for calling socketWait's
// hook as wazero would, with any parameters.
func memoryModule(t *testing.T) (*socketWait, func(params ...uint64)) {
	t.Helper()
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	t.Cleanup(func() { r.Close(ctx) })
	// (module (memory 1))
	bin := []byte{0, 'a', 's', 'm', 1, 0, 0, 0, 5, 3, 1, 0, 1}
	mod, err := r.Instantiate(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	w := newSocketWait()
	if w.fdDir == nil {
		t.Skip("no /proc/self/fd")
	}
	t.Cleanup(w.close)
	return w, func(params ...uint64) {
		t.Helper()
		defer func() {
			if p := recover(); p != nil {
				t.Errorf("poll_oneoff%v: the hook panicked: %v", params, p)
			}
		}()
		w.Before(ctx, mod, nil, params, nil)
		w.After(ctx, mod, nil, nil)
	}
}

// A guest's poll_oneoff with a subscription count whose size wraps in 32 bits (0x05555556*48 is
// 2^32+32) or exceeds its memory must not make the hook read past what it read: wazero answers
// such calls with EFAULT.
func TestSocketWaitHugeCount(t *testing.T) {
	_, call := memoryModule(t)
	for _, tc := range [][]uint64{
		{0, 0, 0x05555556, 0},       // wraps to 32 bytes
		{0, 0, 0x05555556 * 2, 0},   // wraps to 64 bytes
		{0, 0, 0xffffffff, 0},       // the largest count
		{65536 - 48, 0, 2, 0},       // one subscription past the end
		{0xffffffff, 0, 1, 0},       // at the top of the address space
		{0, 0, 65536/48 + 1, 0},     // just more than the memory holds
		{0, 0, 0x1_0000_0001, 0},    // a count above 32 bits (truncated as wazero does)
		{48, 0, 1, 0}, {0, 0, 1, 0}, // well-formed: a clock of 0 ns
		{0, 0, 65536 / 48, 0}, // the whole memory, all clocks
	} {
		call(tc...)
	}
}
