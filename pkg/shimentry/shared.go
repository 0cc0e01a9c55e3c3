package shimentry

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/nodedir"
)

// The shared server (opt-in, docs/shared-server.md): the tasks of a containerd namespace that are
// in no pod or runc group are served by one long-lived server instead of a server process each,
// and that server waits Linger after its last task for the next one. A task then does not pay for
// a server process's start (about a third of a C hello's `ctr run` on containerd's side of the
// runner), and idle containers do not each hold a server's memory.
const (
	// SharedAnnotation on a container asks for the shared server, its value being the linger: a
	// Go duration ("30s", "2m"); "0" asks for a server of the container's own. It wins over
	// SharedEnv.
	SharedAnnotation = "wazero.dev/shared-server"
	// SharedEnv in containerd's environment (hence the shim's) turns the shared server on for
	// the whole node, with the same values as SharedAnnotation. Unset: off.
	SharedEnv = "CONTAINERD_SHIM_WAZERO_SHARED_SERVER"
	// MaxSharedLinger bounds the linger a container or the node may ask for.
	MaxSharedLinger = 24 * time.Hour

	// sharedGroup is the group name the shared server's socket address is made of (with
	// containerd's address and the namespace, as a pod's is of its sandbox ID).
	sharedGroup = "io.containerd.wazero.v1.shared"

	// The protocol with the server (pkg/shim's shared.go): the entry starts a shared server with
	// SharedDirEnv (its directory), SharedSocketEnv (its socket path) and SharedLingerEnv (a Go
	// duration) in its environment. The directory holds SharedLockFile, which both take with
	// flock for at most SharedLockWait, and SharedClaimsDir.
	SharedDirEnv    = "WAZERO_SHIM_SHARED_DIR"
	SharedSocketEnv = "WAZERO_SHIM_SHARED_SOCKET"
	SharedLingerEnv = "WAZERO_SHIM_SHARED_LINGER"
	SharedLockFile  = "lock"
	SharedClaimsDir = "claims"
	SharedLockWait  = 10 * time.Second
)

// SharedDir is the directory of the shared server listening on socket: its lock and the claims of
// the tasks it was promised to (beside the socket, in containerd's socket directory).
func SharedDir(socket string) string { return socket + ".shared" }

// sharedLinger returns how long a shared server waits after its last task, as the container's
// annotations and the node's environment ask (0: no shared server). A bad value is an error that
// names where it came from and what a good one looks like.
func sharedLinger(annotations map[string]string, env string) (time.Duration, error) {
	value, from := env, "the node's "+SharedEnv
	if v, ok := annotations[SharedAnnotation]; ok {
		value, from = v, "the container's annotation "+SharedAnnotation
	}
	value = strings.TrimSpace(value)
	if value == "" || value == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(value)
	if err != nil || d < 0 || d > MaxSharedLinger {
		return 0, fmt.Errorf("%s is %q: want how long the shared shim server waits for its next task after its last one, a duration from 0 (no shared server) to %s, e.g. 30s", from, value, MaxSharedLinger)
	}
	return d, nil
}

// sharedClaim holds the shared server's lock while the entry decides which server a task goes to.
// The protocol with the server (pkg/shim's shared.go) is: the entry, holding the lock, either finds
// the server accepting on the socket or starts one, and in both cases writes a claim named by the
// task ID before it lets go; the server removes the claim when the task's Create arrives; a server
// that has no task leaves only holding the lock, and only when no claim is fresh, by removing its
// socket first. So no task is ever sent to a server that is on its way out.
type sharedClaim struct {
	dir  string
	lock *os.File
}

// lockShared creates the shared server's directory for socket if needed and takes its lock,
// waiting at most SharedLockWait (the holder is another task's entry or a server deciding to
// leave, both brief). A
// server that leaves removes the directory while it holds the lock: a lock taken on a file that
// is no longer the directory's is let go and taken again on the new one.
func lockShared(socket string) (*sharedClaim, error) {
	dir := SharedDir(socket)
	for {
		if err := os.MkdirAll(filepath.Join(dir, SharedClaimsDir), 0o700); err != nil {
			return nil, fmt.Errorf("shared shim server: %w", err)
		}
		path := filepath.Join(dir, SharedLockFile)
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("shared shim server: %w", err)
		}
		// A blocking flock wakes as soon as the holder lets go (polling would add its period
		// to every contended start); on a timeout the entry gives up and exits, which releases
		// a lock the abandoned flock may still get.
		locked := make(chan error, 1)
		go func() {
			for {
				err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
				if err != syscall.EINTR {
					locked <- err
					return
				}
			}
		}()
		select {
		case err = <-locked:
		case <-time.After(SharedLockWait):
			err = fmt.Errorf("not free after %s", SharedLockWait)
		}
		if err != nil {
			return nil, fmt.Errorf("shared shim server: lock %s (held by another task's start or by the server leaving): %w", path, err)
		}
		if nodedir.SameFile(f, path) {
			return &sharedClaim{dir: dir, lock: f}, nil
		}
		f.Close()
	}
}

// claim records that task id is sent to the server (a file named by the ID in the claims
// directory, whose modification time says when).
func (c *sharedClaim) claim(id string) error {
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return fmt.Errorf("shared shim server: task ID %q cannot name a claim file", id)
	}
	f, err := os.OpenFile(filepath.Join(c.dir, SharedClaimsDir, id), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("shared shim server: claim for task %s: %w", id, err)
	}
	return f.Close()
}

// unclaim removes task id's claim (its start failed).
func (c *sharedClaim) unclaim(id string) { _ = os.Remove(filepath.Join(c.dir, SharedClaimsDir, id)) }

// unlock lets go of the lock (closing the file releases the flock).
func (c *sharedClaim) unlock() { c.lock.Close() }

// sharedServerEnv is what a shared server is started with on top of the entry's environment.
func sharedServerEnv(socket string, linger time.Duration) []string {
	return []string{
		SharedDirEnv + "=" + SharedDir(socket),
		SharedSocketEnv + "=" + socket,
		SharedLingerEnv + "=" + linger.String(),
	}
}
