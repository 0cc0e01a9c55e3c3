package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestRotate(t *testing.T) {
	one := []string{wasmRuntime}
	if got := rotate(one, 3); !slices.Equal(got, one) {
		t.Errorf("rotate(one) = %v", got)
	}
	two := []string{"a", "b"}
	if got := rotate(two, 0); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("round 0: %v", got)
	}
	if got := rotate(two, 1); !slices.Equal(got, []string{"b", "a"}) {
		t.Errorf("round 1: %v", got)
	}
	if !slices.Equal(two, []string{"a", "b"}) {
		t.Errorf("rotate changed its argument: %v", two)
	}
}

func TestBeforeAfterTable(t *testing.T) {
	c := &config{beforeShimExe: "/tmp/x/before/containerd-shim-wazero-v1", beforeLabel: "commit 812ff23"}
	b := &bencher{c: c}
	if rtName(c.beforeShimExe) != "wazero-before" {
		t.Fatalf("rtName = %q", rtName(c.beforeShimExe))
	}
	rep := &report{}
	base := rep.add("B1a", "runc", "ms", []float64{100, 100}, nil, false)
	w := map[string][]float64{wasmRuntime: {110, 110}, c.beforeShimExe: {100, 100}}
	b.addWasmRows(rep, "B1a", func(rt string) string { return rtName(rt) + b.beforeTag(rt) }, "ms", w, base, false)
	var out bytes.Buffer
	resultsTable(&out, rep)
	s := out.String()
	for _, want := range []string{"| before → after (median) |", "| wazero-before (commit 812ff23) |", "100 → 110: 1.10× (+10.0%) |"} {
		if !strings.Contains(s, want) {
			t.Errorf("table lacks %q:\n%s", want, s)
		}
	}
	if partialKey(c, []string{"B1", "B2"}) != "B1,B2 before/after" {
		t.Errorf("partialKey = %q", partialKey(c, []string{"B1", "B2"}))
	}
	names, sets := b.phaseSets(map[string][]phases{wasmRuntime: nil, c.beforeShimExe: nil}, nil)
	if got := names("C hello", ""); got != "wazero-before (commit 812ff23) C hello vs wazero C hello vs runc" || len(sets) != 3 {
		t.Errorf("phaseSets: %q, %d sets", got, len(sets))
	}
}

// Without an earlier build the table is the one a plain run always wrote.
func TestNoBeforeUnchanged(t *testing.T) {
	b := &bencher{c: &config{}}
	rep := &report{}
	base := rep.add("B2", "runc", "tasks/s", []float64{10}, nil, true)
	b.addWasmRows(rep, "B2", func(rt string) string { return rtName(rt) }, "tasks/s", map[string][]float64{wasmRuntime: {20}}, base, true)
	var out bytes.Buffer
	resultsTable(&out, rep)
	want := "| # | what | unit | n | median | min | max | ratio to baseline (median) |\n|---|---|---|---|---|---|---|---|\n" +
		"| B2 | runc | tasks/s | 1 | 10.0 | 10.0 | 10.0 | 1 (baseline) |\n" +
		"| B2 | wazero | tasks/s | 1 | 20.0 | 20.0 | 20.0 | 2.00× (higher is better) |\n\n"
	if out.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", out.String(), want)
	}
	names, _ := b.phaseSets(nil, nil)
	if got := names("C hello", "native hello"); got != "wazero C hello vs runc native hello" {
		t.Errorf("names = %q", got)
	}
	if partialKey(b.c, []string{"B7"}) != "B7" {
		t.Errorf("partialKey = %q", partialKey(b.c, []string{"B7"}))
	}
}
