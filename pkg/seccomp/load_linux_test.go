package seccomp

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The load tests install filters, which cannot be removed, so they run in a
// child: the test binary runs itself with -test.run=^TestLoadChild$ and
// childEnv naming what to do.
const childEnv = "SECCOMP_TEST_CHILD"

func runChild(t *testing.T, mode string) {
	t.Helper()
	if _, _, errno := unix.Syscall(unix.SYS_PRCTL, unix.PR_GET_SECCOMP, 0, 0); errno != 0 {
		t.Skipf("seccomp not available: %v", errno)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestLoadChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil || !strings.Contains(out.String(), "CHILD-OK "+mode) {
			t.Fatalf("child %s: %v\n%s", mode, err, out.String())
		}
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("child %s timed out\n%s", mode, out.String())
	}
	t.Logf("child %s:\n%s", mode, out.String())
}

// TestLoadErrnoProfile: an allow-by-default profile that makes some calls
// fail with chosen errnos, loaded without no_new_privs (as root).
func TestLoadErrnoProfile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs CAP_SYS_ADMIN (root) to load without no_new_privs")
	}
	runChild(t, "errno")
}

// TestLoadContainerdDefault: containerd's RuntimeDefault profile with
// no_new_privs set by the caller.
func TestLoadContainerdDefault(t *testing.T) { runChild(t, "containerd") }

// TestLoadTsyncFailure: a thread with a filter of its own makes TSYNC fail.
func TestLoadTsyncFailure(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs CAP_SYS_ADMIN (root) to load without no_new_privs")
	}
	runChild(t, "tsync")
}

func TestLoadChild(t *testing.T) {
	mode := os.Getenv(childEnv)
	switch mode {
	case "":
		t.Skip("only run as the child of the load tests")
	case "errno":
		childErrno(t)
	case "containerd":
		childContainerd(t)
	case "tsync":
		childTsync(t)
	default:
		t.Fatalf("unknown mode %q", mode)
	}
	if !t.Failed() {
		fmt.Println("CHILD-OK", mode)
	}
}

func rawErrno(nr uintptr, args ...uintptr) unix.Errno {
	var a [6]uintptr
	copy(a[:], args)
	_, _, errno := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
	return errno
}

// threads starts n goroutines locked to their own OS threads; each runs
// check when told and reports its thread id and error.
type threads struct {
	start chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	tids  map[int]bool
	errs  []error
}

func startThreads(n int, check func() error) *threads {
	th := &threads{start: make(chan struct{}), tids: map[int]bool{}}
	ready := make(chan struct{})
	for i := 0; i < n; i++ {
		th.wg.Add(1)
		go func() {
			defer th.wg.Done()
			runtime.LockOSThread() // the thread ends with the goroutine
			ready <- struct{}{}
			<-th.start
			err := check()
			th.mu.Lock()
			th.tids[unix.Gettid()] = true
			if err != nil {
				th.errs = append(th.errs, fmt.Errorf("thread %d: %w", unix.Gettid(), err))
			}
			th.mu.Unlock()
		}()
	}
	for i := 0; i < n; i++ {
		<-ready
	}
	return th
}

func (th *threads) run(t *testing.T, n int) {
	t.Helper()
	close(th.start)
	th.wg.Wait()
	for _, err := range th.errs {
		t.Error(err)
	}
	if len(th.tids) != n {
		t.Errorf("checks ran on %d distinct threads, want %d", len(th.tids), n)
	}
}

// statusField returns a field of /proc/self/task/*/status for every thread.
func statusField(t *testing.T, field string) map[string]string {
	t.Helper()
	dirs, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no task status files: %v", err)
	}
	vals := map[string]string{}
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue // thread exited
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, field+":"); ok {
				vals[d] = strings.TrimSpace(v)
			}
		}
	}
	return vals
}

func expectAllThreads(t *testing.T, field, want string) {
	t.Helper()
	vals := statusField(t, field)
	for task, v := range vals {
		if v != want {
			t.Errorf("%s %s = %s, want %s", task, field, v, want)
		}
	}
	t.Logf("%s: %s on all %d threads", field, want, len(vals))
}

