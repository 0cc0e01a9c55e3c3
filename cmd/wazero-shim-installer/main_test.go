package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeContainerd is a containerd for the fake host roots: --version prints version; `--config F
// config dump` prints F (a host path, read under $WZ_FAKE_ROOT) as a containerd 2.x would dump it,
// or, for a 1.x version, drops a version 3 file's sections as containerd 1.6 does; $WZ_FAKE_REFUSE
// makes the dump fail with that message.
func fakeContainerd(version string) string {
	return `#!/bin/sh
case "$1" in
--version) echo "containerd github.com/containerd/containerd/v2 ` + version + ` 0123abcd" ;;
--config)
	[ "$3 $4" = "config dump" ] || { echo "unexpected arguments: $*" >&2; exit 2; }
	if [ -n "$WZ_FAKE_REFUSE" ]; then echo "containerd: $WZ_FAKE_REFUSE" >&2; exit 1; fi
	case "` + version + `" in
	1.*) if grep -q '^version = 3' "$WZ_FAKE_ROOT$2"; then echo "version = 2"; exit 0; fi ;;
	esac
	cat "$WZ_FAKE_ROOT$2"
	# containerd 2.x adds its built-in runc runtime to a file's runtimes; 1.x does not.
	case "` + version + `" in
	1.*) ;;
	*) printf '\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n  runtime_type = "io.containerd.runc.v2"\n[plugins.'"'"'io.containerd.cri.v1.runtime'"'"'.containerd.runtimes.runc]\n  runtime_type = "io.containerd.runc.v2"\n' ;;
	esac ;;
*) echo "unexpected arguments: $*" >&2; exit 2 ;;
esac
`
}

// node makes a fake host root with /usr/local/bin, a fake containerd 2.4.2 in /usr/bin and, when
// config is not nil, /etc/containerd/config.toml, and a shim binary to install. It returns
// options that point at them and count restarts; the CRI check passes.
func node(t *testing.T, config []byte, restarts *int) (options, *bytes.Buffer) {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"usr/local/bin", "usr/bin", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	setContainerd(t, root, "/usr/bin/containerd", "2.4.2")
	if config != nil {
		if err := os.MkdirAll(filepath.Join(root, "etc/containerd"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "etc/containerd/config.toml"), config, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	src := filepath.Join(t.TempDir(), shimName)
	if err := os.WriteFile(src, []byte("\x7fELF shim v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout := &bytes.Buffer{}
	return options{
		hostRoot: root, distro: "auto", shimSrc: src, binDir: "/usr/local/bin",
		handler: "wazero", restart: "systemctl", stdout: stdout, stderr: io.Discard, wait: time.Second,
		restartFn: func(string, string, io.Writer) error { *restarts++; return nil },
		criCheck:  func(string, string, time.Duration) error { return nil },
		execHook: func(bin string, args ...string) *exec.Cmd {
			cmd := exec.Command(filepath.Join(root, bin), args...)
			cmd.Env = append(os.Environ(), "WZ_FAKE_ROOT="+root)
			return cmd
		},
	}, stdout
}

// setContainerd puts a fake containerd of version at the host path p under root.
func setContainerd(t *testing.T, root, p, version string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, p), []byte(fakeContainerd(version)), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestRunInstallsAndIsIdempotent(t *testing.T) {
	in, _ := os.ReadFile("testdata/v3-cri.toml")
	golden, _ := os.ReadFile("testdata/v3-cri.golden.toml")
	restarts := 0
	o, _ := node(t, in, &restarts)
	cfg := filepath.Join(o.hostRoot, "etc/containerd/config.toml")
	bin := filepath.Join(o.hostRoot, "usr/local/bin", shimName)

	sum, err := run(o)
	if err != nil {
		t.Fatal(err)
	}
	want := "binary: installed /usr/local/bin/containerd-shim-wazero-v1; config: added runtime wazero (version 3), checked by containerd 2.4.2, backup /etc/containerd/config.toml.bak-wazero; restart: restarted containerd; the CRI (/run/containerd/containerd.sock) lists runtime handler wazero"
	if sum != want {
		t.Errorf("summary:\n got %s\nwant %s", sum, want)
	}
	if restarts != 1 {
		t.Errorf("restarts = %d, want 1", restarts)
	}
	if got, _ := os.ReadFile(cfg); !bytes.Equal(got, golden) {
		t.Errorf("config:\n%s", got)
	}
	if fi, err := os.Stat(cfg); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("config mode not kept: %v %v", fi.Mode(), err)
	}
	if got, _ := os.ReadFile(cfg + backupSuffix); !bytes.Equal(got, in) {
		t.Errorf("backup differs from the original")
	}
	if fi, err := os.Stat(bin); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("binary: %v %v", fi, err)
	}
	before := stat(t, bin)
	cfgBefore := stat(t, cfg)

	time.Sleep(10 * time.Millisecond)
	sum, err = run(o)
	if err != nil {
		t.Fatal(err)
	}
	if want := "binary: unchanged; config: unchanged (runtime wazero (version 3) already set up); restart: not needed (the CRI at /run/containerd/containerd.sock lists runtime handler wazero)"; sum != want {
		t.Errorf("second run summary:\n got %s\nwant %s", sum, want)
	}
	if restarts != 1 {
		t.Errorf("restarted again (%d)", restarts)
	}
	if after := stat(t, bin); after != before {
		t.Errorf("binary rewritten: %+v -> %+v", before, after)
	}
	if after := stat(t, cfg); after != cfgBefore {
		t.Errorf("config rewritten: %+v -> %+v", cfgBefore, after)
	}
	// No temporary files are left behind.
	for _, dir := range []string{filepath.Dir(bin), filepath.Dir(cfg)} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.Contains(e.Name(), ".tmp-") {
				t.Errorf("left over: %s", e.Name())
			}
		}
	}
}

