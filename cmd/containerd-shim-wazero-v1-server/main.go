// Command containerd-shim-wazero-v1-server is the shim's server: the task service containerd talks
// to over ttrpc for io.containerd.wazero.v1, which runs WASI preview 1 modules with wazero. The
// entry binary containerd executes (containerd-shim-wazero-v1, package shimentry) starts it, and
// hands it the actions it does not answer itself (a `delete` with something to clean up, -v,
// -info). Started with "runner" as its first argument it is the per-container runner process
// instead (when no runner binary was built with it), with "fill-cache" a background compile into
// the node's compilation cache (see package engine). Run as the runtime itself, it answers
// `start` and `delete` on its own too.
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
