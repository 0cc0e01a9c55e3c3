package engine

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestStatusLine: the status line carries the Ready report flat (the keys the shim's log and the
// docs name), and Configure's reading of it gives back the same Ready.
func TestStatusLine(t *testing.T) {
	want := Ready{CacheHit: true, CompileMillis: 7, CacheProblem: "p", Digest: "sha256:ab", Interpreted: true, Evicted: 2, EvictedBytes: 9, PageFaults: 5400, HugePageBytes: 12582912}
	line, err := json.Marshal(status{Ready: want})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"cacheHit":true`, `"compileMillis":7`, `"digest":"sha256:ab"`, `"interpreted":true`, `"evictedBytes":9`, `"pageFaults":5400`, `"hugePageBytes":12582912`} {
		if !strings.Contains(string(line), key) {
			t.Errorf("status line %s lacks %s", line, key)
		}
	}
	if strings.Contains(string(line), "error") || strings.Contains(string(line), "Ready") {
		t.Errorf("status line %s: no error key when ready, and the report is not nested", line)
	}
	var got status
	if err := json.Unmarshal(line, &got); err != nil || got.Ready != want {
		t.Fatalf("read back %+v (%v), want %+v", got.Ready, err, want)
	}
	p := &Prepared{CacheHit: want.CacheHit, CacheProblem: want.CacheProblem, Digest: want.Digest, Interpreted: want.Interpreted, Evicted: want.Evicted, EvictedBytes: want.EvictedBytes, HugePageBytes: want.HugePageBytes}
	if r := readyOf(p, 7, want.PageFaults); r != want {
		t.Fatalf("readyOf = %+v, want %+v", r, want)
	}
	if r := readyOf(nil, 7, 11); r != (Ready{PageFaults: 11}) {
		t.Fatalf("readyOf(nil) = %+v, want the report of a sandbox: its page faults only", r)
	}
}
