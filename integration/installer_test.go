//go:build linux

package integration

// Installer tests: wazero-shim-installer run against the real containerd binary of every tested
// version (it asks its version and has it check the edited config), then a private daemon of that
// version started with the installer's output, and `crictl info` must list the wazero handler
// (and still runc). The installer's own CRI client is checked against the same daemon.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wazero-shim/containerd-shim-wazero-v1/integration/testenv"
)

// buildInstaller builds cmd/wazero-shim-installer once per test.
func buildInstaller(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "wazero-shim-installer")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/wazero-shim-installer")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/wazero-shim-installer: %v\n%s", err, b)
	}
	return out
}

// installerRun runs the installer with host root / against containerd version v's binary.
func installerRun(t *testing.T, inst, v, config, binDir string, extra ...string) (stdout, stderr string, code int) {
	t.Helper()
	args := append([]string{"-host-root", "/", "-distro", "containerd", "-config", config,
		"-containerd", filepath.Join(binDir0(v), "containerd"), "-shim-src", suite.shimBin, "-runner-src", "",
		"-bin-dir", binDir}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := runCmd(ctx, inst, args...)
	t.Logf("wazero-shim-installer %s\n%s", strings.Join(args, " "), r)
	return r.stdout, r.stderr, r.exit
}

func binDir0(v string) string { return binDir(v) }

// privateSettings are the settings that keep a daemon private (as harness_test.go's config), for
// config version cv: top-level keys (before any table) and tables (after the runtime's).
func privateSettings(v string, cv int, E string) (keys, tables string) {
	keys = fmt.Sprintf("root = %q\nstate = %q\n", filepath.Join(E, "root"), filepath.Join(E, "state"))
	tables = fmt.Sprintf("\n[grpc]\n  address = %q\n[ttrpc]\n  address = %q\n", filepath.Join(E, "containerd.sock"), filepath.Join(E, "containerd.sock.ttrpc"))
	if cv == 2 {
		tables += fmt.Sprintf(`[plugins."io.containerd.internal.v1.opt"]
  path = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = %q
`, filepath.Join(E, "opt"), sandboxImage, filepath.Join(E, "cni"))
		return keys, tables
	}
	major, minor := majorMinor(v)
	if major > 2 || major == 2 && minor >= 3 {
		tables += fmt.Sprintf("[plugins.'io.containerd.shim.v1.manager']\n  socket_dir = %q\n", filepath.Join(E, "s"))
	}
	tables += fmt.Sprintf(`[plugins.'io.containerd.nri.v1.nri']
  disable = true
[plugins.'io.containerd.internal.v1.opt']
  path = %q
[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = %q
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ["/usr/lib/cni"]
  conf_dir = %q
`, filepath.Join(E, "opt"), sandboxImage, filepath.Join(E, "cni"))
	return keys, tables
}

// startPrivate starts containerd v with config cfg (every path under E) and returns a stop func.
func startPrivate(t *testing.T, v, E, cfg string) func() {
	t.Helper()
	for _, sub := range []string{"root", "state", "opt", "s", "cni"} {
		os.MkdirAll(filepath.Join(E, sub), 0o700)
	}
	logf, err := os.Create(filepath.Join(E, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(binDir(v), "containerd"), "--config", cfg)
	cmd.Env = filteredEnv("CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		for _, mp := range mountsUnder(E) {
			syscall.Unmount(mp, syscall.MNT_DETACH)
		}
	}
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			t.Fatalf("containerd %s exited at startup with the installer's config:\n%s", v, tail(filepath.Join(E, "containerd.log"), 30))
		default:
		}
		if _, err := os.Stat(filepath.Join(E, "containerd.sock")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("containerd %s did not open its socket within %s:\n%s", v, startTimeout, tail(filepath.Join(E, "containerd.log"), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return stop
}

// crictlRuntimes runs `crictl info` against the socket and returns its config's runtimes
// (name -> runtimeType), retrying while the CRI plugin starts.
func crictlRuntimes(t *testing.T, sock string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, r := range crictlRuntimeInfo(t, sock) {
		out[k] = r.RuntimeType
	}
	return out
}

func requireInstallerPrereqs(t *testing.T) {
	t.Helper()
	requireSuite(t)
	if _, err := os.Stat(crictlBin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("crictl missing under CI: %v (run scripts/install-deps.sh)", err)
		}
		t.Skipf("crictl missing: %v (run scripts/install-deps.sh)", err)
	}
	if _, err := exec.LookPath("go"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("go missing under CI: %v", err)
		}
		t.Skipf("go missing: %v", err)
	}
}

// configWithoutWazero is the harness's private config for v with the wazero runtime removed.
func configWithoutWazero(t *testing.T, v, E string) string {
	d := &daemon{version: v, dir: E, bin: binDir(v)}
	s := testenv.WithoutRuntime(d.config(), "wazero")
	if strings.Contains(s, "wazero") {
		t.Fatalf("config still names wazero:\n%s", s)
	}
	return s
}

// configVersionOf is the config.toml version a containerd of version v writes: 3 for 2.x, 2 for
// 1.x.
func configVersionOf(v string) int {
	if major, _ := majorMinor(v); major < 2 {
		return 2
	}
	return 3
}

func TestInstallerOutputStartedByContainerd(t *testing.T) {
	requireInstallerPrereqs(t)
	inst := buildInstaller(t)
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			major, _ := majorMinor(v)
			cv := configVersionOf(v)
			// An existing config without the runtime: the runtime is added in its form, the
			// daemon starts with it, and the CRI lists wazero next to runc.
			t.Run("existing-config", func(t *testing.T) {
				E, err := os.MkdirTemp(suite.tmp, "inst-")
				if err != nil {
					t.Fatal(err)
				}
				bin := filepath.Join(E, "bin")
				os.MkdirAll(bin, 0o755)
				cfg := filepath.Join(E, "config.toml")
				orig := configWithoutWazero(t, v, E)
				os.WriteFile(cfg, []byte(orig), 0o600)
				so, se, code := installerRun(t, inst, v, cfg, bin, "-restart", "none")
				if code != 0 {
					t.Fatalf("installer exit %d: %s", code, se)
				}
				if want := fmt.Sprintf("config: added runtime wazero (version %d), checked by containerd %s", cv, strings.TrimPrefix(v, "v")); !strings.Contains(so, want) {
					t.Errorf("summary %q\nwant %q", so, want)
				}
				if b, _ := os.ReadFile(cfg); !strings.HasPrefix(string(b), orig) {
					t.Errorf("the original config is not kept as it was:\n%s", b)
				}
				if !isFile(filepath.Join(bin, shimName)) {
					t.Error("shim not installed")
				}
				stop := startPrivate(t, v, E, cfg)
				defer stop()
				rt := crictlRuntimes(t, filepath.Join(E, "containerd.sock"))
				if rt["wazero"] != runtimeType || rt["runc"] != "io.containerd.runc.v2" {
					t.Errorf("crictl info runtimes = %v, want wazero (%s) and runc", rt, runtimeType)
				}
				// The installer's own CRI check, against the real daemon: config unchanged, the
				// handler listed, so nothing is restarted.
				so, se, code = installerRun(t, inst, v, cfg, bin, "-restart", "systemctl", "-cri-socket", filepath.Join(E, "containerd.sock"))
				if code != 0 || !strings.Contains(so, "restart: not needed (the CRI at "+filepath.Join(E, "containerd.sock")+" lists runtime handler wazero)") {
					t.Errorf("second run: exit %d\n%s\n%s", code, so, se)
				}
			})
			// No config at all (the case): the installer writes the form this version
			// reads (version 2 for 1.6, which ignored a version 3 file), and the daemon's CRI
			// lists wazero and keeps its default runc.
			t.Run("no-config", func(t *testing.T) {
				E, err := os.MkdirTemp(suite.tmp, "inst-")
				if err != nil {
					t.Fatal(err)
				}
				bin := filepath.Join(E, "bin")
				os.MkdirAll(bin, 0o755)
				created := filepath.Join(E, "etc", "config.toml")
				so, se, code := installerRun(t, inst, v, created, bin, "-restart", "none")
				if code != 0 {
					t.Fatalf("installer exit %d: %s", code, se)
				}
				if want := fmt.Sprintf("(version %d, for containerd %s", cv, strings.TrimPrefix(v, "v")); !strings.Contains(so, want) {
					t.Errorf("summary %q\nwant %q", so, want)
				}
				body, err := os.ReadFile(created)
				if err != nil {
					t.Fatal(err)
				}
				keys, tables := privateSettings(v, cv, E)
				cfg := filepath.Join(E, "config.toml")
				os.WriteFile(cfg, []byte(keys+string(body)+tables), 0o600)
				stop := startPrivate(t, v, E, cfg)
				defer stop()
				rt := crictlRuntimes(t, filepath.Join(E, "containerd.sock"))
				if rt["wazero"] != runtimeType || rt["runc"] != "io.containerd.runc.v2" {
					t.Errorf("crictl info runtimes = %v, want wazero (%s) and runc\nconfig:\n%s", rt, runtimeType, keys+string(body)+tables)
				}
			})
			// What this containerd refuses or would ignore, the installer refuses, installing nothing.
			t.Run("refused", func(t *testing.T) {
				E, err := os.MkdirTemp(suite.tmp, "inst-")
				if err != nil {
					t.Fatal(err)
				}
				bin := filepath.Join(E, "bin")
				os.MkdirAll(bin, 0o755)
				cfg := filepath.Join(E, "config.toml")
				bad := fmt.Sprintf("version = %d\noom_score = \"high\"\n", cv)
				os.WriteFile(cfg, []byte(bad), 0o600)
				_, se, code := installerRun(t, inst, v, cfg, bin, "-restart", "none")
				if code != 1 || !strings.Contains(se, "refuses the edited config") || !strings.Contains(se, "oom_score") && !strings.Contains(se, "OOMScore") && !strings.Contains(se, "high") {
					t.Errorf("a config containerd refuses: exit %d\n%s", code, se)
				}
				if major < 2 {
					os.WriteFile(cfg, []byte("version = 3\n"), 0o600)
					_, se, code = installerRun(t, inst, v, cfg, bin, "-restart", "none")
					if code != 1 || !strings.Contains(se, "reads only version 2 configs") {
						t.Errorf("a version 3 config for %s: exit %d\n%s", v, code, se)
					}
					// A version 2 file without runc: 1.6 would lose its default runtime and not
					// start its CRI plugin; its own config dump shows it, the installer refuses.
					os.WriteFile(cfg, []byte("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  enable_selinux = false\n"), 0o600)
					_, se, code = installerRun(t, inst, v, cfg, bin, "-restart", "none")
					if code != 1 || !strings.Contains(se, `without its default runtime "runc"`) {
						t.Errorf("a version 2 config without runc for %s: exit %d\n%s", v, code, se)
					}
				}
				if ents, _ := os.ReadDir(bin); len(ents) != 0 {
					t.Errorf("refused, but installed %v", ents)
				}
				if b, _ := os.ReadFile(cfg); major >= 2 && string(b) != bad {
					t.Errorf("refused, but changed the config:\n%s", b)
				}
			})
		})
	}
}
