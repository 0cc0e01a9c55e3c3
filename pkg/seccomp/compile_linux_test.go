package seccomp

import (
	"encoding/binary"
	"math/rand"
	"runtime"
	"strings"
	"testing"

	cseccomp "github.com/containerd/containerd/v2/contrib/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Test programs run in golang.org/x/net/bpf's VM. Its loads read 32-bit
// words in network byte order where the kernel reads seccomp_data in host
// order, so seccompData writes each 32-bit field big-endian; what the tests
// check is which field (and which half of a 64-bit argument) the filter
// reads, and what it does with the value.

const (
	auditArchX8664   = 0xc000003e
	auditArchI386    = 0x40000003
	auditArchAarch64 = 0xc00000b7
	auditArchArm     = 0x40000028
)

// seccompData builds struct seccomp_data for a little-endian 64-bit ABI:
// args[i] at 16+8i, low half first.
func seccompData(nr, arch uint32, args ...uint64) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[0:], nr)
	binary.BigEndian.PutUint32(b[4:], arch)
	for i, a := range args {
		binary.BigEndian.PutUint32(b[16+8*i:], uint32(a))
		binary.BigEndian.PutUint32(b[20+8*i:], uint32(a>>32))
	}
	return b
}

type filter struct {
	t    *testing.T
	vm   *bpf.VM
	arch uint32
	nrs  map[string]uint32
	size int
}

func mustCompile(t *testing.T, goarch string, p *specs.LinuxSeccomp) *filter {
	t.Helper()
	raw, err := compileFor(goarch, p)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	if len(raw) > maxInsns {
		t.Fatalf("program has %d instructions", len(raw))
	}
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("program contains instructions the VM cannot decode")
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatalf("VM rejects the program: %v", err)
	}
	f := &filter{t: t, vm: vm, size: len(raw), nrs: arches[goarch].syscalls}
	switch goarch {
	case "amd64":
		f.arch = auditArchX8664
	case "arm64":
		f.arch = auditArchAarch64
	}
	return f
}

func (f *filter) runNr(nr, arch uint32, args ...uint64) uint32 {
	f.t.Helper()
	r, err := f.vm.Run(seccompData(nr, arch, args...))
	if err != nil {
		f.t.Fatalf("VM: %v", err)
	}
	return uint32(r)
}

func (f *filter) run(name string, args ...uint64) uint32 {
	f.t.Helper()
	nr, ok := f.nrs[name]
	if !ok {
		f.t.Fatalf("no system call %q in the table", name)
	}
	return f.runNr(nr, f.arch, args...)
}

func errnoRet(e unix.Errno) uint32 { return unix.SECCOMP_RET_ERRNO | uint32(e) }

func uintp(v uint) *uint { return &v }

func TestTableMatchesXSys(t *testing.T) {
	// The native table against golang.org/x/sys/unix's constants.
	want := map[string]uintptr{
		"read": unix.SYS_READ, "write": unix.SYS_WRITE, "openat": unix.SYS_OPENAT,
		"mount": unix.SYS_MOUNT, "kexec_load": unix.SYS_KEXEC_LOAD, "clone": unix.SYS_CLONE,
		"clone3": unix.SYS_CLONE3, "getppid": unix.SYS_GETPPID, "unshare": unix.SYS_UNSHARE,
		"futex": unix.SYS_FUTEX, "mmap": unix.SYS_MMAP, "uname": unix.SYS_UNAME,
		"mkdirat": unix.SYS_MKDIRAT, "exit_group": unix.SYS_EXIT_GROUP, "getpgid": unix.SYS_GETPGID,
		"rt_sigreturn": unix.SYS_RT_SIGRETURN, "socket": unix.SYS_SOCKET, "personality": unix.SYS_PERSONALITY,
	}
	info := arches[goarchForTest(t)]
	for name, nr := range want {
		if got, ok := info.syscalls[name]; !ok || uintptr(got) != nr {
			t.Errorf("table[%q] = %d, %v; unix says %d", name, got, ok, nr)
		}
	}
}

func goarchForTest(t *testing.T) string {
	t.Helper()
	if arches[runtime.GOARCH] == nil {
		t.Skipf("GOARCH %s not supported", runtime.GOARCH)
	}
	return runtime.GOARCH
}

