package engine

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// spawn starts the test binary as a runner (see TestMain) with stdout and stderr in files, and
// returns it with functions that read them.
func spawn(t *testing.T) (r *Runner, stdout, stderr func() string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("Spawn needs root (CLONE_NEWNS)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	open := func(name string) (*os.File, func() string) {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f, func() string {
			b, _ := os.ReadFile(f.Name())
			return string(b)
		}
	}
	out, stdout := open("stdout")
	errf, stderr := open("stderr")
	r, err = Spawn(self, t.Name(), Stdio{Stdout: out, Stderr: errf}, SpawnOptions{})
	if err != nil {
		t.Fatalf("Spawn: %v", err)
	}
	t.Cleanup(func() {
		r.Close()
		if r.Cmd.ProcessState == nil {
			r.Cmd.Process.Kill()
			r.Cmd.Wait()
		}
	})
	return r, stdout, stderr
}

// wait waits for the runner to exit and returns its exit code.
func wait(t *testing.T, r *Runner) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- r.Cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("wait: %v", err)
		}
		return r.Cmd.ProcessState.ExitCode()
	case <-time.After(30 * time.Second):
		r.Cmd.Process.Kill()
		t.Fatal("the runner did not exit")
		return -1
	}
}

func TestRunnerNoIsolation(t *testing.T) {
	r, _, stderr := spawn(t)
	cfg := testConfig(t, "testprog.wasm", "exit", "7")
	if _, err := r.Configure(cfg); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	if err := r.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if code := wait(t, r); code != 7 {
		t.Errorf("exit code %d, want 7 (stderr %q)", code, stderr())
	}
}

func TestRunnerOutput(t *testing.T) {
	r, stdout, stderr := spawn(t)
	cfg := testConfig(t, "testprog.wasm", "args", "x y")
	cfg.CacheDir = filepath.Join(t.TempDir(), "cache")
	ready, err := r.Configure(cfg)
	if err != nil {
		t.Fatalf("Configure: %v", err)
	}
	if ready.CacheHit {
		t.Error("CacheHit on an empty cache")
	}
	if err := r.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if code := wait(t, r); code != 0 {
		t.Errorf("exit code %d (stderr %q)", code, stderr())
	}
	if want := "argv[0]=testprog.wasm\nargv[1]=args\nargv[2]=x y\n"; stdout() != want {
		t.Errorf("stdout %q, want %q", stdout(), want)
	}
}

func TestRunnerConfigureError(t *testing.T) {
	r, _, _ := spawn(t)
	_, err := r.Configure(testConfig(t, "nostart.wasm"))
	if err == nil || !strings.Contains(err.Error(), "_start") || !strings.Contains(err.Error(), "/nostart.wasm") {
		t.Fatalf("Configure err = %v, want the runner's message about _start", err)
	}
	if code := wait(t, r); code != ExitRunnerError {
		t.Errorf("exit code %d, want %d", code, ExitRunnerError)
	}
}

// A runner whose container is deleted before Start exits without running guest code.
func TestRunnerClosedBeforeStart(t *testing.T) {
	r, stdout, _ := spawn(t)
	if _, err := r.Configure(testConfig(t, "testprog.wasm", "hello")); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	r.Close()
	if code := wait(t, r); code != ExitRunnerError {
		t.Errorf("exit code %d, want %d", code, ExitRunnerError)
	}
	if stdout() != "" {
		t.Errorf("guest ran: stdout %q", stdout())
	}
}

func TestRunnerDiesBeforeReady(t *testing.T) {
	r, _, _ := spawn(t)
	r.Cmd.Process.Kill()
	if _, err := r.Configure(testConfig(t, "testprog.wasm", "hello")); err == nil {
		t.Fatal("Configure succeeded with a dead runner")
	}
}

