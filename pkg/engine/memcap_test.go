package engine

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
)

// The declared minimum read from the binary is wazero's own, for the test modules: C (a memory
// of its own), Go (a memory of its own, 38 pages or so) and a module that imports its memory.
func TestMemoryMinPages(t *testing.T) {
	mods, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "build", "*.wasm"))
	if len(mods) == 0 {
		t.Skip("no test modules: run make testdata")
	}
	ctx := t.Context()
	rt := wazero.NewRuntimeConfigInterpreter()
	checked := 0
	for _, m := range mods {
		code, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		r := wazero.NewRuntimeWithConfig(ctx, rt)
		cm, err := r.CompileModule(ctx, code)
		if err != nil {
			r.Close(ctx)
			continue // invalid on purpose (invalid.wasm...)
		}
		want, wantOK := uint32(0), false
		for _, d := range cm.ImportedMemories() {
			want, wantOK = max(want, d.Min()), true
		}
		for _, d := range cm.ExportedMemories() {
			want, wantOK = max(want, d.Min()), true
		}
		got, ok := memoryMinPages(code)
		if wantOK && (got != want || !ok) {
			t.Errorf("%s: memoryMinPages = %d, %v; wazero says %d", filepath.Base(m), got, ok, want)
		}
		if wantOK {
			checked++
		}
		r.Close(ctx)
	}
	if checked < 3 {
		t.Errorf("only %d modules with a memory checked", checked)
	}
	if _, ok := memoryMinPages([]byte("\x00asm\x01")); ok {
		t.Errorf("a truncated module has a memory")
	}
}

// The cap moves with the lines the shim sends; a grow past it fails, within it succeeds, without
// copying the memory (the same mapping).
func TestCappedMemory(t *testing.T) {
	c := &memoryCap{}
	c.pages.Store(2)
	mem := c.allocator().Allocate(0, 10*65536)
	defer mem.Free()
	b := mem.Reallocate(65536)
	if len(b) != 65536 {
		t.Fatalf("initial allocation of %d bytes", len(b))
	}
	b[0] = 7
	if mem.Reallocate(3*65536) != nil {
		t.Fatalf("grew past the cap of 2 pages")
	}
	c.watch(bufio.NewReader(strings.NewReader(memCapPrefix + "4\nnoise\n" + memCapPrefix + "0\n")))
	if c.pages.Load() != 4 {
		t.Fatalf("cap %d after the update, want 4 (0 is ignored)", c.pages.Load())
	}
	g := mem.Reallocate(4 * 65536)
	if len(g) != 4*65536 || g[0] != 7 || &g[0] != &b[0] {
		t.Fatalf("grow within the new cap: len %d, kept contents %v, same memory %v", len(g), g[0] == 7, &g[0] == &b[0])
	}
	if mem.Reallocate(11*65536) != nil {
		t.Fatalf("grew past the reserved maximum")
	}
}

// A cap set before Start is held until the start byte has gone: a waiting runner takes any byte
// as the start.
func TestSetMemoryPagesBeforeStart(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	run := &Runner{ctl: w}
	if err := run.SetMemoryPages(5); err != nil {
		t.Fatal(err)
	}
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	if err := run.SetMemoryPages(7); err != nil {
		t.Fatal(err)
	}
	w.Close()
	got, _ := io.ReadAll(r)
	if want := "S" + memCapPrefix + "5\n" + memCapPrefix + "7\n"; string(got) != want {
		t.Fatalf("control pipe got %q, want %q", got, want)
	}
}
