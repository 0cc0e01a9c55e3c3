package seccomp

import (
	"testing"

	"golang.org/x/sys/unix"
)

// runnerDenied are calls RunnerProfile must refuse (EPERM) on every architecture that has them.
var runnerDenied = []string{
	"mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "ptrace",
	"process_vm_readv", "process_vm_writev", "bpf", "kexec_load", "kexec_file_load",
	"init_module", "finit_module", "delete_module", "keyctl", "add_key", "request_key",
	"perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
	"execve", "execveat", "fork", "vfork", "open_by_handle_at", "name_to_handle_at",
	"mknodat", "memfd_create", "connect", "sendmsg", "recvmsg", "pkey_mprotect", "reboot",
	"swapon", "sethostname", "settimeofday", "clock_settime", "acct", "quotactl",
	"fchmodat", "fchownat", "getppid", "wait4", "pidfd_open", "pidfd_send_signal", "openat2",
	"move_mount", "open_tree", "fsopen", "mount_setattr", "personality",
}

// Values of the conditions' tests.
const (
	goCloneFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
		unix.CLONE_SYSVSEM | unix.CLONE_THREAD // runtime.cloneFlags
	glibcCloneFlags = goCloneFlags | unix.CLONE_SETTLS | unix.CLONE_PARENT_SETTID | unix.CLONE_CHILD_CLEARTID
)

func TestRunnerProfileNames(t *testing.T) {
	// Every name is a system call of amd64 or arm64 (a typo would be skipped silently).
	p := RunnerProfile()
	for _, s := range p.Syscalls {
		for _, n := range s.Names {
			_, amd := syscallsAMD64[n]
			_, arm := syscallsARM64[n]
			if !amd && !arm {
				t.Errorf("%q is no system call of amd64 or arm64", n)
			}
		}
	}
	for _, n := range runnerDenied {
		_, amd := syscallsAMD64[n]
		_, arm := syscallsARM64[n]
		if !amd && !arm {
			t.Errorf("denied %q is no system call of amd64 or arm64", n)
		}
	}
}

