// Package shim is the containerd side of containerd-shim-wazero-v1: the shim manager (the `start`,
// `delete` and `-info` actions containerd runs), the task service containerd talks to over ttrpc,
// and the per-container state machine, stdio, cgroups and events behind it.
//
// One shim process serves every container of a pod (grouped by the io.kubernetes.cri.sandbox-id
// annotation), or a single container outside Kubernetes. Guest code never runs in the shim: each
// container's module runs in a runner process (package engine).
package shim
