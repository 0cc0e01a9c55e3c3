package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/nodedir"
	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/wasi"
)

// Prepared is a module compiled and checked, ready to instantiate in its runtime.
type Prepared struct {
	Runtime  wazero.Runtime
	Compiled wazero.CompiledModule
	// Digest is the module's sha256 digest ("sha256:<hex>" of its bytes), which names it in the
	// compilation cache's bookkeeping and in the shim's log.
	Digest string
	// CacheHit is true when the compilation cache already held this module.
	CacheHit bool
	// CacheProblem, when not empty, says what was wrong with the compilation cache and what was
	// done about it (a corrupt entry removed, or the cache bypassed). The module still runs.
	CacheProblem string
	// Evicted is how many cache entries (least recently used) this compile removed to keep the
	// cache under Config.CacheMaxBytes, and EvictedBytes their size.
	Evicted      int
	EvictedBytes int64
	// HugePageBytes is how much of the Go heap a runner's Prepare had backed by huge pages
	// (prepareRunner, hugepages.go): 0 for a small module, or where the kernel refused.
	HugePageBytes int64
	// Interpreted is true when the module runs in wazero's interpreter: its first run on this
	// node under the interpret cold-start policy (Config.ColdStart). The cache was not touched;
	// FillCache compiles the module into it for the next runs.
	Interpreted bool
	// Listeners are the sockets of Config.Listen that the runner opened at Create
	// (OpenListeners). Run closes them right before wazero listens on the same addresses for the
	// guest; nil when none were opened (wazero then listens without that reservation).
	Listeners []net.Listener
	// sockWait makes the guest wait for its sockets when it has listeners (see socketWait).
	sockWait *socketWait
	// memCap is the live cap of the guest's linear memory (memcap.go); nil in the per-request
	// mode, whose instances wazero caps itself.
	memCap *memoryCap
}

// cacheReadError is how wazero's compilation cache prefixes errors about an entry it cannot use.
const cacheReadError = "compilationcache:"

// Prepare compiles the module of cfg in a new runtime with WASI preview 1 and checks that it can
// run as a command: it must validate, export a _start function, and import only functions that
// WASI preview 1 provides. Each error names the module and says what is wrong.
//
// The compilation cache can never stop a valid module from running: a corrupt or truncated entry
// (wazero checks a checksum) makes Prepare remove the cache's entries and compile again, and any
// other failure with the cache (a full disk, say) is retried without it. Prepare reports either
// in CacheProblem. An invalid module never clears the cache.
//
// Runners preparing the same module at once compile it once: a module the cache has not seen
// (no marker seen/<sha256>) is compiled under an exclusive flock of locks/<sha256>.lock, so the
// others wait and then load the entry it wrote. A wait is bounded by lockWait, after which the
// runner compiles the module itself. A hit touches its entries (their mtime is their last use);
// a miss then keeps the cache under cfg.CacheMaxBytes by evicting the least recently used
// entries. See cachebook.go.
func Prepare(ctx context.Context, cfg *Config) (*Prepared, error) {
	code, err := os.ReadFile(cfg.Module.HostPath)
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", cfg.Module.GuestPath, err)
	}
	return prepareCode(ctx, cfg, code)
}

