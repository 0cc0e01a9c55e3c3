//go:build linux

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// execRunners returns the live exec runners of container id (argv "runner ID exec=EXECID").
func execRunners(id string) []shimProc {
	var out []shimProc
	for _, p := range shimProcs() {
		if p.isRunner() && len(p.argv) > 3 && p.argv[2] == id && strings.HasPrefix(p.argv[3], "exec=") {
			out = append(out, p)
		}
	}
	return out
}

// TestCRIExec: crictl exec (the CRI's streaming Exec, what kubectl exec uses) and crictl exec
// --sync (ExecSync, what exec probes use) into a wasm container of a pod with its own network:
// the exec reads the container's files, sees its env, returns its exit code, runs in the pod's
// network namespace and the container's cgroup; ExecSync's timeout kills it; a tty is refused.
func TestCRIExec(t *testing.T) {
	forEachCRIDaemon(t, func(t *testing.T, c *criClient) {
		var tr tracked
		c.bridgeNetwork(t)
		host := t.TempDir()
		if err := os.WriteFile(filepath.Join(host, "f.txt"), []byte("from-the-pod-volume"), 0o644); err != nil {
			t.Fatal(err)
		}
		p := c.runPod("wz-exec", "wazero", false)
		pi := p.inspect()
		tr.track(t, p.id, pi.Info.Pid)
		w, _ := p.run(ctrSpec{name: "sleeper", args: []string{"sleep", "300"},
			envs: map[string]string{"EXEC_TEST": "from-cri"}, mounts: map[string]string{"/data": host}})
		wi := c.waitState(w, stateRunning, 20*time.Second)
		tr.track(t, w, wi.Info.Pid)

		for _, mode := range [][]string{nil, {"--sync"}} {
			name := "streaming"
			if mode != nil {
				name = "sync"
			}
			t.Run(name, func(t *testing.T) {
				ex := func(args ...string) result {
					t.Helper()
					full := append(append([]string{"exec"}, mode...), w)
					r := c.crictl(append(full, args...)...)
					t.Logf("crictl %s\n%s", strings.Join(append(full, args...), " "), r)
					return r
				}
				// crictl adds newlines after the output of ExecSync; the commands print none.
				if r := ex("/testprog.wasm", "read", "/data/f.txt"); r.exit != 0 || strings.TrimSpace(r.stdout) != "from-the-pod-volume" {
					t.Errorf("exec read of the pod volume: exit %d, stdout %q", r.exit, r.stdout)
				}
				file := "/made-by-" + name + ".txt"
				if r := ex("/testprog.wasm", "write", file, "exec-"+name); r.exit != 0 {
					t.Errorf("exec write into the rootfs: exit %d", r.exit)
				}
				if r := ex("/testprog.wasm", "read", file); strings.TrimSpace(r.stdout) != "exec-"+name {
					t.Errorf("exec read of what the last exec wrote: stdout %q", r.stdout)
				}
				if r := ex("/testprog.wasm", "env"); !hasLine(r.stdout, "EXEC_TEST=from-cri") {
					t.Errorf("exec env output has no EXEC_TEST=from-cri")
				}
				// crictl exits 1 for any failure and reports the command's exit code on stderr.
				if r := ex("/testprog.wasm", "exit", "5"); r.exit == 0 || !strings.Contains(r.stderr, "exit code 5") && !strings.Contains(r.stderr, "exited with 5") {
					t.Errorf("exec exit 5: crictl exited %d, and its stderr must give the command's exit code 5", r.exit)
				}
				if r := ex("/nope.wasm"); r.exit == 0 || !strings.Contains(r.stderr, "/nope.wasm") {
					t.Errorf("exec of a missing module: exit %d, stderr must name /nope.wasm", r.exit)
				}
			})
		}

		t.Run("namespaces-and-cgroup", func(t *testing.T) {
			done := make(chan result, 1)
			go func() { done <- c.crictl("exec", "--sync", "--timeout", "30", w, "/testprog.wasm", "sleep", "3") }()
			var runners []shimProc
			for end := time.Now().Add(15 * time.Second); len(runners) == 0 && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
				runners = execRunners(w)
			}
			if len(runners) != 1 {
				t.Fatalf("exec runners of %s: %v, want one", w, runners)
			}
			// The runner is listed from its spawn on; it joins the pod's network namespace as it
			// reads its configuration: give it until the exec's sleep is over.
			er := runners[0]
			var problems []string
			for end := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				problems = nil
				if got, want := nsInode(t, er.pid, "net"), nsInode(t, pi.Info.Pid, "net"); got != want {
					problems = append(problems, fmt.Sprintf("exec runner network namespace %s, the pod's %s", got, want))
				}
				if got, want := procCgroups(er.pid), procCgroups(wi.Info.Pid); !slices.Equal(got, want) {
					problems = append(problems, fmt.Sprintf("exec runner cgroups %v, the container's %v", got, want))
				}
				if got := nsInode(t, er.pid, "mnt"); got == nsInode(t, "self", "mnt") {
					problems = append(problems, "exec runner is in the host's mount namespace")
				}
				if len(problems) == 0 || time.Now().After(end) {
					break
				}
			}
			for _, p := range problems {
				t.Error(p)
			}
			if r := <-done; r.exit != 0 {
				t.Errorf("exec sleep 3: %s", r)
			}
		})

		t.Run("sync-timeout", func(t *testing.T) {
			start := time.Now()
			r := c.crictl("exec", "--sync", "--timeout", "2", w, "/testprog.wasm", "sleep", "60")
			t.Logf("crictl exec --sync --timeout 2 ... sleep 60 (%s)\n%s", time.Since(start), r)
			if r.exit == 0 {
				t.Errorf("ExecSync past its timeout succeeded")
			}
			if time.Since(start) > 40*time.Second {
				t.Errorf("ExecSync with a 2s timeout returned after %s: the exec was not killed", time.Since(start))
			}
			for end := time.Now().Add(10 * time.Second); len(execRunners(w)) > 0; time.Sleep(100 * time.Millisecond) {
				if time.Now().After(end) {
					t.Fatalf("exec runners left after the timeout: %v", execRunners(w))
				}
			}
			if st := c.inspect(w).Status.State; st != stateRunning {
				t.Errorf("container %s after its exec timed out, want %s", st, stateRunning)
			}
		})

		t.Run("tty-refused", func(t *testing.T) {
			// crictl wants a terminal on its stdin for -t: script(1) gives it one.
			ep := "unix://" + c.d.sock()
			cmd := strings.Join([]string{crictlBin, "--config", filepath.Join(c.d.dir, "crictl.yaml"), "--runtime-endpoint", ep,
				"--image-endpoint", ep, "--timeout", crictlTO, "exec", "-i", "-t", w, "/testprog.wasm", "hello"}, " ")
			ctx, cancel := context.WithTimeout(context.Background(), crictlBound)
			defer cancel()
			r := runCmd(ctx, "script", "-qec", cmd, "/dev/null")
			t.Logf("script -qec %q\n%s", cmd, r)
			if r.exit == 0 || !strings.Contains(r.stdout+r.stderr, "a terminal (tty) is not supported") {
				t.Errorf("exec with a tty: exit %d, want the shim's error that a terminal is not supported", r.exit)
			}
		})
		c.removeAllAndCheck(&tr)
		if left := execRunners(w); len(left) > 0 {
			t.Errorf("exec runners left: %v", left)
		}
	})
}
