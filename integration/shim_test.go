//go:build linux

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Tests of the shim's own machinery, beyond running one module: the compilation cache, cleanup
// after a dead shim, the -v/-info actions, pause/resume, metrics and pod-style shim grouping.

const (
	helloGoWant = "hello from go wasip1"
	readyMsg    = `msg="runner ready"`
	sigkillExit = 137
)

// ---- daemon log ---------------------------------------------------------------------------------

// logfmt parses the key=value / key="quoted value" pairs of one logrus text line.
func logfmt(line string) map[string]string {
	out := map[string]string{}
	for i := 0; i < len(line); {
		for i < len(line) && line[i] == ' ' {
			i++
		}
		eq := strings.IndexByte(line[i:], '=')
		if eq < 0 {
			break
		}
		key := line[i : i+eq]
		if strings.ContainsAny(key, " \"") { // not a key=value token: skip the word
			sp := strings.IndexByte(line[i:], ' ')
			if sp < 0 {
				break
			}
			i += sp + 1
			continue
		}
		i += eq + 1
		if i < len(line) && line[i] == '"' {
			if v, err := strconv.QuotedPrefix(line[i:]); err == nil {
				out[key], _ = strconv.Unquote(v)
				i += len(v)
				continue
			}
		}
		end := strings.IndexByte(line[i:], ' ')
		if end < 0 {
			end = len(line) - i
		}
		out[key] = line[i : i+end]
		i += end
	}
	return out
}

// readyLines returns the parsed `runner ready` lines the shim logged (through the daemon's log)
// for container id.
func readyLines(d *daemon, id string) []map[string]string {
	b, _ := os.ReadFile(d.logPath())
	var out []map[string]string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.Contains(l, readyMsg) || !strings.Contains(l, id) {
			continue
		}
		if f := logfmt(l); f["id"] == id {
			out = append(out, f)
		}
	}
	return out
}