// exerciseGo checks that ordinary Go keeps working under the filter.
func exerciseGo(t *testing.T) {
	t.Helper()
	var wg sync.WaitGroup
	results := make([]int, 64)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([][]byte, 0, 100)
			for j := 0; j < 100; j++ {
				buf = append(buf, make([]byte, 4096))
			}
			time.Sleep(time.Millisecond)
			results[i] = len(buf)
		}()
	}
	wg.Wait()
	runtime.GC()
	for i, r := range results {
		if r != 100 {
			t.Fatalf("goroutine %d: %d", i, r)
		}
	}
	if b, err := os.ReadFile("/proc/self/status"); err != nil || len(b) == 0 {
		t.Errorf("os.ReadFile: %v", err)
	}
	if _, err := os.Stat(os.Args[0]); err != nil {
		t.Errorf("os.Stat: %v", err)
	}
}

func childErrno(t *testing.T) {
	const magicPid = 1 << 32 // the kernel sees pid 0; only the filter sees the high half
	p := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"getppid"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EHOSTDOWN))},
			{Names: []string{"uname"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EXDEV))},
			{Names: []string{"mkdirat", "mkdir"}, Action: specs.ActErrno},
			{Names: []string{"getpgid"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.ENOTTY)),
				Args: []specs.LinuxSeccompArg{{Index: 0, Op: specs.OpEqualTo, Value: magicPid}}},
		},
	}
	check := func() error {
		if e := rawErrno(unix.SYS_GETPPID); e != unix.EHOSTDOWN {
			return fmt.Errorf("getppid: errno %v, want EHOSTDOWN", e)
		}
		var u unix.Utsname
		if err := unix.Uname(&u); !errors.Is(err, unix.EXDEV) {
			return fmt.Errorf("uname: %v, want EXDEV", err)
		}
		if e := rawErrno(unix.SYS_GETPGID, 0); e != 0 {
			return fmt.Errorf("getpgid(0): %v", e)
		}
		if e := rawErrno(unix.SYS_GETPGID, magicPid); e != unix.ENOTTY {
			return fmt.Errorf("getpgid(1<<32): errno %v, want ENOTTY", e)
		}
		return nil
	}

	// Before: the calls work.
	if e := rawErrno(unix.SYS_GETPPID); e != 0 {
		t.Fatalf("getppid before Load: %v", e)
	}
	if e := rawErrno(unix.SYS_GETPGID, magicPid); e != 0 {
		t.Fatalf("getpgid(1<<32) before Load: %v", e)
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "before"), 0o755); err != nil {
		t.Fatal(err)
	}

	const n = 8
	th := startThreads(n, check) // threads that exist before Load
	if err := Load(p); err != nil {
		t.Fatalf("Load: %v", err)
	}
	th.run(t, n)
	if err := check(); err != nil {
		t.Errorf("main goroutine: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "after"), 0o755); !errors.Is(err, unix.EPERM) {
		t.Errorf("mkdir after Load: %v, want EPERM", err)
	}
	// Threads started after Load inherit the filter.
	startThreads(4, check).run(t, 4)
	expectAllThreads(t, "Seccomp", "2")
	expectAllThreads(t, "NoNewPrivs", "0") // Load does not set it
	exerciseGo(t)
}

func setNoNewPrivs(t *testing.T) {
	t.Helper()
	_, _, errno := syscallAllThreads(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0)
	switch {
	case errno == 0:
		t.Log("no_new_privs set on all threads with AllThreadsSyscall")
	case errno == unix.ENOTSUP:
		// AllThreadsSyscall is unavailable with cgo; set it on this
		// thread and let TSYNC propagate it.
		runtime.LockOSThread()
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			t.Fatal(err)
		}
		t.Log("no_new_privs set on the loading thread (cgo build: no AllThreadsSyscall)")
	default:
		t.Fatalf("PR_SET_NO_NEW_PRIVS: %v", errno)
	}
}