func TestActions(t *testing.T) {
	tests := []struct {
		act      specs.LinuxSeccompAction
		errnoRet *uint
		want     uint32
	}{
		{specs.ActAllow, nil, unix.SECCOMP_RET_ALLOW},
		{specs.ActErrno, nil, errnoRet(unix.EPERM)},
		{specs.ActErrno, uintp(uint(unix.ENOSYS)), errnoRet(unix.ENOSYS)},
		{specs.ActKill, nil, unix.SECCOMP_RET_KILL_THREAD},
		{specs.ActKillThread, nil, unix.SECCOMP_RET_KILL_THREAD},
		{specs.ActKillProcess, nil, unix.SECCOMP_RET_KILL_PROCESS},
		{specs.ActTrap, nil, unix.SECCOMP_RET_TRAP},
		{specs.ActLog, nil, unix.SECCOMP_RET_LOG},
		{specs.ActTrace, nil, unix.SECCOMP_RET_TRACE | uint32(unix.EPERM)},
		{specs.ActTrace, uintp(7), unix.SECCOMP_RET_TRACE | 7},
		{specs.ActAllow, uintp(7), unix.SECCOMP_RET_ALLOW}, // errnoRet ignored, as runc does
	}
	for _, goarch := range []string{"amd64", "arm64"} {
		for _, tc := range tests {
			// As the rule's action, with a default that differs from all.
			p := &specs.LinuxSeccomp{
				DefaultAction:   specs.ActErrno,
				DefaultErrnoRet: uintp(uint(unix.EXDEV)),
				Syscalls:        []specs.LinuxSyscall{{Names: []string{"getppid"}, Action: tc.act, ErrnoRet: tc.errnoRet}},
			}
			f := mustCompile(t, goarch, p)
			if got := f.run("getppid"); got != tc.want {
				t.Errorf("%s: rule %s errnoRet %v: got %#x, want %#x", goarch, tc.act, tc.errnoRet, got, tc.want)
			}
			if got := f.run("getpid"); got != errnoRet(unix.EXDEV) {
				t.Errorf("%s: unlisted call: got %#x, want default errno EXDEV", goarch, got)
			}
			// As the default action.
			p = &specs.LinuxSeccomp{DefaultAction: tc.act, DefaultErrnoRet: tc.errnoRet}
			f = mustCompile(t, goarch, p)
			if got := f.run("getppid"); got != tc.want {
				t.Errorf("%s: default %s errnoRet %v: got %#x, want %#x", goarch, tc.act, tc.errnoRet, got, tc.want)
			}
		}
	}
}

// ref is the meaning of an argument condition, written out in Go.
func ref(op specs.LinuxSeccompOperator, arg, value, valueTwo uint64) bool {
	switch op {
	case specs.OpNotEqual:
		return arg != value
	case specs.OpLessThan:
		return arg < value
	case specs.OpLessEqual:
		return arg <= value
	case specs.OpEqualTo:
		return arg == value
	case specs.OpGreaterEqual:
		return arg >= value
	case specs.OpGreaterThan:
		return arg > value
	case specs.OpMaskedEqual:
		return arg&value == valueTwo
	}
	panic(op)
}

var allOps = []specs.LinuxSeccompOperator{
	specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo,
	specs.OpGreaterEqual, specs.OpGreaterThan, specs.OpMaskedEqual,
}

func argProfile(index uint, op specs.LinuxSeccompOperator, value, valueTwo uint64) *specs.LinuxSeccomp {
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Syscalls: []specs.LinuxSyscall{{
			Names:  []string{"getpgid"},
			Action: specs.ActAllow,
			Args:   []specs.LinuxSeccompArg{{Index: index, Op: op, Value: value, ValueTwo: valueTwo}},
		}},
	}
}