// waitReady waits (the shim log reaches the daemon's log asynchronously) for the one
// `runner ready` line of container id and returns its fields.
func waitReady(t *testing.T, d *daemon, id string) map[string]string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ls := readyLines(d, id)
		if len(ls) > 1 {
			t.Errorf("container %s: %d `runner ready` lines, want 1", id, len(ls))
		}
		if len(ls) > 0 {
			t.Logf("runner ready %s: cacheHit=%s compileMillis=%s readyMillis=%s module=%s digest=%s",
				id, ls[0]["cacheHit"], ls[0]["compileMillis"], ls[0]["readyMillis"], ls[0]["module"], ls[0]["digest"])
			return ls[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no `runner ready` line with id=%s in the containerd %s log\n%s", id, d.version, tail(d.logPath(), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logLinesFor returns the daemon's log lines that mention id (for evidence in failures).
func logLinesFor(d *daemon, id string) string {
	b, _ := os.ReadFile(d.logPath())
	return grepLines(b, id)
}

// ---- processes ----------------------------------------------------------------------------------

// shimProc is a live process of the suite's shim binary: a shim server or a runner.
type shimProc struct {
	pid, ppid int
	start     uint64 // /proc/PID/stat starttime: tells a reused pid apart
	argv      []string
}

func (p shimProc) isRunner() bool { return len(p.argv) > 1 && p.argv[1] == "runner" }

// flag returns the value of -name in the shim server's argv.
func (p shimProc) flag(name string) string {
	for i, a := range p.argv {
		if (a == "-"+name || a == "--"+name) && i+1 < len(p.argv) {
			return p.argv[i+1]
		}
		if v, ok := strings.CutPrefix(a, "-"+name+"="); ok {
			return v
		}
	}
	return ""
}

// procStat returns the state, ppid and starttime of pid ("" state when it does not exist).
func procStat(pid int) (state string, ppid int, start uint64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", 0, 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return "", 0, 0
	}
	ppid, _ = strconv.Atoi(f[1])
	start, _ = strconv.ParseUint(f[19], 10, 64)
	return f[0], ppid, start
}

// alive reports whether p still runs (same pid and start time, not a zombie).
func (p shimProc) alive() bool {
	state, _, start := procStat(p.pid)
	return state != "" && state != "Z" && state != "X" && start == p.start
}

// shimProcs lists the live processes of the suite's shim binary.
func shimProcs() []shimProc {
	var out []shimProc
	for _, pid := range shimPIDs() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		_, ppid, start := procStat(pid)
		out = append(out, shimProc{pid: pid, ppid: ppid, start: start, argv: strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")})
	}
	return out
}

// shimServers lists the shim server processes (not runners) connected to daemon d.
func shimServers(d *daemon) []shimProc {
	var out []shimProc
	for _, p := range shimProcs() {
		if !p.isRunner() && p.flag("address") == d.sock() && p.flag("namespace") == d.ns {
			out = append(out, p)
		}
	}
	return out
}

// shimServerFor returns the shim server started for container id (-id ID).
func shimServerFor(t *testing.T, d *daemon, id string) shimProc {
	t.Helper()
	var found []shimProc
	for _, p := range shimServers(d) {
		if p.flag("id") == id {
			found = append(found, p)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one shim server with -id %s, found %d; shim processes: %v", id, len(found), shimProcs())
	}
	return found[0]
}

// runnerFor returns the runner process of container id (argv: SHIM runner ID).
func runnerFor(t *testing.T, id string) shimProc {
	t.Helper()
	var found []shimProc
	for _, p := range shimProcs() {
		if p.isRunner() && len(p.argv) > 2 && p.argv[2] == id {
			found = append(found, p)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one runner for %s, found %d; shim processes: %v", id, len(found), shimProcs())
	}
	return found[0]
}

// cpuTicks is utime+stime of pid (all threads), in clock ticks.
func cpuTicks(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	s, _ := strconv.ParseUint(f[12], 10, 64)
	return u + s
}

// ---- mounts and cgroups -------------------------------------------------------------------------

// rootfsMounted reports whether a mount point of container id's rootfs (…/<ns>/<id>/rootfs) is in
// /proc/self/mountinfo.
func rootfsMounted(d *daemon, id string) (string, bool) {
	for _, mp := range mountsUnder(d.dir) {
		if strings.HasSuffix(mp, "/"+d.ns+"/"+id+"/rootfs") {
			return mp, true
		}
	}
	return "", false
}

// containerCgroups lists the existing cgroup directories of /<ns>/<id>.
func containerCgroups(ns, id string) []string {
	var out []string
	for _, d := range nsCgroupDirs(ns) {
		p := filepath.Join(d, id)
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			out = append(out, p)
		}
	}
	return out
}

// frozen reports the freezer state of /<ns>/<id>: cgroup v1 freezer.state or v2 cgroup.events.
func frozen(ns, id string) (state string, ok bool) {
	if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/freezer", ns, id, "freezer.state")); err == nil {
		return strings.TrimSpace(string(b)), true
	}
	if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", ns, id, "cgroup.events")); err == nil {
		for _, l := range lines(string(b)) {
			if v, ok := strings.CutPrefix(l, "frozen "); ok {
				if v == "1" {
					return "FROZEN", true
				}
				return "THAWED", true
			}
		}
	}
	return "", false
}

// ---- containers ---------------------------------------------------------------------------------

// runDetached starts `ctr run --detach` of testImage with args and waits until it is RUNNING. The
// container is removed when the test ends, whatever happened.
func runDetached(t *testing.T, d *daemon, id string, args []string, extra ...string) {
	t.Helper()
	t.Cleanup(func() { d.ensureRemoved(t, id) })
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	a := d.runArgs(runOpts{image: testImage, id: id, args: args}, append([]string{"--detach"}, extra...)...)
	r := d.exec(ctx, nil, a...)
	t.Logf("ctr %s\n%s", strings.Join(a, " "), r)
	if r.exit != 0 {
		t.Fatalf("ctr run --detach %s: exit %d\n%s", id, r.exit, r)
	}
	if !d.waitStatus(t, id, "RUNNING", 30*time.Second) {
		t.FailNow()
	}
}

// killRemove SIGKILLs task id, waits for STOPPED, removes task and container, and returns what
// ctr task rm wrote on stderr (it carries the exit status).
func killRemove(t *testing.T, d *daemon, id string) string {
	t.Helper()
	if _, se, code := d.ctr(t, "task", "kill", "--signal", "SIGKILL", id); code != 0 {
		t.Errorf("ctr task kill %s: exit %d: %s", id, code, se)
	}
	d.waitStatus(t, id, "STOPPED", 20*time.Second)
	_, rmErr, code := d.ctr(t, "task", "rm", id)
	if code != 0 {
		t.Errorf("ctr task rm %s: exit %d: %s", id, code, rmErr)
	}
	if _, se, code := d.ctr(t, "container", "rm", id); code != 0 {
		t.Errorf("ctr container rm %s: exit %d: %s", id, code, se)
	}
	return rmErr
}

// eventWatch collects `ctr events` output while a test runs.
type eventWatch struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	cancel context.CancelFunc
	done   chan struct{}
}

