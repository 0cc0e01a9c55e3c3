// Command bench measures containerd-shim-wazero-v1 against a runc baseline on a running, private
// containerd daemon, interleaving the two (A B A B ...) so that drift and noise from other load hit
// both alike, and writes the results as Markdown (docs/BENCHMARKS.md). scripts/bench.sh starts the
// daemon, imports the images and runs this program; see docs/BENCHMARKS.md for what each benchmark is.
//
// It is its own module (bench/go.mod) because containerd's client package pulls in dependencies the
// shim itself does not need.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// allBenchmarks are the benchmarks a full run (`make bench`) runs, in order.
var allBenchmarks = []string{"B1", "B2", "B3", "B4", "B5", "B6", "B7"}

const (
	wasmRuntime = "io.containerd.wazero.v1"
	runcRuntime = "io.containerd.runc.v2"

	imgHello     = "docker.io/library/wasm-hello:latest"
	imgHelloGo   = "docker.io/library/wasm-hello-go:latest"
	imgNative    = "docker.io/library/native-hello:latest"
	imgWasmTest  = "docker.io/library/wasmtest:latest"
	imgPause     = "registry.k8s.io/pause:3.10.2"
	imgCPUBench  = "docker.io/library/wasm-cpubench:latest"
	snapshotter  = "overlayfs"
	settleIdle   = 2 * time.Second // idle containers settle this long before their memory is read
	perTaskLimit = 2 * time.Minute
)

var wasmPlatform = ocispec.Platform{OS: "wasip1", Architecture: "wasm"}

type config struct {
	address, ns, ctr, fifoDir, cacheDir, wazero, cpubenchWasm, wazeroCache, httpserverWasm string
	shimExe, runcShimExe, daemonLog, out, command, only                                    string
	containerdBin, runcBin, goVersion                                                      string
	rounds, coldRounds, n, conc, b2Rounds, b3Rounds, cpuWork, cpuRounds                    int
	sizes                                                                                  []int
	crictl, criNS, workDir, criIDs, daemonDir, b6Runtimes                                  string
	daemonPid, b5Rounds, b6N, b6Conc                                                       int
	wrk, b7Variants                                                                        string
	b7Rounds, b7Threads, b7Conns                                                           int
	b7Duration, b7Warmup                                                                   time.Duration
	// beforeShimExe is a second, earlier build of the wazero shim (its runner binary beside it),
	// measured in B1-B3 beside the current one under its absolute path as the runtime name
	// (baseline.go); "" measures the current build only.
	beforeShimExe, beforeLabel string
	// sharedVariant adds the shared-server variant (shared.go) to B1-B3, B5 and B6.
	sharedVariant bool
	// warmAgent is wazero-shim-installer, whose -warm-cache agent compiles an image's module
	// before B1e's first run; "" leaves B1e out.
	warmAgent string
}

func main() {
	var c config
	var sizes string
	flag.StringVar(&c.address, "address", "", "containerd socket (required)")
	flag.StringVar(&c.ns, "namespace", "wzbench", "containerd namespace for every container")
	flag.StringVar(&c.ctr, "ctr", "ctr", "ctr binary of the daemon's version")
	flag.StringVar(&c.fifoDir, "fifo-dir", "", "ctr run --fifo-dir")
	flag.StringVar(&c.cacheDir, "cache-dir", "", "the daemon's CONTAINERD_SHIM_WAZERO_CACHE_DIR (emptied for cold runs)")
	flag.StringVar(&c.wazero, "wazero", "wazero", "wazero CLI")
	flag.StringVar(&c.wazeroCache, "wazero-cache", "", "wazero run -cachedir")
	flag.StringVar(&c.cpubenchWasm, "cpubench-wasm", "", "cpubench.wasm on the host (for wazero run)")
	flag.StringVar(&c.httpserverWasm, "httpserver-wasm", "", "httpserver.wasm on the host (B7's cli variant, under wazero run)")
	flag.StringVar(&c.shimExe, "shim-exe", "", "the wazero shim binary the daemon runs (private copy)")
	flag.StringVar(&c.runcShimExe, "runc-shim-exe", "", "the daemon's containerd-shim-runc-v2")
	flag.StringVar(&c.containerdBin, "containerd", "containerd", "containerd binary (for --version)")
	flag.StringVar(&c.runcBin, "runc", "runc", "runc binary (for --version)")
	flag.StringVar(&c.daemonLog, "daemon-log", "", "containerd's log (for the shim's \"runner ready\" lines)")
	flag.StringVar(&c.out, "out", "docs/BENCHMARKS.md", "Markdown output")
	flag.StringVar(&c.command, "command", "make bench", "the command line to record in the output")
	flag.StringVar(&c.only, "only", strings.Join(allBenchmarks, ","), "benchmarks to run; a subset is a partial run (see writeMarkdown)")
	flag.IntVar(&c.rounds, "rounds", 15, "B1 rounds (warm)")
	flag.IntVar(&c.coldRounds, "cold-rounds", 8, "B1c rounds (empty compilation cache)")
	flag.StringVar(&c.warmAgent, "warm-agent", "", "wazero-shim-installer binary: B1e runs its -warm-cache agent on an emptied cache before each first run (\"\": no B1e)")
	flag.IntVar(&c.n, "n", 500, "B2 tasks per runtime")
	flag.IntVar(&c.conc, "concurrency", 4, "B2/B3 parallel clients")
	flag.IntVar(&c.b2Rounds, "b2-rounds", 5, "B2 rounds per runtime (N is split across them)")
	flag.StringVar(&sizes, "sizes", "1,10,100", "B3 container counts")
	flag.IntVar(&c.b3Rounds, "b3-rounds", 3, "B3 rounds per size")
	flag.IntVar(&c.cpuWork, "cpu-work", 48, "B4 cpubench ROUNDS argument")
	flag.IntVar(&c.cpuRounds, "cpu-rounds", 5, "B4 rounds")
	flag.StringVar(&c.crictl, "crictl", "crictl", "crictl binary (B5, B6)")
	flag.StringVar(&c.criNS, "cri-namespace", "k8s.io", "the CRI plugin's containerd namespace")
	flag.StringVar(&c.workDir, "work-dir", "", "directory for pod/container configs and pod logs (B5, B6; required for them)")
	flag.StringVar(&c.criIDs, "cri-ids", "", "file to append every CRI pod and container id to (for cleanup after a failed run)")
	flag.StringVar(&c.daemonDir, "daemon-dir", "", "the daemon's directory (B6 checks no mount of a pod is left under it)")
	flag.IntVar(&c.daemonPid, "daemon-pid", 0, "containerd's pid (B6 reads its memory, fds, threads)")
	flag.IntVar(&c.b5Rounds, "b5-rounds", 10, "B5 rounds")
	flag.IntVar(&c.b6N, "b6-n", 500, "B6 pods per runtime")
	flag.IntVar(&c.b6Conc, "b6-concurrency", 4, "B6 pods started (and removed) at a time")
	flag.StringVar(&c.b6Runtimes, "b6-runtimes", "wazero", "B6 handlers, in order: wazero, runc, or wazero,runc")
	flag.StringVar(&c.wrk, "wrk", "wrk", "wrk binary (B7)")
	flag.StringVar(&c.b7Variants, "b7-variants", "wasm,native,native1,wagi", "B7 servers, in the order each round runs them (see httpVariants in http.go)")
	flag.IntVar(&c.b7Rounds, "b7-rounds", 3, "B7 rounds (each runs every variant once)")
	flag.DurationVar(&c.b7Duration, "b7-duration", 10*time.Second, "B7 measured wrk run per variant and round (whole seconds)")
	flag.DurationVar(&c.b7Warmup, "b7-warmup", time.Second, "B7 unmeasured wrk run before each measured one (0 = none)")
	flag.IntVar(&c.b7Threads, "b7-threads", 1, "B7 wrk -t")
	flag.IntVar(&c.b7Conns, "b7-connections", 16, "B7 wrk -c")
	flag.StringVar(&c.beforeShimExe, "before-shim-exe", "", "an earlier build of the wazero shim (absolute path, its runner beside it) to measure in B1-B4 and B7 beside the current one (BENCH_BASELINE_SHIM/_REF)")
	flag.StringVar(&c.beforeLabel, "before-label", "", "what the -before-shim-exe build is (e.g. the commit it was built from)")
	flag.BoolVar(&c.sharedVariant, "shared-variant", false, "B1-B3, B5 and B6 also measure the current shim with the annotation "+sharedServerAnnotation+"="+sharedLingerValue()+" (row wazero-shared; BENCH_SHARED=1)")
	flag.Parse()
	if c.address == "" {
		log.Fatal("-address is required")
	}
	if c.beforeShimExe != "" && !filepath.IsAbs(c.beforeShimExe) {
		log.Fatal("-before-shim-exe must be an absolute path (containerd runs it as the runtime name)")
	}
	for _, s := range strings.Split(sizes, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || v < 1 {
			log.Fatalf("bad -sizes %q", sizes)
		}
		c.sizes = append(c.sizes, v)
	}
	log.SetFlags(log.Ltime)
	log.SetPrefix("bench: ")
	if err := run(&c); err != nil {
		log.Fatal(err)
	}
}