func TestArgumentOperators(t *testing.T) {
	const hi = 1 << 32
	tests := []struct {
		op              specs.LinuxSeccompOperator
		value, valueTwo uint64
		arg             uint64
		want            bool
	}{
		{specs.OpEqualTo, 5, 0, 5, true},
		{specs.OpEqualTo, 5, 0, 6, false},
		{specs.OpEqualTo, 5, 0, hi + 5, false}, // same low half, other high half
		{specs.OpEqualTo, hi + 5, 0, hi + 5, true},
		{specs.OpNotEqual, 5, 0, 5, false},
		{specs.OpNotEqual, 5, 0, hi + 5, true},
		{specs.OpNotEqual, 5, 0, 4, true},
		{specs.OpLessThan, hi, 0, hi - 1, true},
		{specs.OpLessThan, hi, 0, hi, false},
		{specs.OpLessThan, hi + 10, 0, 20, true},       // low half bigger, high half smaller
		{specs.OpLessThan, 10, 0, hi + 5, false},       // low half smaller, high half bigger
		{specs.OpLessEqual, hi + 10, 0, hi + 10, true}, // equal
		{specs.OpLessEqual, hi + 10, 0, hi + 11, false},
		{specs.OpLessEqual, hi + 10, 0, 2*hi + 1, false},
		{specs.OpGreaterThan, hi, 0, hi, false},
		{specs.OpGreaterThan, hi, 0, hi + 1, true},
		{specs.OpGreaterThan, 10, 0, hi + 5, true}, // low half smaller, high half bigger
		{specs.OpGreaterThan, hi + 10, 0, 20, false},
		{specs.OpGreaterEqual, hi + 10, 0, hi + 10, true},
		{specs.OpGreaterEqual, hi + 10, 0, hi + 9, false},
		{specs.OpGreaterEqual, 0xffffffff, 0, hi, true},
		{specs.OpMaskedEqual, 0x7e020000, 0, 0x11, true}, // containerd's clone rule shape
		{specs.OpMaskedEqual, 0x7e020000, 0, 0x20000 | 0x11, false},
		{specs.OpMaskedEqual, 0xf, 5, 0x25, true},
		{specs.OpMaskedEqual, 0xf, 5, 0x26, false},
		{specs.OpMaskedEqual, hi | 1, hi, hi | 2, true},
		{specs.OpMaskedEqual, hi | 1, hi, 2, false},       // high half masked bit missing
		{specs.OpMaskedEqual, 1, 3, 3, false},             // valueTwo outside the mask never matches
		{specs.OpMaskedEqual, hi | 1, hi, 3*hi + 4, true}, // high-half bits outside the mask are ignored
		{specs.OpMaskedEqual, hi | 1, hi, 3*hi + 5, false},
	}
	for _, goarch := range []string{"amd64", "arm64"} {
		for _, tc := range tests {
			if ref(tc.op, tc.arg, tc.value, tc.valueTwo) != tc.want {
				t.Fatalf("test case %+v contradicts the reference", tc)
			}
			for index := uint(0); index < 6; index++ {
				f := mustCompile(t, goarch, argProfile(index, tc.op, tc.value, tc.valueTwo))
				args := make([]uint64, 6)
				for i := range args {
					args[i] = ^tc.arg // other arguments must not matter
				}
				args[index] = tc.arg
				got := f.run("getpgid", args...) == unix.SECCOMP_RET_ALLOW
				if got != tc.want {
					t.Errorf("%s: arg%d=%#x %s value=%#x valueTwo=%#x: allowed=%v, want %v",
						goarch, index, tc.arg, tc.op, tc.value, tc.valueTwo, got, tc.want)
				}
			}
		}
	}
}

func TestArgumentOperatorsRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	// Values near the 32-bit boundaries, so both halves matter.
	pick := func() uint64 {
		parts := []uint32{0, 1, 2, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, rng.Uint32()}
		return uint64(parts[rng.Intn(len(parts))])<<32 | uint64(parts[rng.Intn(len(parts))])
	}
	for i := 0; i < 300; i++ {
		op := allOps[rng.Intn(len(allOps))]
		value, valueTwo := pick(), pick()
		if op == specs.OpMaskedEqual && rng.Intn(2) == 0 {
			valueTwo &= value
		}
		f := mustCompile(t, "amd64", argProfile(1, op, value, valueTwo))
		for j := 0; j < 20; j++ {
			arg := pick()
			switch {
			case j == 0:
				arg = value
			case op == specs.OpMaskedEqual && j%2 == 0:
				// An argument that matches wherever valueTwo lies
				// inside the mask, with noise outside it.
				arg = valueTwo | (pick() &^ value)
			}
			got := f.run("getpgid", 0, arg) == unix.SECCOMP_RET_ALLOW
			if want := ref(op, arg, value, valueTwo); got != want {
				t.Fatalf("arg1=%#x %s value=%#x valueTwo=%#x: allowed=%v, want %v", arg, op, value, valueTwo, got, want)
			}
		}
	}
}

