package shim

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// newTestShared is a shared server in a temporary directory whose socket is a live listener;
// left is closed when it decides to leave.
func newTestShared(t *testing.T, tasks *int) (sh *sharedServer, left chan struct{}) {
	t.Helper()
	tmp, err := os.MkdirTemp("", "sh") // short: a socket path must fit in 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	socket := filepath.Join(tmp, "sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	dir := socket + ".shared"
	if err := os.MkdirAll(filepath.Join(dir, sharedClaimsDir), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv(sharedDirEnv, dir)
	t.Setenv(sharedSocketEnv, socket)
	t.Setenv(sharedLingerEnv, "50ms")
	sh, err = loadShared()
	if err != nil || sh == nil {
		t.Fatalf("loadShared: %v, %v", sh, err)
	}
	left = make(chan struct{})
	sh.tasks = func() int { return *tasks }
	sh.leave = func() { close(left) }
	sh.logs.setOut = func(io.Writer) {}
	return sh, left
}

func TestLoadShared(t *testing.T) {
	for _, k := range []string{sharedDirEnv, sharedSocketEnv, sharedLingerEnv} {
		t.Setenv(k, "")
	}
	if sh, err := loadShared(); sh != nil || err != nil {
		t.Fatalf("without the variables: %v, %v", sh, err)
	}
	t.Setenv(sharedLingerEnv, "soon")
	if sh, err := loadShared(); sh != nil || err == nil {
		t.Fatalf("with a bad linger: %v, %v", sh, err)
	}
}

// The server leaves after its linger only with no task and no fresh claim, and its socket and
// directory go with it (so the next entry starts a new server instead of sending a task here).
func TestSharedExpire(t *testing.T) {
	tasks := 1
	sh, left := newTestShared(t, &tasks)
	sh.linger = time.Hour // only the explicit expires below, until the end
	claim := filepath.Join(sh.dir, sharedClaimsDir, "t2")
	if err := os.WriteFile(claim, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	sh.expire() // a task: stays, and looks again after a linger
	sh.mu.Lock()
	rearmed := sh.timer != nil
	sh.mu.Unlock()
	if !rearmed {
		t.Fatal("staying for a task did not arm the next look (a Create that fails without a Shutdown would leave the server forever)")
	}
	sh.arrived("t2", t.TempDir())
	if _, err := os.Stat(claim); !os.IsNotExist(err) {
		t.Fatalf("the claim of a task whose Create arrived is still there: %v", err)
	}
	tasks = 0
	stale := filepath.Join(sh.dir, sharedClaimsDir, "t3")
	fresh := filepath.Join(sh.dir, sharedClaimsDir, "t4")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * sharedClaimTTL)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	sh.expire() // a fresh claim: stays, the stale one goes
	select {
	case <-left:
		t.Fatal("left with a fresh claim")
	default:
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("a stale claim was kept: %v", err)
	}
	if _, err := os.Stat(sh.socket); err != nil {
		t.Fatalf("socket gone while staying: %v", err)
	}
	os.Remove(fresh)
	// The next look finds nothing: the server leaves.
	sh.mu.Lock()
	sh.linger = 50 * time.Millisecond
	sh.mu.Unlock()
	sh.idle()
	select {
	case <-left:
	case <-time.After(5 * time.Second):
		t.Fatal("did not leave after its linger with no task and no claim")
	}
	if _, err := os.Stat(sh.socket); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
	if _, err := os.Stat(sh.dir); !os.IsNotExist(err) {
		t.Fatalf("directory left behind: %v", err)
	}
	sh.idle() // gone: no new timer, no second leave (close of a closed channel would panic)
	time.Sleep(150 * time.Millisecond)
}

// expire waits for the lock the entries hold while they choose a server.
func TestSharedExpireWaitsForLock(t *testing.T) {
	tasks := 0
	sh, left := newTestShared(t, &tasks)
	sh.linger = time.Hour // only the explicit expire below
	f, err := os.OpenFile(filepath.Join(sh.dir, sharedLockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { sh.expire(); close(done) }()
	time.Sleep(100 * time.Millisecond)
	select {
	case <-left:
		t.Fatal("left while an entry held the lock")
	default:
	}
	// The entry's part: a claim, then the lock is let go.
	if err := os.WriteFile(filepath.Join(sh.dir, sharedClaimsDir, "t9"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f.Close()
	<-done
	select {
	case <-left:
		t.Fatal("left although a task was claimed while it waited")
	default:
	}
}

type closeBuffer struct {
	bytes.Buffer
	closed bool
}

func (b *closeBuffer) Close() error { b.closed = true; return nil }

// The log follows the tasks: to the newest task's FIFO, back to another live task's when that one
// is deleted, and the FIFOs of deleted tasks are closed.
func TestLogSwitch(t *testing.T) {
	first := t.TempDir()
	initial := &closeBuffer{}
	var cur io.Writer
	ls := &logSwitch{start: first, fifos: map[string]io.Writer{}, out: initial, initial: initial, setOut: func(w io.Writer) { cur = w }}
	ls.attach("t1", first)
	if cur != initial {
		t.Fatal("the first task's log is not pkg/shim's FIFO")
	}
	second := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(second, "log"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(filepath.Join(second, "log"), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ls.attach("t2", second)
	f, ok := cur.(*os.File)
	if !ok || f.Name() != filepath.Join(second, "log") {
		t.Fatalf("log goes to %v, want t2's FIFO", cur)
	}
	if _, err := io.WriteString(cur, "to t2\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if n, _ := r.Read(buf); string(buf[:n]) != "to t2\n" {
		t.Fatalf("t2's FIFO read %q", buf[:n])
	}
	ls.attach("t3", t.TempDir()) // no FIFO: the log stays with t2
	if cur != f {
		t.Fatal("the log moved to a bundle without a FIFO")
	}
	ls.detach("t2")
	if cur != initial {
		t.Fatalf("after t2's delete the log goes to %v, want t1's", cur)
	}
	if _, err := f.Write([]byte("x")); err == nil {
		t.Fatal("t2's FIFO was not closed")
	}
	ls.detach("t1")
	if cur != io.Discard || !initial.closed {
		t.Fatalf("after the last task: log to %v, first FIFO closed %v", cur, initial.closed)
	}
}

// After a shared server died, the first of its tasks' deletes removes its socket and directory;
// nothing is removed while a server accepts on the socket, nor for a task of a server of its own.
func TestCleanupDeadShared(t *testing.T) {
	tmp, err := os.MkdirTemp("", "sh") // short: a socket path must fit in 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	bundle := t.TempDir()
	socket := filepath.Join(tmp, "sock")
	dir := socket + ".shared"
	if err := os.WriteFile(filepath.Join(bundle, "address"), []byte("unix://"+socket), 0o644); err != nil {
		t.Fatal(err)
	}
	setup := func() {
		if err := os.MkdirAll(filepath.Join(dir, sharedClaimsDir), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, sharedLockFile), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// A live server: kept.
	setup()
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	cleanupDeadShared(bundle)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the directory of a live shared server was removed: %v", err)
	}
	// A dead one (its socket file left, nobody accepting): both go.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(socket); err != nil {
		t.Fatal(err)
	}
	cleanupDeadShared(bundle)
	for _, p := range []string{socket, dir} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after a dead shared server's cleanup: %v", p, err)
		}
	}
	// A task of a server of its own (no shared directory): its socket is not the shared
	// cleanup's business.
	f, err := os.Create(socket)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	cleanupDeadShared(bundle)
	if _, err := os.Stat(socket); err != nil {
		t.Fatalf("a socket without a shared directory was removed: %v", err)
	}
}

// The stderr descriptor (where Go writes a crash's trace) follows the log: to the newest task's
// FIFO, and back to the first FIFO when that task is deleted.
func TestLogSwitchStderr(t *testing.T) {
	r1, w1, err := os.Pipe() // the first bundle's FIFO, as pkg/shim put it on stderr
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	defer w1.Close()
	fd, err := syscall.Dup(int(w1.Fd())) // this test's "fd 2"
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	cp, err := syscall.Dup(int(w1.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	first := t.TempDir()
	ls := &logSwitch{start: first, fifos: map[string]io.Writer{}, out: w1, initial: w1,
		stderrFd: fd, initialFile: os.NewFile(uintptr(cp), "log")}
	ls.setOut = ls.followStderr
	ls.attach("t1", first)
	second := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(second, "log"), 0o600); err != nil {
		t.Fatal(err)
	}
	r2, err := os.OpenFile(filepath.Join(second, "log"), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	ls.attach("t2", second)
	readBack := func(r *os.File, want string) {
		t.Helper()
		if _, err := syscall.Write(fd, []byte(want)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		if n, _ := r.Read(buf); string(buf[:n]) != want {
			t.Fatalf("read %q, want %q", buf[:n], want)
		}
	}
	readBack(r2, "crash in t2's time\n")
	ls.detach("t2")
	readBack(r1, "crash after t2\n")
}