func (w *eventWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *eventWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func (w *eventWatch) stop() { w.cancel(); <-w.done }

// watchEvents starts `ctr events` against d; stop it with stop (also done at cleanup).
func watchEvents(t *testing.T, d *daemon) *eventWatch {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	w := &eventWatch{cancel: cancel, done: make(chan struct{})}
	cmd := exec.CommandContext(ctx, filepath.Join(d.bin, "ctr"), "--address", d.sock(), "--namespace", d.ns, "events")
	cmd.Env = filteredEnv("CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE")
	cmd.Stdout, cmd.Stderr = w, w
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("ctr events: %v", err)
	}
	go func() { cmd.Wait(); close(w.done) }()
	var once sync.Once
	t.Cleanup(func() { once.Do(w.stop) })
	time.Sleep(300 * time.Millisecond) // let it subscribe
	return w
}

// taskExits returns the exit_status of every /tasks/exit event for container id in ctr events
// output (a missing exit_status is 0: protobuf JSON omits zero values).
func taskExits(out, id string) []int {
	var st []int
	for _, l := range lines(out) {
		if !strings.Contains(l, "/tasks/exit") {
			continue
		}
		i := strings.IndexByte(l, '{')
		if i < 0 {
			continue
		}
		var ev struct {
			ContainerID string `json:"container_id"`
			ExitStatus  int    `json:"exit_status"`
		}
		if json.Unmarshal([]byte(l[i:]), &ev) == nil && ev.ContainerID == id {
			st = append(st, ev.ExitStatus)
		}
	}
	return st
}

// ---- 1, 2: the compilation cache ----------------------------------------------------------------

// cacheFiles lists the regular files below the daemon's compilation cache directory.
func cacheFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// fileDigest is "sha256:<hex>" of the file at path.
func fileDigest(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return digestOf(b)
}

// resetCache empties the daemon's compilation cache, so the next compilation is cold.
func resetCache(t *testing.T, d *daemon) {
	t.Helper()
	if err := os.RemoveAll(d.cacheDir); err != nil {
		t.Fatalf("empty the compilation cache %s: %v", d.cacheDir, err)
	}
}

// runHelloGo runs /hello-go.wasm and checks it printed its greeting and exited 0; it returns the
// `runner ready` fields the shim logged for the container. env is added to the container's
// environment; without it the cold-start policy is compile (these tests are about compiling).
func runHelloGo(t *testing.T, d *daemon, env ...string) map[string]string {
	t.Helper()
	id := newID(t, d)
	if len(env) == 0 {
		env = []string{"WAZERO_COLD_START=compile"}
	}
	r := d.run(t, runOpts{id: id, args: []string{"/hello-go.wasm"}, env: env})
	if r.exit != 0 || !strings.Contains(r.stdout, helloGoWant) {
		t.Fatalf("hello-go: exit %d (want 0), stdout must contain %q\n%s\ndaemon log for %s:\n%s",
			r.exit, helloGoWant, r, id, logLinesFor(d, id))
	}
	return waitReady(t, d, id)
}

