package main

// B5 and B6: pods through the daemon's CRI plugin, driven by crictl the way the integration tests
// (and, by the same gRPC calls, the kubelet) do: `crictl runp --runtime HANDLER`, `crictl create`,
// `crictl start`, `crictl inspect`, `crictl stopp`, `crictl rmp`. Every pod uses the host network
// (no CNI). CRI objects live in containerd namespace -cri-namespace (k8s.io); scripts/bench.sh
// imports the sandbox image (pause.tar) and wasmtest (platform wasip1/wasm) there.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	criImgWasm   = imgWasmTest // entrypoint /testprog.wasm
	criImgPause  = imgPause    // the pinned sandbox image; /pause as a runc workload
	criStateRun  = "CONTAINER_RUNNING"
	crictlBound  = 2 * time.Minute // bound of one crictl invocation
	crictlTO     = "60s"           // crictl --timeout (per CRI call)
	runningBound = time.Minute     // container start to CONTAINER_RUNNING
)

// handler is a variant of B5 and B6: a CRI runtime handler of the daemon's config (scripts/lib.sh),
// the workload its pods run, and the annotations its pods carry. name is the variant's key and
// report label; it is also the handler `crictl runp --runtime` names unless cri is set.
type handler struct {
	name, rt, image, what string
	args                  []string
	// cri is the runtime handler, when it is not name (wazero-shared runs handler wazero).
	cri string
	// annotations go into the PodSandboxConfig's "annotations" (nil: none); the daemon's
	// pod_annotations = ["wazero.dev/*"] passes them on to the runtime for the sandbox and its
	// containers.
	annotations map[string]string
}

var (
	hWasm = handler{name: "wazero", rt: wasmRuntime, image: criImgWasm, what: "`/testprog.wasm sleep 3600`", args: []string{"sleep", "3600"}}
	hRunc = handler{name: "runc", rt: runcRuntime, image: criImgPause, what: "`/pause`"}
	// hShared is the shared-server variant (shared.go): handler wazero, its pods annotated
	// wazero.dev/shared-server=30s, so one server per namespace serves every pod of the variant.
	hShared = handler{name: sharedVariant, rt: sharedVariant, image: criImgWasm, what: hWasm.what, args: hWasm.args,
		cri: hWasm.name, annotations: variantAnnotations(sharedVariant)}
)

// runtimeHandler is the CRI runtime handler the variant's pods run with.
func (h handler) runtimeHandler() string {
	if h.cri != "" {
		return h.cri
	}
	return h.name
}

func (h handler) label() string { return h.name + " (handler " + h.runtimeHandler() + ")" }

// podConfig is the PodSandboxConfig (crictl runp's JSON) of pod name of variant h, its logs under
// dir: host network, and h's annotations if it has any.
func podConfig(h handler, name, dir string) map[string]any {
	c := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "bench", "uid": name, "attempt": 0},
		"log_directory": filepath.Join(dir, "logs"),
		"linux":         map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"network": 2}}},
	}
	if len(h.annotations) > 0 {
		c["annotations"] = h.annotations
	}
	return c
}

// crictl runs crictl against the daemon's CRI endpoint and returns its trimmed stdout.
func (b *bencher) crictl(args ...string) (string, error) {
	ep := "unix://" + b.c.address
	full := append([]string{"--config", b.crictlCfg, "--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", crictlTO}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), crictlBound)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.c.crictl, full...)
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "CONTAINER_RUNTIME_ENDPOINT", "IMAGE_SERVICE_ENDPOINT", "CRI_CONFIG_FILE":
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("timed out after %s", crictlBound)
		}
		return "", fmt.Errorf("crictl %s: %v: %s", strings.Join(args, " "), err, lastLines(errb.String(), 3))
	}
	return strings.TrimSpace(out.String()), nil
}

// criPhases of one pod start.
type criPhases struct{ runp, create, start, running, total time.Duration }

type criPod struct{ pod, ctr string }

