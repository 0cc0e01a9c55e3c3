package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const wrkOut = `Running 10s test @ http://127.0.0.1:41234/hello
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   699.67us    1.07ms   8.96ms   87.88%
    Req/Sec    43.16k     6.09k   55.73k    65.00%
  Latency Distribution
     50%  314.00us
     75%  555.00us
     90%    2.20ms
     99%    1.05s
  85577 requests in 10.00s, 11.18MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 5
Requests/sec:   8557.70
Transfer/sec:      1.12MB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(wrkOut)
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{rps: 8557.70, p50: 0.314, p90: 2.2, p99: 1050, requests: 85577,
		connErr: 1, readErr: 2, writeErr: 3, timeoutErrs: 4, non2xx: 5}
	near := func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
	if !near(r.rps, want.rps) || !near(r.p50, want.p50) || !near(r.p90, want.p90) || !near(r.p99, want.p99) ||
		r.requests != want.requests || r.connErr != 1 || r.readErr != 2 || r.writeErr != 3 || r.timeoutErrs != 4 || r.non2xx != 5 {
		t.Errorf("parseWrk = %+v, want %+v", r, want)
	}
	if r.errors() != 15 {
		t.Errorf("errors() = %d, want 15", r.errors())
	}
	// Without --latency there is no percentile: refused.
	var noLatency []string
	for _, l := range strings.Split(wrkOut, "\n") {
		if !strings.Contains(l, "%  ") {
			noLatency = append(noLatency, l)
		}
	}
	if _, err := parseWrk(strings.Join(noLatency, "\n")); err == nil {
		t.Errorf("parseWrk without percentiles: no error")
	}
	for in, want := range map[string]float64{"12.00us": 0.012, "3.5ms": 3.5, "2.00s": 2000, "1.00m": 60000} {
		if got, err := wrkDuration(in); err != nil || !near(got, want) {
			t.Errorf("wrkDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := wrkDuration("12.00xs"); err == nil {
		t.Errorf("wrkDuration(12.00xs): no error")
	}
}

func TestMergePartial(t *testing.T) {
	full := "# Benchmarks\n\nfull run\n"
	a := string(mergePartial([]byte(full), "B7", "B7 one\n"))
	wantA := full + "\n" + partialBegin + "B7 -->\nB7 one\n" + partialEnd + "B7 -->\n"
	if a != wantA {
		t.Fatalf("first merge:\n%s\nwant:\n%s", a, wantA)
	}
	b := string(mergePartial([]byte(a), "B1,B7", "both\n"))
	c := string(mergePartial([]byte(b), "B7", "B7 two\n"))
	if strings.Contains(c, "B7 one") || !strings.Contains(c, "B7 two") || !strings.Contains(c, "both") || !strings.HasPrefix(c, full) {
		t.Errorf("second merge of B7 did not replace only its own section:\n%s", c)
	}
	if strings.Count(c, partialBegin) != 2 || strings.Count(c, partialEnd) != 2 {
		t.Errorf("want two sections:\n%s", c)
	}
	// Merging the same section again changes nothing.
	if d := string(mergePartial([]byte(c), "B7", "B7 two\n")); d != c {
		t.Errorf("merge not idempotent:\n%s\nthen\n%s", c, d)
	}
}

func TestOwnCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (cgroups)")
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("wzbench-test-%d/proc", cmd.Process.Pid)
	undo, err := ownCgroup(name, cmd.Process.Pid)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal(err)
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid))
	cmd.Process.Kill()
	cmd.Wait()
	undo()
	if !strings.Contains(string(b), "/"+name+"\n") {
		t.Errorf("/proc/PID/cgroup does not name %s:\n%s", name, b)
	}
	if left, _ := filepath.Glob("/sys/fs/cgroup/*/wzbench-test-*"); len(left) > 0 {
		t.Errorf("cgroups left: %v", left)
	}
	if _, err := os.Stat(fmt.Sprintf("/sys/fs/cgroup/wzbench-test-%d", cmd.Process.Pid)); err == nil {
		t.Error("the v2 cgroup is left")
	}
}
