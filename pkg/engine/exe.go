package engine

import (
	"os"
	"os/signal"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// RunnerBinary is the file name of the runner executable (cmd/containerd-shim-wazero-v1-runner),
// installed beside the shim. It links only this package and wazero: it starts faster and uses
// less memory than the shim binary, which the shim runs as a runner (from /proc/self/exe) when
// there is no runner binary built together with it (same BuildStamp). See RATIONALE.md.
const RunnerBinary = "containerd-shim-wazero-v1-runner"

// BuildStamp identifies the sources a binary was built from. The Makefile and the installer image
// set it in the shim and in the runner, with -ldflags "-X <BuildStampVar>=<stamp>", to a hash of
// the Go version and of every Go source, go.mod and go.sum (scripts/buildstamp.sh). A plain
// `go build` leaves it empty: such a shim always runs runners from /proc/self/exe.
var BuildStamp string

// BuildStampVar is the name of BuildStamp for the linker's -X flag. The runner binary prints its
// stamp with -build-stamp.
const BuildStampVar = "github.com/wazero-shim/containerd-shim-wazero-v1/pkg/engine.BuildStamp"

// runnerComm is the runner's process name (/proc/PID/comm, shown by ps and in the kernel's OOM
// messages) however it was executed; otherwise it would be "exe" or "5".
const runnerComm = "wazero-runner"

func init() {
	if len(os.Args) < 2 || os.Args[1] != RunnerArg {
		return
	}
	// The main thread's name is the process's (a write to /proc/self/comm names it).
	_ = os.WriteFile("/proc/self/comm", []byte(runnerComm), 0)
	closeOwnExe(runnerExeFD)
	quietQuit()
}

// quietQuit makes SIGQUIT kill the runner as it kills a native process, instead of Go's answer
// (every goroutine's stack on stderr, which is the container's log, then exit 2): the shim then
// reports 128+SIGQUIT, as runc's would. See RATIONALE.md.
func quietQuit() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGQUIT)
	go func() {
		<-c
		dieOf(syscall.SIGQUIT)
	}()
}

// dieOf ends the process by sig's default action (without a core file: the runner's core is
// wazero's and the whole guest memory, not the container's program), so that its parent sees it
// killed by sig; should that not happen, it exits 128+sig.
func dieOf(sig syscall.Signal) {
	_ = unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{})
	// The kernel's struct sigaction on amd64 and arm64: handler, flags, restorer, mask. All zero
	// is SIG_DFL. The Go runtime has no way to give a signal back to its default action.
	var sa [4]uint64
	_, _, _ = unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&sa)), 0, 8, 0, 0)
	_ = unix.Tgkill(unix.Getpid(), unix.Gettid(), sig)
	time.Sleep(time.Second)
	os.Exit(128 + int(sig))
}

// closeOwnExe closes fd when it is open on this process's own executable (Spawn passed it to exec
// the runner from); any other descriptor there is left alone.
func closeOwnExe(fd int) {
	var fst, est unix.Stat_t
	if unix.Fstat(fd, &fst) != nil || unix.Stat("/proc/self/exe", &est) != nil {
		return
	}
	if fst.Dev == est.Dev && fst.Ino == est.Ino {
		_ = syscall.Close(fd)
	}
}
