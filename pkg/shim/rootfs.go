package shim

import (
	"fmt"
	"os"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/core/mount"
)

// mountRootfs mounts the rootfs mounts containerd passes in CreateTaskRequest at target (the
// bundle's rootfs directory). With no mounts, the bundle's rootfs is used as it is.
func mountRootfs(mounts []*types.Mount, target string) error {
	if len(mounts) == 0 {
		return nil
	}
	if err := os.MkdirAll(target, 0o711); err != nil {
		return err
	}
	if err := mount.All(mount.FromProto(mounts), target); err != nil {
		return fmt.Errorf("mount rootfs at %s: %w", target, err)
	}
	return nil
}

// unmountRootfs unmounts everything at and below target. A target that is not mounted is fine.
func unmountRootfs(target string) error {
	return mount.UnmountRecursive(target, 0)
}
