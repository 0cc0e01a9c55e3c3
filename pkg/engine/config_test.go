package engine

import "testing"

func TestModulesDir(t *testing.T) {
	for cache, want := range map[string]string{
		"":                          "/var/lib/containerd-shim-wazero/modules",
		DefaultCacheDir:             "/var/lib/containerd-shim-wazero/modules",
		"/tmp/wzit-1/v2.4.2/cache/": "/tmp/wzit-1/v2.4.2/modules",
		"/srv/wazero/compiled":      "/srv/wazero/modules",
	} {
		if got := ModulesDir(cache); got != want {
			t.Errorf("ModulesDir(%q) = %q, want %q", cache, got, want)
		}
	}
}
