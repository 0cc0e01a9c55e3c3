package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/a/b`:           "/a/b",
		`/a\040b`:        "/a b",
		`/x\011y\012z`:   "/x\ty\nz",
		`/back\134slash`: `/back\slash`,
		`/short\04`:      `/short\04`,
		`/not\999octal`:  `/not\999octal`,
	} {
		if got := UnescapeMountinfo(in); got != want {
			t.Errorf("UnescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMountsUnderProc(t *testing.T) {
	// /proc is a mount point on every Linux machine the suites run on.
	if got := MountsUnder("/proc"); !slices.Contains(got, "/proc") {
		t.Fatalf("MountsUnder(/proc) = %v, want it to hold /proc", got)
	}
	if got := MountsUnder(""); got != nil {
		t.Fatalf("MountsUnder(\"\") = %v, want nil", got)
	}
}

func TestFilteredEnv(t *testing.T) {
	t.Setenv("WZ_TESTENV_DROP", "1")
	t.Setenv("WZ_TESTENV_KEEP", "2")
	env := FilteredEnv("WZ_TESTENV_DROP")
	if slices.Contains(env, "WZ_TESTENV_DROP=1") || !slices.Contains(env, "WZ_TESTENV_KEEP=2") {
		t.Fatalf("FilteredEnv dropped the wrong variables: %v", env)
	}
	if len(env) != len(os.Environ())-1 {
		t.Fatalf("FilteredEnv kept %d of %d variables, want one fewer", len(env), len(os.Environ()))
	}
}

func TestLingering(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid
	got := Lingering(func() []int { return []int{pid} }, 300*time.Millisecond, "helper")
	if len(got) != 1 || !strings.Contains(got[0], fmt.Sprintf("helper %d still running: sleep 30", pid)) {
		t.Fatalf("Lingering = %q, want the sleep reported", got)
	}
	calls := 0
	gone := func() []int {
		if calls++; calls < 3 {
			return []int{pid}
		}
		return nil
	}
	if got := Lingering(gone, 10*time.Second, "helper"); got != nil {
		t.Fatalf("Lingering = %q, want nothing once the list is empty", got)
	}
}
