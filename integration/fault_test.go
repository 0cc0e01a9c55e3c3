package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Faults: what containerd sees after a part breaks under a running container.

// TestContainerdRestart: containerd stopped and started again while a task runs. The task keeps
// running, containerd reconnects to its shim, and the exit that happens later is reported.
func TestContainerdRestart(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		id := newID(t, d)
		runDetached(t, d, id, testprog("sleep", "3"))
		pid := d.taskPid(t, id)
		// A runc task beside it: what containerd does to its tasks across a restart.
		d.importImage(t, filepath.Join(imagesDir, "pause.tar"))
		rid := newID(t, d) + "-runc"
		runRuncDetached(t, d, rid)
		d.stop()
		if err := d.start(); err != nil {
			t.Fatalf("restart containerd: %v", err)
		}
		t.Logf("after the restart: runc task %q, wazero task %q", d.taskStatus(t, rid), d.taskStatus(t, id))
		if st := d.taskStatus(t, id); st != "RUNNING" {
			t.Fatalf("after the restart the task is %q, want RUNNING; containerd's log:\n%s", st, tail(d.logPath(), 40))
		}
		if got := d.taskPid(t, id); got != pid {
			t.Errorf("after the restart the task's pid is %d, want %d", got, pid)
		}
		if !d.waitStatus(t, id, "STOPPED", 30*time.Second) {
			t.Fatal("the exit after the restart was not reported")
		}
		if _, se, code := d.ctr(t, "task", "rm", id); code != 0 {
			t.Errorf("ctr task rm: exit %d: %s", code, se)
		}
	})
}

// TestRunnerKilled: a runner SIGKILLed while its guest runs (the OOM killer, an operator) is
// reported as exited with 137, and its container can be removed.
func TestRunnerKilled(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		id := newID(t, d)
		runDetached(t, d, id, testprog("sleep", "60"))
		if err := unix.Kill(d.taskPid(t, id), unix.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if !d.waitStatus(t, id, "STOPPED", 20*time.Second) {
			t.FailNow()
		}
		_, se, code := d.ctr(t, "task", "rm", id)
		if code != 0 {
			t.Errorf("ctr task rm: exit %d: %s", code, se)
		}
		if !strings.Contains(se, "137") {
			t.Errorf("ctr task rm says %q, want the exit status 137", se)
		}
	})
}

// TestCacheDirFaults: a compilation cache directory that is full (ENOSPC) or read-only costs the
// container nothing but the cache: it runs, and the shim logs why the module was not cached.
func TestCacheDirFaults(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		for _, tc := range []struct {
			name  string
			mount func() error
		}{
			{"full", func() error { return unix.Mount("tmpfs", d.cacheDir, "tmpfs", 0, "size=16k,mode=0700") }},
			{"read-only", func() error {
				// Empty (so the module is not in it) and read-only.
				if err := unix.Mount("tmpfs", d.cacheDir, "tmpfs", 0, "size=1m,mode=0700"); err != nil {
					return err
				}
				return unix.Mount("", d.cacheDir, "", unix.MS_REMOUNT|unix.MS_RDONLY, "size=1m,mode=0700")
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if err := os.MkdirAll(d.cacheDir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := tc.mount(); err != nil {
					t.Fatalf("mount over the cache dir: %v", err)
				}
				t.Cleanup(func() { _ = unix.Unmount(d.cacheDir, unix.MNT_DETACH) })
				if n := len(cacheFiles(t, d.cacheDir)); n != 0 {
					t.Fatalf("%d cache entries visible: the module would not be compiled", n)
				}
				id := newID(t, d)
				// A module this cache has not seen (the mount hides the entries), compiled first.
				r := d.run(t, runOpts{id: id, args: []string{"/hello-go.wasm"}, env: []string{"WAZERO_COLD_START=compile"}})
				if r.exit != 0 || !strings.Contains(r.stdout, helloGoWant) {
					t.Fatalf("hello-go with the cache %s: exit %d\n%s\n%s", tc.name, r.exit, r, logLinesFor(d, id))
				}
				if log := logLinesFor(d, id); !strings.Contains(log, "compilation cache") {
					t.Errorf("the shim did not log the cache problem:\n%s", log)
				}
			})
		}
	})
}