func TestCompilationCache(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		resetCache(t, d) // earlier tests compiled hello-go too

		cold := runHelloGo(t, d)
		if cold["cacheHit"] != "false" {
			t.Errorf("first run with an empty cache: cacheHit=%q, want false", cold["cacheHit"])
		}
		if cold["module"] != "/hello-go.wasm" {
			t.Errorf("runner ready: module=%q, want /hello-go.wasm", cold["module"])
		}
		// The module's digest correlates the log with the image and the cache's bookkeeping.
		want := fileDigest(t, filepath.Join(repoRoot, "testdata", "build", "hello-go.wasm"))
		if cold["digest"] != want {
			t.Errorf("runner ready: digest=%q, want %s", cold["digest"], want)
		}
		marker := filepath.Join(d.cacheDir, "seen", strings.TrimPrefix(want, "sha256:"))
		if b, err := os.ReadFile(marker); err != nil || !strings.HasPrefix(string(b), "wazero-") {
			t.Errorf("cache marker %s: %q, %v; want the entry it names", marker, b, err)
		}
		files := cacheFiles(t, d.cacheDir)
		if len(files) == 0 {
			t.Fatalf("no file in %s (%s) after a compilation: the cache directory is not used", d.cacheDir, cacheDirEnv)
		}
		t.Logf("cache files: %v", files)
		// The cache holds machine code the runner executes: no one else may write there.
		filepath.WalkDir(d.cacheDir, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				if fi, err := e.Info(); err == nil && fi.Mode().Perm()&0o022 != 0 {
					t.Errorf("cache directory %s has mode %v: writable by others", p, fi.Mode().Perm())
				}
			}
			return nil
		})

		warm := runHelloGo(t, d)
		if warm["cacheHit"] != "true" {
			t.Errorf("second run: cacheHit=%q, want true", warm["cacheHit"])
		}
		cm, _ := strconv.Atoi(cold["compileMillis"])
		wm, _ := strconv.Atoi(warm["compileMillis"])
		t.Logf("compileMillis cold=%d warm=%d", cm, wm)

		// A damaged cache must never break a container: the runner recompiles (or detects it).
		corrupt := func(name string, damage func(path string, size int64) error) {
			t.Run(name, func(t *testing.T) {
				// Start from a good cache entry, whatever an earlier step left.
				resetCache(t, d)
				runHelloGo(t, d)
				files := cacheFiles(t, d.cacheDir)
				if len(files) == 0 {
					t.Fatalf("no cache file to corrupt")
				}
				for _, f := range files {
					fi, err := os.Stat(f)
					if err != nil {
						t.Fatal(err)
					}
					if err := damage(f, fi.Size()); err != nil {
						t.Fatalf("corrupt %s: %v", f, err)
					}
				}
				t.Logf("corrupted %d cache file(s)", len(files))
				after := runHelloGo(t, d)
				t.Logf("after corruption (%s): cacheHit=%s compileMillis=%s", name, after["cacheHit"], after["compileMillis"])
				// And the next run is fine too (the entry was replaced, or detected again).
				next := runHelloGo(t, d)
				t.Logf("the run after: cacheHit=%s compileMillis=%s", next["cacheHit"], next["compileMillis"])
			})
		}
		corrupt("truncated", func(p string, size int64) error { return os.Truncate(p, size/2) })
		corrupt("overwritten", func(p string, size int64) error {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			// Garbage over the middle of the file, size unchanged (machine code, not the header).
			junk := bytes.Repeat([]byte{0xCC}, int(min(4096, max(size/4, 1))))
			_, err = f.WriteAt(junk, size/2)
			return err
		})
		corrupt("emptied", func(p string, size int64) error { return os.Truncate(p, 0) })
	})
}

func TestConcurrentColdStart(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		resetCache(t, d)
		const n = 2
		ids := make([]string, n)
		res := make([]result, n)
		var wg sync.WaitGroup
		for i := range n {
			ids[i] = newID(t, d)
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
				defer cancel()
				res[i] = d.exec(ctx, nil, d.runArgs(runOpts{image: testImage, id: ids[i], args: []string{"/hello-go.wasm"}, env: []string{"WAZERO_COLD_START=compile"}}, "--rm")...)
			}()
		}
		wg.Wait()
		for i, id := range ids {
			d.ensureRemoved(t, id)
			r := res[i]
			t.Logf("%s:\n%s", id, r)
			if r.exit != 0 || !strings.Contains(r.stdout, helloGoWant) {
				t.Errorf("concurrent cold start %s: exit %d (want 0), stdout must contain %q\n%s\ndaemon log:\n%s",
					id, r.exit, helloGoWant, r, logLinesFor(d, id))
				continue
			}
			waitReady(t, d, id)
		}
		if t.Failed() {
			return
		}
		// The cache was empty: exactly one of them compiled, the other waited on the module's lock
		// (locks/<sha256>.lock in the cache) and loaded what the first wrote.
		misses, digests := 0, map[string]bool{}
		for _, id := range ids {
			ls := readyLines(d, id)
			if len(ls) == 0 {
				continue
			}
			if ls[0]["cacheHit"] == "false" {
				misses++
			}
			digests[ls[0]["digest"]] = true
			t.Logf("%s: cacheHit=%s compileMillis=%s digest=%s", id, ls[0]["cacheHit"], ls[0]["compileMillis"], ls[0]["digest"])
		}
		if misses != 1 {
			t.Errorf("%d of %d concurrent cold starts report cacheHit=false, want exactly 1", misses, n)
		}
		if want := fileDigest(t, filepath.Join(repoRoot, "testdata", "build", "hello-go.wasm")); len(digests) != 1 || !digests[want] {
			t.Errorf("runner ready digests %v, want only %s", digests, want)
		}
		// The cache both wrote is usable.
		if f := runHelloGo(t, d); f["cacheHit"] != "true" {
			t.Errorf("run after two concurrent cold starts: cacheHit=%q, want true", f["cacheHit"])
		}
	})
}

// ---- 3: cleanup after a dead shim ---------------------------------------------------------------

