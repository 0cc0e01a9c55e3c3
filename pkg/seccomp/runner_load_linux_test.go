package seccomp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
	"golang.org/x/sys/unix"
)

// TestRunnerProfileLoad runs TestRunnerProfileChild in a child process (a filter cannot be
// removed): it loads RunnerProfile as a runner does, then does what a runner does after its drop.
const runnerChildEnv = "SECCOMP_RUNNER_PROFILE_CHILD"

func TestRunnerProfileLoad(t *testing.T) {
	if _, _, errno := unix.Syscall(unix.SYS_PRCTL, unix.PR_GET_SECCOMP, 0, 0); errno != 0 {
		t.Skipf("seccomp not available: %v", errno)
	}
	goarchForTest(t)
	mod := runnerTestprog(t)
	cmd := exec.Command(runnerChildBinary(t), "-test.run=^TestRunnerProfileChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), runnerChildEnv+"="+mod)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil || !strings.Contains(out.String(), "RUNNER-CHILD-OK") {
			t.Fatalf("child: %v\n%s", err, out.String())
		}
	case <-time.After(3 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("child timed out\n%s", out.String())
	}
	t.Logf("child:\n%s", out.String())
}

// runnerChildBinary is a test binary like the runner: built with CGO_ENABLED=0. This one, when it
// is; otherwise (go test with cgo, the default where a C compiler is installed) this package's
// tests built again without cgo: a cgo binary makes threads through glibc, which needs calls a
// runner does not make (rseq, set_robust_list), and AllThreadsSyscall, which the drop needs,
// does not work in one.
func runnerChildBinary(t *testing.T) string {
	t.Helper()
	if _, _, errno := syscall.AllThreadsSyscall(unix.SYS_GETPID, 0, 0, 0); errno != syscall.ENOTSUP {
		return os.Args[0]
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "seccomp-nocgo.test")
	cmd := exec.Command(goTool, "test", "-c", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("build the test binary with CGO_ENABLED=0: %v\n%s", err, out)
		}
		t.Skipf("cannot build the test binary with CGO_ENABLED=0: %v\n%s", err, out)
	}
	return bin
}

// runnerTestprog is testdata/build/testprog.wasm, built with make when missing; the test is
// skipped without the toolchain (failed when CI=true).
func runnerTestprog(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "testdata"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "build", "testprog.wasm")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if out, err := exec.Command("make", "-C", dir, "build/testprog.wasm").CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("build testprog.wasm: %v\n%s", err, out)
		}
		t.Skipf("cannot build testprog.wasm (make -C testdata): %v\n%s", err, out)
	}
	return p
}

// runnerRuntime is a wazero runtime with testprog compiled in it, as a runner has after Prepare.
type runnerRuntime struct {
	name string
	r    wazero.Runtime
	mod  wazero.CompiledModule
}

