package integration

// Confinement: the runner that executes guest code carries the container's whole security context,
// as runc applies it. Each test reads the real processes (/proc/PID/status, limits, oom_score_adj)
// of a wazero container's runner and of a runc container started from the same flags on the same
// daemon, and compares them; others check what the guest itself can reach.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const runcRuntime = "io.containerd.runc.v2"

// securityFields are the /proc/PID/status fields that make a process's security context.
// Seccomp and Seccomp_filters are compared apart (compareSecContext): a runner always carries
// its own allowlist on top of whatever the spec asks.
var securityFields = []string{"Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters"}

// secContext is a process's security context as the kernel reports it.
type secContext struct {
	status map[string]string // securityFields
	limits string            // /proc/PID/limits
	oomAdj string            // /proc/PID/oom_score_adj
}

func readSecContext(t *testing.T, pid int) secContext {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read status of pid %d: %v", pid, err)
	}
	s := secContext{status: map[string]string{}}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		for _, f := range securityFields {
			if k == f {
				s.status[k] = strings.Join(strings.Fields(v), " ")
			}
		}
	}
	lim, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	s.limits = string(lim)
	adj, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid))
	if err != nil {
		t.Fatal(err)
	}
	s.oomAdj = strings.TrimSpace(string(adj))
	return s
}

// compareSecContext fails the test for every field where the wazero runner (w) differs from the
// runc process (r).
func compareSecContext(t *testing.T, what string, w, r secContext) {
	t.Helper()
	// The runner's own seccomp allowlist (seccomp.RunnerProfile) is one filter more than runc's
	// process has: filter mode always, and the spec's filter (if any) stacked on it.
	if w.status["Seccomp"] != "2" {
		t.Errorf("%s: Seccomp = %q under wazero, want 2 (the runner's own allowlist, at least)", what, w.status["Seccomp"])
	}
	rn, _ := strconv.Atoi(r.status["Seccomp_filters"])
	if want := strconv.Itoa(rn + 1); w.status["Seccomp_filters"] != want {
		t.Errorf("%s: Seccomp_filters = %q under wazero, want %s (runc's %d and the runner's own)", what, w.status["Seccomp_filters"], want, rn)
	}
	for _, f := range securityFields {
		if f == "Seccomp" || f == "Seccomp_filters" {
			continue
		}
		if w.status[f] != r.status[f] {
			t.Errorf("%s: %s = %q under wazero, %q under runc", what, f, w.status[f], r.status[f])
		}
	}
	if w.limits != r.limits {
		t.Errorf("%s: limits differ.\nwazero:\n%s\nrunc:\n%s", what, w.limits, r.limits)
	}
	if w.oomAdj != r.oomAdj {
		t.Errorf("%s: oom_score_adj = %s under wazero, %s under runc", what, w.oomAdj, r.oomAdj)
	}
	t.Logf("%s: %v oom_score_adj=%s", what, w.status, w.oomAdj)
}

// taskPid returns the pid `ctr task ls` reports for id.
func (d *daemon) taskPid(t *testing.T, id string) int {
	t.Helper()
	out, se, code := d.ctr(t, "task", "ls")
	if code != 0 {
		t.Fatalf("ctr task ls: exit %d: %s", code, se)
	}
	for _, l := range lines(out) {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == id {
			pid, err := strconv.Atoi(f[1])
			if err == nil {
				return pid
			}
		}
	}
	t.Fatalf("task %s not in ctr task ls:\n%s", id, out)
	return 0
}

// runRuncDetached starts the native pause program under runc with extra ctr flags and waits until
// it runs.
func runRuncDetached(t *testing.T, d *daemon, id string, extra ...string) {
	t.Helper()
	t.Cleanup(func() { d.ensureRemoved(t, id) })
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	args := append([]string{"run", "--fifo-dir", filepath.Join(d.dir, "fifo"), "--runtime", runcRuntime, "--detach"}, extra...)
	args = append(args, sandboxImage, id)
	r := d.exec(ctx, nil, args...)
	if r.exit != 0 {
		t.Fatalf("ctr %s: exit %d\n%s", strings.Join(args, " "), r.exit, r)
	}
	if !d.waitStatus(t, id, "RUNNING", 30*time.Second) {
		t.FailNow()
	}
}

// ctrHasUser reports whether this daemon's ctr has --user (ctr 1.6 does not: the CRI test covers
// users on that daemon).
func (d *daemon) ctrHasUser(t *testing.T) bool {
	out, _, _ := d.ctr(t, "run", "--help")
	return strings.Contains(out, "--user")
}

