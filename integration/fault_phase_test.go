package integration

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Faults at each phase of a container's and of a background compile's life: what containerd
// sees afterwards, and that nothing is left (the suite's leak check runs after every test).

// runnerKilledWant is the shim's error for a runner killed before it was ready.
const runnerKilledWant = "the runner exited before it was ready: killed by signal 9"

// fillArg is engine.FillArg: argv[1] of a filler (a background compile).
const fillArg = "fill-cache"

// fillerProcs lists the live fillers of the suite's shim binary.
func fillerProcs() []shimProc {
	var out []shimProc
	for _, p := range shimProcs() {
		if len(p.argv) > 1 && p.argv[1] == fillArg {
			out = append(out, p)
		}
	}
	return out
}

// fillerFor waits for the filler of container id (argv[2]) that has started again in its cgroup
// (its environment carries WAZERO_FILL_STAGE=running) and returns it.
func fillerFor(t *testing.T, id string) shimProc {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, p := range fillerProcs() {
			if len(p.argv) > 2 && p.argv[2] == id {
				env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.pid))
				if strings.Contains(string(env), "WAZERO_FILL_STAGE=running") {
					return p
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no filler for %s appeared; processes: %v", id, shimProcs())
	return shimProc{}
}

// flockHolders returns the pids holding flock locks on the inodes of paths (from /proc/locks).
func flockHolders(paths []string) map[int]bool {
	inodes := map[uint64]bool{}
	for _, p := range paths {
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil {
			inodes[st.Ino] = true
		}
	}
	out := map[int]bool{}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return out
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		// "1: FLOCK  ADVISORY  WRITE 12345 fd:01:123456 0 EOF"
		fs := strings.Fields(s.Text())
		if len(fs) < 6 || fs[1] != "FLOCK" {
			continue
		}
		dev := strings.Split(fs[5], ":")
		ino, err := strconv.ParseUint(dev[len(dev)-1], 10, 64)
		if err != nil || !inodes[ino] {
			continue
		}
		if pid, err := strconv.Atoi(fs[4]); err == nil {
			out[pid] = true
		}
	}
	return out
}

// slotFiles are the node's fill slot lock files in cacheDir (engine's locks/fill-N.lock), more
// than any machine here has CPUs.
func slotFiles(cacheDir string) []string {
	var out []string
	for i := range 64 {
		out = append(out, filepath.Join(cacheDir, "locks", fmt.Sprintf("fill-%d.lock", i)))
	}
	return out
}

// holdSlots takes every fill slot of cacheDir, so that a filler queues; release gives them back.
func holdSlots(t *testing.T, cacheDir string) (release func()) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(cacheDir, "locks"), 0o700); err != nil {
		t.Fatal(err)
	}
	var held []*os.File
	for _, p := range slotFiles(cacheDir) {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			t.Fatalf("hold %s: %v", p, err)
		}
		held = append(held, f)
	}
	done := false
	release = func() {
		if done {
			return
		}
		done = true
		for _, f := range held {
			f.Close()
		}
	}
	t.Cleanup(release)
	return release
}

