package main

// Before and after: with -before-shim-exe (scripts/bench.sh's BENCH_BASELINE_SHIM, or
// BENCH_BASELINE_REF, which builds one from a commit), B1, B2, B3 and B4 run a second, earlier build
// of the wazero shim beside the current one and the baseline, in the same rounds: each round runs the
// two wazero builds (their order alternating from round to round) and then the baseline; B7 runs
// each wazero variant through the earlier build right before the current one. The
// earlier build is registered under its absolute path as the runtime name (containerd runs an
// absolute runtime name as the shim binary), from a directory of its own, so that each build finds
// its own runner binary beside it (pkg/shim/runnerexe.go: by name, paired by the build stamp).
// Its rows come before the current build's, whose row gets the after/before ratio.

import (
	"fmt"
	"io"
	"strings"
)

// wasmRuntimes are the wazero runtimes each round of B1-B3 runs: the current build, then the
// earlier one when there is one.
func (b *bencher) wasmRuntimes() []string {
	if b.c.beforeShimExe == "" {
		return []string{wasmRuntime}
	}
	return []string{wasmRuntime, b.c.beforeShimExe}
}

// rotate returns rts in the order round i runs them: shifted by one each round, so that neither
// build always runs first (right after the runc baseline's run) or last.
func rotate(rts []string, i int) []string {
	if len(rts) < 2 {
		return rts
	}
	k := i % len(rts)
	return append(append([]string(nil), rts[k:]...), rts[:k]...)
}

// beforeTag is what follows the runtime's name in a row: the earlier build's label.
func (b *bencher) beforeTag(rt string) string {
	if rt == b.c.beforeShimExe && b.c.beforeLabel != "" {
		return " (" + b.c.beforeLabel + ")"
	}
	return ""
}

// wasmLogName names a wazero runtime or variant in progress lines ("wasm", as before, for the
// current build).
func wasmLogName(rt string) string {
	switch rt {
	case wasmRuntime:
		return "wasm"
	case sharedVariant:
		return "wasm-shared"
	}
	return "wasm-before"
}

// addWasmRows adds the rows of the wazero runtimes' samples (w, by runtime or variant) against
// base: the earlier build's first, then the current build's, which carries the before/after ratio,
// then the shared-server variant's when w has samples of it (shared.go).
func (b *bencher) addWasmRows(rep *report, id string, what func(rt string) string, unit string, w map[string][]float64, base *row, higher bool) {
	var before *row
	if b.c.beforeShimExe != "" {
		before = rep.add(id, what(b.c.beforeShimExe), unit, w[b.c.beforeShimExe], base, higher)
	}
	rep.add(id, what(wasmRuntime), unit, w[wasmRuntime], base, higher).before = before
	if len(w[sharedVariant]) > 0 {
		rep.add(id, what(sharedVariant), unit, w[sharedVariant], base, higher)
	}
}

// phaseSets orders the phases of the wazero runtimes (w, by runtime or variant) and of runc for
// phaseTable (earlier build, current build, shared-server variant when w has it, runc) and names
// them: names("C hello", "native hello") is "wazero C hello vs runc native hello" without an
// earlier build or the shared-server variant.
func (b *bencher) phaseSets(w map[string][]phases, r []phases) (func(wasmWhat, runcWhat string) string, [][]phases) {
	rts := []string{wasmRuntime}
	if b.c.beforeShimExe != "" {
		rts = []string{b.c.beforeShimExe, wasmRuntime}
	}
	if len(w[sharedVariant]) > 0 {
		rts = append(rts, sharedVariant)
	}
	var sets [][]phases
	for _, rt := range rts {
		sets = append(sets, w[rt])
	}
	sets = append(sets, r)
	names := func(wasmWhat, runcWhat string) string {
		with := func(name, what string) string {
			if what == "" {
				return name
			}
			return name + " " + what
		}
		var n []string
		for _, rt := range rts {
			n = append(n, with(rtName(rt)+b.beforeTag(rt), wasmWhat))
		}
		return strings.Join(append(n, with("runc", runcWhat)), " vs ")
	}
	return names, sets
}

// hasBefore reports whether any row has an earlier build's measurement (the table then has a
// before → after column).
func (r *report) hasBefore() bool {
	for _, x := range r.rows {
		if x.before != nil {
			return true
		}
	}
	return false
}

// beforeAfter is a row's before → after cell: the current build's median over the earlier
// build's, with the change in percent.
func beforeAfter(r *row) string {
	if r.before == nil {
		return ""
	}
	x := median(r.samples) / median(r.before.samples)
	s := fmt.Sprintf("%s → %s: %.2f× (%+.1f%%)", fmtNum(median(r.before.samples)), fmtNum(median(r.samples)), x, 100*(x-1))
	if r.higherBetter {
		s += " (higher is better)"
	}
	return s
}

// describeBefore adds to a benchmark's description what the earlier build's rows are.
func describeBefore(w io.Writer, c *config, name string) {
	if c.beforeShimExe == "" {
		return
	}
	switch name {
	case "B1", "B2", "B3":
		fmt.Fprintf(w, "  **Before and after**: the rows `wazero-before%s` are the same runs through an earlier build\n"+
			"  of the shim (its own runner binary beside it), registered with the daemon under its absolute path as\n"+
			"  the runtime name; every round runs both builds (their order alternating) and then runc, so they share\n"+
			"  the same load. The last column is the current build's median over the earlier build's.\n", tagOf(c))
	case "B4":
		fmt.Fprintf(w, "  **Before and after**: the rows `wazero-before%s` are the same runs through an earlier build\n"+
			"  of the shim, registered under its absolute path as the runtime name; every round runs both builds\n"+
			"  (their order alternating) and then `wazero run`. The last column is the current build's median over\n"+
			"  the earlier build's.\n", tagOf(c))
	case "B7":
		fmt.Fprintf(w, "  **Before and after**: the variants `wasm-before` and `wagi-before` (rows `wazero-before%s`) are\n"+
			"  the same servers through an earlier build of the shim, registered under its absolute path as the\n"+
			"  runtime name, each run right before the current build's in every round. The last column is the\n"+
			"  current build's median over the earlier build's.\n", tagOf(c))
	}
}

func tagOf(c *config) string {
	if c.beforeLabel == "" {
		return ""
	}
	return " (" + c.beforeLabel + ")"
}

// partialKey names a partial run's section (mergePartial): a before/after run, and a run with the
// shared-server variant, have a section of their own, apart from a plain run of the same selection.
func partialKey(c *config, sel []string) string {
	k := strings.Join(sel, ",")
	if c.beforeShimExe != "" {
		k += " before/after"
	}
	if c.sharedVariant {
		k += " shared"
	}
	return k
}

// againstBefore qualifies "another partial run of BENCH_ONLY=..." for a before/after section or
// one with the shared-server variant.
func againstBefore(c *config) string {
	var with []string
	if c.beforeShimExe != "" {
		with = append(with, "an earlier shim build")
	}
	if c.sharedVariant {
		with = append(with, "BENCH_SHARED=1")
	}
	if len(with) == 0 {
		return ""
	}
	return " with " + strings.Join(with, " and ")
}