func TestRunnerProfileCompile(t *testing.T) {
	allowed := runnerAllowed()
	for _, goarch := range []string{"amd64", "arm64"} {
		t.Run(goarch, func(t *testing.T) {
			f := mustCompile(t, goarch, RunnerProfile())
			t.Logf("%s: %d instructions (limit %d)", goarch, f.size, maxInsns)
			if f.size > 1024 {
				t.Errorf("%d instructions: the filter runs on every system call, keep it short", f.size)
			}
			eperm, allow := errnoRet(unix.EPERM), uint32(unix.SECCOMP_RET_ALLOW)
			n := 0
			for _, name := range allowed {
				if _, ok := f.nrs[name]; !ok {
					continue
				}
				n++
				if got := f.run(name, 0, 0, 0, 0, 0, 0); got != allow {
					t.Errorf("%s: %#x, want allowed", name, got)
				}
			}
			t.Logf("%s: %d unconditional names, %d conditional rules", goarch, n, len(runnerConditional()))
			for _, name := range runnerDenied {
				if _, ok := f.nrs[name]; !ok {
					continue
				}
				if got := f.run(name, 0, 0, 0, 0, 0, 0); got != eperm {
					t.Errorf("%s: %#x, want EPERM", name, got)
				}
			}
			// A number no table knows, and a foreign architecture.
			if got := f.runNr(4000, f.arch); got != eperm {
				t.Errorf("unknown number: %#x, want EPERM", got)
			}
			foreign := uint32(auditArchI386)
			if goarch == "arm64" {
				foreign = auditArchArm
			}
			if got := f.runNr(f.nrs["read"], foreign); got != eperm {
				t.Errorf("read through a foreign ABI: %#x, want EPERM", got)
			}

			cases := []struct {
				what string
				name string
				args []uint64
				want uint32
			}{
				{"Go's threads", "clone", []uint64{goCloneFlags | unix.CLONE_SETTLS}, allow},
				{"glibc's threads", "clone", []uint64{glibcCloneFlags}, allow},
				{"fork", "clone", []uint64{uint64(unix.SIGCHLD)}, eperm},
				{"vfork", "clone", []uint64{unix.CLONE_VM | unix.CLONE_VFORK | uint64(unix.SIGCHLD)}, eperm},
				{"thread without CLONE_VM", "clone", []uint64{unix.CLONE_THREAD | unix.CLONE_SIGHAND}, eperm},
				{"thread in a new user namespace", "clone", []uint64{goCloneFlags | unix.CLONE_NEWUSER}, eperm},
				{"thread in a new mount namespace", "clone", []uint64{goCloneFlags | unix.CLONE_NEWNS}, eperm},
				{"thread in a new network namespace", "clone", []uint64{goCloneFlags | unix.CLONE_NEWNET}, eperm},
				{"thread in a new pid namespace", "clone", []uint64{goCloneFlags | unix.CLONE_NEWPID}, eperm},
				{"thread in a new cgroup namespace", "clone", []uint64{goCloneFlags | unix.CLONE_NEWCGROUP}, eperm},
				{"clone3", "clone3", nil, errnoRet(unix.ENOSYS)},
				{"heap", "mmap", []uint64{0, 1 << 20, unix.PROT_READ | unix.PROT_WRITE, unix.MAP_PRIVATE | unix.MAP_ANONYMOUS}, allow},
				{"reservation", "mmap", []uint64{0, 1 << 30, unix.PROT_NONE, unix.MAP_PRIVATE | unix.MAP_ANONYMOUS}, allow},
				{"executable mapping", "mmap", []uint64{0, 4096, unix.PROT_READ | unix.PROT_EXEC, unix.MAP_PRIVATE | unix.MAP_ANONYMOUS}, eperm},
				{"RWX mapping", "mmap", []uint64{0, 4096, unix.PROT_READ | unix.PROT_WRITE | unix.PROT_EXEC, unix.MAP_PRIVATE}, eperm},
				{"exec bit with high bits", "mmap", []uint64{0, 4096, 1<<32 | unix.PROT_EXEC, unix.MAP_PRIVATE}, eperm},
				{"mprotect RW", "mprotect", []uint64{0x10000, 4096, unix.PROT_READ | unix.PROT_WRITE}, allow},
				{"mprotect none", "mprotect", []uint64{0x10000, 4096, unix.PROT_NONE}, allow},
				{"mprotect RX", "mprotect", []uint64{0x10000, 4096, unix.PROT_READ | unix.PROT_EXEC}, eperm},
				{"TCP/IPv4", "socket", []uint64{unix.AF_INET, unix.SOCK_STREAM | unix.SOCK_CLOEXEC | unix.SOCK_NONBLOCK, unix.IPPROTO_TCP}, allow},
				{"TCP/IPv6", "socket", []uint64{unix.AF_INET6, unix.SOCK_STREAM | unix.SOCK_CLOEXEC | unix.SOCK_NONBLOCK, 0}, allow},
				{"netlink route", "socket", []uint64{unix.AF_NETLINK, unix.SOCK_RAW | unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE}, allow},
				{"netlink audit", "socket", []uint64{unix.AF_NETLINK, unix.SOCK_RAW | unix.SOCK_CLOEXEC, unix.NETLINK_AUDIT}, eperm},
				{"UDP", "socket", []uint64{unix.AF_INET, unix.SOCK_DGRAM | unix.SOCK_CLOEXEC, 0}, eperm},
				{"raw IPv4", "socket", []uint64{unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP}, eperm},
				{"raw IPv6", "socket", []uint64{unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6}, eperm},
				{"unix", "socket", []uint64{unix.AF_UNIX, unix.SOCK_STREAM, 0}, eperm},
				{"packet", "socket", []uint64{unix.AF_PACKET, unix.SOCK_RAW, 0}, eperm},
				{"vsock", "socket", []uint64{unix.AF_VSOCK, unix.SOCK_STREAM, 0}, eperm},
				{"TCP family in the high half", "socket", []uint64{1<<32 | unix.AF_INET, unix.SOCK_STREAM, 0}, eperm},
				{"PR_SET_VMA", "prctl", []uint64{unix.PR_SET_VMA, unix.PR_SET_VMA_ANON_NAME}, allow},
				{"PR_CAPBSET_DROP", "prctl", []uint64{unix.PR_CAPBSET_DROP, 21}, allow},
				{"PR_CAP_AMBIENT", "prctl", []uint64{unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL}, allow},
				{"PR_SET_NO_NEW_PRIVS", "prctl", []uint64{unix.PR_SET_NO_NEW_PRIVS, 1}, allow},
				{"PR_SET_KEEPCAPS", "prctl", []uint64{unix.PR_SET_KEEPCAPS, 1}, allow},
				{"PR_SET_DUMPABLE", "prctl", []uint64{unix.PR_SET_DUMPABLE, 1}, allow},
				{"PR_SET_PTRACER", "prctl", []uint64{unix.PR_SET_PTRACER, 0}, eperm},
				{"PR_SET_MM", "prctl", []uint64{unix.PR_SET_MM}, eperm},
				{"PR_SET_SECUREBITS", "prctl", []uint64{unix.PR_SET_SECUREBITS}, eperm},
				{"PR_SET_SECCOMP", "prctl", []uint64{unix.PR_SET_SECCOMP}, eperm},
				{"PR_SET_CHILD_SUBREAPER", "prctl", []uint64{unix.PR_SET_CHILD_SUBREAPER, 1}, eperm},
				{"own limits", "prlimit64", []uint64{0, unix.RLIMIT_NOFILE}, allow},
				{"another process's limits", "prlimit64", []uint64{1, unix.RLIMIT_NOFILE}, eperm},
			}
			for _, c := range cases {
				if got := f.run(c.name, c.args...); got != c.want {
					t.Errorf("%s (%s %#x): %#x, want %#x", c.what, c.name, c.args, got, c.want)
				}
			}
		})
	}
}
