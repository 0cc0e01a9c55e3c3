package engine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// Filling the compilation cache in the background (the interpret cold-start policy,
// oci.ColdStartInterpret): a module's first run on a node runs in wazero's interpreter, and the
// shim starts a filler, the shim binary with FillArg, which compiles the module into the cache
// for the runs that follow. The filler runs in the shim's cgroup and mount namespace, not the
// container's, at a lower CPU priority, so it is neither charged to the container nor killed with
// it: a short command's container is usually gone before the compile ends. See RATIONALE.md.

// FillArg is the first argument that makes the shim binary a filler (FillMain).
const FillArg = "fill-cache"

// fillNice is the filler's nice value: the compile yields the CPU to containers.
const fillNice = 10

// fillSlots is how many fillers compile at once on the node: one per CPU. A burst of first runs
// of distinct modules would otherwise start as many compiles (each 50-100 MB and all the CPU it
// gets) in the shims' cgroup, where no container limit bounds them. The others wait for a slot,
// at most fillSlotWait, and then compile anyway.
var fillSlots = runtime.NumCPU()

const fillSlotWait = 10 * time.Minute

// fillSlot takes one of the node's fillSlots slots: an exclusive flock of locks/fill-N.lock in the
// cache directory, released when the returned file is closed (or the filler exits). It polls
// until deadline; nil means no slot was free by then (or the lock files cannot be opened).
func fillSlot(cacheDir string, deadline time.Time) *os.File {
	ld := filepath.Join(cacheDir, locksDir)
	if err := os.MkdirAll(ld, 0o700); err != nil {
		return nil
	}
	delay := 5 * time.Millisecond
	for {
		for i := range fillSlots {
			f, err := os.OpenFile(filepath.Join(ld, fmt.Sprintf("fill-%d.lock", i)), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
			if err != nil {
				return nil
			}
			if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
				return f
			}
			f.Close()
		}
		if time.Now().After(deadline) {
			return nil
		}
		time.Sleep(delay)
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// FillResult is what a filler reports.
type FillResult struct {
	Error string `json:"error,omitempty"`
	// CacheHit is true when the module was in the cache already (another filler or runner
	// compiled it first), so nothing was compiled.
	CacheHit bool `json:"cacheHit"`
	// CompileMillis is how long compiling (or loading) took.
	CompileMillis int64 `json:"compileMillis"`
	// CacheProblem, Evicted and EvictedBytes are Prepared's.
	CacheProblem string `json:"cacheProblem,omitempty"`
	Evicted      int    `json:"evicted,omitempty"`
	EvictedBytes int64  `json:"evictedBytes,omitempty"`
}

// Filler is the shim's handle on a filler process.
type Filler struct {
	Cmd *exec.Cmd
	out *os.File
}

// FillCache starts self as a filler that compiles module (the module's file, which the caller
// closes when FillCache returns) into cfg.CacheDir under the compile policy: under the module's
// lock, with its bookkeeping and eviction, as a runner's cold start would. cfg is the runner's
// Config (its module, cache and per-request settings decide the cache entry); start starts the
// command (the shim passes the reaper's), nil for cmd.Start. Result waits for its report.
func FillCache(self string, cfg *Config, module *os.File, start func(*exec.Cmd) error) (*Filler, error) {
	fc := *cfg
	fc.ColdStart, fc.Listen, fc.Mounts, fc.NetNS, fc.Sandbox = oci.ColdStartCompile, nil, nil, "", false
	data, err := json.Marshal(&fc)
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, FillArg, cfg.ID)
	cmd.Stdin = bytes.NewReader(append(data, '\n'))
	cmd.Stdout = outW
	cmd.ExtraFiles = []*os.File{module} // fd 3
	// No GOMAXPROCS (containerd sets 2 for shims): the compile uses every CPU (wazero's
	// compilation workers), at nice 10, one filler per CPU on the node (fillSlot).
	cmd.Env = []string{}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if start == nil {
		start = (*exec.Cmd).Start
	}
	err = start(cmd)
	outW.Close()
	if err != nil {
		outR.Close()
		return nil, fmt.Errorf("start cache filler: %w", err)
	}
	return &Filler{Cmd: cmd, out: outR}, nil
}

// Result waits for the filler's report. It does not wait for the process to exit.
func (f *Filler) Result() (FillResult, error) {
	defer f.out.Close()
	line, err := bufio.NewReader(f.out).ReadBytes('\n')
	if err != nil {
		return FillResult{}, errors.New("the cache filler exited without a report")
	}
	var r FillResult
	if err := json.Unmarshal(line, &r); err != nil {
		return FillResult{}, fmt.Errorf("cache filler report: %w", err)
	}
	if r.Error != "" {
		return r, errors.New(r.Error)
	}
	return r, nil
}

// FillMain is the filler process: it reads its Config from stdin and the module from fd 3,
// compiles the module into the cache and writes one FillResult line to stdout. It returns the
// exit code: 0, or 1 when it could not compile.
func FillMain() int {
	// The shim may be gone (its container deleted) before the compile ends: a write to its
	// closed pipe must not kill the filler before the cache entry is complete.
	signal.Ignore(syscall.SIGPIPE)
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, 0, fillNice)
	res := fill()
	_ = json.NewEncoder(os.Stdout).Encode(&res)
	if res.Error != "" {
		return 1
	}
	return 0
}

func fill() FillResult {
	var cfg Config
	if err := json.NewDecoder(os.Stdin).Decode(&cfg); err != nil {
		return FillResult{Error: "cache filler: decode config: " + err.Error()}
	}
	module := os.NewFile(3, "module")
	code, err := io.ReadAll(module)
	module.Close()
	if err != nil {
		return FillResult{Error: fmt.Sprintf("cache filler: read module %s: %v", cfg.Module.GuestPath, err)}
	}
	began := time.Now()
	if slot := fillSlot(cfg.CacheDir, began.Add(fillSlotWait)); slot != nil {
		defer slot.Close()
	}
	ctx := context.Background()
	p, err := prepareCode(ctx, &cfg, code)
	if err != nil {
		return FillResult{Error: "cache filler: " + err.Error()}
	}
	defer p.Runtime.Close(ctx)
	return FillResult{
		CacheHit: p.CacheHit, CompileMillis: time.Since(began).Milliseconds(),
		CacheProblem: p.CacheProblem, Evicted: p.Evicted, EvictedBytes: p.EvictedBytes,
	}
}
