package seccomp

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Load compiles p (see Compile) and installs the filter on every thread of
// the calling process with seccomp(2) SECCOMP_SET_MODE_FILTER and
// SECCOMP_FILTER_FLAG_TSYNC; threads started later inherit it. The filter
// cannot be removed; a filter installed earlier stays in force as well (the
// kernel runs all of them and the most restrictive result wins).
//
// The profile's SECCOMP_FILTER_FLAG_LOG and SECCOMP_FILTER_FLAG_SPEC_ALLOW
// are added when the running kernel supports them and left out when it
// does not.
//
// Load does not set no_new_privs. Without it the kernel only accepts the
// filter from a caller with CAP_SYS_ADMIN (in its user namespace), and
// fails with EACCES otherwise. If the calling thread has no_new_privs set
// (prctl(PR_SET_NO_NEW_PRIVS)), TSYNC copies it to every other thread.
//
// If another thread cannot be synchronized (it already runs a different
// filter), nothing is installed and Load returns an error naming that
// thread. Load is the caller's last chance to do anything the profile
// denies: after it returns nil, the whole process is confined.
func Load(p *specs.LinuxSeccomp) error {
	prog, err := Compile(p)
	if err != nil {
		return err
	}
	flags := uintptr(unix.SECCOMP_FILTER_FLAG_TSYNC)
	for _, f := range p.Flags {
		var bit uintptr
		switch f {
		case specs.LinuxSeccompFlagLog:
			bit = unix.SECCOMP_FILTER_FLAG_LOG
		case specs.LinuxSeccompFlagSpecAllow:
			bit = unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
		default:
			continue // TSYNC: always; WAIT_KILLABLE_RECV: notify only
		}
		if flagSupported(bit) {
			flags |= bit
		}
	}

	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(filter)
	runtime.KeepAlive(&fprog)
	switch {
	case errno == unix.EACCES:
		return fmt.Errorf("seccomp: installing the filter: %w (the caller needs no_new_privs or CAP_SYS_ADMIN)", errno)
	case errno != 0:
		return fmt.Errorf("seccomp: installing the filter (flags %#x): %w", flags, errno)
	case r != 0:
		return fmt.Errorf("seccomp: TSYNC failed: thread %d could not be synchronized, no filter was installed", r)
	}
	return nil
}

// flagSupported reports whether the kernel knows the SECCOMP_SET_MODE_FILTER
// flag bit: with a NULL program it fails with EFAULT once the flags passed
// its check, with EINVAL if it does not know them.
func flagSupported(bit uintptr) bool {
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, bit, 0)
	return errors.Is(errno, unix.EFAULT)
}
