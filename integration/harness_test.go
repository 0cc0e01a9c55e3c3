//go:build linux

// Package integration runs containerd-shim-wazero-v1 through real, private containerd daemons
// (one per tested containerd version) driven by ctr, the way a user would.
//
// Requirements: root, containerd/ctr/containerd-shim-runc-v2 for every version in versions under
// $TOOLS/containerd-VERSION/bin, or in /usr/bin for the distribution's containerd (systemBins), both
// from scripts/install-deps.sh; ../bin/containerd-shim-wazero-v1 (make build) and
// ../testdata/build/images and ../testdata/build/logger (make testdata). Without them the tests skip, except under CI=true,
// where they fail: an integration test never skips in CI.
//
// After all tests, TestMain checks for leaks (shim processes, mounts, cgroups) and exits 1 on one.
package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wazero-shim/containerd-shim-wazero-v1/integration/testenv"
)

// versions are the containerd releases every test runs against (subtests named after them).
// WZ_VERSIONS="v2.4.2" narrows the set while developing; CI always runs the full list.
// env holds the tested versions (scripts/versions.sh, one list for Go and the scripts); versions
// are the containerd releases to run on: all, or $WZ_VERSIONS outside CI.
var (
	env      = testenv.MustRead(repoRoot)
	versions = env.Tested()
)

const (
	runtimeType  = "io.containerd.wazero.v1"
	shimName     = "containerd-shim-wazero-v1"
	runnerName   = "containerd-shim-wazero-v1-runner" // engine.RunnerBinary, built beside the shim
	serverName   = "containerd-shim-wazero-v1-server" // shimentry.ServerBinary: the entry (shimName) starts it
	sandboxImage = "registry.k8s.io/pause:3.10.2"

	ctrTimeout   = 60 * time.Second  // default bound for one ctr invocation
	runTimeout   = 120 * time.Second // default bound for one `ctr run`
	startTimeout = 30 * time.Second  // daemon startup

	// cacheDirEnv moves the shim's compilation cache (engine.CacheDirEnv); the shim inherits the
	// daemon's environment.
	cacheDirEnv = "CONTAINERD_SHIM_WAZERO_CACHE_DIR"
)

var (
	repoRoot  = ".." // go test runs in the package directory
	toolsDir  = envOr("TOOLS", "/var/tmp/wazero-shim-tools")
	shimSrc   = envOr("WZ_SHIM_BIN", filepath.Join(repoRoot, "bin", shimName))                 // override for development
	imagesDir = envOr("WZ_IMAGES_DIR", filepath.Join(repoRoot, "testdata", "build", "images")) // override for development
	loggerSrc = filepath.Join(repoRoot, "testdata", "build", "logger")                         // binary:// logging binary (testdata/native/logger)
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// systemBins are the tested versions that come from a Debian package (apt `containerd`, installed
// by scripts/install-deps.sh) rather than from a build under $TOOLS: version -> directory of
// containerd, ctr and containerd-shim-runc-v2 (WZ_CONTAINERD_SYSTEM in scripts/versions.sh).
var systemBins = env.SystemBins()

// binDir is where containerd, ctr and containerd-shim-runc-v2 of version live.
func binDir(version string) string {
	if d, ok := systemBins[version]; ok {
		return d
	}
	return filepath.Join(toolsDir, "containerd-"+version, "bin")
}

// majorMinor parses "vMAJOR.MINOR.PATCH"; a version it cannot parse counts as the newest.
func majorMinor(version string) (major, minor int) {
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	if len(parts) < 2 {
		return 1 << 30, 0
	}
	var err1, err2 error
	major, err1 = strconv.Atoi(parts[0])
	minor, err2 = strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return 1 << 30, 0
	}
	return major, minor
}

