package oci

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Annotations the CRI plugin puts on every container of a pod.
const (
	// ContainerTypeAnnotation is "sandbox" for a pod's sandbox (pause) container and "container"
	// for the pod's workloads.
	ContainerTypeAnnotation = "io.kubernetes.cri.container-type"
	// ContainerTypeSandbox is the ContainerTypeAnnotation value of a pod sandbox.
	ContainerTypeSandbox = "sandbox"
)

// IsSandbox reports whether the spec is a Kubernetes pod sandbox, whose only job is to hold the
// pod's namespaces: its image (pause) is never run.
func IsSandbox(s *specs.Spec) bool {
	return s.Annotations[ContainerTypeAnnotation] == ContainerTypeSandbox
}

// NetNSPath returns the path of the network namespace the spec asks to join (a CNI netns, or
// /proc/PID/ns/net of the pod sandbox), or "" when it names none. A network namespace without a
// path ("create a new one") also gives "": a WASI preview 1 guest opens no connections of its own,
// so the shim does not pay for a namespace nobody would use (see RATIONALE.md).
func NetNSPath(s *specs.Spec) string {
	if s.Linux == nil {
		return ""
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path
		}
	}
	return ""
}

// SandboxCloneflags returns the namespaces a pod sandbox creates for the pod's containers to
// share: IPC and UTS, when the spec asks for new ones (no path). Mount namespaces are always
// created for runners; PID namespaces never are, so a runner is never PID 1 (which ignores
// signals it has no handler for).
func SandboxCloneflags(s *specs.Spec) uintptr {
	if s.Linux == nil {
		return 0
	}
	var flags uintptr
	for _, ns := range s.Linux.Namespaces {
		if ns.Path != "" {
			continue
		}
		switch ns.Type {
		case specs.IPCNamespace:
			flags |= unix.CLONE_NEWIPC
		case specs.UTSNamespace:
			flags |= unix.CLONE_NEWUTS
		}
	}
	return flags
}
