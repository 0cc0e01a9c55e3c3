package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const sharedArg = "wazero.dev/shared-server=30s"

func TestSharedVariants(t *testing.T) {
	off := &bencher{c: &config{}}
	if got := off.wasmVariants(); !slices.Equal(got, []string{wasmRuntime}) {
		t.Errorf("without -shared-variant: %v", got)
	}
	before := "/tmp/x/before/containerd-shim-wazero-v1"
	on := &bencher{c: &config{sharedVariant: true, beforeShimExe: before}}
	if got := on.wasmVariants(); !slices.Equal(got, []string{wasmRuntime, before, sharedVariant}) {
		t.Errorf("with both: %v", got)
	}
	// B4 and B7 measure shim builds only.
	if got := on.wasmRuntimes(); slices.Contains(got, sharedVariant) {
		t.Errorf("wasmRuntimes has the shared variant: %v", got)
	}
	// B3: the builds rotate, the shared variant is always last (right before runc).
	for i, want := range [][]string{{wasmRuntime, before, sharedVariant}, {before, wasmRuntime, sharedVariant}} {
		if got := on.b3Order(i); !slices.Equal(got, want) {
			t.Errorf("b3Order(%d) = %v, want %v", i, got, want)
		}
	}
	if rtName(sharedVariant) != "wazero-shared" || wasmLogName(sharedVariant) != "wasm-shared" {
		t.Errorf("names: %q, %q", rtName(sharedVariant), wasmLogName(sharedVariant))
	}
	if runtimeOf(sharedVariant) != wasmRuntime || runtimeOf(wasmRuntime) != wasmRuntime || runtimeOf(before) != before || runtimeOf(runcRuntime) != runcRuntime {
		t.Errorf("runtimeOf: %q %q %q", runtimeOf(sharedVariant), runtimeOf(before), runtimeOf(runcRuntime))
	}
}

func TestCtrRunArgsAnnotation(t *testing.T) {
	c := &config{address: "/run/c.sock", ns: "wzbench", fifoDir: "/tmp/f"}
	for _, rt := range []string{sharedVariant, wasmRuntime, "/tmp/x/before/containerd-shim-wazero-v1", runcRuntime, ""} {
		a := ctrRunArgs(c, rt, "img", "id1", []string{"A=1"}, []string{"/x.wasm", "arg"})
		s := strings.Join(a, " ")
		has := strings.Contains(s, "--annotation "+sharedArg)
		if has != (rt == sharedVariant) {
			t.Errorf("%q: annotation present %v: %s", rt, has, s)
		}
		if rt != "" && !strings.Contains(s, "--runtime "+runtimeOf(rt)+" ") {
			t.Errorf("%q: no --runtime %s: %s", rt, runtimeOf(rt), s)
		}
		if rt == "" && slices.Contains(a, "--runtime") {
			t.Errorf("default runtime given a --runtime: %s", s)
		}
		if !strings.HasSuffix(s, " --env A=1 img id1 /x.wasm arg") {
			t.Errorf("%q: options must precede image and id: %s", rt, s)
		}
	}
	if got := ctrRunArgs(c, sharedVariant, "img", "id1", nil, nil); !slices.Equal(got, []string{"--address", "/run/c.sock", "-n", "wzbench",
		"run", "--rm", "--fifo-dir", "/tmp/f", "--runtime", wasmRuntime, "--annotation", sharedArg, "img", "id1"}) {
		t.Errorf("shared: %q", got)
	}
}

// The Go client's containers (B2, B3) of the shared variant carry the annotation in their spec;
// the others' specs are left alone.
func TestVariantSpecOpts(t *testing.T) {
	for _, rt := range []string{sharedVariant, wasmRuntime, runcRuntime} {
		s := &specs.Spec{Annotations: map[string]string{"keep": "me"}}
		for _, o := range variantSpecOpts(rt) {
			if err := o(context.Background(), nil, &containers.Container{}, s); err != nil {
				t.Fatal(err)
			}
		}
		v, ok := s.Annotations[sharedServerAnnotation]
		if ok != (rt == sharedVariant) || (ok && v != "30s") || s.Annotations["keep"] != "me" {
			t.Errorf("%q: annotations %v", rt, s.Annotations)
		}
	}
}

