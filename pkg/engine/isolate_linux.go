package engine

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// isolate gives the runner the container's view of the filesystem. The runner was started in a
// private mount namespace (CLONE_NEWNS, see Spawn); here it stops mount events from propagating
// back to the host, binds each mount into the rootfs at its destination (with its ro, rro, nodev,
// nosuid and noexec options), and pivots into the rootfs with the old root detached: the host's
// mount tree is then not reachable from the runner at all, symlinks and ".." included.
// Everything mounted here disappears with the namespace when the runner exits: nothing can leak.
//
// Bind-mount targets are resolved through file descriptors inside the rootfs (openat2 with
// RESOLVE_IN_ROOT), and mounted by descriptor, never by path string: a symlink swapped into a
// shared volume between the check and the mount (CVE-2021-30465) cannot redirect a mount outside
// the container.
func isolate(cfg *Config) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	rootfs := cfg.Rootfs
	// A bind of the rootfs onto itself makes it a mount point: it can be remounted read-only,
	// and pivot_root needs one.
	if err := unix.Mount(rootfs, rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind rootfs %s: %w", rootfs, err)
	}
	if err := bindMounts(rootfs, cfg.Mounts); err != nil {
		return err
	}
	if cfg.RootReadOnly {
		if err := unix.Mount("", rootfs, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("make rootfs read-only: %w", err)
		}
	}
	return pivotRoot(rootfs)
}

// pivotRoot makes rootfs the runner's "/" and detaches the old root (runc's trick: pivot_root
// with the old root stacked on the new one, then a lazy unmount of it), so no path leads back to
// the host's filesystem.
func pivotRoot(rootfs string) error {
	if err := unix.Chdir(rootfs); err != nil {
		return fmt.Errorf("enter rootfs %s: %w", rootfs, err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root into %s: %w", rootfs, err)
	}
	// The old root is now mounted on top of "/": keep its unmount private to this namespace.
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make the old root private: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the old root: %w", err)
	}
	return unix.Chdir("/")
}

// bindMounts mounts each of mounts at its destination inside rootfs (see isolate).
func bindMounts(rootfs string, mounts []oci.Mount) error {
	if len(mounts) == 0 {
		return nil
	}
	root, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open rootfs %s: %w", rootfs, err)
	}
	defer unix.Close(root)
	for _, m := range mounts {
		if err := bindMount(root, m); err != nil {
			return fmt.Errorf("mount %s at %s: %w", m.Source, m.Destination, err)
		}
	}
	return nil
}

// bindMount mounts m at its destination under the rootfs open at root. With the new mount API
// (Linux 5.12) the source is cloned (open_tree), its flags set while it is still detached
// (mount_setattr) and moved onto the target's descriptor (move_mount): no step takes a path
// inside the container. Older kernels bind through /proc/self/fd and remount by descriptor.
func bindMount(root int, m oci.Mount) error {
	st, err := os.Stat(m.Source)
	if err != nil {
		return err
	}
	target, err := mountTarget(root, m.Destination, st.IsDir())
	if err != nil {
		return err
	}
	defer unix.Close(target)
	treeFlags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
	if m.Recursive {
		treeFlags |= unix.AT_RECURSIVE
	}
	tree, err := unix.OpenTree(unix.AT_FDCWD, m.Source, treeFlags)
	if errors.Is(err, unix.ENOSYS) {
		return bindMountLegacy(root, target, m)
	}
	if err != nil {
		return fmt.Errorf("open_tree: %w", err)
	}
	defer unix.Close(tree)
	if attr := mountAttr(m); attr != 0 {
		setFlags := uint(unix.AT_EMPTY_PATH)
		if m.RecursiveReadOnly {
			setFlags |= unix.AT_RECURSIVE
		}
		if err := unix.MountSetattr(tree, "", setFlags, &unix.MountAttr{Attr_set: attr}); err != nil {
			return fmt.Errorf("set mount options: %w", err)
		}
	}
	if err := unix.MoveMount(tree, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount: %w", err)
	}
	return nil
}

// mountAttr is the MOUNT_ATTR_* set of m's options.
func mountAttr(m oci.Mount) uint64 {
	var a uint64
	if m.ReadOnly {
		a |= unix.MOUNT_ATTR_RDONLY
	}
	if m.NoDev {
		a |= unix.MOUNT_ATTR_NODEV
	}
	if m.NoSuid {
		a |= unix.MOUNT_ATTR_NOSUID
	}
	if m.NoExec {
		a |= unix.MOUNT_ATTR_NOEXEC
	}
	return a
}