type fileID struct {
	ino   uint64
	mtime time.Time
}

func stat(t *testing.T, p string) fileID {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fileID{ino: fi.Sys().(*syscall.Stat_t).Ino, mtime: fi.ModTime()}
}

func TestRunBinaryUpdate(t *testing.T) {
	restarts := 0
	o, _ := node(t, []byte("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.wazero]\nruntime_type = \"io.containerd.wazero.v1\"\npod_annotations = [\"wazero.dev/*\"]\ncontainer_annotations = [\"wazero.dev/*\"]\n"), &restarts)
	bin := filepath.Join(o.hostRoot, "usr/local/bin", shimName)
	if err := os.WriteFile(bin, []byte("old"), 0o700); err != nil {
		t.Fatal(err)
	}
	before := stat(t, bin)
	sum, err := run(o)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sum, "binary: updated /usr/local/bin/containerd-shim-wazero-v1; config: unchanged") {
		t.Errorf("summary = %s", sum)
	}
	if restarts != 0 {
		t.Errorf("restarted although the config did not change")
	}
	if after := stat(t, bin); after.ino == before.ino {
		t.Errorf("binary updated in place, not replaced by rename")
	}
	got, _ := os.ReadFile(bin)
	want, _ := os.ReadFile(o.shimSrc)
	if !bytes.Equal(got, want) {
		t.Errorf("binary content = %q", got)
	}
	// Same content with a wrong mode: the mode is fixed, the file is kept.
	os.Chmod(bin, 0o700)
	before = stat(t, bin)
	if sum, err = run(o); err != nil || !strings.HasPrefix(sum, "binary: unchanged (mode set to 0755)") {
		t.Errorf("summary = %s, err %v", sum, err)
	}
	if stat(t, bin).ino != before.ino {
		t.Errorf("binary replaced to fix its mode")
	}
}

func TestRunDryRunWritesNothing(t *testing.T) {
	in, _ := os.ReadFile("testdata/v2-plain.toml")
	golden, _ := os.ReadFile("testdata/v2-plain.golden.toml")
	restarts := 0
	o, stdout := node(t, in, &restarts)
	o.dryRun = true
	sum, err := run(o)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sum, "binary: would be installed") || !strings.Contains(sum, "config: would be added runtime wazero (version 2)") {
		t.Errorf("summary = %s", sum)
	}
	if !bytes.Equal(stdout.Bytes(), golden) {
		t.Errorf("dry-run output:\n%s", stdout)
	}
	if restarts != 0 {
		t.Error("dry-run restarted containerd")
	}
	if got, _ := os.ReadFile(filepath.Join(o.hostRoot, "etc/containerd/config.toml")); !bytes.Equal(got, in) {
		t.Error("dry-run changed the config")
	}
	for _, p := range []string{"etc/containerd/config.toml" + backupSuffix, "usr/local/bin/" + shimName} {
		if _, err := os.Lstat(filepath.Join(o.hostRoot, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("dry-run wrote %s", p)
		}
	}
	// Missing config: printed, not created.
	o2, stdout2 := node(t, nil, &restarts)
	o2.dryRun = true
	if _, err := run(o2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stdout2.Bytes(), newConfig("wazero", 3)) {
		t.Errorf("dry-run output for a missing config:\n%s", stdout2)
	}
	if _, err := os.Lstat(filepath.Join(o2.hostRoot, "etc/containerd")); !errors.Is(err, os.ErrNotExist) {
		t.Error("dry-run created the config directory")
	}
}