// prepareCode is Prepare of the module's bytes. Its steps, in order: the memory check that needs
// no compile, the module's name in the cache's bookkeeping, the claim on the cache (claimCache:
// marker, lock, interpret or not), the compile or cache load (compileClaimed), the bookkeeping of
// what the compile left in the cache (bookResult), and the checks of the compiled module
// (checkPrepared). Problems with the cache never fail it; they are joined into CacheProblem.
func prepareCode(ctx context.Context, cfg *Config, code []byte) (*Prepared, error) {
	name := cfg.Module.GuestPath
	if min, ok := memoryMinPages(code); ok && cfg.WAGI == nil && min > guestPages(cfg) {
		return nil, memoryMinError(name, guestPages(cfg), min)
	}
	sum := sha256.Sum256(code)
	digest := hex.EncodeToString(sum[:])
	c := claimCache(cfg, bookName(cfg, digest))
	defer c.unlock()
	var sw *socketWait
	if len(cfg.Listen) > 0 {
		// Opens /proc/self/fd, which must happen before the runner pivots into the rootfs.
		sw = newSocketWait()
		ctx = context.WithValue(ctx, sockWaitKey{}, sw)
	}
	p, usedCache, err := compileClaimed(ctx, cfg, code, c)
	if err != nil {
		sw.close()
		c.unlock()
		return nil, compileError(name, cfg, err)
	}
	fresh := c.bookResult(p, usedCache)
	c.unlock()
	p.Digest = "sha256:" + digest
	if usedCache && !p.CacheHit {
		p.Evicted, p.EvictedBytes = evict(c.dir, cfg.CacheMaxBytes, fresh)
	}
	if err := checkPrepared(ctx, cfg, p, int64(len(code))); err != nil {
		return nil, err
	}
	if p.CacheProblem != "" {
		c.problems = append(c.problems, p.CacheProblem)
	}
	p.CacheProblem = strings.Join(c.problems, "; ")
	return p, nil
}

// bookName names a module's entries in the cache's bookkeeping: its sha256 digest (hex). The
// per-request mode compiles it with termination checks (wazero keys that compile apart), so it
// is booked apart too.
func bookName(cfg *Config, digest string) string {
	if cfg.WAGI != nil {
		return digest + "-terminating"
	}
	return digest
}

// cacheClaim is what one Prepare holds of the compilation cache while it compiles or loads a
// module: the cache directory ("" when there is none or it is unusable), whether the module's
// marker was there (and the entries it names), the module's lock when this runner compiles it,
// whether it runs interpreted instead, the entries before the compile, and the problems met.
type cacheClaim struct {
	dir         string
	book        string
	marked      bool
	markerFiles []string
	lock        *os.File
	interpret   bool
	before      map[string]cacheEntry
	problems    []string
}

// claimCache opens cfg's cache for the module booked as book. A module the cache has not seen
// (no marker) is locked first, so that runners preparing it at once compile it once; under the
// interpret cold-start policy such a module is not locked, and runs interpreted (no cache).
// A cache directory that cannot be made private is not used (a problem, not an error).
func claimCache(cfg *Config, book string) *cacheClaim {
	c := &cacheClaim{dir: cfg.CacheDir, book: book}
	if c.dir != "" {
		if err := nodedir.PrivateDir(c.dir); err != nil {
			c.dir = ""
			c.problems = append(c.problems, "compiled without the compilation cache: "+err.Error())
		}
	}
	if c.dir != "" {
		// interpret: the module's first run on this node under the interpret cold-start policy.
		// The interpreter neither reads nor fills the cache, and waits for nobody; the shim has
		// the cache filled in the background (FillCache).
		c.marked, _ = readMarker(c.dir, book)
		c.interpret = !c.marked && cfg.ColdStart == oci.ColdStartInterpret
		if !c.marked && !c.interpret {
			began := time.Now()
			var err error
			if c.lock, err = lockModule(c.dir, book, lockWait); err != nil {
				// Compile anyway: the lock only saves work, it never stops a container.
				c.problems = append(c.problems, fmt.Sprintf("compiled without waiting for other runners (%v, after %v)", err, time.Since(began).Round(time.Millisecond)))
			}
		}
		if !c.interpret {
			// Read (again, once locked): another runner may have compiled it while this one waited.
			c.marked, c.markerFiles = readMarker(c.dir, book)
		}
	}
	if !c.interpret {
		c.before = listEntries(c.dir)
	}
	return c
}