func TestRunnerProfileChild(t *testing.T) {
	modPath := os.Getenv(runnerChildEnv)
	if modPath == "" {
		t.Skip("only run as the child of TestRunnerProfileLoad")
	}
	ctx := context.Background()

	// The privileged setup, before the filter: compile the module with the compiler and the
	// interpreter, listen, and (standing in for the clients of a server) connect to the
	// listener, which the filter then forbids.
	code, err := os.ReadFile(modPath)
	if err != nil {
		t.Fatal(err)
	}
	var rts []runnerRuntime
	for _, c := range []struct {
		name string
		cfg  wazero.RuntimeConfig
	}{{"compiler", wazero.NewRuntimeConfigCompiler()}, {"interpreter", wazero.NewRuntimeConfigInterpreter()}} {
		r := wazero.NewRuntimeWithConfig(ctx, c.cfg.WithMemoryLimitPages(2048))
		wasi_snapshot_preview1.MustInstantiate(ctx, r)
		m, err := r.CompileModule(ctx, code)
		if err != nil {
			t.Fatalf("%s: compile: %v", c.name, err)
		}
		rts = append(rts, runnerRuntime{c.name, r, m})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	clients := make([]net.Conn, 8)
	for i := range clients {
		if clients[i], err = net.Dial("tcp", ln.Addr().String()); err != nil {
			t.Fatal(err)
		}
	}
	groups, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	// The filter, as the runner loads it: as root without no_new_privs (the drop follows).
	if os.Geteuid() != 0 {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := Load(RunnerProfile()); err != nil {
		t.Fatalf("Load(RunnerProfile()): %v", err)
	}
	if s := runnerStatus(t, "Seccomp"); s != "2" {
		t.Fatalf("Seccomp: %q after Load, want 2", s)
	}
	t.Log("RunnerProfile loaded")

	runnerDrop(t, groups)
	runnerMemory(t)
	runnerFiles(t, dir)
	runnerTimersAndSignals(t)
	runnerNetwork(t, ln, clients)
	for _, rt := range rts {
		runnerWasm(t, ctx, rt, dir)
	}
	// The interpreter compiles without executable memory: after the filter too.
	if m, err := rts[1].r.CompileModule(ctx, code); err != nil {
		t.Errorf("interpreter: compile under the filter: %v", err)
	} else {
		runnerWasm(t, ctx, runnerRuntime{"interpreter, compiled under the filter", rts[1].r, m}, dir)
	}
	runnerDenials(t)
	for _, rt := range rts {
		rt.r.Close(ctx) // munmap of the compiled code
	}
	// Some threads were made under the filter: every thread has it.
	if s := runnerStatus(t, "Seccomp"); s != "2" {
		t.Errorf("Seccomp: %q at the end, want 2", s)
	}
	if !t.Failed() {
		fmt.Println("RUNNER-CHILD-OK")
	}
}

// runnerStatus reads a field of /proc/self/status.
func runnerStatus(t *testing.T, field string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// runnerAllThreads is the drop's allThreads; in a cgo build (where AllThreadsSyscall is not
// available) the call is made on the calling thread only: what matters here is that the filter
// lets it through.
func runnerAllThreads(trap, a1, a2, a3 uintptr) error {
	_, _, errno := syscall.AllThreadsSyscall(trap, a1, a2, a3)
	if errno == syscall.ENOTSUP {
		_, _, errno = syscall.RawSyscall(trap, a1, a2, a3)
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// runnerDrop makes the drop's calls (pkg/engine/drop_linux.go) with the process's own ids and
// capabilities, then loads a spec profile on top.
func runnerDrop(t *testing.T, groups []int) {
	var lim unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
		t.Errorf("prlimit64 get: %v", err)
	}
	if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
		t.Errorf("prlimit64 set: %v", err)
	}
	if _, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, 0, 0, 0, 0); err != nil {
		t.Errorf("PR_CAPBSET_READ: %v", err)
	}
	if err := runnerAllThreads(unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 1, 0); err != nil {
		t.Errorf("PR_SET_KEEPCAPS: %v", err)
	}
	if os.Geteuid() == 0 {
		if err := syscall.Setgroups(groups); err != nil {
			t.Errorf("setgroups: %v", err)
		}
	}
	if err := syscall.Setresgid(os.Getgid(), os.Getegid(), os.Getegid()); err != nil {
		t.Errorf("setresgid: %v", err)
	}
	if err := syscall.Setresuid(os.Getuid(), os.Geteuid(), os.Geteuid()); err != nil {
		t.Errorf("setresuid: %v", err)
	}
	if err := runnerAllThreads(unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 0, 0); err != nil {
		t.Errorf("PR_SET_KEEPCAPS 0: %v", err)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0); err != nil {
		t.Errorf("PR_SET_DUMPABLE: %v", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Errorf("capget: %v", err)
	}
	if err := runnerAllThreads(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); err != nil {
		t.Errorf("capset: %v", err)
	}
	if err := runnerAllThreads(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		t.Errorf("PR_CAP_AMBIENT_CLEAR_ALL: %v", err)
	}
	syscall.Umask(0o022)
	if err := runnerAllThreads(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		t.Errorf("PR_SET_NO_NEW_PRIVS: %v", err)
	}
	// The spec's profile, on top: allow by default, uname fails with ENOTTY.
	enotty := uint(unix.ENOTTY)
	spec := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Flags:         []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagSpecAllow},
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"uname"}, Action: specs.ActErrno, ErrnoRet: &enotty}},
	}
	if err := Load(spec); err != nil {
		t.Fatalf("loading the spec's profile under RunnerProfile: %v", err)
	}
	var u unix.Utsname
	if err := unix.Uname(&u); !errors.Is(err, unix.ENOTTY) {
		t.Errorf("uname under the spec's profile: %v, want ENOTTY", err)
	}
	t.Log("drop calls and the spec's profile: ok")
}

