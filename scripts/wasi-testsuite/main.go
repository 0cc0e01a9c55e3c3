// Command wasi-testsuite runs the official WASI test suite (WebAssembly/wasi-testsuite, its
// wasm32-wasip1 tests in C, Rust and AssemblyScript) as containers through ctr with this
// runtime, and prints each test's result beside the wazero CLI's (the suite's own expectations
// for wazero, expectations/wazero/linux.toml). scripts/wasi-testsuite.sh starts the daemon and
// runs it; see docs/WASI.md.
//
// Each test runs as `ctr run --rm --config SPEC ID`: an OCI spec (ctr's default, `ctr oci spec`)
// with exactly the test's arguments and environment (a container run from an image always gets
// the image's environment, or containerd's default PATH, which the environ tests count), and as
// its root a fresh copy of the suite's fs-tests.dir (the "root" the tests expect preopened as "/",
// as the suite's wazero adapter mounts it) with the module under /.wasi-testsuite/. A test
// that declares no directory runs without the root preopened (annotation
// io.containerd.wazero.v1.root-preopen=false), as under the suite's adapters: nothing is open
// past stdio. A test passes when the container exits with the spec's
// exit_code (default 0) and, if the spec has one, prints exactly its stdout.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// suites are the directories of wasm32-wasip1 tests under tests/.
var suites = []string{"assemblyscript", "c", "rust"}

// spec is a test's JSON file (the suite's legacy keys; a test without one runs with none).
type spec struct {
	Args     []string          `json:"args"`
	Env      map[string]string `json:"env"`
	Root     string            `json:"root"`
	ExitCode int               `json:"exit_code"`
	Stdout   *string           `json:"stdout"`
}

type options struct {
	suite, ctr, address, fifoDir, runtime, work, filter string
	timeout                                             time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.suite, "suite", "", "directory holding the suite's tests/ and expectations/ (required)")
	flag.StringVar(&o.ctr, "ctr", "ctr", "ctr binary")
	flag.StringVar(&o.address, "address", "", "containerd socket (required)")
	flag.StringVar(&o.fifoDir, "fifo-dir", "", "ctr run --fifo-dir")
	flag.StringVar(&o.runtime, "runtime", "io.containerd.wazero.v1", "runtime to run the tests with")
	flag.StringVar(&o.work, "work", "", "directory for the tests' roots and specs (default: a temporary one)")
	flag.StringVar(&o.filter, "run", "", "only tests whose suite/name contains this")
	flag.DurationVar(&o.timeout, "timeout", 60*time.Second, "time limit of each test")
	flag.Parse()
	if o.suite == "" || o.address == "" {
		flag.Usage()
		os.Exit(2)
	}
	failed, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wasi-testsuite:", err)
		os.Exit(1)
	}
	if failed > 0 {
		os.Exit(1)
	}
}

type outcome struct {
	suite, name string
	pass        bool
	why         string
	wazeroCLI   bool
}

func run(o options) (failed int, err error) {
	if o.work == "" {
		if o.work, err = os.MkdirTemp("", "wasi-testsuite-"); err != nil {
			return 0, err
		}
		defer os.RemoveAll(o.work)
	}
	skips, err := wazeroSkips(filepath.Join(o.suite, "expectations", "wazero", "linux.toml"))
	if err != nil {
		return 0, err
	}
	base, err := exec.Command(o.ctr, "oci", "spec").Output()
	if err != nil {
		return 0, fmt.Errorf("ctr oci spec: %w", err)
	}
	var results []outcome
	for _, s := range suites {
		dir := filepath.Join(o.suite, "tests", s, "testsuite", "wasm32-wasip1")
		mods, _ := filepath.Glob(filepath.Join(dir, "*.wasm"))
		if len(mods) == 0 {
			return 0, fmt.Errorf("no tests in %s: is %s a wasi-testsuite checkout of branch prod/testsuite-base?", dir, o.suite)
		}
		suiteName := s
		if b, err := os.ReadFile(filepath.Join(dir, "manifest.json")); err == nil {
			var m struct{ Name string }
			if json.Unmarshal(b, &m) == nil && m.Name != "" {
				suiteName = m.Name
			}
		}
		for _, m := range mods {
			name := strings.TrimSuffix(filepath.Base(m), ".wasm")
			if o.filter != "" && !strings.Contains(s+"/"+name, o.filter) {
				continue
			}
			r := runTest(o, base, dir, name)
			r.suite, r.name = s, name
			r.wazeroCLI = !skips[suiteName][name]
			results = append(results, r)
		}
	}
	sort.Slice(results, func(i, j int) bool {
		if results[i].suite != results[j].suite {
			return results[i].suite < results[j].suite
		}
		return results[i].name < results[j].name
	})
	word := map[bool]string{true: "pass", false: "FAIL"}
	shim, cli := 0, 0
	fmt.Printf("%-54s %-6s %s\n", "test", "shim", "wazero CLI")
	for _, r := range results {
		fmt.Printf("%-54s %-6s %s\n", r.suite+"/"+r.name, word[r.pass], word[r.wazeroCLI])
		if r.pass {
			shim++
		} else {
			failed++
		}
		if r.wazeroCLI {
			cli++
		}
	}
	for _, r := range results {
		if !r.pass {
			fmt.Printf("\n%s/%s: %s\n", r.suite, r.name, r.why)
		}
	}
	fmt.Printf("\nshim (%s): %d/%d pass; wazero CLI (the suite's expectations for wazero): %d/%d\n", o.runtime, shim, len(results), cli, len(results))
	return failed, nil
}

