// Command wazero-shim-installer installs containerd-shim-wazero-v1 on a Kubernetes node: it copies
// the shim binary (and the runner binary built with it, when there is one) into a directory on
// containerd's PATH and adds the runtime for a RuntimeClass handler to containerd's config.toml. It is meant to run in a privileged node-installer pod with
// the host's / mounted at -host-root, and is idempotent: a second run changes nothing.
//
//	wazero-shim-installer [-host-root /host] [-config /etc/containerd/config.toml]
//	    [-shim-src /opt/wazero/containerd-shim-wazero-v1]
//	    [-runner-src /opt/wazero/containerd-shim-wazero-v1-runner] [-bin-dir /usr/local/bin]
//	    [-handler wazero] [-restart auto|none|systemctl] [-force] [-dry-run]
//
// config.toml is edited as text, never re-encoded: every comment and setting is kept byte for
// byte, and a runtime section is appended only when none exists. On success it prints one line,
// e.g. "runner: unchanged; binary: unchanged; config: added runtime wazero (version 3); restart: ...".
// Exit status:
// 0 success, 1 error, 3 the runtime section exists with another runtime_type (nothing changed in
// the config; -force corrects it).
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// shimName is the binary containerd looks for on its PATH for runtime io.containerd.wazero.v1.
const shimName = "containerd-shim-wazero-v1"

// runnerName is the runner binary the shim looks for beside itself (engine.RunnerBinary). The
// shim uses it only when it was built together with the shim, so installing it is optional and
// the order of the two copies does not matter (the runner goes first).
const runnerName = "containerd-shim-wazero-v1-runner"

// backupSuffix names the copy of config.toml kept before the first change.
const backupSuffix = ".bak-wazero"

type options struct {
	hostRoot string // prefix of every host path
	config   string // host path of containerd's config.toml
	shimSrc  string // the shim binary to install (a path in the installer's own filesystem)
	// runnerSrc is the runner binary to install beside the shim; "" or a missing file: none.
	runnerSrc string
	binDir    string // host directory to install it into
	handler   string
	restart   string // auto, none, systemctl
	force     bool
	dryRun    bool

	stdout, stderr io.Writer
	// restartFn restarts containerd (-restart systemctl); tests replace it.
	restartFn func(hostRoot string, out io.Writer) error
}

func main() {
	o := options{stdout: os.Stdout, stderr: os.Stderr, restartFn: systemctlRestart}
	flag.StringVar(&o.hostRoot, "host-root", "/", "where the host's / is mounted (e.g. /host in a node-installer pod)")
	flag.StringVar(&o.config, "config", "/etc/containerd/config.toml", "containerd config file, as a host path")
	flag.StringVar(&o.shimSrc, "shim-src", "/opt/wazero/"+shimName, "shim binary to install (in the installer's filesystem)")
	flag.StringVar(&o.runnerSrc, "runner-src", "/opt/wazero/"+runnerName, "runner binary to install beside the shim, if it exists (in the installer's filesystem; \"\" for none)")
	flag.StringVar(&o.binDir, "bin-dir", "/usr/local/bin", "host directory on containerd's PATH to install the shim into")
	flag.StringVar(&o.handler, "handler", "wazero", "runtime name in config.toml, which is the RuntimeClass handler")
	flag.StringVar(&o.restart, "restart", "auto", "after a config change: auto (print the restart command), none, or systemctl (run it through nsenter into PID 1)")
	flag.BoolVar(&o.force, "force", false, "set runtime_type when the runtime section exists with another value")
	flag.BoolVar(&o.dryRun, "dry-run", false, "change nothing; print the resulting config.toml to stdout")
	flag.Parse()
	if flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	summary, err := run(o)
	if summary != "" {
		if o.dryRun {
			fmt.Fprintln(o.stderr, "dry-run: "+summary)
		} else {
			fmt.Fprintln(o.stdout, summary)
		}
	}
	if err != nil {
		fmt.Fprintln(o.stderr, "wazero-shim-installer: "+err.Error())
		if errors.Is(err, errConflict) {
			os.Exit(3)
		}
		os.Exit(1)
	}
}