func TestDeadShimCleanup(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		t.Run("single", func(t *testing.T) { deadShimCase(t, d, 1, nil) })
		// A pod's shim serves both containers: its death must clean up both.
		t.Run("pod", func(t *testing.T) {
			deadShimCase(t, d, 2, []string{"--annotation", "io.kubernetes.cri.sandbox-id=grp-" + randHex(4)})
		})
		// The namespace's shared server (docs/shared-server.md) too, and its socket and
		// directory go with the first delete.
		t.Run("shared", func(t *testing.T) {
			deadShimCase(t, d, 2, []string{"--annotation", "wazero.dev/shared-server=1m"})
		})
	})
}

// deadShimCase runs n sleeping containers with the ctr flags extra (which put them in one shim
// when n > 1), SIGKILLs the shim and checks that containerd's `delete` action cleaned up after
// each: runner killed, rootfs unmounted, cgroup removed, exit status 137; and, for a shared
// server, its socket and directory removed.
func deadShimCase(t *testing.T, d *daemon, n int, extra []string) {
	type ctrState struct {
		id     string
		runner shimProc
		rootfs string
	}
	var cs []ctrState
	for range n {
		id := newID(t, d)
		runDetached(t, d, id, testprog("sleep", "60"), extra...)
		t.Cleanup(func() { removeFIFOsOf(t, d, id) }) // ctr's, left when the dead shim's task is gone
		c := ctrState{id: id, runner: runnerFor(t, id)}
		var ok bool
		if c.rootfs, ok = rootfsMounted(d, id); !ok {
			t.Fatalf("rootfs of %s not mounted while it runs", id)
		}
		if len(containerCgroups(d.ns, id)) == 0 {
			t.Fatalf("no cgroup /%s/%s while it runs", d.ns, id)
		}
		cs = append(cs, c)
	}
	shim := shimServerFor(t, d, cs[0].id)
	socket := strings.TrimPrefix(d.shimAddress(t, cs[0].id), "unix://")
	for _, c := range cs {
		if c.runner.ppid != shim.pid {
			t.Fatalf("runner of %s (pid %d) is not a child of shim %d", c.id, c.runner.pid, shim.pid)
		}
		t.Logf("%s: shim pid %d, runner pid %d, rootfs %s", c.id, shim.pid, c.runner.pid, c.rootfs)
	}

	events := watchEvents(t, d)
	if err := syscallKill(shim.pid); err != nil {
		t.Fatalf("kill shim %d: %v", shim.pid, err)
	}

	for _, c := range cs {
		id := c.id
		// containerd notices the dead shim and runs `containerd-shim-wazero-v1 ... delete`.
		deadline := time.Now().Add(30 * time.Second)
		status := "?"
		for time.Now().Before(deadline) {
			if status = d.taskStatus(t, id); status == "" || status == "STOPPED" {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if status != "" && status != "STOPPED" {
			t.Errorf("task %s still %s 30s after its shim was killed\ndaemon log:\n%s", id, status, logLinesFor(d, id))
			continue
		}
		t.Logf("task %s status after the shim died: %q (\"\" = gone)", id, status)

		// The delete action may still be finishing when the task is reported: allow a moment.
		waitGone := func(what string, gone func() bool) {
			t.Helper()
			for end := time.Now().Add(10 * time.Second); !gone(); {
				if time.Now().After(end) {
					t.Errorf("%s still there after the dead shim's cleanup\ndaemon log:\n%s", what, logLinesFor(d, id))
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		waitGone(fmt.Sprintf("runner %d of %s", c.runner.pid, id), func() bool { return !c.runner.alive() })
		waitGone("rootfs mount "+c.rootfs, func() bool { _, ok := rootfsMounted(d, id); return !ok })
		waitGone(fmt.Sprintf("cgroup /%s/%s", d.ns, id), func() bool { return len(containerCgroups(d.ns, id)) == 0 })
	}
	if shim.alive() {
		t.Errorf("shim %d survived SIGKILL", shim.pid)
	}
	if slices.Contains(extra, "wazero.dev/shared-server=1m") {
		for _, p := range []string{socket, socket + ".shared"} {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("%s of the dead shared server left after its tasks' cleanup: %v", p, err)
			}
		}
	}

	// The exit status: the TaskExit containerd publishes with what the delete action reported.
	for _, c := range cs {
		var exits []int
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			if exits = taskExits(events.String(), c.id); len(exits) > 0 {
				break
			}
		}
		if len(exits) == 0 {
			t.Errorf("no /tasks/exit event for %s after its shim died", c.id)
		} else if exits[len(exits)-1] != sigkillExit {
			t.Errorf("/tasks/exit for %s: exit_status %d, want %d", c.id, exits[len(exits)-1], sigkillExit)
		}
	}
	events.stop()
	t.Logf("ctr events:\n%s", events.String())

	// ctr cleans up what is left.
	for _, c := range cs {
		if d.taskStatus(t, c.id) != "" {
			_, se, code := d.ctr(t, "task", "rm", c.id)
			t.Logf("ctr task rm %s: exit %d: %s", c.id, code, se)
			if want := fmt.Sprintf(exitWantFmt, sigkillExit); code == 0 && !strings.Contains(se, want) {
				t.Errorf("ctr task rm stderr does not report exit %d (%q):\n%s", sigkillExit, want, se)
			}
			if d.taskStatus(t, c.id) != "" {
				t.Errorf("task %s still listed after ctr task rm", c.id)
			}
		}
		if _, se, code := d.ctr(t, "container", "rm", c.id); code != 0 {
			t.Errorf("ctr container rm %s: exit %d: %s", c.id, code, se)
		}
	}
}

// ---- 4: -v and -info ----------------------------------------------------------------------------

// protoFields returns the length-delimited fields of one protobuf message by field number (enough
// to read RuntimeInfo{name=1, version=2{version=1, revision=2}} without containerd's API types).
func protoFields(b []byte) (map[int][]byte, error) {
	out := map[int][]byte{}
	for len(b) > 0 {
		key, n := uvarint(b)
		if n <= 0 {
			return nil, fmt.Errorf("bad varint")
		}
		b = b[n:]
		field, wire := int(key>>3), key&7
		switch wire {
		case 0:
			_, n := uvarint(b)
			if n <= 0 {
				return nil, fmt.Errorf("bad varint")
			}
			b = b[n:]
		case 2:
			l, n := uvarint(b)
			if n <= 0 || uint64(len(b)-n) < l {
				return nil, fmt.Errorf("bad length")
			}
			out[field] = b[n : n+int(l)]
			b = b[n+int(l):]
		default:
			return nil, fmt.Errorf("unexpected wire type %d", wire)
		}
	}
	return out, nil
}

func uvarint(b []byte) (uint64, int) {
	var x uint64
	for i, c := range b {
		if i == 10 {
			return 0, -1
		}
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return x, i + 1
		}
	}
	return 0, 0
}

func TestVersionAndInfo(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		run := func(stdin string, args ...string) (string, string, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, suite.shimBin, args...)
			cmd.Stdin = strings.NewReader(stdin)
			var so, se bytes.Buffer
			cmd.Stdout, cmd.Stderr = &so, &se
			err := cmd.Run()
			return so.String(), se.String(), err
		}
		vOut, vErr, err := run("", "-v")
		if err != nil {
			t.Fatalf("%s -v: %v\n%s%s", shimName, err, vOut, vErr)
		}
		t.Logf("-v:\n%s", vOut)
		if !strings.Contains(vOut, shimName) {
			t.Errorf("-v output does not name %s:\n%s", shimName, vOut)
		}

		info, iErr, err := run("", "-info")
		if err != nil {
			t.Fatalf("%s -info: %v\n%s", shimName, err, iErr)
		}
		if !strings.Contains(info, runtimeType) {
			t.Errorf("-info output does not contain %q: %q", runtimeType, info)
		}
		f, err := protoFields([]byte(info))
		if err != nil {
			t.Fatalf("-info output is not a protobuf message (%v): %q", err, info)
		}
		if string(f[1]) != runtimeType {
			t.Errorf("RuntimeInfo.name = %q, want %q", f[1], runtimeType)
		}
		vf, err := protoFields(f[2])
		version := string(vf[1])
		if err != nil || version == "" {
			t.Fatalf("RuntimeInfo.version.version missing (%v): %q", err, info)
		}
		t.Logf("-info: name=%s version=%s", f[1], version)
		// One shim, one version: -v must print the version -info reports (manager.go: Version is
		// "printed by -v and reported by -info").
		if !strings.Contains(vOut, version) {
			t.Errorf("-v does not print the shim's version %q that -info reports:\n%s", version, vOut)
		}

		if d.v1() {
			// containerd 1.x: no RuntimeInfo API. The daemon never runs -info and its ctr has no
			// `plugins inspect-runtime` ("No help topic for 'inspect-runtime'", exit 3), so there is
			// no daemon-side view of the shim's name and version to compare. What can be checked is
			// that the daemon's shim v2 runtime, which starts our shim, is loaded.
			so, se, code := d.ctr(t, "plugins", "ls")
			if code != 0 {
				t.Fatalf("ctr plugins ls: exit %d: %s", code, se)
			}
			found := false
			for _, l := range lines(so) {
				if f := strings.Fields(l); len(f) >= 4 && f[0] == "io.containerd.runtime.v2" && f[1] == "task" {
					found = true
					if f[3] != "ok" {
						t.Errorf("containerd %s: plugin io.containerd.runtime.v2 task is %q, want ok:\n%s", d.version, f[3], l)
					}
				}
			}
			if !found {
				t.Errorf("containerd %s: ctr plugins ls does not list io.containerd.runtime.v2 task:\n%s", d.version, so)
			}
			return
		}
		// The daemon runs -info itself for `ctr plugins inspect-runtime`.
		so, se, code := d.ctr(t, "plugins", "inspect-runtime", "--runtime", runtimeType)
		t.Logf("ctr plugins inspect-runtime:\n%s%s", so, se)
		if code != 0 {
			t.Fatalf("ctr plugins inspect-runtime --runtime %s: exit %d: %s", runtimeType, code, se)
		}
		if !strings.Contains(so, runtimeType) || !strings.Contains(so, version) {
			t.Errorf("ctr plugins inspect-runtime does not show %q version %q:\n%s", runtimeType, version, so)
		}
	})
}

