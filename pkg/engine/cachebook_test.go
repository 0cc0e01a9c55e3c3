package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/nodedir"
)

// moduleHex is the sha256 of a testdata module, as the cache's bookkeeping names it.
func moduleHex(t *testing.T, cfg *Config) string {
	t.Helper()
	b, err := os.ReadFile(cfg.Module.HostPath)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Runners cold-starting the same module at once compile it once: the others wait on its lock and
// load what the first wrote. flock locks belong to open file descriptions, and each Prepare opens
// the lock file itself, so goroutines of one process exclude each other as runners do.
func TestPrepareConcurrentColdStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	const n = 3
	cfgs := make([]*Config, n)
	for i := range cfgs {
		cfgs[i] = testConfig(t, "hello-go.wasm")
		cfgs[i].CacheDir = dir
	}
	ps := make([]*Prepared, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ps[i], errs[i] = Prepare(context.Background(), cfgs[i])
		}()
	}
	close(start)
	wg.Wait()
	misses := 0
	want := "sha256:" + moduleHex(t, cfgs[0])
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Prepare %d: %v", i, errs[i])
		}
		defer ps[i].Runtime.Close(context.Background())
		if !ps[i].CacheHit {
			misses++
		}
		if ps[i].CacheProblem != "" {
			t.Errorf("Prepare %d: CacheProblem %q", i, ps[i].CacheProblem)
		}
		if ps[i].Digest != want {
			t.Errorf("Prepare %d: Digest %q, want %q", i, ps[i].Digest, want)
		}
	}
	if misses != 1 {
		t.Errorf("%d of %d concurrent cold Prepares compiled (CacheHit=false), want exactly 1", misses, n)
	}
	if ok, files := readMarker(dir, moduleHex(t, cfgs[0])); !ok || len(files) != 1 {
		t.Errorf("marker: present %v, entries %v; want one entry", ok, files)
	}
	if got := countEntries(dir); got != 1 {
		t.Errorf("%d cache entries, want 1", got)
	}
	for _, sub := range []string{seenDir, locksDir} {
		if st, err := os.Stat(filepath.Join(dir, sub)); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, mode %v; want 0700", sub, err, st.Mode())
		}
	}
}