// systemVersionMismatch returns why the distribution's containerd in systemBins is not version v
// ("" if it is, or v is not a system version): a Debian update to another release must not be
// tested (and reported) under the old name.
func systemVersionMismatch(v string) string {
	dir, ok := systemBins[v]
	if !ok {
		return ""
	}
	out, err := exec.Command(filepath.Join(dir, "containerd"), "--version").Output()
	if err != nil {
		return fmt.Sprintf("%s --version: %v", filepath.Join(dir, "containerd"), err)
	}
	// e.g. "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3"
	f := strings.Fields(string(out))
	want := strings.TrimPrefix(v, "v")
	if len(f) < 3 {
		return fmt.Sprintf("%s --version: unexpected output %q", filepath.Join(dir, "containerd"), out)
	}
	got, _, _ := strings.Cut(strings.TrimPrefix(f[2], "v"), "~")
	got, _, _ = strings.Cut(got, "+")
	if got != want {
		return fmt.Sprintf("%s reports %q, want containerd %s", filepath.Join(dir, "containerd"), strings.TrimSpace(string(out)), v)
	}
	return ""
}

// suiteState is the per-process test environment shared by all daemons.
type suiteState struct {
	skipReason string // non-empty: preconditions not met
	tmp        string // everything private lives below here
	shimBin    string // copy of the shim; /proc/PID/exe of our shim processes points here
	runnerBin  string // copy of the runner binary beside shimBin ("" when make build made none); runners run it
	serverBin  string // copy of the server binary beside shimBin ("" for a shim that is one binary); shim servers run it
	ns         string // containerd namespace (also the cgroup parent /<ns>/<id>)
	daemons    map[string]*daemon
}

var suite suiteState

// preconditions returns why the integration tests cannot run here, or "".
func preconditions() string {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "must run as root")
	}
	for _, v := range versions {
		ok := true
		for _, b := range []string{"containerd", "ctr", "containerd-shim-runc-v2"} {
			if _, err := os.Stat(filepath.Join(binDir(v), b)); err != nil {
				missing = append(missing, fmt.Sprintf("%s (run scripts/install-deps.sh)", filepath.Join(binDir(v), b)))
				ok = false
			}
		}
		if ok {
			if m := systemVersionMismatch(v); m != "" {
				missing = append(missing, m)
			}
		}
	}
	if _, err := os.Stat(shimSrc); err != nil {
		missing = append(missing, shimSrc+" (run make build)")
	}
	for _, img := range []string{"wasmtest.tar"} {
		if _, err := os.Stat(filepath.Join(imagesDir, img)); err != nil {
			missing = append(missing, filepath.Join(imagesDir, img)+" (run make testdata)")
		}
	}
	if _, err := os.Stat(loggerSrc); err != nil {
		missing = append(missing, loggerSrc+" (run make testdata)")
	}
	return strings.Join(missing, "; ")
}

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	suite.daemons = map[string]*daemon{}
	if reason := preconditions(); reason != "" {
		suite.skipReason = reason
		return m.Run() // every test skips (or fails under CI=true) via requireSuite
	}
	if err := setupSuite(); err != nil {
		fmt.Fprintln(os.Stderr, "integration: setup:", err)
		teardownSuite()
		return 1
	}
	code := m.Run()
	if leaks := checkLeaks(); len(leaks) > 0 {
		fmt.Fprintln(os.Stderr, "integration: LEAK CHECK FAILED:")
		for _, l := range leaks {
			fmt.Fprintln(os.Stderr, "  -", l)
		}
		code = 1
	} else {
		fmt.Fprintln(os.Stderr, "integration: leak check passed (no shim processes, mounts or cgroups left)")
	}
	teardownSuite()
	return code
}

