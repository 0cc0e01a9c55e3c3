package oci

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Security is the security context of a container's process, read once from the spec: who the
// process runs as and what it may do. The runner applies it to itself after its privileged setup
// and before the first guest instruction (engine's drop), as runc applies it before execve.
type Security struct {
	// UID and GID are process.user.uid and gid; Groups is process.user.additionalGids (the
	// supplementary groups, exactly these: an empty list clears the runner's).
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Groups []uint32 `json:"groups,omitempty"`
	// Umask is process.user.umask; nil means 0022, runc's default.
	Umask *uint32 `json:"umask,omitempty"`
	// Caps are the capability sets of process.capabilities as the spec lists them, as capability
	// numbers (names this build does not know are left out, as runc ignores them). nil Caps (the
	// spec has no process.capabilities) means every set empty.
	Caps *Capabilities `json:"caps,omitempty"`
	// NoNewPrivileges is process.noNewPrivileges.
	NoNewPrivileges bool `json:"noNewPrivileges,omitempty"`
	// Rlimits are process.rlimits, in spec order.
	Rlimits []Rlimit `json:"rlimits,omitempty"`
	// OOMScoreAdj is process.oomScoreAdj; nil leaves the runner's (inherited from the shim).
	OOMScoreAdj *int `json:"oomScoreAdj,omitempty"`
	// Seccomp is linux.seccomp; nil means no filter from the spec.
	Seccomp *specs.LinuxSeccomp `json:"seccomp,omitempty"`
}

// Capabilities are the five capability sets of the spec, as capability numbers.
type Capabilities struct {
	Bounding    []int `json:"bounding,omitempty"`
	Effective   []int `json:"effective,omitempty"`
	Inheritable []int `json:"inheritable,omitempty"`
	Permitted   []int `json:"permitted,omitempty"`
	Ambient     []int `json:"ambient,omitempty"`
}

// Rlimit is one process.rlimits entry: Type is its name (RLIMIT_NOFILE), Resource its number.
type Rlimit struct {
	Type     string `json:"type"`
	Resource int    `json:"resource"`
	Soft     uint64 `json:"soft"`
	Hard     uint64 `json:"hard"`
}

// capNumbers maps the spec's capability names to their numbers (capabilities(7)).
var capNumbers = map[string]int{
	"CAP_CHOWN":              unix.CAP_CHOWN,
	"CAP_DAC_OVERRIDE":       unix.CAP_DAC_OVERRIDE,
	"CAP_DAC_READ_SEARCH":    unix.CAP_DAC_READ_SEARCH,
	"CAP_FOWNER":             unix.CAP_FOWNER,
	"CAP_FSETID":             unix.CAP_FSETID,
	"CAP_KILL":               unix.CAP_KILL,
	"CAP_SETGID":             unix.CAP_SETGID,
	"CAP_SETUID":             unix.CAP_SETUID,
	"CAP_SETPCAP":            unix.CAP_SETPCAP,
	"CAP_LINUX_IMMUTABLE":    unix.CAP_LINUX_IMMUTABLE,
	"CAP_NET_BIND_SERVICE":   unix.CAP_NET_BIND_SERVICE,
	"CAP_NET_BROADCAST":      unix.CAP_NET_BROADCAST,
	"CAP_NET_ADMIN":          unix.CAP_NET_ADMIN,
	"CAP_NET_RAW":            unix.CAP_NET_RAW,
	"CAP_IPC_LOCK":           unix.CAP_IPC_LOCK,
	"CAP_IPC_OWNER":          unix.CAP_IPC_OWNER,
	"CAP_SYS_MODULE":         unix.CAP_SYS_MODULE,
	"CAP_SYS_RAWIO":          unix.CAP_SYS_RAWIO,
	"CAP_SYS_CHROOT":         unix.CAP_SYS_CHROOT,
	"CAP_SYS_PTRACE":         unix.CAP_SYS_PTRACE,
	"CAP_SYS_PACCT":          unix.CAP_SYS_PACCT,
	"CAP_SYS_ADMIN":          unix.CAP_SYS_ADMIN,
	"CAP_SYS_BOOT":           unix.CAP_SYS_BOOT,
	"CAP_SYS_NICE":           unix.CAP_SYS_NICE,
	"CAP_SYS_RESOURCE":       unix.CAP_SYS_RESOURCE,
	"CAP_SYS_TIME":           unix.CAP_SYS_TIME,
	"CAP_SYS_TTY_CONFIG":     unix.CAP_SYS_TTY_CONFIG,
	"CAP_MKNOD":              unix.CAP_MKNOD,
	"CAP_LEASE":              unix.CAP_LEASE,
	"CAP_AUDIT_WRITE":        unix.CAP_AUDIT_WRITE,
	"CAP_AUDIT_CONTROL":      unix.CAP_AUDIT_CONTROL,
	"CAP_SETFCAP":            unix.CAP_SETFCAP,
	"CAP_MAC_OVERRIDE":       unix.CAP_MAC_OVERRIDE,
	"CAP_MAC_ADMIN":          unix.CAP_MAC_ADMIN,
	"CAP_SYSLOG":             unix.CAP_SYSLOG,
	"CAP_WAKE_ALARM":         unix.CAP_WAKE_ALARM,
	"CAP_BLOCK_SUSPEND":      unix.CAP_BLOCK_SUSPEND,
	"CAP_AUDIT_READ":         unix.CAP_AUDIT_READ,
	"CAP_PERFMON":            unix.CAP_PERFMON,
	"CAP_BPF":                unix.CAP_BPF,
	"CAP_CHECKPOINT_RESTORE": unix.CAP_CHECKPOINT_RESTORE,
}

