package engine

// The shim <-> runner protocol, in one place.
//
// A runner is the runner binary (RunnerBinary, or the shim's own executable) run as
//
//	runner ID                a container's runner
//	runner ID exec=EXECID    an exec process's runner
//
// Client side (the shim, launch.go): Spawn, Runner.Configure / ConfigureContext, Runner.Start,
// Runner.SetMemoryPages, Runner.Close. Server side (the runner, runner.go): RunnerMain.
//
// Its file descriptors:
//
//	0, 1, 2       the container's stdio (Stdio; /dev/null when nil)
//	controlFD 3   shim -> runner: the Config, the start byte, then memory cap updates
//	statusFD  4   runner -> shim: one status line
//	runnerExeFD 5 the runner's own executable when started from an open file (exe.go); closed at once
//
// The message sequence:
//
//  1. shim -> control: the Config as one JSON line.
//  2. The runner sets up with privileges (network namespace, oom_score_adj, listeners, Prepare:
//     compile or cache load, mounts and pivot_root), then drops them to the container's
//     security context (drop_linux.go).
//  3. runner -> status: one status line (JSON): the Report, or Error when step 2 failed (the
//     runner then exits ExitRunnerError). The runner closes status.
//  4. shim -> control: startByte. EOF instead means the container was deleted before it
//     started: the runner exits ExitRunnerError without running guest code.
//  5. shim -> control, any time after the start byte: memCapPrefix + pages + "\n" moves the
//     guest's linear-memory cap (memcap.go), until the shim closes control.
//  6. The runner's exit status is the guest's (ExitTrap for a trap).
//
// A filler (fill.go) is the shim binary run as "fill-cache ID" (FillArg) with one go byte and a
// fillRequest (JSON) on stdin and the module on fillModuleFD; it writes one FillResult line to
// stdout.

// RunnerArg is the first argument that makes the shim binary act as a runner.
const RunnerArg = "runner"

// File descriptors of a runner besides stdio, set up by Spawn.
const (
	// controlFD carries the Config (one JSON line), then the start byte, then memory cap lines.
	controlFD = 3
	// statusFD carries the runner's one status line back to the shim.
	statusFD = 4
	// runnerExeFD is the runner's own executable when Spawn starts it from an open file
	// (SpawnOptions.Exe). The runner closes it at start.
	runnerExeFD = 5
)

// fillModuleFD is a filler's descriptor of the module it compiles.
const fillModuleFD = 3

// startByte on the control pipe lets a ready runner run guest code.
const startByte = 'S'

// memCapPrefix starts a memory cap line on the control pipe: "memory-pages N\n".
const memCapPrefix = "memory-pages "

// Exit codes of a runner that are not the guest's own.
const (
	// ExitTrap is the exit code when the guest traps (unreachable, out of bounds access, stack
	// overflow...): 128+SIGABRT, as a native program that aborts.
	ExitTrap = 134
	// ExitRunnerError is the exit code when the runner fails before guest code runs.
	ExitRunnerError = 125
)

// Ready is what a runner reports when it is ready to run guest code: the Report of its status
// line (step 3), as Configure returns it.
type Ready struct {
	// CacheHit is true when the compiled module came from the compilation cache.
	CacheHit bool `json:"cacheHit"`
	// CompileMillis is the time spent compiling or loading the module from the cache.
	CompileMillis int64 `json:"compileMillis"`
	// CacheProblem says what was wrong with the compilation cache, if anything (see Prepared).
	CacheProblem string `json:"cacheProblem,omitempty"`
	// Digest is the module's sha256 digest, "sha256:<hex>" (empty for a pod sandbox).
	Digest string `json:"digest,omitempty"`
	// Interpreted is true when the module will run in wazero's interpreter (Prepared.Interpreted):
	// the shim should then have the cache filled (FillCache).
	Interpreted bool `json:"interpreted,omitempty"`
	// Evicted is how many least recently used cache entries the runner removed after compiling,
	// to keep the cache under Config.CacheMaxBytes, and EvictedBytes their size.
	Evicted      int   `json:"evicted,omitempty"`
	EvictedBytes int64 `json:"evictedBytes,omitempty"`
	// PageFaults is how many minor page faults the runner took from reading its configuration
	// to its report: mostly its Prepare's, each page it touched for the first time (on virtual
	// machines whose faults trap to the hypervisor, the larger part of a large module's Prepare).
	PageFaults int64 `json:"pageFaults,omitempty"`
	// HugePageBytes is Prepared.HugePageBytes: how much heap the Prepare had in huge pages.
	HugePageBytes int64 `json:"hugePageBytes,omitempty"`
}

// status is the runner's one status line: its Ready report, or Error when it could not get
// ready.
type status struct {
	Error string `json:"error,omitempty"`
	Ready
}

// readyOf is the report of a runner that prepared p (nil for a pod sandbox) in millis, taking
// faults minor page faults.
func readyOf(p *Prepared, millis, faults int64) Ready {
	if p == nil {
		return Ready{PageFaults: faults}
	}
	return Ready{CacheHit: p.CacheHit, CompileMillis: millis, CacheProblem: p.CacheProblem,
		Digest: p.Digest, Interpreted: p.Interpreted, Evicted: p.Evicted, EvictedBytes: p.EvictedBytes,
		PageFaults: faults, HugePageBytes: p.HugePageBytes}
}
