package seccomp

import "syscall"

// syscallAllThreads is syscall.AllThreadsSyscall, which returns ENOTSUP in
// cgo builds.
func syscallAllThreads(trap, a1, a2, a3 uintptr) (uintptr, uintptr, syscall.Errno) {
	return syscall.AllThreadsSyscall(trap, a1, a2, a3)
}
