package seccomp

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// RunnerProfile is the runner's own seccomp allowlist: defence in depth on top of the container
// spec's profile (which the runner loads as well, and which may allow everything). The engine
// loads it with Load right before the capability drop (pkg/engine/drop_linux.go), after the
// privileged setup (network namespace, listeners, compile or cache load, mounts, pivot_root),
// so it allows only what a runner does from there on: the drop itself, loading the spec's filter,
// and the guest phase in every mode (a command, a server on preopened TCP listeners, the
// per-request HTTP mode, a pod sandbox), with wazero's compiler or its interpreter. Every call
// returns a new profile, which the caller may change.
//
// # Default action: SCMP_ACT_ERRNO (EPERM), not SCMP_ACT_KILL_PROCESS
//
// A call the list missed (an error path, a Go or wazero release that starts using a new call, a
// kernel that makes a vDSO call fall back to the real one) then fails like any refused call:
// Go's os and net return an error, wazero hands the guest an errno, and the container keeps
// running and can say what failed. With KILL_PROCESS the same miss kills the container with
// SIGSYS, possibly long after it started, with nothing in its log. The strictness lost is small:
// a refused call has no effect either way, and all the filter gives up is that probing a denied
// call is not fatal. The spec's profile still decides as configured: the kernel applies the most
// restrictive result of all filters, so a spec that kills on a call still kills.
//
// # What is allowed, and how the list was derived
//
// Statically: the calls Go's runtime issues on linux/amd64 and linux/arm64 (the SYS_ numbers in
// runtime/sys_linux_{amd64,arm64}.s, internal/runtime/syscall/linux, os_linux.go, mem_linux.go,
// set_vma_name_linux.go, vgetrandom_linux.go); the syscall, golang.org/x/sys/unix,
// internal/syscall/unix, os, net and internal/poll functions linked into the runner binary
// (`go tool nm` of an unstripped build, see scripts/runner-syscalls.sh), minus those only the
// privileged setup calls (mount, pivot_root, setns, openat2, open_tree, move_mount,
// mount_setattr, chdir, flock, wait4, pidfd_open); wazero v1.12's (mmap, mprotect, munmap in
// internal/platform for code; ppoll, utimensat and the *at file calls in internal/sysfs); and
// the drop's own calls. Dynamically: `strace -f` of real runners (the engine's unit tests, which
// spawn the test binary as a runner, and the runner binary driven in the sandbox mode, through
// SIGTERM and SIGKILL, a guest growing its memory by 40-60 MiB, the interpreter, a cache hit, the
// per-request mode under 64 concurrent requests on IPv4 and IPv6, and a Go HTTP server guest on
// a preopened listener, busy and idle), keeping the calls made after the drop began (its
// prctl(PR_CAPBSET_READ)) or at the status line: 27 runners, 43 distinct calls, every one in the
// static set, with the arguments the conditions below allow (scripts/runner-syscalls.sh --trace
// repeats it and lists any call this profile does not allow). The list is the union.
//
// Argument conditions, where cheap and clearly safe:
//   - clone only creates threads: CLONE_THREAD and CLONE_VM set, no namespace flag (Go's
//     runtime's flags). There is no fork or vfork, and clone3, whose flags a filter cannot see,
//     fails with ENOSYS (as in containerd's default profile, not EPERM) so that a caller falls
//     back to clone; so no new process, and execve and execveat are not allowed: a runner never
//     executes a program after its setup (the module is compiled in its memory).
//   - mmap and mprotect never with PROT_EXEC, and pkey_mprotect not at all: wazero's compiler
//     maps all the executable code (the module's, its trampolines, the listener trampolines) in
//     CompileModule or when loading from the cache, both before the drop, so in the guest phase
//     nothing needs new executable memory and a bug that lets a guest write the runner's memory
//     cannot make any.
//   - socket only for TCP over IPv4 or IPv6, and netlink route sockets (Go's net reads the
//     interfaces with them to resolve an IPv6 zone): wazero listens on the guest's addresses
//     again while instantiating, after the drop (pkg/engine/listen.go), but a runner never
//     connects anywhere, so connect, sendmsg and recvmsg are not allowed, nor UDP, raw or
//     packet sockets.
//   - prctl only for the options the drop and Go's runtime use (PR_CAPBSET_READ/DROP,
//     PR_SET/GET_KEEPCAPS, PR_SET/GET_DUMPABLE, PR_CAP_AMBIENT, PR_SET/GET_NO_NEW_PRIVS,
//     PR_GET_SECCOMP, PR_SET/GET_NAME, PR_SET_VMA): not PR_SET_PTRACER, PR_SET_MM,
//     PR_SET_SECUREBITS and the others.
//   - prlimit64 only on the runner itself (pid 0).
//
// Left out, among others: mount, umount2, pivot_root, unshare, setns, chroot, ptrace,
// process_vm_readv/writev, bpf, kexec_load, kexec_file_load, init_module, finit_module,
// delete_module, keyctl, add_key, request_key, perf_event_open, userfaultfd, io_uring_setup,
// io_uring_enter, io_uring_register, execve, execveat, fork, vfork, open_by_handle_at,
// name_to_handle_at, mknod(at), chmod and chown calls, memfd_create, pidfd_*, reboot, swapon,
// sethostname, setdomainname, settimeofday, clock_settime, acct, quotactl.
//
// The drop's calls stay allowed afterwards (setresuid, capset, ...): once the capabilities are
// gone they can only lower what the runner holds, as for any process. seccomp stays allowed so
// that the spec's filter can be loaded; a filter can only restrict further.
func RunnerProfile() *specs.LinuxSeccomp {
	eperm := uint(1)
	p := &specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: &eperm,
		Syscalls: []specs.LinuxSyscall{{
			Names:  runnerAllowed(),
			Action: specs.ActAllow,
		}},
	}
	p.Syscalls = append(p.Syscalls, runnerConditional()...)
	return p
}