func setupSuite() error {
	tmp, err := os.MkdirTemp("", "wzit-")
	if err != nil {
		return err
	}
	suite.tmp = tmp
	suite.ns = "wz" + randHex(4)
	dir := filepath.Join(tmp, "shimbin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	suite.shimBin = filepath.Join(dir, shimName)
	if err := copyFile(shimSrc, suite.shimBin, 0o755); err != nil {
		return err
	}
	// The runner and server binaries go beside the shim, where the shim looks for them.
	if src := filepath.Join(filepath.Dir(shimSrc), runnerName); isFile(src) {
		suite.runnerBin = filepath.Join(dir, runnerName)
		if err := copyFile(src, suite.runnerBin, 0o755); err != nil {
			return err
		}
	}
	if src := filepath.Join(filepath.Dir(shimSrc), serverName); isFile(src) {
		suite.serverBin = filepath.Join(dir, serverName)
		if err := copyFile(src, suite.serverBin, 0o755); err != nil {
			return err
		}
	}
	for _, v := range versions {
		suite.daemons[v] = &daemon{
			version: v,
			dir:     filepath.Join(tmp, v),
			bin:     binDir(v),
			ns:      suite.ns,
			images:  map[string]bool{},
			// Private and fresh per run: no test shares /var/lib state, and the cache starts cold.
			cacheDir: filepath.Join(tmp, v, "cache"),
		}
	}
	return nil
}

// teardownSuite stops the daemons and removes everything, forcefully: it runs after the leak check
// has recorded what was left, so nothing lingers on the machine even after a failure.
func teardownSuite() {
	for _, d := range suite.daemons {
		d.stop()
	}
	if suite.shimBin != "" {
		for _, pid := range shimPIDs() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	removeCgroups(suite.ns)
	removeExtraCgroups()
	if suite.tmp == "" {
		return
	}
	for _, mp := range mountsUnder(suite.tmp) {
		if err := syscall.Unmount(mp, 0); err != nil {
			syscall.Unmount(mp, syscall.MNT_DETACH)
		}
	}
	if err := os.RemoveAll(suite.tmp); err != nil {
		fmt.Fprintln(os.Stderr, "integration: cleanup:", err)
	}
}

// requireSuite skips the test when preconditions are missing, or fails it under CI=true.
func requireSuite(t *testing.T) {
	t.Helper()
	if suite.skipReason == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("integration preconditions not met under CI: %s", suite.skipReason)
	}
	t.Skipf("integration preconditions not met: %s", suite.skipReason)
}

// forEachDaemon runs fn as subtest VERSION of t for every tested containerd version, with a started
// daemon that has the wasmtest image imported.
func forEachDaemon(t *testing.T, fn func(t *testing.T, d *daemon)) {
	t.Helper()
	requireSuite(t)
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			d := getDaemon(t, v)
			d.importImage(t, filepath.Join(imagesDir, "wasmtest.tar"))
			fn(t, d)
			if t.Failed() {
				t.Logf("containerd %s log tail:\n%s", v, tail(d.logPath(), 40))
			}
		})
	}
}

// getDaemon returns the started daemon for version v, starting it on first use.
func getDaemon(t *testing.T, v string) *daemon {
	t.Helper()
	requireSuite(t)
	d := suite.daemons[v]
	if d == nil {
		t.Fatalf("unknown containerd version %s", v)
	}
	d.once.Do(func() { d.startErr = d.start() })
	if d.startErr != nil {
		t.Fatalf("containerd %s: %v", v, d.startErr)
	}
	return d
}

// daemon is one private containerd with every path under dir.
type daemon struct {
	version  string
	dir      string // root, state, sockets, config, log
	bin      string // binDir(version): $TOOLS/containerd-VERSION/bin or /usr/bin
	ns       string
	cacheDir string   // the shim's compilation cache: CONTAINERD_SHIM_WAZERO_CACHE_DIR of this daemon
	extraEnv []string // more environment for the daemon, and so its shims (TestTracing's OTEL_*)

	once     sync.Once
	startErr error
	cmd      *exec.Cmd
	exited   chan struct{}

	mu     sync.Mutex
	images map[string]bool // imported image tarballs
}

func (d *daemon) sock() string    { return filepath.Join(d.dir, "containerd.sock") }
func (d *daemon) logPath() string { return filepath.Join(d.dir, "containerd.log") }

// v1 reports a containerd 1.x daemon (config version 2, ctr without some 2.x commands).
func (d *daemon) v1() bool {
	major, _ := majorMinor(d.version)
	return major < 2
}

// config is the daemon's config.toml: the template of scripts/containerd-config for its version
// (the one scripts/lib.sh writes too), with its directory, the suite's sandbox image and runtime
// type, and CNI from /usr/lib/cni with its configuration in the daemon's cni directory.
func (d *daemon) config() string {
	cfg, err := testenv.ContainerdConfig(repoRoot, testenv.DaemonConfig{
		Version: d.version, Dir: d.dir, SandboxImage: sandboxImage, RuntimeType: runtimeType,
		CNIBin: "/usr/lib/cni", CNIConf: filepath.Join(d.dir, "cni"),
	})
	if err != nil {
		panic(fmt.Sprintf("containerd %s config: %v", d.version, err))
	}
	return cfg
}