func TestRuleCombination(t *testing.T) {
	deny := errnoRet(unix.EPERM)
	t.Run("different indexes are ANDed", func(t *testing.T) {
		f := mustCompile(t, "amd64", &specs.LinuxSeccomp{
			DefaultAction: specs.ActErrno,
			Syscalls: []specs.LinuxSyscall{{
				Names: []string{"getpgid"}, Action: specs.ActAllow,
				Args: []specs.LinuxSeccompArg{{Index: 0, Op: specs.OpEqualTo, Value: 1}, {Index: 1, Op: specs.OpEqualTo, Value: 2}},
			}},
		})
		for _, tc := range []struct {
			a0, a1 uint64
			want   uint32
		}{{1, 2, unix.SECCOMP_RET_ALLOW}, {1, 3, deny}, {0, 2, deny}, {2, 1, deny}} {
			if got := f.run("getpgid", tc.a0, tc.a1); got != tc.want {
				t.Errorf("(%d, %d): got %#x, want %#x", tc.a0, tc.a1, got, tc.want)
			}
		}
	})
	t.Run("repeated index is ORed (runc)", func(t *testing.T) {
		f := mustCompile(t, "amd64", &specs.LinuxSeccomp{
			DefaultAction: specs.ActErrno,
			Syscalls: []specs.LinuxSyscall{{
				Names: []string{"getpgid"}, Action: specs.ActAllow,
				Args: []specs.LinuxSeccompArg{
					{Index: 0, Op: specs.OpEqualTo, Value: 1},
					{Index: 0, Op: specs.OpEqualTo, Value: 2},
					{Index: 1, Op: specs.OpEqualTo, Value: 9},
				},
			}},
		})
		for _, tc := range []struct {
			a0, a1 uint64
			want   uint32
		}{{1, 0, unix.SECCOMP_RET_ALLOW}, {2, 0, unix.SECCOMP_RET_ALLOW}, {3, 9, unix.SECCOMP_RET_ALLOW}, {3, 0, deny}} {
			if got := f.run("getpgid", tc.a0, tc.a1); got != tc.want {
				t.Errorf("(%d, %d): got %#x, want %#x", tc.a0, tc.a1, got, tc.want)
			}
		}
	})
	t.Run("rules for one call are ORed, first match wins", func(t *testing.T) {
		f := mustCompile(t, "amd64", &specs.LinuxSeccomp{
			DefaultAction: specs.ActErrno,
			Syscalls: []specs.LinuxSyscall{
				{Names: []string{"getpgid"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Op: specs.OpEqualTo, Value: 1}}},
				{Names: []string{"getpgid"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EXDEV)), Args: []specs.LinuxSeccompArg{{Index: 0, Op: specs.OpLessThan, Value: 5}}},
				{Names: []string{"getpgid"}, Action: specs.ActLog, Args: []specs.LinuxSeccompArg{{Index: 0, Op: specs.OpEqualTo, Value: 7}}},
			},
		})
		for _, tc := range []struct {
			a0   uint64
			want uint32
		}{{1, unix.SECCOMP_RET_ALLOW}, {2, errnoRet(unix.EXDEV)}, {7, unix.SECCOMP_RET_LOG}, {8, deny}} {
			if got := f.run("getpgid", tc.a0); got != tc.want {
				t.Errorf("(%d): got %#x, want %#x", tc.a0, got, tc.want)
			}
		}
	})
	t.Run("unconditional rule wins over conditional ones", func(t *testing.T) {
		f := mustCompile(t, "amd64", &specs.LinuxSeccomp{
			DefaultAction: specs.ActErrno,
			Syscalls: []specs.LinuxSyscall{
				{Names: []string{"getpgid"}, Action: specs.ActLog, Args: []specs.LinuxSeccompArg{{Index: 0, Op: specs.OpEqualTo, Value: 1}}},
				{Names: []string{"getpgid"}, Action: specs.ActAllow},
				{Names: []string{"getpgid"}, Action: specs.ActTrap},
			},
		})
		for _, a0 := range []uint64{0, 1, 2} {
			if got := f.run("getpgid", a0); got != unix.SECCOMP_RET_ALLOW {
				t.Errorf("(%d): got %#x, want ALLOW", a0, got)
			}
		}
	})
	t.Run("rule with the default action is dropped (runc)", func(t *testing.T) {
		f := mustCompile(t, "amd64", &specs.LinuxSeccomp{
			DefaultAction: specs.ActErrno,
			Syscalls: []specs.LinuxSyscall{
				{Names: []string{"getpgid"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Op: specs.OpEqualTo, Value: 5}}},
				{Names: []string{"getpgid"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Op: specs.OpLessThan, Value: 10}}},
			},
		})
		if got := f.run("getpgid", 5); got != unix.SECCOMP_RET_ALLOW {
			t.Errorf("got %#x, want ALLOW", got)
		}
		if got := f.run("getpgid", 10); got != deny {
			t.Errorf("got %#x, want EPERM", got)
		}
	})
}

