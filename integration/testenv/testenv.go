// Package testenv reads scripts/versions.sh, the one list of the containerd, crictl, Kubernetes
// and etcd versions that the integration suites, the demo and the benchmarks run against, so
// that Go tests and shell scripts cannot disagree about them.
package testenv

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Versions are the values of scripts/versions.sh.
type Versions struct {
	// Containerd: the tested containerd releases, newest first (WZ_CONTAINERD_VERSIONS).
	Containerd []string
	// System: the releases that come from Debian's package, in /usr/bin (WZ_CONTAINERD_SYSTEM).
	System []string
	// Bench: the release the benchmarks run on (WZ_BENCH_CONTAINERD).
	Bench      string
	Crictl     string // WZ_CRICTL_VERSION
	Kubernetes string // WZ_KUBERNETES_VERSION
	Etcd       string // WZ_ETCD_VERSION
}

// File is the path of versions.sh below the repository root.
const File = "scripts/versions.sh"

// Read parses File below repoRoot. Every key must be there with a non-empty value.
func Read(repoRoot string) (Versions, error) {
	path := filepath.Join(repoRoot, File)
	f, err := os.Open(path)
	if err != nil {
		return Versions{}, err
	}
	defer f.Close()
	vals := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return Versions{}, fmt.Errorf("%s: %q is not KEY=\"value\"", path, line)
		}
		vals[k] = strings.Trim(v, `"`)
	}
	if err := s.Err(); err != nil {
		return Versions{}, err
	}
	get := func(k string) string {
		if err == nil && vals[k] == "" {
			err = fmt.Errorf("%s: %s is missing or empty", path, k)
		}
		return vals[k]
	}
	v := Versions{
		Containerd: strings.Fields(get("WZ_CONTAINERD_VERSIONS")),
		System:     strings.Fields(get("WZ_CONTAINERD_SYSTEM")),
		Bench:      get("WZ_BENCH_CONTAINERD"),
		Crictl:     get("WZ_CRICTL_VERSION"),
		Kubernetes: get("WZ_KUBERNETES_VERSION"),
		Etcd:       get("WZ_ETCD_VERSION"),
	}
	return v, err
}

// MustRead is Read that panics: for package-level variables of test packages, where a missing or
// malformed versions file must stop the suite at once.
func MustRead(repoRoot string) Versions {
	v, err := Read(repoRoot)
	if err != nil {
		panic(err)
	}
	return v
}

// Tested returns the containerd releases to test: all of them, or, outside CI, the list in
// $WZ_VERSIONS when set (to narrow the set while developing; CI=true always runs all).
func (v Versions) Tested() []string {
	if s := os.Getenv("WZ_VERSIONS"); s != "" && os.Getenv("CI") != "true" {
		return strings.Fields(s)
	}
	return v.Containerd
}

// SystemBins maps each system release to the directory of its binaries (/usr/bin).
func (v Versions) SystemBins() map[string]string {
	m := map[string]string{}
	for _, s := range v.System {
		m[s] = "/usr/bin"
	}
	return m
}