// daemonPATH is the daemon's PATH (inherited by the shims it starts): our shim first, then this
// version's own binaries (its containerd-shim-runc-v2), then the test's PATH without any $TOOLS
// directory, so that no daemon finds another version's runc shim (1.6 from /usr/bin must not pick
// a 2.x one from $TOOLS, and a 2.x daemon finds its own before /usr/bin's 1.6 one).
func (d *daemon) daemonPATH() string {
	dirs := []string{filepath.Dir(suite.shimBin), d.bin}
	tools := filepath.Clean(toolsDir) + "/"
	for _, p := range append(filepath.SplitList(os.Getenv("PATH")), "/usr/local/sbin", "/usr/sbin", "/sbin") {
		if p == "" || strings.HasPrefix(filepath.Clean(p)+"/", tools) {
			continue
		}
		dirs = append(dirs, p)
	}
	return strings.Join(dirs, ":")
}

func (d *daemon) start() error {
	for _, sub := range []string{"root", "state", "opt", "s", "cni", "fifo"} {
		if err := os.MkdirAll(filepath.Join(d.dir, sub), 0o700); err != nil {
			return err
		}
	}
	cfg := filepath.Join(d.dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(d.config()), 0o600); err != nil {
		return err
	}
	// Appended to: a restarted daemon (the fault tests) keeps the log of its first life.
	logf, err := os.OpenFile(d.logPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(d.bin, "containerd"), "--config", cfg)
	cmd.Env = append(filteredEnv("PATH", "CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE", cacheDirEnv),
		"PATH="+d.daemonPATH(), cacheDirEnv+"="+d.cacheDir)
	cmd.Env = append(cmd.Env, d.extraEnv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test binary dies (e.g. go test's -timeout), take the daemon with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return err
	}
	d.cmd = cmd
	d.exited = make(chan struct{})
	go func() { cmd.Wait(); close(d.exited) }()

	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-d.exited:
			return fmt.Errorf("containerd exited during startup: %s\n%s", cmd.ProcessState, tail(d.logPath(), 30))
		default:
		}
		if _, err := os.Stat(d.sock()); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			r := d.exec(ctx, nil, "version")
			cancel()
			if r.exit == 0 {
				if b, _ := os.ReadFile(d.logPath()); bytes.Contains(b, []byte("Ignoring unknown key")) {
					fmt.Fprintf(os.Stderr, "integration: containerd %s ignored config keys:\n%s", d.version, grepLines(b, "Ignoring unknown key"))
				}
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("containerd did not answer `ctr version` within %s\n%s", startTimeout, tail(d.logPath(), 30))
}

// stop sends SIGTERM, waits up to 10s, then SIGKILLs.
func (d *daemon) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		fmt.Fprintf(os.Stderr, "integration: containerd %s ignored SIGTERM for 10s, killing\n", d.version)
		d.cmd.Process.Kill()
		<-d.exited
	}
	d.cmd = nil
}

// result is what a ctr invocation produced.
type result struct {
	stdout, stderr string
	exit           int  // process exit status; -1 if killed (timeout)
	timedOut       bool // the context deadline killed ctr
}

func (r result) String() string {
	return fmt.Sprintf("exit=%d timedOut=%v\n--- stdout ---\n%s\n--- stderr ---\n%s", r.exit, r.timedOut, r.stdout, r.stderr)
}

// exec runs this daemon's ctr with the given stdin (nil = /dev/null) and arguments.
func (d *daemon) exec(ctx context.Context, stdin io.Reader, args ...string) result {
	full := append([]string{"--address", d.sock(), "--namespace", d.ns}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(d.bin, "ctr"), full...)
	cmd.Env = filteredEnv("CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE")
	cmd.Stdin = stdin
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	cmd.WaitDelay = 5 * time.Second // don't hang on pipes held by stray children
	err := cmd.Run()
	r := result{stdout: so.String(), stderr: se.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.exit = ee.ExitCode()
	default:
		r.exit = -1
		r.stderr += "\n[harness] " + err.Error()
	}
	if ctx.Err() != nil {
		r.timedOut = true
		r.exit = -1
	}
	return r
}

