package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
)

// Stdio are the files a runner gets as its fds 0, 1 and 2; nil means /dev/null.
type Stdio struct {
	Stdin, Stdout, Stderr *os.File
}

// Runner is the shim's handle on a runner process.
type Runner struct {
	Cmd    *exec.Cmd
	ctl    *os.File // write end of the control pipe
	status *os.File // read end of the status pipe

	mu           sync.Mutex // orders Start and SetMemoryPages on ctl
	started      bool
	pendingPages uint32 // a cap set before Start, sent after it
}

// ErrRunnerDied is Configure's error when the runner exited before it reported: it was killed,
// most often by the OOM killer while compiling the module under a small memory limit.
var ErrRunnerDied = errors.New("the runner exited before it was ready")

// SpawnOptions tune how Spawn starts a runner.
type SpawnOptions struct {
	// Start starts the command; the shim passes the reaper's Start so the exit is not lost.
	// nil means cmd.Start.
	Start func(*exec.Cmd) error
	// Cloneflags are namespaces to create for the runner besides its mount namespace (which it
	// always gets), such as CLONE_NEWIPC|CLONE_NEWUTS for a pod sandbox.
	Cloneflags uintptr
	// MaxProcs is the runner's GOMAXPROCS; 0 means 1. A runner runs one guest goroutine, and each
	// P costs memory for its whole life (RATIONALE.md, "Why runners and shim servers run with
	// GOMAXPROCS=1") and threads (which count against the node's pid limit); Prepare raises it to the
	// container's CPU quota for a cold compile. containerd's GOMAXPROCS=2 for shims does not pass
	// through.
	MaxProcs int
	// Exe, when not nil, is the runner executable to run instead of self (RunnerBinary, opened
	// and checked by the shim). The runner is executed from this open file, so the checked binary
	// is the one that runs even if the file on disk is replaced in between. The caller closes it.
	Exe *os.File
	// ExecID, when set, makes the runner an exec process's: its argv ends in "exec=ExecID", so
	// ps and the tests tell it from its container's runner (whose argv ends in the container ID).
	ExecID string
}

// Spawn starts the binary self (or opts.Exe) as a runner in a new mount namespace, with stdio as
// its fds 0-2 and an environment of its own (GOMAXPROCS only, see SpawnOptions.MaxProcs). The
// runner waits for Configure before it does anything.
func Spawn(self, id string, stdio Stdio, opts SpawnOptions) (*Runner, error) {
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	stR, stW, err := os.Pipe()
	if err != nil {
		ctlR.Close()
		ctlW.Close()
		return nil, err
	}
	cmd := exec.Command(self, RunnerArg, id)
	if opts.ExecID != "" {
		cmd.Args = append(cmd.Args, "exec="+opts.ExecID)
	}
	if opts.Exe != nil {
		// The child executes its fd runnerExeFD, which is opts.Exe; argv[0] names the file.
		cmd.Path = "/proc/self/fd/" + strconv.Itoa(runnerExeFD)
		cmd.Args[0] = opts.Exe.Name()
	}
	// A nil *os.File must not reach exec.Cmd as a non-nil interface: exec would hand the runner a
	// closed descriptor instead of /dev/null, and the Go runtime aborts when it cannot open it.
	if stdio.Stdin != nil {
		cmd.Stdin = stdio.Stdin
	}
	if stdio.Stdout != nil {
		cmd.Stdout = stdio.Stdout
	}
	if stdio.Stderr != nil {
		cmd.Stderr = stdio.Stderr
	}
	cmd.ExtraFiles = []*os.File{ctlR, stW} // controlFD, statusFD
	if opts.Exe != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, opts.Exe) // fd 5: runnerExeFD
	}
	procs := opts.MaxProcs
	if procs <= 0 {
		procs = 1
	}
	cmd.Env = []string{"GOMAXPROCS=" + strconv.Itoa(procs)}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | opts.Cloneflags,
		Setpgid:    true, // a signal to the shim's process group must not reach guests
	}
	start := opts.Start
	if start == nil {
		start = (*exec.Cmd).Start
	}
	err = start(cmd)
	ctlR.Close()
	stW.Close()
	if err != nil {
		ctlW.Close()
		stR.Close()
		return nil, fmt.Errorf("start runner: %w", err)
	}
	return &Runner{Cmd: cmd, ctl: ctlW, status: stR}, nil
}

// Pid is the runner's process ID.
func (r *Runner) Pid() int { return r.Cmd.Process.Pid }

// Configure sends cfg and waits until the runner is ready to run guest code. The error is the
// runner's own message (module invalid, mount missing...) when it could not get ready, or says
// that it died on the way (killed by the OOM killer while compiling, for example).
func (r *Runner) Configure(cfg *Config) (Ready, error) {
	data, err := json.Marshal(cfg)
	if err != nil {
		return Ready{}, err
	}
	if _, err := r.ctl.Write(append(data, '\n')); err != nil {
		// EPIPE: the runner is gone before it read its configuration (killed, say).
		return Ready{}, fmt.Errorf("%w (it did not take its configuration: %v)", ErrRunnerDied, err)
	}
	line, err := bufio.NewReader(r.status).ReadBytes('\n')
	r.status.Close()
	if err != nil {
		return Ready{}, ErrRunnerDied
	}
	var s status
	if err := json.Unmarshal(line, &s); err != nil {
		return Ready{}, fmt.Errorf("runner status: %w", err)
	}
	if s.Error != "" {
		return Ready{}, errors.New(s.Error)
	}
	return s.Ready, nil
}

// ConfigureContext is Configure bounded by ctx: when ctx is done before the runner is ready (a
// slow compile that containerd or the kubelet stopped waiting for), the runner is killed and the
// error wraps ctx.Err(). No container is then left half made for nobody.
func (r *Runner) ConfigureContext(ctx context.Context, cfg *Config) (Ready, error) {
	stop := context.AfterFunc(ctx, func() { _ = r.Cmd.Process.Kill() })
	ready, err := r.Configure(cfg)
	if !stop() {
		return Ready{}, fmt.Errorf("the runner was stopped before it was ready: %w", ctx.Err())
	}
	return ready, err
}

// Start lets the runner run guest code. The control pipe stays open for SetMemoryPages, until
// Close.
func (r *Runner) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.ctl.Write([]byte{startByte}); err != nil {
		return fmt.Errorf("start runner: %w", err)
	}
	r.started = true
	if r.pendingPages != 0 {
		return r.sendPages(r.pendingPages)
	}
	return nil
}

// SetMemoryPages moves the cap of the guest's linear memory to pages (64 KiB each): its next
// memory.grow past it fails. Memory the guest already holds stays its own (wasm memory never
// shrinks). Before Start the cap is kept and sent right after the start byte (a runner reads
// only its start byte until then). The runner of a pod sandbox or of the per-request mode
// ignores it.
func (r *Runner) SetMemoryPages(pages uint32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started {
		r.pendingPages = pages
		return nil
	}
	return r.sendPages(pages)
}

func (r *Runner) sendPages(pages uint32) error {
	if _, err := fmt.Fprintf(r.ctl, "%s%d\n", memCapPrefix, pages); err != nil {
		return fmt.Errorf("send the runner its new memory cap: %w", err)
	}
	return nil
}

// Close releases the shim's ends of the runner's pipes. A runner that has not started exits when
// its control pipe closes.
func (r *Runner) Close() {
	r.ctl.Close()
	r.status.Close()
}