// With isolation the runner chroots into the rootfs and binds the mounts in its own mount
// namespace: the guest writes through the mount, and the host sees no leftover mount.
func TestRunnerIsolated(t *testing.T) {
	r, stdout, stderr := spawn(t)
	cfg := testConfig(t, "testprog.wasm", "write", "/var/run/secrets/out.txt", "hi")
	cfg.NoIsolation = false
	// /var/run -> /run, as in Debian images: the mount point must be created through the link, inside the rootfs.
	if err := os.MkdirAll(filepath.Join(cfg.Rootfs, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(cfg.Rootfs, "var"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/run", filepath.Join(cfg.Rootfs, "var", "run")); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	cfg.Mounts = []oci.Mount{{Source: src, Destination: "/var/run/secrets"}}
	if _, err := r.Configure(cfg); err != nil {
		if strings.Contains(err.Error(), "operation not permitted") {
			t.Skipf("no mount privileges here: %v", err)
		}
		t.Fatalf("Configure: %v", err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if code := wait(t, r); code != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout(), stderr())
	}
	if b, err := os.ReadFile(filepath.Join(src, "out.txt")); err != nil || string(b) != "hi" {
		t.Errorf("mount source out.txt = %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Rootfs, "run", "secrets")); err != nil {
		t.Errorf("mount point not created inside the rootfs: %v", err)
	}
	if _, err := os.Stat("/run/secrets/out.txt"); err == nil {
		t.Error("the write landed on the host's /run")
	}
}

func TestRunnerIsolatedReadOnly(t *testing.T) {
	r, _, stderr := spawn(t)
	cfg := testConfig(t, "testprog.wasm", "write", "/data/out.txt", "hi")
	cfg.NoIsolation = false
	src := t.TempDir()
	cfg.Mounts = []oci.Mount{{Source: src, Destination: "/data", ReadOnly: true}}
	if _, err := r.Configure(cfg); err != nil {
		if strings.Contains(err.Error(), "operation not permitted") {
			t.Skipf("no mount privileges here: %v", err)
		}
		t.Fatalf("Configure: %v", err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if code := wait(t, r); code != 1 {
		t.Errorf("exit %d, want 1 (stderr %q)", code, stderr())
	}
	if !strings.Contains(stderr(), "Read-only file system") {
		t.Errorf("stderr %q, want EROFS", stderr())
	}
	if _, err := os.Stat(filepath.Join(src, "out.txt")); err == nil {
		t.Error("the write reached the read-only mount")
	}
}

func TestMountTarget(t *testing.T) {
	cases := []struct {
		name  string
		links map[string]string // link (relative to the rootfs) -> target
		dirs  []string          // directories made in the rootfs first
		dest  string
		want  string // relative to the rootfs; "" means an error
		isDir bool
	}{
		{name: "new directory", dest: "/data/x", want: "data/x", isDir: true},
		{name: "file", dest: "/etc/hosts", want: "etc/hosts"},
		{name: "dotdot stays inside", dest: "/../../data", want: "data", isDir: true},
		{name: "through an absolute link", links: map[string]string{"var/run": "/run"}, dest: "/var/run/secrets", want: "run/secrets", isDir: true},
		{name: "absolute link out of the rootfs", links: map[string]string{"etc": "/host/etc"}, dest: "/etc/hosts", want: "host/etc/hosts"},
		{name: "link to itself", links: map[string]string{"etc": "/etc"}, dest: "/etc/hosts", want: ""},
		{name: "link to the root", links: map[string]string{"r": "/"}, dest: "/r", want: "", isDir: true},
		{name: "relative link out of the rootfs", links: map[string]string{"a/l": "../../../../tmp"}, dest: "/a/l/x", want: "tmp/x", isDir: true},
		{name: "the root", dest: "/", want: "", isDir: true},
		{name: "file onto a directory", dirs: []string{"data"}, dest: "/data", want: ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rootfs := t.TempDir()
			for _, d := range tc.dirs {
				if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for l, target := range tc.links {
				os.MkdirAll(filepath.Dir(filepath.Join(rootfs, l)), 0o755)
				if err := os.Symlink(target, filepath.Join(rootfs, l)); err != nil {
					t.Fatal(err)
				}
			}
			root, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(root)
			fd, err := mountTarget(root, tc.dest, tc.isDir)
			if tc.want == "" {
				if err == nil {
					unix.Close(fd)
					t.Fatal("mountTarget succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("mountTarget: %v", err)
			}
			defer unix.Close(fd)
			got, err := os.Readlink(fdPath(fd))
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(rootfs, tc.want); got != want {
				t.Fatalf("mountTarget opened %q, want %q", got, want)
			}
			st, err := os.Lstat(got)
			if err != nil {
				t.Fatalf("mount point not created: %v", err)
			}
			if st.IsDir() != tc.isDir || (!tc.isDir && !st.Mode().IsRegular()) {
				t.Errorf("mount point has mode %v", st.Mode())
			}
		})
	}
}

// TestSpawnNilStdioIsDevNull checks that a runner without stdio gets /dev/null as fds 0-2, never
// a closed descriptor (the Go runtime aborts a process whose standard fds it cannot open).
func TestSpawnNilStdioIsDevNull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("Spawn needs root (CLONE_NEWNS)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r, err := Spawn(self, t.Name(), Stdio{}, SpawnOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { r.Close(); r.Cmd.Process.Kill(); r.Cmd.Wait() }()
	for fd := 0; fd <= 2; fd++ {
		target, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(r.Pid()), "fd", strconv.Itoa(fd)))
		if err != nil || target != "/dev/null" {
			t.Errorf("runner fd %d is %q (%v), want /dev/null", fd, target, err)
		}
	}
}

// A runner's environment is GOMAXPROCS alone: 1 unless SpawnOptions.MaxProcs says otherwise,
// whatever the shim's own (containerd gives shims GOMAXPROCS=2).
func TestSpawnGOMAXPROCS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("Spawn needs root (CLONE_NEWNS)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOMAXPROCS", "2")
	for _, c := range []struct {
		procs int
		want  string
	}{{0, "GOMAXPROCS=1\x00"}, {3, "GOMAXPROCS=3\x00"}} {
		r, err := Spawn(self, t.Name(), Stdio{}, SpawnOptions{MaxProcs: c.procs})
		if err != nil {
			t.Fatal(err)
		}
		// Ready: it has executed (environ is the new program's).
		if _, err := r.Configure(testConfig(t, "testprog.wasm", "hello")); err != nil {
			t.Fatal(err)
		}
		env, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(r.Pid()), "environ"))
		r.Close()
		r.Cmd.Process.Kill()
		r.Cmd.Wait()
		if err != nil || string(env) != c.want {
			t.Errorf("MaxProcs %d: runner environment %q (%v), want %q", c.procs, env, err, c.want)
		}
	}
}

func TestCompileProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	runtime.GOMAXPROCS(1)
	restore := compileProcs()
	if n := runtime.GOMAXPROCS(0); n < 1 || n > runtime.NumCPU() {
		t.Errorf("GOMAXPROCS for a compile = %d, want the default (at most %d CPUs)", n, runtime.NumCPU())
	}
	restore()
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Errorf("GOMAXPROCS after the compile = %d, want 1 again", n)
	}
}

// TestConfigureContextCanceled: a Create given up while the runner still compiles kills the
// runner and says so, rather than leaving a container ready for nobody.
func TestConfigureContextCanceled(t *testing.T) {
	r, _, _ := spawn(t)
	cfg := testConfig(t, "hello-go.wasm") // a 2.6 MB module: compiling it takes far longer than the deadline
	cfg.ColdStart = oci.ColdStartCompile
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := r.ConfigureContext(ctx, cfg)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ConfigureContext = %v, want an error wrapping context.DeadlineExceeded", err)
	}
	wait(t, r) // the runner was killed: it exits (wait fails the test if it does not)
	if ws, ok := r.Cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("runner ended with %v, want killed by SIGKILL", r.Cmd.ProcessState)
	}
}
