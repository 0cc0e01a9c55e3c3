package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// MountsUnder lists the mount points at or below dir (symlinks in dir resolved), deepest first;
// nil when dir is empty or /proc/self/mountinfo cannot be read. The suites use it to find mounts a
// test left behind.
func MountsUnder(dir string) []string {
	if dir == "" {
		return nil
	}
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		dir = r
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		mp := UnescapeMountinfo(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// UnescapeMountinfo decodes the \NNN octal escapes (space, tab, newline, backslash) of a
// /proc/self/mountinfo field.
func UnescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// FilteredEnv is os.Environ() without the named variables: the environment for a tool (ctr,
// crictl, kubectl) that must not pick up the developer's CONTAINERD_ADDRESS and the like.
func FilteredEnv(drop ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, d := range drop {
			if k == d {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

// Lingering waits up to grace for list() to come back empty and describes each process still in
// it then as "WHAT PID still running: CMDLINE": a leak check's report of processes a test left.
func Lingering(list func() []int, grace time.Duration, what string) []string {
	pids := list()
	for deadline := time.Now().Add(grace); len(pids) > 0 && time.Now().Before(deadline); pids = list() {
		time.Sleep(200 * time.Millisecond)
	}
	var out []string
	for _, pid := range pids {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, fmt.Sprintf("%s %d still running: %s", what, pid,
			strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))))
	}
	return out
}
