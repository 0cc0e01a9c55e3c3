package engine

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/wasi"
)

// RunnerMain is the runner process: it reads its Config from the shim, prepares the module and the
// guest's filesystem view, reports ready, waits for the start byte and runs the module (or, in
// the per-request mode, serves HTTP with a fresh instance per request: ServeWAGI). It returns
// the process exit code: the guest's WASI exit code, ExitTrap on a trap, ExitRunnerError when the
// runner itself fails.
func RunnerMain() int {
	ctl := os.NewFile(controlFD, "control")
	st := os.NewFile(statusFD, "status")
	in := bufio.NewReader(ctl)
	line, err := in.ReadBytes('\n')
	if err != nil {
		fmt.Fprintf(os.Stderr, "wazero runner: read config: %v\n", err)
		return ExitRunnerError
	}
	var cfg Config
	if err := json.Unmarshal(line, &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "wazero runner: decode config: %v\n", err)
		return ExitRunnerError
	}
	ctx := context.Background()
	start, faults := time.Now(), minorFaults()
	var p *Prepared
	// The runner's life has three phases: privileged setup (network namespace, oom_score_adj,
	// listeners, compile or cache load, mounts and pivot_root), the drop to the container's
	// security context (drop_linux.go), and only then the guest. Nothing privileged happens after
	// the drop, and the shim hears "ready" only once it is done.
	if cfg.NetNS != "" {
		err = joinNetNS(cfg.NetNS)
	}
	if err == nil {
		err = setOOMScoreAdj(cfg.Security)
	}
	if err == nil && !cfg.Sandbox {
		// Listen first, on the main thread (in the container's network namespace), before the
		// pivot_root: a port in use fails Create at once, without waiting for a compile.
		var ls []net.Listener
		ls, err = OpenListeners(&cfg)
		if err == nil {
			p, err = prepareRunner(ctx, &cfg)
		}
		if err == nil {
			p.Listeners = ls
			if !cfg.NoIsolation {
				err = isolate(&cfg)
			}
		}
	}
	if err == nil {
		err = drop(cfg.Security)
	}
	s := status{}
	if err != nil {
		s.Error = err.Error()
	} else {
		s.Ready = readyOf(p, time.Since(start).Milliseconds(), minorFaults()-faults)
	}
	if err := json.NewEncoder(st).Encode(&s); err != nil || s.Error != "" {
		return ExitRunnerError
	}
	st.Close()
	releaseGarbage() // while the shim passes the start byte on (memory.go)
	// Block until the shim says start; EOF means the container was deleted before it started.
	if _, err := in.ReadByte(); err != nil {
		return ExitRunnerError
	}
	if p != nil && p.memCap != nil {
		go p.memCap.watch(in) // cap updates from the shim (memcap.go) until it closes the pipe
	} else {
		ctl.Close()
	}
	if cfg.Sandbox {
		return holdNamespaces()
	}
	if cfg.WAGI != nil {
		return ServeWAGI(ctx, &cfg, p, os.Stderr)
	}
	return Run(ctx, &cfg, p, os.Stdin, os.Stdout, os.Stderr)
}

// minorFaults is the number of minor page faults this process has taken.
func minorFaults() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Minflt
}

// prepareRunner is Prepare as a runner does it: with huge pages for the heap that a large
// module's decoding fills, advised for the Prepare only, unless the container's memory limit
// leaves no room for them (hugepages.go).
func prepareRunner(ctx context.Context, cfg *Config) (*Prepared, error) {
	size := moduleSize(cfg.Module.HostPath)
	if !hugePagesFit(cfg.MemoryLimit, size) {
		return Prepare(ctx, cfg)
	}
	lo, hi, undo := adviseHugeHeap(size)
	defer undo()
	p, err := Prepare(ctx, cfg)
	if p != nil {
		p.HugePageBytes = int64(hi - lo)
	}
	return p, err
}

