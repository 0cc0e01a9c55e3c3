//go:build linux

package integration

// Native containers through ctr: `ctr run --runtime io.containerd.wazero.v1` of a native image
// (an ELF entrypoint, a #! script) is run by runc under this shim (pkg/shim/native.go), exactly
// as the native containers of wazero pods are.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const nativeToolImage = "docker.io/library/native-tool:latest"

// runcStateDir is runc's state directory of the shim's native containers in containerd namespace
// ns (pkg/shim.RuncRootDir).
func runcStateDir(ns string) string { return filepath.Join("/run/containerd/wazero-runc", ns) }

// processesWith lists the live processes whose command line contains marker.
func processesWith(marker string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), marker) {
			out = append(out, fmt.Sprintf("process %s: %s", e.Name(), strings.ReplaceAll(string(b), "\x00", " ")))
		}
	}
	return out
}

// TestCtrNative: ctr run of a native image through the wazero runtime: an ELF program's output
// and exit status, a #! script, and a wasm container of the same daemon still run by wazero;
// nothing left afterwards (runc state, processes, mounts, cgroups).
func TestCtrNative(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		d.importImage(t, filepath.Join(imagesDir, "native-tool.tar"))
		fdsBefore := fdCount(t, d.cmd.Process.Pid)
		var ids []string

		hello := runOpts{image: nativeToolImage, args: []string{"/nativetool", "hello", "via-ctr"}}
		d.defaults(t, &hello)
		ids = append(ids, hello.id)
		if r := d.run(t, hello); r.exit != 0 || !strings.Contains(r.stdout, "hello from native via-ctr") {
			t.Errorf("ctr run of the native image: exit %d, stdout %q; want 0 and %q", r.exit, r.stdout, "hello from native via-ctr")
		}

		script := runOpts{image: nativeToolImage, args: []string{"/script.sh", "from-a-script"}}
		d.defaults(t, &script)
		ids = append(ids, script.id)
		if r := d.run(t, script); r.exit != 0 || !strings.Contains(r.stdout, "hello from script from-a-script") {
			t.Errorf("ctr run of a #! script: exit %d, stdout %q; want 0 and %q", r.exit, r.stdout, "hello from script from-a-script")
		}

		fails := runOpts{image: nativeToolImage, args: []string{"/nativetool", "exit", "7"}}
		d.defaults(t, &fails)
		ids = append(ids, fails.id)
		if r := d.run(t, fails); r.exit != 7 || !strings.Contains(r.stderr+r.stdout, "native container exiting with 7") {
			t.Errorf("ctr run of a failing native program: exit %d, output %q; want 7", r.exit, r.stdout+r.stderr)
		}

		// The same daemon and runtime still run wasm modules in wazero.
		if r := d.run(t, runOpts{args: []string{"/hello.wasm"}}); r.exit != 0 || !strings.Contains(r.stdout, "hello from wasm") {
			t.Errorf("ctr run of a wasm module after native ones: exit %d, stdout %q", r.exit, r.stdout)
		}

		// The shim's log says which runtime ran each container and why.
		logs, _ := os.ReadFile(d.logPath())
		for _, id := range ids {
			if !strings.Contains(grepLines(logs, id), "runtime=native") {
				t.Errorf("the daemon log has no runtime=native decision for %s", id)
			}
		}

		for _, l := range daemonLeaks(t, d, fdsBefore) {
			t.Errorf("left after the native runs: %s", l)
		}
		for _, id := range ids {
			if _, err := os.Stat(filepath.Join(runcStateDir(d.ns), id)); err == nil {
				t.Errorf("runc state of %s left in %s", id, runcStateDir(d.ns))
			}
		}
		for _, p := range processesWith("via-ctr") {
			t.Errorf("left: %s", p)
		}
	})
}

