package main

// The shared-server variant: with -shared-variant (scripts/bench.sh's BENCH_SHARED=1), B1, B2 and B3
// measure a third wazero variant, wazero-shared, in the same rounds as wazero (and wazero-before):
// the same current shim build (runtime io.containerd.wazero.v1), with the annotation
// wazero.dev/shared-server=30s in the container's spec, which asks the shim to serve
// the task from one long-lived server per containerd namespace that outlives its last task by 30 s
// (instead of a server process per task). ctr runs pass it as `ctr run --annotation KEY=VALUE`, the
// Go client as oci.WithAnnotations.
//
// A variant is named by a key, which is what the rounds, the sample maps and rtName use: the
// runtime name itself for a shim build (wasmRuntime, or -before-shim-exe's absolute path), and
// sharedVariant for the shared-server variant; runtimeOf and variantAnnotations turn a key into what
// containerd is given. B4 and B7 do not run it (they measure a guest's speed, not a task's start).
//
// B5 and B6 (cri.go) run it as a handler variant, hShared: CRI handler wazero, the same annotation
// in the PodSandboxConfig's "annotations", which the daemon's pod_annotations = ["wazero.dev/*"]
// passes to the runtime for the pod's sandbox and containers.

import (
	"fmt"
	"io"
	"log"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/containerd/containerd/v2/pkg/oci"
)

const (
	// sharedVariant is the key and report label of the shared-server variant.
	sharedVariant = "wazero-shared"
	// sharedServerAnnotation and sharedServerLinger: the annotation the variant adds to every
	// container's spec, and its value (how long the shared server stays after its last task).
	sharedServerAnnotation = "wazero.dev/shared-server"
	sharedServerLinger     = 30 * time.Second
	// sharedGoneLimit bounds B3's wait for a lingering shared server to exit (its linger and a
	// margin); past it B3 measures anyway and says so in a note.
	sharedGoneLimit = sharedServerLinger + 30*time.Second
)

// wasmVariants are the wazero variants each round of B1-B3 runs: the shim builds (wasmRuntimes),
// then, with -shared-variant, the shared-server variant.
func (b *bencher) wasmVariants() []string {
	v := b.wasmRuntimes()
	if b.c.sharedVariant {
		v = append(v, sharedVariant)
	}
	return v
}

// runtimeOf is the containerd runtime name of variant key v: the current build's for the
// shared-server variant, v itself (a runtime name) otherwise.
func runtimeOf(v string) string {
	if v == sharedVariant {
		return wasmRuntime
	}
	return v
}

// variantAnnotations are the annotations variant v adds to a container's spec (nil for none).
func variantAnnotations(v string) map[string]string {
	if v != sharedVariant {
		return nil
	}
	return map[string]string{sharedServerAnnotation: sharedLingerValue()}
}

// sharedLingerValue is the annotation's value: sharedServerLinger as a duration ("30s").
func sharedLingerValue() string {
	return strconv.Itoa(int(sharedServerLinger/time.Second)) + "s"
}

// variantSpecOpts are the spec options variant v adds through the Go client (B2, B3).
func variantSpecOpts(v string) []oci.SpecOpts {
	a := variantAnnotations(v)
	if a == nil {
		return nil
	}
	return []oci.SpecOpts{oci.WithAnnotations(a)}
}

// ctrRunArgs is the command line (after the ctr binary) of one `ctr run --rm` of variant (or
// runtime) rt, "" for the daemon's default runtime: its runtime, the variant's annotations, env
// (KEY=VALUE), then image, container id and args.
func ctrRunArgs(c *config, rt, image, id string, env, args []string) []string {
	a := []string{"--address", c.address, "-n", c.ns, "run", "--rm", "--fifo-dir", c.fifoDir}
	if rt != "" {
		a = append(a, "--runtime", runtimeOf(rt))
	}
	ann := variantAnnotations(rt)
	for _, k := range slices.Sorted(maps.Keys(ann)) {
		a = append(a, "--annotation", k+"="+ann[k])
	}
	for _, e := range env {
		a = append(a, "--env", e)
	}
	a = append(a, image, id)
	return append(a, args...)
}

// b3Order is the order round i of B3 runs the wazero variants in: the shim builds rotating, then
// the shared-server variant, always last, right before runc's batch. Its server lingers 30 s after
// the batch; runc's batch does not map the wazero server binary, so only the next round's wazero
// batch waits for it to exit (waitSharedGone), and that wait is shortened by runc's batch.
func (b *bencher) b3Order(i int) []string {
	o := rotate(b.wasmRuntimes(), i)
	if b.c.sharedVariant {
		o = append(o, sharedVariant)
	}
	return o
}