// runTest runs one test as a container and compares what it did with its spec.
func runTest(o options, baseSpec []byte, dir, name string) outcome {
	var s spec
	if b, err := os.ReadFile(filepath.Join(dir, name+".json")); err == nil {
		if err := json.Unmarshal(b, &s); err != nil {
			return outcome{why: fmt.Sprintf("spec %s.json: %v", name, err)}
		}
	}
	id := fmt.Sprintf("wasi-testsuite-%d-%s", os.Getpid(), strings.ReplaceAll(strings.ToLower(name), "_", "-"))
	root := filepath.Join(o.work, id)
	defer os.RemoveAll(root)
	if err := os.MkdirAll(filepath.Join(root, ".wasi-testsuite"), 0o755); err != nil {
		return outcome{why: err.Error()}
	}
	if s.Root != "" {
		if out, err := exec.Command("cp", "-a", filepath.Join(dir, s.Root)+"/.", root).CombinedOutput(); err != nil {
			return outcome{why: fmt.Sprintf("copy %s: %v: %s", s.Root, err, out)}
		}
	}
	if out, err := exec.Command("cp", filepath.Join(dir, name+".wasm"), filepath.Join(root, ".wasi-testsuite")).CombinedOutput(); err != nil {
		return outcome{why: fmt.Sprintf("copy the module: %v: %s", err, out)}
	}
	env := make([]string, 0, len(s.Env))
	for k, v := range s.Env {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	cfg, err := ociSpec(baseSpec, id, root, append([]string{"/.wasi-testsuite/" + name + ".wasm"}, s.Args...), env, s.Root == "")
	if err != nil {
		return outcome{why: err.Error()}
	}
	cfgPath := root + ".json"
	defer os.Remove(cfgPath)
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		return outcome{why: err.Error()}
	}
	args := []string{"--address", o.address, "run", "--rm", "--runtime", o.runtime, "--config", cfgPath}
	if o.fifoDir != "" {
		args = append(args, "--fifo-dir", o.fifoDir)
	}
	args = append(args, id)
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.ctr, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		return outcome{why: err.Error()}
	}
	if ctx.Err() != nil {
		_ = exec.Command(o.ctr, "--address", o.address, "task", "kill", "-s", "SIGKILL", id).Run()
		_ = exec.Command(o.ctr, "--address", o.address, "container", "rm", id).Run()
		return outcome{why: fmt.Sprintf("timed out after %v", o.timeout)}
	}
	switch {
	case code != s.ExitCode:
		return outcome{why: fmt.Sprintf("exit %d, want %d\nstdout: %s\nstderr: %s", code, s.ExitCode, stdout.String(), lastLines(stderr.String(), 15))}
	case s.Stdout != nil && stdout.String() != *s.Stdout:
		return outcome{why: fmt.Sprintf("stdout %q, want %q", stdout.String(), *s.Stdout)}
	}
	return outcome{pass: true}
}

// wazeroSkips reads the suite's expectations for wazero: the tests the wazero CLI fails, by
// suite name ([[suite]] name) and test name (every [[suite.test]] listed: the file lists only
// the tests where wazero differs).
func wazeroSkips(path string) (map[string]map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("the wazero CLI's expectations: %w", err)
	}
	defer f.Close()
	skips := map[string]map[string]bool{}
	suite, inTest := "", false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "[[suite]]":
			inTest = false
		case line == "[[suite.test]]":
			inTest = true
		case strings.HasPrefix(line, "name"):
			_, v, _ := strings.Cut(line, "=")
			v = strings.Trim(strings.TrimSpace(v), `"`)
			if !inTest {
				suite = v
				skips[suite] = map[string]bool{}
			} else {
				skips[suite][v] = true
			}
		}
	}
	return skips, sc.Err()
}

// rootPreopenAnnotation is the shim's annotation (pkg/oci RootPreopenAnnotation) that leaves
// the container's root out of the guest's preopens.
const rootPreopenAnnotation = "io.containerd.wazero.v1.root-preopen"

// ociSpec is ctr's default spec with the test's process and root. With noRoot (a test that
// declares no directory) the guest gets no preopen at all, as under the suite's own adapters:
// the container's root holds only the module.
func ociSpec(base []byte, id, root string, args, env []string, noRoot bool) ([]byte, error) {
	var sp map[string]any
	if err := json.Unmarshal(base, &sp); err != nil {
		return nil, fmt.Errorf("ctr oci spec: %w", err)
	}
	proc, _ := sp["process"].(map[string]any)
	linux, _ := sp["linux"].(map[string]any)
	if proc == nil || linux == nil {
		return nil, fmt.Errorf("ctr oci spec: no process or linux section")
	}
	proc["args"], proc["env"], proc["terminal"] = args, env, false
	sp["root"] = map[string]any{"path": root, "readonly": false}
	linux["cgroupsPath"] = "/default/" + id
	if noRoot {
		ann, _ := sp["annotations"].(map[string]any)
		if ann == nil {
			ann = map[string]any{}
		}
		ann[rootPreopenAnnotation] = "false"
		sp["annotations"] = ann
	}
	return json.MarshalIndent(sp, "", "  ")
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