// runnerAllowed are the system calls allowed whatever their arguments. Names a GOARCH does not
// have (arch_prctl, epoll_wait, getrlimit... on arm64) are skipped by Compile.
func runnerAllowed() []string {
	return []string{
		// Go runtime: threads, scheduling, futexes, timers, signals, exit.
		"futex", "sched_yield", "sched_getaffinity", "gettid", "getpid", "tgkill", "kill",
		"exit", "exit_group", "restart_syscall", "arch_prctl",
		"nanosleep", "clock_gettime", "setitimer", "timer_create", "timer_settime", "timer_delete",
		"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
		"uname", "getrandom",
		// Go runtime: memory (mmap and mprotect: see runnerConditional).
		"munmap", "mremap", "madvise", "mincore", "brk",
		// Go runtime netpoller and os/net descriptors.
		"epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd2",
		"pipe2", "fcntl", "ppoll",
		// Files: stdio, FIFOs, the guest's preopened directories (wazero sysfs through os and
		// syscall), /proc/self/fd for the socket wait, cgroup files for GOMAXPROCS.
		"read", "write", "readv", "writev", "pread64", "pwrite64", "lseek", "close",
		"openat", "fstat", "newfstatat", "getdents64", "faccessat", "faccessat2", "getcwd",
		"mkdirat", "unlinkat", "renameat", "renameat2", "linkat", "symlinkat", "readlinkat",
		"utimensat", "ftruncate", "fsync", "fdatasync",
		"sendfile", "splice", "copy_file_range",
		// Sockets: the guest's TCP listeners and the per-request HTTP server (socket: see
		// runnerConditional).
		"bind", "listen", "accept4", "getsockname", "getpeername", "getsockopt", "setsockopt",
		"recvfrom", "sendto", "shutdown",
		// The drop (pkg/engine/drop_linux.go) and loading the spec's filter.
		"capget", "capset", "setgroups", "setresgid", "setresuid", "umask", "getrlimit", "seccomp",
	}
}

// Flags of clone and values of its conditions (linux/sched.h).
const (
	cloneVM     = 0x00000100
	cloneThread = 0x00010000
	// cloneNamespaces: CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER,
	// CLONE_NEWPID, CLONE_NEWNET (containerd's default profile tests the same mask).
	cloneNamespaces = 0x7e020000
)

// prctl options the runner uses (linux/prctl.h).
var runnerPrctls = []uint64{
	3, 4, // PR_GET_DUMPABLE, PR_SET_DUMPABLE
	7, 8, // PR_GET_KEEPCAPS, PR_SET_KEEPCAPS
	15, 16, // PR_SET_NAME, PR_GET_NAME
	21,     // PR_GET_SECCOMP
	23, 24, // PR_CAPBSET_READ, PR_CAPBSET_DROP
	38, 39, // PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS
	47,         // PR_CAP_AMBIENT
	0x53564d41, // PR_SET_VMA (Go's runtime names its mappings)
}

// runnerConditional are the rules with argument conditions.
func runnerConditional() []specs.LinuxSyscall {
	allow := func(name string, args ...specs.LinuxSeccompArg) specs.LinuxSyscall {
		return specs.LinuxSyscall{Names: []string{name}, Action: specs.ActAllow, Args: args}
	}
	eq := func(index uint, v uint64) specs.LinuxSeccompArg {
		return specs.LinuxSeccompArg{Index: index, Value: v, Op: specs.OpEqualTo}
	}
	masked := func(index uint, mask, want uint64) specs.LinuxSeccompArg {
		return specs.LinuxSeccompArg{Index: index, Value: mask, ValueTwo: want, Op: specs.OpMaskedEqual}
	}
	const (
		protExec     = 0x4
		sockTypeMask = 0xf // SOCK_TYPE_MASK
		sockStream   = 1
		afInet       = 2
		afInet6      = 10
		afNetlink    = 16
		netlinkRoute = 0
	)
	enosys := uint(38) // ENOSYS
	rules := []specs.LinuxSyscall{
		// clone3 cannot be filtered by its flags (they are in memory): ENOSYS, as in
		// containerd's and Docker's default profiles, makes a caller fall back to clone
		// (glibc's pthread_create does; Go's runtime uses clone anyway).
		{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys},
		// Threads only: CLONE_THREAD and CLONE_VM, no namespace.
		allow("clone", masked(0, cloneThread|cloneVM|cloneNamespaces, cloneThread|cloneVM)),
		// No new executable memory.
		allow("mmap", masked(2, protExec, 0)),
		allow("mprotect", masked(2, protExec, 0)),
		// TCP over IPv4 and IPv6; netlink route (interfaces, for IPv6 zones).
		allow("socket", eq(0, afInet), masked(1, sockTypeMask, sockStream)),
		allow("socket", eq(0, afInet6), masked(1, sockTypeMask, sockStream)),
		allow("socket", eq(0, afNetlink), eq(2, netlinkRoute)),
		// Limits of the runner itself only.
		allow("prlimit64", eq(0, 0)),
	}
	// One condition per option on the same argument: ORed (see the package documentation).
	prctl := specs.LinuxSyscall{Names: []string{"prctl"}, Action: specs.ActAllow}
	for _, o := range runnerPrctls {
		prctl.Args = append(prctl.Args, eq(0, o))
	}
	return append(rules, prctl)
}
