//go:build linux

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testImage is testdata/build/images/wasmtest.tar: /testprog.wasm (multi-command, argv[1] selects),
// /hello.wasm, /hello-go.wasm, /nostart.wasm, /badimport.wasm, /invalid.wasm, /notwasm.wasm,
// /bin/testprog.wasm; image env PATH=/bin.
const testImage = "docker.io/library/wasmtest:latest"

// errorCases: `ctr run` must fail (non-zero exit) with a stderr that names the problem.
// want is the stable substring of the shim's message (the contract; adjust here if the wording
// changes); it is matched after removing every occurrence of mustName, which must also appear.
var errorCases = []struct {
	name     string
	args     []string
	mounts   []mount
	mustName string // the module path / mount source the message must name
	want     string // stable substring of the error ("" = only mustName)
}{
	{name: "module-missing", args: []string{"/nope.wasm"}, mustName: "/nope.wasm"},
	{name: "not-wasm", args: []string{"/notwasm.wasm"}, mustName: "/notwasm.wasm", want: "not a WebAssembly module"},
	{name: "no-start", args: []string{"/nostart.wasm"}, mustName: "/nostart.wasm", want: "_start"},
	{name: "invalid", args: []string{"/invalid.wasm"}, mustName: "/invalid.wasm", want: "invalid"},
	{name: "unknown-import", args: []string{"/badimport.wasm"}, mustName: "/badimport.wasm", want: "not_a_wasi_function"},
	{
		name:     "mount-source-missing",
		args:     []string{"/testprog.wasm", "hello"},
		mounts:   []mount{{src: "/nonexistent-dir-xyz", dst: "/data"}},
		mustName: "/nonexistent-dir-xyz",
	},
}

// Other message substrings the tests rely on.
const (
	trapWant     = "unreachable"                     // wazero's trap message for the `unreachable` instruction
	oomWant      = "out of memory after"             // testprog grow: malloc failed inside the guest (exit 3)
	writeErrWant = "write /data/out.txt"             // testprog write: "write PATH: <strerror>" on stderr
	exitWantFmt  = "exit with non-zero exit code %d" // ctr task rm's warning carrying the exit status
)

// lines splits output into lines without the trailing empty one.
func lines(s string) []string {
	s = strings.TrimRight(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func hasLine(s, want string) bool {
	for _, l := range lines(s) {
		if l == want {
			return true
		}
	}
	return false
}

func wantSuccess(t *testing.T, r result) {
	t.Helper()
	if r.exit != 0 {
		t.Fatalf("ctr run: exit %d, want 0\n%s", r.exit, r)
	}
}

func testprog(args ...string) []string { return append([]string{"/testprog.wasm"}, args...) }

func TestHello(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		t.Run("c", func(t *testing.T) {
			r := d.run(t, runOpts{args: testprog("hello")})
			wantSuccess(t, r)
			if !strings.Contains(r.stdout, "hello from wasm") {
				t.Errorf("stdout %q does not contain %q", r.stdout, "hello from wasm")
			}
		})
		t.Run("c-hello-module", func(t *testing.T) {
			r := d.run(t, runOpts{args: []string{"/hello.wasm"}})
			wantSuccess(t, r)
			if !strings.Contains(r.stdout, "hello") {
				t.Errorf("stdout %q does not contain %q", r.stdout, "hello")
			}
		})
		t.Run("go", func(t *testing.T) {
			r := d.run(t, runOpts{args: []string{"/hello-go.wasm"}})
			wantSuccess(t, r)
			if !strings.Contains(r.stdout, "hello from go wasip1") {
				t.Errorf("stdout %q does not contain %q", r.stdout, "hello from go wasip1")
			}
		})
	})
}

func TestArgs(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		r := d.run(t, runOpts{args: testprog("args", "a b")})
		wantSuccess(t, r)
		want := []string{"argv[0]=/testprog.wasm", "argv[1]=args", "argv[2]=a b"}
		if got := lines(r.stdout); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("stdout lines = %q, want %q", got, want)
		}
	})
}

func TestEnv(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		r := d.run(t, runOpts{args: testprog("env"), env: []string{"FOO=bar"}})
		wantSuccess(t, r)
		for _, want := range []string{"FOO=bar", "PATH=/bin"} {
			if !hasLine(r.stdout, want) {
				t.Errorf("environ has no line %q:\n%s", want, r.stdout)
			}
		}
	})
}

