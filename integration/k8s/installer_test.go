//go:build linux

package k8s

// The node installer as a cluster runs it: deploy/installer-daemonset.yaml applied through the
// API server, its pod started by the real kubelet (with runc), its init container editing a
// containerd config and installing the shim on the node.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/wazero-shim/containerd-shim-wazero-v1/integration/testenv"
)

// installerImage is the image the test builds like deploy/Dockerfile.installer: the installer,
// the shim and its runner under /opt/wazero, nothing else.
const installerImage = "docker.io/library/wazero-shim-installer:test"

// buildInstallerImage builds the installer (static, as the Dockerfile does) and packages it with
// the suite's shim and runner with cmd/wasmimg as a linux image tarball.
func buildInstallerImage() error {
	dir := filepath.Join(suite.tmp, "installer-image")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	inst := filepath.Join(dir, "wazero-shim-installer")
	build := exec.Command("go", "build", "-trimpath", "-o", inst, "./cmd/wazero-shim-installer")
	build.Dir = repoRoot
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the installer: %v\n%s", err, out)
	}
	suite.installerImage = filepath.Join(dir, "installer.tar")
	files := []string{inst + "=/opt/wazero/wazero-shim-installer", filepath.Join(suite.shimDir, shimName) + "=/opt/wazero/" + shimName}
	for _, name := range []string{runnerName, serverName} {
		if f := filepath.Join(suite.shimDir, name); isFile(f) {
			files = append(files, f+"=/opt/wazero/"+name)
		}
	}
	args := append([]string{"run", "./cmd/wasmimg", "-o", suite.installerImage, "-name", installerImage,
		"-arch", goarch(), "-os", "linux", "-entrypoint", "/opt/wazero/wazero-shim-installer"}, files...)
	img := exec.Command("go", args...)
	img.Dir = repoRoot
	if out, err := img.CombinedOutput(); err != nil {
		return fmt.Errorf("packaging the installer image: %v\n%s", err, out)
	}
	return nil
}

// goarch is the node's architecture as Go and OCI name it.
func goarch() string {
	out, err := exec.Command("go", "env", "GOARCH").Output()
	if err != nil {
		return "amd64"
	}
	return strings.TrimSpace(string(out))
}

// installerManifest is deploy/installer-daemonset.yaml with what a test node needs instead of a
// production node's: the test's image (never pulled); for the install, a config, a containerd
// binary and a bin directory given explicitly and no restart (the test's containerd is not a
// systemd unit); for the warm agent, the cluster's containerd socket and a cache directory of the
// test's. Everything else, the pod's privileges, host PID namespace, host root mount, node
// selector, limits and rollout, is the manifest as shipped.
func installerManifest(t *testing.T, config, containerd, binDir, sock, cacheDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "installer-daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := string(b)
	const image = "image: ghcr.io/OWNER/containerd-shim-wazero-installer:VERSION"
	if strings.Count(m, image) != 2 {
		t.Fatalf("deploy/installer-daemonset.yaml no longer has its image twice (install, warm): update this test with the manifest")
	}
	m = strings.ReplaceAll(m, image, "image: "+installerImage+"\n          imagePullPolicy: Never")
	// In order: the install container's -distro, then the warm container's.
	for _, r := range [][2]string{
		{"- -distro=auto", "- -distro=containerd\n            - -config=" + config + "\n            - -containerd=" + containerd},
		{"- -bin-dir=/usr/local/bin", "- -bin-dir=" + binDir},
		{"- -restart=systemctl", "- -restart=none"},
		{"- -distro=auto", "- -distro=containerd\n            - -cri-socket=" + sock + "\n            - -cache-dir=" + cacheDir},
	} {
		if !strings.Contains(m, r[0]) {
			t.Fatalf("deploy/installer-daemonset.yaml no longer has %q: update this test with the manifest", r[0])
		}
		m = strings.Replace(m, r[0], r[1], 1)
	}
	return m
}

// withoutWazero removes the wazero runtime's table from a containerd config.
func withoutWazero(cfg string) string { return testenv.WithoutRuntime(cfg, "wazero") }

