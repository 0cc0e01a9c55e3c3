// Command containerd-shim-wazero-v1-runner is the per-container runner process of
// containerd-shim-wazero-v1 (see package engine), installed beside the shim. The shim runs it as
// "containerd-shim-wazero-v1-runner runner ID" when it was built together with the shim (same
// engine.BuildStamp), and otherwise runs its own binary as the runner.
//
// It links only the engine (wazero and the OCI types), not containerd's shim libraries: every
// package linked into a Go binary is initialised at start whatever the arguments, so a separate
// binary starts faster and uses less memory than the shim binary in runner mode (RATIONALE.md).
package main

import (
	"fmt"
	"os"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/engine"
)

func main() {
	// The shim finds this string in the binary's read-only data to tell that the runner was built
	// with it; printing it here also keeps the linker from dropping it.
	if len(os.Args) == 2 && os.Args[1] == "-build-stamp" {
		fmt.Println(engine.BuildStamp)
		return
	}
	if len(os.Args) < 2 || os.Args[1] != engine.RunnerArg {
		fmt.Fprintf(os.Stderr, "%s: the runner of containerd-shim-wazero-v1, started by the shim; not a command to run by hand\n", engine.RunnerBinary)
		os.Exit(2)
	}
	os.Exit(engine.RunnerMain())
}