// unlock releases the module's lock, if held (closing the file releases the flock). It may be
// called more than once.
func (c *cacheClaim) unlock() {
	if c.lock != nil {
		c.lock.Close()
		c.lock = nil
	}
}

// compileClaimed compiles code, or loads it from the cache, as the claim c says: in wazero's
// interpreter for a module that runs interpreted, else through the cache (compileCached), on every
// CPU the container may use when the module was not marked (most likely a cold compile).
func compileClaimed(ctx context.Context, cfg *Config, code []byte, c *cacheClaim) (p *Prepared, usedCache bool, err error) {
	if c.interpret {
		if p, err = compile(ctx, cfg, code, "", true); err == nil {
			p.Interpreted = true
		}
		return p, false, err
	}
	restoreProcs := func() {}
	if !c.marked {
		restoreProcs = compileProcs()
	}
	defer restoreProcs()
	return compileCached(ctx, cfg, code, c.dir)
}

// bookResult records in the cache's bookkeeping what the compile of p left there, and sets
// p.CacheHit: a hit touches the entries the marker names (their mtime is their last use); a
// compile marks the entries that appeared while it ran as the module's. It returns those new
// entries, which the eviction that follows a compile keeps.
func (c *cacheClaim) bookResult(p *Prepared, usedCache bool) (fresh []string) {
	if !usedCache {
		return nil
	}
	fresh = newEntries(c.before, listEntries(c.dir))
	// A purge of unusable entries (CacheProblem) means this runner compiled.
	p.CacheHit = p.CacheProblem == "" &&
		(len(fresh) == 0 || (c.marked && len(c.markerFiles) > 0 && allIn(c.markerFiles, c.before) && noneIn(c.markerFiles, fresh)))
	switch {
	case p.CacheHit:
		touch(c.dir, c.markerFiles)
	case len(fresh) > 0:
		// The entries that appeared while this module compiled are its own (other modules
		// compiling at the same time may add theirs: the marker then names those too, which
		// only makes eviction keep or drop them together with this one).
		if err := writeMarker(c.dir, c.book, fresh); err != nil {
			c.problems = append(c.problems, "cannot record the compiled module in the cache: "+err.Error())
		}
	}
	return fresh
}

// compileError is the error of a module that did not compile: one that needs more linear memory
// than the container (or, in the per-request mode, each instance) may have says which limit to
// raise; any other is invalid.
func compileError(name string, cfg *Config, err error) error {
	if strings.Contains(err.Error(), "over limit of") && cfg.WAGI != nil {
		return fmt.Errorf("module %s needs more linear memory than each of its %d concurrent instances gets (%d KiB: the container's memory limit, less the runner's reserve, divided by %s): raise the memory limit or lower %s: %w",
			name, cfg.WAGI.Concurrency, uint64(cfg.WAGI.InstancePages(cfg.MemoryPages))*64, oci.WAGIConcurrencyEnv, oci.WAGIConcurrencyEnv, err)
	}
	if strings.Contains(err.Error(), "over limit of") {
		// wazero: "section memory: min N pages (X Mi) over limit of M pages".
		return fmt.Errorf("module %s needs more linear memory than the container's memory limit leaves for it (%d KiB): raise the memory limit: %w", name, uint64(cfg.MemoryPages)*64, err)
	}
	return fmt.Errorf("module %s is invalid: %w", name, err)
}