// row is one line of the results table.
type row struct {
	id, what, unit string
	samples        []float64
	baseline       *row // nil for a baseline row
	before         *row // the same measurement through the earlier shim build (-before-shim-exe), or nil
	higherBetter   bool
	solo           bool // no baseline was measured
}

// report collects everything written to the Markdown file.
type report struct {
	rows  []*row
	notes []string
}

func (r *report) add(id, what, unit string, s []float64, base *row, higher bool) *row {
	x := &row{id: id, what: what, unit: unit, samples: s, baseline: base, higherBetter: higher}
	r.rows = append(r.rows, x)
	return x
}

func (r *report) note(format string, a ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, a...))
	log.Printf("note: "+format, a...)
}

func run(c *config) error {
	began := time.Now()
	ctx := namespaces.WithNamespace(context.Background(), c.ns)
	cl, err := containerd.New(c.address, containerd.WithDefaultNamespace(c.ns))
	if err != nil {
		return err
	}
	defer cl.Close()
	b := &bencher{c: c, cl: cl}
	rep := &report{}
	want := map[string]bool{}
	for _, s := range strings.Split(c.only, ",") {
		want[strings.TrimSpace(s)] = true
	}
	steps := []struct {
		name string
		fn   func(context.Context, *report) error
	}{{"B1", b.b1}, {"B2", b.b2}, {"B3", b.b3}, {"B4", b.b4}, {"B5", b.b5}, {"B6", b.b6}, {"B7", b.b7}}
	for k := range want {
		if !slices.Contains(allBenchmarks, k) {
			return fmt.Errorf("-only: unknown benchmark %q (have %s)", k, strings.Join(allBenchmarks, ","))
		}
	}
	if want["B5"] || want["B6"] {
		if c.workDir == "" {
			return fmt.Errorf("B5/B6 need -work-dir")
		}
		b.crictlCfg = filepath.Join(c.workDir, "crictl.yaml") // empty: nothing from the machine's /etc/crictl.yaml
		if err := os.MkdirAll(c.workDir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(b.crictlCfg, nil, 0o644); err != nil {
			return err
		}
	}
	for _, s := range steps {
		if !want[s.name] {
			continue
		}
		if s.name == "B6" && c.sharedVariant {
			b.sharedGoneBeforeB6(rep)
		}
		t := time.Now()
		log.Printf("%s: start", s.name)
		if err := s.fn(ctx, rep); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		log.Printf("%s: done in %s", s.name, time.Since(t).Round(time.Second))
	}
	keys := make([]string, 0, len(b.failures))
	for k := range b.failures {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		rep.note("**failures** %s: %d container start(s) failed and were not counted (retried where a fixed count was needed); first error: `%s`", k, b.failures[k], b.firstErr[k])
	}
	if len(keys) == 0 {
		rep.note("No container start failed in any benchmark.")
	}
	return writeMarkdown(c, rep, time.Since(began))
}

type bencher struct {
	c         *config
	cl        *containerd.Client
	seq       int
	crictlCfg string
	mu        sync.Mutex
	// failures counts failed container starts per benchmark and runtime ("B2 wazero"); the first
	// error of each is kept. Failures are reported, not fatal, unless a whole sample fails.
	failures map[string]int
	firstErr map[string]string
}

func (b *bencher) fail(key string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures == nil {
		b.failures, b.firstErr = map[string]int{}, map[string]string{}
	}
	b.failures[key]++
	if _, ok := b.firstErr[key]; !ok {
		b.firstErr[key] = strings.Join(strings.Fields(err.Error()), " ")
		log.Printf("%s: failure (first of its kind, reported at the end): %v", key, err)
	}
}

func (b *bencher) id(prefix string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), b.seq)
}

// ctrRun times one `ctr run --rm` the way a user types it (fork+exec of ctr included) and checks
// that it exits 0 with the expected text on stdout.
func (b *bencher) ctrRun(rt, image, want string, args ...string) (time.Duration, string, error) {
	return b.ctrRunEnv(rt, image, want, nil, args...)
}