// A runner that holds a module's lock too long does not stop another from running it: the wait
// is bounded, and the one that gave up compiles the module itself and says so.
func TestPrepareLockWaitBounded(t *testing.T) {
	old := lockWait
	lockWait = 300 * time.Millisecond
	defer func() { lockWait = old }()
	cfg := testConfig(t, "testprog.wasm")
	cfg.CacheDir = t.TempDir()
	holder, err := lockModule(cfg.CacheDir, moduleHex(t, cfg), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	began := time.Now()
	p := prepare(t, cfg)
	if d := time.Since(began); d < lockWait {
		t.Errorf("Prepare returned after %v, before the lock wait of %v", d, lockWait)
	}
	if p.CacheHit || !strings.Contains(p.CacheProblem, "other runners") {
		t.Errorf("CacheHit %v CacheProblem %q; want a compile that says it did not wait", p.CacheHit, p.CacheProblem)
	}
	// What it compiled is in the cache for the next runner.
	if p := prepare(t, cfg); !p.CacheHit {
		t.Error("Prepare after the bounded wait: CacheHit = false")
	}
}

// A lock released by its holder (as the kernel does when a runner dies, even by SIGKILL) lets the
// waiter go on at once; a lock file removed while a runner waits on it is noticed, not trusted.
func TestLockFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.lock")
	a, err := lockFile(p, time.Now().Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockFile(p, time.Now().Add(50*time.Millisecond)); err != errLockTimeout {
		t.Fatalf("second lock while held: %v, want a timeout", err)
	}
	got := make(chan *os.File, 1)
	go func() {
		f, err := lockFile(p, time.Now().Add(5*time.Second))
		if err != nil {
			t.Error(err)
		}
		got <- f
	}()
	time.Sleep(50 * time.Millisecond)
	// Remove the file under the lock, as removeLock does, then release: the waiter must end up
	// holding a lock on the file now at p, not on the removed one.
	os.Remove(p)
	a.Close()
	b := <-got
	if b == nil {
		t.Fatal("no lock")
	}
	defer b.Close()
	if !nodedir.SameFile(b, p) {
		t.Error("the waiter holds the lock of a removed file")
	}
	if err := syscall.Flock(int(b.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Errorf("relock own lock: %v", err)
	}
}

// The size bound evicts least recently used entries (and their markers) after a compile, never
// the entry just written, and a hit counts as a use.
func TestPrepareCacheBound(t *testing.T) {
	// Entry sizes, from a cache of their own.
	size := map[string]int64{}
	for _, m := range []string{"testprog.wasm", "hello.wasm", "hello-go.wasm"} {
		cfg := testConfig(t, m)
		cfg.CacheDir = t.TempDir()
		prepare(t, cfg)
		for _, e := range listEntries(cfg.CacheDir) {
			size[m] += e.size
		}
		if size[m] == 0 {
			t.Fatalf("%s: no cache entry", m)
		}
	}
	t.Logf("entry sizes %v", size)
	dir := t.TempDir()
	cfg := func(m string, max int64) *Config {
		c := testConfig(t, m)
		c.CacheDir, c.CacheMaxBytes = dir, max
		return c
	}
	entryOf := func(c *Config) []string {
		_, files := readMarker(dir, moduleHex(t, c))
		return files
	}
	present := func(c *Config) bool {
		files := entryOf(c)
		for _, f := range files {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				return false
			}
		}
		return len(files) > 0
	}

	t.Run("lru", func(t *testing.T) {
		bound := size["testprog.wasm"] + size["hello-go.wasm"]
		tp, h, g := cfg("testprog.wasm", bound), cfg("hello.wasm", bound), cfg("hello-go.wasm", bound)
		if p := prepare(t, tp); p.CacheHit || p.Evicted != 0 {
			t.Fatalf("testprog: hit %v evicted %d", p.CacheHit, p.Evicted)
		}
		if p := prepare(t, h); p.CacheHit || p.Evicted != 0 {
			t.Fatalf("hello: hit %v evicted %d", p.CacheHit, p.Evicted)
		}
		// Make ages explicit: testprog older than hello, then testprog used again (a hit
		// touches it), so hello is the least recently used.
		old := time.Now().Add(-time.Hour)
		for _, f := range entryOf(tp) {
			os.Chtimes(filepath.Join(dir, f), old, old)
		}
		for _, f := range entryOf(h) {
			os.Chtimes(filepath.Join(dir, f), old.Add(time.Minute), old.Add(time.Minute))
		}
		if p := prepare(t, tp); !p.CacheHit {
			t.Fatal("testprog again: not a hit")
		}
		for _, f := range entryOf(tp) {
			if st, err := os.Stat(filepath.Join(dir, f)); err != nil || time.Since(st.ModTime()) > time.Minute {
				t.Errorf("a hit did not touch its entry %s: %v %v", f, err, st.ModTime())
			}
		}
		p := prepare(t, g)
		if p.CacheHit || p.Evicted != 1 || p.EvictedBytes != size["hello.wasm"] {
			t.Errorf("hello-go: hit %v evicted %d (%d bytes), want 1 entry of %d bytes", p.CacheHit, p.Evicted, p.EvictedBytes, size["hello.wasm"])
		}
		if !present(tp) || !present(g) {
			t.Error("the recently used testprog or the new hello-go entry was evicted")
		}
		if ok, _ := readMarker(dir, moduleHex(t, h)); ok {
			t.Error("the evicted module's marker is still there")
		}
		if _, err := os.Stat(filepath.Join(dir, locksDir, moduleHex(t, h)+".lock")); err == nil {
			t.Error("the evicted module's lock file is still there")
		}
		var total int64
		for _, e := range listEntries(dir) {
			total += e.size
		}
		if total > bound {
			t.Errorf("cache holds %d bytes, bound %d", total, bound)
		}
		// The evicted module compiles again (a miss), and is then a hit.
		if p := prepare(t, h); p.CacheHit {
			t.Error("evicted hello: CacheHit = true")
		}
		if p := prepare(t, h); !p.CacheHit {
			t.Error("hello after recompiling: CacheHit = false")
		}
	})

	t.Run("never the new entry", func(t *testing.T) {
		// A bound below one entry keeps only the entry just written.
		g := cfg("hello-go.wasm", 1)
		p := prepare(t, g)
		if p.CacheHit {
			t.Log("hello-go was still cached from the lru case")
		}
		tp := cfg("testprog.wasm", 1)
		os.Remove(filepath.Join(dir, seenDir, moduleHex(t, tp)))
		for _, e := range listEntries(dir) {
			if !strings.Contains(strings.Join(entryOf(g), " "), e.rel) {
				os.Remove(filepath.Join(dir, e.rel)) // all but hello-go's
			}
		}
		if p := prepare(t, tp); p.CacheHit || p.Evicted != 1 {
			t.Errorf("testprog under a 1-byte bound: hit %v evicted %d, want a miss evicting hello-go", p.CacheHit, p.Evicted)
		}
		if n := countEntries(dir); n != 1 || !present(tp) {
			t.Errorf("%d entries (testprog present: %v), want only testprog's", n, present(tp))
		}
		// Still a hit next time: the bound never removes what it just wrote.
		if p := prepare(t, tp); !p.CacheHit {
			t.Error("testprog again: CacheHit = false")
		}
	})

	t.Run("unbounded", func(t *testing.T) {
		d := t.TempDir()
		for _, m := range []string{"testprog.wasm", "hello.wasm", "hello-go.wasm"} {
			c := testConfig(t, m)
			c.CacheDir = d // CacheMaxBytes 0
			if p := prepare(t, c); p.Evicted != 0 {
				t.Errorf("%s: evicted %d without a bound", m, p.Evicted)
			}
		}
		if n := countEntries(d); n != 3 {
			t.Errorf("%d entries, want 3", n)
		}
	})
}

func TestCacheMaxBytes(t *testing.T) {
	for v, want := range map[string]int64{"": DefaultCacheMaxBytes, "0": 0, "1048576": 1 << 20, " 42 ": 42} {
		t.Setenv(CacheMaxBytesEnv, v)
		if got, err := CacheMaxBytes(); err != nil || got != want {
			t.Errorf("%s=%q: %d, %v; want %d", CacheMaxBytesEnv, v, got, err, want)
		}
	}
	for _, v := range []string{"-1", "2GiB", "x"} {
		t.Setenv(CacheMaxBytesEnv, v)
		if got, err := CacheMaxBytes(); err == nil || got != DefaultCacheMaxBytes {
			t.Errorf("%s=%q: %d, %v; want the default and an error", CacheMaxBytesEnv, v, got, err)
		}
	}
}
