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
// byte, and a runtime section (runtime_type, and pod_annotations and container_annotations =
// ["wazero.dev/*"], so that the shim's pod annotations reach it) is appended only when none
// exists; an existing one gets the annotation keys or the pattern it lacks. On success it prints one line,
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
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/engine"
)

// shimName is the binary containerd looks for on its PATH for runtime io.containerd.wazero.v1.
const shimName = "containerd-shim-wazero-v1"

// runnerName is the runner binary the shim looks for beside itself (engine.RunnerBinary). The
// shim uses it only when it was built together with the shim, so installing it is optional and
// the order of the two copies does not matter (the runner goes first).
const runnerName = "containerd-shim-wazero-v1-runner"

// serverName is the shim's server binary, which shimName (a lean entry, package shimentry) starts
// from beside itself. It is installed before shimName, so that a new entry never finds an old
// installation's directory without its server.
const serverName = "containerd-shim-wazero-v1-server"

// backupSuffix names the copy of config.toml kept before the first change.
const backupSuffix = ".bak-wazero"

type options struct {
	hostRoot string // prefix of every host path
	distro   string // auto or a layout name
	config   string // host path of the file to edit; "" = the layout's
	shimSrc  string // the shim binary to install (a path in the installer's own filesystem)
	// runnerSrc is the runner binary to install beside the shim; "" or a missing file: none.
	runnerSrc string
	// serverSrc is the server binary to install beside the shim; "" or a missing file: none (a
	// shim built before the entry and the server were split is one binary).
	serverSrc string
	binDir    string // host directory to install it into
	handler   string
	restart   string // auto, none, systemctl
	force     bool
	dryRun    bool
	// containerd is the host path of the node's containerd binary; "" = the layout's.
	containerd string
	// containerdVersionFlag overrides what `containerd --version` says.
	containerdVersionFlag string
	restartUnit           string        // "" = the layout's
	criSocket             string        // host path; "" = the layout's
	wait                  time.Duration // how long the CRI has to list the handler after a restart
	retry                 bool          // try again a config an earlier run rolled back
	// localImagePull sets use_local_image_pull = true (containerd 2.x): see localPullKey.
	localImagePull bool
	// warmCache runs the warm agent (runWarm) instead of installing; cacheDir is the shim's
	// compilation cache (host path) and warmNamespace the containerd namespace it watches.
	warmCache     bool
	cacheDir      string
	warmNamespace string

	stdout, stderr io.Writer
	// restartFn restarts containerd's systemd unit (-restart systemctl); tests replace it.
	restartFn func(hostRoot, unit string, out io.Writer) error
	// criCheck waits until the CRI socket (a path in the installer's filesystem) answers and lists
	// handler ("" = answers at all); tests replace it.
	criCheck func(socket, handler string, timeout time.Duration) error
	// execHook, when set, makes the commands run on the host (tests: a fake containerd).
	execHook func(bin string, args ...string) *exec.Cmd
}

