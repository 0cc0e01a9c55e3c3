package engine

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

func TestPrepare(t *testing.T) {
	cases := []struct {
		name   string
		module string
		errHas []string // empty: Prepare must succeed
	}{
		{name: "testprog", module: "testprog.wasm"},
		{name: "hello", module: "hello.wasm"},
		{name: "go wasip1", module: "hello-go.wasm"},
		{name: "no _start", module: "nostart.wasm", errHas: []string{"/nostart.wasm", "_start"}},
		{name: "unknown import", module: "badimport.wasm", errHas: []string{"/badimport.wasm", "env.not_a_wasi_function"}},
		{name: "invalid", module: "invalid.wasm", errHas: []string{"/invalid.wasm", "invalid"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			cfg := testConfig(t, tc.module)
			p, err := Prepare(ctx, cfg)
			if len(tc.errHas) == 0 {
				if err != nil {
					t.Fatalf("Prepare: %v", err)
				}
				p.Runtime.Close(ctx)
				return
			}
			if err == nil {
				p.Runtime.Close(ctx)
				t.Fatal("Prepare succeeded, want an error")
			}
			for _, s := range tc.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestPrepareUnreadable(t *testing.T) {
	for name, host := range map[string]string{
		"missing":   filepath.Join(t.TempDir(), "missing.wasm"),
		"directory": t.TempDir(),
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t, "hello.wasm")
			cfg.Module = oci.Module{GuestPath: "/gone.wasm", HostPath: host}
			p, err := Prepare(context.Background(), cfg)
			if err == nil {
				p.Runtime.Close(context.Background())
				t.Fatal("Prepare succeeded on an unreadable module")
			}
			if !strings.Contains(err.Error(), "/gone.wasm") {
				t.Errorf("error %q does not name the module", err)
			}
		})
	}
}

func TestPrepareCache(t *testing.T) {
	cacheDir := filepath.Join(t.TempDir(), "a", "cache")
	cfg := testConfig(t, "testprog.wasm")
	cfg.CacheDir = cacheDir
	if p := prepare(t, cfg); p.CacheHit {
		t.Error("first Prepare: CacheHit = true on an empty cache")
	}
	if p := prepare(t, cfg); !p.CacheHit {
		t.Error("second Prepare: CacheHit = false")
	}
	// Another module in the same, now non-empty, cache is a miss first, then a hit.
	other := testConfig(t, "hello.wasm")
	other.CacheDir = cacheDir
	if p := prepare(t, other); p.CacheHit {
		t.Error("first Prepare of a second module: CacheHit = true")
	}
	if p := prepare(t, other); !p.CacheHit {
		t.Error("second Prepare of a second module: CacheHit = false")
	}
	// Nothing in the cache may be writable by anyone but its owner, and the directories must not
	// be readable by others either: compiled machine code is run from there.
	err := filepath.WalkDir(filepath.Dir(cacheDir), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		perm := st.Mode().Perm()
		if perm&0o022 != 0 || (st.IsDir() && p != filepath.Dir(cacheDir) && perm&0o077 != 0) {
			t.Errorf("%s has mode %v", p, st.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRun(t *testing.T) {
	cases := []struct {
		name     string
		module   string
		args     []string
		env      []string
		stdin    string
		code     int
		stdout   string   // exact, unless empty and stdoutHas is set
		stderrIn []string // substrings of stderr
	}{
		{name: "hello", module: "testprog.wasm", args: []string{"hello"}, stdout: "hello from wasm\n"},
		{
			name: "args", module: "testprog.wasm", args: []string{"args", "a b", "", "ü"},
			stdout: "argv[0]=testprog.wasm\nargv[1]=args\nargv[2]=a b\nargv[3]=\nargv[4]=ü\n",
		},
		{
			name: "env", module: "testprog.wasm", args: []string{"env"},
			env:    []string{"Z=1", "A=x=y", "EMPTY=", "PATH=/bin"},
			stdout: "Z=1\nA=x=y\nEMPTY=\nPATH=/bin\n",
		},
		{name: "no env", module: "testprog.wasm", args: []string{"env"}, stdout: ""},
		{name: "exit 42", module: "testprog.wasm", args: []string{"exit", "42"}, code: 42},
		{name: "exit 0", module: "testprog.wasm", args: []string{"exit", "0"}, code: 0},
		{name: "usage", module: "testprog.wasm", code: 2, stderrIn: []string{"usage"}},
		{name: "cat", module: "testprog.wasm", args: []string{"cat"}, stdin: "line 1\nline 2\n", stdout: "line 1\nline 2\n"},
		{name: "stderr", module: "testprog.wasm", args: []string{"stderr", "oops"}, stderrIn: []string{"oops\n"}},
		{
			name: "trap", module: "testprog.wasm", args: []string{"trap"}, code: ExitTrap,
			stderrIn: []string{"unreachable", "/testprog.wasm"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, tc.module, tc.args...)
			cfg.Env = tc.env
			r := run(t, cfg, tc.stdin)
			if r.code != tc.code {
				t.Errorf("exit code = %d, want %d (stderr %q)", r.code, tc.code, r.stderr)
			}
			if tc.module == "testprog.wasm" && r.stdout != tc.stdout {
				t.Errorf("stdout = %q, want %q", r.stdout, tc.stdout)
			}
			for _, s := range tc.stderrIn {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr %q does not contain %q", r.stderr, s)
				}
			}
		})
	}
}

func TestRunHelloModules(t *testing.T) {
	for _, m := range []string{"hello.wasm", "hello-go.wasm"} {
		t.Run(m, func(t *testing.T) {
			r := run(t, testConfig(t, m), "")
			if r.code != 0 || !strings.Contains(strings.ToLower(r.stdout), "hello") {
				t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
			}
		})
	}
}

// The guest sees the real wall clock, not wazero's deterministic fake one.
func TestRunClock(t *testing.T) {
	r := run(t, testConfig(t, "testprog.wasm", "clock"), "")
	secs, err := strconv.ParseInt(strings.TrimSpace(r.stdout), 10, 64)
	if err != nil || r.code != 0 {
		t.Fatalf("clock: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if d := time.Since(time.Unix(secs, 0)); d < -5*time.Second || d > 5*time.Second {
		t.Errorf("guest clock %s is %v away from the host's", time.Unix(secs, 0), d)
	}
}

// The guest's random source is crypto random, not wazero's deterministic one.
func TestRunRandom(t *testing.T) {
	get := func() string {
		r := run(t, testConfig(t, "testprog.wasm", "random"), "")
		if r.code != 0 || len(strings.TrimSpace(r.stdout)) != 32 {
			t.Fatalf("random: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		return r.stdout
	}
	if a, b := get(), get(); a == b {
		t.Errorf("two runs got the same random bytes %s", a)
	}
}

func TestRunFilesystem(t *testing.T) {
	t.Run("write into the rootfs", func(t *testing.T) {
		cfg := testConfig(t, "testprog.wasm", "write", "/out.txt", "hi")
		if r := run(t, cfg, ""); r.code != 0 {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
		if b, err := os.ReadFile(filepath.Join(cfg.Rootfs, "out.txt")); err != nil || string(b) != "hi" {
			t.Errorf("rootfs/out.txt = %q, %v; want hi", b, err)
		}
	})
	t.Run("read from the rootfs", func(t *testing.T) {
		cfg := testConfig(t, "testprog.wasm", "read", "/etc/greeting")
		os.MkdirAll(filepath.Join(cfg.Rootfs, "etc"), 0o755)
		os.WriteFile(filepath.Join(cfg.Rootfs, "etc", "greeting"), []byte("hey"), 0o644)
		if r := run(t, cfg, ""); r.code != 0 || r.stdout != "hey" {
			t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("read-only rootfs", func(t *testing.T) {
		cfg := testConfig(t, "testprog.wasm", "write", "/out.txt", "hi")
		cfg.RootReadOnly = true
		if r := run(t, cfg, ""); r.code != 1 {
			t.Errorf("exit %d, want 1 (stderr %q)", r.code, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(cfg.Rootfs, "out.txt")); err == nil {
			t.Error("the write reached the read-only rootfs")
		}
	})
	t.Run("bind mount", func(t *testing.T) {
		src := t.TempDir()
		cfg := testConfig(t, "testprog.wasm", "write", "/data/out.txt", "hi")
		cfg.Mounts = []oci.Mount{{Source: src, Destination: "/data"}}
		if r := run(t, cfg, ""); r.code != 0 {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
		if b, err := os.ReadFile(filepath.Join(src, "out.txt")); err != nil || string(b) != "hi" {
			t.Errorf("mount source out.txt = %q, %v; want hi", b, err)
		}
		if _, err := os.Stat(filepath.Join(cfg.Rootfs, "data", "out.txt")); err == nil {
			t.Error("the write went to the rootfs instead of the mount")
		}
	})
	t.Run("read-only bind mount", func(t *testing.T) {
		src := t.TempDir()
		cfg := testConfig(t, "testprog.wasm", "write", "/data/out.txt", "hi")
		cfg.Mounts = []oci.Mount{{Source: src, Destination: "/data", ReadOnly: true}}
		if r := run(t, cfg, ""); r.code != 1 {
			t.Errorf("exit %d, want 1 (stderr %q)", r.code, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(src, "out.txt")); err == nil {
			t.Error("the write reached the read-only mount")
		}
	})
	t.Run("list a bind mount", func(t *testing.T) {
		src := t.TempDir()
		os.WriteFile(filepath.Join(src, "f1"), nil, 0o644)
		cfg := testConfig(t, "testprog.wasm", "ls", "/data")
		cfg.Mounts = []oci.Mount{{Source: src, Destination: "/data", ReadOnly: true}}
		if r := run(t, cfg, ""); r.code != 0 || r.stdout != "f1\n" {
			t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})
}

// A guest that grows past MemoryPages gets a failed memory.grow (malloc returns NULL), not more memory.
func TestRunMemoryCap(t *testing.T) {
	cfg := testConfig(t, "testprog.wasm", "grow", "200")
	cfg.MemoryPages = oci.MemoryPages(48 << 20) // 40 MiB
	r := run(t, cfg, "")
	if r.code != 3 || !strings.Contains(r.stderr, "out of memory after") {
		t.Fatalf("exit %d, stderr %q; want 3 and out of memory", r.code, r.stderr)
	}
	var n int
	if _, err := fmt.Sscanf(r.stderr, "out of memory after %d MiB", &n); err != nil || n < 1 || n > 40 {
		t.Errorf("grew %d MiB (%v) under a 40 MiB cap", n, err)
	}

	cfg = testConfig(t, "testprog.wasm", "grow", "20")
	cfg.MemoryPages = oci.MemoryPages(48 << 20)
	if r := run(t, cfg, ""); r.code != 0 {
		t.Errorf("grow 20 under a 40 MiB cap: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestPrepareCorruptCache damages every cache entry in the ways a crash or a full disk can, and
// checks that the module still runs, the damage is reported, and the cache heals.
func TestPrepareCorruptCache(t *testing.T) {
	damage := map[string]func(path string, size int64) error{
		"truncated":   func(p string, n int64) error { return os.Truncate(p, n/2) },
		"emptied":     func(p string, n int64) error { return os.Truncate(p, 0) },
		"overwritten": func(p string, n int64) error { return overwrite(p, n/2) },
	}
	for name, fn := range damage {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t, "testprog.wasm", "hello")
			cfg.CacheDir = t.TempDir()
			prepare(t, cfg)
			entries := 0
			filepath.WalkDir(cfg.CacheDir, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					st, _ := d.Info()
					if err := fn(p, st.Size()); err != nil {
						t.Fatal(err)
					}
					entries++
				}
				return nil
			})
			if entries == 0 {
				t.Fatal("the first Prepare left no cache entry to damage")
			}
			p := prepare(t, cfg)
			if p.CacheProblem == "" || p.CacheHit {
				t.Errorf("damaged entry: CacheProblem %q CacheHit %v, want a problem reported", p.CacheProblem, p.CacheHit)
			}
			if code := Run(context.Background(), cfg, p, strings.NewReader(""), io.Discard, io.Discard); code != 0 {
				t.Errorf("module from a healed cache exited %d", code)
			}
			if p := prepare(t, cfg); !p.CacheHit || p.CacheProblem != "" {
				t.Errorf("after healing: CacheHit %v CacheProblem %q, want a clean hit", p.CacheHit, p.CacheProblem)
			}
		})
	}
}

// TestPrepareInvalidKeepsCache checks that an invalid module is reported as such and does not
// clear the cache of the node.
func TestPrepareInvalidKeepsCache(t *testing.T) {
	dir := t.TempDir()
	good := testConfig(t, "testprog.wasm")
	good.CacheDir = dir
	prepare(t, good)
	before := countEntries(dir)
	bad := testConfig(t, "invalid.wasm")
	bad.CacheDir = dir
	if _, err := Prepare(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "invalid") {
		t.Fatalf("invalid module: %v", err)
	}
	if after := countEntries(dir); after != before || before == 0 {
		t.Fatalf("cache entries %d before, %d after an invalid module", before, after)
	}
}

func overwrite(path string, at int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteAt([]byte("garbage!garbage!"), at)
	return err
}

// TestPrepareRefusesWritableCache checks that a cache directory others can write is not used.
func TestPrepareRefusesWritableCache(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, "testprog.wasm")
	cfg.CacheDir = dir
	p := prepare(t, cfg)
	if !strings.Contains(p.CacheProblem, "writable by group or others") {
		t.Fatalf("CacheProblem %q, want the writable cache refused", p.CacheProblem)
	}
	if n := countEntries(dir); n != 0 {
		t.Fatalf("%d entries written to a world-writable cache", n)
	}
}
