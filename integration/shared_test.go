//go:build linux

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sharedLinger is the linger of the shared server in TestSharedServer's daemons.
const sharedLinger = 3 * time.Second

// The shared server (CONTAINERD_SHIM_WAZERO_SHARED_SERVER in containerd's environment): tasks of
// a namespace run under one server process, which outlives its last task by the linger, serves a
// task that comes in that time, and then leaves with its socket and its directory. Each task still
// gets its own output and exit status.
func TestSharedServer(t *testing.T) {
	requireSuite(t)
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			d := &daemon{version: v, dir: filepath.Join(suite.tmp, v+"-shared"), bin: binDir(v), ns: suite.ns,
				images: map[string]bool{}, cacheDir: filepath.Join(suite.tmp, v+"-shared", "cache"),
				extraEnv: []string{"CONTAINERD_SHIM_WAZERO_SHARED_SERVER=" + sharedLinger.String()}}
			if err := d.start(); err != nil {
				t.Fatalf("containerd %s with the shared server: %v", v, err)
			}
			defer d.stop()
			d.importImage(t, filepath.Join(imagesDir, "wasmtest.tar"))

			a, b := d.runSleeping(t), d.runSleeping(t)
			srv := d.serverOf(t, a)
			server := srv.pid
			if got := d.serverOf(t, b).pid; got != server {
				t.Fatalf("two tasks of the namespace run under servers %d and %d, want one shared server", server, got)
			}
			if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", server)); exe != suite.serverBin {
				t.Fatalf("the runners' parent %d runs %q, want the shim server %s", server, exe, suite.serverBin)
			}
			socket := d.shimAddress(t, a)
			if got := d.shimAddress(t, b); got != socket {
				t.Fatalf("shim addresses %q and %q, want one", socket, got)
			}

			// containerd restarts: it reconnects to the shared server for each task, and the
			// server still serves both.
			d.stop()
			if err := d.start(); err != nil {
				t.Fatalf("restart containerd: %v", err)
			}
			for _, id := range []string{a, b} {
				if st := d.taskStatus(t, id); st != "RUNNING" {
					t.Fatalf("after containerd's restart task %s is %q, want RUNNING\n%s", id, st, tail(d.logPath(), 30))
				}
				if got := d.serverOf(t, id).pid; got != server {
					t.Fatalf("after containerd's restart task %s runs under %d, want the shared server %d", id, got, server)
				}
			}

			// Tasks that come and go while others run: their own output and exit status.
			r := d.run(t, runOpts{args: testprog("hello")})
			wantSuccess(t, r)
			if !strings.Contains(r.stdout, "hello from wasm") {
				t.Errorf("stdout %q, want hello from wasm", r.stdout)
			}
			if r := d.run(t, runOpts{args: testprog("exit", "3")}); r.exit != 3 {
				t.Errorf("exit status %d, want 3\n%s", r.exit, r)
			}
			d.stopTask(t, a)
			d.stopTask(t, b)

			// No task left: the server waits for the next one, and serves it.
			if !srv.alive() {
				t.Fatalf("the shared server %d left with its last task, before its linger", server)
			}
			c := d.runSleeping(t)
			if got := d.serverOf(t, c).pid; got != server {
				t.Fatalf("a task within the linger runs under server %d, want the shared server %d", got, server)
			}
			d.stopTask(t, c)

			// Then it leaves, with its socket and its directory.
			for end := time.Now().Add(sharedLinger + 20*time.Second); srv.alive(); time.Sleep(100 * time.Millisecond) {
				if time.Now().After(end) {
					t.Fatalf("the shared server %d still runs %s after its last task (linger %s)", server, time.Until(end)+sharedLinger+20*time.Second, sharedLinger)
				}
			}
			path := strings.TrimPrefix(socket, "unix://")
			for _, p := range []string{path, path + ".shared"} {
				if _, err := os.Stat(p); !os.IsNotExist(err) {
					t.Errorf("%s left behind by the shared server: %v", p, err)
				}
			}
			// And the next task gets a new server.
			r = d.run(t, runOpts{args: testprog("hello")})
			wantSuccess(t, r)
		})
	}
}

// runSleeping starts a detached task that sleeps for a minute and waits until it runs.
func (d *daemon) runSleeping(t *testing.T) string {
	t.Helper()
	id := newID(t, d)
	t.Cleanup(func() { d.ensureRemoved(t, id) })
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	args := d.runArgs(runOpts{image: testImage, id: id, args: testprog("sleep", "60")}, "--detach")
	if r := d.exec(ctx, nil, args...); r.exit != 0 {
		t.Fatalf("ctr %s: %s", strings.Join(args, " "), r)
	}
	if !d.waitStatus(t, id, "RUNNING", 30*time.Second) {
		t.FailNow()
	}
	return id
}

// stopTask kills task id with SIGKILL, waits until it stopped and removes the task and container.
func (d *daemon) stopTask(t *testing.T, id string) {
	t.Helper()
	if _, se, code := d.ctr(t, "task", "kill", "--signal", "SIGKILL", id); code != 0 {
		t.Fatalf("ctr task kill %s: exit %d: %s", id, code, se)
	}
	if !d.waitStatus(t, id, "STOPPED", 20*time.Second) {
		t.FailNow()
	}
	d.ensureRemoved(t, id)
}

// shimAddress is the shim socket address recorded in task id's bundle.
func (d *daemon) shimAddress(t *testing.T, id string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(d.dir, "state", "*", d.ns, id, "address"))
	if len(m) != 1 {
		t.Fatalf("no address file in the bundle of %s (%v)", id, m)
	}
	b, err := os.ReadFile(m[0])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// serverOf is the process task id's runner runs under (the shim server), with its start time.
func (d *daemon) serverOf(t *testing.T, id string) shimProc {
	t.Helper()
	_, ppid, _ := procStat(d.taskPid(t, id))
	state, _, start := procStat(ppid)
	if state == "" {
		t.Fatalf("the parent %d of task %s's runner is gone", ppid, id)
	}
	return shimProc{pid: ppid, start: start}
}