func main() {
	o := options{stdout: os.Stdout, stderr: os.Stderr, restartFn: systemctlRestart, criCheck: waitCRI}
	flag.StringVar(&o.hostRoot, "host-root", "/", "where the host's / is mounted (e.g. /host in a node-installer pod); host paths, symlinks included, are resolved inside it")
	flag.StringVar(&o.distro, "distro", "auto", "which containerd setup the node has: auto (detect), "+layoutNames())
	flag.StringVar(&o.config, "config", "", "host path of the containerd config file to edit (default: the distribution's: /etc/containerd/config.toml for plain containerd)")
	flag.StringVar(&o.containerd, "containerd", "", "host path of the node's containerd binary, run to learn its version and to check the edited config (default: the distribution's)")
	flag.StringVar(&o.containerdVersionFlag, "containerd-version", "", "the node's containerd version (e.g. 1.6.20 or 2.4.2) instead of asking `containerd --version`")
	flag.StringVar(&o.shimSrc, "shim-src", "/opt/wazero/"+shimName, "shim binary to install (in the installer's filesystem)")
	flag.StringVar(&o.serverSrc, "server-src", "/opt/wazero/"+serverName, "shim server binary to install beside the shim, if it exists (in the installer's filesystem; \"\" for none)")
	flag.StringVar(&o.runnerSrc, "runner-src", "/opt/wazero/"+runnerName, "runner binary to install beside the shim, if it exists (in the installer's filesystem; \"\" for none)")
	flag.StringVar(&o.binDir, "bin-dir", "/usr/local/bin", "host directory on containerd's PATH to install the shim into")
	flag.StringVar(&o.handler, "handler", "wazero", "runtime name in config.toml, which is the RuntimeClass handler")
	flag.StringVar(&o.restart, "restart", "auto", "after a config change: auto (print the restart command), none, or systemctl (restart the unit through nsenter into PID 1, wait for the CRI to list the handler, roll back if it does not)")
	flag.StringVar(&o.restartUnit, "restart-unit", "", "systemd unit that runs containerd (default: the distribution's: containerd, k3s or k3s-agent, rke2-server or rke2-agent, k0scontroller or k0sworker, snap.microk8s.daemon-containerd)")
	flag.StringVar(&o.criSocket, "cri-socket", "", "host path of containerd's socket, asked after a restart (default: the distribution's: /run/containerd/containerd.sock for plain containerd)")
	flag.DurationVar(&o.wait, "wait", 2*time.Minute, "how long containerd has, after a restart, to answer on the CRI socket with the handler listed before the config is rolled back")
	flag.BoolVar(&o.retry, "retry", false, "try a config again that an earlier run restarted containerd with and rolled back")
	flag.BoolVar(&o.localImagePull, "local-image-pull", false, "containerd 2.x: also set use_local_image_pull = true in the CRI images plugin, so kubelet pulls unpack images published as a bare wasip1/wasm manifest (containerd 2.4's transfer-service pull does not); not needed for images pushed by wasmimg (docs/kubernetes.md)")
	flag.BoolVar(&o.force, "force", false, "set runtime_type when the runtime section exists with another value")
	flag.BoolVar(&o.dryRun, "dry-run", false, "change nothing; print the resulting config file to stdout (containerd still checks it, from a temporary file)")
	flag.BoolVar(&o.warmCache, "warm-cache", false, "run as the node's warm agent instead of installing: compile the module of every wasm image containerd has or pulls (namespace -warm-namespace) into the shim's compilation cache, so that its first container on the node starts warm; runs until SIGTERM")
	flag.StringVar(&o.cacheDir, "cache-dir", engine.DefaultCacheDir, "with -warm-cache: host path of the shim's compilation cache (the shim's CONTAINERD_SHIM_WAZERO_CACHE_DIR)")
	flag.StringVar(&o.warmNamespace, "warm-namespace", "k8s.io", "with -warm-cache: the containerd namespace whose images are warmed (the kubelet's is k8s.io)")
	flag.Parse()
	if flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	if o.warmCache {
		if err := runWarm(o); err != nil {
			fmt.Fprintln(o.stderr, "wazero-shim-installer: "+err.Error())
			os.Exit(1)
		}
		return
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
		switch {
		case errors.Is(err, errConflict):
			os.Exit(3)
		case errors.Is(err, errRolledBack):
			os.Exit(4)
		}
		os.Exit(1)
	}
}

// run does the work and returns the one-line summary of what it did (also when it fails half way).
// Everything that can make it refuse (flags, the node's layout and containerd, the config edit and
// containerd's check of it) happens before anything is written: a refusal installs nothing.
func run(o options) (string, error) {
	if err := o.checkFlags(); err != nil {
		return "", err
	}
	l, bin, ver, binDir, err := o.inspectNode()
	if err != nil {
		return "", err
	}
	p, err := o.planConfig(l, ver, bin)
	if err != nil {
		return "", err
	}
	if o.dryRun {
		if _, err := o.stdout.Write(p.out); err != nil {
			return "", err
		}
	}

	parts, err := o.installBinaries(binDir)
	summary := func() string { return strings.Join(parts, "; ") }
	if err != nil {
		return summary(), err
	}
	c, err := o.writeConfig(p)
	if err != nil {
		return summary(), err
	}
	parts = append(parts, "config: "+c)
	r, err := o.applyConfig(l, p)
	parts = append(parts, "restart: "+r)
	return summary(), err
}

