package oci

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestNamespaces(t *testing.T) {
	tests := []struct {
		name       string
		spec       specs.Spec
		sandbox    bool
		netns      string
		cloneflags uintptr
	}{
		{name: "no linux section", spec: specs.Spec{}},
		{
			name: "ctr default: new namespaces, no paths",
			spec: specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace}}}},
			cloneflags: 0, // only sandboxes create namespaces
		},
		{
			name: "CRI sandbox with a CNI netns",
			spec: specs.Spec{
				Annotations: map[string]string{ContainerTypeAnnotation: ContainerTypeSandbox},
				Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
					{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
					{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-1"}}}},
			sandbox: true, netns: "/var/run/netns/cni-1", cloneflags: unix.CLONE_NEWIPC | unix.CLONE_NEWUTS,
		},
		{
			name: "CRI workload joining its sandbox",
			spec: specs.Spec{
				Annotations: map[string]string{ContainerTypeAnnotation: "container"},
				Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
					{Type: specs.IPCNamespace, Path: "/proc/42/ns/ipc"}, {Type: specs.UTSNamespace, Path: "/proc/42/ns/uts"},
					{Type: specs.NetworkNamespace, Path: "/proc/42/ns/net"}}}},
			netns: "/proc/42/ns/net",
		},
		{
			name: "host-network sandbox",
			spec: specs.Spec{
				Annotations: map[string]string{ContainerTypeAnnotation: ContainerTypeSandbox},
				Linux:       &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.IPCNamespace}}}},
			sandbox: true, cloneflags: unix.CLONE_NEWIPC,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsSandbox(&tc.spec); got != tc.sandbox {
				t.Errorf("IsSandbox = %v, want %v", got, tc.sandbox)
			}
			if got := NetNSPath(&tc.spec); got != tc.netns {
				t.Errorf("NetNSPath = %q, want %q", got, tc.netns)
			}
			if !tc.sandbox {
				return
			}
			if got := SandboxCloneflags(&tc.spec); got != tc.cloneflags {
				t.Errorf("SandboxCloneflags = %#x, want %#x", got, tc.cloneflags)
			}
		})
	}
}
