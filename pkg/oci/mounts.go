package oci

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Mount is a host directory or file the guest sees at Destination.
type Mount struct {
	// Source is the absolute host path.
	Source string `json:"source"`
	// Destination is the absolute path inside the container.
	Destination string `json:"destination"`
	// ReadOnly makes every write through this mount fail with EROFS.
	ReadOnly bool `json:"readOnly,omitempty"`
	// Recursive binds sub-mounts of Source too (rbind).
	Recursive bool `json:"recursive,omitempty"`
	// RecursiveReadOnly ("rro") makes the sub-mounts of a recursive bind read-only too; plain
	// "ro" makes only the top mount read-only, as under runc.
	RecursiveReadOnly bool `json:"recursiveReadOnly,omitempty"`
	// NoDev, NoSuid and NoExec are the "nodev", "nosuid" and "noexec" options: device nodes
	// cannot be opened, set-user-ID bits are ignored, files cannot be executed through the mount.
	NoDev  bool `json:"noDev,omitempty"`
	NoSuid bool `json:"noSuid,omitempty"`
	NoExec bool `json:"noExec,omitempty"`
}

// BindMounts returns the spec's bind mounts in spec order: mounts of type "bind" or with a "bind"
// or "rbind" option. Every other mount (proc, sysfs, tmpfs, devpts, mqueue, cgroup...) is a Linux
// kernel interface a WASI guest cannot use, and is left out on purpose.
//
// A mount whose source does not exist is an error that names it (errdefs.ErrNotFound), and so are
// a source that cannot be reached (a symlink loop...) and a relative source or destination
// (errdefs.ErrInvalidArgument).
func BindMounts(s *specs.Spec) ([]Mount, error) {
	var out []Mount
	for _, m := range s.Mounts {
		bind := m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
		if !bind {
			continue
		}
		if !strings.HasPrefix(m.Destination, "/") {
			return nil, fmt.Errorf("mount destination %q must be absolute: %w", m.Destination, errdefs.ErrInvalidArgument)
		}
		if !strings.HasPrefix(m.Source, "/") {
			return nil, fmt.Errorf("bind mount source %q (for %s) must be an absolute host path: %w", m.Source, m.Destination, errdefs.ErrInvalidArgument)
		}
		if _, err := os.Stat(m.Source); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("bind mount source %s (for %s) does not exist on the host: %w", m.Source, m.Destination, errdefs.ErrNotFound)
		} else if err != nil {
			// It may well exist: a symlink loop (ELOOP), a path through a file (ENOTDIR), a
			// directory the shim may not search (EACCES). Say which, not "does not exist".
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return nil, fmt.Errorf("bind mount source %s (for %s) cannot be used: %v: %w", m.Source, m.Destination, err, errdefs.ErrInvalidArgument)
		}
		out = append(out, Mount{
			Source:            m.Source,
			Destination:       path.Clean(m.Destination),
			ReadOnly:          readOnly(m.Options) || slices.Contains(m.Options, "rro"),
			Recursive:         slices.Contains(m.Options, "rbind"),
			RecursiveReadOnly: slices.Contains(m.Options, "rro"),
			NoDev:             lastFlag(m.Options, "nodev", "dev"),
			NoSuid:            lastFlag(m.Options, "nosuid", "suid"),
			NoExec:            lastFlag(m.Options, "noexec", "exec"),
		})
	}
	return out, nil
}

// lastFlag reports whether on comes after the last off in options (mount(8): the last one wins;
// the default is off).
func lastFlag(options []string, on, off string) bool {
	v := false
	for _, o := range options {
		switch o {
		case on:
			v = true
		case off:
			v = false
		}
	}
	return v
}

// readOnly reports whether the last of "ro"/"rw" in options is "ro" (mount(8) semantics: the last
// one wins; the default is read-write).
func readOnly(options []string) bool {
	ro := false
	for _, o := range options {
		switch o {
		case "ro":
			ro = true
		case "rw":
			ro = false
		}
	}
	return ro
}
