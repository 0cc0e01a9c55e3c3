package main

// B7: HTTP requests/s and latency of the example server (testdata/go/httpserver) under wrk, on the
// host network's loopback: (a) the wasip1 build through the wazero shim (a preopened listener of
// WAZERO_LISTEN) against (b) the same source built for linux in a runc container. Each round starts
// a fresh container of every variant in turn (a b a b ...), waits for its readiness path, warms it
// up, loads it with wrk for a fixed time, and removes it.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const (
	imgHTTPWasm    = "docker.io/library/wasm-httpserver:latest"   // testdata/build/images/httpserver.tar
	imgHTTPNative  = "docker.io/library/native-httpserver:latest" // testdata/build/images/native-httpserver.tar
	imgHTTPWAGI    = "docker.io/library/wasm-wagi:latest"         // testdata/build/images/wagi.tar
	httpReadyBound = 30 * time.Second                             // container Start to the readiness path answering
	clockTicks     = 100                                          // USER_HZ: the unit of utime/stime in /proc/PID/stat
)

// httpVariant is one server B7 loads.
type httpVariant struct {
	key      string // its name in -b7-variants (B7_VARIANTS)
	what     string // the results table's description
	image    string
	runtime  string
	wasm     bool     // the image's platform is wasip1/wasm
	addrEnv  string   // the environment variable that gets the server's address (127.0.0.1:PORT)
	env      []string // more of the container's environment (KEY=VALUE)
	ready    string   // polled until it answers 2xx before the load
	path     string   // what wrk requests
	want     string   // the body path must answer with ("" = any)
	baseline bool     // the others' ratios are to this one
	cli      bool     // not a container: the module under `wazero run` on the host (httpRunCLI)
}

// httpVariants are the servers B7 can compare, in the order each round runs them (-b7-variants
// selects and orders them; the default is "wasm,native").
var httpVariants = []httpVariant{
	{
		key: "wasm", what: "wazero: (a) wasip1 Go httpserver, preopened listener (`WAZERO_LISTEN`)",
		image: imgHTTPWasm, runtime: wasmRuntime, wasm: true, addrEnv: "WAZERO_LISTEN",
		ready: "/health", path: "/hello", want: "hello from wasm http",
	},
	{
		key: "native", what: "runc: (b) the same Go httpserver built for linux (baseline)",
		image: imgHTTPNative, runtime: runcRuntime, addrEnv: "WAZERO_LISTEN",
		ready: "/health", path: "/hello", want: "hello from wasm http", baseline: true,
	},
	{
		// Not a goal's baseline: it shows how much of (a)'s gap is the one thread every wasip1
		// program has, and how much is running Go's wasm code.
		key: "native1", what: "runc: (b1) the same native server with `GOMAXPROCS=1`, one thread as the wasip1 build",
		image: imgHTTPNative, runtime: runcRuntime, addrEnv: "WAZERO_LISTEN", env: []string{"GOMAXPROCS=1"},
		ready: "/health", path: "/hello", want: "hello from wasm http",
	},
	{
		// Goal 5 of issue 15: the shim's (a) against the engine alone on the same module.
		key: "cli", what: "`wazero run`: (a2) the same wasip1 module under the wazero CLI on the host (`-listen`, a cgroup of its own)",
		wasm: true, cli: true, ready: "/health", path: "/hello", want: "hello from wasm http",
	},
	{
		key: "wagi", what: "wazero: (c) per-request (WAGI) mode, a fresh instance of a C handler per request (`WAZERO_WAGI`)",
		image: imgHTTPWAGI, runtime: wasmRuntime, wasm: true, addrEnv: "WAZERO_WAGI",
		ready: "/hello", path: "/hello", want: "hello from wagi\n",
	},
}