// ctr runs `ctr --address SOCK --namespace NS args...` bounded by ctrTimeout.
func (d *daemon) ctr(t *testing.T, args ...string) (stdout, stderr string, exit int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ctrTimeout)
	defer cancel()
	r := d.exec(ctx, nil, args...)
	if r.timedOut {
		t.Errorf("ctr %s: timed out after %s", strings.Join(args, " "), ctrTimeout)
	}
	return r.stdout, r.stderr, r.exit
}

// importImage imports an image tarball once per daemon. --all-platforms: the wasm images are
// wasip1/wasm, which a plain import filters out ("ctr: image might be filtered out").
func (d *daemon) importImage(t *testing.T, path string) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.images[path] {
		return
	}
	if _, se, code := d.ctr(t, "images", "import", "--all-platforms", path); code != 0 {
		t.Fatalf("ctr images import %s: exit %d: %s", path, code, se)
	}
	d.images[path] = true
}

// mount is a --mount type=bind for ctr run.
type mount struct {
	src, dst string
	ro       bool
}

// runOpts describes one `ctr run --rm --runtime io.containerd.wazero.v1`.
type runOpts struct {
	image       string   // default testImage
	id          string   // default: unique, derived from the test name
	args        []string // replaces entrypoint+cmd: module path first
	env         []string // K=V
	mounts      []mount
	memoryLimit int64         // bytes; 0 = none
	flags       []string      // more ctr run flags (e.g. --log-uri URI)
	stdin       string        // piped to ctr's stdin (never -t); "" = /dev/null
	timeout     time.Duration // default runTimeout
}

var idSeq atomic.Int64

// newID returns a unique container ID for this test, e.g. "hello-c-v242-3" for TestHello/v2.4.2/c.
func newID(t *testing.T, d *daemon) string {
	var parts []string
	for _, p := range strings.Split(t.Name(), "/") {
		if p != d.version {
			parts = append(parts, strings.TrimPrefix(p, "Test"))
		}
	}
	var b strings.Builder
	for _, r := range strings.ToLower(strings.Join(parts, "-")) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	s := b.String()
	if len(s) > 40 {
		s = s[:40]
	}
	return fmt.Sprintf("%s-%s-%d", s, strings.ReplaceAll(d.version, ".", ""), idSeq.Add(1))
}

// runArgs builds the ctr argument list for opts (without the trailing run-specific flags).
func (d *daemon) runArgs(opts runOpts, extra ...string) []string {
	args := []string{"run", "--fifo-dir", filepath.Join(d.dir, "fifo"), "--runtime", runtimeType}
	args = append(args, extra...)
	args = append(args, opts.flags...)
	if opts.memoryLimit > 0 {
		args = append(args, "--memory-limit", strconv.FormatInt(opts.memoryLimit, 10))
	}
	for _, m := range opts.mounts {
		mode := "rw"
		if m.ro {
			mode = "ro"
		}
		args = append(args, "--mount", fmt.Sprintf("type=bind,src=%s,dst=%s,options=rbind:%s", m.src, m.dst, mode))
	}
	for _, e := range opts.env {
		args = append(args, "--env", e)
	}
	args = append(args, opts.image, opts.id)
	return append(args, opts.args...)
}

func (d *daemon) defaults(t *testing.T, opts *runOpts) {
	if opts.image == "" {
		opts.image = testImage
	}
	if opts.id == "" {
		opts.id = newID(t, d)
	}
	if opts.timeout == 0 {
		opts.timeout = runTimeout
	}
}

// run executes `ctr run --rm` and returns its output and exit status (ctr run exits with the task's
// exit status; a failed task creation is a non-zero exit with the error on stderr). The container is
// removed afterwards whatever happened.
func (d *daemon) run(t *testing.T, opts runOpts) result {
	t.Helper()
	d.defaults(t, &opts)
	ctx, cancel := context.WithTimeout(context.Background(), opts.timeout)
	defer cancel()
	args := d.runArgs(opts, "--rm")
	var r result
	if opts.stdin == "" {
		r = d.exec(ctx, nil, args...)
	} else {
		r = d.execWithStdin(ctx, opts.id, opts.stdin, args)
	}
	t.Logf("ctr %s\n%s", strings.Join(args, " "), r)
	if r.timedOut {
		t.Errorf("ctr run %s: timed out after %s", opts.id, opts.timeout)
	}
	d.ensureRemoved(t, opts.id)
	return r
}

