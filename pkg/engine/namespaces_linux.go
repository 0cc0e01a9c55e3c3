package engine

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// A runner keeps its main goroutine on the process's main thread, because /proc/PID/ns/net is the
// network namespace of that thread: joining the pod's network there makes the runner's pid name
// the pod's network for the containers that share it, and sockets the runner opens live there.
func init() {
	if len(os.Args) > 1 && os.Args[1] == RunnerArg {
		runtime.LockOSThread()
	}
}

// joinNetNS moves the calling (main) thread into the network namespace at path.
func joinNetNS(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("join network namespace %s: %w", path, err)
	}
	return nil
}

// holdNamespaces is the body of a pod sandbox: it does nothing until SIGTERM or SIGINT, then
// exits 0, as the Kubernetes pause container does.
func holdNamespaces() int {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
	return 0
}
