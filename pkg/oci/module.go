package oci

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
)

// wasmMagic is the first four bytes of every WebAssembly binary module.
var wasmMagic = []byte{0x00, 'a', 's', 'm'}

// Module is a resolved module: where it is on the host and the name the guest knows it by.
type Module struct {
	// GuestPath is the absolute path of the module inside the container rootfs (what the user named,
	// after cwd and PATH resolution).
	GuestPath string
	// HostPath is GuestPath resolved inside the rootfs on the host, with symlinks followed without
	// ever leaving the rootfs.
	HostPath string
}

// ResolveModule finds the module named by args0 inside rootfs, the way a shell finds a program:
// an absolute name is taken as is, a name with a slash is relative to cwd, and a bare name is
// looked up in the PATH of env (default "/usr/local/bin:/usr/bin:/bin" when env has no PATH).
// Symlinks are followed inside rootfs only, so a module can never be read from outside it.
// The module must be a regular file that starts with the WebAssembly magic number.
//
// Errors wrap errdefs.ErrNotFound (nothing at that path) or errdefs.ErrInvalidArgument (not a
// regular file, not wasm) and always name the module.
func ResolveModule(rootfs, args0, cwd string, env []string) (Module, error) {
	if args0 == "" {
		return Module{}, fmt.Errorf("process.args[0] is empty: it must name the .wasm module to run: %w", errdefs.ErrInvalidArgument)
	}
	root, err := os.OpenRoot(rootfs)
	if errors.Is(err, fs.ErrNotExist) {
		return Module{}, fmt.Errorf("container rootfs %s does not exist (the spec's root.path): %w", rootfs, errdefs.ErrNotFound)
	} else if err != nil {
		return Module{}, fmt.Errorf("open container rootfs %s: %w", rootfs, err)
	}
	defer root.Close()

	candidates := programCandidates(args0, cwd, env)
	for _, guest := range candidates {
		m, err := checkModule(root, rootfs, guest)
		// A bare name not found is reported as a PATH lookup even when PATH has one directory:
		// the user typed the name, not the path it was looked for at.
		if errors.Is(err, errdefs.ErrNotFound) && !strings.Contains(args0, "/") {
			continue
		}
		return m, err
	}
	return Module{}, fmt.Errorf("module %q not found in the container's PATH (%s): %w", args0, strings.Join(candidates, ", "), errdefs.ErrNotFound)
}

// programCandidates are the guest paths args0 may name, in the order a shell tries them: an
// absolute name as is, a name with a slash relative to cwd, a bare name in each directory of the
// PATH of env (default "/usr/local/bin:/usr/bin:/bin").
func programCandidates(args0, cwd string, env []string) []string {
	var candidates []string
	switch {
	case strings.HasPrefix(args0, "/"):
		candidates = []string{path.Clean(args0)}
	case strings.Contains(args0, "/"):
		if cwd == "" {
			cwd = "/"
		}
		candidates = []string{path.Join("/", cwd, args0)}
	default:
		p, ok := Env(env, "PATH")
		if !ok {
			p = "/usr/local/bin:/usr/bin:/bin"
		}
		for _, dir := range strings.Split(p, ":") {
			if dir == "" {
				dir = "."
			}
			candidates = append(candidates, path.Join("/", cwd, dir, args0))
			if strings.HasPrefix(dir, "/") {
				candidates[len(candidates)-1] = path.Join(dir, args0)
			}
		}
	}

	return candidates
}

func checkModule(root *os.Root, rootfs, guest string) (Module, error) {
	// Follow symlinks the way the guest sees them first: os.Root refuses absolute link targets,
	// which are common in images (/usr/local/bin/app.wasm -> /opt/app/app.wasm).
	resolved, err := resolveIn(rootfs, guest)
	if err != nil {
		return Module{}, fmt.Errorf("module %s: %w", guest, err)
	}
	rel := strings.TrimPrefix(resolved, "/")
	if rel == "" {
		rel = "."
	}
	// O_NONBLOCK: opening a FIFO must fail the regular-file check below, not block until a writer
	// comes along.
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Module{}, fmt.Errorf("module %s not found in the container rootfs: %w", guest, errdefs.ErrNotFound)
		}
		return Module{}, fmt.Errorf("module %s: %w: %w", guest, err, errdefs.ErrInvalidArgument)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Module{}, fmt.Errorf("module %s: %w", guest, err)
	}
	if !st.Mode().IsRegular() {
		return Module{}, fmt.Errorf("module %s is not a regular file (%s): %w", guest, st.Mode().Type(), errdefs.ErrInvalidArgument)
	}
	// The whole 8-byte header: a component (WASI preview 2) placed as a file in the image gets
	// the component error here, as from an image layer, not wazero's "invalid version header".
	head := make([]byte, 8)
	n, _ := io.ReadFull(f, head)
	if err := CheckHeader("module "+guest, head[:n]); err != nil {
		return Module{}, err
	}
	return Module{GuestPath: guest, HostPath: rootfs + resolved}, nil
}

// ResolveIn returns the host path of rel inside rootfs, following symlinks as if rootfs were "/":
// an absolute link target or a ".." never leads out of rootfs. Components that do not exist are
// kept as they are.
func ResolveIn(rootfs, rel string) (string, error) {
	resolved, err := resolveIn(rootfs, rel)
	if err != nil {
		return "", err
	}
	return rootfs + resolved, nil
}

// resolveIn is ResolveIn, returning the absolute path inside rootfs.
func resolveIn(rootfs, rel string) (string, error) {
	const maxLinks = 40
	parts := strings.Split(path.Clean("/"+rel), "/")[1:]
	resolved := "/"
	for links := 0; len(parts) > 0; {
		p := parts[0]
		parts = parts[1:]
		if p == "" || p == "." {
			continue
		}
		if p == ".." {
			resolved = path.Dir(resolved)
			continue
		}
		next := path.Join(resolved, p)
		target, err := os.Readlink(rootfs + next)
		if err != nil {
			resolved = next
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("too many symlinks: %w", errdefs.ErrInvalidArgument)
		}
		if strings.HasPrefix(target, "/") {
			resolved = "/"
		}
		parts = append(strings.Split(target, "/"), parts...)
	}
	return resolved, nil
}