// runnerMemory: goroutines, threads, big allocations, GC and returning memory to the kernel.
func runnerMemory(t *testing.T) {
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			b := make([]byte, (1+i%4)<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = byte(i)
			}
			runtime.Gosched()
		}(i)
	}
	wg.Wait()
	// New threads: goroutines locked to their threads, blocked in the kernel.
	release := make(chan struct{})
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			<-release
		}()
	}
	big := make([]byte, 256<<20)
	for j := 0; j < len(big); j += 4096 {
		big[j] = 1
	}
	big = nil
	runtime.GC()
	debug.FreeOSMemory()
	// CPU-bound goroutines get preempted by signals.
	deadline := time.Now().Add(50 * time.Millisecond)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for x := 0; time.Now().Before(deadline); x++ {
			}
		}()
	}
	close(release)
	wg.Wait()
	old := debug.SetMemoryLimit(64 << 20)
	_ = make([]byte, 32<<20)
	debug.SetMemoryLimit(old)
	runtime.GC()
	t.Logf("memory: ok (threads: %s)", runnerStatus(t, "Threads"))
}

// runnerFiles: what wazero's file system does through os and syscall.
func runnerFiles(t *testing.T, dir string) {
	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	p := filepath.Join(dir, "a")
	check("write", os.WriteFile(p, []byte("hello"), 0o644))
	b, err := os.ReadFile(p)
	check("read", err)
	if string(b) != "hello" {
		t.Errorf("read %q", b)
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_APPEND, 0)
	check("open", err)
	if f != nil {
		_, err = f.WriteString(" world")
		check("append", err)
		_, err = f.Seek(0, io.SeekStart)
		check("seek", err)
		_, err = f.ReadAt(make([]byte, 3), 1)
		check("pread", err)
		_, err = f.Stat()
		check("fstat", err)
		check("fsync", f.Sync())
		check("fdatasync", syscall.Fdatasync(int(f.Fd())))
		check("ftruncate", f.Truncate(5))
		check("close", f.Close())
	}
	check("mkdir", os.Mkdir(filepath.Join(dir, "d"), 0o755))
	check("rename", os.Rename(p, filepath.Join(dir, "d", "b")))
	check("symlink", os.Symlink("b", filepath.Join(dir, "d", "l")))
	_, err = os.Readlink(filepath.Join(dir, "d", "l"))
	check("readlink", err)
	check("link", os.Link(filepath.Join(dir, "d", "b"), filepath.Join(dir, "d", "h")))
	_, err = os.Lstat(filepath.Join(dir, "d", "l"))
	check("lstat", err)
	now := time.Now()
	check("utimensat", os.Chtimes(filepath.Join(dir, "d", "b"), now, now))
	src, err := os.Open(filepath.Join(dir, "d", "b"))
	check("open", err)
	dst, err := os.Create(filepath.Join(dir, "d", "c"))
	check("create", err)
	if src != nil && dst != nil {
		_, err = io.Copy(dst, src) // copy_file_range
		check("copy", err)
		src.Close()
		dst.Close()
	}
	ents, err := os.ReadDir(filepath.Join(dir, "d"))
	check("readdir", err)
	if len(ents) != 4 {
		t.Errorf("readdir: %d entries, want 4", len(ents))
	}
	pr, pw, err := os.Pipe()
	check("pipe", err)
	if err == nil {
		go func() { pw.Write([]byte("through a pipe")); pw.Close() }()
		b, err := io.ReadAll(pr)
		check("read pipe", err)
		if string(b) != "through a pipe" {
			t.Errorf("pipe: %q", b)
		}
		pr.Close()
	}
	// /proc/self/fd, as the socket wait lists it, and a cgroup file, as GOMAXPROCS reads it.
	fds, err := os.ReadDir("/proc/self/fd")
	check("/proc/self/fd", err)
	if len(fds) == 0 {
		t.Error("/proc/self/fd is empty")
	}
	runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	check("remove", os.Remove(filepath.Join(dir, "d", "h")))
	check("removeall", os.RemoveAll(filepath.Join(dir, "d")))
	t.Log("files: ok")
}