func TestExitCode(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		r := d.run(t, runOpts{args: testprog("exit", "42")})
		if r.exit != 42 {
			t.Errorf("ctr run exit = %d, want 42\n%s", r.exit, r)
		}
	})
}

func TestStdin(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		in := "line1\nline2\n"
		r := d.run(t, runOpts{args: testprog("cat"), stdin: in, timeout: 60 * time.Second})
		wantSuccess(t, r)
		if r.stdout != in {
			t.Errorf("stdout = %q, want %q", r.stdout, in)
		}
	})
}

func TestStderr(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		r := d.run(t, runOpts{args: testprog("stderr", "to-stderr-xyz")})
		wantSuccess(t, r)
		if !strings.Contains(r.stderr, "to-stderr-xyz") {
			t.Errorf("stderr %q does not contain the message", r.stderr)
		}
		if strings.Contains(r.stdout, "to-stderr-xyz") {
			t.Errorf("stderr message leaked to stdout %q", r.stdout)
		}
	})
}

func TestPathLookup(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		// No slash: resolved through the image's PATH=/bin to /bin/testprog.wasm.
		r := d.run(t, runOpts{args: []string{"testprog.wasm", "hello"}})
		wantSuccess(t, r)
		if !strings.Contains(r.stdout, "hello from wasm") {
			t.Errorf("stdout %q does not contain %q", r.stdout, "hello from wasm")
		}
	})
}

func TestBindMount(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		t.Run("rw", func(t *testing.T) {
			host := t.TempDir()
			r := d.run(t, runOpts{
				args:   testprog("write", "/data/out.txt", "hi"),
				mounts: []mount{{src: host, dst: "/data"}},
			})
			wantSuccess(t, r)
			if !strings.Contains(r.stdout, "wrote /data/out.txt") {
				t.Errorf("stdout %q does not contain %q", r.stdout, "wrote /data/out.txt")
			}
			b, err := os.ReadFile(filepath.Join(host, "out.txt"))
			if err != nil {
				t.Fatalf("host file: %v", err)
			}
			if strings.TrimSpace(string(b)) != "hi" {
				t.Errorf("host file contains %q, want %q", b, "hi")
			}
		})
		t.Run("ro", func(t *testing.T) {
			host := t.TempDir()
			r := d.run(t, runOpts{
				args:   testprog("write", "/data/out.txt", "hi"),
				mounts: []mount{{src: host, dst: "/data", ro: true}},
			})
			if r.exit == 0 {
				t.Errorf("write to a read-only mount succeeded\n%s", r)
			}
			if !strings.Contains(r.stderr, writeErrWant) {
				t.Errorf("stderr does not mention the failed write (%q):\n%s", writeErrWant, r.stderr)
			}
			if _, err := os.Stat(filepath.Join(host, "out.txt")); !os.IsNotExist(err) {
				t.Errorf("host file exists after a write through a read-only mount (stat: %v)", err)
			}
		})
	})
}

func TestMemoryLimit(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		r := d.run(t, runOpts{args: testprog("grow", "512"), memoryLimit: 64 << 20})
		switch {
		case r.timedOut:
			t.Fatalf("grow 512 with a 64 MiB limit did not finish")
		case r.exit != 3 || !strings.Contains(r.stdout+r.stderr, oomWant):
			// The guest's linear memory is capped below the limit and reserved up front, so
			// the guest's own malloc fails (exit 3) before the kernel would OOM-kill (137).
			t.Errorf("grow 512 with a 64 MiB limit: want exit 3 with %q (malloc failed in the guest)\n%s", oomWant, r)
		}
		// The daemon and the runtime survive.
		if _, se, code := d.ctr(t, "version"); code != 0 {
			t.Fatalf("ctr version after the memory test: exit %d: %s", code, se)
		}
		r = d.run(t, runOpts{args: testprog("hello")})
		wantSuccess(t, r)
		if !strings.Contains(r.stdout, "hello from wasm") {
			t.Errorf("hello after the memory test: stdout %q", r.stdout)
		}
	})
}

func TestKill(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		for _, tc := range []struct {
			name, signal string // "" = ctr task kill's default, SIGTERM
			exit         int
		}{
			{"sigterm-default", "", 143},
			{"sigkill", "SIGKILL", 137},
		} {
			t.Run(tc.name, func(t *testing.T) { killCase(t, d, tc.signal, tc.exit) })
		}
	})
}

