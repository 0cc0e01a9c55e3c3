//go:build linux

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestInstallerPassesAnnotations: on a node whose containerd config is the installer's work alone
// (the harness's private config with the wazero runtime removed, or, as after an older installer,
// with its runtime_type only), the installer writes pod_annotations and container_annotations =
// ["wazero.dev/*"]; the real containerd of every tested version loads them (`config dump`,
// `crictl info`); and CRI pods on a daemon started with that config show their effect:
//   - a pod annotated wazero.dev/shared-server=3s runs its sandbox under the shared shim server
//     (whose environment names its directory), a pod without it under a server of its own;
//   - a container annotated wazero.dev/runtime=docker fails its start with the shim's error
//     naming the annotation, while the same container without it runs.
//
// Without the keys containerd passes neither annotation on: both pods get their own server and the
// annotated container runs.
func TestInstallerPassesAnnotations(t *testing.T) {
	requireInstallerPrereqs(t)
	inst := buildInstaller(t)
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			cv := configVersionOf(v)
			for _, tc := range []struct {
				name    string
				start   func(t *testing.T, E string) string // the node's config before the installer
				summary string
			}{
				{"new-table", func(t *testing.T, E string) string { return configWithoutWazero(t, v, E) },
					fmt.Sprintf("config: added runtime wazero (version %d), checked by containerd %s", cv, strings.TrimPrefix(v, "v"))},
				{"existing-table", func(t *testing.T, E string) string { return configWithoutAnnotations(t, v, E) },
					fmt.Sprintf(`config: added pod_annotations = ["wazero.dev/*"] and container_annotations = ["wazero.dev/*"] to runtime wazero (version %d), checked by containerd %s`, cv, strings.TrimPrefix(v, "v"))},
			} {
				t.Run(tc.name, func(t *testing.T) {
					E, err := os.MkdirTemp(suite.tmp, "inst-ann-")
					if err != nil {
						t.Fatal(err)
					}
					bin := filepath.Join(E, "bin")
					os.MkdirAll(bin, 0o755)
					cfg := filepath.Join(E, "config.toml")
					if err := os.WriteFile(cfg, []byte(tc.start(t, E)), 0o600); err != nil {
						t.Fatal(err)
					}
					so, se, code := installerRun(t, inst, v, cfg, bin, "-restart", "none")
					if code != 0 || !strings.Contains(so, tc.summary) {
						t.Fatalf("installer: exit %d\n%s\n%s\nwant %q", code, so, se, tc.summary)
					}
					if so, se, code = installerRun(t, inst, v, cfg, bin, "-restart", "none"); code != 0 || !strings.Contains(so, "config: unchanged") {
						t.Errorf("second run: exit %d\n%s\n%s", code, so, se)
					}
					checkDumpAnnotations(t, v, cfg, cv)
					runAnnotatedPods(t, v, E, cfg)
				})
			}
		})
	}
}

// configWithoutAnnotations is the harness's private config for v with the wazero runtime's
// annotation keys removed: the runtime as an installer that did not write them left it.
func configWithoutAnnotations(t *testing.T, v, E string) string {
	d := &daemon{version: v, dir: E, bin: binDir(v)}
	s := regexp.MustCompile(`(?m)^ *(pod|container)_annotations = .*\n`).ReplaceAllString(d.config(), "")
	if strings.Contains(s, "_annotations") || !strings.Contains(s, "runtimes.wazero]") {
		t.Fatalf("config still has annotation keys, or lost the runtime:\n%s", s)
	}
	return s
}

// checkDumpAnnotations: the daemon's own `containerd config dump` of cfg shows both keys with the
// pattern in the wazero runtime's table of config version cv (as the dump writes it).
func checkDumpAnnotations(t *testing.T, v, cfg string, cv int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := runCmd(ctx, filepath.Join(binDir(v), "containerd"), "--config", cfg, "config", "dump")
	if r.exit != 0 {
		t.Fatalf("containerd %s config dump:\n%s", v, r)
	}
	_, after, ok := strings.Cut(r.stdout, "containerd.runtimes.wazero]")
	if !ok {
		t.Fatalf("containerd %s config dump has no wazero runtime:\n%s", v, r.stdout)
	}
	// The table's lines: up to the next table header (a line that starts with '[').
	var lines []string
	for _, l := range strings.Split(after, "\n")[1:] {
		if strings.HasPrefix(strings.TrimSpace(l), "[") {
			break
		}
		lines = append(lines, l)
	}
	table := strings.Join(lines, "\n")
	for _, key := range []string{"pod_annotations", "container_annotations"} {
		// 1.6 dumps ["wazero.dev/*"], 2.x ['wazero.dev/*'].
		if !regexp.MustCompile(`(?m)^\s*` + key + ` = \[["']wazero\.dev/\*["']\]$`).MatchString(table) {
			t.Errorf("containerd %s config dump (version %d): the wazero runtime has no %s = [\"wazero.dev/*\"]:\n%s", v, cv, key, table)
		}
	}
}

