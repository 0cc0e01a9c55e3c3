package shim

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/engine"
	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// noCache is the settings of a shim without a compilation cache, for tests of runnerConfig.
var noCache = &settings{ColdStart: oci.ColdStartAuto}

func TestLoadSettings(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "cache")
	t.Setenv(engine.CacheDirEnv, cache)
	t.Setenv(engine.CacheMaxBytesEnv, "8192")
	t.Setenv(engine.ModulesMaxBytesEnv, "4096")
	t.Setenv(engine.ColdStartEnv, "interpret")
	t.Setenv(engine.FillCPUsEnv, "0.5")
	s, err := loadSettings()
	if err != nil {
		t.Fatal(err)
	}
	want := settings{CacheDir: cache, CacheMaxBytes: 8192, ModulesDir: engine.ModulesDir(cache), ModulesMaxBytes: 4096,
		ColdStart: oci.ColdStartInterpret, Fill: s.Fill}
	if s != want || s.Fill.CPUs != 0.5 {
		t.Fatalf("settings %+v, want %+v with 0.5 fill CPUs", s, want)
	}
	m := newImageModules("/run/containerd.sock", "ns", s)
	if m.dir != s.ModulesDir || m.maxBytes != 4096 {
		t.Fatalf("image modules %+v do not follow the settings", m)
	}
}

// TestLoadSettingsBadValues: each bad value gives its default and one error that names the
// variable and the value, and the others still apply.
func TestLoadSettingsBadValues(t *testing.T) {
	t.Setenv(engine.CacheDirEnv, t.TempDir())
	t.Setenv(engine.CacheMaxBytesEnv, "2GiB")
	t.Setenv(engine.ModulesMaxBytesEnv, "-1")
	t.Setenv(engine.ColdStartEnv, "sometimes")
	t.Setenv(engine.FillCPUsEnv, "lots")
	s, err := loadSettings()
	if err == nil {
		t.Fatal("no error for four bad values")
	}
	if s.CacheMaxBytes != engine.DefaultCacheMaxBytes || s.ModulesMaxBytes != engine.DefaultModulesMaxBytes ||
		s.ColdStart != oci.ColdStartAuto || s.Fill.CPUs != engine.DefaultFillCPUs {
		t.Errorf("bad values did not give the defaults: %+v", s)
	}
	for _, want := range []string{engine.CacheMaxBytesEnv, "2GiB", engine.ModulesMaxBytesEnv, engine.ColdStartEnv, "sometimes", engine.FillCPUsEnv, "lots"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}
