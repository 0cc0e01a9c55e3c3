package oci

import (
	"errors"
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestReadSecurity(t *testing.T) {
	umask := uint32(0o077)
	adj := 500
	seccomp := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno}
	s := &specs.Spec{
		Process: &specs.Process{
			User:            specs.User{UID: 1000, GID: 2000, AdditionalGids: []uint32{3000, 4000}, Umask: &umask},
			NoNewPrivileges: true,
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  []string{"CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_NOT_A_CAP", "CAP_CHOWN"},
				Effective: []string{"cap_kill"},
			},
			Rlimits:     []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 4096}},
			OOMScoreAdj: &adj,
		},
		Linux: &specs.Linux{Seccomp: seccomp},
	}
	got, err := ReadSecurity(s)
	if err != nil {
		t.Fatal(err)
	}
	want := &Security{
		UID: 1000, GID: 2000, Groups: []uint32{3000, 4000}, Umask: &umask, NoNewPrivileges: true,
		Caps: &Capabilities{
			Bounding:  []int{unix.CAP_CHOWN, unix.CAP_NET_BIND_SERVICE}, // unknown name and repeat skipped
			Effective: []int{unix.CAP_KILL},
		},
		Rlimits:     []Rlimit{{Type: "RLIMIT_NOFILE", Resource: unix.RLIMIT_NOFILE, Soft: 1024, Hard: 4096}},
		OOMScoreAdj: &adj,
		Seccomp:     seccomp,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ReadSecurity:\n got %+v\nwant %+v", got, want)
	}

	if got, err := ReadSecurity(&specs.Spec{}); err != nil || got.UID != 0 || got.Caps != nil || got.Seccomp != nil {
		t.Errorf("ReadSecurity(empty spec) = %+v, %v; want root with nothing", got, err)
	}
}

func TestReadSecurityErrors(t *testing.T) {
	big := 1001
	for name, p := range map[string]*specs.Process{
		"unknown rlimit":  {Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_BOGUS", Soft: 1, Hard: 1}}},
		"soft above hard": {Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 10, Hard: 5}}},
		"oomScoreAdj":     {OOMScoreAdj: &big},
	} {
		_, err := ReadSecurity(&specs.Spec{Process: p})
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: error %v, want ErrInvalidArgument", name, err)
		}
	}
}

func TestFinalCaps(t *testing.T) {
	m := func(caps ...int) uint64 { return capMask(caps) }
	all := &Capabilities{
		Bounding:    []int{unix.CAP_CHOWN, unix.CAP_KILL, unix.CAP_NET_BIND_SERVICE},
		Effective:   []int{unix.CAP_CHOWN, unix.CAP_KILL},
		Permitted:   []int{unix.CAP_CHOWN, unix.CAP_KILL, unix.CAP_NET_BIND_SERVICE},
		Inheritable: []int{unix.CAP_NET_BIND_SERVICE},
		Ambient:     []int{unix.CAP_NET_BIND_SERVICE, unix.CAP_KILL},
	}
	for _, tc := range []struct {
		name string
		sec  Security
		want CapSets
	}{
		{"no capabilities", Security{}, CapSets{}},
		{
			// execve of a binary as root: permitted = inheritable | bounding, whatever the
			// spec's effective set says (docker's and runc's root containers).
			"root", Security{Caps: all},
			CapSets{
				Bounding: m(unix.CAP_CHOWN, unix.CAP_KILL, unix.CAP_NET_BIND_SERVICE), Inheritable: m(unix.CAP_NET_BIND_SERVICE),
				Permitted: m(unix.CAP_CHOWN, unix.CAP_KILL, unix.CAP_NET_BIND_SERVICE), Effective: m(unix.CAP_CHOWN, unix.CAP_KILL, unix.CAP_NET_BIND_SERVICE),
			},
		},
		{
			// non-root: only the ambient capabilities that are also permitted and inheritable
			// survive (CAP_KILL is not inheritable).
			"non-root with ambient", Security{UID: 1000, Caps: all},
			CapSets{
				Bounding: m(unix.CAP_CHOWN, unix.CAP_KILL, unix.CAP_NET_BIND_SERVICE), Inheritable: m(unix.CAP_NET_BIND_SERVICE),
				Ambient: m(unix.CAP_NET_BIND_SERVICE), Permitted: m(unix.CAP_NET_BIND_SERVICE), Effective: m(unix.CAP_NET_BIND_SERVICE),
			},
		},
		{
			"non-root without ambient", Security{UID: 1000, Caps: &Capabilities{Bounding: all.Bounding, Effective: all.Effective, Permitted: all.Permitted}},
			CapSets{Bounding: m(unix.CAP_CHOWN, unix.CAP_KILL, unix.CAP_NET_BIND_SERVICE)},
		},
	} {
		if got := tc.sec.FinalCaps(); got != tc.want {
			t.Errorf("%s: FinalCaps = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
