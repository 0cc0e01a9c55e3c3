package engine

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// runFiller runs a filler for cfg's module (this test binary, as the shim runs itself) and returns
// its report.
func runFiller(t *testing.T, cfg *Config) FillResult {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(cfg.Module.HostPath)
	if err != nil {
		t.Fatal(err)
	}
	filler, err := FillCache(self, cfg, f, nil)
	f.Close()
	if err != nil {
		t.Fatalf("FillCache: %v", err)
	}
	res, err := filler.Result()
	if werr := filler.Cmd.Wait(); err == nil && werr != nil {
		t.Errorf("filler exited: %v", werr)
	}
	if err != nil {
		t.Fatalf("filler: %v", err)
	}
	return res
}

// Under the interpret policy, a module's first run is interpreted and leaves the cache alone;
// the filler compiles it into the cache, and the next run loads the compiled module.
func TestColdStartInterpret(t *testing.T) {
	cache := t.TempDir()
	cfg := testConfig(t, "hello.wasm")
	cfg.CacheDir, cfg.ColdStart = cache, oci.ColdStartInterpret

	p := prepare(t, cfg)
	if !p.Interpreted || p.CacheHit {
		t.Fatalf("first run: Interpreted=%v CacheHit=%v, want an interpreted start", p.Interpreted, p.CacheHit)
	}
	if n := countEntries(cache); n != 0 {
		t.Errorf("the interpreted start wrote %d cache entries", n)
	}
	var out bytes.Buffer
	if code := Run(context.Background(), cfg, p, strings.NewReader(""), &out, &out); code != 0 || !strings.Contains(out.String(), "hello") {
		t.Errorf("interpreted run: exit %d, output %q", code, out.String())
	}

	res := runFiller(t, cfg)
	if res.CacheHit {
		t.Errorf("filler report %+v, want a compile", res)
	}
	if n := countEntries(cache); n == 0 {
		t.Fatal("the filler wrote no cache entry")
	}
	if res := runFiller(t, cfg); !res.CacheHit {
		t.Errorf("second filler: %+v, want a cache hit (nothing to compile)", res)
	}

	p2 := prepare(t, cfg)
	if p2.Interpreted || !p2.CacheHit {
		t.Errorf("after the fill: Interpreted=%v CacheHit=%v, want the compiled module from the cache", p2.Interpreted, p2.CacheHit)
	}
	out.Reset()
	if code := Run(context.Background(), cfg, p2, strings.NewReader(""), &out, &out); code != 0 || !strings.Contains(out.String(), "hello") {
		t.Errorf("compiled run: exit %d, output %q", code, out.String())
	}
}

// The interpreter behaves as the compiler for a guest: exit codes, traps, memory cap.
func TestColdStartInterpretGuest(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"exit", "7"}, 7},
		{[]string{"trap"}, ExitTrap},
		{[]string{"grow", "200"}, 3},
	} {
		cfg := testConfig(t, "testprog.wasm", tc.args...)
		cfg.CacheDir, cfg.ColdStart = t.TempDir(), oci.ColdStartInterpret
		cfg.MemoryPages = oci.MemoryPages(48 << 20)
		p := prepare(t, cfg)
		if !p.Interpreted {
			t.Fatalf("%v: not interpreted", tc.args)
		}
		var out bytes.Buffer
		if code := Run(context.Background(), cfg, p, strings.NewReader(""), &out, &out); code != tc.code {
			t.Errorf("%v: exit %d, want %d (%q)", tc.args, code, tc.code, out.String())
		}
	}
}

// Without a cache there is nothing to fill: the interpret policy compiles.
func TestColdStartInterpretNoCache(t *testing.T) {
	cfg := testConfig(t, "hello.wasm")
	cfg.ColdStart = oci.ColdStartInterpret
	if p := prepare(t, cfg); p.Interpreted {
		t.Error("interpreted without a cache to fill")
	}
	cfg = testConfig(t, "hello.wasm")
	cfg.CacheDir, cfg.ColdStart = t.TempDir(), oci.ColdStartCompile
	if p := prepare(t, cfg); p.Interpreted || p.CacheHit {
		t.Errorf("compile policy: Interpreted=%v CacheHit=%v, want a compile", p.Interpreted, p.CacheHit)
	}
}

// Fillers started at once for one module compile it once (the module's lock).
func TestFillConcurrent(t *testing.T) {
	cache := t.TempDir()
	var wg sync.WaitGroup
	results := make([]FillResult, 3)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := testConfig(t, "hello-go.wasm")
			cfg.CacheDir = cache
			results[i] = runFiller(t, cfg)
		}()
	}
	wg.Wait()
	compiled := 0
	for _, r := range results {
		if !r.CacheHit {
			compiled++
		}
	}
	if compiled != 1 {
		t.Errorf("%d of 3 concurrent fillers compiled, want 1: %+v", compiled, results)
	}
}

// At most fillSlots fillers compile at once: the next one waits for a slot.
func TestFillSlot(t *testing.T) {
	defer func(n int) { fillSlots = n }(fillSlots)
	fillSlots = 2
	dir := t.TempDir()
	deadline := time.Now().Add(time.Minute)
	a, b := fillSlot(dir, deadline), fillSlot(dir, deadline)
	if a == nil || b == nil {
		t.Fatal("no slot free in an idle node")
	}
	defer b.Close()
	if c := fillSlot(dir, time.Now().Add(100*time.Millisecond)); c != nil {
		c.Close()
		t.Fatal("a third filler got a slot while both were held")
	}
	got := make(chan *os.File)
	go func() { got <- fillSlot(dir, deadline) }()
	select {
	case c := <-got:
		c.Close()
		t.Fatal("a waiting filler got a slot before one was released")
	case <-time.After(200 * time.Millisecond):
	}
	a.Close()
	select {
	case c := <-got:
		if c == nil {
			t.Fatal("no slot after one was released")
		}
		c.Close()
	case <-time.After(30 * time.Second):
		t.Fatal("a waiting filler did not get the released slot")
	}
}
