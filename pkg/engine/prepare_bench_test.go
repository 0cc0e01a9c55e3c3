package engine

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// benchModule is the absolute path of testdata's module name; the benchmark is skipped when it
// has not been built.
func benchModule(b *testing.B, name string) string {
	path, err := filepath.Abs(filepath.Join(testdataDir, "build", name))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		b.Skipf("%s missing (make testdata)", path)
	}
	return path
}

// BenchmarkPrepareWarm is a runner's Prepare of a module already in the compilation cache, with one
// P as in a runner. The cache is $WZ_BENCH_CACHE when set (kept between runs), else a new one
// that the first Prepare fills. docs/PERFORMANCE.md profiles it with a cache filled beforehand, so
// that no compile is in the profile:
//
//	WZ_BENCH_CACHE=/tmp/wzcache go test -run XXX -bench PrepareWarm/hello-go -benchtime 1x ./pkg/engine
//	WZ_BENCH_CACHE=/tmp/wzcache go test -run XXX -bench PrepareWarm/hello-go -benchtime 100x \
//	    -cpuprofile /tmp/prepare.prof -o /tmp/engine.test ./pkg/engine
//	go tool pprof -top -cum /tmp/engine.test /tmp/prepare.prof
func BenchmarkPrepareWarm(b *testing.B) {
	for _, name := range []string{"hello.wasm", "testprog.wasm", "hello-go.wasm"} {
		b.Run(name[:len(name)-len(".wasm")], func(b *testing.B) {
			path := benchModule(b, name)
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
			cache := os.Getenv("WZ_BENCH_CACHE")
			if cache == "" {
				cache = filepath.Join(b.TempDir(), "cache")
			}
			cfg := &Config{
				ID: b.Name(), Module: oci.Module{GuestPath: "/" + name, HostPath: path}, Args: []string{name},
				Rootfs: b.TempDir(), MemoryPages: oci.MaxPages, NoIsolation: true,
				CacheDir: cache,
			}
			ctx := context.Background()
			prepare := func() *Prepared {
				p, err := Prepare(ctx, cfg)
				if err != nil {
					b.Fatal(err)
				}
				p.Runtime.Close(ctx)
				return p
			}
			prepare() // fills the cache
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if p := prepare(); !p.CacheHit {
					b.Fatal("cache miss")
				}
			}
		})
	}
}

// prepareOnceArg makes the test binary (TestMain) run one Prepare of the module and cache in
// its next two arguments and print its wall time and page faults: BenchmarkPrepareFresh's child.
// A fourth argument "small-pages" makes it call Prepare without prepareRunner's huge pages.
const prepareOnceArg = "prepare-once"

// prepareOnce is the child of BenchmarkPrepareFresh: one Prepare in this new process, as a runner
// does it (prepareRunner, one P), or without huge pages. It prints "µs faults hit" on stdout.
func prepareOnce(module, cache string, smallPages bool) int {
	runtime.GOMAXPROCS(1)
	cfg := &Config{
		ID: "prepare-once", Module: oci.Module{GuestPath: "/" + filepath.Base(module), HostPath: module},
		Args: []string{filepath.Base(module)}, Rootfs: os.TempDir(), MemoryPages: oci.MaxPages, NoIsolation: true,
		CacheDir: cache,
	}
	prepare := prepareRunner
	if smallPages {
		prepare = Prepare
	}
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	start := time.Now()
	p, err := prepare(context.Background(), cfg)
	took := time.Since(start)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("%d %d %v\n", took.Microseconds(), after.Minflt-before.Minflt, p.CacheHit)
	return 0
}

// BenchmarkPrepareFresh is a runner's Prepare of a module already in the compilation cache,
// each in a process of its own, as a runner does it: unlike BenchmarkPrepareWarm, every page
// that Prepare touches (the machine code wazero copies out of the cache, its decoding's heap,
// the module's bytes) is fresh to the process. Each op is two such processes in turn: the
// runner's Prepare (prepareRunner, with huge pages for its heap: hugepages.go) and a plain
// Prepare with small pages, so that the two are measured side by side, interleaved. It reports
// the median Prepare of each (ms/prepare, small-ms/prepare) and the process's minor page faults
// during it (faults/prepare, small-faults/prepare); ns/op includes the two process starts.
//
//	go test -run XXX -bench PrepareFresh/hello-go -benchtime 10x ./pkg/engine
func BenchmarkPrepareFresh(b *testing.B) {
	for _, name := range []string{"hello.wasm", "hello-go.wasm"} {
		b.Run(name[:len(name)-len(".wasm")], func(b *testing.B) {
			path := benchModule(b, name)
			cache := filepath.Join(b.TempDir(), "cache")
			once := func(small bool) (ms float64, faults int64, hit bool) {
				args := []string{prepareOnceArg, path, cache}
				if small {
					args = append(args, "small-pages")
				}
				out, err := exec.Command(os.Args[0], args...).Output()
				if err != nil {
					b.Fatalf("%s: %v", prepareOnceArg, err)
				}
				var us int64
				if _, err := fmt.Sscan(string(out), &us, &faults, &hit); err != nil {
					b.Fatalf("%s printed %q: %v", prepareOnceArg, out, err)
				}
				return float64(us) / 1000, faults, hit
			}
			once(false) // fills the cache
			b.ResetTimer()
			var ms [2][]float64
			var faults [2]int64
			for i := 0; i < b.N; i++ {
				for _, small := range []bool{i%2 == 1, i%2 == 0} { // each first in every other op
					took, f, hit := once(small)
					if !hit {
						b.Fatal("cache miss")
					}
					v := 0
					if small {
						v = 1
					}
					ms[v] = append(ms[v], took)
					faults[v] += f
				}
			}
			for v, unit := range []string{"", "small-"} {
				sort.Float64s(ms[v])
				b.ReportMetric(ms[v][len(ms[v])/2], unit+"ms/prepare")
				b.ReportMetric(float64(faults[v])/float64(b.N), unit+"faults/prepare")
			}
		})
	}
}

// BenchmarkFreshPages calibrates the machine rather than the project: the cost of memory a
// process touches for the first time, which BenchmarkPrepareFresh pays for every page wazero
// copies the cached machine code into. Each op maps 8 MiB of anonymous memory, fills it with
// read(2) from a file in the page cache and checksums it, as wazero loads a cache entry;
// "reused" does the same into memory the process has already touched. ns/op over 2048 pages.
func BenchmarkFreshPages(b *testing.B) {
	const size = 8 << 20
	src := filepath.Join(b.TempDir(), "src")
	if err := os.WriteFile(src, bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8}, size/8), 0o600); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	table := crc32.MakeTable(crc32.Castagnoli)
	load := func(b *testing.B, buf []byte) {
		if _, err := f.ReadAt(buf, 0); err != nil {
			b.Fatal(err)
		}
		_ = crc32.Checksum(buf, table)
	}
	b.Run("fresh", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			buf, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
			if err != nil {
				b.Fatal(err)
			}
			load(b, buf)
			_ = unix.Munmap(buf)
		}
	})
	b.Run("reused", func(b *testing.B) {
		buf, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			b.Fatal(err)
		}
		defer unix.Munmap(buf)
		load(b, buf)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			load(b, buf)
		}
	})
}
