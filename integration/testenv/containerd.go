package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ConfigDir is the directory of the private containerd configuration templates below the
// repository root (see its README.md): v3.toml for containerd 2.x, v2.toml for 1.x.
const ConfigDir = "scripts/containerd-config"

// DaemonConfig is what a private containerd's config.toml is filled in with.
type DaemonConfig struct {
	// Version is the containerd release, e.g. "v2.4.2"; it chooses the template and whether
	// the shim manager's socket_dir is written (>= 2.3).
	Version string
	// Dir is the daemon's directory: root, state, opt, the sockets and (>= 2.3) the shims'
	// socket dir "s" live below it.
	Dir string
	// SandboxImage is the CRI pod sandbox image (pinned on 2.x).
	SandboxImage string
	// RuntimeType is the runtime_type of the CRI runtime named "wazero".
	RuntimeType string
	// CNIBin and CNIConf are the CNI plugin and configuration directories.
	CNIBin, CNIConf string
}

// ContainerdConfig returns the config.toml of c, from the template below repoRoot: the same text
// scripts/lib.sh's wz_write_config writes for the same values.
func ContainerdConfig(repoRoot string, c DaemonConfig) (string, error) {
	major, minor, err := MajorMinor(c.Version)
	if err != nil {
		return "", err
	}
	name := "v3.toml"
	if major < 2 {
		name = "v2.toml"
	}
	tmpl, err := os.ReadFile(filepath.Join(repoRoot, ConfigDir, name))
	if err != nil {
		return "", err
	}
	for name, v := range map[string]string{"version": c.Version, "directory": c.Dir, "sandbox image": c.SandboxImage,
		"runtime type": c.RuntimeType, "CNI bin": c.CNIBin, "CNI conf": c.CNIConf} {
		if strings.ContainsAny(v, "\"\\\n") {
			return "", fmt.Errorf("containerd config: the %s %q holds a quote, backslash or newline", name, v)
		}
	}
	socketDirLine := ""
	if major > 2 || (major == 2 && minor >= 3) {
		socketDirLine = fmt.Sprintf(`socket_dir = "%s/s"`, c.Dir)
	}
	vals := []string{
		"@VERSION@", c.Version,
		"@E@", c.Dir,
		"@SOCKET_DIR_LINE@", socketDirLine,
		"@SANDBOX_IMAGE@", c.SandboxImage,
		"@RUNTIME_TYPE@", c.RuntimeType,
		"@CNI_BIN@", c.CNIBin,
		"@CNI_CONF@", c.CNIConf,
	}
	return strings.NewReplacer(vals...).Replace(string(tmpl)), nil
}

// MajorMinor parses the major and minor numbers of a containerd release such as "v2.4.2" or
// "1.6.20".
func MajorMinor(version string) (major, minor int, err error) {
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	if len(parts) < 2 {
		return 0, 0, fmt.Errorf("containerd version %q is not MAJOR.MINOR[.PATCH]", version)
	}
	if major, err = strconv.Atoi(parts[0]); err == nil {
		minor, err = strconv.Atoi(parts[1])
	}
	if err != nil {
		return 0, 0, fmt.Errorf("containerd version %q is not MAJOR.MINOR[.PATCH]: %w", version, err)
	}
	return major, minor, nil
}

// WithoutRuntime returns cfg (a config.toml of ContainerdConfig) without the CRI runtime table
// named name: its header and every key up to the next table header. The installer tests start
// from a node config that lacks the runtime they install.
func WithoutRuntime(cfg, name string) string {
	var out []string
	skip := false
	for _, l := range strings.Split(cfg, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "[") {
			skip = strings.HasSuffix(t, "runtimes."+name+"]")
		}
		if !skip {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
