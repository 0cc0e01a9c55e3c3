package shim

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// fillModule returns what a filler reads its module from: a copy of the module at path in an
// anonymous memory file (memfd), not the file in the container's rootfs. A filler that has not yet
// read its module when containerd deletes the container (a short command on a loaded node) would
// otherwise hold the rootfs busy, and its unmount would fail with EBUSY: a leaked mount. A module
// bigger than max (when max > 0) is not copied: the rootfs file itself is returned, for the
// caller's size check to refuse. The caller closes the returned file.
func fillModule(path string, max int64) (*os.File, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := src.Stat()
	if err != nil || !fi.Mode().IsRegular() || max > 0 && fi.Size() > max {
		return src, err
	}
	defer src.Close()
	fd, err := unix.MemfdCreate("wazero-fill-module", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd for the module's copy: %w", err)
	}
	dst := os.NewFile(uintptr(fd), "memfd:"+path)
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return nil, fmt.Errorf("copy %s for the background compile: %w", path, err)
	}
	if _, err := dst.Seek(0, io.SeekStart); err != nil {
		dst.Close()
		return nil, err
	}
	return dst, nil
}