// runAnnotatedPods starts containerd v with the installer's cfg and runs the annotated pods and
// containers of TestInstallerPassesAnnotations through crictl.
func runAnnotatedPods(t *testing.T, v, E, cfg string) {
	t.Helper()
	d := &daemon{version: v, dir: E, bin: binDir(v), ns: suite.ns, images: map[string]bool{}, cacheDir: filepath.Join(E, "cache")}
	t.Setenv("PATH", d.daemonPATH())
	t.Setenv(cacheDirEnv, d.cacheDir)
	t.Cleanup(startPrivate(t, v, E, cfg)) // after the pods' own cleanups
	rt := crictlRuntimeInfo(t, d.sock())
	if w := rt["wazero"]; w.RuntimeType != runtimeType || strings.Join(w.PodAnnotations, ",") != "wazero.dev/*" || strings.Join(w.ContainerAnnotations, ",") != "wazero.dev/*" {
		t.Errorf("crictl info: runtime wazero = %+v, want type %s with pod and container annotations [wazero.dev/*]", w, runtimeType)
	}
	c := &criClient{t: t, d: d}
	wasm := []string{"images", "import", "--platform", "wasip1/wasm"}
	if !d.v1() {
		wasm = append(wasm, "--local")
	}
	for _, imp := range [][]string{{"images", "import", filepath.Join(imagesDir, "pause.tar")}, append(wasm, filepath.Join(imagesDir, "wasmtest.tar"))} {
		if r := c.ctrK8s(imp...); r.exit != 0 {
			t.Fatalf("ctr -n k8s.io %s:\n%s", strings.Join(imp, " "), r)
		}
	}
	var tr tracked

	// The pod annotation: the shared server.
	shared := c.runPodAnnotated("ann-shared", "wazero", true, map[string]string{"wazero.dev/shared-server": "3s"})
	own := c.runPod("ann-own", "wazero", true)
	for _, p := range []*pod{shared, own} {
		tr.track(t, p.id, p.inspect().Info.Pid)
	}
	server := func(p *pod) shimProc {
		t.Helper()
		r, ok := runnerOf(p.id)
		if !ok {
			t.Fatalf("no runner process for the sandbox of %s", p.id)
		}
		_, _, start := procStat(r.ppid)
		return shimProc{pid: r.ppid, start: start}
	}
	srv := server(shared)
	if !sharedServerEnv(srv.pid) {
		t.Errorf("the sandbox of the pod annotated wazero.dev/shared-server=3s runs under server %d, which is not the shared server (no %s in its environment): containerd did not pass the pod annotation on", srv.pid, "WAZERO_SHIM_SHARED_DIR")
	}
	if o := server(own); o.pid == srv.pid || sharedServerEnv(o.pid) {
		t.Errorf("the pod without the annotation runs under server %d (shared: %v), want a server of its own", o.pid, sharedServerEnv(o.pid))
	}

	// The container annotation: the shim's runtime choice reads it, and refuses a bad value.
	bad, _ := own.create(ctrSpec{name: "bad", args: []string{"hello"}, annotations: map[string]string{"wazero.dev/runtime": "docker"}})
	tr.ids = append(tr.ids, bad)
	if r := c.crictl("start", bad); r.exit == 0 || !strings.Contains(r.stderr, `annotation wazero.dev/runtime=`) || !strings.Contains(r.stderr, "the runtime must be wasm, native or auto") {
		t.Errorf("crictl start of a container annotated wazero.dev/runtime=docker: exit %d, want the shim's error naming the annotation:\n%s", r.exit, r)
	}
	good, _ := own.run(ctrSpec{name: "good", args: []string{"hello"}})
	tr.ids = append(tr.ids, good)
	if gi := c.waitState(good, stateExited, 30*time.Second); gi.Status.ExitCode != 0 || !strings.Contains(c.logs(good), "hello from wasm") {
		t.Errorf("the same container without the annotation: exit code %d, logs %q; want 0 and hello from wasm", gi.Status.ExitCode, c.logs(good))
	}

	c.removeAllAndCheck(&tr)
	// The shared server leaves after its linger: nothing outlives the test.
	for deadline := time.Now().Add(3*time.Second + 30*time.Second); srv.alive(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the shared server %d still runs 30 s after its linger", srv.pid)
		}
	}
}

// sharedServerEnv reports whether process pid is a shared shim server: the entry starts it with
// WAZERO_SHIM_SHARED_DIR (pkg/shimentry.SharedDirEnv) in its environment.
func sharedServerEnv(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if strings.HasPrefix(kv, "WAZERO_SHIM_SHARED_DIR=") {
			return true
		}
	}
	return false
}

// criRuntime is a runtime of `crictl info`'s config.
type criRuntime struct {
	RuntimeType          string   `json:"runtimeType"`
	PodAnnotations       []string `json:"PodAnnotations"`
	ContainerAnnotations []string `json:"ContainerAnnotations"`
}

// crictlRuntimeInfo runs `crictl info` against the socket and returns its config's runtimes,
// retrying while the CRI plugin starts.
func crictlRuntimeInfo(t *testing.T, sock string) map[string]criRuntime {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "crictl.yaml")
	os.WriteFile(cfg, nil, 0o644)
	ep := "unix://" + sock
	var last result
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), crictlBound)
		last = runCmd(ctx, crictlBin, "--config", cfg, "--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", crictlTO, "info")
		cancel()
		if last.exit != 0 {
			continue
		}
		var info struct {
			Config struct {
				Containerd struct {
					Runtimes map[string]criRuntime `json:"runtimes"`
				} `json:"containerd"`
			} `json:"config"`
		}
		if err := json.Unmarshal([]byte(last.stdout), &info); err != nil {
			t.Fatalf("crictl info: %v\n%s", err, last.stdout)
		}
		return info.Config.Containerd.Runtimes
	}
	t.Fatalf("crictl info never succeeded:\n%s", last)
	return nil
}