// TestFillerKilled: a background compile SIGKILLed while it waits for a fill slot, while it
// compiles, and after its shim has exited. The container it was started for is unaffected, a
// live shim logs the kill and removes the filler's cgroup (a filler that outlived its shim leaves
// its cgroup to the next filler's sweep), its slot is free again, no cache entry is left half
// written (the module's next run is interpreted again), and the next background compile
// completes and is used.
func TestFillerKilled(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		for _, phase := range []string{"queued", "compiling"} {
			t.Run(phase, func(t *testing.T) {
				resetCache(t, d)
				release := func() {}
				if phase == "queued" {
					release = holdSlots(t, d.cacheDir)
				}
				// A service run in the interpreter: its shim lives on while its filler compiles the
				// biggest test module (seconds, at nice 10 with one CPU).
				addr := fmt.Sprintf("127.0.0.1:%d", freeLoopbackPort(t))
				id := newID(t, d)
				runDetached(t, d, id, []string{"/httpserver.wasm"}, "--net-host",
					"--env", "WAZERO_LISTEN="+addr, "--env", "WAZERO_COLD_START=interpret")
				if f := waitReady(t, d, id); f["interpreted"] != "true" {
					t.Fatalf("not interpreted (%v): no filler to kill", f)
				}
				f := fillerFor(t, id)
				cgs := fillerCgroups(f.pid)
				if len(cgs) == 0 {
					t.Fatalf("filler %d is in no cgroup under %s: %v", f.pid, fillParent, procCgroups(f.pid))
				}
				if phase == "compiling" {
					waitSlotTaken(t, d, f)
				}
				if err := unix.Kill(f.pid, unix.SIGKILL); err != nil {
					t.Fatal(err)
				}
				waitLog(t, d, id, "background compile killed (SIGKILL)")
				waitGone(t, "the killed filler's cgroups", func() []string { return existing(cgs) })
				if code, body := getUntil(t, "http://"+addr+"/hello", 10*time.Second); code != 200 {
					t.Errorf("the service after its filler was killed: GET /hello %d %q", code, body)
				}
				killRemove(t, d, id)
				release()
				wantRecompiled(t, d, "/httpserver.wasm")
			})
		}
		t.Run("orphan", func(t *testing.T) {
			// A command's container is deleted, and its shim gone, long before its filler ends.
			resetCache(t, d)
			release := holdSlots(t, d.cacheDir)
			id := newID(t, d)
			r := d.run(t, runOpts{id: id, args: []string{"/hello-go.wasm"}, env: []string{"A=1"}})
			if r.exit != 0 || !strings.Contains(r.stdout, helloGoWant) {
				t.Fatalf("hello-go: exit %d\n%s", r.exit, r)
			}
			f := fillerFor(t, id)
			cgs := fillerCgroups(f.pid)
			waitGone(t, "the shim of "+id, func() []string {
				var out []string
				for _, p := range shimProcs() {
					if p.flag("id") == id {
						out = append(out, fmt.Sprint(p.pid))
					}
				}
				return out
			})
			if err := unix.Kill(f.pid, unix.SIGKILL); err != nil {
				t.Fatal(err)
			}
			waitGone(t, "the killed filler", func() []string {
				if f.alive() {
					return []string{fmt.Sprint(f.pid)}
				}
				return nil
			})
			// Its cgroup is empty and stays until a sweep finds it stale (a minute old): age it.
			if len(existing(cgs)) == 0 {
				t.Fatalf("the orphan filler's cgroups %v are gone already: who removed them?", cgs)
			}
			old := time.Now().Add(-2 * time.Minute)
			for _, c := range cgs {
				if err := os.Chtimes(c, old, old); err != nil {
					t.Fatal(err)
				}
			}
			release()
			wantRecompiled(t, d, "/hello-go.wasm") // its filler's start sweeps the stale cgroup
			if left := existing(cgs); len(left) > 0 {
				t.Errorf("the next filler did not sweep the orphan's empty cgroups %v", left)
			}
		})
	})
}

// fillParent is the fillers' cgroup parent (pkg/shim's fillCgroupParent).
const fillParent = "/containerd-shim-wazero-fill"

// fillerCgroups returns the cgroup directories of pid under fillParent.
func fillerCgroups(pid int) []string {
	var out []string
	for _, c := range procCgroups(pid) {
		if strings.Contains(c, fillParent+"/") {
			out = append(out, c)
		}
	}
	return out
}

