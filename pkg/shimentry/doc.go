// Package shimentry is the lean entry of containerd-shim-wazero-v1: the binary containerd executes
// for every task's `start` and `delete` actions. It imports nothing of containerd, gRPC, ttrpc or
// wazero, so that these two short-lived processes do not pay for initialising them (about 240
// packages; see docs/PERFORMANCE.md, "levers tried").
//
//   - `start` (both bootstrap protocols: BootstrapParams on stdin from containerd 2.3 on, flags and
//     TTRPC_ADDRESS before) creates the shim socket and starts the server binary,
//     ServerBinary beside this one, on it, exactly as pkg/shim's Manager.Start does.
//   - `delete` answers on its own when there is nothing to clean up (no state file of the shim in
//     the bundle and no rootfs mounted: the server already cleaned up after the task), and
//     otherwise hands the action over to the server binary, whose full `delete` kills the
//     runner, unmounts, removes the cgroup or hands a native container to runc.
//   - Anything else (the server itself, -v, -info, -h, runner, fill-cache) is the server binary's:
//     the process replaces itself with it (execve), same arguments, same environment.
package shimentry