// waitSharedGone waits, before a batch of the current build's default variant in B3 (and before
// B6), until no process runs the bench's copy of the current shim: every container of the
// previous batches is deleted by then, so such a process is the shared server lingering after its
// last task, or a per-task server still shutting down. A lingering server maps the same server
// binary as the batch's servers, so its presence would lower their PSS (shared pages are split
// among the processes mapping them). It returns how long it waited, and whether the server was
// gone.
func (b *bencher) waitSharedGone() (time.Duration, bool) {
	began := time.Now()
	for {
		if len(b.currentShimPids()) == 0 {
			return time.Since(began), true
		}
		if time.Since(began) > sharedGoneLimit {
			return time.Since(began), false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sharedGoneBeforeB6 waits for a shared server left by B1-B3 or B5 to exit before B6, whose wazero
// batch counts every wazero shim serving the daemon (its pods' memory, and the processes left after
// its teardown); its wazero-shared batch counts only the shims of its pods' tasks, but a lingering
// server would still share the server binary's pages with them.
func (b *bencher) sharedGoneBeforeB6(rep *report) {
	d, gone := b.waitSharedGone()
	if !gone {
		rep.note("B6: a process of the current shim (pids %v) still ran %.0f s after the benchmarks before it, beyond the `%s` server's %s linger; B6's wazero batch counts it with its pods",
			b.currentShimPids(), d.Seconds(), sharedVariant, sharedLingerValue())
	} else if d > time.Second {
		log.Printf("B6: waited %.1f s for the %s server to exit", d.Seconds(), sharedVariant)
	}
}

// currentShimPids are the processes running the bench's private copy of the current shim or its
// server binary (-shim-exe): only this run's daemon runs them.
func (b *bencher) currentShimPids() []int {
	var pids []int
	_, exe, _ := procTable()
	for pid, x := range exe {
		if isShimExe(x, b.c.shimExe) {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}

// describeShared adds to a benchmark's description what the shared-server rows are.
func describeShared(w io.Writer, c *config, name string) {
	if !c.sharedVariant {
		return
	}
	switch name {
	case "B1", "B2":
		fmt.Fprintf(w, "  **Shared server**: the rows `%s` are the same runs through the current shim with the\n"+
			"  annotation `%s=%s` in the container's spec (B1: `ctr run --annotation`; B2: the\n"+
			"  Go client's oci.WithAnnotations): one server per containerd namespace serves these tasks and stays\n"+
			"  %s after its last one, so a task does not pay for a server process's start. Every round runs it\n"+
			"  beside the other wazero rows (their order rotating), then runc; the untimed warm-up run starts it.\n",
			sharedVariant, sharedServerAnnotation, sharedLingerValue(), sharedLingerValue())
	case "B3":
		fmt.Fprintf(w, "  **Shared server**: the rows `%s` are the same idle containers with the annotation\n"+
			"  `%s=%s`: one server serves all N, and counts once; the `wazero` rows never count\n"+
			"  it (their containers' own servers are their ancestors, the shared server is not). Each round runs\n"+
			"  the shared variant last, before runc; its server lingers %s after its last container, and the next\n"+
			"  `wazero` batch waits for it to exit (a process mapping the same server binary would lower that\n"+
			"  batch's PSS). A note says if the shared variant's containers were not served by one server.\n",
			sharedVariant, sharedServerAnnotation, sharedLingerValue(), sharedLingerValue())
	case "B5":
		fmt.Fprintf(w, "  **Shared server**: the row `%s` is the same pod through handler `wazero` with the pod\n"+
			"  annotation `%s=%s` (crictl runp's JSON `annotations`; the daemon's\n"+
			"  `pod_annotations = [\"wazero.dev/*\"]` passes it on): one server per containerd namespace serves the\n"+
			"  pod's sandbox and container and stays %s after its last task, so a pod does not pay for a server\n"+
			"  process's start. Every round runs wazero, %s, then runc; the untimed warm-up pod starts the server.\n",
			sharedVariant, sharedServerAnnotation, sharedLingerValue(), sharedLingerValue(), sharedVariant)
	case "B6":
		fmt.Fprintf(w, "  **Shared server**: a batch `%s` follows the wazero one (before runc's): the same pods with the\n"+
			"  pod annotation `%s=%s`. Its PSS starts from the pods' task pids (`ctr task ls`): the\n"+
			"  server they run under counts once, with every runner; a server left by an earlier batch or benchmark\n"+
			"  does not count (B6 waits for one to exit before it starts, and for its own after teardown). A note\n"+
			"  says whether all the pods ran under one server and whether it left within its linger.\n",
			sharedVariant, sharedServerAnnotation, sharedLingerValue())
	}
}
