package engine

import (
	"strings"
	"testing"
)

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

func TestModulesMaxBytes(t *testing.T) {
	for v, want := range map[string]int64{"": DefaultModulesMaxBytes, "0": 0, "1048576": 1 << 20, " 42 ": 42} {
		t.Setenv(ModulesMaxBytesEnv, v)
		if got, err := ModulesMaxBytes(); err != nil || got != want {
			t.Errorf("%s=%q: %d, %v; want %d", ModulesMaxBytesEnv, v, got, err, want)
		}
	}
	for _, v := range []string{"-1", "1GiB", "x"} {
		t.Setenv(ModulesMaxBytesEnv, v)
		got, err := ModulesMaxBytes()
		if err == nil || got != DefaultModulesMaxBytes || !strings.Contains(err.Error(), ModulesMaxBytesEnv) {
			t.Errorf("%s=%q: %d, %v; want the default and an error naming the variable", ModulesMaxBytesEnv, v, got, err)
		}
	}
	// The two bounds are independent.
	t.Setenv(ModulesMaxBytesEnv, "7")
	t.Setenv(CacheMaxBytesEnv, "")
	if got, _ := CacheMaxBytes(); got != DefaultCacheMaxBytes {
		t.Errorf("CacheMaxBytes %d with only %s set, want the default", got, ModulesMaxBytesEnv)
	}
}