// ctrRunEnv is ctrRun with env (KEY=VALUE) added to the container's environment. rt is a runtime
// name or a wazero variant's key (wasmVariants), "" for the daemon's default runtime.
func (b *bencher) ctrRunEnv(rt, image, want string, env []string, args ...string) (time.Duration, string, error) {
	id := b.id("b")
	a := ctrRunArgs(b.c, rt, image, id, env, args)
	ctx, cancel := context.WithTimeout(context.Background(), perTaskLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.c.ctr, a...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	t := time.Now()
	err := cmd.Run()
	d := time.Since(t)
	if err != nil || !strings.Contains(out.String(), want) {
		return d, "", fmt.Errorf("ctr run %s %s: %v; stdout %q; stderr %q", rt, image, err, out.String(), lastLines(errb.String(), 5))
	}
	return d, id, nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	var keep []string
	for _, x := range l {
		if !strings.Contains(x, "DEPRECATION") { // ctr's cgroup v1 notice
			keep = append(keep, x)
		}
	}
	if len(keep) > n {
		keep = keep[len(keep)-n:]
	}
	return strings.Join(keep, "\n")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// waitFillers waits until no background compile (the shim binary's fill-cache processes, started
// for interpreted first runs, see docs/coldstart.md) runs, so that the next round neither shares the
// CPU with one nor loses its cache entry to emptyCache. It returns how long it waited, 0 when no
// filler ran.
func waitFillers() time.Duration {
	began := time.Now()
	seen := false
	for time.Since(began) < 5*time.Minute {
		busy := false
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil {
				if argv := strings.Split(string(b), "\x00"); len(argv) > 1 && argv[1] == "fill-cache" {
					busy = true
					break
				}
			}
		}
		if !busy {
			break
		}
		seen = true
		time.Sleep(20 * time.Millisecond)
	}
	if !seen {
		return 0
	}
	return time.Since(began)
}

// emptyCache removes every entry of the compilation cache (the shim recreates the directory).
func (b *bencher) emptyCache() error {
	waitFillers()
	if b.c.cacheDir == "" {
		return fmt.Errorf("no -cache-dir")
	}
	return os.RemoveAll(b.c.cacheDir)
}

// B1: cold start, `ctr run --rm` end to end.
func (b *bencher) b1(ctx context.Context, rep *report) error {
	type series struct {
		id, what, image, want string
		args                  []string
		rounds                int
		cold                  bool
		env                   []string
	}
	all := []series{
		{"B1a", "C hello (42 KB module), warm cache", imgHello, "hello from wasm", nil, b.c.rounds, false, nil},
		{"B1b", "Go hello (2.6 MB module), warm cache", imgHelloGo, "hello", nil, b.c.rounds, false, nil},
		{"B1c", "Go hello, first-ever run, default cold-start policy (interpreted; compiled in the background)", imgHelloGo, "hello", nil, b.c.coldRounds, true, nil},
		{"B1d", "Go hello, first-ever run, `WAZERO_COLD_START=compile` (waits for the compiler)", imgHelloGo, "hello", nil, b.c.coldRounds, true, []string{"WAZERO_COLD_START=compile"}},
	}
	if b.c.warmAgent != "" {
		all = append(all, series{"B1e", "Go hello, first run on the node after the warm agent (`wazero-shim-installer -warm-cache`) compiled the image's module (untimed) into an emptied cache", imgHelloGo, "hello", nil, b.c.coldRounds, true, nil})
	}
	rts := b.wasmVariants()
	for _, s := range all {
		// One untimed run of each fills the cache and the page cache.
		for _, rt := range rts {
			if _, _, err := b.ctrRunEnv(rt, s.image, s.want, s.env, s.args...); err != nil {
				return err
			}
			waitFillers()
		}
		if _, _, err := b.ctrRun("", imgNative, "hello from native"); err != nil {
			return err
		}
		var r []float64
		w, fill := map[string][]float64{}, map[string][]float64{}
		wasmIDs := map[string][]string{}
		for i := 0; i < s.rounds; i++ {
			for _, rt := range rotate(rts, i) {
				if s.cold {
					if err := b.emptyCache(); err != nil {
						return err
					}
				}
				if s.id == "B1e" {
					if err := b.warmWithAgent(s.image); err != nil {
						return err
					}
				}
				d, id, err := b.ctrRunEnv(rt, s.image, s.want, s.env, s.args...)
				if err != nil {
					return err
				}
				w[rt] = append(w[rt], ms(d))
				wasmIDs[rt] = append(wasmIDs[rt], id)
				// A first run's background compile must not share the CPU with the next run.
				if wait := waitFillers(); wait > 0 && s.cold {
					fill[rt] = append(fill[rt], ms(wait))
				}
			}
			d, _, err := b.ctrRun("", imgNative, "hello from native")
			if err != nil {
				return err
			}
			r = append(r, ms(d))
		}
		base := rep.add(s.id, "runc: `ctr run --rm` native hello (baseline)", "ms", r, nil, false)
		b.addWasmRows(rep, s.id, func(rt string) string { return rtName(rt) + b.beforeTag(rt) + ": `ctr run --rm` " + s.what }, "ms", w, base, false)
		for _, rt := range rts {
			bid := s.id
			if rt != wasmRuntime {
				bid += " " + rtName(rt)
			}
			b.runnerReady(rep, bid, wasmIDs[rt])
			if len(fill[rt]) > 0 {
				next := "the baseline's run"
				if len(rts) > 1 {
					next = "the next run"
				}
				rep.note("%s: the background compile was still running for a median %.0f ms after `ctr run --rm` returned (%s waited for it)", bid, median(fill[rt]), next)
			}
		}
	}
	return nil
}

// warmWithAgent runs the warm agent (-warm-agent) on the bench's namespace until it reports that
// it compiled the module of image into the cache, then stops it: what a node's agent does when an
// image arrives before its first container.
func (b *bencher) warmWithAgent(image string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.c.warmAgent, "-warm-cache", "-host-root", "/", "-distro", "containerd",
		"-cri-socket", b.c.address, "-cache-dir", b.c.cacheDir, "-warm-namespace", b.c.ns)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "warm "+image+": ") {
			if !strings.Contains(l, " compiled in ") {
				return fmt.Errorf("warm agent: %s", l)
			}
			return nil
		}
	}
	return fmt.Errorf("warm agent ended without compiling %s: %s", image, lastLines(errb.String(), 5))
}

// runnerReady summarises the shim's "runner ready" log lines (compile time, Create-to-ready) of ids.
func (b *bencher) runnerReady(rep *report, bid string, ids []string) {
	if b.c.daemonLog == "" {
		return
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	f, err := os.Open(b.c.daemonLog)
	if err != nil {
		return
	}
	defer f.Close()
	var comp, ready []float64
	hits, interp := 0, 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.Contains(l, "runner ready") {
			continue
		}
		f := logfmt(l)
		if !want[f["id"]] {
			continue
		}
		if v, err := strconv.ParseFloat(f["compileMillis"], 64); err == nil {
			comp = append(comp, v)
		}
		if v, err := strconv.ParseFloat(f["readyMillis"], 64); err == nil {
			ready = append(ready, v)
		}
		if f["cacheHit"] == "true" {
			hits++
		}
		if f["interpreted"] == "true" {
			interp++
		}
	}
	if len(ready) == 0 {
		return
	}
	rep.note("%s: the shim's own log (\"runner ready\", %d runs): module compile/load median %.0f ms, runner spawn-to-ready median %.0f ms, compilation cache hits %d/%d, interpreted %d/%d.",
		bid, len(ready), median(comp), median(ready), hits, len(ready), interp, len(ready))
}

// logfmt parses the key=value fields of a logrus text line (values may be quoted).
func logfmt(l string) map[string]string {
	m := map[string]string{}
	for len(l) > 0 {
		l = strings.TrimLeft(l, " ")
		eq := strings.IndexByte(l, '=')
		if eq < 0 {
			break
		}
		k := l[:eq]
		if i := strings.LastIndexByte(k, ' '); i >= 0 {
			k = k[i+1:]
		}
		l = l[eq+1:]
		var v string
		if strings.HasPrefix(l, `"`) {
			if q, err := strconv.QuotedPrefix(l); err == nil {
				v, _ = strconv.Unquote(q)
				l = l[len(q):]
			} else {
				v, l = l, ""
			}
		} else if sp := strings.IndexByte(l, ' '); sp >= 0 {
			v, l = l[:sp], l[sp:]
		} else {
			v, l = l, ""
		}
		m[k] = v
	}
	return m
}

// image returns the image record of name with the platform its runtime needs, unpacked.
func (b *bencher) image(ctx context.Context, name string, wasm bool) (containerd.Image, error) {
	rec, err := b.cl.ImageService().Get(ctx, name)
	if err != nil {
		return nil, err
	}
	var img containerd.Image
	if wasm {
		img = containerd.NewImageWithPlatform(b.cl, rec, platforms.Only(wasmPlatform))
	} else {
		img = containerd.NewImage(b.cl, rec)
	}
	ok, err := img.IsUnpacked(ctx, snapshotter)
	if err != nil {
		return nil, err
	}
	if !ok {
		if err := img.Unpack(ctx, snapshotter); err != nil {
			return nil, fmt.Errorf("unpack %s: %w", name, err)
		}
	}
	return img, nil
}

// phases of one task's life through the Go client.
type phases struct{ container, create, start, run, del, total time.Duration }