// checkPrepared checks that the compiled module p can run as a WASI command and, outside the
// per-request mode, that its memory's minimum fits the container's cap, which it sets up as p's
// live memory cap (memcap.go), with huge pages for its minimum where the container's memory limit
// leaves room (guestHugePagesFit, for a module of moduleBytes). On an error it closes p's runtime.
func checkPrepared(ctx context.Context, cfg *Config, p *Prepared, moduleBytes int64) error {
	name := cfg.Module.GuestPath
	if err := checkCommand(name, p.Compiled, p.Runtime.Module(wasi_snapshot_preview1.ModuleName).ExportedFunctionDefinitions()); err != nil {
		p.Runtime.Close(ctx)
		return err
	}
	if cfg.WAGI != nil {
		return nil
	}
	p.memCap = &memoryCap{}
	p.memCap.pages.Store(guestPages(cfg))
	mems := p.Compiled.ImportedMemories()
	for _, d := range p.Compiled.ExportedMemories() {
		mems = append(mems, d)
	}
	if err := checkMemoryMin(name, guestPages(cfg), mems); err != nil {
		p.Runtime.Close(ctx)
		return err
	}
	var minBytes int64
	for _, d := range mems {
		minBytes = max(minBytes, int64(d.Min())*65536)
	}
	p.memCap.hugePages = guestHugePagesFit(cfg.MemoryLimit, moduleBytes, minBytes)
	return nil
}

// compileCached compiles code with the cache in cacheDir (none if empty). An unusable entry makes
// it purge the cache and compile again; any other failure with the cache, compile without it.
// usedCache tells whether the result went through the cache.
func compileCached(ctx context.Context, cfg *Config, code []byte, cacheDir string) (p *Prepared, usedCache bool, err error) {
	p, err = compile(ctx, cfg, code, cacheDir, false)
	if err == nil || cacheDir == "" {
		return p, cacheDir != "", err
	}
	if readErr := err; strings.Contains(readErr.Error(), cacheReadError) {
		purgeEntries(cacheDir)
		if p, err = compile(ctx, cfg, code, cacheDir, false); err == nil {
			p.CacheProblem = "removed unusable compilation cache entries (" + firstLine(readErr.Error()) + ")"
			return p, true, nil
		}
	}
	cacheErr := err
	if p, err = compile(ctx, cfg, code, "", false); err == nil {
		p.CacheProblem = "compiled without the compilation cache, which failed: " + firstLine(cacheErr.Error())
	}
	return p, false, err
}

func allIn(files []string, set map[string]cacheEntry) bool {
	for _, f := range files {
		if _, ok := set[f]; !ok {
			return false
		}
	}
	return true
}

func noneIn(files, list []string) bool {
	for _, f := range files {
		for _, g := range list {
			if f == g {
				return false
			}
		}
	}
	return true
}

// compile compiles code in a new runtime with WASI instantiated, using the cache in cacheDir
// unless it is empty; with interpreter, for wazero's interpreter (no machine code, no cache).
func compile(ctx context.Context, cfg *Config, code []byte, cacheDir string, interpreter bool) (*Prepared, error) {
	// With a cap below the wasm32 maximum (a container memory limit), the whole capped linear
	// memory is reserved up front: memory.grow then never copies the old memory into a new one,
	// which would need twice the guest's memory at once and get the runner OOM-killed long before
	// the guest reaches its cap. Untouched pages of the reservation cost no memory.
	rc := wazero.NewRuntimeConfig()
	if interpreter {
		rc = wazero.NewRuntimeConfigInterpreter()
	}
	if cfg.WAGI == nil {
		// wazero's limit is the wasm32 maximum: the cap, which Update may move, is the memory
		// allocator's (memcap.go), which reserves the memory up front itself.
		rc = rc.WithMemoryLimitPages(oci.MaxPages)
	} else {
		// Per-request instances share the guest memory and grow from their minimum (most
		// handlers stay small, and reserving every instance's cap would zero it per request).
		// Their code checks for the end of the request's deadline in loops and calls, so a
		// handler that never returns can be stopped (wazero keys this compile apart).
		rc = rc.WithMemoryLimitPages(cfg.WAGI.InstancePages(cfg.MemoryPages)).WithCloseOnContextDone(true)
	}
	if cacheDir != "" {
		cache, err := wazero.NewCompilationCacheWithDir(cacheDir)
		if err != nil {
			return nil, fmt.Errorf("open compilation cache %s: %w", cacheDir, err)
		}
		rc = rc.WithCompilationCache(cache)
	}
	r := wazero.NewRuntimeWithConfig(ctx, rc)
	wasiCtx := ctx
	sw, _ := ctx.Value(sockWaitKey{}).(*socketWait)
	if sw != nil {
		// Only on the WASI host module: the guest's compiled code is unchanged.
		wasiCtx = experimental.WithFunctionListenerFactory(ctx, sw)
	}
	if _, err := wasi.Instantiate(wasiCtx, r); err != nil {
		r.Close(ctx)
		return nil, fmt.Errorf("instantiate WASI: %w", err)
	}
	// wazero compiles functions on GOMAXPROCS workers: every CPU the container may use for a cold
	// compile (compileProcs).
	compiled, err := r.CompileModule(experimental.WithCompilationWorkers(ctx, runtime.GOMAXPROCS(0)), code)
	if err != nil {
		r.Close(ctx)
		return nil, err
	}
	return &Prepared{Runtime: r, Compiled: compiled, sockWait: sw}, nil
}