// run does the work and returns the one-line summary of what it did (also when it fails half way).
func run(o options) (string, error) {
	var parts []string
	summary := func() string { return strings.Join(parts, "; ") }
	switch o.restart {
	case "auto", "none", "systemctl":
	default:
		return "", fmt.Errorf("-restart %q: want auto, none or systemctl", o.restart)
	}
	if !filepath.IsAbs(o.config) || !filepath.IsAbs(o.binDir) {
		return "", errors.New("-config and -bin-dir must be absolute host paths")
	}
	if err := validHandler(o.handler); err != nil {
		return "", err
	}
	if fi, err := os.Stat(o.hostRoot); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("-host-root %s is not a directory", o.hostRoot)
	}
	host := func(p string) string { return filepath.Join(o.hostRoot, p) }

	if o.runnerSrc != "" {
		if _, err := os.Stat(o.runnerSrc); err == nil {
			r, err := installBinary(o.runnerSrc, host(o.binDir), runnerName, filepath.Join(o.binDir, runnerName), o.dryRun)
			if err != nil {
				return summary(), err
			}
			parts = append(parts, "runner: "+r)
		}
	}
	b, err := installBinary(o.shimSrc, host(o.binDir), shimName, filepath.Join(o.binDir, shimName), o.dryRun)
	if err != nil {
		return summary(), err
	}
	parts = append(parts, "binary: "+b)

	c, changed, err := installConfig(o, host(o.config))
	if err != nil {
		return summary(), err
	}
	parts = append(parts, "config: "+c)

	switch {
	case !changed:
		parts = append(parts, "restart: not needed")
	case o.dryRun:
		parts = append(parts, "restart: containerd would need a restart")
	case o.restart == "none":
		parts = append(parts, "restart: skipped (-restart none); restart containerd to apply")
	case o.restart == "auto":
		parts = append(parts, "restart: run `systemctl restart containerd` on the node to apply (or "+strings.Join(restartCommand, " ")+" from a hostPID pod)")
	case o.restart == "systemctl":
		if err := o.restartFn(o.hostRoot, o.stderr); err != nil {
			return summary(), err
		}
		parts = append(parts, "restart: containerd restarted")
	}
	return summary(), nil
}

// installBinary copies src to dir/name unless it already has the same content. shown is the
// destination as a host path, for messages.
func installBinary(src, dir, name, shown string, dryRun bool) (string, error) {
	want, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("reading the binary to install: %w", err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("-bin-dir: %s is not a directory on the host (it must exist and be on containerd's PATH)", dir)
	}
	dst := filepath.Join(dir, name)
	have, err := os.ReadFile(dst)
	switch {
	case err == nil && bytes.Equal(have, want):
		fi, err := os.Stat(dst)
		if err != nil {
			return "", err
		}
		if fi.Mode().Perm() == 0o755 || dryRun {
			return "unchanged", nil
		}
		if err := os.Chmod(dst, 0o755); err != nil {
			return "", err
		}
		return "unchanged (mode set to 0755)", nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("reading the installed %s: %w", name, err)
	}
	verb := "installed"
	if err == nil {
		verb = "updated"
	}
	if dryRun {
		return "would be " + verb + " at " + shown, nil
	}
	// A new file renamed over the old one: a running shim keeps its (old) inode, and containerd
	// never sees a half-written binary.
	if err := writeAtomic(dst, want, 0o755, nil); err != nil {
		return "", err
	}
	return verb + " " + shown, nil
}

// installConfig edits (or creates) the config file at path, a host path under the host root.
func installConfig(o options, path string) (summary string, changed bool, err error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		out := newConfig(o.handler)
		msg := fmt.Sprintf("created %s with runtime %s (version 3, for containerd 2.x; there was none)", o.config, o.handler)
		if o.dryRun {
			_, err := o.stdout.Write(out)
			return "would be " + msg, true, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return "", false, err
		}
		fmt.Fprintf(o.stderr, "wazero-shim-installer: %s did not exist: wrote a minimal version = 3 config (containerd 2.x). containerd 1.7 refuses version 3: give it a version = 2 config instead.\n", o.config)
		return msg, true, writeAtomic(path, out, 0o644, nil)
	}
	if err != nil {
		return "", false, err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return "", false, fmt.Errorf("%s is a symbolic link; pass the file it points to as -config", o.config)
	}
	if !fi.Mode().IsRegular() {
		return "", false, fmt.Errorf("%s is not a regular file", o.config)
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return "", false, err
	}
	out, res, err := editConfig(src, o.handler, o.force)
	for _, w := range res.warn {
		fmt.Fprintf(o.stderr, "wazero-shim-installer: warning: %s: %s\n", o.config, w)
	}
	if err != nil {
		return "", false, fmt.Errorf("%s: %w", o.config, err)
	}
	if res.changed {
		if err := checkEdited(out, res.version, o.handler); err != nil {
			return "", false, err
		}
	}
	if o.dryRun {
		_, err := o.stdout.Write(out)
		if res.changed {
			return "would be " + res.summary, true, err
		}
		return res.summary, false, err
	}
	if !res.changed {
		return res.summary, false, nil
	}
	backup := path + backupSuffix
	if _, err := os.Lstat(backup); errors.Is(err, fs.ErrNotExist) {
		if err := writeAtomic(backup, src, fi.Mode().Perm(), fi); err != nil {
			return "", false, fmt.Errorf("writing the backup: %w", err)
		}
		res.summary += ", backup " + o.config + backupSuffix
	}
	if err := writeAtomic(path, out, fi.Mode().Perm(), fi); err != nil {
		return "", false, err
	}
	return res.summary, true, nil
}

// writeAtomic writes data to a temporary file in path's directory and renames it over path, so a
// reader sees the old or the new content, never a mix. like, when not nil, is the file replaced,
// whose owner is kept.
func writeAtomic(path string, data []byte, mode fs.FileMode, like fs.FileInfo) (err error) {
	dir, base := filepath.Split(path)
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if like != nil {
		if err = copyOwner(f.Name(), like); err != nil {
			return err
		}
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