// waitSlotTaken waits until filler f holds a fill slot: it compiles from then on.
func waitSlotTaken(t *testing.T, d *daemon, f shimProc) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !flockHolders(slotFiles(d.cacheDir))[f.pid] {
		if !f.alive() {
			t.Fatalf("filler %d ended before it could be killed compiling", f.pid)
		}
		if time.Now().After(deadline) {
			t.Fatalf("filler %d never took a slot", f.pid)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// wantRecompiled checks that nothing is cached for module, runs it in the interpreter, waits
// for its background compile to write the cache marker, and runs it again from the cache.
func wantRecompiled(t *testing.T, d *daemon, module string) {
	t.Helper()
	digest := strings.TrimPrefix(fileDigest(t, filepath.Join(repoRoot, "testdata", "build", strings.TrimPrefix(module, "/"))), "sha256:")
	marker := filepath.Join(d.cacheDir, "seen", digest)
	if _, err := os.Stat(marker); err == nil {
		t.Fatalf("cache marker %s exists after the filler was killed", marker)
	}
	run := func(policy string) map[string]string {
		id := newID(t, d)
		env := "WAZERO_COLD_START=" + policy
		if module == "/httpserver.wasm" {
			addr := fmt.Sprintf("127.0.0.1:%d", freeLoopbackPort(t))
			runDetached(t, d, id, []string{module}, "--net-host", "--env", "WAZERO_LISTEN="+addr, "--env", env)
			f := waitReady(t, d, id)
			killRemove(t, d, id)
			return f
		}
		if r := d.run(t, runOpts{id: id, args: []string{module}, env: []string{env}}); r.exit != 0 {
			t.Fatalf("%s: exit %d\n%s", module, r.exit, r)
		}
		return waitReady(t, d, id)
	}
	if f := run("interpret"); f["cacheHit"] != "false" {
		t.Errorf("%s after the killed filler: cacheHit=%q, want false (nothing cached)", module, f["cacheHit"])
	}
	waitFile(t, marker, 3*time.Minute)
	if f := run("compile"); f["cacheHit"] != "true" {
		t.Errorf("%s after a completed background compile: cacheHit=%q, want true", module, f["cacheHit"])
	}
}

// TestKilledWhileCreating: the runner, or the shim, SIGKILLed while Create compiles the module.
// ctr run fails with an error (it does not hang), the container can be removed, and the runner,
// its cgroup and the rootfs mount are gone.
func TestKilledWhileCreating(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		for _, victim := range []string{"runner", "shim"} {
			t.Run(victim, func(t *testing.T) {
				resetCache(t, d) // a cold compile of the biggest test module: Create takes a while
				id := newID(t, d)
				killed := killOnceRunning(id, victim)
				r := d.run(t, runOpts{id: id, args: []string{"/httpserver.wasm"}, env: []string{"WAZERO_COLD_START=compile"}, timeout: 90 * time.Second})
				what := <-killed
				t.Logf("killed: %s", what)
				if !strings.HasPrefix(what, victim) || !strings.HasSuffix(what, "<nil>") {
					t.Fatalf("kill during Create: %s", what)
				}
				if r.exit == 0 {
					t.Fatalf("ctr run succeeded although its %s was killed during Create\n%s", victim, r)
				}
				if victim == "runner" && !strings.Contains(r.stderr, runnerKilledWant) {
					t.Errorf("ctr run's error does not say %q:\n%s", runnerKilledWant, r.stderr)
				} else if r.stderr == "" {
					t.Errorf("ctr run failed without saying why")
				}
				if d.containerExists(t, id) {
					t.Errorf("container %s still exists after ctr run --rm", id)
				}
				waitGone(t, "processes of "+id, func() []string { return procsOf(id) })
				waitGone(t, "cgroups of "+id, func() []string { return existing(nsCgroupDirsOf(d.ns, id)) })
			})
		}
	})
}