func childContainerd(t *testing.T) {
	p := containerdProfile(defaultCaps...)
	target := filepath.Join(t.TempDir(), "no-such-dir")
	tmpfs := []byte("tmpfs\x00")
	mount := func() unix.Errno {
		src, tgt := []byte("none\x00"), []byte(target+"\x00")
		return rawErrno(unix.SYS_MOUNT, uintptr(unsafe.Pointer(&src[0])), uintptr(unsafe.Pointer(&tgt[0])),
			uintptr(unsafe.Pointer(&tmpfs[0])), 0, 0)
	}
	// Before: these fail for other reasons or succeed.
	if e := rawErrno(unix.SYS_UNSHARE, 0); e != 0 {
		t.Fatalf("unshare(0) before Load: %v", e)
	}
	if e := mount(); e != unix.ENOENT {
		t.Fatalf("mount before Load: %v, want ENOENT", e)
	}
	if e := rawErrno(unix.SYS_CLONE3, 0, 0); e == unix.ENOSYS || e == 0 {
		t.Fatalf("clone3(NULL, 0) before Load: %v", e)
	}

	const n = 6
	denied := func() error {
		if e := rawErrno(unix.SYS_UNSHARE, 0); e != unix.EPERM {
			return fmt.Errorf("unshare: errno %v, want EPERM", e)
		}
		if e := rawErrno(unix.SYS_UNSHARE, unix.CLONE_NEWUSER); e != unix.EPERM {
			return fmt.Errorf("unshare(CLONE_NEWUSER): errno %v, want EPERM", e)
		}
		if e := mount(); e != unix.EPERM {
			return fmt.Errorf("mount: errno %v, want EPERM", e)
		}
		if e := rawErrno(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0); e != unix.EPERM {
			return fmt.Errorf("kexec_load: errno %v, want EPERM", e)
		}
		if e := rawErrno(unix.SYS_CLONE3, 0, 0); e != unix.ENOSYS {
			return fmt.Errorf("clone3: errno %v, want ENOSYS", e)
		}
		if e := rawErrno(unix.SYS_GETPPID); e != 0 {
			return fmt.Errorf("getppid: %v", e)
		}
		return nil
	}
	th := startThreads(n, denied)
	setNoNewPrivs(t)
	if err := Load(p); err != nil {
		t.Fatalf("Load: %v", err)
	}
	th.run(t, n)
	if err := denied(); err != nil {
		t.Error(err)
	}
	startThreads(3, denied).run(t, 3)
	expectAllThreads(t, "Seccomp", "2")
	expectAllThreads(t, "NoNewPrivs", "1")
	exerciseGo(t)

	// fork+exec goes through clone with flags the profile allows; the
	// child inherits the filter.
	out, err := exec.Command(os.Args[0], "-test.run=^$").CombinedOutput()
	if err != nil {
		t.Errorf("exec under the filter: %v\n%s", err, out)
	}
}

func childTsync(t *testing.T) {
	runtime.LockOSThread() // Load runs on this thread, without a filter
	p := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"getppid"}, Action: specs.ActErrno}},
	}
	installed := make(chan int)
	release := make(chan struct{})
	go func() {
		runtime.LockOSThread() // the thread dies with this goroutine
		// An allow-all filter on this thread only (no TSYNC).
		filter := []unix.SockFilter{{Code: opRetK, K: unix.SECCOMP_RET_ALLOW}}
		prog := unix.SockFprog{Len: 1, Filter: &filter[0]}
		if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog))); e != 0 {
			t.Errorf("per-thread filter: %v", e)
			installed <- 0
			return
		}
		installed <- unix.Gettid()
		<-release
	}()
	tid := <-installed
	if tid == 0 {
		return
	}
	err := Load(p)
	close(release)
	if err == nil {
		t.Fatal("Load succeeded although a thread has a filter of its own")
	}
	if !strings.Contains(err.Error(), "TSYNC") || !strings.Contains(err.Error(), fmt.Sprint(tid)) {
		t.Errorf("error %q does not name TSYNC and thread %d", err, tid)
	}
	t.Logf("Load: %v", err)
	if e := rawErrno(unix.SYS_GETPPID); e != 0 {
		t.Errorf("getppid after the failed Load: %v (a filter was installed)", e)
	}
}