func TestUnknownNamesSkipped(t *testing.T) {
	f := mustCompile(t, "amd64", &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"no_such_syscall", "getppid", "socketcall", "arm_fadvise64_64"}, Action: specs.ActAllow},
		},
	})
	if got := f.run("getppid"); got != unix.SECCOMP_RET_ALLOW {
		t.Errorf("getppid: got %#x, want ALLOW", got)
	}
	if got := f.run("getpid"); got != errnoRet(unix.EPERM) {
		t.Errorf("getpid: got %#x, want EPERM", got)
	}
}

// TestForeignArchitectures: calls through another ABI get the default
// action even when the profile lists the architecture and the name.
func TestForeignArchitectures(t *testing.T) {
	for _, def := range []specs.LinuxSeccompAction{specs.ActErrno, specs.ActKillProcess} {
		p := &specs.LinuxSeccomp{
			DefaultAction: def,
			Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32, specs.ArchAARCH64, specs.ArchARM},
			Syscalls:      []specs.LinuxSyscall{{Names: []string{"read", "write", "getppid"}, Action: specs.ActAllow}},
		}
		want, _ := toAction(def, nil)

		f := mustCompile(t, "amd64", p)
		read := f.nrs["read"]
		if got := f.runNr(read, auditArchX8664); got != unix.SECCOMP_RET_ALLOW {
			t.Errorf("amd64 read: got %#x, want ALLOW", got)
		}
		for _, nr := range []uint32{read, 3 /* i386 read */, f.nrs["write"], f.nrs["getppid"]} {
			if got := f.runNr(nr, auditArchI386); got != uint32(want) {
				t.Errorf("amd64: i386 call %d: got %#x, want default %#x", nr, got, want)
			}
			if got := f.runNr(nr|x32SyscallBit, auditArchX8664); got != uint32(want) {
				t.Errorf("amd64: x32 call %#x: got %#x, want default %#x", nr|x32SyscallBit, got, want)
			}
		}

		f = mustCompile(t, "arm64", p)
		if got := f.run("read"); got != unix.SECCOMP_RET_ALLOW {
			t.Errorf("arm64 read: got %#x, want ALLOW", got)
		}
		if got := f.runNr(f.nrs["read"], auditArchArm); got != uint32(want) {
			t.Errorf("arm64: arm call: got %#x, want default %#x", got, want)
		}
		if got := f.runNr(f.nrs["read"], auditArchX8664); got != uint32(want) {
			t.Errorf("arm64: x86_64 arch: got %#x, want default %#x", got, want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	ok := specs.LinuxSyscall{Names: []string{"read"}, Action: specs.ActAllow}
	tests := []struct {
		name string
		p    *specs.LinuxSeccomp
		want string
	}{
		{"nil", nil, "nil profile"},
		{"no default action", &specs.LinuxSeccomp{}, "defaultAction"},
		{"unknown default action", &specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_MAYBE"}, "unknown action"},
		{"notify default", &specs.LinuxSeccomp{DefaultAction: specs.ActNotify}, "SCMP_ACT_NOTIFY"},
		{"unknown rule action", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{ok, {Names: []string{"write"}, Action: "SCMP_ACT_FOO"}}}, "unknown action"},
		{"unknown action on unknown name", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{{Names: []string{"no_such_call"}, Action: "SCMP_ACT_FOO"}}}, "unknown action"},
		{"notify rule", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{{Names: []string{"write"}, Action: specs.ActNotify}}}, "SCMP_ACT_NOTIFY"},
		{"listener path", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, ListenerPath: "/run/agent.sock", Syscalls: []specs.LinuxSyscall{ok}}, "listenerPath"},
		{"unknown operator", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Op: "SCMP_CMP_ALMOST"}}}}}, "unknown operator"},
		{"argument index", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}}}}}, "index 6"},
		{"empty name", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{{Names: []string{""}, Action: specs.ActAllow}}}, "empty"},
		{"errnoRet too big", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: uintp(1 << 16)}, "16 bits"},
		{"unknown flag", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_NEW_LISTENER"}}, "flag"},
	}
	for _, tc := range tests {
		_, err := compileFor("amd64", tc.p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got error %v, want one containing %q", tc.name, err, tc.want)
		}
		if err := Load(tc.p); err == nil {
			t.Errorf("%s: Load accepted the profile", tc.name)
		}
	}
	if _, err := compileFor("mips", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}); err == nil {
		t.Error("compiling for mips: no error")
	}
	p := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Flags: []specs.LinuxSeccompFlag{
		"SECCOMP_FILTER_FLAG_TSYNC", specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagSpecAllow, "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"}}
	if _, err := compileFor("amd64", p); err != nil {
		t.Errorf("known flags: %v", err)
	}
}