// killCase runs a detached sleeping task, kills it with ctr task kill and checks the exit status
// that ctr task rm reports (ctr has no `task wait`; `task rm` logs "exit with non-zero exit code N").
func killCase(t *testing.T, d *daemon, signal string, wantExit int) {
	id := newID(t, d)
	t.Cleanup(func() { d.ensureRemoved(t, id) })
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	args := d.runArgs(runOpts{image: testImage, id: id, args: testprog("sleep", "60")}, "--detach")
	r := d.exec(ctx, nil, args...)
	cancel()
	t.Logf("ctr %s\n%s", strings.Join(args, " "), r)
	if r.exit != 0 {
		t.Fatalf("ctr run --detach: exit %d\n%s", r.exit, r)
	}
	if !d.waitStatus(t, id, "RUNNING", 30*time.Second) {
		t.FailNow()
	}

	so, se, code := d.ctr(t, "task", "ps", id)
	if code != 0 {
		t.Fatalf("ctr task ps: exit %d: %s", code, se)
	}
	var pids []int
	for _, l := range lines(so)[min(1, len(lines(so))):] { // skip the "PID INFO" header
		if f := strings.Fields(l); len(f) > 0 {
			if pid, err := strconv.Atoi(f[0]); err == nil && pid > 0 {
				pids = append(pids, pid)
			}
		}
	}
	if len(pids) == 0 {
		t.Errorf("ctr task ps lists no PID:\n%s", so)
	}
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			t.Errorf("ctr task ps lists PID %d, which is not a live process", pid)
		}
	}

	killArgs := []string{"task", "kill"}
	if signal != "" {
		killArgs = append(killArgs, "--signal", signal)
	}
	if _, se, code := d.ctr(t, append(killArgs, id)...); code != 0 {
		t.Fatalf("ctr %s: exit %d: %s", strings.Join(killArgs, " "), code, se)
	}
	if !d.waitStatus(t, id, "STOPPED", 20*time.Second) {
		t.FailNow()
	}
	_, se, code = d.ctr(t, "task", "rm", id)
	if code != 0 {
		t.Errorf("ctr task rm: exit %d: %s", code, se)
	}
	if want := fmt.Sprintf(exitWantFmt, wantExit); !strings.Contains(se, want) {
		t.Errorf("ctr task rm stderr does not report the exit status (%q):\n%s", want, se)
	}
	if _, se, code := d.ctr(t, "container", "rm", id); code != 0 {
		t.Errorf("ctr container rm: exit %d: %s", code, se)
	}
}

func TestErrors(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		for _, tc := range errorCases {
			t.Run(tc.name, func(t *testing.T) {
				r := d.run(t, runOpts{args: tc.args, mounts: tc.mounts, timeout: 60 * time.Second})
				if r.exit == 0 {
					t.Fatalf("ctr run succeeded, want a failure\n%s", r)
				}
				if !strings.Contains(r.stderr, tc.mustName) {
					t.Errorf("stderr does not name %q:\n%s", tc.mustName, r.stderr)
				}
				if tc.want != "" && !strings.Contains(strings.ReplaceAll(r.stderr, tc.mustName, ""), tc.want) {
					t.Errorf("stderr does not contain %q (outside %q):\n%s", tc.want, tc.mustName, r.stderr)
				}
			})
		}
	})
}

func TestTrap(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		r := d.run(t, runOpts{args: testprog("trap")})
		if r.exit == 0 {
			t.Errorf("trap exited 0\n%s", r)
		}
		if !strings.Contains(r.stderr, trapWant) {
			t.Errorf("stderr does not contain %q:\n%s", trapWant, r.stderr)
		}
	})
}

// TestMemoryLimitTooSmall checks the two ways a memory limit can be too small for a module, and
// that each gets a message saying so rather than a generic failure.
func TestMemoryLimitTooSmall(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		cases := []struct {
			name  string
			limit int64
			want  string
		}{
			// The Go module declares 38 pages (2.4 MiB) of minimum memory; 12 MiB leaves the guest 64 KiB.
			{"below the module's minimum memory", 12 << 20, "needs more linear memory than the container's memory limit leaves for it"},
			// 20 MiB leaves the guest enough pages, but the runner cannot load the module in it.
			{"runner OOM-killed while loading", 20 << 20, "memory limit of 20 MiB is too small for this module"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := d.run(t, runOpts{args: []string{"/hello-go.wasm"}, memoryLimit: tc.limit})
				if r.exit == 0 || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "/hello-go.wasm") {
					t.Fatalf("want a failed run whose error names /hello-go.wasm and says %q\n%s", tc.want, r)
				}
			})
		}
	})
}
