package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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
	filler, err := FillCache(self, cfg, f, FillOptions{})
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

// orderReader records when the module is read.
type orderReader struct {
	r      io.Reader
	events *[]string
}

func (o orderReader) Read(p []byte) (int, error) {
	*o.events = append(*o.events, "read")
	return o.r.Read(p)
}

func (o orderReader) Close() error {
	*o.events = append(*o.events, "close")
	return nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// The filler takes its slot before it reads the module, and holds it until the compile is done.
func TestFillReadsAndClosesBeforeSlot(t *testing.T) {
	cfg := testConfig(t, "hello.wasm")
	cfg.CacheDir = t.TempDir()
	code, err := os.ReadFile(cfg.Module.HostPath)
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	req := &fillRequest{Config: *cfg, Limits: FillLimits{MaxModuleBytes: 64 << 20}}
	res := fill(context.Background(), req, orderReader{bytes.NewReader(code), &events}, int64(len(code)), func() io.Closer {
		events = append(events, "slot")
		return closerFunc(func() error { events = append(events, "release"); return nil })
	})
	if res.Error != "" || res.CacheHit {
		t.Fatalf("fill: %+v, want a compile", res)
	}
	// The module (a file in the container's rootfs) is read and closed before the filler
	// queues for a slot; the compile happens while the slot is held.
	if len(events) < 4 || events[0] != "read" || events[len(events)-3] != "close" || events[len(events)-2] != "slot" || events[len(events)-1] != "release" {
		t.Errorf("events %v, want the reads, the close, then the slot and its release", events)
	}
	if n := countEntries(cfg.CacheDir); n == 0 {
		t.Error("no cache entry")
	}
}

// A module over the cap is not compiled: refused by its size before a slot is taken, or, when
// its size is not known (a pipe) or lied, once more than the cap has been read.
func TestFillTooBig(t *testing.T) {
	cfg := testConfig(t, "hello.wasm")
	cfg.CacheDir = t.TempDir()
	code, err := os.ReadFile(cfg.Module.HostPath)
	if err != nil {
		t.Fatal(err)
	}
	max := int64(len(code)) - 1
	req := &fillRequest{Config: *cfg, Limits: FillLimits{MaxModuleBytes: max}}
	for _, size := range []int64{int64(len(code)), -1, 100} {
		var events []string
		res := fill(context.Background(), req, orderReader{bytes.NewReader(code), &events}, size, func() io.Closer {
			events = append(events, "slot")
			return nil
		})
		if !res.TooBig || !strings.Contains(res.Error, FillMaxModuleBytesEnv) {
			t.Errorf("size %d: %+v, want TooBig naming %s", size, res, FillMaxModuleBytesEnv)
		}
		if size > max && len(events) != 0 {
			t.Errorf("size %d: %v, want neither a slot nor a read", size, events)
		}
	}
	if n := countEntries(cfg.CacheDir); n != 0 {
		t.Errorf("%d cache entries for a module over the cap", n)
	}

	// FillCache starts no filler for a module file over the cap.
	f, err := os.Open(cfg.Module.HostPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := FillCache("/nonexistent", cfg, f, FillOptions{Limits: FillLimits{MaxModuleBytes: max}}); !errors.Is(err, ErrFillTooBig) {
		t.Errorf("FillCache: %v, want ErrFillTooBig", err)
	}
}

// pending is how many bytes wait in the pipe of r.
func pending(t *testing.T, r *os.File) int {
	t.Helper()
	n, err := unix.IoctlGetInt(int(r.Fd()), unix.TIOCINQ) // FIONREAD
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// holdSlots takes every fill slot of cacheDir until the returned release.
func holdSlots(t *testing.T, cacheDir string) (release func()) {
	t.Helper()
	var held []*os.File
	for range fillSlots {
		s := fillSlot(cacheDir, time.Now())
		if s == nil {
			t.Fatal("no free fill slot")
		}
		held = append(held, s)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			for _, s := range held {
				s.Close()
			}
		})
	}
	t.Cleanup(release)
	return release
}

// The filler process, its module a pipe whose unread bytes the test sees: it reads nothing before
// its go byte (Started returned) and sets oom_score_adj 1000 first; while it waits for a slot it
// has read its module and closed the descriptor (a rootfs it held would not unmount) but compiled
// nothing; once it has a slot it compiles.
func TestFillerOrder(t *testing.T) {
	cfg := testConfig(t, "hello.wasm")
	cfg.CacheDir = t.TempDir()
	code, err := os.ReadFile(cfg.Module.HostPath)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	if _, err := unix.FcntlInt(pw.Fd(), unix.F_SETPIPE_SZ, 1<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := pw.Write(code); err != nil {
		t.Fatal(err)
	}
	pw.Close() // the filler reads to EOF
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	var release func()
	filler, err := FillCache(self, cfg, pr, FillOptions{
		Limits: FillLimits{MaxModuleBytes: 64 << 20},
		Started: func(pid int) error {
			// No slot is held: a filler that did not wait for its go byte would read now.
			time.Sleep(500 * time.Millisecond)
			if n := pending(t, pr); n != len(code) {
				t.Errorf("the filler read %d bytes of its module before its go byte", len(code)-n)
			}
			release = holdSlots(t, cfg.CacheDir)
			return nil
		},
	})
	if err != nil {
		t.Fatalf("FillCache: %v", err)
	}
	pid := filler.Cmd.Process.Pid
	defer func() { _ = filler.Cmd.Process.Kill(); _ = filler.Cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if strings.Contains(string(env), fillStageEnv) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the filler did not execute itself again on its go byte: environ %q", env)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // at its slot, polling
	if adj, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid)); err != nil || strings.TrimSpace(string(adj)) != strconv.Itoa(fillOOMScoreAdj) {
		t.Errorf("oom_score_adj %q (%v), want %d", adj, err, fillOOMScoreAdj)
	}
	if n := pending(t, pr); n != 0 {
		t.Errorf("%d bytes of the module unread while the filler waits for a slot", n)
	}
	if _, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/3", pid)); err == nil {
		t.Error("the filler still holds its module's descriptor while it waits for a slot")
	}
	if n := countEntries(cfg.CacheDir); n != 0 {
		t.Fatalf("%d cache entries before the filler had a slot: it compiled without one", n)
	}
	release()
	res, err := filler.Result()
	if err != nil || res.CacheHit {
		t.Fatalf("filler: %+v %v, want a compile", res, err)
	}
	if n := countEntries(cfg.CacheDir); n == 0 {
		t.Error("no cache entry after the compile")
	}
}