// runnerTimersAndSignals: sleeps, timers, tickers, signals to the process and to a thread.
func runnerTimersAndSignals(t *testing.T) {
	time.Sleep(10 * time.Millisecond)
	fired := make(chan struct{})
	time.AfterFunc(5*time.Millisecond, func() { close(fired) })
	tk := time.NewTicker(2 * time.Millisecond)
	for i := 0; i < 3; i++ {
		<-tk.C
	}
	tk.Stop()
	<-fired
	c := make(chan os.Signal, 2)
	signal.Notify(c, syscall.SIGUSR1, syscall.SIGTERM)
	defer signal.Stop(c)
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Errorf("kill: %v", err)
	}
	if err := unix.Tgkill(os.Getpid(), unix.Gettid(), unix.SIGTERM); err != nil {
		t.Errorf("tgkill: %v", err)
	}
	for i := 0; i < 2; i++ {
		select {
		case <-c:
		case <-time.After(5 * time.Second):
			t.Fatal("a signal did not arrive")
		}
	}
	t.Log("timers and signals: ok")
}

// runnerNetwork: an HTTP server on a listener opened before the filter (the per-request mode),
// its clients connected before the filter; listening anew (wazero's guest listeners); and no
// outgoing connection, UDP or unix socket.
func runnerNetwork(t *testing.T, ln net.Listener, clients []net.Conn) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, len(body))
	})}
	go srv.Serve(ln)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func(i int, c net.Conn) {
			defer wg.Done()
			defer c.Close()
			br := bufio.NewReader(c)
			for j := 0; j < 4; j++ {
				body := strings.Repeat("x", i*1000)
				fmt.Fprintf(c, "POST /r%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", i, len(body), body)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Errorf("client %d: %v", i, err)
					return
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := fmt.Sprintf("POST /r%d %d", i, len(body)); string(got) != want {
					t.Errorf("client %d: %q, want %q", i, got, want)
				}
			}
		}(i, c)
	}
	wg.Wait()
	srv.Close()

	for _, a := range []string{"127.0.0.1:0", "[::1]:0"} {
		l, err := net.Listen("tcp", a)
		if err != nil {
			if a == "[::1]:0" && !errors.Is(err, unix.EPERM) {
				t.Logf("listen %s: %v (no IPv6)", a, err)
				continue
			}
			t.Errorf("listen %s under the filter: %v", a, err)
			continue
		}
		if _, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); !errors.Is(err, unix.EPERM) {
			t.Errorf("connect to %s: %v, want EPERM", l.Addr(), err)
		}
		l.Close()
	}
	if _, err := net.InterfaceAddrs(); err != nil { // netlink route
		t.Errorf("interface addresses: %v", err)
	}
	if c, err := net.ListenPacket("udp", "127.0.0.1:0"); !errors.Is(err, unix.EPERM) {
		t.Errorf("UDP socket: %v, want EPERM", err)
		if c != nil {
			c.Close()
		}
	}
	if l, err := net.Listen("unix", filepath.Join(os.TempDir(), fmt.Sprintf("runner-seccomp-%d.sock", os.Getpid()))); !errors.Is(err, unix.EPERM) {
		t.Errorf("unix socket: %v, want EPERM", err)
		if l != nil {
			l.Close()
		}
	}
	t.Log("network: ok")
}

