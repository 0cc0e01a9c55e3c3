// Package engine runs one WASI preview 1 module with wazero in a process of its own: the runner.
//
// The shim never runs guest code. For each container it starts its own binary again in runner mode
// (Spawn), places that process in the container's cgroup, and hands it a Config over a pipe. The
// runner compiles the module (through the node-wide compilation cache), checks that it can run
// (it validates, exports _start, imports only WASI preview 1), sets up the guest's view of the
// filesystem (a private mount namespace whose root is the container rootfs, with the bind mounts in
// place), and reports ready. Guest code starts only when the shim says Start, and the runner exits
// with the guest's exit code.
//
// Why a process per container: a wazero guest in a long loop blocks the Go garbage collector of its
// process, the kernel bounds memory, CPU and pids per process (cgroup), SIGKILL works at once, a
// crash stays in one container, and the task API wants a real pid.
package engine
