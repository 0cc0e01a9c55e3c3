package engine

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// TestMain lets the test binary act as a runner and a cache filler, the way the shim binary
// does: Spawn and FillCache start it again with RunnerArg or FillArg as its first argument.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == RunnerArg {
		os.Exit(RunnerMain())
	}
	if len(os.Args) > 1 && os.Args[1] == FillArg {
		os.Exit(FillMain())
	}
	if len(os.Args) > 3 && os.Args[1] == prepareOnceArg {
		os.Exit(prepareOnce(os.Args[2], os.Args[3], len(os.Args) > 4 && os.Args[4] == "small-pages"))
	}
	os.Exit(m.Run())
}

const testdataDir = "../../testdata"

var buildMu sync.Mutex

// wasm returns the path of testdata/build/name, building it with make when it is missing.
// Without the toolchain the test is skipped, or fails when CI=true.
func wasm(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join(testdataDir, "build", name))
	if err != nil {
		t.Fatal(err)
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	if _, err := os.Stat(p); err == nil {
		return p
	}
	out, err := exec.Command("make", "-C", testdataDir, "build/"+name).CombinedOutput()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
		t.Skipf("cannot build test module %s (run make -C testdata): %v\n%s", name, err, out)
	}
	return p
}

// testConfig is a Config that runs testdata module name with args, without isolation, in a
// fresh rootfs.
func testConfig(t *testing.T, name string, args ...string) *Config {
	t.Helper()
	return &Config{
		ID:          t.Name(),
		Module:      oci.Module{GuestPath: "/" + name, HostPath: wasm(t, name)},
		Args:        append([]string{name}, args...),
		Rootfs:      t.TempDir(),
		MemoryPages: oci.MaxPages,
		NoIsolation: true,
	}
}

// prepare is Prepare that fails the test on error and closes the runtime at the end.
func prepare(t *testing.T, cfg *Config) *Prepared {
	t.Helper()
	ctx := context.Background()
	p, err := Prepare(ctx, cfg)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	t.Cleanup(func() { p.Runtime.Close(ctx) })
	return p
}

type result struct {
	code           int
	stdout, stderr string
}

// run prepares and runs cfg with stdin.
func run(t *testing.T, cfg *Config, stdin string) result {
	t.Helper()
	p := prepare(t, cfg)
	var out, errb bytes.Buffer
	code := Run(context.Background(), cfg, p, bytes.NewBufferString(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}