func TestRunMissingConfigIsCreated(t *testing.T) {
	restarts := 0
	o, _ := node(t, nil, &restarts)
	o.restart = "auto"
	sum, err := run(o)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sum, "config: created /etc/containerd/config.toml with runtime wazero (version 3") || !strings.Contains(sum, "restart: run `systemctl restart containerd`") {
		t.Errorf("summary = %s", sum)
	}
	if restarts != 0 {
		t.Error("-restart auto ran the restart")
	}
	got, err := os.ReadFile(filepath.Join(o.hostRoot, "etc/containerd/config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	out, res, err := editConfig(got, "wazero", false)
	if err != nil || res.changed || res.version != 3 || !bytes.Equal(out, got) {
		t.Errorf("created config is not recognised as set up: %v %+v\n%s", err, res, got)
	}
}

func TestRunErrors(t *testing.T) {
	restarts := 0
	v1, _ := os.ReadFile("testdata/v1-no-version.toml")
	o, _ := node(t, v1, &restarts)
	if _, err := run(o); err == nil || !strings.Contains(err.Error(), "version 1 config") {
		t.Errorf("version 1: err = %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(o.hostRoot, "etc/containerd/config.toml")); !bytes.Equal(got, v1) {
		t.Error("version 1 config changed")
	}

	conflict, _ := os.ReadFile("testdata/v3-conflict.toml")
	o, _ = node(t, conflict, &restarts)
	if _, err := run(o); !errors.Is(err, errConflict) {
		t.Errorf("conflict: err = %v", err)
	}
	o.force = true
	if sum, err := run(o); err != nil || !strings.Contains(sum, "-force") {
		t.Errorf("conflict with -force: %s, %v", sum, err)
	}
	if restarts != 1 {
		t.Errorf("restarts = %d, want 1", restarts)
	}

	o, _ = node(t, nil, &restarts)
	o.restart = "sometimes"
	if _, err := run(o); err == nil {
		t.Error("bad -restart accepted")
	}
	o.restart = "none"
	o.binDir = "/opt/bin"
	if _, err := run(o); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("missing bin dir: %v", err)
	}
	o.binDir = "/usr/local/bin"
	cfg := filepath.Join(o.hostRoot, "etc/containerd/config.toml")
	os.MkdirAll(filepath.Dir(cfg), 0o755)
	os.WriteFile(cfg+".real", []byte("version = 3\n"), 0o644)
	os.Symlink("config.toml.real", cfg)
	if sum, err := run(o); err != nil || !strings.Contains(sum, "config: added runtime wazero (version 3)") {
		t.Errorf("symlinked config: %s, %v", sum, err)
	}
	if b, _ := os.ReadFile(cfg + ".real"); !bytes.Contains(b, []byte("runtimes.wazero]")) {
		t.Errorf("the link's target was not edited:\n%s", b)
	}
	if fi, err := os.Lstat(cfg); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link was replaced: %v", err)
	}
}

func TestRunInstallsRunnerBeforeShim(t *testing.T) {
	restarts := 0
	o, _ := node(t, nil, &restarts)
	o.runnerSrc = filepath.Join(t.TempDir(), runnerName)
	if err := os.WriteFile(o.runnerSrc, []byte("\x7fELF runner v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := run(o)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sum, "runner: installed /usr/local/bin/containerd-shim-wazero-v1-runner; binary: installed /usr/local/bin/containerd-shim-wazero-v1; config: ") {
		t.Errorf("summary = %s", sum)
	}
	got, err := os.ReadFile(filepath.Join(o.hostRoot, "usr/local/bin", runnerName))
	if err != nil || string(got) != "\x7fELF runner v1" {
		t.Errorf("installed runner = %q, %v", got, err)
	}
	if fi, err := os.Stat(filepath.Join(o.hostRoot, "usr/local/bin", runnerName)); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("installed runner: %v %v", fi, err)
	}
	if sum, err = run(o); err != nil || !strings.HasPrefix(sum, "runner: unchanged; binary: unchanged; config: unchanged") {
		t.Errorf("second run: %s, %v", sum, err)
	}
	// An image without a runner binary installs the shim alone.
	o.runnerSrc = filepath.Join(t.TempDir(), "missing")
	if sum, err = run(o); err != nil || !strings.HasPrefix(sum, "binary: unchanged; config: unchanged") {
		t.Errorf("without a runner: %s, %v", sum, err)
	}
}

