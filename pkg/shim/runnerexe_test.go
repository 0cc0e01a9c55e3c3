package shim

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/engine"
)

// A missing runner binary means the shim's own, silently; one not built with the shim too, with
// one warning.
func TestRunnerBinaryFallback(t *testing.T) {
	ctx := context.Background()
	var none *runnerBinary
	if f := none.open(ctx); f != nil {
		t.Error("nil runnerBinary opened a file")
	}
	missing := &runnerBinary{path: filepath.Join(t.TempDir(), engine.RunnerBinary)}
	if f := missing.open(ctx); f != nil || missing.warned.Load() {
		t.Errorf("missing runner: file %v, warned %v", f, missing.warned.Load())
	}
	defer func(s string) { engine.BuildStamp = s }(engine.BuildStamp)
	// Made at run time: a literal would be in the test binary's read-only data.
	engine.BuildStamp = strconv.FormatInt(time.Now().UnixNano(), 36) + "-stamp"
	self, err := os.Executable() // a Go binary without that stamp
	if err != nil {
		t.Fatal(err)
	}
	other := &runnerBinary{path: self}
	if f := other.open(ctx); f != nil {
		f.Close()
		t.Error("a runner binary with another build stamp was used")
	}
	if !other.warned.Load() {
		t.Error("no warning for a runner binary with another build stamp")
	}
}

// buildStamped builds a small Go program whose read-only data holds stamp, set the way the
// Makefile sets engine.BuildStamp (-trimpath, -ldflags -X).
func buildStamped(t *testing.T, stamp string) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("no go command")
		}
		t.Skip("no go command to build a stamped binary")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module stamped\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nvar stamp string\n\nfunc main() { println(stamp) }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, engine.RunnerBinary)
	cmd := exec.Command(gobin, "build", "-trimpath", "-ldflags=-s -w -X main.stamp="+stamp, "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

func TestOpenRunnerBinary(t *testing.T) {
	const stamp = "test-stamp-5e0c2f9a71d3"
	bin := buildStamped(t, stamp)
	defer func(s string) { engine.BuildStamp = s }(engine.BuildStamp)

	engine.BuildStamp = ""
	if f, err := openRunnerBinary(bin); err == nil {
		f.Close()
		t.Error("an unstamped shim accepted a runner")
	}
	engine.BuildStamp = stamp
	f, err := openRunnerBinary(bin)
	if err != nil {
		t.Fatalf("same stamp: %v", err)
	}
	f.Close()
	engine.BuildStamp = "test-stamp-0b4d8e6c2a17"
	if f, err := openRunnerBinary(bin); err == nil || !strings.Contains(err.Error(), "not built together") {
		if f != nil {
			f.Close()
		}
		t.Errorf("another stamp: err = %v", err)
	}
	if _, err := openRunnerBinary(filepath.Join(t.TempDir(), engine.RunnerBinary)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing runner: err = %v, want ErrNotExist", err)
	}
	notELF := filepath.Join(t.TempDir(), engine.RunnerBinary)
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\n"+engine.BuildStamp+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := openRunnerBinary(notELF); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("not an executable: err = %v", err)
	}
}

// A runner file found good is not searched again while it stays the same file; a replaced one is.
func TestRunnerBinaryVerifiedOnce(t *testing.T) {
	const stamp = "test-stamp-9a41c07e35b2"
	bin := buildStamped(t, stamp)
	defer func(s string) { engine.BuildStamp = s }(engine.BuildStamp)
	engine.BuildStamp = stamp
	ctx := context.Background()
	b := &runnerBinary{path: bin}
	f := b.open(ctx)
	if f == nil {
		t.Fatal("the stamped runner was not used")
	}
	f.Close()
	// A shim's stamp never changes; here it does, to show the file is not searched again.
	engine.BuildStamp = "test-stamp-1f6b3d80c4e9"
	if f := b.open(ctx); f == nil {
		t.Error("the unchanged runner file was checked again")
	} else {
		f.Close()
	}
	// Replaced (a new file renamed into place, as an upgrade does): checked, and refused.
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin+".new", data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(bin+".new", bin); err != nil {
		t.Fatal(err)
	}
	if f := b.open(ctx); f != nil {
		f.Close()
		t.Error("a replaced runner file was used without a check")
	}
}

func TestStreamContains(t *testing.T) {
	want := []byte("stamp-0123456789")
	for _, c := range []struct {
		size, at int // the stamp at offset at of size bytes; at < 0: absent
	}{
		{100, 0}, {100, 84}, {100, -1}, {32 << 10, (32 << 10) - 16}, {32<<10 + 8, (32 << 10) - 8},
		{100 << 10, (32 << 10) - 5}, {100 << 10, 64<<10 - 15}, {100 << 10, -1}, {0, -1},
	} {
		data := make([]byte, c.size)
		if c.at >= 0 {
			copy(data[c.at:], want)
		}
		got, err := streamContains(strings.NewReader(string(data)), want)
		if err != nil || got != (c.at >= 0) {
			t.Errorf("size %d, stamp at %d: got %v, %v", c.size, c.at, got, err)
		}
	}
}