// wrkResult is what B7 reads from `wrk --latency`.
type wrkResult struct {
	rps                   float64 // Requests/sec
	p50, p90, p99         float64 // latency percentiles, ms
	requests              int64
	connErr, readErr      int64
	writeErr, timeoutErrs int64
	non2xx                int64 // "Non-2xx or 3xx responses"
}

func (r wrkResult) errors() int64 {
	return r.connErr + r.readErr + r.writeErr + r.timeoutErrs + r.non2xx
}

// parseWrk parses the output of `wrk --latency`.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	var haveRPS, haveP99 bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return r, fmt.Errorf("wrk: Requests/sec %q: %v", f[1], err)
			}
			r.rps, haveRPS = v, true
		case len(f) == 2 && (f[0] == "50%" || f[0] == "90%" || f[0] == "99%"):
			v, err := wrkDuration(f[1])
			if err != nil {
				return r, err
			}
			switch f[0] {
			case "50%":
				r.p50 = v
			case "90%":
				r.p90 = v
			default:
				r.p99, haveP99 = v, true
			}
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			r.requests, _ = strconv.ParseInt(f[0], 10, 64)
		case len(f) >= 2 && f[0] == "Socket" && f[1] == "errors:":
			// Socket errors: connect 0, read 0, write 0, timeout 0
			for i := 2; i+1 < len(f); i += 2 {
				v, _ := strconv.ParseInt(strings.TrimSuffix(f[i+1], ","), 10, 64)
				switch f[i] {
				case "connect":
					r.connErr = v
				case "read":
					r.readErr = v
				case "write":
					r.writeErr = v
				case "timeout":
					r.timeoutErrs = v
				}
			}
		case strings.HasPrefix(strings.TrimSpace(sc.Text()), "Non-2xx or 3xx responses:"):
			r.non2xx, _ = strconv.ParseInt(f[len(f)-1], 10, 64)
		}
	}
	if !haveRPS || !haveP99 {
		return r, fmt.Errorf("wrk output without Requests/sec or a 99%% latency (was --latency given?):\n%s", out)
	}
	return r, nil
}

// wrkDuration converts wrk's latency notation (123.00us, 1.23ms, 2.00s, 1.00m) to milliseconds.
func wrkDuration(s string) (float64, error) {
	units := []struct {
		suffix string
		ms     float64
	}{{"us", 1e-3}, {"ms", 1}, {"s", 1e3}, {"m", 60e3}, {"h", 3600e3}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("wrk latency %q: %v", s, err)
			}
			return v * u.ms, nil
		}
	}
	return 0, fmt.Errorf("wrk latency %q: unknown unit", s)
}

// httpSample is one measured run of one variant.
type httpSample struct {
	wrk        wrkResult
	ready      time.Duration // Start to the first 2xx answer of the readiness path
	cpuPerReq  float64       // the server process's CPU time (user+system) during the load / requests, µs
	pssKB      int64         // the server process's PSS right after the load
	serverProc string        // what the pid was (runner or native server), for the notes
}

// wrk runs wrk against url for d and parses its output.
func (b *bencher) wrk(url string, d time.Duration) (wrkResult, string, error) {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	args := []string{"-t", strconv.Itoa(b.c.b7Threads), "-c", strconv.Itoa(b.c.b7Conns),
		"-d", strconv.Itoa(secs) + "s", "--latency", url}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs)*time.Second+time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, b.c.wrk, args...).CombinedOutput()
	cmd := "wrk " + strings.Join(args, " ")
	if err != nil {
		return wrkResult{}, cmd, fmt.Errorf("%s: %v: %s", cmd, err, out)
	}
	r, err := parseWrk(string(out))
	return r, cmd, err
}

