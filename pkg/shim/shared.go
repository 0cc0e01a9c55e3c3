package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/log"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/nodedir"
	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/shimentry"
)

// The shared server's side of the protocol pkg/shimentry/shared.go describes (its Shared*
// constants name the variables, files and the lock wait): the entry starts this server with those
// variables when the task or the node asked for a shared server (docs/shared-server.md).
const (
	sharedDirEnv    = shimentry.SharedDirEnv
	sharedSocketEnv = shimentry.SharedSocketEnv
	sharedLingerEnv = shimentry.SharedLingerEnv
	sharedLockFile  = shimentry.SharedLockFile
	sharedClaimsDir = shimentry.SharedClaimsDir
	sharedLockWait  = shimentry.SharedLockWait
	// sharedClaimTTL is how long a claim keeps the server for a task whose Create has not come:
	// containerd sends it milliseconds after the entry's `start` returns; a claim older than this
	// is a start whose Create never came (containerd failed or gave up), and is dropped.
	sharedClaimTTL = time.Minute
)

// sharedServer is a server shared by the tasks of a namespace: it stays while it has tasks or
// fresh claims, and leaves linger after its last task. Its methods are safe for concurrent use.
type sharedServer struct {
	dir, socket string
	linger      time.Duration
	// tasks counts the tasks the service holds (created or being created); leave ends the
	// process (pkg/shim's shutdown). Set by the service.
	tasks func() int
	leave func()

	mu    sync.Mutex
	timer *time.Timer
	gone  bool
	logs  *logSwitch
}

// loadShared returns the shared server this process is, from its environment, or nil when the
// entry started it for one task or pod (the variables are unset).
func loadShared() (*sharedServer, error) {
	dir, socket, l := os.Getenv(sharedDirEnv), os.Getenv(sharedSocketEnv), os.Getenv(sharedLingerEnv)
	if dir == "" && socket == "" && l == "" {
		return nil, nil
	}
	linger, err := time.ParseDuration(l)
	if err != nil || dir == "" || socket == "" || linger <= 0 {
		return nil, fmt.Errorf("shared shim server: bad %s=%q, %s=%q, %s=%q from the entry: serving as a server of its own",
			sharedDirEnv, dir, sharedSocketEnv, socket, sharedLingerEnv, l)
	}
	return &sharedServer{dir: dir, socket: socket, linger: linger, logs: newLogSwitch()}, nil
}