// ---- 5: pause and resume ------------------------------------------------------------------------

func TestPauseResume(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		t.Run("pause-resume-kill", func(t *testing.T) { pauseResumeCase(t, d) })
		t.Run("kill-while-paused", func(t *testing.T) {
			// What runc does: a paused task can be killed (SIGKILL, then ctr task rm), nothing hangs.
			id := newID(t, d)
			runDetached(t, d, id, testprog("sleep", "60"))
			runner := runnerFor(t, id)
			if _, se, code := d.ctr(t, "task", "pause", id); code != 0 {
				t.Fatalf("ctr task pause: exit %d: %s", code, se)
			}
			if !d.waitStatus(t, id, "PAUSED", 10*time.Second) {
				t.FailNow()
			}
			se := killRemove(t, d, id)
			if want := fmt.Sprintf(exitWantFmt, sigkillExit); !strings.Contains(se, want) {
				t.Errorf("ctr task rm stderr does not report exit %d:\n%s\ndaemon log:\n%s", sigkillExit, se, logLinesFor(d, id))
			}
			if runner.alive() {
				t.Errorf("runner %d alive after kill and rm of the paused task", runner.pid)
			}
			if cg := containerCgroups(d.ns, id); len(cg) > 0 {
				t.Errorf("cgroups left after rm: %v", cg)
			}
		})
	})
}

