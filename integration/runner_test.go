package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunnerBinary: runners run from the runner binary beside the shim (make build builds both with
// one build stamp), and from the shim's own binary when the file there was not built with it, as
// after an upgrade that replaced it under a running shim.
func TestRunnerBinary(t *testing.T) {
	requireSuite(t)
	if suite.runnerBin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no %s beside %s (make build builds it)", runnerName, shimSrc)
		}
		t.Skipf("no %s beside %s (make build builds it): runners run from the shim binary", runnerName, shimSrc)
	}
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		check := func(t *testing.T, wantExe string) {
			id := newID(t, d)
			runDetached(t, d, id, testprog("sleep", "60"))
			r := runnerFor(t, id)
			exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", r.pid))
			if exe != wantExe {
				t.Errorf("runner %d runs %q, want %q", r.pid, exe, wantExe)
			}
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", r.pid)); strings.TrimSpace(string(comm)) != "wazero-runner" {
				t.Errorf("runner %d is named %q, want wazero-runner", r.pid, comm)
			}
			killRemove(t, d, id)
		}
		t.Run("paired", func(t *testing.T) { check(t, suite.runnerBin) })
		t.Run("not-paired", func(t *testing.T) {
			// Another Go binary in the runner's place (the logger has no build stamp).
			saved := suite.runnerBin + ".saved"
			if err := os.Rename(suite.runnerBin, saved); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := os.Rename(saved, suite.runnerBin); err != nil {
					t.Errorf("restore %s: %v", suite.runnerBin, err)
				}
			})
			if err := copyFile(loggerSrc, suite.runnerBin, 0o755); err != nil {
				t.Fatal(err)
			}
			// The shim's own binary: its server's, when the shim is an entry and a server.
			own := suite.shimBin
			if suite.serverBin != "" {
				own = suite.serverBin
			}
			check(t, own)
			if b, _ := os.ReadFile(d.logPath()); !strings.Contains(string(b), "runners run from the shim's own binary") {
				t.Errorf("no warning about %s in the containerd log", filepath.Base(suite.runnerBin))
			}
		})
	})
}
