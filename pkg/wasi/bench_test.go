package wasi

import (
	"context"
	_ "embed"
	"io"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// callsWasm loops over WASI calls: fdstat(n) calls fd_fdstat_get(1) n times, write(n)
// fd_write of one byte to stdout n times (testdata/calls.wat).
//
//go:embed testdata/calls.wasm
var callsWasm []byte

// BenchmarkCalls measures one WASI call through wazero's own module and through this package's
// (the descriptor table in front of it): the per-call cost of the layer.
func BenchmarkCalls(b *testing.B) {
	for _, fn := range []string{"fdstat", "write"} {
		for _, layer := range []string{"wazero", "pkg-wasi"} {
			b.Run(fn+"/"+layer, func(b *testing.B) {
				ctx := context.Background()
				r := wazero.NewRuntime(ctx)
				defer r.Close(ctx)
				if layer == "wazero" {
					wasi_snapshot_preview1.MustInstantiate(ctx, r)
				} else if _, err := Instantiate(ctx, r); err != nil {
					b.Fatal(err)
				}
				ictx := NewContext(ctx, Options{})
				mod, err := r.InstantiateWithConfig(ictx, callsWasm, wazero.NewModuleConfig().WithStdout(io.Discard))
				if err != nil {
					b.Fatal(err)
				}
				run := mod.ExportedFunction(fn)
				call(b, ictx, run, 1) // the table's first use reads wazero's descriptors
				b.ResetTimer()
				call(b, ictx, run, uint64(b.N))
			})
		}
	}
}

func call(b *testing.B, ctx context.Context, f api.Function, n uint64) {
	if _, err := f.Call(ctx, n); err != nil {
		b.Fatal(err)
	}
}
