package shimentry

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// stateFile is the shim's record in the bundle of what a `delete` must clean up after a shim that
// died (pkg/shim's stateFile: the runner's pid, the cgroup, the exit status, or a native
// container). The server removes it once a task is cleaned up.
const stateFile = "wazero-shim.json"

// delete answers a `delete` when there is nothing to clean up, and reports handled = false, for
// the server binary to take over, when there may be: the shim's state file is in the bundle, or
// the bundle's rootfs (or anything below it) is still mounted. containerd runs `delete` after every
// task, also when the server already cleaned up, which is the case the entry answers: with exit
// status 137 (SIGKILL) and the time now, as the full `delete` does when no status was recorded
// (containerd has the real exit status from the server's event by then).
func (c call) delete(stdout io.Writer) (handled bool, err error) {
	bundle := c.bundle
	if bundle == "" {
		// As pkg/shim's Manager.Stop: containerd runs `delete` in the bundle (named by the ID).
		cwd, err := os.Getwd()
		if err != nil {
			return false, err
		}
		bundle = filepath.Join(filepath.Dir(cwd), c.id)
	}
	if _, err := os.Lstat(filepath.Join(bundle, stateFile)); !errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	abs, err := filepath.Abs(filepath.Join(bundle, "rootfs"))
	if err != nil {
		return false, nil
	}
	if mounted, err := mountedAtOrBelow(abs); err != nil || mounted {
		return false, nil
	}
	_, err = stdout.Write(encodeDeleteResponse(0, 128+uint32(syscall.SIGKILL), time.Now()))
	return true, err
}

// mountedAtOrBelow reports whether a mount point is dir or below it, from /proc/self/mountinfo.
func mountedAtOrBelow(dir string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	return mountinfoHas(f, dir)
}

// mountinfoHas reports whether the mountinfo text in r lists a mount point at dir or below it.
func mountinfoHas(r io.Reader, dir string) (bool, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		// Field 5 is the mount point, with space, tab, newline and backslash octal-escaped.
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			return true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("read mountinfo: %w", err)
	}
	return false, nil
}

// unescapeMountinfo undoes the kernel's \NNN (octal) escapes of mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
