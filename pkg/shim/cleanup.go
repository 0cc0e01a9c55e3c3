package shim

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/log"
)

// finishCleanup is the tail of both instances' Cleanup (a runner's, runtime.go; a runc
// container's, native.go), once their own parts are released: it closes the container's stdio
// (streams; nil when none was opened), unmounts the rootfs the shim mounted (rootfs, "" when
// nothing was mounted) and removes the shim's state from the bundle (state.go). errs are the
// errors of the caller's own steps; with the unmount's, all are logged and the first is returned,
// so that one failed step does not keep the others from running.
func finishCleanup(ctx context.Context, errs []error, streams *stdio, rootfs, bundle string) error {
	if streams != nil {
		streams.Close()
	}
	if rootfs != "" {
		if err := unmountRootfs(rootfs); err != nil {
			errs = append(errs, fmt.Errorf("unmount rootfs: %w", err))
		}
	}
	_ = os.Remove(filepath.Join(bundle, stateFile))
	if len(errs) > 0 {
		log.G(ctx).WithField("errors", errs).Warn("cleanup incomplete")
		return errs[0]
	}
	return nil
}