func TestRunInstallsServerBeforeShim(t *testing.T) {
	restarts := 0
	o, _ := node(t, nil, &restarts)
	o.runnerSrc = filepath.Join(t.TempDir(), runnerName)
	o.serverSrc = filepath.Join(t.TempDir(), serverName)
	for src, data := range map[string]string{o.runnerSrc: "\x7fELF runner v1", o.serverSrc: "\x7fELF server v1"} {
		if err := os.WriteFile(src, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := run(o)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sum, "runner: installed /usr/local/bin/containerd-shim-wazero-v1-runner; server: installed /usr/local/bin/containerd-shim-wazero-v1-server; binary: installed /usr/local/bin/containerd-shim-wazero-v1; config: ") {
		t.Errorf("summary = %s", sum)
	}
	got, err := os.ReadFile(filepath.Join(o.hostRoot, "usr/local/bin", serverName))
	if err != nil || string(got) != "\x7fELF server v1" {
		t.Errorf("installed server = %q, %v", got, err)
	}
	if fi, err := os.Stat(filepath.Join(o.hostRoot, "usr/local/bin", serverName)); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("installed server: %v %v", fi, err)
	}
	if sum, err = run(o); err != nil || !strings.HasPrefix(sum, "runner: unchanged; server: unchanged; binary: unchanged; config: unchanged") {
		t.Errorf("second run: %s, %v", sum, err)
	}
}

// TestInstallBinaries: the runner and the server are installed only when their source exists,
// the shim always; the parts name what was done, in that order, and stop at a failure.
func TestInstallBinaries(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(src, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	o := &options{
		runnerSrc: filepath.Join(src, "no-runner"), // absent: skipped
		serverSrc: write(serverName, "server"),
		shimSrc:   write(shimName, "shim"),
	}
	bin := hostFile{host: "/usr/local/bin", path: dst}
	parts, err := o.installBinaries(bin)
	if err != nil {
		t.Fatal(err)
	}
	want := "server: installed /usr/local/bin/" + serverName + "; binary: installed /usr/local/bin/" + shimName
	if got := strings.Join(parts, "; "); got != want {
		t.Errorf("parts = %q, want %q", got, want)
	}
	if b, err := os.ReadFile(filepath.Join(dst, shimName)); err != nil || string(b) != "shim" {
		t.Errorf("installed shim = %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dst, runnerName)); err == nil {
		t.Errorf("runner installed from a source that does not exist")
	}
	o.shimSrc = filepath.Join(src, "no-shim")
	parts, err = o.installBinaries(bin)
	if err == nil || strings.Join(parts, "; ") != "server: unchanged" {
		t.Errorf("missing shim: parts %q, err %v; want the server's part and an error", parts, err)
	}
}

// TestApplyConfig: what the summary says for each -restart when nothing is restarted, and that an
// unchanged config under systemctl is checked, not restarted, when the CRI lists the handler.
func TestApplyConfig(t *testing.T) {
	l := layout{units: []string{"containerd"}, socket: "/run/containerd/containerd.sock"}
	changed := &configPlan{changed: true}
	for _, tc := range []struct {
		o    options
		p    *configPlan
		want string
	}{
		{options{restart: "auto"}, &configPlan{}, "not needed"},
		{options{restart: "systemctl", dryRun: true}, changed, "containerd would need a restart (containerd)"},
		{options{restart: "none"}, changed, "skipped (-restart none); restart containerd (containerd) to apply"},
		{options{restart: "auto"}, changed, "run `systemctl restart containerd` on the node to apply (or nsenter -t 1 -m -u -i -n -p -- systemctl restart containerd from a hostPID pod)"},
	} {
		tc.o.hostRoot = t.TempDir()
		got, err := tc.o.applyConfig(l, tc.p)
		if err != nil || got != tc.want {
			t.Errorf("-restart %s (dry run %v, changed %v) = %q, %v; want %q", tc.o.restart, tc.o.dryRun, tc.p.changed, got, err, tc.want)
		}
	}
	restarts := 0
	o := options{hostRoot: t.TempDir(), restart: "systemctl", handler: "wazero",
		restartFn: func(string, string, io.Writer) error { restarts++; return nil },
		criCheck:  func(string, string, time.Duration) error { return nil },
	}
	got, err := o.applyConfig(l, &configPlan{})
	if err != nil || restarts != 0 || !strings.HasPrefix(got, "not needed (the CRI at /run/containerd/containerd.sock lists runtime handler wazero)") {
		t.Errorf("unchanged under systemctl: %q, %v, %d restarts", got, err, restarts)
	}
}
