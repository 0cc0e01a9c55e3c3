// Command containerd-shim-wazero-v1 is the containerd runtime shim io.containerd.wazero.v1: it runs
// WASI preview 1 modules with wazero. Started with "runner" as its first argument it is the
// per-container runner process instead (see package engine).
package main

import (
	"context"
	"os"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/engine"
	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/shim"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == engine.RunnerArg {
		os.Exit(engine.RunnerMain())
	}
	shim.Main(context.Background())
}