func TestFillLimitsFromEnv(t *testing.T) {
	for _, tc := range []struct {
		mem, cpus, max string
		want           FillLimits
		bad            bool
	}{
		{want: FillLimits{MemoryAuto: true, CPUs: 1, MaxModuleBytes: 64 << 20}},
		{mem: "536870912", cpus: "2.5", max: "0", want: FillLimits{MemoryBytes: 512 << 20, CPUs: 2.5}},
		{mem: "0", cpus: "0", max: " 1024 ", want: FillLimits{MaxModuleBytes: 1024}},
		{mem: "1G", cpus: "one", max: "-1", want: FillLimits{MemoryAuto: true, CPUs: 1, MaxModuleBytes: 64 << 20}, bad: true},
		{cpus: "0.001", want: FillLimits{MemoryAuto: true, CPUs: 0.01, MaxModuleBytes: 64 << 20}, bad: true},
		{cpus: "NaN", want: FillLimits{MemoryAuto: true, CPUs: 1, MaxModuleBytes: 64 << 20}, bad: true},
	} {
		t.Setenv(FillMemoryBytesEnv, tc.mem)
		t.Setenv(FillCPUsEnv, tc.cpus)
		t.Setenv(FillMaxModuleBytesEnv, tc.max)
		got, err := FillLimitsFromEnv()
		if got != tc.want || (err != nil) != tc.bad {
			t.Errorf("%q %q %q: %+v, %v; want %+v, error %v", tc.mem, tc.cpus, tc.max, got, err, tc.want, tc.bad)
		}
	}
	for size, want := range map[int64]int64{
		-1:        2 << 30,
		0:         256 << 20,
		2_624_311: 256<<20 + 32*2_624_311,
		56 << 20:  2 << 30,
		64 << 20:  2 << 30,
	} {
		if got := (FillLimits{MemoryAuto: true}).ForModule(size); got.MemoryBytes != want || got.MemoryAuto {
			t.Errorf("ForModule(%d) = %+v, want MemoryBytes %d", size, got, want)
		}
	}
	if got := (FillLimits{MemoryBytes: 5}).ForModule(1 << 30); got.MemoryBytes != 5 {
		t.Errorf("ForModule changed a set limit: %+v", got)
	}
	if q := (FillLimits{CPUs: 1}).CPUQuota(); q != 100000 {
		t.Errorf("CPUQuota of 1 CPU = %d, want 100000", q)
	}
	if q := (FillLimits{}).CPUQuota(); q != 0 {
		t.Errorf("CPUQuota of no limit = %d", q)
	}
}
