package shim

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// modulesEnv is a modules directory in a temporary directory, with n distinct core modules of
// moduleSize bytes each in a fake content store.
type modulesEnv struct {
	t     *testing.T
	m     *imageModules
	fc    *fakeContent
	blobs [][]byte
	descs []ocispec.Descriptor
}

const moduleSize = 100

func newModulesEnv(t *testing.T, n int, maxBytes int64) *modulesEnv {
	e := &modulesEnv{
		t:  t,
		m:  &imageModules{dir: filepath.Join(t.TempDir(), "modules"), maxBytes: maxBytes},
		fc: &fakeContent{blobs: map[string][]byte{}},
	}
	for i := range n {
		b := []byte(fmt.Sprintf("\x00asm\x01\x00\x00\x00 module %d ", i))
		b = append(b, bytes.Repeat([]byte{'.'}, moduleSize-len(b))...)
		d := desc(b)
		e.blobs, e.descs = append(e.blobs, b), append(e.descs, d)
		e.fc.blobs[d.Digest.String()] = b
	}
	return e
}

// sha256Dir is where the modules are.
func (e *modulesEnv) sha256Dir() string { return filepath.Join(e.m.dir, "sha256") }

func (e *modulesEnv) path(i int) string {
	return filepath.Join(e.sha256Dir(), e.descs[i].Digest.Encoded()+".wasm")
}

// hold stores module i as a Create does and returns its path and release, still held.
func (e *modulesEnv) hold(i int) (string, func()) {
	e.t.Helper()
	p, release, err := e.m.store(context.Background(), contentStore{e.fc}, "img", e.descs[i])
	if err != nil {
		e.t.Fatalf("store module %d: %v", i, err)
	}
	if p != e.path(i) {
		e.t.Fatalf("store module %d: path %s, want %s", i, p, e.path(i))
	}
	return p, release
}

// put stores module i and releases it at once, as a Create whose runner has read it.
func (e *modulesEnv) put(i int) {
	e.t.Helper()
	_, release := e.hold(i)
	release()
}

// base is a fixed time long ago: modules aged with age(i, s) are last used at base+s seconds,
// before any module used now.
var base = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

func (e *modulesEnv) age(i, s int) {
	e.t.Helper()
	at := base.Add(time.Duration(s) * time.Second)
	if err := os.Chtimes(e.path(i), at, at); err != nil {
		e.t.Fatal(err)
	}
}

// present lists which modules are in the directory, as "0 2".
func (e *modulesEnv) present() string {
	var out []string
	for i := range e.descs {
		if _, err := os.Stat(e.path(i)); err == nil {
			out = append(out, fmt.Sprint(i))
		}
	}
	return strings.Join(out, " ")
}

func (e *modulesEnv) wantPresent(what, want string) {
	e.t.Helper()
	if got := e.present(); got != want {
		e.t.Errorf("%s: modules %q present, want %q", what, got, want)
	}
}

func TestModulesEvictLeastRecentlyUsed(t *testing.T) {
	e := newModulesEnv(t, 4, 2*moduleSize+moduleSize/2) // room for two modules
	e.put(0)
	e.age(0, 1)
	e.put(1)
	e.age(1, 2)
	e.wantPresent("under the bound", "0 1")
	e.put(2) // three modules: the oldest goes
	e.wantPresent("after a third module", "1 2")
	e.put(3) // 2 was written now, 1 long ago
	e.wantPresent("after a fourth module", "2 3")

	// Unbounded: nothing is evicted.
	u := newModulesEnv(t, 3, 0)
	for i := range 3 {
		u.put(i)
		u.age(i, i)
	}
	u.wantPresent("unbounded", "0 1 2")
}

func TestModulesTouchedOnUse(t *testing.T) {
	e := newModulesEnv(t, 3, 2*moduleSize+moduleSize/2)
	e.put(0)
	e.age(0, 1)
	e.put(1)
	e.age(1, 2)
	reads := e.fc.reads.Load()
	e.put(0) // reused: not copied again, but touched
	if n := e.fc.reads.Load() - reads; n != 0 {
		t.Errorf("reuse read the content store %d times, want the file reused", n)
	}
	if fi, err := os.Stat(e.path(0)); err != nil || !fi.ModTime().After(base.Add(2*time.Second)) {
		t.Errorf("reused module's mtime %v (%v): want it touched", fi.ModTime(), err)
	}
	e.put(2)
	e.wantPresent("after a third module", "0 2") // 1 is now the least recently used
}