// recordIDs appends CRI ids to -cri-ids (scripts/bench.sh removes their cgroups if a run fails).
func (b *bencher) recordIDs(ids ...string) {
	if b.c.criIDs == "" {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	f, err := os.OpenFile(b.c.criIDs, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	for _, id := range ids {
		fmt.Fprintln(f, id)
	}
}

func writeJSONFile(p string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(p, data, 0o644)
}

// criStart runs one host-network pod with one container and waits until crictl inspect reports
// the container CONTAINER_RUNNING. The config files are written before the clock starts. On
// failure what was created is removed again (and the error returned).
func (b *bencher) criStart(h handler, prefix string) (criPod, criPhases, error) {
	var p criPod
	var ph criPhases
	name := b.id(prefix)
	dir := filepath.Join(b.c.workDir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return p, ph, err
	}
	defer os.RemoveAll(dir) // config files and empty logs only; the CRI plugin keeps its own copy
	podCfg := filepath.Join(dir, "pod.json")
	ctrCfg := filepath.Join(dir, "ctr.json")
	if err := writeJSONFile(podCfg, podConfig(h, name, dir)); err != nil {
		return p, ph, err
	}
	c := map[string]any{
		"metadata": map[string]any{"name": "w", "attempt": 0},
		"image":    map[string]any{"image": h.image},
		"log_path": "w-0.log",
		"linux":    map[string]any{},
	}
	if h.args != nil {
		c["args"] = h.args
	}
	if err := writeJSONFile(ctrCfg, c); err != nil {
		return p, ph, err
	}
	fail := func(err error) (criPod, criPhases, error) {
		if p.pod != "" {
			b.criRemove(p.pod)
		}
		return criPod{}, criPhases{}, err
	}
	t0 := time.Now()
	id, err := b.crictl("runp", "--runtime", h.runtimeHandler(), podCfg)
	if err != nil {
		return fail(err)
	}
	p.pod = id
	b.recordIDs(id)
	t1 := time.Now()
	id, err = b.crictl("create", p.pod, ctrCfg, podCfg)
	if err != nil {
		return fail(err)
	}
	p.ctr = id
	b.recordIDs(id)
	t2 := time.Now()
	if _, err := b.crictl("start", p.ctr); err != nil {
		return fail(err)
	}
	t3 := time.Now()
	for {
		out, err := b.crictl("inspect", "-o", "json", p.ctr)
		if err != nil {
			return fail(err)
		}
		var ci struct {
			Status struct {
				State    string `json:"state"`
				ExitCode int    `json:"exitCode"`
				Reason   string `json:"reason"`
			} `json:"status"`
		}
		if err := json.Unmarshal([]byte(out), &ci); err != nil {
			return fail(fmt.Errorf("crictl inspect %s: %v", p.ctr, err))
		}
		if ci.Status.State == criStateRun {
			break
		}
		if ci.Status.State == "CONTAINER_EXITED" || time.Since(t3) > runningBound {
			return fail(fmt.Errorf("container %s: state %s (exit %d, %q), want %s", p.ctr, ci.Status.State, ci.Status.ExitCode, ci.Status.Reason, criStateRun))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t4 := time.Now()
	ph = criPhases{runp: t1.Sub(t0), create: t2.Sub(t1), start: t3.Sub(t2), running: t4.Sub(t3), total: t4.Sub(t0)}
	return p, ph, nil
}

// criRemove stops and removes a pod with its containers (crictl stopp, rmp --force).
func (b *bencher) criRemove(pod string) error {
	var errs []error
	for _, a := range [][]string{{"stopp", pod}, {"rmp", "--force", pod}} {
		if _, err := b.crictl(a...); err != nil && !strings.Contains(err.Error(), "not found") {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// criStartRetry: criStart, up to 3 tries (failures are counted under key).
func (b *bencher) criStartRetry(h handler, prefix, key string) (criPod, criPhases, error) {
	var err error
	for i := 0; i < 3; i++ {
		var p criPod
		var ph criPhases
		if p, ph, err = b.criStart(h, prefix); err == nil {
			return p, ph, nil
		}
		b.fail(key, err)
	}
	return criPod{}, criPhases{}, err
}

// b5Handlers are the variants each round of B5 runs, in order: wazero, then (with -shared-variant)
// wazero-shared, then runc.
func (b *bencher) b5Handlers() []handler {
	if b.c.sharedVariant {
		return []handler{hWasm, hShared, hRunc}
	}
	return []handler{hWasm, hRunc}
}

// B5: CRI pod start, runp to CONTAINER_RUNNING, wazero vs runc, interleaved.
func (b *bencher) b5(ctx context.Context, rep *report) error {
	hs := b.b5Handlers()
	// One untimed pod of each first (unpacks, page cache; wazero-shared's starts its server, which
	// lingers 30 s after each pod and so serves every round).
	for _, h := range hs {
		p, _, err := b.criStartRetry(h, "b5warm-"+h.name, "B5 "+h.name)
		if err != nil {
			return err
		}
		if err := b.criRemove(p.pod); err != nil {
			return err
		}
	}
	ph := map[string][]criPhases{}
	for i := 0; i < b.c.b5Rounds; i++ {
		for _, h := range hs {
			p, x, err := b.criStartRetry(h, "b5-"+h.name, "B5 "+h.name)
			if err != nil {
				return err
			}
			ph[h.name] = append(ph[h.name], x)
			if err := b.criRemove(p.pod); err != nil { // teardown is not timed
				return err
			}
		}
		var line []string
		for _, h := range hs {
			line = append(line, fmt.Sprintf("%s %.0f ms", h.name, ms(ph[h.name][i].total)))
		}
		log.Printf("B5 round %d: %s", i+1, strings.Join(line, ", "))
	}
	b5Report(rep, hs, ph)
	return nil
}

// b5Report adds B5's rows (runc the baseline, then wazero, then wazero-shared if measured) and its
// phases note, from the phases of every round of each variant of hs.
func b5Report(rep *report, hs []handler, ph map[string][]criPhases) {
	tot := func(h string) []float64 {
		var s []float64
		for _, p := range ph[h] {
			s = append(s, ms(p.total))
		}
		return s
	}
	base := rep.add("B5", "runc: CRI host-network pod, `/pause` workload, `crictl runp`+`create`+`start` until `crictl inspect` says CONTAINER_RUNNING (baseline)", "ms", tot("runc"), nil, false)
	rep.add("B5", "wazero: CRI host-network pod, `/testprog.wasm sleep 3600`, same steps", "ms", tot("wazero"), base, false)
	if len(ph[sharedVariant]) > 0 {
		rep.add("B5", fmt.Sprintf("%s: the same pod with the pod annotation `%s=%s` (handler wazero; one server per namespace), same steps",
			sharedVariant, sharedServerAnnotation, sharedLingerValue()), "ms", tot(sharedVariant), base, false)
	}
	med := func(h string, f func(criPhases) time.Duration) float64 {
		var s []float64
		for _, p := range ph[h] {
			s = append(s, ms(f(p)))
		}
		return median(s)
	}
	var names []string
	for _, h := range hs {
		names = append(names, h.name)
	}
	var parts []string
	for _, x := range []struct {
		n string
		f func(criPhases) time.Duration
	}{
		{"`runp`", func(p criPhases) time.Duration { return p.runp }},
		{"`create`", func(p criPhases) time.Duration { return p.create }},
		{"`start`", func(p criPhases) time.Duration { return p.start }},
		{"`inspect` until RUNNING", func(p criPhases) time.Duration { return p.running }},
	} {
		var v []string
		for _, h := range names {
			v = append(v, fmt.Sprintf("%.0f", med(h, x.f)))
		}
		parts = append(parts, x.n+" "+strings.Join(v, " vs "))
	}
	rep.note("B5 phases (median ms, each a crictl process; %s): %s.", strings.Join(names, " vs "), strings.Join(parts, "; "))
}

// ---- B6 density ------------------------------------------------------------------------------

// resources is a snapshot of what bounds density.
type resources struct {
	memAvailKB             int64 // machine MemAvailable
	daemonPssKB, daemonRSS int64
	daemonFDs              int
	daemonThreads          int
	threads                int // all threads on the machine (/proc/loadavg)
}

func (r resources) String() string {
	return fmt.Sprintf("MemAvailable %.0f MiB, containerd PSS %.0f MiB / RSS %.0f MiB, %d fds, %d threads; %d threads on the machine (pid_max %s)",
		float64(r.memAvailKB)/1024, float64(r.daemonPssKB)/1024, float64(r.daemonRSS)/1024, r.daemonFDs, r.daemonThreads, r.threads, readTrim("/proc/sys/kernel/pid_max"))
}

func readTrim(p string) string {
	data, _ := os.ReadFile(p)
	return strings.TrimSpace(string(data))
}

func meminfo(key string) int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fl := strings.Fields(sc.Text()); len(fl) >= 2 && fl[0] == key+":" {
			v, _ := strconv.ParseInt(fl[1], 10, 64)
			return v
		}
	}
	return 0
}

func statusField(pid int, key string) int64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(data), "\n") {
		if fl := strings.Fields(l); len(fl) >= 2 && fl[0] == key+":" {
			v, _ := strconv.ParseInt(fl[1], 10, 64)
			return v
		}
	}
	return 0
}

func (b *bencher) snapshot() resources {
	r := resources{memAvailKB: meminfo("MemAvailable")}
	if pid := b.c.daemonPid; pid > 0 {
		r.daemonPssKB, _ = pssOf(pid)
		r.daemonRSS = statusField(pid, "VmRSS")
		r.daemonThreads = int(statusField(pid, "Threads"))
		if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
			r.daemonFDs = len(ents)
		}
	}
	if f := strings.Fields(readTrim("/proc/loadavg")); len(f) >= 4 {
		if i := strings.IndexByte(f[3], '/'); i >= 0 {
			r.threads, _ = strconv.Atoi(f[3][i+1:])
		}
	}
	return r
}

// density is what one B6 run found.
type density struct {
	h                   handler
	want, reached       int
	startTook, tearTook time.Duration
	lsTook              time.Duration
	pssMiB              float64
	procs               int
	tasksRunning, tasks int
	crictlRunning       int
	before, full, after resources
	stopErr             string // why starting stopped before want, if it did
	failed              int64  // pod starts that failed (retried)
	left                []string
	tearErrs            int
	tearFirst           string
	crictlPSTook        time.Duration
	// The shared-server variant only: the server processes its pods' tasks ran under (want 1), and
	// how long after teardown the bench waited for the server to exit (its linger), and whether it did.
	servers    int
	serverWait time.Duration
	serverGone bool
}

// b6 starts N idle pods of each handler (wazero, then runc if asked for), measures, tears down.
func (b *bencher) b6(ctx context.Context, rep *report) error {
	hs, err := b6Handlers(b.c.b6Runtimes, b.c.sharedVariant)
	if err != nil {
		return err
	}
	res := map[string]*density{}
	for _, h := range hs {
		d, err := b.density(ctx, h, b.c.b6N)
		if err != nil {
			return err
		}
		res[h.name] = d
	}
	b6Rows(rep, res, b.c.b6Conc)
	b6Notes(rep, hs, res, b.c.b6Conc)
	return nil
}

// b6Rows adds B6's rows from the batches in res (by variant name): PSS per pod, then the time to
// start them all; runc's is the baseline of each when it ran, wazero's and wazero-shared's rows
// are solo otherwise.
func b6Rows(rep *report, res map[string]*density, conc int) {
	var base *row
	if d := res["runc"]; d != nil {
		base = rep.add(fmt.Sprintf("B6 x%d", d.reached), fmt.Sprintf("runc: %d idle host-network pods, %s workload, PSS of shims + pause + workload per pod (baseline, %d processes)", d.reached, d.h.what, d.procs), "MiB", []float64{d.pssMiB / float64(d.reached)}, nil, false)
	}
	if d := res["wazero"]; d != nil {
		x := rep.add(fmt.Sprintf("B6 x%d", d.reached), fmt.Sprintf("wazero: %d idle host-network pods, %s, PSS of shims + runners per pod (%d processes)", d.reached, d.h.what, d.procs), "MiB", []float64{d.pssMiB / float64(d.reached)}, base, false)
		x.solo = base == nil
	}
	if d := res[sharedVariant]; d != nil {
		x := rep.add(fmt.Sprintf("B6 x%d", d.reached), fmt.Sprintf("%s: the same %d pods with the pod annotation `%s=%s`, PSS of the shared server + runners per pod (%d processes)", sharedVariant, d.reached, sharedServerAnnotation, sharedLingerValue(), d.procs), "MiB", []float64{d.pssMiB / float64(d.reached)}, base, false)
		x.solo = base == nil
	}
	var tbase *row
	if d := res["runc"]; d != nil {
		tbase = rep.add(fmt.Sprintf("B6 x%d", d.reached), fmt.Sprintf("runc: time to start all %d pods, %d at a time (baseline)", d.reached, conc), "s", []float64{d.startTook.Seconds()}, nil, false)
	}
	if d := res["wazero"]; d != nil {
		x := rep.add(fmt.Sprintf("B6 x%d", d.reached), fmt.Sprintf("wazero: time to start all %d pods, %d at a time", d.reached, conc), "s", []float64{d.startTook.Seconds()}, tbase, false)
		x.solo = tbase == nil
	}
	if d := res[sharedVariant]; d != nil {
		x := rep.add(fmt.Sprintf("B6 x%d", d.reached), fmt.Sprintf("%s: time to start all %d pods, %d at a time", sharedVariant, d.reached, conc), "s", []float64{d.startTook.Seconds()}, tbase, false)
		x.solo = tbase == nil
	}
}

// b6Notes adds B6's notes on each batch of hs (results in res).
func b6Notes(rep *report, hs []handler, res map[string]*density, conc int) {
	for _, h := range hs {
		d := res[h.name]
		mib := func(kb int64) float64 { return float64(kb) / 1024 }
		perPod := func(a, z int64) float64 { return float64(z-a) / 1024 / float64(max(d.reached, 1)) }
		rep.note("B6 %s: %d of %d pods running after %s (%.1f pods/s; %d failed pod starts, retried); %d processes (shims, runners/containers); PSS %.0f MiB in all, **%.2f MiB per pod**.",
			h.name, d.reached, d.want, d.startTook.Round(time.Second), float64(d.reached)/d.startTook.Seconds(), d.failed, d.procs, d.pssMiB, d.pssMiB/float64(max(d.reached, 1)))
		rep.note("B6 %s: every task answers State: `ctr -n k8s.io task ls` (containerd asks each shim) listed %d tasks, %d RUNNING (want %d: sandbox + container per pod), in %s; `crictl ps -q --state Running` listed %d (in %s).",
			h.name, d.tasks, d.tasksRunning, 2*d.reached, d.lsTook.Round(time.Millisecond), d.crictlRunning, d.crictlPSTook.Round(time.Millisecond))
		rep.note("B6 %s: containerd (the daemon, CRI plugin included) PSS %.0f → %.0f MiB with all pods up (%+.2f MiB per pod), %.0f MiB after teardown; its fds %d → %d, threads %d → %d. Machine MemAvailable %.0f → %.0f MiB (%.2f MiB per pod; shared machine, other processes move it too), %.0f MiB after teardown; threads on the machine %d → %d.",
			h.name, mib(d.before.daemonPssKB), mib(d.full.daemonPssKB), perPod(d.before.daemonPssKB, d.full.daemonPssKB), mib(d.after.daemonPssKB),
			d.before.daemonFDs, d.full.daemonFDs, d.before.daemonThreads, d.full.daemonThreads,
			mib(d.before.memAvailKB), mib(d.full.memAvailKB), perPod(d.full.memAvailKB, d.before.memAvailKB), mib(d.after.memAvailKB), d.before.threads, d.full.threads)
		tear := fmt.Sprintf("B6 %s: teardown (`crictl stopp` + `rmp --force`, %d at a time) took %s", h.name, conc, d.tearTook.Round(time.Second))
		if d.tearErrs > 0 {
			tear += fmt.Sprintf(", %d error(s), first: `%s`", d.tearErrs, d.tearFirst)
		}
		if len(d.left) == 0 {
			tear += "; nothing left (no pods or containers in CRI, no tasks, no shim/runner processes, no cgroups or mounts of the pods)."
		} else {
			tear += "; **left behind**: " + strings.Join(d.left, "; ")
		}
		rep.note("%s", tear)
		if d.stopErr != "" {
			rep.note("**B6 %s stopped at %d of %d pods**: %s", h.name, d.reached, d.want, d.stopErr)
		}
		if h.name == sharedVariant {
			rep.note("%s", sharedDensityNote(d))
		}
	}
}

// b6Handlers are the variants B6 runs, in order: those of -b6-runtimes (wazero, runc, in the
// order given), and with -shared-variant wazero-shared right after wazero (first if wazero is not
// asked for), so that runc's batch, if any, comes last.
func b6Handlers(list string, shared bool) ([]handler, error) {
	var hs []handler
	for _, s := range strings.Split(list, ",") {
		switch strings.TrimSpace(s) {
		case "wazero":
			hs = append(hs, hWasm)
			if shared {
				hs = append(hs, hShared)
			}
		case "runc":
			hs = append(hs, hRunc)
		case "":
		default:
			return nil, fmt.Errorf("bad -b6-runtimes %q", list)
		}
	}
	if shared && !slices.ContainsFunc(hs, func(h handler) bool { return h.name == sharedVariant }) {
		hs = append([]handler{hShared}, hs...)
	}
	return hs, nil
}

// density starts n pods of h, c.b6Conc at a time, measures, and removes them.
func (b *bencher) density(ctx context.Context, h handler, n int) (*density, error) {
	d := &density{h: h, want: n}
	d.before = b.snapshot()
	log.Printf("B6 %s: before: %s", h.name, d.before)
	var mu sync.Mutex
	var pods []criPod
	var next, stop atomic.Int64
	var giveUps atomic.Int64
	var stopErr string
	key := "B6 " + h.name
	t0 := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < b.c.b6Conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for stop.Load() == 0 && next.Add(1) <= int64(n) {
				var p criPod
				var err error
				ok := false
				for try := 0; try < 3; try++ {
					if p, _, err = b.criStart(h, "b6-"+h.name); err == nil {
						ok = true
						break
					}
					b.fail(key, err)
				}
				mu.Lock()
				if ok {
					pods = append(pods, p)
					if len(pods)%50 == 0 {
						log.Printf("B6 %s: %d pods up after %s; %s", h.name, len(pods), time.Since(t0).Round(time.Second), b.snapshot())
					}
				} else if giveUps.Add(1) >= 3 && stop.Load() == 0 {
					// Three pods that failed three times each: the machine or the daemon is at a limit.
					stop.Store(1)
					stopErr = fmt.Sprintf("three pods failed to start three times each; last error: `%s`; at that point: %s",
						strings.Join(strings.Fields(err.Error()), " "), b.snapshot())
					log.Printf("B6 %s: stopping at %d pods: %s", h.name, len(pods), stopErr)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	d.startTook = time.Since(t0)
	d.reached, d.stopErr = len(pods), stopErr
	d.failed = int64(b.failureCount(key))
	log.Printf("B6 %s: %d pods up in %s", h.name, d.reached, d.startTook.Round(time.Millisecond))

	err := func() error {
		if d.reached == 0 {
			return fmt.Errorf("no pod started: %s", stopErr)
		}
		time.Sleep(2 * settleIdle)
		var kb int64
		var procs int
		var err error
		if h.name == sharedVariant {
			// From the pods' task pids: the shared server once, with every runner under it, and
			// not a server left by an earlier batch or benchmark (pss.go, pssOfTasks).
			kb, procs, d.servers, err = b.pssOfPods(h, pods)
		} else {
			kb, procs, err = b.pss(h.rt)
		}
		if err != nil {
			return err
		}
		d.pssMiB, d.procs = float64(kb)/1024, procs
		d.full = b.snapshot()
		t := time.Now()
		out, err := exec.Command(b.c.ctr, "--address", b.c.address, "-n", b.c.criNS, "task", "ls").CombinedOutput()
		d.lsTook = time.Since(t)
		if err != nil {
			return fmt.Errorf("ctr task ls: %v: %s", err, lastLines(string(out), 3))
		}
		d.tasks, d.tasksRunning, _ = parseTaskLs(string(out), podIDs(pods))
		ours := podIDs(pods)
		t = time.Now()
		ps, err := b.crictl("ps", "-q", "--state", "Running")
		d.crictlPSTook = time.Since(t)
		if err != nil {
			return err
		}
		for _, id := range strings.Fields(ps) {
			if ours[id] {
				d.crictlRunning++
			}
		}
		log.Printf("B6 %s: PSS %.0f MiB (%d processes, %.2f MiB/pod); task ls %d/%d RUNNING; crictl ps %d; %s",
			h.name, d.pssMiB, d.procs, d.pssMiB/float64(d.reached), d.tasksRunning, d.tasks, d.crictlRunning, d.full)
		return nil
	}()

	// Teardown, c.b6Conc at a time, even after an error above.
	t := time.Now()
	jobs := make(chan criPod)
	var twg sync.WaitGroup
	for w := 0; w < b.c.b6Conc; w++ {
		twg.Add(1)
		go func() {
			defer twg.Done()
			for p := range jobs {
				if e := b.criRemove(p.pod); e != nil {
					mu.Lock()
					d.tearErrs++
					if d.tearFirst == "" {
						d.tearFirst = strings.Join(strings.Fields(e.Error()), " ")
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, p := range pods {
		jobs <- p
	}
	close(jobs)
	twg.Wait()
	d.tearTook = time.Since(t)
	log.Printf("B6 %s: teardown took %s", h.name, d.tearTook.Round(time.Millisecond))
	d.left = b.criLeftovers(h, pods)
	if h.name == sharedVariant {
		// The server lingers after its last pod: wait for it to leave (a leak check, and so
		// that no later batch or run shares its pages).
		d.serverWait, d.serverGone = b.waitSharedGone()
		log.Printf("B6 %s: the server exited %.1f s after teardown: %v", h.name, d.serverWait.Seconds(), d.serverGone)
	}
	d.after = b.snapshot()
	if err != nil {
		return nil, err
	}
	return d, nil
}

func (b *bencher) failureCount(key string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failures[key]
}

// criLeftovers waits up to 15 s for nothing of pods to be left and lists what still is.
func (b *bencher) criLeftovers(h handler, pods []criPod) []string {
	ids := map[string]bool{}
	for _, p := range pods {
		ids[p.pod], ids[p.ctr] = true, true
	}
	var left []string
	for end := time.Now().Add(15 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		left = nil
		count := func(what string, out string, err error) {
			if err != nil {
				left = append(left, fmt.Sprintf("%s: %v", what, err))
				return
			}
			n := 0
			for _, f := range strings.Fields(out) {
				if ids[f] {
					n++
				}
			}
			if n > 0 {
				left = append(left, fmt.Sprintf("%d in %s", n, what))
			}
		}
		out, err := b.crictl("pods", "-q")
		count("`crictl pods`", out, err)
		out, err = b.crictl("ps", "-a", "-q")
		count("`crictl ps -a`", out, err)
		o, err := exec.Command(b.c.ctr, "--address", b.c.address, "-n", b.c.criNS, "task", "ls", "-q").CombinedOutput()
		count("`ctr task ls`", string(o), err)
		o, err = exec.Command(b.c.ctr, "--address", b.c.address, "-n", b.c.criNS, "containers", "ls", "-q").CombinedOutput()
		count("`ctr containers ls`", string(o), err)
		if _, procs, err := b.pss(h.rt); err == nil && procs > 0 {
			if h.name == sharedVariant {
				procs -= b.idleShims(h.rt) // the server lingers after its last pod (waited for after)
			}
			if procs > 0 {
				left = append(left, fmt.Sprintf("%d shim/runner/container processes", procs))
			}
		}
		cg := 0
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + b.c.criNS)
		if fi, err := os.Stat("/sys/fs/cgroup/" + b.c.criNS); err == nil && fi.IsDir() {
			dirs = append(dirs, "/sys/fs/cgroup/"+b.c.criNS)
		}
		for _, dir := range dirs {
			for id := range ids {
				if _, err := os.Stat(filepath.Join(dir, id)); err == nil {
					cg++
				}
			}
		}
		if cg > 0 {
			left = append(left, fmt.Sprintf("%d cgroup directories /sys/fs/cgroup/*/%s/<id>", cg, b.c.criNS))
		}
		if b.c.daemonDir != "" {
			mi, _ := os.ReadFile("/proc/self/mountinfo")
			m := 0
			for _, l := range strings.Split(string(mi), "\n") {
				f := strings.Fields(l)
				if len(f) < 5 || !strings.HasPrefix(f[4], b.c.daemonDir+"/") {
					continue
				}
				for id := range ids {
					if strings.Contains(f[4], id) {
						m++
						break
					}
				}
			}
			if m > 0 {
				left = append(left, fmt.Sprintf("%d mounts under the daemon's directory", m))
			}
		}
		if len(left) == 0 || time.Now().After(end) {
			break
		}
	}
	sort.Strings(left)
	return left
}

// podIDs is the set of the pods' sandbox and container ids.
func podIDs(pods []criPod) map[string]bool {
	ids := map[string]bool{}
	for _, p := range pods {
		ids[p.pod], ids[p.ctr] = true, true
	}
	return ids
}

// parseTaskLs reads `ctr task ls` (TASK PID STATUS): of the tasks in ours, how many it lists, how
// many RUNNING, and the pids of those (pid 0, a task without a process, left out).
func parseTaskLs(out string, ours map[string]bool) (tasks, running int, pids []int) {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && ours[f[0]] {
			tasks++
			if f[2] == "RUNNING" {
				running++
				if pid, err := strconv.Atoi(f[1]); err == nil && pid > 0 {
					pids = append(pids, pid)
				}
			}
		}
	}
	return tasks, running, pids
}

// pssOfPods is pssOfTasks for the tasks (sandboxes and containers) of pods: their PSS (kB), the
// processes counted, and the shims (servers) they run under.
func (b *bencher) pssOfPods(h handler, pods []criPod) (int64, int, int, error) {
	out, err := exec.Command(b.c.ctr, "--address", b.c.address, "-n", b.c.criNS, "task", "ls").CombinedOutput()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("ctr task ls: %v: %s", err, lastLines(string(out), 3))
	}
	_, _, pids := parseTaskLs(string(out), podIDs(pods))
	if len(pids) == 0 {
		return 0, 0, 0, fmt.Errorf("%s: `ctr -n %s task ls` lists no running task of the %d pods", h.name, b.c.criNS, len(pods))
	}
	return b.pssOfTasks(h.rt, pids)
}

// idleShims counts the shims of rt serving our daemon that have no child process: a shared server
// lingering after its last task (its runners are its children).
func (b *bencher) idleShims(rt string) int {
	ppid, exe, err := procTable()
	if err != nil {
		return 0
	}
	var shims []int
	for pid, x := range exe {
		if b.runsShimOf(rt, x) && b.isOurShim(pid) {
			shims = append(shims, pid)
		}
	}
	return len(childless(shims, ppid))
}

// childless are the pids that are no process's parent (ppid: every process's parent).
func childless(pids []int, ppid map[int]int) []int {
	parent := map[int]bool{}
	for _, pp := range ppid {
		parent[pp] = true
	}
	var out []int
	for _, p := range pids {
		if !parent[p] {
			out = append(out, p)
		}
	}
	return out
}

// sharedDensityNote is B6's note on the shared-server batch: whether one server served all its
// pods, and whether that server left after teardown within its linger.
func sharedDensityNote(d *density) string {
	var s string
	if d.servers == 1 {
		s = fmt.Sprintf("B6 %s: the %d pods' tasks (sandboxes and containers) all ran under one server process, counted once in the PSS",
			sharedVariant, d.reached)
	} else {
		s = fmt.Sprintf("B6 %s: **the %d pods' tasks ran under %d server processes, not one**: the shim ignored `%s` (is its shared-server mode in this build, and does the daemon's config pass `wazero.dev/*` pod annotations?), so these rows measure the default mode",
			sharedVariant, d.reached, d.servers, sharedServerAnnotation)
	}
	if d.serverGone {
		s += fmt.Sprintf("; after teardown the server left in %.0f s (linger %s).", d.serverWait.Seconds(), sharedLingerValue())
	} else {
		s += fmt.Sprintf("; **a process of the shim still ran %.0f s after teardown**, beyond the server's %s linger.", d.serverWait.Seconds(), sharedLingerValue())
	}
	return s
}
