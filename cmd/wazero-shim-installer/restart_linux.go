package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// restartCommand is what -restart systemctl runs (and -restart auto prints), with the last word
// replaced by the unit.
var restartCommand = []string{"nsenter", "-t", "1", "-m", "-u", "-i", "-n", "-p", "--", "systemctl", "restart", "containerd"}

// systemctlRestart restarts containerd on the host through PID 1's namespaces (the installer
// pod has hostPID). The installer image is FROM scratch, so when the host is mounted at hostRoot
// the host's own nsenter is run, chrooted into hostRoot; nsenter -m then switches to the host's
// mount namespace (and its root) before running systemctl.
func systemctlRestart(hostRoot, unit string, out io.Writer) error {
	args := append(restartCommand[1:len(restartCommand)-1:len(restartCommand)-1], unit)
	cmd := exec.Command(restartCommand[0], args...)
	if filepath.Clean(hostRoot) != "/" {
		found := ""
		for _, p := range []string{"/usr/bin/nsenter", "/bin/nsenter", "/usr/sbin/nsenter", "/sbin/nsenter"} {
			if fi, err := os.Stat(filepath.Join(hostRoot, p)); err == nil && fi.Mode().IsRegular() {
				found = p
				break
			}
		}
		if found == "" {
			return fmt.Errorf("no nsenter under %s/usr/bin or %s/bin (util-linux on the host)", hostRoot, hostRoot)
		}
		cmd = exec.Command(found, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: hostRoot}
		cmd.Dir = "/"
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("restarting containerd: %s %s: %w", cmd.Path, strings.Join(args, " "), err)
	}
	return nil
}

// chrootAttr runs a command with root as its root directory.
func chrootAttr(root string) *syscall.SysProcAttr { return &syscall.SysProcAttr{Chroot: root} }

// copyOwner gives path the owner of fi (the file it replaces); the installer runs as root.
func copyOwner(path string, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || os.Geteuid() != 0 {
		return nil
	}
	return os.Chown(path, int(st.Uid), int(st.Gid))
}