// testInstallerDaemonSet: the DaemonSet's pod installs the shim and the runner into the node's
// bin directory and adds the runtime to the node's containerd config in the form that
// containerd version reads (containerd itself then loads it: `config dump` lists the runtime),
// the pod turns Ready, its warm agent compiles the node's wasm images, and a pod re-created by
// the DaemonSet changes nothing.
func testInstallerDaemonSet(t *testing.T, c *cluster) {
	host := filepath.Join(c.dir, "installer-node")
	binDir := filepath.Join(host, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(host, "config.toml")
	before := withoutWazero(c.containerdConfig())
	if strings.Contains(before, "wazero") {
		t.Fatalf("the node config still names wazero:\n%s", before)
	}
	if err := os.WriteFile(config, []byte(before), 0o600); err != nil {
		t.Fatal(err)
	}
	containerd := filepath.Join(containerdBin(c.version), "containerd")
	cacheDir := filepath.Join(host, "cache")
	c.apply(t, installerManifest(t, config, containerd, binDir, c.sock(), cacheDir))
	defer c.kubectlR("-n", "kube-system", "delete", "daemonset", "wazero-shim-installer", "--wait=false")

	var instPod string
	ready := func(what string) string {
		var name string
		c.wait(t, what, podTimeout, func() (bool, string) {
			pods := c.podsOfNS(t, "kube-system", "app.kubernetes.io/name=wazero-shim-installer")
			if len(pods) != 1 || !podReady(pods[0]) {
				if len(pods) == 1 {
					return false, describe(pods[0])
				}
				return false, fmt.Sprintf("%d pods", len(pods))
			}
			name = podName(pods[0])
			return true, ""
		})
		instPod = name
		return c.kubectl(t, "-n", "kube-system", "logs", name, "-c", "install")
	}
	log := ready("the installer pod Ready after its install")
	t.Logf("installer log (containerd %s):\n%s", c.version, log)
	if !strings.Contains(log, "config: added runtime wazero") {
		t.Errorf("the installer did not say it added the runtime:\n%s", log)
	}
	after, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(after), "runtimes.wazero]") || !strings.Contains(string(after), runtimeType) {
		t.Errorf("the node config has no wazero runtime after the install:\n%s", after)
	}
	if r := run(t.Context(), nil, containerd, "--config", config, "config", "dump"); r.exit != 0 || !strings.Contains(r.stdout, runtimeType) {
		t.Errorf("containerd %s does not load the edited config with the runtime: %s", c.version, r)
	} else {
		// The wazero.dev/ pod and container annotations reach the shim: containerd loaded the
		// installer's pod_annotations and container_annotations (1.6 dumps "...", 2.x '...').
		for _, key := range []string{"pod_annotations", "container_annotations"} {
			if !regexp.MustCompile(`(?m)^\s*` + key + ` = \[["']wazero\.dev/\*["']\]$`).MatchString(r.stdout) {
				t.Errorf("containerd %s loads the installer's config without %s = [\"wazero.dev/*\"]:\n%s", c.version, key, after)
			}
		}
	}
	for _, name := range []string{shimName, runnerName, serverName} {
		want, err := os.ReadFile(filepath.Join(suite.shimDir, name))
		if err != nil {
			continue // no runner or server built beside the shim
		}
		got, err := os.ReadFile(filepath.Join(binDir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s not installed in %s as built: %v", name, binDir, err)
			continue
		}
		if fi, _ := os.Stat(filepath.Join(binDir, name)); fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s installed without its execute bits: %v", name, fi.Mode())
		}
	}

	// The warm agent compiles the cluster's wasm images (imported into k8s.io) into the cache.
	c.wait(t, "the warm agent compiled the wasm test image", podTimeout, func() (bool, string) {
		log := c.kubectlR("-n", "kube-system", "logs", instPod, "-c", "warm").stdout
		return strings.Contains(log, "warm docker.io/library/wasmtest:latest: module"), log
	})

	// The DaemonSet puts a deleted pod back; its install finds everything in place.
	c.kubectl(t, "-n", "kube-system", "delete", "pod", "-l", "app.kubernetes.io/name=wazero-shim-installer", "--wait=true", "--timeout=2m")
	log = ready("the re-created installer pod Ready")
	if !strings.Contains(log, "config: unchanged") || !strings.Contains(log, "binary: unchanged") {
		t.Errorf("the second install changed something:\n%s", log)
	}
	if again, _ := os.ReadFile(config); !bytes.Equal(again, after) {
		t.Errorf("the second install rewrote the config")
	}
}