func pauseResumeCase(t *testing.T, d *daemon) {
	id := newID(t, d)
	runDetached(t, d, id, testprog("spin", "60"))
	runner := runnerFor(t, id)
	// spin burns CPU: its CPU time advances while it runs and stops while it is frozen.
	advances := func() bool {
		a := cpuTicks(runner.pid)
		time.Sleep(700 * time.Millisecond)
		return cpuTicks(runner.pid) > a
	}
	if !advances() {
		t.Fatalf("spinning runner %d uses no CPU before the pause", runner.pid)
	}

	if _, se, code := d.ctr(t, "task", "pause", id); code != 0 {
		t.Fatalf("ctr task pause: exit %d: %s", code, se)
	}
	if !d.waitStatus(t, id, "PAUSED", 10*time.Second) {
		t.FailNow()
	}
	if st, ok := frozen(d.ns, id); !ok || st != "FROZEN" {
		t.Errorf("cgroup /%s/%s freezer state %q (found=%v), want FROZEN", d.ns, id, st, ok)
	}
	time.Sleep(200 * time.Millisecond) // FREEZING settles
	if advances() {
		t.Errorf("runner %d still uses CPU while PAUSED", runner.pid)
	}

	if _, se, code := d.ctr(t, "task", "resume", id); code != 0 {
		t.Fatalf("ctr task resume: exit %d: %s", code, se)
	}
	if !d.waitStatus(t, id, "RUNNING", 10*time.Second) {
		t.FailNow()
	}
	if st, ok := frozen(d.ns, id); !ok || st != "THAWED" {
		t.Errorf("cgroup /%s/%s freezer state %q (found=%v), want THAWED", d.ns, id, st, ok)
	}
	if !advances() {
		t.Errorf("runner %d uses no CPU after resume", runner.pid)
	}

	se := killRemove(t, d, id)
	if want := fmt.Sprintf(exitWantFmt, sigkillExit); !strings.Contains(se, want) {
		t.Errorf("ctr task rm stderr does not report exit %d:\n%s", sigkillExit, se)
	}
	if runner.alive() {
		t.Errorf("runner %d alive after kill and rm", runner.pid)
	}
	if cg := containerCgroups(d.ns, id); len(cg) > 0 {
		t.Errorf("cgroups left after rm: %v", cg)
	}
}