// TestKillRacingExit: SIGKILL sent to a task at random moments around its own exit (the guest
// sleeps 1 s and exits 0). Each run reports either 0 or 137, never hangs, and is removable.
func TestKillRacingExit(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		seen := map[int]int{}
		for i := range 8 {
			id := newID(t, d)
			runDetached(t, d, id, testprog("sleep", "1"))
			time.Sleep(time.Duration(rand.IntN(900)) * time.Millisecond)
			d.ctr(t, "task", "kill", "--signal", "SIGKILL", id) // may find the task already stopped
			if !d.waitStatus(t, id, "STOPPED", 20*time.Second) {
				t.Fatalf("run %d: task %s did not stop", i, id)
			}
			_, se, code := d.ctr(t, "task", "rm", id)
			if code != 0 {
				t.Fatalf("run %d: ctr task rm: exit %d: %s", i, code, se)
			}
			st := 0 // ctr task rm says nothing of a zero exit status
			switch {
			case strings.Contains(se, fmt.Sprintf(exitWantFmt, 137)):
				st = 137
			case strings.Contains(se, "exit code"):
				t.Errorf("run %d: ctr task rm says %q, want exit status 0 or 137", i, se)
			}
			seen[st]++
			if _, se, code := d.ctr(t, "container", "rm", id); code != 0 {
				t.Errorf("run %d: ctr container rm: exit %d: %s", i, code, se)
			}
		}
		t.Logf("exit statuses seen: %v", seen)
	})
}

// TestShimKilledRacingExit: the shim SIGKILLed at random moments around its container's exit
// (the guest sleeps 1 s and exits 0). containerd notices the dead shim and cleans up: the task
// ends (stopped or gone), the container is removable, and the runner does not outlive its shim.
func TestShimKilledRacingExit(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		for i := range 4 {
			id := newID(t, d)
			runDetached(t, d, id, testprog("sleep", "1"))
			shim := shimServerFor(t, d, id)
			time.Sleep(time.Duration(rand.IntN(1200)) * time.Millisecond)
			unix.Kill(shim.pid, unix.SIGKILL)
			deadline := time.Now().Add(20 * time.Second)
			for st := d.taskStatus(t, id); st != "STOPPED" && st != ""; st = d.taskStatus(t, id) {
				if time.Now().After(deadline) {
					t.Fatalf("run %d: task %s is %q 20 s after its shim was killed", i, id, st)
				}
				time.Sleep(100 * time.Millisecond)
			}
			d.ctr(t, "task", "rm", id) // gone already when containerd cleaned up the dead shim
			if _, se, code := d.ctr(t, "container", "rm", id); code != 0 {
				t.Errorf("run %d: ctr container rm after the shim was killed: exit %d: %s", i, code, se)
			}
			// ctr removes a detached task's FIFOs when it deletes the task; a task containerd
			// already removed after its shim died leaves them to the client (ctr's own files, in
			// its --fifo-dir, which the leak test checks).
			removeFIFOsOf(t, d, id)
			waitGone(t, "processes of "+id, func() []string { return procsOf(id) })
		}
	})
}