// task runs one container to completion: create container, new task, start, wait, delete. rt is a
// runtime name or a wazero variant's key (wasmVariants).
func (b *bencher) task(ctx context.Context, img containerd.Image, rt string, args []string) (phases, error) {
	var p phases
	id := b.id("t")
	ctx, cancel := context.WithTimeout(ctx, perTaskLimit)
	defer cancel()
	t0 := time.Now()
	specOpts := []oci.SpecOpts{oci.WithImageConfig(img)}
	if len(args) > 0 {
		specOpts = append(specOpts, oci.WithProcessArgs(args...))
	}
	specOpts = append(specOpts, variantSpecOpts(rt)...)
	cont, err := b.cl.NewContainer(ctx, id,
		containerd.WithImage(img),
		containerd.WithSnapshotter(snapshotter),
		containerd.WithNewSnapshot(id, img),
		containerd.WithRuntime(runtimeOf(rt), nil),
		containerd.WithNewSpec(specOpts...))
	if err != nil {
		return p, err
	}
	defer cont.Delete(context.WithoutCancel(ctx), containerd.WithSnapshotCleanup) // no-op after success
	t1 := time.Now()
	tk, err := cont.NewTask(ctx, cio.NullIO)
	if err != nil {
		return p, err
	}
	t2 := time.Now()
	exitCh, err := tk.Wait(ctx)
	if err != nil {
		tk.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill)
		return p, err
	}
	if err := tk.Start(ctx); err != nil {
		tk.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill)
		return p, err
	}
	t3 := time.Now()
	var st containerd.ExitStatus
	select {
	case st = <-exitCh:
	case <-ctx.Done():
		tk.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill)
		return p, ctx.Err()
	}
	t4 := time.Now()
	if _, err := tk.Delete(ctx); err != nil {
		return p, err
	}
	if err := cont.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
		return p, err
	}
	t5 := time.Now()
	if st.ExitCode() != 0 {
		return p, fmt.Errorf("%s exited %d", id, st.ExitCode())
	}
	p = phases{container: t1.Sub(t0), create: t2.Sub(t1), start: t3.Sub(t2), run: t4.Sub(t3), del: t5.Sub(t4), total: t5.Sub(t0)}
	return p, nil
}

// retryTask runs one task, trying up to 3 times (failures are counted).
func (b *bencher) retryTask(ctx context.Context, img containerd.Image, rt string) (phases, error) {
	var err error
	for i := 0; i < 3; i++ {
		var p phases
		if p, err = b.task(ctx, img, rt, nil); err == nil {
			return p, nil
		}
		b.fail("B2 sequential "+rtName(rt), err)
	}
	return phases{}, err
}

// batch runs n tasks, conc at a time; it returns the elapsed time and the phases of every task
// that succeeded (failures are counted by b.fail).
func (b *bencher) batch(ctx context.Context, img containerd.Image, rt string, n, conc int) (time.Duration, []phases, error) {
	jobs := make(chan struct{})
	var mu sync.Mutex
	var all []phases
	fails := 0
	var wg sync.WaitGroup
	t := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				p, err := b.task(ctx, img, rt, nil)
				mu.Lock()
				if err != nil {
					fails++
					b.fail("B2 "+rtName(rt), err)
				} else {
					all = append(all, p)
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n; i++ {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	if len(all) == 0 {
		return 0, nil, fmt.Errorf("all %d tasks failed", n)
	}
	return time.Since(t), all, nil
}

func rtName(rt string) string {
	switch {
	case rt == wasmRuntime:
		return "wazero"
	case rt == sharedVariant:
		return sharedVariant
	case filepath.IsAbs(rt): // -before-shim-exe
		return "wazero-before"
	}
	return "runc"
}

// B2: throughput through the Go client, plus the per-phase latencies of a sequential series.
func (b *bencher) b2(ctx context.Context, rep *report) error {
	wimg, err := b.image(ctx, imgHello, true)
	if err != nil {
		return err
	}
	nimg, err := b.image(ctx, imgNative, false)
	if err != nil {
		return err
	}
	rts := b.wasmVariants()
	// Sequential phases first (one task at a time, interleaved): where does a task's time go?
	const seqN = 10
	wp := map[string][]phases{}
	var np []phases
	for i := 0; i < seqN+1; i++ {
		for _, rt := range rotate(rts, i) {
			p, err := b.retryTask(ctx, wimg, rt)
			if err != nil {
				return fmt.Errorf("%s task: %w", rtName(rt), err)
			}
			if i > 0 { // the first round is a warm-up
				wp[rt] = append(wp[rt], p)
			}
		}
		q, err := b.retryTask(ctx, nimg, runcRuntime)
		if err != nil {
			return fmt.Errorf("runc task: %w", err)
		}
		if i > 0 {
			np = append(np, q)
		}
	}
	names, sets := b.phaseSets(wp, np)
	rep.note("B2 phases (Go client, one task at a time, %d each, median ms) — %s: %s", seqN, names("C hello", "native hello"), phaseTable(sets...))

	rounds := b.c.b2Rounds
	if rounds > b.c.n {
		rounds = b.c.n
	}
	per := b.c.n / rounds
	var r []float64
	w := map[string][]float64{}
	wall := map[string][]phases{}
	var rall []phases
	for i := 0; i < rounds; i++ {
		for _, rt := range rotate(rts, i) {
			d, ps, err := b.batch(ctx, wimg, rt, per, b.c.conc)
			if err != nil {
				return fmt.Errorf("%s batch: %w", rtName(rt), err)
			}
			w[rt], wall[rt] = append(w[rt], float64(len(ps))/d.Seconds()), append(wall[rt], ps...)
			log.Printf("B2 round %d: %s %.1f tasks/s", i+1, wasmLogName(rt), w[rt][len(w[rt])-1])
		}
		d, ps, err := b.batch(ctx, nimg, runcRuntime, per, b.c.conc)
		if err != nil {
			return fmt.Errorf("runc batch: %w", err)
		}
		r, rall = append(r, float64(len(ps))/d.Seconds()), append(rall, ps...)
		log.Printf("B2 round %d: runc %.1f tasks/s", i+1, r[len(r)-1])
	}
	what := fmt.Sprintf("tasks/s, %d rounds of %d tasks, %d at a time", rounds, per, b.c.conc)
	base := rep.add("B2", "runc: native hello, "+what+" (baseline)", "tasks/s", r, nil, true)
	b.addWasmRows(rep, "B2", func(rt string) string { return rtName(rt) + b.beforeTag(rt) + ": C hello, " + what }, "tasks/s", w, base, true)
	names, sets = b.phaseSets(wall, rall)
	rep.note("B2 phases under load (%d at a time, all %d tasks each, median ms) — %s: %s", b.c.conc, per*rounds, names("", ""), phaseTable(sets...))
	return nil
}

// phaseTable: for each phase, the medians of every set, "a vs b [vs c]".
func phaseTable(sets ...[]phases) string {
	get := func(ps []phases, f func(phases) time.Duration) float64 {
		var s []float64
		for _, p := range ps {
			s = append(s, ms(f(p)))
		}
		return median(s)
	}
	parts := []struct {
		name string
		f    func(phases) time.Duration
	}{
		{"NewContainer (snapshot+spec)", func(p phases) time.Duration { return p.container }},
		{"NewTask (shim start + create)", func(p phases) time.Duration { return p.create }},
		{"Start", func(p phases) time.Duration { return p.start }},
		{"run to exit", func(p phases) time.Duration { return p.run }},
		{"task+container delete", func(p phases) time.Duration { return p.del }},
		{"total", func(p phases) time.Duration { return p.total }},
	}
	var out []string
	for _, x := range parts {
		var v []string
		for _, s := range sets {
			v = append(v, fmt.Sprintf("%.1f", get(s, x.f)))
		}
		out = append(out, x.name+" "+strings.Join(v, " vs "))
	}
	return strings.Join(out, "; ")
}

// B3: memory of idle containers.
func (b *bencher) b3(ctx context.Context, rep *report) error {
	wimg, err := b.image(ctx, imgWasmTest, true)
	if err != nil {
		return err
	}
	pimg, err := b.image(ctx, imgPause, false)
	if err != nil {
		return err
	}
	for _, n := range b.c.sizes {
		var r []float64
		w := map[string][]float64{}
		wProcs := map[string]int{}
		var rProcs int
		var waits []float64 // seconds waited for a lingering shared server (shared.go)
		for i := 0; i < b.c.b3Rounds; i++ {
			var line []string
			for _, rt := range b.b3Order(i) {
				if rt == wasmRuntime && b.c.sharedVariant {
					d, gone := b.waitSharedGone()
					waits = append(waits, d.Seconds())
					if !gone {
						rep.note("B3 x%d round %d: a process of the current shim (pids %v) still ran %.0f s after the previous batch, beyond the shared server's %s linger; the `wazero` batch was measured beside it (its PSS is then lower than alone)",
							n, i+1, b.currentShimPids(), d.Seconds(), sharedLingerValue())
					}
				}
				m, err := b.idle(ctx, wimg, rt, []string{"/testprog.wasm", "sleep", "3600"}, n)
				if err != nil {
					return fmt.Errorf("%s idle x%d: %w", rtName(rt), n, err)
				}
				w[rt], wProcs[rt] = append(w[rt], m.mib/float64(n)), m.procs
				line = append(line, fmt.Sprintf("%s %.2f MiB/container (%d procs, %d shims)", wasmLogName(rt), w[rt][len(w[rt])-1], m.procs, m.shims))
				if rt == sharedVariant && m.shims != 1 {
					rep.note("B3 x%d round %d: **the `%s` containers were served by %d server processes, not one**: the shim ignored `%s` (is its shared-server mode in this build?), so these rows measure the default mode",
						n, i+1, sharedVariant, m.shims, sharedServerAnnotation)
				}
			}
			m, err := b.idle(ctx, pimg, runcRuntime, nil, n)
			if err != nil {
				return fmt.Errorf("runc idle x%d: %w", n, err)
			}
			r, rProcs = append(r, m.mib/float64(n)), m.procs
			log.Printf("B3 x%d round %d: %s, runc %.2f MiB/container (%d procs)", n, i+1, strings.Join(line, ", "), r[len(r)-1], rProcs)
		}
		id := fmt.Sprintf("B3 x%d", n)
		base := rep.add(id, fmt.Sprintf("runc: %d idle `/pause` containers, PSS of shims + containers per container (baseline, %d processes)", n, rProcs), "MiB", r, nil, false)
		b.addWasmRows(rep, id, func(rt string) string {
			shims := "shims"
			if rt == sharedVariant {
				shims = "the shared server"
			}
			return fmt.Sprintf("%s%s: %d idle `/testprog.wasm sleep 3600`, PSS of %s + runners per container (%d processes)", rtName(rt), b.beforeTag(rt), n, shims, wProcs[rt])
		}, "MiB", w, base, false)
		if len(waits) > 0 {
			_, hi := minmax(waits)
			rep.note("B3 x%d: before each `wazero` batch the bench waited for the `%s` server of the previous round to exit (median %.1f s, max %.1f s), so that it did not share the server binary's pages with the batch measured", n, sharedVariant, median(waits), hi)
		}
	}
	return nil
}

type live struct {
	c containerd.Container
	t containerd.Task
}

// startIdle creates and starts one container; on failure it deletes what it created.
func (b *bencher) startIdle(ctx context.Context, img containerd.Image, rt string, args []string) (live, error) {
	id := b.id("idle")
	specOpts := []oci.SpecOpts{oci.WithImageConfig(img)}
	if len(args) > 0 {
		specOpts = append(specOpts, oci.WithProcessArgs(args...))
	}
	specOpts = append(specOpts, variantSpecOpts(rt)...)
	c, err := b.cl.NewContainer(ctx, id, containerd.WithImage(img), containerd.WithSnapshotter(snapshotter),
		containerd.WithNewSnapshot(id, img), containerd.WithRuntime(runtimeOf(rt), nil), containerd.WithNewSpec(specOpts...))
	if err != nil {
		return live{}, err
	}
	t, err := c.NewTask(ctx, cio.NullIO)
	if err == nil {
		if err = t.Start(ctx); err != nil {
			t.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill)
		}
	}
	if err != nil {
		c.Delete(context.WithoutCancel(ctx), containerd.WithSnapshotCleanup)
		return live{}, err
	}
	return live{c: c, t: t}, nil
}

// idleMem is what idle measured: the total PSS in MiB of the containers' shims and their
// descendants, the number of those processes, and the number of shims among them.
type idleMem struct {
	mib          float64
	procs, shims int
}

// idle starts n containers that stay up, measures the PSS of their processes after settleIdle,
// then kills and deletes them all.
func (b *bencher) idle(ctx context.Context, img containerd.Image, rt string, args []string, n int) (idleMem, error) {
	var mu sync.Mutex
	var lives []live
	var firstErr error
	cleanup := func() {
		var wg sync.WaitGroup
		sem := make(chan struct{}, b.c.conc)
		for _, l := range lives {
			wg.Add(1)
			sem <- struct{}{}
			go func(l live) {
				defer wg.Done()
				defer func() { <-sem }()
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), perTaskLimit)
				defer cancel()
				if l.t != nil {
					if ch, err := l.t.Wait(cctx); err == nil {
						if l.t.Kill(cctx, syscall.SIGKILL) == nil {
							<-ch
						}
					}
					l.t.Delete(cctx, containerd.WithProcessKill)
				}
				l.c.Delete(cctx, containerd.WithSnapshotCleanup)
			}(l)
		}
		wg.Wait()
	}
	defer cleanup()
	var wg sync.WaitGroup
	sem := make(chan struct{}, b.c.conc)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var err error
			for try := 0; try < 10; try++ {
				var l live
				if l, err = b.startIdle(ctx, img, rt, args); err == nil {
					mu.Lock()
					lives = append(lives, l)
					mu.Unlock()
					return
				}
				b.fail("B3 "+rtName(rt), err)
			}
			mu.Lock()
			firstErr = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return idleMem{}, firstErr
	}
	time.Sleep(settleIdle)
	var pids []int
	for _, l := range lives {
		pids = append(pids, int(l.t.Pid()))
	}
	kb, procs, shims, err := b.pssOfTasks(rt, pids)
	if err != nil {
		return idleMem{}, err
	}
	for _, l := range lives { // every container must still be running
		st, err := l.t.Status(ctx)
		if err != nil || st.Status != containerd.Running {
			return idleMem{}, fmt.Errorf("container %s not running: %v %v", l.c.ID(), st.Status, err)
		}
	}
	return idleMem{mib: float64(kb) / 1024, procs: procs, shims: shims}, nil
}

