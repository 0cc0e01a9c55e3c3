package oci

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// RootPreopenAnnotation is the spec annotation that chooses whether the guest gets the
// container's root filesystem preopened as "/" (its first preopen, descriptor 3): "true" (the
// default) or "false", for a guest that gets only the directory bind mounts preopened (at 3 on,
// in their order), as a module run by a WASI runtime without a root directory mount (wasmtime
// without --dir). Its files are then reachable only through those mounts, and descriptor 3 is
// the first mount, the first listener (WAZERO_LISTEN), or not open. An annotation, not a
// process.env variable, so that the guest's environment is exactly the spec's (`ctr run
// --annotation io.containerd.wazero.v1.root-preopen=false`).
const RootPreopenAnnotation = "io.containerd.wazero.v1.root-preopen"

// RootPreopen reads RootPreopenAnnotation from s: true when it is unset or blank. A value other
// than true or false is an InvalidArgument error naming the annotation.
func RootPreopen(s *specs.Spec) (bool, error) {
	v := strings.TrimSpace(s.Annotations[RootPreopenAnnotation])
	switch strings.ToLower(v) {
	case "", "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("annotation %s=%q: want true (the default: the root filesystem is preopened as /) or false (only directory mounts are preopened): %w",
		RootPreopenAnnotation, v, errdefs.ErrInvalidArgument)
}