// execWithStdin runs ctr with data on a pipe as its stdin, and closes the pipe only once task id is
// RUNNING (or ctr has exited). ctr sends CloseIO when its stdin reaches EOF, but only if the task
// already exists: an EOF that arrives while the task is still being created is lost and the task
// never sees end of input (ctr's stdinCloser sets its closer after NewTask returns). A person typing
// or a slow pipe never hits this; an instantly closed pipe does.
func (d *daemon) execWithStdin(ctx context.Context, id, data string, args []string) result {
	pr, pw, err := os.Pipe()
	if err != nil {
		return result{exit: -1, stderr: "[harness] pipe: " + err.Error()}
	}
	defer pr.Close()
	done := make(chan result, 1)
	go func() { done <- d.exec(ctx, pr, args...) }()
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		defer pw.Close()
		if _, err := io.WriteString(pw, data); err != nil {
			return
		}
		for ctx.Err() == nil {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			st := d.exec(sctx, nil, "task", "ls")
			cancel()
			for _, l := range strings.Split(st.stdout, "\n") {
				if f := strings.Fields(l); len(f) >= 3 && f[0] == id && f[2] != "CREATED" {
					return // RUNNING or already STOPPED: the closer is set, EOF now reaches the task
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	var r result
	select {
	case r = <-done:
		pw.Close() // ctr exited early (e.g. task creation failed): nothing more to feed
		<-fed
	case <-fed:
		r = <-done
	}
	return r
}

// ensureRemoved deletes the task and container opts.id if they still exist.
func (d *daemon) ensureRemoved(t *testing.T, id string) {
	t.Helper()
	if !d.containerExists(t, id) {
		return
	}
	t.Logf("container %s still exists after the run; removing it", id)
	d.ctr(t, "task", "kill", "--signal", "SIGKILL", id)
	d.ctr(t, "task", "rm", "--force", id)
	if _, se, code := d.ctr(t, "container", "rm", id); code != 0 {
		t.Errorf("ctr container rm %s: exit %d: %s", id, code, se)
	}
}

func (d *daemon) containerExists(t *testing.T, id string) bool {
	t.Helper()
	so, _, code := d.ctr(t, "container", "ls", "--quiet")
	if code != 0 {
		return false
	}
	for _, l := range strings.Fields(so) {
		if l == id {
			return true
		}
	}
	return false
}

// taskStatus returns the STATUS column of `ctr task ls` for id ("" if not listed).
func (d *daemon) taskStatus(t *testing.T, id string) string {
	t.Helper()
	so, _, _ := d.ctr(t, "task", "ls")
	for _, l := range strings.Split(so, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == id {
			return f[2]
		}
	}
	return ""
}

// waitStatus polls `ctr task ls` until id has the wanted status or the timeout passes.
func (d *daemon) waitStatus(t *testing.T, id, want string, timeout time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := d.taskStatus(t, id)
		if got == want {
			return true
		}
		if time.Now().After(deadline) {
			t.Errorf("task %s: status %q, want %q after %s", id, got, want, timeout)
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ---- leak check -----------------------------------------------------------------------------

// checkLeaks reports our shim processes still alive (after a grace period), mounts under the
// suite's temp dir, and container-level cgroups under /<ns>/.
func checkLeaks() []string {
	leaks := testenv.Lingering(shimPIDs, 10*time.Second, "shim process")
	for _, mp := range mountsUnder(suite.tmp) {
		leaks = append(leaks, "mount left: "+mp)
	}
	leaks = append(leaks, cgroupLeaks(suite.ns)...)
	for _, d := range leftCgroups() { // CRI containers' cgroups (cri_test.go)
		leaks = append(leaks, "cgroup left: "+d)
	}
	return leaks
}

// shimPIDs lists live processes whose executable is the suite's copy of the shim, of its server or
// of the runner binary (the shims and their per-container runner children).
func shimPIDs() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			continue
		}
		exe = strings.TrimSuffix(exe, " (deleted)")
		if exe != suite.shimBin && (suite.runnerBin == "" || exe != suite.runnerBin) && (suite.serverBin == "" || exe != suite.serverBin) {
			continue
		}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			if i := bytes.LastIndexByte(st, ')'); i >= 0 && i+2 < len(st) && (st[i+2] == 'Z' || st[i+2] == 'X') {
				continue // zombie: exited, not yet reaped by its parent
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

// mountsUnder lists mount points at or below dir, deepest first (testenv.MountsUnder).
var mountsUnder = testenv.MountsUnder

// nsCgroupDirs are the directories for namespace ns: /sys/fs/cgroup/*/<ns> (v1 and hybrid) and
// /sys/fs/cgroup/<ns> (v2).
func nsCgroupDirs(ns string) []string {
	if ns == "" {
		return nil
	}
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", ns))
	dirs = append(dirs, filepath.Join("/sys/fs/cgroup", ns))
	var out []string
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			out = append(out, d)
		}
	}
	return out
}

// cgroupLeaks reports container-level cgroups (/<ns>/<id>) that still exist and removes the empty
// namespace-level directories.
func cgroupLeaks(ns string) []string {
	var leaks []string
	for _, d := range nsCgroupDirs(ns) {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if e.IsDir() {
				leaks = append(leaks, "cgroup left: "+filepath.Join(d, e.Name()))
			}
		}
		os.Remove(d) // cgroupfs: rmdir succeeds only when it has no children and no tasks
	}
	return leaks
}

// removeCgroups removes (deepest first) whatever cgroup directories are left for ns, killing the
// processes still in them first.
func removeCgroups(ns string) {
	for _, d := range nsCgroupDirs(ns) {
		var sub []string
		filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				sub = append(sub, p)
			}
			return nil
		})
		sort.Slice(sub, func(i, j int) bool { return len(sub[i]) > len(sub[j]) })
		for _, p := range sub {
			if os.Remove(p) == nil {
				continue
			}
			// Still populated: thaw (cgroup v1 freezer / v2), kill its processes, retry for a while.
			os.WriteFile(filepath.Join(p, "freezer.state"), []byte("THAWED"), 0)
			os.WriteFile(filepath.Join(p, "cgroup.freeze"), []byte("0"), 0)
			for i := 0; i < 50; i++ {
				b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
						syscall.Kill(pid, syscall.SIGKILL)
					}
				}
				if os.Remove(p) == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
}

