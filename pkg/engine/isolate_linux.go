package engine

import (
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// isolate gives the runner the container's view of the filesystem. The runner was started in a
// private mount namespace (CLONE_NEWNS, see Spawn); here it stops mount events from propagating
// back to the host, binds each mount into the rootfs at its destination (read-only where asked),
// and chroots into the rootfs. Paths the guest opens, symlinks included, then resolve inside the
// container, never on the host. Everything mounted here disappears with the namespace when the
// runner exits: nothing can leak.
func isolate(cfg *Config) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	rootfs := cfg.Rootfs
	// A bind of the rootfs onto itself makes it a mount point that can be remounted read-only.
	if err := unix.Mount(rootfs, rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind rootfs %s: %w", rootfs, err)
	}
	for _, m := range cfg.Mounts {
		target, err := mountpoint(rootfs, m.Source, m.Destination)
		if err != nil {
			return fmt.Errorf("mount %s at %s: %w", m.Source, m.Destination, err)
		}
		flags := uintptr(unix.MS_BIND)
		if m.Recursive {
			flags |= unix.MS_REC
		}
		if err := unix.Mount(m.Source, target, "", flags, ""); err != nil {
			return fmt.Errorf("mount %s at %s: %w", m.Source, m.Destination, err)
		}
		if m.ReadOnly {
			if err := unix.Mount("", target, "", flags|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
				return fmt.Errorf("make mount %s read-only: %w", m.Destination, err)
			}
		}
	}
	if cfg.RootReadOnly {
		if err := unix.Mount("", rootfs, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("make rootfs read-only: %w", err)
		}
	}
	if err := unix.Chroot(rootfs); err != nil {
		return fmt.Errorf("chroot %s: %w", rootfs, err)
	}
	return unix.Chdir("/")
}

// mountpoint returns the host path of dest inside rootfs, with symlinks resolved inside rootfs,
// creating a directory (or, for a file source, an empty file) there when it is missing.
func mountpoint(rootfs, source, dest string) (string, error) {
	st, err := os.Stat(source)
	if err != nil {
		return "", err
	}
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return "", err
	}
	defer root.Close()
	// Follow the links in dest inside the rootfs first: os.Root refuses absolute link targets,
	// which images have on common mount paths (/var/run -> /run).
	host, err := oci.ResolveIn(rootfs, dest)
	if err != nil {
		return "", err
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(host, rootfs), "/")
	if rel == "" {
		return "", fmt.Errorf("a bind mount cannot replace the container's root")
	}
	if st.IsDir() {
		if err := root.MkdirAll(rel, 0o755); err != nil {
			return "", err
		}
	} else {
		if err := root.MkdirAll(path.Dir(rel), 0o755); err != nil {
			return "", err
		}
		f, err := root.OpenFile(rel, os.O_CREATE|os.O_RDONLY, 0o644)
		if err != nil {
			return "", err
		}
		f.Close()
	}
	return host, nil
}