// B4: a CPU-bound guest through the shim vs the same module under `wazero run`.
func (b *bencher) b4(ctx context.Context, rep *report) error {
	work := strconv.Itoa(b.c.cpuWork)
	wz := func() (time.Duration, float64, string, error) {
		a := []string{"run"}
		if b.c.wazeroCache != "" {
			a = append(a, "-cachedir", b.c.wazeroCache)
		}
		a = append(a, b.c.cpubenchWasm, work)
		cmd := exec.Command(b.c.wazero, a...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		t := time.Now()
		err := cmd.Run()
		d := time.Since(t)
		if err != nil {
			return d, 0, "", fmt.Errorf("wazero run: %v: %s", err, errb.String())
		}
		w, sum, err := parseCPU(out.String())
		return d, w, sum, err
	}
	shim := func(rt string) (time.Duration, float64, string, error) {
		id := b.id("cpu")
		cmd := exec.Command(b.c.ctr, "--address", b.c.address, "-n", b.c.ns, "run", "--rm", "--fifo-dir", b.c.fifoDir,
			"--runtime", rt, imgCPUBench, id, "/cpubench.wasm", work)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		t := time.Now()
		err := cmd.Run()
		d := time.Since(t)
		if err != nil {
			return d, 0, "", fmt.Errorf("ctr run cpubench: %v: %s", err, lastLines(errb.String(), 5))
		}
		w, sum, err := parseCPU(out.String())
		return d, w, sum, err
	}
	// Warm-up: fills both compilation caches; the checksums must agree.
	_, _, s1, err := wz()
	if err != nil {
		return err
	}
	// Every shim build (the earlier one too, with -before-shim-exe) in each round, their order
	// rotating, then the CLI.
	rts := b.wasmRuntimes()
	for _, rt := range rts {
		_, _, s2, err := shim(rt)
		if err != nil {
			return err
		}
		if s1 != s2 {
			return fmt.Errorf("checksums differ: wazero run %s, %s %s", s1, rtName(rt), s2)
		}
	}
	var we, wi []float64
	se, si := map[string][]float64{}, map[string][]float64{}
	for i := 0; i < b.c.cpuRounds; i++ {
		var parts []string
		for _, rt := range rotate(rts, i) {
			d, w, _, err := shim(rt)
			if err != nil {
				return err
			}
			se[rt], si[rt] = append(se[rt], ms(d)), append(si[rt], w)
			parts = append(parts, fmt.Sprintf("%s %.0f ms (work %.0f)", rtName(rt), ms(d), w))
		}
		d, w, _, err := wz()
		if err != nil {
			return err
		}
		we, wi = append(we, ms(d)), append(wi, w)
		log.Printf("B4 round %d: %s, wazero run %.0f ms (work %.0f)", i+1, strings.Join(parts, ", "), we[i], wi[i])
	}
	what := fmt.Sprintf("cpubench %s (checksum %s)", work, s1)
	base := rep.add("B4", "`wazero run` CLI, end to end, warm cache (baseline)", "ms", we, nil, false)
	b.addWasmRows(rep, "B4", func(rt string) string {
		return rtName(rt) + b.beforeTag(rt) + " shim: `ctr run --rm` " + what + ", end to end"
	}, "ms", se, base, false)
	base = rep.add("B4", "`wazero run`: time the guest measured for its own work (baseline)", "ms", wi, nil, false)
	b.addWasmRows(rep, "B4", func(rt string) string {
		return rtName(rt) + b.beforeTag(rt) + " shim: time the guest measured for its own work"
	}, "ms", si, base, false)
	rep.note("B4: overhead of the shim vs `wazero run`: end to end %+.1f%%, guest work alone %+.1f%% (medians).",
		100*(median(se[wasmRuntime])/median(we)-1), 100*(median(si[wasmRuntime])/median(wi)-1))
	return nil
}

func parseCPU(out string) (float64, string, error) {
	var rounds int
	var sum string
	var work float64
	if _, err := fmt.Sscanf(strings.TrimSpace(out), "cpubench rounds=%d checksum=%s work_ms=%f", &rounds, &sum, &work); err != nil {
		return 0, "", fmt.Errorf("cpubench output %q: %v", out, err)
	}
	return work, sum, nil
}

func median(s []float64) float64 {
	if len(s) == 0 {
		return 0
	}
	c := append([]float64(nil), s...)
	sort.Float64s(c)
	if len(c)%2 == 1 {
		return c[len(c)/2]
	}
	return (c[len(c)/2-1] + c[len(c)/2]) / 2
}

func minmax(s []float64) (float64, float64) {
	lo, hi := s[0], s[0]
	for _, v := range s {
		lo, hi = min(lo, v), max(hi, v)
	}
	return lo, hi
}

// fmtNum prints with precision fitting the magnitude.
func fmtNum(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func cmdOut(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err != nil {
		return fmt.Sprintf("(%s: %v) %s", name, err, s)
	}
	return s
}

func machine() map[string]string {
	m := map[string]string{"nproc": strconv.Itoa(runtime.NumCPU())}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				f := strings.Fields(l)
				if kb, err := strconv.ParseFloat(f[1], 64); err == nil {
					m["memory"] = fmt.Sprintf("%.1f GiB", kb/1024/1024)
				}
			}
		}
	}
	m["kernel"] = cmdOut("uname", "-srm")
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "model name") {
				m["cpu"] = strings.TrimSpace(l[strings.IndexByte(l, ':')+1:])
				break
			}
		}
	}
	m["cgroup"] = cgroupMode()
	if data, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "PRETTY_NAME=") {
				m["os"] = strings.Trim(strings.TrimPrefix(l, "PRETTY_NAME="), `"`)
			}
		}
	}
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		m["load"] = strings.Join(strings.Fields(string(data))[:3], " ")
	}
	return m
}