// Run instantiates the prepared module, which runs its _start, and returns the exit code:
// the guest's WASI exit code, or ExitTrap (with the trap written to stderr) when it traps.
// The guest gets real clocks, real sleep and crypto random, never wazero's deterministic defaults.
//
// The guest's TCP listeners (cfg.Listen) are opened by wazero here, while instantiating, after
// p.Listeners (the same addresses, held since Create) are closed; if one fails now, Run writes
// which and why to stderr and returns ExitRunnerError.
func Run(ctx context.Context, cfg *Config, p *Prepared, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(cfg.Listen) > 0 {
		// A server: with one P (Spawn's default) the guest's thread gives way to the runtime's
		// own work (collections, the scheduler, a socket wait's return) on that P; with the
		// container's CPUs (Go's default: its quota) that runs beside it. Measured on the Go
		// httpserver under wrk: about 25% less CPU per request, 1.5x the requests
		// (docs/PERFORMANCE.md). Commands keep one P (memory per idle runner).
		runtime.SetDefaultGOMAXPROCS()
	}
	fc, preopens := fsConfig(cfg)
	ctx, env := withListeners(ctx, cfg, preopens, cfg.Env)
	ctx = wasi.NewContext(ctx, wasiOptions(cfg))
	mc := guestModuleConfig(cfg, fc, stderr).WithStdin(stdin).WithStdout(stdout)
	if p.sockWait != nil {
		defer p.sockWait.close()
		mc = mc.WithNanosleep(p.sockWait.nanosleep)
	}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue // not KEY=VALUE: a guest could not see it as a variable either
		}
		mc = mc.WithEnv(k, v)
	}
	closeListeners(p.Listeners)
	p.Listeners = nil
	if p.memCap != nil {
		ctx = experimental.WithMemoryAllocator(ctx, p.memCap.allocator())
	}
	mod, err := p.Runtime.InstantiateModule(ctx, p.Compiled, mc)
	if mod != nil {
		defer mod.Close(ctx)
	}
	var (
		exit   *sys.ExitError
		listen *net.OpError
	)
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return int(exit.ExitCode())
	case len(cfg.Listen) > 0 && errors.As(err, &listen) && listen.Op == "listen":
		// wazero failed to listen before any guest code ran (the port was taken in the
		// moment between closing the runner's own listener and wazero's).
		fmt.Fprintf(stderr, "wazero runner: module %s: cannot listen on %s (%s) at start: %v\n", cfg.Module.GuestPath, listen.Addr, oci.ListenEnv, err)
		return ExitRunnerError
	default:
		fmt.Fprintf(stderr, "wasm trap in module %s: %v\n", cfg.Module.GuestPath, err)
		return ExitTrap
	}
}

// guestModuleConfig is the part of a guest's ModuleConfig that every instance of cfg's module
// shares, in both modes (Run, and each request's instance in the per-request mode): an empty
// module name, cfg's args, stderr, the host's clocks and sleep, crypto/rand, and the filesystem
// fc (fsConfig). Stdin, stdout and the environment are each mode's own.
func guestModuleConfig(cfg *Config, fc wazero.FSConfig, stderr io.Writer) wazero.ModuleConfig {
	return wazero.NewModuleConfig().
		WithName("").
		WithArgs(cfg.Args...).
		WithStderr(stderr).
		WithSysWalltime().WithSysNanotime().WithSysNanosleep().
		WithRandSource(rand.Reader).
		WithFSConfig(fc)
}

// fsConfig preopens "/" (unless cfg.NoRootPreopen) and each directory bind mount at its destination, and returns how many
// distinct preopens the guest gets (its fds 3 on; mounts on one path replace each other, as in
// wazero). With isolation the
// runner has already pivoted into the rootfs, so the host paths are the guest paths, and read-only
// mounts are read-only in the kernel: a write fails with EROFS ("Read-only file system"), as it
// would natively. Without isolation, wazero's read-only mounts enforce it.
func fsConfig(cfg *Config) (wazero.FSConfig, int) {
	fc := wazero.NewFSConfig()
	paths := map[string]bool{}
	mount := func(host, guest string, readOnly bool) {
		paths[strings.Trim(path.Clean("/"+guest), "/")] = true
		if readOnly && cfg.NoIsolation {
			fc = fc.WithReadOnlyDirMount(host, guest)
		} else {
			fc = fc.WithDirMount(host, guest)
		}
	}
	switch {
	case cfg.NoRootPreopen:
	case cfg.NoIsolation:
		mount(cfg.Rootfs, "/", cfg.RootReadOnly)
	default:
		mount("/", "/", cfg.RootReadOnly)
	}
	for _, m := range cfg.Mounts {
		host := m.Destination
		if cfg.NoIsolation {
			host = m.Source
		}
		if st, err := os.Stat(host); err != nil || !st.IsDir() {
			continue // a file bind mount is reachable through "/", and cannot be a preopen
		}
		mount(host, m.Destination, m.ReadOnly)
	}
	return fc, len(paths)
}

// wasiOptions tells the WASI layer where the preopens of fsConfig are on the host and which
// only wazero makes read-only: both differ from the guest's view only without isolation.
func wasiOptions(cfg *Config) wasi.Options {
	if !cfg.NoIsolation {
		return wasi.Options{}
	}
	o := wasi.Options{HostDirs: map[string]string{"/": cfg.Rootfs}, ReadOnly: map[string]bool{"/": cfg.RootReadOnly}}
	for _, m := range cfg.Mounts {
		if st, err := os.Stat(m.Source); err != nil || !st.IsDir() {
			continue
		}
		guest := path.Clean("/" + m.Destination)
		o.HostDirs[guest], o.ReadOnly[guest] = m.Source, m.ReadOnly
	}
	return o
}
