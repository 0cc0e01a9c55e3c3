package nodedir

import (
	"context"
	"os"
	"syscall"
	"time"
)

// TryLock takes the flock how (syscall.LOCK_EX or LOCK_SH) on f without waiting. It reports false
// and no error when another open file description holds a conflicting lock. The kernel releases
// the lock when f is closed or its process dies (even by SIGKILL or the OOM killer), so a dead
// process never leaves others waiting.
func TryLock(f *os.File, how int) (bool, error) {
	for {
		switch err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err {
		case nil:
			return true, nil
		case syscall.EINTR:
			continue
		case syscall.EWOULDBLOCK:
			return false, nil
		default:
			return false, err
		}
	}
}

// Poll calls try until it reports true or an error, or ctx ends (then it returns ctx.Err()). It
// sleeps between tries, from 1 ms doubling up to maxDelay. It is how every flock of these
// directories waits: flock has no timeout, and a blocked flock cannot be abandoned without
// leaving it to succeed later.
func Poll(ctx context.Context, maxDelay time.Duration, try func() (bool, error)) error {
	delay := time.Millisecond
	for {
		ok, err := try()
		if ok || err != nil {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, maxDelay)
	}
}

// SameFile reports whether the open file f is still the file at path: a lock taken on a file that
// was removed or replaced meanwhile protects nothing.
func SameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Lstat(path)
	return err == nil && os.SameFile(a, b)
}