func TestModulesJustWrittenKept(t *testing.T) {
	// A bound smaller than any module keeps exactly the one just written.
	e := newModulesEnv(t, 3, 1)
	e.put(0)
	e.wantPresent("one module", "0")
	e.put(1)
	e.wantPresent("second module", "1")

	// The module just written is kept even when it is the least recently used.
	for i := range 3 {
		if err := os.WriteFile(e.path(i), e.blobs[i], 0o600); err != nil {
			t.Fatal(err)
		}
		e.age(i, 10-i) // 2 oldest, 0 newest
	}
	n, freed := evictModules(e.sha256Dir(), 1, filepath.Base(e.path(2)))
	if n != 2 || freed != 2*moduleSize {
		t.Errorf("evicted %d modules, %d bytes; want 2, %d", n, freed, 2*moduleSize)
	}
	e.wantPresent("keep the oldest", "2")
}

func TestModulesHeldNotEvicted(t *testing.T) {
	e := newModulesEnv(t, 4, 1)
	p0, release0 := e.hold(0) // a Create whose runner has not read the module yet
	e.put(1)
	e.wantPresent("held module", "0 1")
	if got, err := os.ReadFile(p0); err != nil || !bytes.Equal(got, e.blobs[0]) {
		t.Errorf("held module: %v: want it readable", err)
	}

	// A Create that reuses a module holds it too.
	e.age(1, 1)
	p1, release1 := e.hold(1)
	release0()
	e.put(2)
	e.wantPresent("second Create holding a reused module", "1 2")
	if _, err := os.ReadFile(p1); err != nil {
		t.Errorf("held module: %v", err)
	}
	release1()
	e.put(3)
	e.wantPresent("all released", "3")

	// A module removed after a Create chose it is copied again by the next one.
	reads := e.fc.reads.Load()
	e.put(0)
	if e.fc.reads.Load() == reads {
		t.Errorf("evicted module not read from the content store again")
	}
	if got, err := os.ReadFile(e.path(0)); err != nil || !bytes.Equal(got, e.blobs[0]) {
		t.Errorf("module copied again: %v", err)
	}
}

func TestModulesStaleTemporaryFiles(t *testing.T) {
	e := newModulesEnv(t, 2, 0) // unbounded: leftovers go all the same
	e.put(0)
	dir := e.sha256Dir()
	old := time.Now().Add(-2 * staleModuleTmp)
	write := func(name string, at time.Time) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stale := write(".tmp-1.wasm", old)
	fresh := write(".tmp-2.wasm", time.Now())
	busy := write(".tmp-3.wasm", old) // a copy in progress (however old): held
	other := write("notes.txt", old)
	upper := write(strings.Repeat("A", 64)+".wasm", old)
	f, err := os.Open(busy)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		t.Fatal(err)
	}

	// Reusing a module never evicts: the leftovers are still there.
	e.put(0)
	if _, err := os.Stat(stale); err != nil {
		t.Errorf("reuse of a module cleaned the directory (%v): eviction must follow copies only", err)
	}

	e.put(1) // a copy: eviction runs
	if _, err := os.Stat(stale); err == nil {
		t.Errorf("%s: an old temporary file nobody holds is still there", stale)
	}
	for _, p := range []string{fresh, busy, other, upper} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed (%v): want it kept", filepath.Base(p), err)
		}
	}
	e.wantPresent("after the copy", "0 1")
}

// TestModulesConcurrentCreates runs Creates of four modules at once with a bound that fits none
// but the one just written: each Create must find its module complete at its path until it
// releases it, and nothing temporary is left.
func TestModulesConcurrentCreates(t *testing.T) {
	e := newModulesEnv(t, 4, 1)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				k := (g + i) % len(e.descs)
				p, release, err := e.m.store(context.Background(), contentStore{e.fc}, "img", e.descs[k])
				if err != nil {
					t.Errorf("store module %d: %v", k, err)
					return
				}
				got, err := os.ReadFile(p)
				release()
				if err != nil || !bytes.Equal(got, e.blobs[k]) {
					t.Errorf("module %d at %s, while held: %v (%d bytes): want it complete", k, p, err, len(got))
					return
				}
			}
		}()
	}
	wg.Wait()
	ents, _ := os.ReadDir(e.sha256Dir())
	for _, ent := range ents {
		if !isModuleName(ent.Name()) {
			t.Errorf("left behind: %s", ent.Name())
		}
	}
}
