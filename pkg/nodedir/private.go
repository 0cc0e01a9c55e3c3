package nodedir

import (
	"fmt"
	"os"
	"syscall"
)

// PrivateDir creates dir (mode 0700) if it is missing, and refuses one that anybody but its
// owner, this process's user, could write. The compilation cache (compiled machine code is
// executed from there, so it must come only from the node's own compiler) and the modules copied
// out of images must both live in such a directory.
func PrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	switch {
	case !st.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	case st.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%s is writable by group or others (mode %v): make it 0700", dir, st.Mode().Perm())
	case ok && int(sys.Uid) != os.Geteuid():
		return fmt.Errorf("%s is owned by uid %d, not by uid %d", dir, sys.Uid, os.Geteuid())
	}
	return nil
}