// runnerWasm runs testprog's commands in a fresh instance each, with a directory mount.
func runnerWasm(t *testing.T, ctx context.Context, rt runnerRuntime, dir string) {
	run := func(stdin string, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		mc := wazero.NewModuleConfig().WithName("").
			WithArgs(append([]string{"testprog"}, args...)...).
			WithStdin(strings.NewReader(stdin)).WithStdout(&out).WithStderr(&errOut).
			WithSysWalltime().WithSysNanotime().WithSysNanosleep().
			WithRandSource(runnerRand{}).
			WithFSConfig(wazero.NewFSConfig().WithDirMount(dir, "/"))
		mod, err := rt.r.InstantiateModule(ctx, rt.mod, mc)
		if mod != nil {
			mod.Close(ctx)
		}
		var exit *sys.ExitError
		if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 0) {
			t.Errorf("%s: testprog %v: %v (stderr %q)", rt.name, args, err, errOut.String())
		}
		return out.String()
	}
	expect := func(got, want string, args ...string) {
		t.Helper()
		if !strings.Contains(got, want) {
			t.Errorf("%s: testprog %v: %q, want %q", rt.name, args, got, want)
		}
	}
	expect(run("", "hello"), "hello from wasm", "hello")
	expect(run("", "write", "/f", "from the guest"), "wrote /f", "write")
	expect(run("", "read", "/f"), "from the guest", "read")
	os.Remove(filepath.Join(dir, "sub"))
	expect(run("", "mkdir", "/sub"), "made /sub", "mkdir")
	expect(run("", "ls", "/"), "sub", "ls")
	expect(run("standard input", "cat"), "standard input", "cat")
	expect(run("", "sleep", "0.1"), "slept", "sleep")
	expect(run("", "grow", "50"), "grew 50 MiB", "grow")
	expect(run("", "clock"), "", "clock")
	expect(run("", "random"), "", "random")
	t.Logf("wasm (%s): ok", rt.name)
}

// runnerRand reads getrandom(2), as crypto/rand does.
type runnerRand struct{}

func (runnerRand) Read(b []byte) (int, error) { return unix.Getrandom(b, 0) }