// TestCtrNativeRefusals: a native container asked for a terminal gets a clear error, and an
// annotation that forces wasm on a native image names the module it could not run.
func TestCtrNativeRefusals(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		d.importImage(t, filepath.Join(imagesDir, "native-tool.tar"))
		forced := runOpts{image: nativeToolImage, args: []string{"/nativetool", "hello"}, flags: []string{"--annotation", "wazero.dev/runtime=wasm"}}
		if r := d.run(t, forced); r.exit == 0 || !strings.Contains(r.stderr, "/nativetool") {
			t.Errorf("ctr run of a native image with wazero.dev/runtime=wasm: exit %d, stderr %q; want a failure naming /nativetool", r.exit, r.stderr)
		}
		bad := runOpts{image: nativeToolImage, args: []string{"/nativetool", "hello"}, flags: []string{"--annotation", "wazero.dev/runtime=docker"}}
		if r := d.run(t, bad); r.exit == 0 || !strings.Contains(r.stderr, "wazero.dev/runtime") {
			t.Errorf("ctr run with wazero.dev/runtime=docker: exit %d, stderr %q; want a failure naming the annotation", r.exit, r.stderr)
		}
	})
}

// runNativeDetached starts args in the native-tool image with ctr run --detach and waits until the
// task runs.
func runNativeDetached(t *testing.T, d *daemon, id string, args []string, extra ...string) {
	t.Helper()
	t.Cleanup(func() { d.ensureRemoved(t, id) })
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	a := d.runArgs(runOpts{image: nativeToolImage, id: id, args: args}, append([]string{"--detach"}, extra...)...)
	if r := d.exec(ctx, nil, a...); r.exit != 0 {
		t.Fatalf("ctr %s: exit %d\n%s", strings.Join(a, " "), r.exit, r)
	}
	if !d.waitStatus(t, id, "RUNNING", 30*time.Second) {
		t.FailNow()
	}
}

// runcStatus is runc's status of container id in the shim's runc root for ns ("" if unknown).
func runcStatus(ns, id string) string {
	out, err := exec.Command("runc", "--root", runcStateDir(ns), "state", id).Output()
	if err != nil {
		return ""
	}
	var st struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(out, &st) != nil {
		return ""
	}
	return st.Status
}

