// Package oci turns an OCI runtime spec and bundle into what the wasm engine needs: which module to
// run, what the guest sees (args, env, preopened directories) and the memory it may use.
//
// Everything here is a pure function of the spec and the files in the bundle: no mounts, no
// processes, no cgroups. That keeps the rules that decide what a guest may see in one place, tested
// table by table.
package oci