// freeLoopbackPort returns a port of 127.0.0.1 that nothing listened on a moment ago.
func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// procCPU returns the user+system CPU time of a process (all its threads).
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 { // fields 14 and 15 of stat, counted from the state (field 3)
		return 0, fmt.Errorf("/proc/%d/stat: too short", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	sy, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return time.Duration(u+sy) * time.Second / clockTicks, nil
}

// httpGet does one GET with a short timeout and returns the status and body.
func httpGet(url string) (int, string, error) {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// httpRun starts one container of v on a free loopback port (host network), waits until it is
// ready and checks its answer; when measure is set it also warms it up and measures it with wrk.
// Then it removes the container.
func (b *bencher) httpRun(ctx context.Context, v httpVariant, img containerd.Image, measure bool) (s httpSample, err error) {
	if v.cli {
		return b.httpRunCLI(v, measure)
	}
	port, err := freeLoopbackPort()
	if err != nil {
		return s, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	id := b.id("http-" + v.key)
	logPath := filepath.Join(b.c.fifoDir, id+".log")
	defer os.Remove(logPath)
	withLog := func(err error) error {
		data, _ := os.ReadFile(logPath)
		return fmt.Errorf("%s (%s on %s): %w; container output: %q", id, v.key, addr, err, lastLines(string(data), 5))
	}
	// What `ctr run --net-host --env ADDRENV=ADDR` does to the spec.
	cont, err := b.cl.NewContainer(ctx, id,
		containerd.WithImage(img),
		containerd.WithSnapshotter(snapshotter),
		containerd.WithNewSnapshot(id, img),
		containerd.WithRuntime(v.runtime, nil),
		containerd.WithNewSpec(oci.WithImageConfig(img),
			oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostHostsFile, oci.WithHostResolvconf,
			oci.WithEnv(append([]string{v.addrEnv + "=" + addr}, v.env...))))
	if err != nil {
		return s, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), perTaskLimit)
		defer cancel()
		if derr := cont.Delete(cctx, containerd.WithSnapshotCleanup); derr != nil && err == nil {
			err = fmt.Errorf("delete container %s: %w", id, derr)
		}
	}()
	tk, err := cont.NewTask(ctx, cio.LogFile(logPath))
	if err != nil {
		return s, withLog(err)
	}
	exitCh, err := tk.Wait(ctx)
	if err != nil {
		tk.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill)
		return s, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), perTaskLimit)
		defer cancel()
		if kerr := tk.Kill(cctx, syscall.SIGKILL); kerr == nil {
			select {
			case <-exitCh:
			case <-cctx.Done():
			}
		}
		if _, derr := tk.Delete(cctx, containerd.WithProcessKill); derr != nil && err == nil {
			err = fmt.Errorf("delete task %s: %w", id, derr)
		}
	}()
	if err := tk.Start(ctx); err != nil {
		return s, withLog(err)
	}
	base := "http://" + addr
	exited := func() error {
		select {
		case st := <-exitCh:
			return fmt.Errorf("exited with status %d", st.ExitCode())
		default:
			return nil
		}
	}
	return b.httpLoad(v, base, int(tk.Pid()), measure, s, exited, withLog)
}