// checkFlags refuses flags that are off, before the node is looked at; -wait of zero or less is
// the default, 2 minutes.
func (o *options) checkFlags() error {
	switch o.restart {
	case "auto", "none", "systemctl":
	default:
		return fmt.Errorf("-restart %q: want auto, none or systemctl", o.restart)
	}
	if (o.config != "" && !filepath.IsAbs(o.config)) || !filepath.IsAbs(o.binDir) {
		return errors.New("-config and -bin-dir must be absolute host paths")
	}
	if err := validHandler(o.handler); err != nil {
		return err
	}
	if fi, err := os.Stat(o.hostRoot); err != nil || !fi.IsDir() {
		return fmt.Errorf("-host-root %s is not a directory", o.hostRoot)
	}
	if o.wait <= 0 {
		o.wait = 2 * time.Minute
	}
	return nil
}

// inspectNode finds what the install goes into: the node's layout, its containerd binary (bin) and
// version, and -bin-dir, which must be a directory on the host.
func (o *options) inspectNode() (l layout, bin string, ver ctrdVersion, binDir hostFile, err error) {
	if l, err = o.detectLayout(); err != nil {
		return
	}
	if bin, err = o.findContainerd(l); err != nil {
		return
	}
	if ver, err = o.containerdVersion(bin); err != nil {
		return
	}
	if binDir, err = o.resolve(o.binDir); err != nil {
		return
	}
	if fi, serr := os.Stat(binDir.path); serr != nil || !fi.IsDir() {
		err = fmt.Errorf("-bin-dir: %s is not a directory on the host (it must exist and be on containerd's PATH)", o.binDir)
	}
	return
}

// installBinaries installs the runner and the server, each when its source exists, then the shim,
// into binDir. It returns a summary part for each binary installed, also when one fails.
func (o *options) installBinaries(binDir hostFile) ([]string, error) {
	var parts []string
	for _, b := range []struct{ src, name, part string }{
		{o.runnerSrc, runnerName, "runner"},
		{o.serverSrc, serverName, "server"},
	} {
		if b.src == "" {
			continue
		}
		if _, err := os.Stat(b.src); err != nil {
			continue
		}
		r, err := installBinary(b.src, binDir.path, b.name, filepath.Join(binDir.host, b.name), o.dryRun)
		if err != nil {
			return parts, err
		}
		parts = append(parts, b.part+": "+r)
	}
	r, err := installBinary(o.shimSrc, binDir.path, shimName, filepath.Join(binDir.host, shimName), o.dryRun)
	if err != nil {
		return parts, err
	}
	return append(parts, "binary: "+r), nil
}

// applyConfig is the restart step after the config is written, by -restart: under systemctl
// containerd is restarted and checked (rolled back when it does not list the handler), or checked
// alone when the config was unchanged; otherwise the summary says what to do.
func (o *options) applyConfig(l layout, p *configPlan) (string, error) {
	unit := o.unit(l)
	switch {
	case !p.changed && o.restart == "systemctl" && !o.dryRun:
		return o.checkUnchanged(l, unit)
	case !p.changed:
		return "not needed", nil
	case o.dryRun:
		return "containerd would need a restart (" + unit + ")", nil
	case o.restart == "none":
		return "skipped (-restart none); restart containerd (" + unit + ") to apply", nil
	case o.restart == "auto":
		shown := append(restartCommand[:len(restartCommand)-1:len(restartCommand)-1], unit)
		return "run `systemctl restart " + unit + "` on the node to apply (or " + strings.Join(shown, " ") + " from a hostPID pod)", nil
	default: // systemctl
		return o.restartAndCheck(l, unit, p)
	}
}

// installBinary copies src to dir/name unless it already has the same content. shown is the
// destination as a host path, for messages.
func installBinary(src, dir, name, shown string, dryRun bool) (string, error) {
	want, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("reading the binary to install: %w", err)
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
