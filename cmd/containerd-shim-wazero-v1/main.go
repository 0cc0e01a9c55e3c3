// Command containerd-shim-wazero-v1 is the containerd runtime shim io.containerd.wazero.v1, the
// binary containerd executes: a lean entry (package shimentry) that answers the `start` and
// `delete` actions containerd runs for every task without initialising containerd's, gRPC's or
// wazero's packages, and hands everything else to containerd-shim-wazero-v1-server beside it (the
// task server, runners, cache fillers).
package main

import (
	"os"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/shimentry"
)

func main() { os.Exit(shimentry.Main()) }