// runnerDenials: the dangerous calls fail with EPERM. Each gets arguments that would make it fail
// with another errno (or do nothing harmful) if the filter let it through.
func runnerDenials(t *testing.T) {
	bad := uintptr(0) // NULL: EFAULT where a call reads a pointer
	cases := []struct {
		name string
		nr   uintptr
		args []uintptr
	}{
		{"mount", unix.SYS_MOUNT, []uintptr{bad, bad, bad, 0, bad}},
		{"umount2", unix.SYS_UMOUNT2, []uintptr{bad, 0}},
		{"pivot_root", unix.SYS_PIVOT_ROOT, []uintptr{bad, bad}},
		{"chroot", unix.SYS_CHROOT, []uintptr{bad}},
		{"unshare", unix.SYS_UNSHARE, []uintptr{0xffffffff}},
		{"setns", unix.SYS_SETNS, []uintptr{^uintptr(0), 0}},
		{"ptrace", unix.SYS_PTRACE, []uintptr{unix.PTRACE_PEEKDATA, 0x3fffffff, 0, 0}},
		{"process_vm_readv", unix.SYS_PROCESS_VM_READV, []uintptr{0x3fffffff, 0, 0, 0, 0, 0}},
		{"execve", unix.SYS_EXECVE, []uintptr{bad, bad, bad}},
		{"execveat", unix.SYS_EXECVEAT, []uintptr{^uintptr(0), bad, bad, bad, 0}},
		{"bpf", unix.SYS_BPF, []uintptr{^uintptr(0), 0, 0}},
		{"keyctl", unix.SYS_KEYCTL, []uintptr{^uintptr(0)}},
		{"add_key", unix.SYS_ADD_KEY, []uintptr{bad, bad, bad, 0, 0}},
		{"perf_event_open", unix.SYS_PERF_EVENT_OPEN, []uintptr{bad, 0, ^uintptr(0), ^uintptr(0), 0}},
		{"userfaultfd", unix.SYS_USERFAULTFD, []uintptr{^uintptr(0)}},
		{"io_uring_setup", unix.SYS_IO_URING_SETUP, []uintptr{0, bad}},
		{"kexec_load", unix.SYS_KEXEC_LOAD, []uintptr{0, 1 << 30, bad, 0}},
		{"init_module", unix.SYS_INIT_MODULE, []uintptr{bad, 0, bad}},
		{"memfd_create", unix.SYS_MEMFD_CREATE, []uintptr{bad, 0}},
		{"clone without CLONE_VM", unix.SYS_CLONE, []uintptr{unix.CLONE_THREAD}},
		{"thread in a new user namespace", unix.SYS_CLONE, []uintptr{unix.CLONE_VM | unix.CLONE_THREAD | unix.CLONE_NEWUSER}},
		{"prctl PR_SET_PTRACER", unix.SYS_PRCTL, []uintptr{unix.PR_SET_PTRACER, 0}},
		{"prlimit64 of pid 1", unix.SYS_PRLIMIT64, []uintptr{1, unix.RLIMIT_NOFILE, 0, bad}},
		{"socket AF_UNIX", unix.SYS_SOCKET, []uintptr{unix.AF_UNIX, unix.SOCK_STREAM | unix.SOCK_CLOEXEC, 0}},
		{"socket raw", unix.SYS_SOCKET, []uintptr{unix.AF_INET, unix.SOCK_RAW | unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP}},
		{"getppid (not on the list)", unix.SYS_GETPPID, nil},
	}
	for _, c := range cases {
		var a [6]uintptr
		copy(a[:], c.args)
		r, _, errno := unix.Syscall6(c.nr, a[0], a[1], a[2], a[3], a[4], a[5])
		if errno != unix.EPERM {
			t.Errorf("%s: %d, %v; want EPERM", c.name, int(r), errno)
			if errno == 0 && (c.nr == unix.SYS_SOCKET || c.nr == unix.SYS_MEMFD_CREATE) {
				unix.Close(int(r))
			}
		}
	}
	if _, _, errno := unix.Syscall(unix.SYS_CLONE3, 0, 0, 0); errno != unix.ENOSYS {
		t.Errorf("clone3: %v, want ENOSYS", errno)
	}
	if err := syscall.Exec("/nonexistent-runner-seccomp-test", []string{"x"}, nil); !errors.Is(err, unix.EPERM) {
		t.Errorf("exec: %v, want EPERM", err)
	}
	if _, err := exec.Command("/bin/true").Output(); err == nil {
		t.Error("running /bin/true under the filter worked")
	} else {
		t.Logf("os/exec: %v", err)
	}
	// No new executable memory.
	if b, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_ANON); !errors.Is(err, unix.EPERM) {
		t.Errorf("mmap RWX: %v, want EPERM", err)
		if err == nil {
			unix.Munmap(b)
		}
	}
	b, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		t.Fatalf("mmap RW: %v", err)
	}
	if err := unix.Mprotect(b, unix.PROT_READ|unix.PROT_EXEC); !errors.Is(err, unix.EPERM) {
		t.Errorf("mprotect RX: %v, want EPERM", err)
	}
	if err := unix.Mprotect(b, unix.PROT_READ); err != nil {
		t.Errorf("mprotect R: %v", err)
	}
	if err := unix.Munmap(b); err != nil {
		t.Errorf("munmap: %v", err)
	}
	t.Log("denials: ok")
}
