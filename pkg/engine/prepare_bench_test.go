package engine

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

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
			path, err := filepath.Abs(filepath.Join(testdataDir, "build", name))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := os.Stat(path); err != nil {
				b.Skipf("%s missing (make testdata)", path)
			}
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
