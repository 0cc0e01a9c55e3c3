package engine

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/seccomp"
)

// The drop: how a runner, root with every capability while it sets the container up, becomes the
// container's process before the first guest instruction. runc gets there with execve: it sets
// the spec's user, capability sets, rlimits, no_new_privs and seccomp filter on its init process,
// and the kernel's execve rules then decide the final capability sets. A runner does not execve
// (the compiled module is in its memory), so it applies the same steps to every thread of its Go
// process (AllThreadsSyscall: capabilities and prctl bits are per thread) and sets the capability
// sets execve would have left (oci.Security.FinalCaps). The order is runc's (libcontainer/init_linux.go):
//
//  0. the runner's own seccomp allowlist (seccomp.RunnerProfile; defence in depth, see
//     RATIONALE.md), loaded while the runner may still install filters without no_new_privs;
//  1. rlimits (raising a hard limit needs CAP_SYS_RESOURCE, so before the capabilities go);
//  2. the spec's seccomp filter, when the spec does not set noNewPrivileges (installing a filter
//     without no_new_privs needs CAP_SYS_ADMIN; the profile then has to allow steps 3-6, as under
//     runc);
//  3. the bounding set, to the spec's;
//  4. supplementary groups, gid, uid (with PR_SET_KEEPCAPS, so the permitted set survives);
//  5. effective, permitted, inheritable and ambient sets, as after execve;
//  6. umask, no_new_privs, and the seccomp filter when noNewPrivileges is set (last, so it only
//     has to allow what the runner does from then on).
//
// oom_score_adj is written earlier (setOOMScoreAdj), while /proc is still reachable.

// setOOMScoreAdj writes sec.OOMScoreAdj to the runner's /proc/self/oom_score_adj (nothing when the
// spec has none). Lowering it needs CAP_SYS_RESOURCE: containerd's CRI option
// restrict_oom_score_adj keeps specs from asking for less than containerd's own.
func setOOMScoreAdj(sec *oci.Security) error {
	if sec == nil || sec.OOMScoreAdj == nil {
		return nil
	}
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(*sec.OOMScoreAdj)), 0); err != nil {
		return fmt.Errorf("set process.oomScoreAdj %d: %w", *sec.OOMScoreAdj, err)
	}
	return nil
}

// drop applies the security context sec to the whole runner process (see above). After it returns
// nil the runner holds exactly what runc's container process would hold for the same spec. An
// error names the step; the runner must then not run guest code.
func drop(sec *oci.Security) error {
	if sec == nil {
		return nil
	}
	// The runner's own allowlist first, whatever the spec says: what Go's runtime, wazero and the
	// drop itself need from here on, and nothing else (no mount, exec, ptrace, fork, PROT_EXEC
	// mappings...). A spec's profile is stacked on it below; the kernel applies the stricter.
	if err := seccomp.Load(seccomp.RunnerProfile()); err != nil {
		return fmt.Errorf("the runner's own seccomp allowlist: %w", err)
	}
	for _, r := range sec.Rlimits {
		lim := unix.Rlimit{Cur: r.Soft, Max: r.Hard}
		if err := unix.Prlimit(0, r.Resource, &lim, nil); err != nil {
			return fmt.Errorf("set rlimit %s (soft %d, hard %d): %w", r.Type, r.Soft, r.Hard, err)
		}
	}
	if sec.Seccomp != nil && !sec.NoNewPrivileges {
		if err := seccomp.Load(sec.Seccomp); err != nil {
			return fmt.Errorf("linux.seccomp: %w", err)
		}
	}
	want := sec.FinalCaps()
	last, err := lastCap()
	if err != nil {
		return err
	}
	for c := 0; c <= last; c++ {
		if want.Bounding&(1<<c) != 0 {
			continue
		}
		if err := allThreads(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 1, 0); err != nil {
		return fmt.Errorf("keep capabilities across setuid: %w", err)
	}
	groups := make([]int, len(sec.Groups))
	for i, g := range sec.Groups {
		groups[i] = int(g)
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("set supplementary groups %v (process.user.additionalGids): %w", sec.Groups, err)
	}
	if err := syscall.Setresgid(int(sec.GID), int(sec.GID), int(sec.GID)); err != nil {
		return fmt.Errorf("set gid %d (process.user.gid): %w", sec.GID, err)
	}
	if err := syscall.Setresuid(int(sec.UID), int(sec.UID), int(sec.UID)); err != nil {
		return fmt.Errorf("set uid %d (process.user.uid): %w", sec.UID, err)
	}
	if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 0, 0); err != nil {
		return fmt.Errorf("clear keep-capabilities: %w", err)
	}
	// A change of uid makes the process non-dumpable, which hands its /proc files to root; after
	// runc's execve the container's process is dumpable again. So is the runner.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set dumpable: %w", err)
	}
	if err := capset(want); err != nil {
		return fmt.Errorf("set capabilities (effective %#x, permitted %#x, inheritable %#x): %w", want.Effective, want.Permitted, want.Inheritable, err)
	}
	if err := allThreads(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	for c := 0; c <= last; c++ {
		if want.Ambient&(1<<c) == 0 {
			continue
		}
		if err := allThreads(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c)); err != nil {
			return fmt.Errorf("raise ambient capability %d: %w", c, err)
		}
	}
	umask := uint32(0o022)
	if sec.Umask != nil {
		umask = *sec.Umask
	}
	syscall.Umask(int(umask))
	if sec.NoNewPrivileges {
		if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
		if sec.Seccomp != nil {
			if err := seccomp.Load(sec.Seccomp); err != nil {
				return fmt.Errorf("linux.seccomp: %w", err)
			}
		}
	}
	return nil
}

// lastCap is the highest capability number the kernel knows (cap_last_cap), found without /proc:
// PR_CAPBSET_READ fails with EINVAL past it.
func lastCap() (int, error) {
	for c := 0; c < 64; c++ {
		if _, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0); err != nil {
			if c == 0 {
				return 0, fmt.Errorf("read the capability bounding set: %w", err)
			}
			return c - 1, nil
		}
	}
	return 63, nil
}

// capset sets the effective, permitted and inheritable sets of every thread.
func capset(s oci.CapSets) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(s.Effective), Permitted: uint32(s.Permitted), Inheritable: uint32(s.Inheritable)},
		{Effective: uint32(s.Effective >> 32), Permitted: uint32(s.Permitted >> 32), Inheritable: uint32(s.Inheritable >> 32)},
	}
	return allThreads(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
}

// allThreads makes a system call on every thread of the process (capabilities and most prctl
// settings belong to a thread, and a Go process has several). It needs a binary built without cgo,
// as the shim and the runner are.
func allThreads(trap, a1, a2, a3 uintptr) error {
	_, _, errno := syscall.AllThreadsSyscall(trap, a1, a2, a3)
	if errno != 0 {
		if errno == syscall.ENOTSUP {
			return fmt.Errorf("%w (a runner must be built with CGO_ENABLED=0)", errno)
		}
		return errno
	}
	return nil
}