// ---- small helpers --------------------------------------------------------------------------

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// filteredEnv is os.Environ() without the named variables (testenv.FilteredEnv).
var filteredEnv = testenv.FilteredEnv

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func grepLines(b []byte, sub string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n") + "\n"
}

// TestDaemonPATH checks the PATH each daemon really runs with (/proc/PID/environ): the first
// containerd-shim-wazero-v1 on it is the suite's copy, and the first containerd-shim-runc-v2 is the
// daemon's own version (1.6 from /usr/bin must not find a 2.x one from $TOOLS, nor 2.x the 1.6 one).
func TestDaemonPATH(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", d.cmd.Process.Pid))
		if err != nil {
			t.Fatalf("daemon environment: %v", err)
		}
		var path string
		for _, kv := range strings.Split(string(b), "\x00") {
			if v, ok := strings.CutPrefix(kv, "PATH="); ok {
				path = v
			}
		}
		first := func(name string) string {
			for _, dir := range filepath.SplitList(path) {
				if fi, err := os.Stat(filepath.Join(dir, name)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
					return dir
				}
			}
			return ""
		}
		if got, want := first(shimName), filepath.Dir(suite.shimBin); got != want {
			t.Errorf("daemon PATH finds %s in %q, want %q\nPATH=%s", shimName, got, want, path)
		}
		if got := first("containerd-shim-runc-v2"); got != d.bin {
			t.Errorf("daemon PATH finds containerd-shim-runc-v2 in %q, want this version's %q\nPATH=%s", got, d.bin, path)
		}
	})
}

// isFile reports whether path is a regular file.
func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}
