package testenv

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestContainerdConfigMatchesShell: for each tested release, the Go rendering of the private
// containerd config equals what scripts/lib.sh's wz_write_config writes, and holds what the
// version needs (a socket_dir only from 2.3, the 1.x CRI plugin name on 1.x).
func TestContainerdConfigMatchesShell(t *testing.T) {
	root := filepath.Join("..", "..")
	v := MustRead(root)
	for _, ver := range append(append([]string{}, v.Containerd...), "v2.3.0") {
		t.Run(ver, func(t *testing.T) {
			E := t.TempDir()
			got, err := ContainerdConfig(root, DaemonConfig{
				Version: ver, Dir: E, SandboxImage: "registry.k8s.io/pause:3.10.2",
				RuntimeType: "io.containerd.wazero.v1", CNIBin: "/usr/lib/cni", CNIConf: E + "/cni",
			})
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("bash", "-c", `. scripts/lib.sh && wz_write_config "$1" "$2" && cat "$1/config.toml"`, "-", E, ver)
			cmd.Dir = root
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("wz_write_config: %v\n%s", err, out)
			}
			if string(out) != got {
				t.Errorf("Go and bash configs differ:\n--- Go\n%s\n--- bash\n%s", got, out)
			}
			if strings.Contains(got, "@") {
				t.Errorf("a placeholder is left:\n%s", got)
			}
			major, minor, _ := MajorMinor(ver)
			if want := major > 2 || major == 2 && minor >= 3; strings.Contains(got, "socket_dir") != want {
				t.Errorf("socket_dir written = %v, want %v:\n%s", !want, want, got)
			}
			if want := major < 2; strings.Contains(got, `"io.containerd.grpc.v1.cri"`) != want {
				t.Errorf("1.x CRI plugin name written = %v, want %v", !want, want)
			}
		})
	}
}

func TestContainerdConfigRefusesQuotes(t *testing.T) {
	_, err := ContainerdConfig(filepath.Join("..", ".."), DaemonConfig{Version: "v2.4.2", Dir: `/tmp/a"b`})
	if err == nil || !strings.Contains(err.Error(), "quote") {
		t.Fatalf("err = %v, want a refusal of the quote", err)
	}
	if _, err := ContainerdConfig(filepath.Join("..", ".."), DaemonConfig{Version: "two"}); err == nil {
		t.Fatal("a version that is not MAJOR.MINOR was accepted")
	}
}

// TestWithoutRuntime: the wazero table goes whole, with every key under it, and nothing else.
func TestWithoutRuntime(t *testing.T) {
	root := filepath.Join("..", "..")
	for _, ver := range MustRead(root).Containerd {
		cfg, err := ContainerdConfig(root, DaemonConfig{Version: ver, Dir: "/e", SandboxImage: "p", RuntimeType: "io.containerd.wazero.v1", CNIBin: "/b", CNIConf: "/c"})
		if err != nil {
			t.Fatal(err)
		}
		// The template's wazero table has keys besides runtime_type; they must go with it.
		if !strings.Contains(cfg, "pod_annotations") {
			t.Fatalf("%s: the template's wazero table has no pod_annotations, so this test no longer checks that a table's other keys go with it:\n%s", ver, cfg)
		}
		got := WithoutRuntime(cfg, "wazero")
		if strings.Contains(got, "wazero") {
			t.Errorf("%s: the runtime is still named:\n%s", ver, got)
		}
		// The table: its header and the key lines after it (none starts with "[").
		table := regexp.MustCompile(`(?m)^ *\[[^\n]*runtimes\.wazero\]\n(?: *[^\[ \n][^\n]*\n)*`)
		if want := table.ReplaceAllString(cfg, ""); got != want {
			t.Errorf("%s: got\n%s\nwant\n%s", ver, got, want)
		}
		if !strings.Contains(got, "runtimes.runc]") || !strings.Contains(got, "conf_dir") {
			t.Errorf("%s: other tables went too:\n%s", ver, got)
		}
	}
}
