// Command containerd-shim-wazero-v1 is the containerd runtime shim io.containerd.wazero.v1: it runs
// WASI preview 1 modules with wazero. Started with "runner" as its first argument it is the
// per-container runner process instead, with "fill-cache" a background compile into the node's
// compilation cache (see package engine).
package main

import (
	"context"
	"os"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/engine"
	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/shim"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case engine.RunnerArg:
			os.Exit(engine.RunnerMain())
		case engine.FillArg:
			os.Exit(engine.FillMain())
		}
	}
	shim.Main(context.Background())
}