// compileProcs sets GOMAXPROCS to the Go runtime's default, which is the container's CPU quota
// (Go 1.25+), and returns what sets it back. Runners run with GOMAXPROCS=1 (Spawn): the guest is
// one goroutine, and every P costs memory for the runner's life; a cold compile is the one thing
// that uses more.
func compileProcs() (restore func()) {
	prev := runtime.GOMAXPROCS(0)
	runtime.SetDefaultGOMAXPROCS()
	return func() { runtime.GOMAXPROCS(prev) }
}

// purgeEntries removes the compiled modules stored under dir and the markers that name them,
// keeping the directories (a runner writing an entry at the same time still finds its directory)
// and the lock files (runners may hold them). wazero names no entry in its errors, so all go; each
// module is compiled again once.
func purgeEntries(dir string) {
	for rel := range listEntries(dir) {
		_ = os.Remove(filepath.Join(dir, rel))
	}
	if ents, err := os.ReadDir(filepath.Join(dir, seenDir)); err == nil {
		for _, e := range ents {
			if e.Type().IsRegular() {
				_ = os.Remove(filepath.Join(dir, seenDir, e.Name()))
			}
		}
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// checkCommand reports, in one message, why a compiled module cannot run as a WASI command.
func checkCommand(name string, m wazero.CompiledModule, wasi map[string]api.FunctionDefinition) error {
	var problems []string
	if def, ok := m.ExportedFunctions()["_start"]; !ok {
		problems = append(problems, "it exports no _start function (is it a library or a reactor rather than a command?)")
	} else if len(def.ParamTypes()) != 0 || len(def.ResultTypes()) != 0 {
		problems = append(problems, "its _start function has parameters or results")
	}
	var unknown []string
	for _, f := range m.ImportedFunctions() {
		mod, fn, _ := f.Import()
		if mod != wasi_snapshot_preview1.ModuleName {
			unknown = append(unknown, mod+"."+fn)
			continue
		}
		if _, ok := wasi[fn]; !ok {
			unknown = append(unknown, mod+"."+fn)
		}
	}
	for _, mem := range m.ImportedMemories() {
		mod, n, _ := mem.Import()
		unknown = append(unknown, mod+"."+n+" (memory)")
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		problems = append(problems, fmt.Sprintf("it imports %s, which this runtime does not provide (only %s is available)",
			strings.Join(unknown, ", "), wasi_snapshot_preview1.ModuleName))
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("module %s cannot run as a WASI command: %s", name, strings.Join(problems, "; "))
}

// countEntries counts the cache entries under dir. wazero keeps them in a per-version
// subdirectory (wazero-VERSION-ARCH-OS) that it creates when the cache is opened, so the count
// must look below dir, not at it; the bookkeeping (seen/, locks/) is not counted.
func countEntries(dir string) int {
	return len(listEntries(dir))
}