// bindMountLegacy binds m onto the target descriptor through its /proc/self/fd link, then remounts
// the new mount, opened again inside the rootfs, with m's options (kernels without open_tree).
// "rro" needs mount_setattr and is refused here.
func bindMountLegacy(root, target int, m oci.Mount) error {
	if m.RecursiveReadOnly {
		return fmt.Errorf("the rro option needs Linux 5.12 (mount_setattr)")
	}
	flags := uintptr(unix.MS_BIND)
	if m.Recursive {
		flags |= unix.MS_REC
	}
	if err := unix.Mount(m.Source, fdPath(target), "", flags, ""); err != nil {
		return err
	}
	var extra uintptr
	if m.ReadOnly {
		extra |= unix.MS_RDONLY
	}
	if m.NoDev {
		extra |= unix.MS_NODEV
	}
	if m.NoSuid {
		extra |= unix.MS_NOSUID
	}
	if m.NoExec {
		extra |= unix.MS_NOEXEC
	}
	if extra == 0 {
		return nil
	}
	// The descriptor from before the mount names the directory under it: open the mount itself.
	top, err := openInRoot(root, m.Destination, unix.O_PATH)
	if err != nil {
		return err
	}
	defer unix.Close(top)
	return unix.Mount("", fdPath(top), "", unix.MS_BIND|unix.MS_REMOUNT|extra, "")
}

func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// openInRoot opens dest (a container path) inside the directory open at root: symlinks,
// absolute ones included, and ".." resolve inside it, as they do for the container's processes.
func openInRoot(root int, dest string, flags int) (int, error) {
	rel := strings.TrimPrefix(path.Clean("/"+dest), "/")
	if rel == "" {
		rel = "."
	}
	return unix.Openat2(root, rel, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
}

// mountTarget opens (O_PATH) the mount point for dest inside the rootfs open at root, creating
// it when it is missing: a directory for a directory source, an empty file for a file source,
// with the missing parents as directories (0755), each created relative to its parent's
// descriptor. A dangling symlink on the way (/var/run -> /run without /run) is followed inside the
// rootfs, and what it points to is created.
func mountTarget(root int, dest string, dir bool) (int, error) {
	rel := strings.TrimPrefix(path.Clean("/"+dest), "/")
	if rel == "" {
		return -1, fmt.Errorf("a bind mount cannot replace the container's root")
	}
	fd, err := createIn(root, rel, dir, 0)
	if err != nil {
		return -1, fmt.Errorf("create mount point %s: %w", dest, err)
	}
	if !dir {
		// A file cannot be bound onto a directory (move_mount says only EINVAL): say so.
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			unix.Close(fd)
			return -1, fmt.Errorf("the source is a file and %s is a directory in the container: bind a file onto a file or a missing path", dest)
		}
	}
	return notRoot(root, fd, dest)
}

// maxLinks bounds the symlinks createIn follows, as the kernel's 40 (ELOOP).
const maxLinks = 40

// createIn opens rel inside root (O_PATH), creating it (a directory when dir, else an empty file)
// and its missing parents when it does not exist.
func createIn(root int, rel string, dir bool, links int) (int, error) {
	flags := unix.O_PATH
	if dir {
		flags |= unix.O_DIRECTORY
	}
	fd, err := openInRoot(root, rel, flags)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	if rel == "." {
		return -1, err
	}
	parent, err := createIn(root, path.Dir(rel), true, links)
	if err != nil {
		return -1, err
	}
	defer unix.Close(parent)
	base := path.Base(rel)
	if dir {
		err = unix.Mkdirat(parent, base, 0o755)
	} else {
		var f int
		f, err = unix.Openat(parent, base, unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0o644)
		if err == nil {
			unix.Close(f)
		}
	}
	if errors.Is(err, unix.EEXIST) {
		// Either another creator won (fine) or base is a dangling symlink: create its target.
		if target, lerr := readlinkat(parent, base); lerr == nil {
			if links >= maxLinks {
				return -1, unix.ELOOP
			}
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(rel), target)
			}
			next := strings.TrimPrefix(path.Clean("/"+target), "/")
			if next == "" {
				next = "."
			}
			return createIn(root, next, dir, links+1)
		}
	} else if err != nil {
		return -1, err
	}
	return openInRoot(root, rel, flags)
}

// readlinkat reads the symlink name in the directory open at dir.
func readlinkat(dir int, name string) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dir, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// notRoot returns fd unless it is the rootfs itself (dest is a link to "/"), which a bind mount
// must not replace; then it closes fd and returns an error.
func notRoot(root, fd int, dest string) (int, error) {
	var a, b unix.Stat_t
	if err := unix.Fstat(root, &a); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.Fstat(fd, &b); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if a.Dev == b.Dev && a.Ino == b.Ino {
		unix.Close(fd)
		return -1, fmt.Errorf("%s leads to the container's root, which a bind mount cannot replace", dest)
	}
	return fd, nil
}
