package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestReadMatchesShell: the Go reading of versions.sh equals what bash gets by sourcing it.
func TestReadMatchesShell(t *testing.T) {
	root := filepath.Join("..", "..")
	v, err := Read(root)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("bash", "-c", `. "$1"; echo "$WZ_CONTAINERD_VERSIONS|$WZ_CONTAINERD_SYSTEM|$WZ_BENCH_CONTAINERD|$WZ_CRICTL_VERSION|$WZ_KUBERNETES_VERSION|$WZ_ETCD_VERSION"`,
		"-", filepath.Join(root, File)).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{strings.Join(v.Containerd, " "), strings.Join(v.System, " "), v.Bench, v.Crictl, v.Kubernetes, v.Etcd}, "|")
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("bash reads %q, Go reads %q", got, want)
	}
	for _, s := range v.System {
		if !slices.Contains(v.Containerd, s) {
			t.Errorf("system release %s is not among the tested ones %v", s, v.Containerd)
		}
	}
	if !slices.Contains(v.Containerd, v.Bench) {
		t.Errorf("bench release %s is not among the tested ones %v", v.Bench, v.Containerd)
	}
}

func TestReadRefusesMissingKey(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "scripts"), 0o755)
	os.WriteFile(filepath.Join(dir, File), []byte("WZ_CONTAINERD_VERSIONS=\"v2.4.2\"\n"), 0o644)
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "WZ_CONTAINERD_SYSTEM") {
		t.Errorf("Read of a file without WZ_CONTAINERD_SYSTEM: %v", err)
	}
}