// TestSecurityContextLikeRunc runs the same ctr flags under both runtimes and compares the
// security context of the wazero runner with runc's container process, field by field.
func TestSecurityContextLikeRunc(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		d.importImage(t, filepath.Join(imagesDir, "pause.tar"))
		cases := []struct {
			name     string
			flags    []string
			needUser bool
		}{
			{"root defaults", nil, false},
			{"seccomp", []string{"--seccomp"}, false},
			{"cap-add cap-drop", []string{"--cap-add", "CAP_SYS_ADMIN", "--cap-drop", "CAP_CHOWN", "--seccomp"}, false},
			{"user", []string{"--user", "1000:1000", "--seccomp"}, true},
			{"user with a capability", []string{"--user", "1000:1000", "--cap-add", "CAP_NET_ADMIN"}, true},
		}
		hasUser := d.ctrHasUser(t)
		for _, tc := range cases {
			t.Run(strings.ReplaceAll(tc.name, " ", "-"), func(t *testing.T) {
				if tc.needUser && !hasUser {
					t.Logf("ctr %s has no --user; the CRI test checks users on this daemon", d.version)
					return
				}
				wid, rid := newID(t, d), newID(t, d)+"-runc"
				runDetached(t, d, wid, testprog("sleep", "60"), tc.flags...)
				runRuncDetached(t, d, rid, tc.flags...)
				w := readSecContext(t, d.taskPid(t, wid))
				r := readSecContext(t, d.taskPid(t, rid))
				if w.status["Uid"] == "0 0 0 0" && tc.needUser {
					t.Errorf("the runner still runs as root")
				}
				compareSecContext(t, tc.name, w, r)
				killRemove(t, d, wid)
				killRemove(t, d, rid)
			})
		}
	})
}

// TestGuestReach checks what a guest can reach, from inside: a device node shipped in the image
// that the spec's device rules deny, one they allow, a syscall a custom seccomp profile forbids,
// and (with a user) a root-only file and the owner of the files it creates.
func TestGuestReach(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		t.Run("device denied", func(t *testing.T) {
			r := d.run(t, runOpts{args: testprog("read", "/kmsg")})
			if r.exit != 1 || !strings.Contains(r.stderr, "read /kmsg: Operation not permitted") {
				t.Errorf("reading /kmsg (c 1:11, not in the spec's device rules): exit %d, stderr %q; want 1 and EPERM", r.exit, r.stderr)
			}
		})
		t.Run("device allowed", func(t *testing.T) {
			r := d.run(t, runOpts{args: testprog("read", "/devnull")})
			if r.exit != 0 {
				t.Errorf("reading /devnull (c 1:3, allowed): exit %d, stderr %q; want 0", r.exit, r.stderr)
			}
		})
		t.Run("seccomp profile", func(t *testing.T) {
			dir := t.TempDir()
			prof := map[string]any{
				"defaultAction": "SCMP_ACT_ALLOW",
				"syscalls":      []map[string]any{{"names": []string{"mkdirat", "mkdir"}, "action": "SCMP_ACT_ERRNO", "errnoRet": int(syscall.EACCES)}},
			}
			b, _ := json.Marshal(prof)
			pf := filepath.Join(dir, "profile.json")
			if err := os.WriteFile(pf, b, 0o644); err != nil {
				t.Fatal(err)
			}
			r := d.run(t, runOpts{args: testprog("mkdir", "/made"), flags: []string{"--seccomp", "--seccomp-profile", pf}})
			if r.exit != 1 || !strings.Contains(r.stderr, "mkdir /made: Permission denied") {
				t.Errorf("mkdir under a profile that makes mkdirat fail with EACCES: exit %d, stderr %q", r.exit, r.stderr)
			}
			r = d.run(t, runOpts{args: testprog("mkdir", "/made")})
			if r.exit != 0 {
				t.Errorf("mkdir without the profile: exit %d, stderr %q; want 0", r.exit, r.stderr)
			}
		})
		if !d.ctrHasUser(t) {
			t.Logf("ctr %s has no --user; the CRI test checks users on this daemon", d.version)
			return
		}
		vol := t.TempDir()
		if err := os.Chmod(vol, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(vol, "secret"), []byte("root only"), 0o600); err != nil {
			t.Fatal(err)
		}
		user := []string{"--user", "1000:1000"}
		t.Run("root-only file", func(t *testing.T) {
			r := d.run(t, runOpts{args: testprog("read", "/data/secret"), flags: user, mounts: []mount{{src: vol, dst: "/data"}}})
			if r.exit != 1 || !strings.Contains(r.stderr, "Permission denied") {
				t.Errorf("uid 1000 reading a 0600 root file: exit %d, stderr %q; want EACCES", r.exit, r.stderr)
			}
			r = d.run(t, runOpts{args: testprog("read", "/data/secret"), mounts: []mount{{src: vol, dst: "/data"}}})
			if r.exit != 0 || r.stdout != "root only" {
				t.Errorf("root reading it: exit %d, stdout %q", r.exit, r.stdout)
			}
		})
		t.Run("file owner", func(t *testing.T) {
			r := d.run(t, runOpts{args: testprog("write", "/data/new", "x"), flags: user, mounts: []mount{{src: vol, dst: "/data"}}})
			if r.exit != 0 {
				t.Fatalf("write: exit %d, stderr %q", r.exit, r.stderr)
			}
			var st syscall.Stat_t
			if err := syscall.Stat(filepath.Join(vol, "new"), &st); err != nil {
				t.Fatal(err)
			}
			if st.Uid != 1000 || st.Gid != 1000 {
				t.Errorf("a file the guest created is owned by %d:%d, want 1000:1000", st.Uid, st.Gid)
			}
		})
	})
}