// TestLongJumps makes bodies and trees far larger than a conditional jump
// can span.
func TestLongJumps(t *testing.T) {
	info := arches["amd64"]
	var names []string
	for n := range info.syscalls {
		names = append(names, n)
	}
	var rules []specs.LinuxSyscall
	rules = append(rules, specs.LinuxSyscall{Names: names, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EXDEV))})
	for i := uint64(0); i < 150; i++ {
		rules = append(rules, specs.LinuxSyscall{
			Names: []string{"socket"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 0, Op: specs.OpEqualTo, Value: 3 * i}, {Index: 1, Op: specs.OpNotEqual, Value: i}},
		})
	}
	// "socket" has an unconditional rule above; use another call for the
	// conditional chain.
	for i := range rules[1:] {
		rules[1+i].Names = []string{"getpgid"}
	}
	rules[0].Names = slicesDelete(names, "getpgid")
	f := mustCompile(t, "amd64", &specs.LinuxSeccomp{DefaultAction: specs.ActKillProcess, Syscalls: rules})
	if f.size < 1000 {
		t.Fatalf("program only %d instructions; the test needs a large one", f.size)
	}
	for n := range info.syscalls {
		if n == "getpgid" {
			continue
		}
		if got := f.run(n); got != errnoRet(unix.EXDEV) {
			t.Fatalf("%s: got %#x, want EXDEV", n, got)
		}
	}
	for i := uint64(0); i < 150; i++ {
		if got := f.run("getpgid", 3*i, i+1); got != unix.SECCOMP_RET_ALLOW {
			t.Fatalf("getpgid(%d, %d): got %#x, want ALLOW", 3*i, i+1, got)
		}
		if got := f.run("getpgid", 3*i, i); got != unix.SECCOMP_RET_KILL_PROCESS {
			t.Fatalf("getpgid(%d, %d): got %#x, want KILL_PROCESS", 3*i, i, got)
		}
		if got := f.run("getpgid", 3*i+1, 0); got != unix.SECCOMP_RET_KILL_PROCESS {
			t.Fatalf("getpgid(%d, 0): got %#x, want KILL_PROCESS", 3*i+1, got)
		}
	}
	if got := f.runNr(1000, auditArchX8664); got != unix.SECCOMP_RET_KILL_PROCESS {
		t.Fatalf("unknown number: got %#x", got)
	}
}

func slicesDelete(names []string, drop string) []string {
	var out []string
	for _, n := range names {
		if n != drop {
			out = append(out, n)
		}
	}
	return out
}

// defaultCaps are containerd's default capabilities (no CAP_SYS_ADMIN).
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

func containerdProfile(caps ...string) *specs.LinuxSeccomp {
	return cseccomp.DefaultProfile(&specs.Spec{Process: &specs.Process{
		Capabilities: &specs.LinuxCapabilities{Bounding: caps},
	}})
}

// Thread creation flags of the Go runtime (runtime/os_linux.go cloneFlags).
const goThreadFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
	unix.CLONE_SYSVSEM | unix.CLONE_THREAD