// httpRunCLI is httpRun for the variant under `wazero run` on the host: the module's process,
// its listener preopened by the CLI (-listen) at fd 3, as the shim's runner preopens it.
func (b *bencher) httpRunCLI(v httpVariant, measure bool) (s httpSample, err error) {
	port, err := freeLoopbackPort()
	if err != nil {
		return s, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	a := []string{"run", "-listen", addr, "-env", "WAZERO_LISTEN_FDS=3", "-env", "WAZERO_LISTEN=" + addr}
	if b.c.wazeroCache != "" {
		a = append(a, "-cachedir", b.c.wazeroCache)
	}
	cmd := exec.Command(b.c.wazero, append(a, b.c.httpserverWasm)...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return s, fmt.Errorf("wazero run %s: %w", b.c.httpserverWasm, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	// In a cgroup of its own, as each container's runner is: on a loaded machine a process in a
	// cgroup of its own gets the CPU as a group and costs more per request than one in the
	// bench's cgroup (docs/PERFORMANCE.md), so the comparison is like for like.
	uncg, cgErr := ownCgroup(filepath.Join(b.c.ns, fmt.Sprintf("wazero-run-%d", cmd.Process.Pid)), cmd.Process.Pid)
	defer func() {
		_ = cmd.Process.Kill()
		<-waited
		uncg()
	}()
	if cgErr != nil {
		return s, cgErr
	}
	withLog := func(err error) error {
		return fmt.Errorf("wazero run %s on %s: %w; output: %q", b.c.httpserverWasm, addr, err, lastLines(out.String(), 5))
	}
	exited := func() error {
		select {
		case err := <-waited:
			waited <- err
			return fmt.Errorf("exited: %v", err)
		default:
			return nil
		}
	}
	return b.httpLoad(v, "http://"+addr, cmd.Process.Pid, measure, httpSample{}, exited, withLog)
}

// httpLoad waits for v's server at base (process pid) to answer its readiness path, checks its
// answer, and unless !measure warms it up and loads it with wrk. exited tells whether the server
// has ended; withLog adds its output to an error.
func (b *bencher) httpLoad(v httpVariant, base string, pid int, measure bool, s httpSample, exited func() error, withLog func(error) error) (httpSample, error) {
	started := time.Now()
	for {
		code, _, gerr := httpGet(base + v.ready)
		if gerr == nil && code >= 200 && code < 300 {
			break
		}
		if err := exited(); err != nil {
			return s, withLog(fmt.Errorf("%v before %s answered", err, v.ready))
		}
		if time.Since(started) > httpReadyBound {
			return s, withLog(fmt.Errorf("GET %s: no 2xx answer in %s: status %d, %v", v.ready, httpReadyBound, code, gerr))
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.ready = time.Since(started)
	if code, body, gerr := httpGet(base + v.path); gerr != nil || code != 200 || (v.want != "" && body != v.want) {
		return s, withLog(fmt.Errorf("GET %s: %d %q, %v; want 200 %q", v.path, code, body, gerr, v.want))
	}
	if !measure {
		return s, nil
	}
	if b.c.b7Warmup > 0 {
		if _, _, err := b.wrk(base+v.path, b.c.b7Warmup); err != nil {
			return s, withLog(fmt.Errorf("warm-up: %w", err))
		}
	}
	cpu0, err := procCPU(pid)
	if err != nil {
		return s, err
	}
	r, _, err := b.wrk(base+v.path, b.c.b7Duration)
	if err != nil {
		return s, withLog(err)
	}
	cpu1, err := procCPU(pid)
	if err != nil {
		return s, err
	}
	if r.requests == 0 {
		return s, withLog(fmt.Errorf("wrk completed no request"))
	}
	s.wrk = r
	s.cpuPerReq = float64(cpu1-cpu0) / float64(time.Microsecond) / float64(r.requests)
	s.pssKB, _ = pssOf(pid)
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	s.serverProc = filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
	if err := exited(); err != nil {
		return s, withLog(fmt.Errorf("%v during the load", err))
	}
	return s, nil
}

// b7 runs every selected variant once per round, in order, and reports req/s and p99.
func (b *bencher) b7(ctx context.Context, rep *report) error {
	var vs []httpVariant
	for _, k := range strings.Split(b.c.b7Variants, ",") {
		k = strings.TrimSpace(k)
		found := false
		for _, v := range httpVariants {
			if v.key == k {
				vs, found = append(vs, v), true
			}
		}
		if !found {
			return fmt.Errorf("-b7-variants: unknown variant %q", k)
		}
	}
	if b.c.beforeShimExe != "" {
		// Each wazero variant also through the earlier shim build, right before it in each round.
		var with []httpVariant
		for _, v := range vs {
			if v.runtime == wasmRuntime {
				e := v
				e.key, e.runtime = v.key+"-before", b.c.beforeShimExe
				e.what = rtName(e.runtime) + b.beforeTag(e.runtime) + strings.TrimPrefix(v.what, "wazero")
				with = append(with, e)
			}
			with = append(with, v)
		}
		vs = with
	}
	imgs := map[string]containerd.Image{}
	for _, v := range vs {
		if v.cli {
			continue
		}
		img, err := b.image(ctx, v.image, v.wasm)
		if err != nil {
			return fmt.Errorf("%s: %w (is its image imported? scripts/bench.sh, B7 images)", v.key, err)
		}
		imgs[v.key] = img
	}
	// One unmeasured container of each first: it checks the setup, and the first wasm container of
	// a run compiles its module into the run's empty compilation cache, so that every measured one
	// loads it from there (a runner that compiled keeps more memory).
	for _, v := range vs {
		if _, err := b.httpRun(ctx, v, imgs[v.key], false); err != nil {
			return fmt.Errorf("first (unmeasured) container: %w", err)
		}
	}
	samples := map[string][]httpSample{}
	for i := 0; i < b.c.b7Rounds; i++ {
		var parts []string
		for _, v := range vs {
			var s httpSample
			var err error
			for try := 0; try < 3; try++ { // a run that fails before its load is retried
				if s, err = b.httpRun(ctx, v, imgs[v.key], true); err == nil || s.wrk.requests > 0 {
					break
				}
				b.fail("B7 "+v.key, err)
			}
			if err != nil {
				return err
			}
			samples[v.key] = append(samples[v.key], s)
			parts = append(parts, fmt.Sprintf("%s %.0f req/s p99 %.2f ms", v.key, s.wrk.rps, s.wrk.p99))
		}
		log.Printf("B7 round %d: %s", i+1, strings.Join(parts, ", "))
	}

	get := func(k string, f func(httpSample) float64) []float64 {
		var out []float64
		for _, s := range samples[k] {
			out = append(out, f(s))
		}
		return out
	}
	rps := func(s httpSample) float64 { return s.wrk.rps }
	p99 := func(s httpSample) float64 { return s.wrk.p99 }
	load := fmt.Sprintf("`wrk -t%d -c%d -d%s --latency` on `GET /hello`", b.c.b7Threads, b.c.b7Conns, b.c.b7Duration)
	var base *httpVariant
	for i := range vs {
		if vs[i].baseline {
			base = &vs[i]
		}
	}
	// Baseline rows first, as in the other benchmarks.
	order := vs
	if base != nil {
		order = []httpVariant{*base}
		for _, v := range vs {
			if !v.baseline {
				order = append(order, v)
			}
		}
	}
	for _, m := range []struct {
		id, unit, what string
		f              func(httpSample) float64
		higher         bool
	}{
		{"B7 req/s", "req/s", "requests/s, " + load + ", loopback, host network", rps, true},
		{"B7 p99", "ms", "p99 latency of the same runs", p99, false},
	} {
		var baseRow *row
		rows := map[string]*row{}
		for _, v := range order {
			what := v.what + ": " + m.what
			if v.baseline {
				baseRow = rep.add(m.id, what, m.unit, get(v.key, m.f), nil, m.higher)
				continue
			}
			r := rep.add(m.id, what, m.unit, get(v.key, m.f), baseRow, m.higher)
			r.solo = baseRow == nil
			rows[v.key] = r
		}
		for k, r := range rows {
			r.before = rows[k+"-before"] // the earlier shim build's run of the same variant
		}
	}

	// Notes: the rest of wrk's numbers, the server's CPU per request and memory, start to ready.
	var keys, p50s, p90s, cpus, pss, ready, errs []string
	for _, v := range order {
		keys = append(keys, v.key)
		p50s = append(p50s, fmtNum(median(get(v.key, func(s httpSample) float64 { return s.wrk.p50 }))))
		p90s = append(p90s, fmtNum(median(get(v.key, func(s httpSample) float64 { return s.wrk.p90 }))))
		cpus = append(cpus, fmtNum(median(get(v.key, func(s httpSample) float64 { return s.cpuPerReq }))))
		pss = append(pss, fmtNum(median(get(v.key, func(s httpSample) float64 { return float64(s.pssKB) / 1024 }))))
		ready = append(ready, fmt.Sprintf("%.0f", median(get(v.key, func(s httpSample) float64 { return ms(s.ready) }))))
		var n int64
		for _, s := range samples[v.key] {
			n += s.wrk.errors()
		}
		errs = append(errs, strconv.FormatInt(n, 10))
	}
	vsList := strings.Join(keys, " vs ")
	rep.note("B7 (%s, median of %d rounds): latency p50 %s ms, p90 %s ms; the server process's CPU time (user+system, %s) per request %s µs; its PSS after the load %s MiB; container Start until its readiness path answered %s ms; wrk socket errors and non-2xx answers in all rounds: %s.",
		vsList, b.c.b7Rounds, strings.Join(p50s, " vs "), strings.Join(p90s, " vs "), serverProcs(order, samples),
		strings.Join(cpus, " vs "), strings.Join(pss, " vs "), strings.Join(ready, " vs "), strings.Join(errs, " vs "))
	if base != nil {
		for _, v := range order {
			if v.baseline {
				continue
			}
			x := median(get(v.key, rps)) / median(get(base.key, rps))
			if v.key != "wasm" {
				// The goal is the long-lived server's; the per-request mode runs another program
				// (a C handler) and isolates every request, which neither server does.
				rep.note("B7 %s: %.2f× the requests/s of %s (median).", v.key, x, base.key)
				continue
			}
			verdict := "met"
			if x < 0.5 {
				verdict = "**not met**"
			}
			rep.note("B7 %s: %.2f× the requests/s of %s (median); the project's goal of at least 0.5× is %s.", v.key, x, base.key, verdict)
		}
	}
	return nil
}

// serverProcs names the process whose CPU and memory the notes give, per variant.
func serverProcs(order []httpVariant, samples map[string][]httpSample) string {
	var out []string
	for _, v := range order {
		name := "?"
		if s := samples[v.key]; len(s) > 0 && s[0].serverProc != "" {
			name = s[0].serverProc
		}
		switch {
		case v.cli:
			name += ": the CLI, wazero and guest"
		case v.wasm:
			name += ": the runner, wazero and guest"
		}
		out = append(out, name)
	}
	return strings.Join(out, " vs ")
}

// ownCgroup moves pid into the cgroup name (a path relative to each hierarchy's root, at most two
// levels deep): in every
// v1 hierarchy that has a controller (as runc places a container), or in the unified hierarchy
// (cgroup v2). It returns what removes the cgroups, to call once pid has exited.
func ownCgroup(name string, pid int) (func(), error) {
	var roots []string
	if strings.HasPrefix(cgroupMode(), "v2") {
		roots = []string{"/sys/fs/cgroup"}
	} else {
		for _, c := range []string{"cpu", "cpuacct", "memory", "pids", "blkio"} {
			if fi, err := os.Stat(filepath.Join("/sys/fs/cgroup", c)); err == nil && fi.IsDir() {
				roots = append(roots, filepath.Join("/sys/fs/cgroup", c))
			}
		}
	}
	var made []string
	undo := func() {
		for i := len(made) - 1; i >= 0; i-- {
			_ = os.Remove(made[i])
		}
	}
	for _, r := range roots {
		d := filepath.Join(r, name)
		if _, err := os.Stat(filepath.Dir(d)); os.IsNotExist(err) && filepath.Dir(d) != r {
			made = append(made, filepath.Dir(d)) // removed after d (one level: name has two at most)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			undo()
			return func() {}, fmt.Errorf("cgroup %s: %w", d, err)
		}
		made = append(made, d)
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			undo()
			return func() {}, fmt.Errorf("move process %d into cgroup %s: %w", pid, d, err)
		}
	}
	return undo, nil
}
