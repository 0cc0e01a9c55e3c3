package oci

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A container of a wazero pod runs either as a WebAssembly module in a wazero runner or, when its
// process is a native Linux program (an Istio or Linkerd proxy, a log shipper, an init container
// from a mutating webhook), as a normal Linux container run by runc. See docs/kubernetes.md
// ("Mixed pods").
const (
	// RuntimeAnnotation chooses the runtime of a container: "wasm", "native" or "auto" (the
	// default: decided from the image and spec, see NativeProgram). Put on a container (CRI
	// container annotations, `ctr run --annotation`), it applies to that container; put on a pod
	// (CRI pod annotations, which the CRI plugin copies into every container's spec), to all
	// the pod's containers. The CRI plugin copies either only when the runtime's
	// pod_annotations / container_annotations list it.
	RuntimeAnnotation = "wazero.dev/runtime"
	// RuntimeAnnotationPrefix, followed by a container's name, chooses the runtime of that one
	// container from a pod annotation (Kubernetes passes only pod annotations to the CRI):
	// wazero.dev/runtime.istio-proxy: native. It wins over RuntimeAnnotation.
	RuntimeAnnotationPrefix = RuntimeAnnotation + "."
	// ContainerNameAnnotation is the CRI plugin's annotation with the container's name.
	ContainerNameAnnotation = "io.kubernetes.cri.container-name"
)

// Runtime is where a container runs.
type Runtime string

const (
	RuntimeAuto   Runtime = "auto"   // decided from the image and spec
	RuntimeWasm   Runtime = "wasm"   // a wazero runner
	RuntimeNative Runtime = "native" // runc
)

// ChosenRuntime returns the runtime the spec's annotations ask for, and which annotation asked:
// RuntimeAuto and "" when none does. A value other than wasm, native or auto is refused
// (errdefs.ErrInvalidArgument) with the annotation named.
func ChosenRuntime(s *specs.Spec) (Runtime, string, error) {
	keys := []string{RuntimeAnnotation}
	if name := s.Annotations[ContainerNameAnnotation]; name != "" {
		keys = []string{RuntimeAnnotationPrefix + name, RuntimeAnnotation}
	}
	for _, k := range keys {
		v, ok := s.Annotations[k]
		if !ok {
			continue
		}
		switch r := Runtime(strings.ToLower(strings.TrimSpace(v))); r {
		case RuntimeWasm, RuntimeNative, RuntimeAuto:
			return r, k, nil
		default:
			return "", k, fmt.Errorf("annotation %s=%q: the runtime must be wasm, native or auto: %w", k, v, errdefs.ErrInvalidArgument)
		}
	}
	return RuntimeAuto, "", nil
}

// elfMagic is the first four bytes of every ELF executable.
var elfMagic = []byte{0x7f, 'E', 'L', 'F'}

// NativeProgram reports whether args0 names, inside rootfs, a native Linux program: a regular
// file starting with the ELF magic number or with "#!" (a script). It resolves args0 as
// ResolveModule does (cwd, PATH of env, symlinks kept inside rootfs) and returns the guest path
// it found and what it is ("ELF executable" or "script"). Anything else, a missing file
// included, is not native: the caller keeps its wasm error.
func NativeProgram(rootfs, args0, cwd string, env []string) (guest, kind string, ok bool) {
	if args0 == "" {
		return "", "", false
	}
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return "", "", false
	}
	defer root.Close()
	for _, cand := range programCandidates(args0, cwd, env) {
		resolved, err := resolveIn(rootfs, cand)
		if err != nil {
			return "", "", false
		}
		rel := strings.TrimPrefix(resolved, "/")
		if rel == "" {
			continue
		}
		f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if errors.Is(err, fs.ErrNotExist) {
			continue // the next PATH directory
		}
		if err != nil {
			return "", "", false
		}
		kind := programKind(f)
		f.Close()
		if kind == "" {
			return "", "", false // found, but not native: the shell would stop here too
		}
		return cand, kind, true
	}
	return "", "", false
}

// programKind is "ELF executable" or "script" for a regular file that is one, else "".
func programKind(f *os.File) string {
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return ""
	}
	head := make([]byte, 4)
	n, _ := io.ReadFull(f, head)
	switch {
	case bytes.Equal(head[:n], elfMagic):
		return "ELF executable"
	case n >= 2 && head[0] == '#' && head[1] == '!':
		return "script"
	}
	return ""
}
