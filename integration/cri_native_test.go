//go:build linux

package integration

// Mixed pods through the CRI: native containers (sidecars, init containers) in a wazero pod, run
// by runc under the pod's shim (pkg/shim/native.go, docs/kubernetes.md "Mixed pods").

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var nativeToolImported = struct {
	sync.Mutex
	m map[string]bool
}{m: map[string]bool{}}

// importNativeTool imports the native-tool image into k8s.io once per daemon.
func (c *criClient) importNativeTool() {
	c.t.Helper()
	nativeToolImported.Lock()
	defer nativeToolImported.Unlock()
	if nativeToolImported.m[c.d.version] {
		return
	}
	if r := c.ctrK8s("images", "import", filepath.Join(imagesDir, "native-tool.tar")); r.exit != 0 {
		c.t.Fatalf("ctr -n k8s.io images import native-tool.tar:\n%s", r)
	}
	nativeToolImported.m[c.d.version] = true
}

// TestCRINativeMixedPod: a wazero pod on a CNI bridge network with native containers in it:
//   - a native init container writes a file into the pod's shared volume (an emptyDir: a host
//     directory) that a wasm container then reads;
//   - a wasm HTTP server and a native sidecar that reaches it on localhost (so the sidecar is in
//     the pod's network namespace) and exits 0 only with the server's answer;
//   - a long-running native container: in the sandbox's network, IPC and UTS namespaces, in its
//     own cgroup, with stats, stopped gracefully (SIGTERM, exit 0);
//   - exec in a native container, and a live memory limit update;
//   - a failing native container's exit code and stderr, and one OOM-killed at its limit;
//   - a pod annotation that forces one container to wasm, refused with the wasm error;
//   - stop and removal with nothing left: processes, mounts, cgroups, runc state.
func TestCRINativeMixedPod(t *testing.T) {
	forEachCRIDaemon(t, func(t *testing.T, c *criClient) {
		c.importNativeTool()
		var tr tracked
		c.bridgeNetwork(t)
		p := c.runPodAnnotated("wz-mixed", "wazero", false, map[string]string{"wazero.dev/runtime.forced": "wasm"})
		pi := p.inspect()
		tr.track(t, p.id, pi.Info.Pid)
		for _, ns := range pi.Info.RuntimeSpec.Linux.Namespaces {
			if ns.Type == "network" && ns.Path != "" {
				tr.netns = append(tr.netns, ns.Path)
			}
		}
		sb, ok := runnerOf(p.id)
		if !ok {
			t.Fatalf("no sandbox runner for %s", p.id)
		}
		emptyDir := t.TempDir()
		mounts := map[string]string{"/data": emptyDir}

		// The init container (native), then the wasm container that reads what it wrote.
		in, _ := p.run(ctrSpec{name: "init", image: nativeToolImage, command: []string{"/nativetool", "write", "/data/init.txt", "from-native-init"}, mounts: mounts})
		tr.ids = append(tr.ids, in)
		if ii := c.waitState(in, stateExited, 30*time.Second); ii.Status.ExitCode != 0 {
			t.Fatalf("native init container: exitCode %d, want 0; logs:\n%s", ii.Status.ExitCode, c.logs(in))
		}
		if out := c.logs(in); !strings.Contains(out, "wrote /data/init.txt") {
			t.Errorf("crictl logs of the native init container = %q, want %q", out, "wrote /data/init.txt")
		}
		rd, _ := p.run(ctrSpec{name: "reader", args: []string{"read", "/data/init.txt"}, mounts: mounts})
		tr.ids = append(tr.ids, rd)
		if ri := c.waitState(rd, stateExited, 30*time.Second); ri.Status.ExitCode != 0 {
			t.Errorf("wasm reader: exitCode %d, want 0; logs:\n%s", ri.Status.ExitCode, c.logs(rd))
		}
		if out := c.logs(rd); !strings.Contains(out, "from-native-init") {
			t.Errorf("the wasm container read %q from the emptyDir, want what the native init container wrote (%q)", out, "from-native-init")
		}
		if _, ok := runnerOf(rd); ok {
			t.Errorf("the wasm reader's runner still lives after it exited")
		}

		// The wasm server and the native sidecar that talks to it over localhost. (Interpreted:
		// its start does not wait for the compiler, which this test is not about.)
		web, _ := p.run(ctrSpec{name: "web", command: []string{"/httpserver.wasm"}, envs: map[string]string{"WAZERO_LISTEN": ":8080", "WAZERO_COLD_START": "interpret"}})
		wi := c.waitState(web, stateRunning, 30*time.Second)
		tr.track(t, web, wi.Info.Pid)
		side, _ := p.run(ctrSpec{name: "sidecar", image: nativeToolImage, command: []string{"/nativetool", "get", "http://127.0.0.1:8080/hello", "hello from wasm http", "30"}})
		tr.ids = append(tr.ids, side)
		if si := c.waitState(side, stateExited, 50*time.Second); si.Status.ExitCode != 0 {
			t.Errorf("native sidecar: exitCode %d, want 0 (it got the wasm server's answer over localhost); logs:\n%s", si.Status.ExitCode, c.logs(side))
		}
		if out := c.logs(side); !strings.Contains(out, `sidecar got "hello from wasm http"`) {
			t.Errorf("crictl logs of the sidecar = %q", out)
		}

		// A long-running native container: namespaces, cgroup, stats, graceful stop.
		lr, _ := p.run(ctrSpec{name: "agent", image: nativeToolImage, command: []string{"/nativetool", "wait-term"}})
		li := c.waitState(lr, stateRunning, 30*time.Second)
		tr.track(t, lr, li.Info.Pid)
		if li.Info.Pid > 0 {
			for _, kind := range []string{"net", "ipc", "uts"} {
				if got, want := nsInode(t, li.Info.Pid, kind), nsInode(t, sb.pid, kind); got != want {
					t.Errorf("native container's %s namespace %s, the sandbox's %s: want the same", kind, got, want)
				}
			}
			if nsInode(t, li.Info.Pid, "mnt") == nsInode(t, sb.pid, "mnt") {
				t.Errorf("native container shares the sandbox runner's mount namespace")
			}
			if _, ok := runnerOf(lr); ok {
				t.Errorf("a wazero runner exists for the native container %s", lr)
			}
		}
		if _, err := os.Stat(filepath.Join(runcStateDir(criNS), lr)); err != nil {
			t.Errorf("no runc state for the native container in %s: %v", runcStateDir(criNS), err)
		}
		checkStats(t, c, lr)
		// Exec (kubectl exec, exec probes) runs in the container through runc exec.
		if r := c.crictl("exec", lr, "/nativetool", "hello", "via-crictl-exec"); r.exit != 0 || !strings.Contains(r.stdout, "hello from native via-crictl-exec") {
			t.Errorf("crictl exec in the native container: %s", r)
		}
		// crictl exits 1 for any failure and reports the command's exit code on stderr.
		if r := c.crictl("exec", "--sync", lr, "/nativetool", "exit", "4"); r.exit == 0 || !strings.Contains(r.stderr, "exit code 4") && !strings.Contains(r.stderr, "exited with 4") {
			t.Errorf("crictl exec --sync of a command that exits 4: crictl must report exit code 4:\n%s", r)
		}
		// A live resource update (in-place resize) reaches the container's cgroup through runc.
		const newLimit = 96 << 20
		c.must("update", "--memory", strconv.Itoa(newLimit), lr)
		if got := memoryLimitOf(li.Info.Pid); got != newLimit {
			t.Errorf("memory limit of the native container after crictl update: %d, want %d", got, newLimit)
		}
		for end := time.Now().Add(10 * time.Second); !strings.Contains(c.logs(lr), "ready") && time.Now().Before(end); {
			time.Sleep(100 * time.Millisecond)
		}
		c.must("stop", "--timeout", "10", lr)
		if ls := c.waitState(lr, stateExited, 30*time.Second); ls.Status.ExitCode != 0 {
			t.Errorf("native container after crictl stop: exitCode %d, want 0 (it exits 0 on SIGTERM)", ls.Status.ExitCode)
		}
		if out := c.logs(lr); !strings.Contains(out, "got SIGTERM") {
			t.Errorf("crictl logs of the stopped native container = %q, want %q", out, "got SIGTERM")
		}

		// A native container that fails.
		fl, _ := p.run(ctrSpec{name: "failing", image: nativeToolImage, command: []string{"/nativetool", "exit", "3"}})
		tr.ids = append(tr.ids, fl)
		if fi := c.waitState(fl, stateExited, 30*time.Second); fi.Status.ExitCode != 3 {
			t.Errorf("failing native container: exitCode %d, want 3", fi.Status.ExitCode)
		}
		if out := c.logs(fl); !strings.Contains(out, "native container exiting with 3") {
			t.Errorf("crictl logs of the failing native container = %q", out)
		}

		// A native container over its memory limit: OOMKilled, as containerd's runc shim reports it.
		oom, _ := p.run(ctrSpec{name: "oom", image: nativeToolImage, command: []string{"/nativetool", "alloc", "512"},
			linux: map[string]any{"resources": map[string]any{"memory_limit_in_bytes": 48 << 20}}})
		tr.ids = append(tr.ids, oom)
		if oi := c.waitState(oom, stateExited, 60*time.Second); oi.Status.ExitCode != 137 || oi.Status.Reason != "OOMKilled" {
			t.Errorf("native container over its memory limit: exitCode %d, reason %q; want 137, OOMKilled", oi.Status.ExitCode, oi.Status.Reason)
		}

		// The pod annotation wazero.dev/runtime.forced=wasm: that container must be wasm.
		// (The CRI creates the task, where the shim decides, at StartContainer.)
		fc, _ := p.create(ctrSpec{name: "forced", image: nativeToolImage, command: []string{"/nativetool", "hello"}})
		tr.ids = append(tr.ids, fc)
		if r := c.crictl("start", fc); r.exit == 0 || !strings.Contains(r.stderr, "/nativetool is not a WebAssembly module") {
			t.Errorf("crictl start of a native image the pod annotation forces to wasm: exit %d, want the wasm error:\n%s", r.exit, r)
		}

		// The shim logged each decision.
		logs, _ := os.ReadFile(c.d.logPath())
		for id, want := range map[string]string{in: "runtime=native", side: "runtime=native", web: "runtime=wasm", rd: "runtime=wasm"} {
			if !strings.Contains(grepLines(logs, id), want) {
				t.Errorf("the daemon log has no %s decision for %s", want, id)
			}
		}

		c.removeAllAndCheck(&tr)
		for _, id := range tr.ids {
			if _, err := os.Stat(filepath.Join(runcStateDir(criNS), id)); err == nil {
				t.Errorf("runc state of %s left after the pod's removal", id)
			}
		}
		for _, l := range processesWith("/nativetool") {
			t.Errorf("left after the pod's removal: %s", l)
		}
		// The interpreted server's module is compiled into the cache in the background by a
		// filler, which outlives its container by design: let it finish before the suite's leak
		// check (on a loaded machine that takes minutes: the filler has one CPU at most).
		webFiller := func() bool {
			for _, f := range fillerProcs() {
				if len(f.argv) > 2 && f.argv[2] == web {
					return true
				}
			}
			return false
		}
		for end := time.Now().Add(10 * time.Minute); webFiller() && time.Now().Before(end); {
			time.Sleep(200 * time.Millisecond)
		}
	})
}

// memoryLimitOf reads the memory limit of pid's cgroup (v1 memory.limit_in_bytes or v2
// memory.max); -1 when none is found.
func memoryLimitOf(pid int) int64 {
	for _, dir := range procCgroups(pid) {
		for _, f := range []string{"memory.limit_in_bytes", "memory.max"} {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				continue
			}
			if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
				return n
			}
		}
	}
	return -1
}
