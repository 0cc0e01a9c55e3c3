package shim

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// TestServing: WAZERO_LISTEN and WAZERO_WAGI are read from the environment and refused, naming
// the variable, for a container that asks for a network namespace of its own; one that joins a
// namespace (a pod's) or has none in its spec keeps them.
func TestServing(t *testing.T) {
	newNS := &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace}}}
	joins := &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/proc/1/ns/net"}}}
	spec := func(linux *specs.Linux, env ...string) *specs.Spec {
		return &specs.Spec{Process: &specs.Process{Env: env}, Linux: linux}
	}
	for _, tc := range []struct {
		spec     *specs.Spec
		variable string
	}{
		{spec(newNS, oci.ListenEnv+"=:8080"), oci.ListenEnv},
		{spec(newNS, oci.WAGIEnv+"=:8081"), oci.WAGIEnv},
	} {
		_, _, err := serving(tc.spec)
		if !errdefs.IsInvalidArgument(err) || !strings.HasPrefix(err.Error(), tc.variable+" is set, but the container asks for a new network namespace") {
			t.Errorf("env %q: err %v, want InvalidArgument naming %s", tc.spec.Process.Env, err, tc.variable)
		}
	}
	listen, wagi, err := serving(spec(joins, oci.ListenEnv+"=:8080"))
	if err != nil || len(listen) != 1 || listen[0].Port != 8080 || wagi != nil {
		t.Errorf("joined namespace: %v, %v, %v", listen, wagi, err)
	}
	listen, wagi, err = serving(spec(nil, oci.WAGIEnv+"=:8081"))
	if err != nil || len(listen) != 0 || wagi == nil {
		t.Errorf("no namespaces in the spec: %v, %v, %v", listen, wagi, err)
	}
	if listen, wagi, err := serving(spec(newNS, "A=1")); err != nil || listen != nil || wagi != nil {
		t.Errorf("serving nothing in a new namespace: %v, %v, %v", listen, wagi, err)
	}
}

// TestGuestEnv: PWD is added for a working directory other than /, cleaned, unless the process
// sets it; the process's own slice is not written to.
func TestGuestEnv(t *testing.T) {
	env := make([]string, 1, 4) // room to append in place: guestEnv must not
	env[0] = "A=1"
	got := guestEnv(&specs.Process{Env: env, Cwd: "app/../srv/"})
	if strings.Join(got, " ") != "A=1 PWD=/srv" || env[:2][1] != "" {
		t.Errorf("cwd app/../srv/: %q (the process's backing array: %q)", got, env[:2])
	}
	for _, p := range []*specs.Process{{Env: []string{"A=1"}, Cwd: "/"}, {Env: []string{"A=1"}}, {Env: []string{"PWD=/x"}, Cwd: "/srv"}} {
		if got := guestEnv(p); strings.Join(got, " ") != strings.Join(p.Env, " ") {
			t.Errorf("cwd %q env %q: %q, want the env as it is", p.Cwd, p.Env, got)
		}
	}
}