// TestCtrNativeLifecycle: a long-running native container through ctr: its cgroup, pause and
// resume (runc's freezer), metrics, exec (output, exit status, a missing program), a graceful SIGTERM; then a
// second one whose shim is SIGKILLed: containerd's `delete` action removes it with runc (process,
// cgroup, runc state, rootfs mount).
func TestCtrNativeLifecycle(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		d.importImage(t, filepath.Join(imagesDir, "native-tool.tar"))
		fdsBefore := fdCount(t, d.cmd.Process.Pid)
		id := newID(t, d)
		runNativeDetached(t, d, id, []string{"/nativetool", "wait-term"})
		pid := d.taskPid(t, id)
		if len(containerCgroups(d.ns, id)) == 0 {
			t.Errorf("no cgroup /%s/%s for the native container", d.ns, id)
		}
		if _, ok := runnerOf(id); ok {
			t.Errorf("a wazero runner runs the native container %s", id)
		}
		if st := runcStatus(d.ns, id); st != "running" {
			t.Errorf("runc state of %s in %s: %q, want running", id, runcStateDir(d.ns), st)
		}

		if _, se, code := d.ctr(t, "task", "pause", id); code != 0 {
			t.Errorf("ctr task pause: exit %d: %s", code, se)
		}
		if s, st := d.taskStatus(t, id), runcStatus(d.ns, id); s != "PAUSED" || st != "paused" {
			t.Errorf("after pause: task %s, runc %s; want PAUSED, paused", s, st)
		}
		if _, se, code := d.ctr(t, "task", "resume", id); code != 0 {
			t.Errorf("ctr task resume: exit %d: %s", code, se)
		}
		if s, st := d.taskStatus(t, id), runcStatus(d.ns, id); s != "RUNNING" || st != "running" {
			t.Errorf("after resume: task %s, runc %s; want RUNNING, running", s, st)
		}
		if out, se, code := d.ctr(t, "task", "metrics", id); code != 0 || !strings.Contains(out, "memory") {
			t.Errorf("ctr task metrics: exit %d, output %q %s; want memory metrics", code, out, se)
		}
		if out, se, code := d.ctr(t, "task", "exec", "--exec-id", "x1", id, "/nativetool", "hello", "from-exec"); code != 0 || !strings.Contains(out, "hello from native from-exec") {
			t.Errorf("ctr task exec into a native container: exit %d, stdout %q, stderr %q; want 0 and %q", code, out, se, "hello from native from-exec")
		}
		if _, se, code := d.ctr(t, "task", "exec", "--exec-id", "x2", id, "/nativetool", "exit", "5"); code != 5 {
			t.Errorf("ctr task exec of a failing command: exit %d (stderr %q), want 5", code, se)
		}
		if _, se, code := d.ctr(t, "task", "exec", "--exec-id", "x3", id, "/no-such-program"); code == 0 || !strings.Contains(se, "no-such-program") {
			t.Errorf("ctr task exec of a missing program: exit %d, stderr %q; want an error naming it", code, se)
		}
		if _, se, code := d.ctr(t, "task", "kill", "--signal", "SIGTERM", id); code != 0 {
			t.Errorf("ctr task kill SIGTERM: exit %d: %s", code, se)
		}
		if !d.waitStatus(t, id, "STOPPED", 20*time.Second) {
			t.Errorf("the native container did not stop on SIGTERM")
		}
		if _, se, code := d.ctr(t, "task", "rm", id); code != 0 || strings.Contains(se, "non-zero exit code") {
			t.Errorf("ctr task rm %s: exit %d: %s; want exit status 0 (it exits 0 on SIGTERM)", id, code, se)
		}
		d.ensureRemoved(t, id)
		if processAlive(pid) {
			t.Errorf("native process %d still alive after ctr task rm", pid)
		}
		if _, err := os.Stat(filepath.Join(runcStateDir(d.ns), id)); err == nil {
			t.Errorf("runc state of %s left after ctr task rm", id)
		}

		// A dead shim: containerd's delete action runs runc delete --force.
		dead := newID(t, d)
		runNativeDetached(t, d, dead, []string{"/nativetool", "wait-term"})
		t.Cleanup(func() { removeFIFOsOf(t, d, dead) })
		dpid := d.taskPid(t, dead)
		shim := shimServerFor(t, d, dead)
		if err := syscallKill(shim.pid); err != nil {
			t.Fatalf("kill shim %d: %v", shim.pid, err)
		}
		waitGone := func(what string, gone func() bool) {
			t.Helper()
			for end := time.Now().Add(30 * time.Second); !gone(); time.Sleep(100 * time.Millisecond) {
				if time.Now().After(end) {
					t.Errorf("%s still there 30 s after the shim was killed\ndaemon log:\n%s", what, logLinesFor(d, dead))
					return
				}
			}
		}
		waitGone(fmt.Sprintf("native process %d", dpid), func() bool { return !processAlive(dpid) })
		waitGone("runc state", func() bool { _, err := os.Stat(filepath.Join(runcStateDir(d.ns), dead)); return err != nil })
		waitGone("cgroup", func() bool { return len(containerCgroups(d.ns, dead)) == 0 })
		waitGone("rootfs mount", func() bool { _, ok := rootfsMounted(d, dead); return !ok })
		if d.taskStatus(t, dead) != "" {
			d.ctr(t, "task", "rm", dead)
		}
		d.ensureRemoved(t, dead)
		removeFIFOsOf(t, d, dead)
		for _, l := range daemonLeaks(t, d, fdsBefore) {
			t.Errorf("left: %s", l)
		}
	})
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
