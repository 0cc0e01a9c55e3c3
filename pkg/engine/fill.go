package engine

import (
	"bufio"
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
	"runtime/debug"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/nodedir"
	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// Filling the compilation cache in the background (the interpret cold-start policy,
// oci.ColdStartInterpret): a module's first run on a node runs in wazero's interpreter, and the
// shim starts a filler, the shim binary with FillArg, which compiles the module into the cache
// for the runs that follow. The filler runs outside the container's cgroup and mount namespace,
// at a lower CPU priority, so it is neither charged to the container nor killed with it: a short
// command's container is usually gone before the compile ends. It is bounded as a container is:
// the shim puts it in a cgroup of its own with a memory and a CPU limit (FillLimits,
// pkg/shim/fillcgroup.go) before it reads anything, its oom_score_adj is fillOOMScoreAdj, it
// takes one of the node's fill slots before it reads the module, and it compiles no module
// bigger than FillLimits.MaxModuleBytes. See RATIONALE.md and docs/coldstart.md.
//
// The protocol: the filler starts with its request on stdin, preceded by one go byte that the
// shim writes once the filler is in its cgroup (FillOptions.Started). On the go byte it executes
// itself again (fillStageEnv), so that the Go runtime it compiles with starts in the cgroup and
// sizes GOMAXPROCS, hence wazero's compilation workers, to the cgroup's CPU limit (the runtime
// reads the cgroup once, at start-up). Then it reads the request, takes a slot, reads the module
// from fd 3, compiles it and writes one FillResult line to stdout.

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
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var slot *os.File
	_ = nodedir.Poll(ctx, 200*time.Millisecond, func() (bool, error) {
		for i := range fillSlots {
			f, err := os.OpenFile(filepath.Join(ld, fmt.Sprintf("fill-%d.lock", i)), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
			if err != nil {
				return false, err
			}
			if ok, _ := nodedir.TryLock(f, syscall.LOCK_EX); ok {
				slot = f
				return true, nil
			}
			f.Close()
		}
		return false, nil
	})
	return slot
}

// FillResult is what a filler reports.
type FillResult struct {
	Error string `json:"error,omitempty"`
	// TooBig is true when the module is bigger than FillLimits.MaxModuleBytes: nothing was
	// compiled (Error says so).
	TooBig bool `json:"tooBig,omitempty"`
	// CacheHit is true when the module was in the cache already (another filler or runner
	// compiled it first), so nothing was compiled.
	CacheHit bool `json:"cacheHit"`
	// CompileMillis is how long compiling (or loading) took.
	CompileMillis int64 `json:"compileMillis"`
	// SlotMillis is how long the filler waited for a fill slot.
	SlotMillis int64 `json:"slotMillis,omitempty"`
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

// FillOptions are how FillCache starts a filler.
type FillOptions struct {
	// Start starts the command (the shim passes the reaper's); nil means cmd.Start.
	Start func(*exec.Cmd) error
	// Started is called with the filler's pid once it runs and before it has read anything (its
	// request, its module) or compiled: the shim puts it in its cgroup here. When Started fails,
	// the filler is killed and FillCache returns the error with the Filler, whose Cmd is still to
	// be waited for. nil: nothing to do.
	Started func(pid int) error
	// Limits bound the filler: FillCache refuses a module bigger than Limits.MaxModuleBytes (by
	// its size: ErrFillTooBig), and the filler checks again as it reads it; the filler's
	// Go runtime keeps its heap under Limits.MemoryBytes (its cgroup's limit) less a margin.
	// With Limits.MemoryAuto, FillCache resolves the limit for the module (FillLimits.ForModule).
	Limits FillLimits
}

// ErrFillTooBig is what FillCache returns (wrapped) for a module bigger than
// FillLimits.MaxModuleBytes: it starts no filler.
var ErrFillTooBig = errors.New("module too big to compile in the background")

// fillRequest is what the shim sends a filler on stdin, after the go byte.
type fillRequest struct {
	Config Config     `json:"config"`
	Limits FillLimits `json:"limits"`
}

// fillGo is the go byte: the filler may start (it is in its cgroup).
const fillGo = 'G'

// fillStageEnv is set in the environment of a filler that has executed itself again on the go
// byte: it reads its request at once.
const fillStageEnv = "WAZERO_FILL_STAGE=running"

// FillCache starts self as a filler that compiles module (the module's file, which the caller
// closes when FillCache returns) into cfg.CacheDir under the compile policy: under the module's
// lock, with its bookkeeping and eviction, as a runner's cold start would. cfg is the runner's
// Config (its module, cache and per-request settings decide the cache entry). Result waits for
// its report.
func FillCache(self string, cfg *Config, module *os.File, opts FillOptions) (*Filler, error) {
	size := int64(-1)
	if fi, err := module.Stat(); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
	}
	if max := opts.Limits.MaxModuleBytes; max > 0 && size > max {
		return nil, fmt.Errorf("%w: %s is %d bytes, the cap is %d (%s)", ErrFillTooBig, cfg.Module.GuestPath, size, max, FillMaxModuleBytesEnv)
	}
	opts.Limits = opts.Limits.ForModule(size)
	fc := *cfg
	fc.ColdStart, fc.Listen, fc.Mounts, fc.NetNS, fc.Sandbox = oci.ColdStartCompile, nil, nil, "", false
	data, err := json.Marshal(&fillRequest{Config: fc, Limits: opts.Limits})
	if err != nil {
		return nil, err
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer inR.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		inW.Close()
		return nil, err
	}
	cmd := exec.Command(self, FillArg, cfg.ID)
	cmd.Stdin = inR
	cmd.Stdout = outW
	cmd.ExtraFiles = []*os.File{module} // fillModuleFD
	// No GOMAXPROCS (containerd sets 2 for shims): the compile uses the CPUs of the filler's
	// cgroup (wazero's compilation workers), at nice 10, one filler per CPU on the node (fillSlot).
	cmd.Env = []string{}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := opts.Start
	if start == nil {
		start = (*exec.Cmd).Start
	}
	err = start(cmd)
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("start cache filler: %w", err)
	}
	f := &Filler{Cmd: cmd, out: outR}
	if opts.Started != nil {
		if err := opts.Started(cmd.Process.Pid); err != nil {
			_ = cmd.Process.Kill()
			inW.Close() // no go byte: the filler exits on EOF if the kill came too late
			return f, err
		}
	}
	// The request fits in the pipe's buffer unless the config is huge; the write must not block
	// the shim on a filler that died, so it runs apart.
	go func() {
		defer inW.Close()
		_, _ = inW.Write(append(append([]byte{fillGo}, data...), '\n'))
	}()
	return f, nil
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
		if r.TooBig {
			return r, fmt.Errorf("%w: %s", ErrFillTooBig, r.Error)
		}
		return r, errors.New(r.Error)
	}
	return r, nil
}