// The shared variant's row follows the current build's, against the same baseline; B4 (which has
// no samples of it) gets no such row.
func TestSharedRows(t *testing.T) {
	b := &bencher{c: &config{sharedVariant: true}}
	rep := &report{}
	base := rep.add("B1a", "runc", "ms", []float64{100}, nil, false)
	w := map[string][]float64{wasmRuntime: {200}, sharedVariant: {150}}
	b.addWasmRows(rep, "B1a", func(rt string) string { return rtName(rt) }, "ms", w, base, false)
	var out bytes.Buffer
	resultsTable(&out, rep)
	s := out.String()
	if i, j := strings.Index(s, "| wazero |"), strings.Index(s, "| wazero-shared | ms | 1 | 150 | 150 | 150 | 1.50× |"); i < 0 || j < i {
		t.Errorf("table:\n%s", s)
	}
	rep4 := &report{}
	b.addWasmRows(rep4, "B4", func(rt string) string { return rtName(rt) }, "ms", map[string][]float64{wasmRuntime: {1}}, nil, false)
	if len(rep4.rows) != 1 {
		t.Errorf("B4 rows: %d", len(rep4.rows))
	}
	names, sets := b.phaseSets(map[string][]phases{wasmRuntime: {{}}, sharedVariant: {{}}}, nil)
	if got := names("C hello", ""); got != "wazero C hello vs wazero-shared C hello vs runc" || len(sets) != 3 {
		t.Errorf("phaseSets: %q, %d sets", got, len(sets))
	}
	if partialKey(b.c, []string{"B1"}) != "B1 shared" {
		t.Errorf("partialKey = %q", partialKey(b.c, []string{"B1"}))
	}
	if !strings.Contains(settingsLine(b.c, []string{"B1"}), "BENCH_SHARED=1") {
		t.Errorf("settings: %s", settingsLine(b.c, []string{"B1"}))
	}
}

// B3's attribution: each task's shim is its outermost ancestor running the variant's shim, counted
// once however many tasks it serves; a shim serving none of the tasks is not counted.
func TestShimsOf(t *testing.T) {
	shim := "/tmp/wzbench.1/shimbin/containerd-shim-wazero-v1"
	server := "/tmp/wzbench.1/shimbin/containerd-shim-wazero-v1-server"
	runner := "/tmp/wzbench.1/shimbin/containerd-shim-wazero-v1-runner"
	b := &bencher{c: &config{shimExe: shim, runcShimExe: "/usr/bin/containerd-shim-runc-v2"}}
	// 1 init; 10 the shared server with runners 11, 12; 20 a per-task server with runner 21;
	// 30 a lingering server; 40 a server whose runner 41 runs the server binary itself.
	ppid := map[int]int{10: 1, 11: 10, 12: 10, 20: 1, 21: 20, 30: 1, 40: 1, 41: 40}
	exe := map[int]string{1: "/sbin/init", 10: server, 11: runner, 12: runner, 20: server, 21: runner, 30: server, 40: server, 41: server}
	roots, err := b.shimsOf(sharedVariant, []int{11, 12}, ppid, exe)
	if err != nil || !slices.Equal(roots, []int{10}) {
		t.Errorf("shared: %v %v", roots, err)
	}
	roots, err = b.shimsOf(wasmRuntime, []int{21, 41}, ppid, exe)
	if err != nil || !slices.Equal(roots, []int{20, 40}) {
		t.Errorf("default: %v %v", roots, err)
	}
	if _, err := b.shimsOf(runcRuntime, []int{21}, ppid, exe); err == nil || !strings.Contains(err.Error(), "task pid 21") {
		t.Errorf("runc over a wazero task: %v", err)
	}
}