// killOnceRunning SIGKILLs, as soon as container id's runner exists, the runner (victim
// "runner") or its shim ("shim"), and then sends what it did (or that no runner appeared within
// a minute) on the returned channel.
func killOnceRunning(id, victim string) <-chan string {
	killed := make(chan string, 1)
	go func() {
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			if r, ok := runnerOf(id); ok {
				pid := r.pid
				if victim == "shim" {
					pid = r.ppid
				}
				killed <- fmt.Sprintf("%s %d: %v", victim, pid, unix.Kill(pid, unix.SIGKILL))
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		killed <- "no runner appeared"
	}()
	return killed
}

// procsOf lists the live processes of the suite's shim binary that belong to one of ids: their
// runners (argv[2]) and shim servers (-id).
func procsOf(ids ...string) []string {
	var out []string
	for _, p := range shimProcs() {
		for _, id := range ids {
			if len(p.argv) > 2 && p.argv[2] == id || p.flag("id") == id {
				out = append(out, fmt.Sprint(p.pid, p.argv))
				break
			}
		}
	}
	return out
}

// removeFIFOsOf removes the FIFO sets ctr made for container id in the daemon's FIFO directory.
func removeFIFOsOf(t *testing.T, d *daemon, id string) {
	t.Helper()
	sets, _ := filepath.Glob(filepath.Join(d.dir, "fifo", "*", id+"-std*"))
	for _, f := range sets {
		if err := os.RemoveAll(filepath.Dir(f)); err != nil {
			t.Errorf("remove ctr's FIFOs of %s: %v", id, err)
		}
	}
}

// waitLog waits until the daemon's log has a line about id containing want.
func waitLog(t *testing.T, d *daemon, id, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logLinesFor(d, id), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the containerd %s log has no line about %s with %q:\n%s", d.version, id, want, logLinesFor(d, id))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFile waits until path exists.
func waitFile(t *testing.T, path string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not written within %s", path, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitGone waits up to 15 s until list returns nothing, and fails the test with what is left.
func waitGone(t *testing.T, what string, list func() []string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		left := list()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s left: %v", what, left)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// existing returns the paths of paths that exist.
func existing(paths []string) []string {
	var out []string
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// nsCgroupDirsOf lists the cgroup directories the shim would create for container id of
// namespace ns (ctr's default cgroups path /NS/ID), in every hierarchy.
func nsCgroupDirsOf(ns, id string) []string {
	var out []string
	for _, dir := range nsCgroupDirs(ns) {
		out = append(out, filepath.Join(dir, id))
	}
	return out
}

// TestModulesDirRemoved: the modules directory (the copies of modules taken from image layers)
// removed, or replaced by a file, under a running shim. The pod's shim keeps serving: the next
// container of a wasm-layers image copies its module again from the content store; a path that
// is not a directory fails that container's Create with an error naming the path, and the
// container after the path is repaired runs.
func TestModulesDirRemoved(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		if d.v1() {
			t.Log("containerd 1.6 cannot unpack wasm-layers images (TestImageLayouts): nothing reaches the modules directory")
			return
		}
		d.importImage(t, filepath.Join(imagesDir, "hello-layers.tar"))
		ann := []string{"--annotation", "io.kubernetes.cri.sandbox-id=grp-" + randHex(4)}
		keep := newID(t, d)
		runDetached(t, d, keep, testprog("sleep", "120"), ann...)
		shim := shimServerFor(t, d, keep)
		modules := filepath.Join(filepath.Dir(d.cacheDir), "modules")
		runLayers := func() result {
			return d.run(t, runOpts{image: helloLayersImage, flags: ann})
		}
		if r := runLayers(); r.exit != 0 || !strings.Contains(r.stdout, helloWant) {
			t.Fatalf("wasm-layers container: exit %d\n%s", r.exit, r)
		}
		if err := os.RemoveAll(modules); err != nil {
			t.Fatal(err)
		}
		if r := runLayers(); r.exit != 0 || !strings.Contains(r.stdout, helloWant) {
			t.Fatalf("wasm-layers container after the modules directory was removed: exit %d\n%s", r.exit, r)
		}
		checkModulesDir(t, d, filepath.Join(repoRoot, "testdata", "build", "hello.wasm"))

		if err := os.RemoveAll(modules); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(modules, []byte("not a directory"), 0o600); err != nil {
			t.Fatal(err)
		}
		r := runLayers()
		if r.exit == 0 {
			t.Errorf("wasm-layers container with a file in place of the modules directory: succeeded\n%s", r)
		} else if !strings.Contains(r.stderr, modules) {
			t.Errorf("the error does not name %s:\n%s", modules, r.stderr)
		}
		os.Remove(modules)
		if r := runLayers(); r.exit != 0 || !strings.Contains(r.stdout, helloWant) {
			t.Fatalf("wasm-layers container after the modules directory was repaired: exit %d\n%s", r.exit, r)
		}
		if !shim.alive() {
			t.Errorf("the pod's shim %d exited", shim.pid)
		}
		if st := d.taskStatus(t, keep); st != "RUNNING" {
			t.Errorf("the pod's other container is %q, want RUNNING", st)
		}
		killRemove(t, d, keep)
	})
}

// TestMemoryPressure: the node runs out of memory for its pods, as a kubelet's node allocatable
// enforces it: an ancestor cgroup of the containers (kubepods) has a memory limit, the containers
// none of their own. The kernel's OOM killer picks the runner that holds the memory; containerd
// sees it exit 137 with a /tasks/oom event, the other container beside it and the shims live on,
// and both are removable.
func TestMemoryPressure(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		parent := "/wzpressure-" + randHex(4)
		limit := int64(192 << 20)
		if err := setParentMemoryLimit(parent, limit); err != nil {
			t.Fatal(err)
		}
		ids := []string{newID(t, d), newID(t, d)}
		t.Cleanup(func() {
			for _, id := range ids {
				d.ensureRemoved(t, id)
			}
			removeCgroupTree(parent)
		})
		events := watchEvents(t, d)
		quiet, hog := ids[0], ids[1]
		runDetached(t, d, quiet, testprog("sleep", "120"), "--cgroup", parent+"/"+quiet)
		runDetached(t, d, hog, testprog("grow", "1024"), "--cgroup", parent+"/"+hog)
		if !d.waitStatus(t, hog, "STOPPED", 60*time.Second) {
			t.Fatalf("the container growing past its ancestor's %d MiB limit did not stop", limit>>20)
		}
		_, se, code := d.ctr(t, "task", "rm", hog)
		if code != 0 {
			t.Fatalf("ctr task rm %s: exit %d: %s", hog, code, se)
		}
		if !strings.Contains(se, fmt.Sprintf(exitWantFmt, 137)) {
			t.Errorf("the OOM-killed container: ctr task rm says %q, want exit status 137", se)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(events.String(), "/tasks/oom") || !strings.Contains(events.String(), hog) {
			if time.Now().After(deadline) {
				t.Errorf("no /tasks/oom event for %s:\n%s", hog, events.String())
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if st := d.taskStatus(t, quiet); st != "RUNNING" {
			t.Errorf("the container beside the OOM-killed one is %q, want RUNNING", st)
		}
		if _, se, code := d.ctr(t, "container", "rm", hog); code != 0 {
			t.Errorf("ctr container rm %s: exit %d: %s", hog, code, se)
		}
		killRemove(t, d, quiet)
	})
}

// setParentMemoryLimit creates cgroup parent with a memory limit of limit bytes (swap included
// where the kernel accounts it), on cgroup v2 or in v1's memory hierarchy.
func setParentMemoryLimit(parent string, limit int64) error {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil { // v2
		dir := filepath.Join("/sys/fs/cgroup", parent)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory +pids +cpu"), 0)
		os.WriteFile(filepath.Join(dir, "memory.swap.max"), []byte("0"), 0)
		return os.WriteFile(filepath.Join(dir, "memory.max"), []byte(strconv.FormatInt(limit, 10)), 0)
	}
	dir := filepath.Join("/sys/fs/cgroup/memory", parent)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte(strconv.FormatInt(limit, 10)), 0); err != nil {
		return err
	}
	os.WriteFile(filepath.Join(dir, "memory.memsw.limit_in_bytes"), []byte(strconv.FormatInt(limit, 10)), 0)
	return nil
}

// removeCgroupTree removes cgroup dir and its children in every hierarchy, deepest first, killing
// what is left in them.
func removeCgroupTree(dir string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, root := range roots {
		top := filepath.Join(root, dir)
		var dirs []string
		filepath.WalkDir(top, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if b, err := os.ReadFile(filepath.Join(dirs[i], "cgroup.procs")); err == nil {
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil {
						unix.Kill(pid, unix.SIGKILL)
					}
				}
			}
			for range 50 {
				if os.Remove(dirs[i]) == nil || os.IsNotExist(os.Remove(dirs[i])) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
}