func cgroupMode() string {
	var st syscall.Statfs_t
	const cgroup2Magic = 0x63677270
	if err := syscall.Statfs("/sys/fs/cgroup", &st); err == nil && st.Type == cgroup2Magic {
		return "v2 (unified)"
	}
	if err := syscall.Statfs("/sys/fs/cgroup/unified", &st); err == nil && st.Type == cgroup2Magic {
		return "hybrid (v1 controllers + empty v2 `unified` mount)"
	}
	return "v1 (legacy)"
}

// selected returns the benchmarks of -only in the order they run.
func (c *config) selected() []string {
	var sel []string
	for _, name := range allBenchmarks {
		for _, s := range strings.Split(c.only, ",") {
			if strings.TrimSpace(s) == name {
				sel = append(sel, name)
				break
			}
		}
	}
	return sel
}

// writeMarkdown writes the report to c.out. A full run (every benchmark) rewrites the whole file. A
// partial run (-only a subset, BENCH_ONLY) keeps the file as it is and puts its results in a
// section of its own at the end, between markers naming its selection, which replaces the section
// an earlier partial run of the same selection wrote: results from different runs are never mixed
// in one table. The next full run drops every partial section.
func writeMarkdown(c *config, rep *report, took time.Duration) error {
	sel := c.selected()
	var out []byte
	if len(sel) == len(allBenchmarks) {
		out = fullMarkdown(c, rep, took)
	} else {
		old, err := os.ReadFile(c.out)
		if err != nil && !os.IsNotExist(err) {
			return err
		}
		if len(old) == 0 {
			old = []byte("# Benchmarks\n\nNo full run (`make bench`) has written this file yet.\n")
		}
		out = mergePartial(old, partialKey(c, sel), partialMarkdown(c, rep, took, sel))
	}
	if err := os.MkdirAll(filepath.Dir(c.out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(c.out, out, 0o644); err != nil {
		return err
	}
	log.Printf("wrote %s", c.out)
	_, _ = os.Stdout.Write(out)
	return nil
}

// Markers of a partial run's section; the selection (BENCH_ONLY, in run order) follows the prefix.
const (
	partialBegin = "<!-- bench partial run: "
	partialEnd   = "<!-- end of bench partial run: "
)

// mergePartial returns doc with the section of selection key replaced by section (or appended).
func mergePartial(doc []byte, key string, section string) []byte {
	s := string(doc)
	begin := partialBegin + key + " -->"
	if i := strings.Index(s, begin); i >= 0 {
		rest := s[i:]
		end := partialEnd + key + " -->\n"
		if j := strings.Index(rest, end); j >= 0 {
			s = s[:i] + rest[j+len(end):]
		} else {
			s = s[:i] // a section whose end marker was lost ends the file
		}
	}
	s = strings.TrimRight(s, "\n") + "\n\n" + begin + "\n" + section + partialEnd + key + " -->\n"
	return []byte(s)
}

// resultsTable writes the results rows and the notes.
func resultsTable(w io.Writer, rep *report) {
	ba := rep.hasBefore()
	if ba {
		fmt.Fprintf(w, "| # | what | unit | n | median | min | max | ratio to baseline (median) | before → after (median) |\n|---|---|---|---|---|---|---|---|---|\n")
	} else {
		fmt.Fprintf(w, "| # | what | unit | n | median | min | max | ratio to baseline (median) |\n|---|---|---|---|---|---|---|---|\n")
	}
	for _, r := range rep.rows {
		lo, hi := minmax(r.samples)
		ratio := "1 (baseline)"
		if r.solo {
			ratio = "— (no baseline measured)"
		}
		if r.baseline != nil {
			x := median(r.samples) / median(r.baseline.samples)
			ratio = fmt.Sprintf("%.2f×", x)
			if r.id == "B4" {
				ratio += fmt.Sprintf(" (%+.1f%%)", 100*(x-1))
			}
			if r.higherBetter {
				ratio += " (higher is better)"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %d | %s | %s | %s | %s |", r.id, r.what, r.unit, len(r.samples),
			fmtNum(median(r.samples)), fmtNum(lo), fmtNum(hi), ratio)
		if ba {
			fmt.Fprintf(w, " %s |", beforeAfter(r))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	if len(rep.notes) > 0 {
		fmt.Fprintf(w, "Observations from the same run:\n\n")
		for _, n := range rep.notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
		fmt.Fprintln(w)
	}
}

// machineAndVersions writes the "Machine and versions" list.
func machineAndVersions(w io.Writer, c *config) {
	mc := machine()
	for _, k := range []string{"nproc", "cpu", "memory", "kernel", "os", "cgroup", "load"} {
		label := k
		if k == "load" {
			label = "load average at the end"
		}
		fmt.Fprintf(w, "- %s: %s\n", label, mc[k])
	}
	fmt.Fprintf(w, "- containerd: `%s`\n", cmdOut(c.containerdBin, "--version"))
	fmt.Fprintf(w, "- runc: `%s`\n", strings.ReplaceAll(cmdOut(c.runcBin, "--version"), "\n", "; "))
	fmt.Fprintf(w, "- Go: `%s`\n", cmdOut("go", "version"))
	fmt.Fprintf(w, "- wazero CLI: `%s`\n", cmdOut(c.wazero, "version"))
	if slices.Contains(c.selected(), "B7") {
		fmt.Fprintf(w, "- wrk: `%s`\n", wrkVersion(c.wrk))
	}
	fmt.Fprintf(w, "- shim `-v`:\n\n```\n%s\n```\n\n", cmdOut(c.shimExe, "-v"))
	if c.beforeShimExe != "" {
		fmt.Fprintf(w, "- the earlier shim build%s, `-v`:\n\n```\n%s\n```\n\n", tagOf(c), cmdOut(c.beforeShimExe, "-v"))
	}
}

// wrkVersion is the first line of `wrk --version` (which exits 1).
func wrkVersion(wrk string) string {
	out, err := exec.Command(wrk, "--version").Output()
	l, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if !strings.HasPrefix(l, "wrk ") {
		return fmt.Sprintf("(%s --version: %v) %s", wrk, err, l)
	}
	return l
}

// settingsLine is the "Settings:" line: BENCH_ONLY and the settings of the benchmarks that ran.
func settingsLine(c *config, sel []string) string {
	parts := []string{"BENCH_ONLY=" + strings.Join(sel, ",")}
	if c.sharedVariant {
		parts = append(parts, "BENCH_SHARED=1")
	}
	for _, name := range sel {
		parts = append(parts, benchSettings(c, name))
	}
	return fmt.Sprintf("Settings: `%s`\n(environment variables of scripts/bench.sh; `make bench` uses the defaults).\n", strings.Join(parts, " "))
}

func benchSettings(c *config, name string) string {
	switch name {
	case "B1":
		return fmt.Sprintf("B1_ROUNDS=%d B1_COLD_ROUNDS=%d", c.rounds, c.coldRounds)
	case "B2":
		return fmt.Sprintf("B2_N=%d B2_CONCURRENCY=%d B2_ROUNDS=%d", c.n, c.conc, c.b2Rounds)
	case "B3":
		return fmt.Sprintf("B3_SIZES=%s B3_ROUNDS=%d", joinInts(c.sizes), c.b3Rounds)
	case "B4":
		return fmt.Sprintf("B4_WORK=%d B4_ROUNDS=%d", c.cpuWork, c.cpuRounds)
	case "B5":
		return fmt.Sprintf("B5_ROUNDS=%d", c.b5Rounds)
	case "B6":
		return fmt.Sprintf("B6_N=%d B6_CONCURRENCY=%d B6_RUNTIMES=%s", c.b6N, c.b6Conc, c.b6Runtimes)
	case "B7":
		return fmt.Sprintf("B7_ROUNDS=%d B7_DURATION=%s B7_WARMUP=%s B7_THREADS=%d B7_CONNECTIONS=%d B7_VARIANTS=%s",
			c.b7Rounds, c.b7Duration, c.b7Warmup, c.b7Threads, c.b7Conns, c.b7Variants)
	}
	return ""
}

// describe writes the "What is measured" item of one benchmark.
func describe(w io.Writer, c *config, name string) {
	switch name {
	case "B1":
		fmt.Fprintf(w, "- **B1 cold start**: wall time of `ctr run --rm` (fork+exec of `ctr` included, as a user sees it), output\n"+
			"  checked. (a) the C hello module, (b) the 2.6 MB Go hello with a warm compilation cache, (c) the Go hello\n"+
			"  on a first-ever run: the daemon's `CONTAINERD_SHIM_WAZERO_CACHE_DIR` is a bench-private directory,\n"+
			"  emptied before each run; under the default cold-start policy the run is interpreted while a background\n"+
			"  process compiles the module for the next runs ([coldstart.md](coldstart.md)); (d) the same with\n"+
			"  `WAZERO_COLD_START=compile`, which waits for the compiler. After a first run the bench waits for the\n"+
			"  background compile to end before the baseline's run. Each against runc running a static native hello,\n"+
			"  interleaved. One untimed warm-up run of each first.\n")
	case "B2":
		fmt.Fprintf(w, "- **B2 throughput**: containerd's Go client, %d tasks per runtime (`-n`), %d at a time: NewContainer\n"+
			"  (WithNewSnapshot, WithNewSpec(WithImageConfig)), NewTask(cio.NullIO), Start, Wait, Delete, container\n"+
			"  Delete with its snapshot. wazero (C hello) vs runc (native hello), rounds alternating; one sample is\n"+
			"  the tasks/s of one round.\n", c.n, c.conc)
	case "B3":
		fmt.Fprintf(w, "- **B3 memory per container**: N idle containers (`/testprog.wasm sleep 3600` vs runc running\n"+
			"  `/pause`), started %d at a time, read %s after the last start: the sum of `Pss` from\n"+
			"  `/proc/PID/smaps_rollup` over the shims serving the N containers and all their descendants (runners,\n"+
			"  container processes), divided by N. A container's shim is found from its task pid: its outermost\n"+
			"  ancestor in the chain of processes running that runtime's shim (wazero: `/proc/PID/exe` is the bench's\n"+
			"  copy of the shim or its server binary; runc: `containerd-shim-runc-v2`), counted once however many\n"+
			"  containers it serves. Everything is deleted between samples.\n",
			c.conc, settleIdle)
	case "B4":
		fmt.Fprintf(w, "- **B4 steady state**: `testdata/c/cpubench.c` (integer hashing over a 256 KiB table, work `%d`),\n"+
			"  through the shim (`ctr run --rm`) vs the same module under `wazero run -cachedir` (both caches warm).\n"+
			"  The guest also reports the time its own work took (CLOCK_MONOTONIC), which separates execution speed\n"+
			"  from start-up cost. Overhead %% = shim median / `wazero run` median − 1.\n", c.cpuWork)
	case "B5":
		fmt.Fprintf(w, "- **B5 CRI pod start**: through the daemon's CRI plugin with `crictl` (the calls the kubelet makes):\n"+
			"  wall time from `crictl runp --runtime HANDLER` through `crictl create` and `crictl start` until\n"+
			"  `crictl inspect -o json` reports CONTAINER_RUNNING (each step a crictl process, polled every 20 ms).\n"+
			"  Host-network pods (no CNI). Handler `wazero` running `/testprog.wasm sleep 3600` (wasmtest, imported\n"+
			"  into `k8s.io` with `--platform wasip1/wasm --local`) vs handler `runc` running the native `/pause` of the\n"+
			"  sandbox image pause.tar (a static Go program, testdata/native/pause) as its workload; the runc pod's\n"+
			"  sandbox is that same pause, the wazero pod's sandbox is the shim's own sandbox runner. %d rounds,\n"+
			"  interleaved, after one untimed pod of each; every pod is removed (`crictl stopp`, `rmp --force`)\n"+
			"  outside the timed part.\n", c.b5Rounds)
	case "B6":
		fmt.Fprintf(w, "- **B6 density**: %d idle host-network pods per handler (`-b6-n`, runtimes `%s`), each one\n"+
			"  container as in B5, started %d at a time (runp+create+start until RUNNING per pod). Measured with all\n"+
			"  pods up, %s after the last start: the sum of `Pss` over the daemon's shims of that runtime and all\n"+
			"  their descendants, divided by the number of pods (one sample, so median = min = max); the time to start\n"+
			"  them all; containerd's own PSS, fds and threads and the machine's MemAvailable before and after;\n"+
			"  `ctr -n k8s.io task ls` (containerd asks every shim for each task's State) must list every sandbox and\n"+
			"  container RUNNING. Then every pod is removed, %d at a time, and the bench checks that no pod,\n"+
			"  container, task, shim or runner process, cgroup or mount of them is left. A pod that fails to start is\n"+
			"  retried (3 tries); after three pods failed three times the run stops and reports how far it got.\n"+
			"  `make bench` runs only the wazero pods (about 3.5 minutes for 500 on 2 cores); `B6_RUNTIMES=wazero,runc`\n"+
			"  adds the runc pods as a baseline, about 6 more minutes, which is beyond the 15-minute budget.\n",
			c.b6N, c.b6Runtimes, c.b6Conc, 2*settleIdle, c.b6Conc)
	case "B7":
		fmt.Fprintf(w, "- **B7 HTTP**: the example server testdata/go/httpserver (`GET /hello` answers 20 bytes from Go's\n"+
			"  `net/http`) loaded by `wrk -t%d -c%d --latency` (keep-alive connections) on the host network's loopback:\n"+
			"  (a) its wasip1 build through the shim (image wasm-httpserver, a listener preopened from\n"+
			"  `WAZERO_LISTEN=127.0.0.1:PORT`; the guest is one thread, as every wasip1 Go program) vs (b) the same\n"+
			"  source built for linux in a runc container (image native-httpserver; it listens on `WAZERO_LISTEN`\n"+
			"  itself, GOMAXPROCS %d). Both are started through the Go client with what `ctr run --net-host --env`\n"+
			"  puts in the spec, each on a free loopback port. After one unmeasured container of each (the wasm one\n"+
			"  compiles the module into the run's compilation cache), each of %d rounds starts a fresh container of\n"+
			"  every variant in turn (%s), polls `GET /health` until it answers (the time from Start is a note),\n"+
			"  checks `/hello`'s body, runs wrk for %s unmeasured (warm-up), then for %s measured, and kills and\n"+
			"  removes the container. One sample is one measured run: wrk's `Requests/sec` and its 99th percentile\n"+
			"  latency. wrk and the server share the machine's %d cores, so this compares the servers under the same\n"+
			"  conditions rather than finding either's ceiling. The notes add the server process's CPU time per\n"+
			"  request (utime+stime from `/proc/PID/stat`; for wasm the runner: wazero, the guest and the runner's\n"+
			"  `poll_oneoff` hook, whose cost under this load is in\n"+
			"  [networking.md](networking.md#how-it-works-and-its-limits)) and the project's goal for (a): at least\n"+
			"  0.5× the requests/s of (b). (b1) is (b) with `GOMAXPROCS=1`: one thread, as the wasip1 build has, to\n"+
			"  separate the cost of one thread from the cost of running Go's wasm code. (c) is the per-request mode (`WAZERO_WAGI`, image wasm-wagi): the runner\n"+
			"  serves HTTP itself and runs a fresh instance of the C handler testdata/c/wagi.c for every request\n"+
			"  (`GET /hello`, 16 bytes), at most 8 at once (the default); no other variant isolates requests.\n"+
			"  (a2), variant cli, is (a)'s module (testdata/build/httpserver.wasm) under `wazero run -listen ADDR\n"+
			"  -cachedir DIR` as a host process (no container, no shim), in a cgroup of its own as a container's\n"+
			"  process is (under load the cgroup changes the CPU per request): the engine alone, which (a) is compared\n"+
			"  with (issue 15 goal 5: within 10%%).\n",
			c.b7Threads, c.b7Conns, runtime.NumCPU(), c.b7Rounds, strings.ReplaceAll(c.b7Variants, ",", ", "), c.b7Warmup, c.b7Duration, runtime.NumCPU())
	}
}

// fullMarkdown is the whole file, from a run of every benchmark.
func fullMarkdown(c *config, rep *report, took time.Duration) []byte {
	var w bytes.Buffer
	fmt.Fprintf(&w, "# Benchmarks\n\n")
	fmt.Fprintf(&w, "Generated by `%s` (scripts/bench.sh → bench/) on %s; the whole run took %s.\n",
		c.command, time.Now().UTC().Format("2006-01-02 15:04 UTC"), took.Round(time.Second))
	fmt.Fprintf(&w, "Every benchmark alternates the wazero shim and its baseline (A B A B ...) on one private containerd, so\n"+
		"slow periods hit both. **The machine is shared with other engineers' test runs: expect noise**; compare\n"+
		"ratios from one run rather than absolute numbers across runs, and look at min as well as median.\n"+
		"`BENCH_ONLY=B7 scripts/bench.sh` (any subset) leaves this part alone and writes its results in a section\n"+
		"of its own at the end of the file; the next full run drops such sections. `BENCH_BASELINE_REF=COMMIT`\n"+
		"adds a build of the shim from that commit to B1-B4 and to B7's wazero variants, measured beside this one (before and after);\n"+
		"`BENCH_SHARED=1` adds to B1-B3, B5 and B6 the rows `wazero-shared`: the shim's shared-server mode (one server per namespace).\n\n")
	fmt.Fprintf(&w, "## Results\n\n")
	resultsTable(&w, rep)
	fmt.Fprintf(&w, "## What is measured\n\n")
	for _, name := range allBenchmarks {
		describe(&w, c, name)
		describeBefore(&w, c, name)
		describeShared(&w, c, name)
	}
	fmt.Fprintln(&w)
	fmt.Fprintf(&w, "## Machine and versions\n\n")
	machineAndVersions(&w, c)
	fmt.Fprintf(&w, "## Command\n\n```sh\n%s\n```\n\n", c.command)
	fmt.Fprint(&w, settingsLine(c, allBenchmarks))
	return w.Bytes()
}

// partialMarkdown is the section of a partial run.
func partialMarkdown(c *config, rep *report, took time.Duration, sel []string) string {
	var w bytes.Buffer
	only := strings.Join(sel, ",")
	title := strings.Join(sel, ", ")
	if c.beforeShimExe != "" {
		title += ", before" + tagOf(c) + " and after"
	}
	if c.sharedVariant {
		title += ", with the shared-server variant"
	}
	fmt.Fprintf(&w, "## Partial run: %s\n\n", title)
	fmt.Fprintf(&w, "Generated by `BENCH_ONLY=%s %s` on %s; the run took %s.\n"+
		"A section of its own: not part of the full run above (another time, another load on the shared\n"+
		"machine), so compare its rows with each other only. Another partial run of `BENCH_ONLY=%s`%s\n"+
		"replaces it; the next full `make bench` drops it.\n\n",
		only, c.command, time.Now().UTC().Format("2006-01-02 15:04 UTC"), took.Round(time.Second), only, againstBefore(c))
	resultsTable(&w, rep)
	fmt.Fprintf(&w, "What is measured:\n\n")
	for _, name := range sel {
		describe(&w, c, name)
		describeBefore(&w, c, name)
		describeShared(&w, c, name)
	}
	fmt.Fprintf(&w, "\nMachine and versions:\n\n")
	machineAndVersions(&w, c)
	fmt.Fprint(&w, settingsLine(c, sel))
	return w.String()
}

func joinInts(v []int) string {
	var s []string
	for _, x := range v {
		s = append(s, strconv.Itoa(x))
	}
	return strings.Join(s, ",")
}
