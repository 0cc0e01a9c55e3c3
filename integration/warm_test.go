//go:build linux

package integration

// The installer's warm agent (-warm-cache): it compiles the module of each wasm image the node
// pulls into the shim's compilation cache, so the image's first container starts from the cache.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// uniqueModule writes a copy of the module at src with a custom section of its own appended, so
// that its digest (and its compilation cache entry) is new: its first run on a daemon is cold.
func uniqueModule(t *testing.T, src, tag string) string {
	t.Helper()
	code, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("%v (run make testdata)", err)
	}
	name := "wz-warm-test"
	payload := []byte(tag + "-" + randHex(8))
	body := append(append([]byte{byte(len(name))}, name...), payload...)
	if len(body) > 127 {
		t.Fatal("custom section too long for a one-byte size")
	}
	code = append(append(code, 0, byte(len(body))), body...)
	p := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.WriteFile(p, code, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// warmAgent is a running `wazero-shim-installer -warm-cache` for daemon d; its stdout lines
// arrive on lines.
type warmAgent struct {
	cmd   *exec.Cmd
	lines chan string
}

func startWarmAgent(t *testing.T, inst string, d *daemon) *warmAgent {
	t.Helper()
	cmd := exec.Command(inst, "-warm-cache", "-host-root", "/", "-distro", "containerd",
		"-cri-socket", d.sock(), "-cache-dir", d.cacheDir, "-warm-namespace", criNS)
	cmd.Env = filteredEnv("CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE", cacheDirEnv)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &warmAgent{cmd: cmd, lines: make(chan string, 100)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			a.lines <- sc.Text()
		}
		close(a.lines)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("warm agent ignored SIGTERM for 10s")
		}
		if s := stderr.String(); s != "" {
			t.Logf("warm agent stderr:\n%s", s)
		}
	})
	return a
}

// waitLine waits for a line of the agent containing every one of subs, and returns it.
func (a *warmAgent) waitLine(t *testing.T, timeout time.Duration, subs ...string) string {
	t.Helper()
	deadline := time.After(timeout)
	var seen []string
	for {
		select {
		case l, ok := <-a.lines:
			if !ok {
				t.Fatalf("warm agent exited; it printed:\n%s", strings.Join(seen, "\n"))
			}
			seen = append(seen, l)
			match := true
			for _, s := range subs {
				match = match && strings.Contains(l, s)
			}
			if match {
				return l
			}
		case <-deadline:
			t.Fatalf("no warm agent line with %q within %s; it printed:\n%s", subs, timeout, strings.Join(seen, "\n"))
		}
	}
}

// TestWarmCache: without the agent, the first container of a new wasm image pulled with crictl
// misses the compilation cache (it compiles the module); with the
// agent running, the agent compiles the module of the image as soon as it is pulled, and the
// first container hits the cache. Non-wasm images are skipped by the agent.
func TestWarmCache(t *testing.T) {
	requireInstallerPrereqs(t)
	inst := buildInstaller(t)
	host := startRegistry(t)
	goHello := filepath.Join(repoRoot, "testdata", "build", "hello-go.wasm")
	forEachCRIDaemon(t, func(t *testing.T, c *criClient) {
		v := strings.ReplaceAll(c.d.version, ".", "")
		// push publishes a fresh module and returns the image's reference and the module's digest.
		push := func(name string) (string, string) {
			ref := host + "/wz/" + name + "-" + v + ":v1"
			ctx, cancel := context.WithTimeout(context.Background(), ctrTimeout)
			defer cancel()
			mod := uniqueModule(t, goHello, name)
			if r := runCmd(ctx, wasmimgBin, "-push", ref, mod+"=/hello-go.wasm"); r.exit != 0 {
				t.Fatalf("wasmimg -push %s:\n%s", ref, r)
			}
			return ref, fileDigest(t, mod)
		}
		p := c.runPod("wz-warm", "wazero", true)
		var tr tracked
		tr.track(t, p.id, p.inspect().Info.Pid)
		run := func(ref, name string, envs map[string]string) map[string]string {
			id, _ := p.run(ctrSpec{name: name, image: ref, envs: envs})
			tr.ids = append(tr.ids, id)
			ci := c.waitState(id, stateExited, 60*time.Second)
			if out := c.logs(id); ci.Status.ExitCode != 0 || !strings.Contains(out, "hello from go wasip1") {
				t.Errorf("%s: exit code %d, logs %q", ref, ci.Status.ExitCode, out)
			}
			return waitReady(t, c.d, id)
		}

		cold, _ := push("cold")
		c.must("pull", cold)
		// Compiled before it starts, not interpreted: no background compile holds the module
		// (a file of the container's rootfs) while the test goes on.
		if f := run(cold, "cold", map[string]string{"WAZERO_COLD_START": "compile"}); f["cacheHit"] != "false" {
			t.Errorf("first container of %s without the warm agent: cacheHit=%s, want false", cold, f["cacheHit"])
		}

		a := startWarmAgent(t, inst, c.d)
		a.waitLine(t, 30*time.Second, "warm: watching namespace "+criNS)
		// The first pass looks at the images already there: the runc image is not a wasm image.
		a.waitLine(t, 30*time.Second, "warm "+nativeImage+": skipped: not a wasm image")
		warm, dgst := push("warm")
		c.must("pull", warm)
		// The CRI plugin records the pull under the image's config digest, tag and repo digest:
		// the agent compiles the module for the first and skips the others.
		line := a.waitLine(t, 60*time.Second, ": module /hello-go.wasm ("+dgst+") compiled in ")
		if f := run(warm, "warm", nil); f["cacheHit"] != "true" {
			t.Errorf("first container of %s with the warm agent: cacheHit=%s, want true (agent: %s)", warm, f["cacheHit"], line)
		} else {
			t.Logf("%s", fmt.Sprint("agent: ", line))
		}
		c.removeAllAndCheck(&tr)
	})
}
