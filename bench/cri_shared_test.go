package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

func names(hs []handler) []string {
	var n []string
	for _, h := range hs {
		n = append(n, h.name)
	}
	return n
}

func TestB5Handlers(t *testing.T) {
	off := &bencher{c: &config{}}
	if got := names(off.b5Handlers()); !slices.Equal(got, []string{"wazero", "runc"}) {
		t.Errorf("without -shared-variant: %v", got)
	}
	on := &bencher{c: &config{sharedVariant: true}}
	if got := names(on.b5Handlers()); !slices.Equal(got, []string{"wazero", sharedVariant, "runc"}) {
		t.Errorf("with -shared-variant: %v", got)
	}
	// The shared variant runs the wazero handler; the others their own name.
	for h, want := range map[string]string{hWasm.runtimeHandler(): "wazero", hRunc.runtimeHandler(): "runc", hShared.runtimeHandler(): "wazero"} {
		if h != want {
			t.Errorf("runtime handler %q, want %q", h, want)
		}
	}
	if runtimeOf(hShared.rt) != wasmRuntime {
		t.Errorf("hShared runs runtime %q, want %q", runtimeOf(hShared.rt), wasmRuntime)
	}
}

func TestB6Handlers(t *testing.T) {
	for _, c := range []struct {
		list   string
		shared bool
		want   []string
	}{
		{"wazero", false, []string{"wazero"}},
		{"wazero,runc", false, []string{"wazero", "runc"}},
		{"wazero", true, []string{"wazero", sharedVariant}},
		{"wazero,runc", true, []string{"wazero", sharedVariant, "runc"}},
		{" wazero , runc ", true, []string{"wazero", sharedVariant, "runc"}},
		{"runc", true, []string{sharedVariant, "runc"}},
	} {
		hs, err := b6Handlers(c.list, c.shared)
		if err != nil {
			t.Errorf("%q shared=%v: %v", c.list, c.shared, err)
			continue
		}
		if got := names(hs); !slices.Equal(got, c.want) {
			t.Errorf("%q shared=%v: %v, want %v", c.list, c.shared, got, c.want)
		}
	}
	if _, err := b6Handlers("wazero,crun", true); err == nil || !strings.Contains(err.Error(), `"wazero,crun"`) {
		t.Errorf("bad list: %v", err)
	}
}

// The pod annotation is in crictl runp's JSON for the shared variant only.
func TestPodConfigAnnotation(t *testing.T) {
	for _, h := range []handler{hWasm, hRunc, hShared} {
		data, err := json.Marshal(podConfig(h, "p1", "/tmp/d"))
		if err != nil {
			t.Fatal(err)
		}
		var pc struct {
			Metadata    struct{ Name, UID string }
			Annotations map[string]string
			Linux       struct {
				SecurityContext struct {
					NamespaceOptions struct{ Network int } `json:"namespace_options"`
				} `json:"security_context"`
			}
		}
		if err := json.Unmarshal(data, &pc); err != nil {
			t.Fatal(err)
		}
		if pc.Metadata.Name != "p1" || pc.Linux.SecurityContext.NamespaceOptions.Network != 2 {
			t.Errorf("%s: %s", h.name, data)
		}
		has := strings.Contains(string(data), `"annotations"`)
		if has != (h.name == sharedVariant) {
			t.Errorf("%s: annotations present %v: %s", h.name, has, data)
		}
		if h.name == sharedVariant && pc.Annotations[sharedServerAnnotation] != "30s" {
			t.Errorf("%s: annotations %v, want %s=30s", h.name, pc.Annotations, sharedServerAnnotation)
		}
	}
}