// rlimitNumbers maps the spec's rlimit types to their RLIMIT_* numbers.
var rlimitNumbers = map[string]int{
	"RLIMIT_AS":         unix.RLIMIT_AS,
	"RLIMIT_CORE":       unix.RLIMIT_CORE,
	"RLIMIT_CPU":        unix.RLIMIT_CPU,
	"RLIMIT_DATA":       unix.RLIMIT_DATA,
	"RLIMIT_FSIZE":      unix.RLIMIT_FSIZE,
	"RLIMIT_LOCKS":      unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK":    unix.RLIMIT_MEMLOCK,
	"RLIMIT_MSGQUEUE":   unix.RLIMIT_MSGQUEUE,
	"RLIMIT_NICE":       unix.RLIMIT_NICE,
	"RLIMIT_NOFILE":     unix.RLIMIT_NOFILE,
	"RLIMIT_NPROC":      unix.RLIMIT_NPROC,
	"RLIMIT_RSS":        unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO":     unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME":     unix.RLIMIT_RTTIME,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK":      unix.RLIMIT_STACK,
}

// CapabilityNumber returns the number of the capability name ("CAP_NET_ADMIN"), and whether this
// build knows it.
func CapabilityNumber(name string) (int, bool) {
	n, ok := capNumbers[strings.ToUpper(name)]
	return n, ok
}

// ReadSecurity reads the security context of the spec's process. A spec without a process (a
// sandbox may have one anyway) gives root with no capabilities. Unknown capability names are
// skipped (runc warns and ignores them: a newer kernel's name in an older runtime); an unknown
// rlimit type, a soft limit above its hard limit or an oomScoreAdj out of [-1000, 1000] is an
// errdefs.ErrInvalidArgument that names it.
func ReadSecurity(s *specs.Spec) (*Security, error) {
	sec := &Security{}
	if s.Linux != nil && s.Linux.Seccomp != nil {
		sec.Seccomp = s.Linux.Seccomp
	}
	p := s.Process
	if p == nil {
		return sec, nil
	}
	sec.UID, sec.GID = p.User.UID, p.User.GID
	sec.Groups = append([]uint32(nil), p.User.AdditionalGids...)
	sec.Umask = p.User.Umask
	sec.NoNewPrivileges = p.NoNewPrivileges
	if p.Capabilities != nil {
		c := p.Capabilities
		sec.Caps = &Capabilities{
			Bounding:    capList(c.Bounding),
			Effective:   capList(c.Effective),
			Inheritable: capList(c.Inheritable),
			Permitted:   capList(c.Permitted),
			Ambient:     capList(c.Ambient),
		}
	}
	for _, r := range p.Rlimits {
		n, ok := rlimitNumbers[strings.ToUpper(r.Type)]
		if !ok {
			return nil, fmt.Errorf("process.rlimits: unknown type %q (use RLIMIT_NOFILE, RLIMIT_NPROC...): %w", r.Type, errdefs.ErrInvalidArgument)
		}
		if r.Soft > r.Hard {
			return nil, fmt.Errorf("process.rlimits: %s soft limit %d is above its hard limit %d: %w", r.Type, r.Soft, r.Hard, errdefs.ErrInvalidArgument)
		}
		sec.Rlimits = append(sec.Rlimits, Rlimit{Type: strings.ToUpper(r.Type), Resource: n, Soft: r.Soft, Hard: r.Hard})
	}
	if p.OOMScoreAdj != nil {
		if v := *p.OOMScoreAdj; v < -1000 || v > 1000 {
			return nil, fmt.Errorf("process.oomScoreAdj %d is outside [-1000, 1000]: %w", v, errdefs.ErrInvalidArgument)
		}
		v := *p.OOMScoreAdj
		sec.OOMScoreAdj = &v
	}
	return sec, nil
}

// capList turns capability names into numbers, skipping names this build does not know and
// repeats.
func capList(names []string) []int {
	var out []int
	seen := map[int]bool{}
	for _, name := range names {
		if n, ok := CapabilityNumber(name); ok && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// CapSets are the five capability sets as bit masks (bit n: capability n).
type CapSets struct {
	Bounding, Effective, Permitted, Inheritable, Ambient uint64
}

// Has reports whether capability c is in the mask m.
func Has(m uint64, c int) bool { return c >= 0 && c < 64 && m&(1<<c) != 0 }

// FinalCaps returns the capability sets runc's container process ends with for s: runc sets the
// spec's sets and then execve(2)s the process's binary, which has no file capabilities, so the
// kernel's rules (capabilities(7), "Transformation of capabilities during execve") give:
//   - for root (uid 0): permitted and effective = inheritable | bounding, ambient cleared;
//   - for any other user: permitted = effective = ambient, where ambient keeps only what runc can
//     raise (capabilities in the spec's ambient, permitted and inheritable sets).
//
// Inheritable and bounding are the spec's either way. So a non-root process without ambient
// capabilities has none, whatever the spec's effective set says. The runner ends with exactly
// these sets (engine's drop).
func (s *Security) FinalCaps() CapSets {
	var c Capabilities
	if s.Caps != nil {
		c = *s.Caps
	}
	f := CapSets{Bounding: capMask(c.Bounding), Inheritable: capMask(c.Inheritable)}
	if s.UID == 0 {
		f.Permitted = f.Inheritable | f.Bounding
		f.Effective = f.Permitted
		return f
	}
	f.Ambient = capMask(c.Ambient) & capMask(c.Permitted) & f.Inheritable
	f.Permitted, f.Effective = f.Ambient, f.Ambient
	return f
}

func capMask(caps []int) uint64 {
	var m uint64
	for _, c := range caps {
		if c >= 0 && c < 64 {
			m |= 1 << c
		}
	}
	return m
}