func TestContainerdDefaultProfile(t *testing.T) {
	goarch := goarchForTest(t)
	p := containerdProfile(defaultCaps...)
	f := mustCompile(t, goarch, p)
	t.Logf("containerd DefaultProfile (%s, default caps): %d BPF instructions", goarch, f.size)
	eperm := errnoRet(unix.EPERM)

	// Every name of an unconditional ALLOW rule is allowed; every other
	// system call of the table not named at all gets EPERM.
	named := map[string]bool{}
	for _, s := range p.Syscalls {
		for _, n := range s.Names {
			named[n] = true
			if _, ok := f.nrs[n]; ok && s.Action == specs.ActAllow && len(s.Args) == 0 {
				if got := f.run(n); got != unix.SECCOMP_RET_ALLOW {
					t.Errorf("%s: got %#x, want ALLOW", n, got)
				}
			}
		}
	}
	denied := 0
	for n := range f.nrs {
		if !named[n] {
			denied++
			if got := f.run(n); got != eperm {
				t.Errorf("unlisted %s: got %#x, want EPERM", n, got)
			}
		}
	}
	if denied < 20 {
		t.Errorf("only %d system calls denied", denied)
	}

	for _, tc := range []struct {
		name string
		args []uint64
		want uint32
	}{
		{"read", nil, unix.SECCOMP_RET_ALLOW},
		{"write", nil, unix.SECCOMP_RET_ALLOW},
		{"futex", nil, unix.SECCOMP_RET_ALLOW},
		{"mmap", nil, unix.SECCOMP_RET_ALLOW},
		{"rt_sigreturn", nil, unix.SECCOMP_RET_ALLOW},
		{"clone", []uint64{goThreadFlags}, unix.SECCOMP_RET_ALLOW},
		{"clone", []uint64{unix.CLONE_VFORK | unix.CLONE_VM | uint64(unix.SIGCHLD) | unix.CLONE_PIDFD}, unix.SECCOMP_RET_ALLOW},
		{"clone", []uint64{goThreadFlags | unix.CLONE_NEWNS}, eperm},
		{"clone", []uint64{uint64(unix.SIGCHLD) | unix.CLONE_NEWUSER}, eperm},
		{"clone", []uint64{unix.CLONE_NEWCGROUP}, eperm},
		{"clone3", nil, errnoRet(unix.ENOSYS)},
		{"kexec_load", nil, eperm},
		{"mount", nil, eperm},
		{"umount2", nil, eperm},
		{"unshare", nil, eperm},
		{"setns", nil, eperm},
		{"bpf", nil, eperm},
		{"socket", []uint64{unix.AF_INET}, unix.SECCOMP_RET_ALLOW},
		{"socket", []uint64{unix.AF_UNIX}, unix.SECCOMP_RET_ALLOW},
		{"socket", []uint64{unix.AF_NETLINK}, unix.SECCOMP_RET_ALLOW},
		{"socket", []uint64{unix.AF_VSOCK}, eperm},
		{"socket", []uint64{unix.AF_ALG}, eperm},
		{"socket", []uint64{1<<32 | unix.AF_INET}, eperm},
		{"personality", []uint64{0}, unix.SECCOMP_RET_ALLOW},
		{"personality", []uint64{0xffffffff}, unix.SECCOMP_RET_ALLOW},
		{"personality", []uint64{1}, eperm},
	} {
		if got := f.run(tc.name, tc.args...); got != tc.want {
			t.Errorf("%s%#x: got %#x, want %#x", tc.name, tc.args, got, tc.want)
		}
	}

	// With CAP_SYS_ADMIN the namespace calls are allowed.
	f = mustCompile(t, goarch, containerdProfile(append(defaultCaps, "CAP_SYS_ADMIN")...))
	t.Logf("containerd DefaultProfile (%s, CAP_SYS_ADMIN): %d BPF instructions", goarch, f.size)
	for _, tc := range []struct {
		name string
		args []uint64
	}{{"mount", nil}, {"unshare", nil}, {"clone", []uint64{unix.CLONE_NEWNS}}, {"clone3", nil}} {
		if got := f.run(tc.name, tc.args...); got != unix.SECCOMP_RET_ALLOW {
			t.Errorf("admin %s%#x: got %#x, want ALLOW", tc.name, tc.args, got)
		}
	}
	if got := f.run("kexec_load"); got != eperm {
		t.Errorf("admin kexec_load: got %#x, want EPERM", got)
	}

	// The other architecture's table compiles as well.
	for _, a := range []string{"amd64", "arm64"} {
		f := mustCompile(t, a, p)
		if got := f.run("clone", goThreadFlags); got != unix.SECCOMP_RET_ALLOW {
			t.Errorf("%s clone: got %#x", a, got)
		}
		if got := f.run("kexec_load"); got != eperm {
			t.Errorf("%s kexec_load: got %#x", a, got)
		}
	}
}