// ---- 6: metrics ---------------------------------------------------------------------------------

func TestMetrics(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		id := newID(t, d)
		runDetached(t, d, id, testprog("sleep", "60"))
		so, se, code := d.ctr(t, "task", "metrics", id)
		t.Logf("ctr task metrics:\n%s%s", so, se)
		if code != 0 {
			t.Fatalf("ctr task metrics %s: exit %d: %s", id, code, se)
		}
		// Table rows "METRIC VALUE": memory.usage_in_bytes (cgroup v1) or memory.usage (v2).
		usage := int64(-1)
		for _, l := range lines(so) {
			f := strings.Fields(l)
			if len(f) == 2 && (f[0] == "memory.usage_in_bytes" || f[0] == "memory.usage") {
				usage, _ = strconv.ParseInt(f[1], 10, 64)
			}
		}
		if usage <= 0 {
			t.Errorf("ctr task metrics shows no positive memory usage (memory.usage_in_bytes / memory.usage):\n%s", so)
		}

		so, se, code = d.ctr(t, "task", "metrics", "--format", "json", id)
		if code != 0 {
			t.Fatalf("ctr task metrics --format json: exit %d: %s", code, se)
		}
		var m struct {
			Memory struct {
				Usage struct {
					Usage uint64 `json:"usage"`
				} `json:"usage"` // v1: {usage: {usage: N}}
			} `json:"memory"`
			Pids struct {
				Current uint64 `json:"current"`
			} `json:"pids"`
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal([]byte(so), &raw); err != nil {
			t.Fatalf("ctr task metrics --format json: not JSON (%v):\n%s", err, so)
		}
		if _, ok := raw["memory"]; !ok {
			t.Errorf("metrics JSON has no memory section:\n%s", so)
		}
		if json.Unmarshal([]byte(so), &m) == nil && m.Memory.Usage.Usage > 0 {
			t.Logf("memory usage %d bytes, pids %d", m.Memory.Usage.Usage, m.Pids.Current)
		}
		se = killRemove(t, d, id)
		if want := fmt.Sprintf(exitWantFmt, sigkillExit); !strings.Contains(se, want) {
			t.Errorf("ctr task rm stderr does not report exit %d:\n%s", sigkillExit, se)
		}
	})
}

// ---- 7: one shim per pod ------------------------------------------------------------------------

func TestPodGrouping(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		if n := len(shimServers(d)); n != 0 {
			t.Fatalf("%d shim server(s) of this daemon alive before the test: %v", n, shimServers(d))
		}
		group := "grp-" + randHex(4)
		ann := []string{"--annotation", "io.kubernetes.cri.sandbox-id=" + group}
		a, b := newID(t, d), newID(t, d)
		runDetached(t, d, a, testprog("sleep", "60"), ann...)
		runDetached(t, d, b, testprog("sleep", "60"), ann...)

		servers := shimServers(d)
		if len(servers) != 1 {
			t.Fatalf("two containers of pod %s are served by %d shim processes, want 1: %v", group, len(servers), servers)
		}
		shim := servers[0]
		t.Logf("shim %d %v serves %s and %s", shim.pid, shim.argv, a, b)
		for _, id := range []string{a, b} {
			r := runnerFor(t, id)
			if r.ppid != shim.pid {
				t.Errorf("runner of %s (pid %d) has parent %d, want the pod's shim %d", id, r.pid, r.ppid, shim.pid)
			}
		}

		// The first container's removal must not take the shim (and the second container) away.
		killRemove(t, d, a)
		if !shim.alive() {
			t.Fatalf("the pod's shim exited after %s was removed while %s still runs", a, b)
		}
		if st := d.taskStatus(t, b); st != "RUNNING" {
			t.Fatalf("%s is %q after %s was removed, want RUNNING", b, st, a)
		}
		killRemove(t, d, b)

		for end := time.Now().Add(10 * time.Second); len(shimServers(d)) > 0; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("shim processes left after both pod containers were removed: %v", shimServers(d))
			}
		}
	})
}

// ---- small helpers ------------------------------------------------------------------------------

func syscallKill(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill() // SIGKILL
}