// FillMain is the filler process: it waits for the go byte on stdin, reads its request from
// stdin and the module from fd 3, compiles the module into the cache and writes one FillResult
// line to stdout. It returns the exit code: 0, or 1 when it could not compile.
func FillMain() int {
	// The shim may be gone (its container deleted) before the compile ends: a write to its
	// closed pipe must not kill the filler before the cache entry is complete.
	signal.Ignore(syscall.SIGPIPE)
	res := fillMain()
	_ = json.NewEncoder(os.Stdout).Encode(&res)
	if res.Error != "" {
		return 1
	}
	return 0
}

func fillMain() FillResult {
	// First of all, before the filler waits for anything: it is the first process to kill.
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(fillOOMScoreAdj)), 0); err != nil {
		return FillResult{Error: "cache filler: set oom_score_adj: " + err.Error()}
	}
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, 0, fillNice)
	if !slices.Contains(os.Environ(), fillStageEnv) {
		var b [1]byte
		if n, _ := os.Stdin.Read(b[:]); n != 1 || b[0] != fillGo {
			return FillResult{Error: "cache filler: no go from the shim"}
		}
		// In the cgroup now: start again there (see the protocol above). Should the exec fail,
		// the filler goes on with the Go runtime it has.
		_ = syscall.Exec("/proc/self/exe", os.Args, append(os.Environ(), fillStageEnv))
	}
	var req fillRequest
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		return FillResult{Error: "cache filler: decode request: " + err.Error()}
	}
	if m := req.Limits.MemoryBytes; m > 0 {
		debug.SetMemoryLimit(m - m/8) // the GC works harder before the cgroup's OOM killer acts
	}
	module := os.NewFile(fillModuleFD, "module")
	defer module.Close()
	size := int64(-1)
	if fi, err := module.Stat(); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
	}
	return fill(context.Background(), &req, module, size, func() io.Closer {
		if slot := fillSlot(req.Config.CacheDir, time.Now().Add(fillSlotWait)); slot != nil {
			return slot
		}
		return nil
	})
}

// fill compiles the module that module reads (size bytes, -1 when unknown) as req says: it
// refuses a module bigger than req.Limits.MaxModuleBytes by its size, reads it (refusing it again
// should it turn out bigger than its size said) and closes it, then takes a fill slot (takeSlot,
// nil when none came free in time), and only then compiles.
//
// The module is read before the slot, not after: its descriptor is a file in the container's
// rootfs, and while a filler holds it open the shim cannot unmount that rootfs when the container
// is deleted (EBUSY: a leaked mount), which for a short command happens long before a slot comes
// free in a burst. What a queued filler holds is the module's bytes (at most MaxModuleBytes, in
// its own memory-limited cgroup); the compile's working memory, many times more, still waits for
// the slot. See RATIONALE.md.
func fill(ctx context.Context, req *fillRequest, module io.Reader, size int64, takeSlot func() io.Closer) FillResult {
	cfg, max := &req.Config, req.Limits.MaxModuleBytes
	tooBig := func(n string) FillResult {
		return FillResult{TooBig: true, Error: fmt.Sprintf("cache filler: module %s is %s bytes, more than the %d of %s: not compiled in the background", cfg.Module.GuestPath, n, max, FillMaxModuleBytesEnv)}
	}
	if max > 0 && size > max {
		return tooBig(strconv.FormatInt(size, 10))
	}
	r := module
	if max > 0 {
		r = io.LimitReader(module, max+1)
	}
	code, err := io.ReadAll(r)
	if c, ok := module.(io.Closer); ok {
		_ = c.Close() // the container's rootfs is free to be unmounted from here on
	}
	if err != nil {
		return FillResult{Error: fmt.Sprintf("cache filler: read module %s: %v", cfg.Module.GuestPath, err)}
	}
	if max > 0 && int64(len(code)) > max {
		return tooBig("over " + strconv.FormatInt(max, 10))
	}
	began := time.Now()
	if slot := takeSlot(); slot != nil {
		defer slot.Close()
	}
	slotMillis := time.Since(began).Milliseconds()
	began = time.Now()
	p, err := prepareCode(ctx, cfg, code)
	if err != nil {
		return FillResult{Error: "cache filler: " + err.Error(), SlotMillis: slotMillis}
	}
	defer p.Runtime.Close(ctx)
	return FillResult{
		CacheHit: p.CacheHit, CompileMillis: time.Since(began).Milliseconds(), SlotMillis: slotMillis,
		CacheProblem: p.CacheProblem, Evicted: p.Evicted, EvictedBytes: p.EvictedBytes,
	}
}