// arrived is called when task id's Create arrives: its claim is fulfilled, and the server's own
// log goes to the task's bundle from now on (the bundle the server started in may be gone).
func (sh *sharedServer) arrived(id, bundle string) {
	if err := os.Remove(filepath.Join(sh.dir, sharedClaimsDir, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.L.WithError(err).WithField("id", id).Warn("shared shim server: cannot remove the task's claim")
	}
	sh.logs.attach(id, bundle)
}

// left is called when task id is deleted: the server's log leaves its bundle.
func (sh *sharedServer) left(id string) { sh.logs.detach(id) }

// idle is called when containerd asks the server to shut down, and when it starts: the server
// leaves after linger unless a task arrives or is claimed by then.
func (sh *sharedServer) idle() {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.gone {
		return
	}
	if sh.timer != nil {
		sh.timer.Stop()
	}
	sh.timer = time.AfterFunc(sh.linger, sh.expire)
}

// expire decides, holding the lock the entries take, whether the server leaves: only with no task
// and no fresh claim, and then its socket goes first, so that no entry sends it another task.
func (sh *sharedServer) expire() {
	// The directory is the entries' as much as the server's: recreated if someone removed it.
	if err := os.MkdirAll(filepath.Join(sh.dir, sharedClaimsDir), 0o700); err != nil {
		log.L.WithError(err).Warn("shared shim server: cannot create its directory; it stays, and looks again after its linger")
		sh.idle()
		return
	}
	lock, err := os.OpenFile(filepath.Join(sh.dir, sharedLockFile), os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		log.L.WithError(err).Warn("shared shim server: cannot open its lock; it stays, and looks again after its linger")
		sh.idle()
		return
	}
	defer lock.Close()
	if err := lockShared(lock); err != nil {
		log.L.WithError(err).Warn("shared shim server: cannot take its lock; it stays, and looks again after its linger")
		sh.idle()
		return
	}
	if sh.tasks() > 0 || sh.freshClaims(time.Now()) > 0 {
		// Tasks, or a task on its way: look again after another linger (containerd's Shutdown
		// after the last task arms it anew; this covers a Create that failed without one).
		sh.idle()
		return
	}
	sh.mu.Lock()
	sh.gone = true
	sh.mu.Unlock()
	if err := os.Remove(sh.socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.L.WithError(err).Warn("shared shim server: cannot remove its socket")
	}
	// The directory goes too: an entry waiting for the lock sees its lock file replaced and
	// starts over (pkg/shimentry lockShared), finding no server.
	if err := os.RemoveAll(sh.dir); err != nil {
		log.L.WithError(err).Warn("shared shim server: cannot remove its directory")
	}
	log.L.WithField("linger", sh.linger).Info("shared shim server: no task, leaving")
	sh.logs.closeAll()
	// pkg/shim removes, as it exits, the socket named by the file "address" in its working
	// directory: the first task's bundle, which names the shared socket that a new server may
	// be listening on by now. Nothing of the server is in "/".
	_ = os.Chdir("/")
	sh.leave()
}

// cleanupDeadShared removes what a shared server that died (SIGKILL, the OOM killer) left beside
// the socket address recorded in bundle: the socket and the shared directory. It runs in the
// `delete` action containerd runs for each task of the dead server, holding the lock the entries
// take, and removes nothing while a server accepts on the socket (a new one may have started).
// A bundle of a task that was not served by a shared server has no shared directory: nothing.
func cleanupDeadShared(bundle string) {
	b, err := os.ReadFile(filepath.Join(bundle, "address"))
	if err != nil {
		return
	}
	socket := strings.TrimPrefix(strings.TrimSpace(string(b)), "unix://")
	dir := shimentry.SharedDir(socket)
	lock, err := os.OpenFile(filepath.Join(dir, sharedLockFile), os.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return // no shared directory: not a shared server's task, or already cleaned up
	}
	defer lock.Close()
	if err := lockShared(lock); err != nil {
		return
	}
	if conn, err := net.DialTimeout("unix", socket, 100*time.Millisecond); err == nil {
		conn.Close()
		return // a server is alive on it
	}
	_ = os.Remove(socket)
	_ = os.RemoveAll(dir)
}

// freshClaims counts the claims younger than sharedClaimTTL at now and removes the older ones.
func (sh *sharedServer) freshClaims(now time.Time) int {
	dir := filepath.Join(sh.dir, sharedClaimsDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if now.Sub(fi.ModTime()) < sharedClaimTTL {
			n++
			continue
		}
		log.L.WithField("id", e.Name()).Warn("shared shim server: dropping the claim of a task whose Create never came")
		_ = os.Remove(filepath.Join(dir, e.Name()))
	}
	return n
}

// lockShared takes f's exclusive lock, waiting at most sharedLockWait: its holders (an entry
// choosing a server, the server deciding to leave) hold it for milliseconds. A blocked flock
// cannot be abandoned, so the wait polls (pkg/nodedir).
func lockShared(f *os.File) error {
	ctx, cancel := context.WithTimeout(context.Background(), sharedLockWait)
	defer cancel()
	return nodedir.Poll(ctx, 20*time.Millisecond, func() (bool, error) { return nodedir.TryLock(f, syscall.LOCK_EX) })
}

// logSwitch sends the server's log to the log FIFO of a bundle whose task it serves. containerd
// reads a shim's log from the FIFO "log" in the bundle it started the shim in, and stops reading
// it when that task is gone; a shared server outlives the task it started for, so its log moves
// to the bundle of the newest task, and on to another one's when that task is deleted. The
// server's stderr (fd 2, where Go writes a crash's trace; pkg/shim put the first FIFO there)
// moves with it.
type logSwitch struct {
	mu sync.Mutex
	// out is where the log goes now; its owner is the task whose FIFO it is ("" for the FIFO
	// pkg/shim opened when the server started, in the first task's bundle, start).
	out     io.Writer
	owner   string
	start   string               // the directory the server started in (the first bundle)
	fifos   map[string]io.Writer // by task ID: the FIFOs opened, and the start one once known
	setOut  func(io.Writer)      // sets the logger's output (tests replace it)
	initial io.Writer
	// stderrFd is the descriptor that follows the log (2; tests use another), initialFile a
	// copy of it taken at the start (the first FIFO), nil if it could not be taken.
	stderrFd    int
	initialFile *os.File
}

func newLogSwitch() *logSwitch {
	cwd, _ := os.Getwd()
	ls := &logSwitch{start: cwd, fifos: map[string]io.Writer{}, out: log.L.Logger.Out, initial: log.L.Logger.Out, stderrFd: 2}
	if fd, err := syscall.Dup(2); err == nil {
		syscall.CloseOnExec(fd)
		ls.initialFile = os.NewFile(uintptr(fd), "log")
	}
	ls.setOut = func(w io.Writer) {
		log.L.Logger.SetOutput(w)
		ls.followStderr(w)
	}
	return ls
}

// followStderr points the stderr descriptor at w's file: a FIFO the switch opened, the first FIFO
// (its copy), or /dev/null when the log goes nowhere.
func (ls *logSwitch) followStderr(w io.Writer) {
	var f *os.File
	switch {
	case w == ls.initial:
		f = ls.initialFile
	case w == io.Discard:
		null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer null.Close()
		f = null
	default:
		f, _ = w.(*os.File)
	}
	if f != nil {
		_ = syscall.Dup3(int(f.Fd()), ls.stderrFd, 0)
	}
}

// attach moves the log to task id's bundle.
func (ls *logSwitch) attach(id, bundle string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var w io.Writer
	if filepath.Clean(bundle) == filepath.Clean(ls.start) {
		w = ls.initial // pkg/shim's FIFO is this task's
	} else {
		// containerd holds the reading end from before it ran `start`; without a reader
		// (O_NONBLOCK gives ENXIO) the log stays where it is.
		f, err := os.OpenFile(filepath.Join(bundle, "log"), os.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if err != nil {
			return
		}
		w = f
	}
	ls.fifos[id] = w
	ls.out, ls.owner = w, id
	ls.setOut(w)
}

// detach closes task id's FIFO; if the log went there, it moves to another task's.
func (ls *logSwitch) detach(id string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	w, ok := ls.fifos[id]
	if !ok {
		return
	}
	delete(ls.fifos, id)
	if ls.owner == id {
		ls.out, ls.owner = io.Discard, ""
		for other, ow := range ls.fifos {
			ls.out, ls.owner = ow, other
			break
		}
		ls.setOut(ls.out)
	}
	if c, ok := w.(io.Closer); ok {
		c.Close()
	}
	if w == ls.initial && ls.initialFile != nil {
		ls.initialFile.Close()
		ls.initialFile = nil
	}
}

// closeAll closes the FIFOs the switch opened; the log goes nowhere after.
func (ls *logSwitch) closeAll() {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.setOut(io.Discard)
	if ls.initialFile != nil {
		ls.initialFile.Close()
		ls.initialFile = nil
	}
	for id, w := range ls.fifos {
		if c, ok := w.(io.Closer); ok && w != ls.initial {
			c.Close()
		}
		delete(ls.fifos, id)
	}
}