func TestB5ReportRows(t *testing.T) {
	ph := func(ms ...int) []criPhases {
		var p []criPhases
		for _, m := range ms {
			d := time.Duration(m) * time.Millisecond
			p = append(p, criPhases{runp: d / 2, create: d / 4, start: d / 8, running: d / 8, total: d})
		}
		return p
	}
	off := &report{}
	b5Report(off, []handler{hWasm, hRunc}, map[string][]criPhases{"wazero": ph(400, 480), "runc": ph(800, 800)})
	if len(off.rows) != 2 || !strings.HasPrefix(off.rows[0].what, "runc:") || off.rows[1].baseline != off.rows[0] {
		t.Fatalf("rows without the shared variant: %+v", off.rows)
	}
	if want := "B5 phases (median ms, each a crictl process; wazero vs runc): `runp` 220 vs 400; `create` 110 vs 200; `start` 55 vs 100; `inspect` until RUNNING 55 vs 100."; len(off.notes) != 1 || off.notes[0] != want {
		t.Errorf("note %q,\nwant %q", off.notes, want)
	}
	on := &report{}
	b5Report(on, []handler{hWasm, hShared, hRunc}, map[string][]criPhases{"wazero": ph(400, 480), sharedVariant: ph(200, 240), "runc": ph(800, 800)})
	if len(on.rows) != 3 {
		t.Fatalf("rows with the shared variant: %d", len(on.rows))
	}
	r := on.rows[2]
	if !strings.HasPrefix(r.what, sharedVariant+":") || !strings.Contains(r.what, sharedArg) || r.baseline != on.rows[0] || !slices.Equal(r.samples, []float64{200, 240}) {
		t.Errorf("shared row: %+v", r)
	}
	if !strings.Contains(on.notes[0], "wazero vs wazero-shared vs runc): `runp` 220 vs 110 vs 400;") {
		t.Errorf("note: %s", on.notes[0])
	}
}

func TestB6Rows(t *testing.T) {
	d := func(h handler, pss float64, procs int) *density {
		return &density{h: h, want: 4, reached: 4, pssMiB: pss, procs: procs, startTook: 2 * time.Second, servers: 1}
	}
	rep := &report{}
	b6Rows(rep, map[string]*density{"wazero": d(hWasm, 40, 16), sharedVariant: d(hShared, 24, 9)}, 4)
	// No runc batch: PSS and time rows of wazero and wazero-shared, all solo.
	if len(rep.rows) != 4 {
		t.Fatalf("%d rows", len(rep.rows))
	}
	pss := rep.rows[1]
	if !strings.HasPrefix(pss.what, sharedVariant+": the same 4 pods") || !strings.Contains(pss.what, "(9 processes)") || pss.samples[0] != 6 || !pss.solo {
		t.Errorf("shared PSS row: %+v", pss)
	}
	if !strings.HasPrefix(rep.rows[3].what, sharedVariant+": time to start all 4 pods") || !rep.rows[3].solo {
		t.Errorf("shared time row: %+v", rep.rows[3])
	}
	with := &report{}
	b6Rows(with, map[string]*density{"wazero": d(hWasm, 40, 16), sharedVariant: d(hShared, 24, 9), "runc": d(hRunc, 8, 8)}, 4)
	if len(with.rows) != 6 || with.rows[2].baseline != with.rows[0] || with.rows[2].solo || with.rows[5].baseline != with.rows[3] {
		t.Errorf("with runc: %+v", with.rows)
	}
	off := &report{}
	b6Rows(off, map[string]*density{"wazero": d(hWasm, 40, 16)}, 4)
	for _, r := range off.rows {
		if strings.Contains(r.what, sharedVariant) {
			t.Errorf("a shared row without the shared batch: %s", r.what)
		}
	}
}

func TestParseTaskLs(t *testing.T) {
	out := "TASK    PID     STATUS\naaa     101     RUNNING\nbbb     0       STOPPED\nccc     103     RUNNING\nzzz     999     RUNNING\n"
	tasks, running, pids := parseTaskLs(out, map[string]bool{"aaa": true, "bbb": true, "ccc": true})
	if tasks != 3 || running != 2 || !slices.Equal(pids, []int{101, 103}) {
		t.Errorf("got %d tasks, %d running, pids %v", tasks, running, pids)
	}
}

func TestChildless(t *testing.T) {
	// 10 (a server with a runner 11), 20 (a lingering server), 30 (a server whose runner 31 has a child).
	ppid := map[int]int{10: 1, 11: 10, 20: 1, 30: 1, 31: 30, 32: 31}
	if got := childless([]int{10, 20, 30}, ppid); !slices.Equal(got, []int{20}) {
		t.Errorf("childless = %v, want [20]", got)
	}
}

func TestSharedDensityNote(t *testing.T) {
	ok := sharedDensityNote(&density{reached: 6, servers: 1, serverGone: true, serverWait: 31 * time.Second})
	if !strings.Contains(ok, "all ran under one server process") || !strings.Contains(ok, "left in 31 s") || strings.Contains(ok, "**") {
		t.Errorf("one server, gone: %s", ok)
	}
	bad := sharedDensityNote(&density{reached: 6, servers: 6, serverGone: false, serverWait: 61 * time.Second})
	if !strings.Contains(bad, "**the 6 pods' tasks ran under 6 server processes, not one**") || !strings.Contains(bad, "still ran 61 s after teardown") {
		t.Errorf("six servers, not gone: %s", bad)
	}
}
