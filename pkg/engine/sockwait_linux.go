package engine

import (
	"context"
	"encoding/binary"
	"os"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"golang.org/x/sys/unix"
)

// socketWait makes a guest with TCP listeners wait for its sockets instead of spinning or hanging.
//
// wazero v1.12's poll_oneoff reports every subscription on a non-blocking socket ready at once,
// without looking at the socket, and then sleeps for the smallest clock timeout of the call, or
// forever (the real sleep this shim gives guests) when there is none. Go's wasip1 netpoller waits
// for its sockets with exactly such calls, so a Go server would spin on a core while idle, or
// never wake up. socketWait watches poll_oneoff (a wazero function listener on the WASI host
// module only, so the guest's compiled code is unchanged): before a call that waits for input on
// a file, it blocks until one of the runner's sockets is readable (the runner has no sockets but
// the guest's) or the call's clock timeout passes, and wazero's own sleep for that call is then
// skipped. Calls with only clock subscriptions (sleeps) sleep exactly as before; a call that
// waits for a file to become writable does not wait (wazero answers it at once).
type socketWait struct {
	// fdDir is /proc/self/fd, opened before pivot_root (after it /proc is gone), to list the sockets.
	fdDir *os.File
	// waited is set by Before when it did the waiting of the current poll_oneoff call.
	waited bool
	// hidden are the guest's fd_read subscriptions that Before turned into expired clock
	// subscriptions (none of its sockets was readable), with their bytes, which After restores.
	hidden []hiddenSub
}

type hiddenSub struct {
	offset uint32
	orig   [subSize]byte
}

// newSocketWait opens /proc/self/fd; without it nothing is waited for.
func newSocketWait() *socketWait {
	d, _ := os.Open("/proc/self/fd")
	return &socketWait{fdDir: d}
}

func (w *socketWait) close() {
	if w != nil && w.fdDir != nil {
		w.fdDir.Close()
		w.fdDir = nil
	}
}

// NewFunctionListener implements experimental.FunctionListenerFactory: it listens to
// poll_oneoff of WASI only.
func (w *socketWait) NewFunctionListener(def api.FunctionDefinition) experimental.FunctionListener {
	if def.ModuleName() == wasi_snapshot_preview1.ModuleName && def.Name() == "poll_oneoff" {
		return w
	}
	return nil
}

// Subscription layout of WASI preview 1 (48 bytes each): userdata u64, tag u8 at 8; for a clock,
// timeout u64 at 24 and flags u16 at 40.
const (
	subSize       = 48
	subTagClock   = 0
	subTagFdRead  = 1
	subTagFdWrite = 2
	subAbsTime    = 1
)

// Before implements experimental.FunctionListener for poll_oneoff(in, out, nsubscriptions, nevents).
func (w *socketWait) Before(_ context.Context, mod api.Module, _ api.FunctionDefinition, params []uint64, _ experimental.StackIterator) {
	w.waited = false
	if len(params) < 3 || w.fdDir == nil {
		return
	}
	n := uint32(params[2])
	mem := mod.Memory()
	// n*subSize in 64 bits: in 32 it wraps (n = 0x05555556 is 32 bytes) and the loop below would
	// index past what was read. Calls asking for more than the memory holds are left to wazero,
	// which fails them with EFAULT.
	size := uint64(n) * subSize
	if n == 0 || mem == nil || size > uint64(mem.Size()) {
		return
	}
	subs, ok := mem.Read(uint32(params[0]), uint32(size))
	if !ok {
		return
	}
	timeout, read := time.Duration(-1), false
	for i := uint32(0); i < n; i++ {
		s := subs[i*subSize:]
		switch s[8] {
		case subTagClock:
			d := time.Duration(binary.LittleEndian.Uint64(s[24:]))
			if binary.LittleEndian.Uint16(s[40:])&subAbsTime != 0 || d < 0 {
				d = 0 // an absolute deadline: leave it to wazero
			}
			if timeout < 0 || d < timeout {
				timeout = d
			}
		case subTagFdRead:
			read = true
		case subTagFdWrite:
			return
		}
	}
	if !read {
		return
	}
	w.waited = true
	if w.waitReadable(timeout) {
		return // wazero reports every fd_read subscription ready: the guest tries them all
	}
	// Nothing to read: wazero must not report the subscriptions ready, or the guest retries
	// them at once, forever. For this call they become clock subscriptions that expired
	// (relative, monotonic, 0 ns), which the guest ignores; After puts them back.
	for i := uint32(0); i < n; i++ {
		sub := subs[i*subSize : (i+1)*subSize]
		if sub[8] != subTagFdRead {
			continue
		}
		h := hiddenSub{offset: uint32(params[0]) + i*subSize}
		copy(h.orig[:], sub)
		w.hidden = append(w.hidden, h)
		clear(sub[8:])
		binary.LittleEndian.PutUint32(sub[16:], 1) // CLOCK_MONOTONIC
	}
}

// After implements experimental.FunctionListener.
func (w *socketWait) After(_ context.Context, mod api.Module, _ api.FunctionDefinition, _ []uint64) {
	w.restore(mod)
}

// Abort implements experimental.FunctionListener.
func (w *socketWait) Abort(_ context.Context, mod api.Module, _ api.FunctionDefinition, _ error) {
	w.restore(mod)
}

// restore puts back the subscriptions Before hid: the guest's runtime keeps and reuses them.
func (w *socketWait) restore(mod api.Module) {
	for _, h := range w.hidden {
		mod.Memory().Write(h.offset, h.orig[:])
	}
	w.hidden, w.waited = w.hidden[:0], false
}

// nanosleep is the guest's sleep: real, except within a poll_oneoff whose waiting Before did.
func (w *socketWait) nanosleep(ns int64) {
	if !w.waited {
		time.Sleep(time.Duration(ns))
	}
}

// waitReadable blocks until a socket of the process is readable (true) or timeout passes (never,
// if negative). Without sockets it just sleeps.
func (w *socketWait) waitReadable(timeout time.Duration) bool {
	fds := w.sockets()
	if len(fds) == 0 {
		if timeout < 0 {
			return true // nothing could ever wake it: let wazero answer as it always did
		}
		time.Sleep(timeout)
		return false
	}
	deadline := time.Now().Add(timeout)
	for {
		var ts *unix.Timespec
		if timeout >= 0 {
			t := unix.NsecToTimespec(int64(timeout))
			ts = &t
		}
		n, err := unix.Ppoll(fds, ts, nil)
		if err != unix.EINTR {
			return err != nil || n > 0
		}
		if timeout >= 0 {
			if timeout = time.Until(deadline); timeout <= 0 {
				return false
			}
		}
	}
}

// sockets lists the process's socket descriptors, to poll for input.
func (w *socketWait) sockets() []unix.PollFd {
	if _, err := w.fdDir.Seek(0, 0); err != nil {
		return nil
	}
	names, err := w.fdDir.Readdirnames(-1)
	if err != nil {
		return nil
	}
	self := int(w.fdDir.Fd())
	var fds []unix.PollFd
	for _, name := range names {
		fd := 0
		for _, c := range name {
			fd = fd*10 + int(c-'0')
		}
		var st unix.Stat_t
		if fd == self || unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
			continue
		}
		fds = append(fds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
	}
	return fds
}

// sockWaitKey carries a *socketWait from Prepare to compile, which installs it on WASI.
type sockWaitKey struct{}
