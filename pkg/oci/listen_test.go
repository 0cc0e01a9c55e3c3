package oci

import (
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestParseListen(t *testing.T) {
	cases := []struct {
		value  string
		want   []ListenAddr
		errHas []string // empty: must parse
	}{
		{value: ""},
		{value: "  "},
		{value: ":8080", want: []ListenAddr{{Port: 8080}}},
		{value: "0.0.0.0:8080", want: []ListenAddr{{Host: "0.0.0.0", Port: 8080}}},
		{value: "127.0.0.1:9000", want: []ListenAddr{{Host: "127.0.0.1", Port: 9000}}},
		{value: "[::]:8080", want: []ListenAddr{{Host: "::", Port: 8080}}},
		{value: "[::1]:1", want: []ListenAddr{{Host: "::1", Port: 1}}},
		{value: "[0:0::1]:65535", want: []ListenAddr{{Host: "::1", Port: 65535}}},
		{
			value: "127.0.0.1:9000, :8080,[::1]:8080",
			want:  []ListenAddr{{Host: "127.0.0.1", Port: 9000}, {Port: 8080}, {Host: "::1", Port: 8080}},
		},
		{value: "nonsense", errHas: []string{`"nonsense"`, "missing port"}},
		{value: "8080", errHas: []string{`"8080"`, "missing port"}},
		{value: "localhost:8080", errHas: []string{`"localhost:8080"`, "not an IP address"}},
		{value: "::1:8080", errHas: []string{`"::1:8080"`, "too many colons"}},
		{value: "1.2.3:80", errHas: []string{"not an IP address"}},
		{value: "127.0.0.1:", errHas: []string{`"127.0.0.1:"`, "no port"}},
		{value: ":http", errHas: []string{`":http"`, "not a number"}},
		{value: ":+80", errHas: []string{"not a number"}},
		{value: ":0", errHas: []string{`":0"`, "out of range"}},
		{value: ":65536", errHas: []string{`":65536"`, "out of range"}},
		{value: ":99999999999999999999", errHas: []string{"out of range"}},
		{value: ":8080,", errHas: []string{"empty item"}},
		{value: ":8080,:9090,:8080", errHas: []string{`":8080"`, "declared twice"}},
		{value: "[::]:80,[0::0]:80", errHas: []string{`"[0::0]:80"`, "[::]:80 is declared twice"}},
	}
	for _, tc := range cases {
		t.Run(tc.value, func(t *testing.T) {
			got, err := ParseListen(tc.value)
			if len(tc.errHas) == 0 {
				if err != nil {
					t.Fatalf("ParseListen(%q): %v", tc.value, err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("ParseListen(%q) = %#v, want %#v", tc.value, got, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseListen(%q) = %v, want an error", tc.value, got)
			}
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("error %q is not InvalidArgument", err)
			}
			for _, s := range append([]string{ListenEnv}, tc.errHas...) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestListenAddrString(t *testing.T) {
	for a, want := range map[ListenAddr][2]string{
		{Port: 80}:                    {":80", ""},
		{Host: "127.0.0.1", Port: 80}: {"127.0.0.1:80", "127.0.0.1"},
		{Host: "::", Port: 8080}:      {"[::]:8080", "[::]"},
	} {
		if got := a.String(); got != want[0] {
			t.Errorf("%#v.String() = %q, want %q", a, got, want[0])
		}
		if got := a.BracketedHost(); got != want[1] {
			t.Errorf("%#v.BracketedHost() = %q, want %q", a, got, want[1])
		}
	}
}

func TestListen(t *testing.T) {
	if got, err := Listen([]string{"PATH=/bin"}); err != nil || got != nil {
		t.Errorf("unset: %v, %v", got, err)
	}
	got, err := Listen([]string{"WAZERO_LISTEN=:1", "WAZERO_LISTEN=:2"})
	if err != nil || !reflect.DeepEqual(got, []ListenAddr{{Port: 2}}) {
		t.Errorf("the last definition must win: %v, %v", got, err)
	}
	if _, err := Listen([]string{"WAZERO_LISTEN=nonsense"}); err == nil {
		t.Error("no error for nonsense")
	}
}

func TestNewNetNS(t *testing.T) {
	for _, tc := range []struct {
		ns   []specs.LinuxNamespace
		want bool
	}{
		{nil, false},
		{[]specs.LinuxNamespace{{Type: specs.MountNamespace}}, false},
		{[]specs.LinuxNamespace{{Type: specs.NetworkNamespace}}, true},
		{[]specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-1"}}, false},
	} {
		if got := NewNetNS(&specs.Spec{Linux: &specs.Linux{Namespaces: tc.ns}}); got != tc.want {
			t.Errorf("NewNetNS(%v) = %v, want %v", tc.ns, got, tc.want)
		}
	}
	if NewNetNS(&specs.Spec{}) {
		t.Error("NewNetNS without Linux")
	}
}
