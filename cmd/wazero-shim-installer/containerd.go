package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ctrdVersion is the version of the node's containerd.
type ctrdVersion struct {
	major, minor int
	raw          string // as reported, e.g. "2.4.2+unknown", "1.6.20~ds1", "v1.7.22-k3s1"
}

func (v ctrdVersion) String() string { return v.raw }

// configVersionFor is the config format a containerd of this version reads: 1.x reads version 2
// only (and ignores a version 3 file's sections without a word: 1.6.20 does); 2.x reads 2, 3 and
// later, and writes 3.
func (v ctrdVersion) configVersion() int {
	if v.major >= 2 {
		return 3
	}
	return 2
}

var versionRE = regexp.MustCompile(`^v?(\d+)\.(\d+)`)

func parseVersion(s string) (ctrdVersion, error) {
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		return ctrdVersion{}, fmt.Errorf("%q is not a containerd version (want MAJOR.MINOR[.PATCH])", s)
	}
	maj, _ := strconv.Atoi(m[1])
	min, _ := strconv.Atoi(m[2])
	return ctrdVersion{major: maj, minor: min, raw: strings.TrimPrefix(s, "v")}, nil
}

// hostCommand runs a host binary (a host path) with the host's root as its root: chrooted into
// -host-root unless that is /. Its libraries, and the files it names, are the host's.
func (o *options) hostCommand(bin string, args ...string) *exec.Cmd {
	if o.execHook != nil {
		return o.execHook(bin, args...)
	}
	cmd := exec.Command(bin, args...)
	if filepath.Clean(o.hostRoot) != "/" {
		cmd.SysProcAttr = chrootAttr(o.hostRoot)
		cmd.Dir = "/"
	}
	return cmd
}

// findContainerd returns the host path of the node's containerd binary: -containerd, else the
// layout's first candidate that exists.
func (o *options) findContainerd(l layout) (string, error) {
	cands := l.binaries
	if o.containerd != "" {
		cands = []string{o.containerd}
	}
	for _, c := range cands {
		f, err := o.resolve(c)
		if err != nil {
			return "", err
		}
		if fi, err := os.Stat(f.path); err == nil && fi.Mode().IsRegular() {
			// The resolved path, so that a link such as k3s's data/current/bin never leads
			// out of the host root when it is run chrooted.
			return f.host, nil
		}
	}
	if o.containerd != "" {
		return "", fmt.Errorf("-containerd %s: no such file on the host", o.containerd)
	}
	return "", fmt.Errorf("no containerd binary for %s at %s: pass -containerd with the host path of the containerd the kubelet uses (the installer runs it to learn its version and to check the edited config)", l.name, strings.Join(l.binaries, ", "))
}

// containerdVersion runs `containerd --version` on the host, or takes -containerd-version.
func (o *options) containerdVersion(bin string) (ctrdVersion, error) {
	if o.containerdVersionFlag != "" {
		return parseVersion(o.containerdVersionFlag)
	}
	out, err := o.run(o.hostCommand(bin, "--version"))
	if err != nil {
		return ctrdVersion{}, fmt.Errorf("%s --version: %w (pass -containerd-version to say which version it is)", bin, err)
	}
	// "containerd github.com/containerd/containerd/v2 2.4.2+unknown <commit>"
	f := strings.Fields(string(out))
	if len(f) < 3 {
		return ctrdVersion{}, fmt.Errorf("%s --version printed %q; pass -containerd-version", bin, bytes.TrimSpace(out))
	}
	v, err := parseVersion(f[2])
	if err != nil {
		return ctrdVersion{}, fmt.Errorf("%s --version printed %q: %w; pass -containerd-version", bin, bytes.TrimSpace(out), err)
	}
	return v, nil
}

// run runs cmd with a time bound and returns its stdout; a failure carries its stderr.
func (o *options) run(cmd *exec.Cmd) ([]byte, error) {
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			msg := strings.TrimSpace(se.String())
			if msg == "" {
				msg = strings.TrimSpace(so.String())
			}
			if len(msg) > 2000 {
				msg = msg[len(msg)-2000:]
			}
			return so.Bytes(), fmt.Errorf("%v: %s", err, msg)
		}
		return so.Bytes(), nil
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		<-done
		return nil, fmt.Errorf("%s did not finish within a minute", cmd.Path)
	}
}

// validate has the node's containerd load content as its config (`containerd --config F config
// dump`, F a file written in dir, a host directory, so that relative imports resolve as they will)
// and checks that the loaded config has the runtime with our runtime_type where that containerd
// looks for it. This catches what a text check cannot: a config containerd refuses, and a form it
// silently ignores (containerd 1.x reading a version 3 file).
func (o *options) validate(bin string, dir hostFile, content []byte) error {
	f, err := os.CreateTemp(dir.path, ".wazero-shim-installer-check-*.toml")
	if err != nil {
		return fmt.Errorf("writing the config to check: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing the config to check: %w", err)
	}
	check := filepath.Join(dir.host, filepath.Base(f.Name()))
	out, err := o.run(o.hostCommand(bin, "--config", check, "config", "dump"))
	if err != nil {
		return fmt.Errorf("%s refuses the edited config (`containerd --config FILE config dump`): %w", bin, err)
	}
	doc, err := scan(out)
	if err != nil {
		return fmt.Errorf("cannot read the output of %s config dump: %w", bin, err)
	}
	v, err := configVersion(out, doc)
	if err != nil {
		return err
	}
	want := append(runtimePath(v, o.handler), "runtime_type")
	// The CRI plugin refuses to start when its default runtime is not among the runtimes; a
	// version 2 file's runtimes replace containerd 1.x's default ones (runc) instead of adding to
	// them, which `config dump` shows but does not refuse.
	crictrd := runtimePath(v, "")[:3]
	def := "runc"
	for _, k := range doc.keys {
		if pathEqual(k.path, append(slices.Clone(crictrd), "default_runtime_name")) && k.str != nil && *k.str != "" {
			def = *k.str
		}
	}
	hasDefault := false
	for _, k := range doc.keys {
		if hasPrefix(k.path, runtimePath(v, def)) {
			hasDefault = true
		}
	}
	if o.localImagePull && !hasLocalPull(out, doc) {
		return fmt.Errorf("%s loads the edited config without %s.%s = true in its `config dump`: this containerd does not know the setting (it needs containerd 2.0 or later)", bin, strings.Join(criImagesTable, "."), localPullKey)
	}
	for _, k := range doc.keys {
		if pathEqual(k.path, want) && k.str != nil && *k.str == runtimeType {
			if !hasDefault {
				return fmt.Errorf("%s would load the edited config without its default runtime %q (default_runtime_name): the CRI plugin would not start. A version 2 file's runtimes replace containerd 1.x's built-in ones: add [%s] with runtime_type = \"io.containerd.runc.v2\" (as `containerd config default` has it), then run the installer again", bin, def, strings.Join(runtimePath(v, def), "."))
			}
			return o.checkAnnotationsLoaded(bin, content, out, doc, v)
		}
	}
	return fmt.Errorf("%s loads the edited config without runtime %s (no %s = %q in its `config dump`): it would ignore the runtime; the config form does not match this containerd", bin, o.handler, strings.Join(want, "."), runtimeType)
}

// checkAnnotationsLoaded checks that each annotation key that passes the shim's annotations on in
// content (the config given to containerd) does so in dump, containerd's `config dump` of it
// (version v, scanned as doc): containerd read the key where the CRI plugin looks for it.
func (o *options) checkAnnotationsLoaded(bin string, content, dump []byte, doc *document, v int) error {
	cdoc, err := scan(maskTemplate(content))
	if err != nil {
		return nil // not a config the installer wrote; containerd loaded it, which is what counts
	}
	cv, err := configVersion(content, cdoc)
	if err != nil {
		return nil
	}
	for _, key := range annotationKeys {
		if !passesShim(content, cdoc, runtimePath(cv, o.handler), key) {
			continue
		}
		if !passesShim(dump, doc, runtimePath(v, o.handler), key) {
			return fmt.Errorf("%s loads the edited config without %s covering %q for runtime %s (its `config dump` lacks %s): the CRI plugin would pass no wazero.dev/ annotation to the shim", bin, key, annotationPattern, o.handler, strings.Join(append(runtimePath(v, o.handler), key), "."))
		}
	}
	return nil
}

// passesShim reports whether the runtime table at target of a scanned config has key (one of
// annotationKeys) with a pattern covering the shim's annotations.
func passesShim(src []byte, doc *document, target []string, key string) bool {
	full := append(slices.Clone(target), key)
	for _, k := range doc.keys {
		if pathEqual(k.path, full) {
			a, err := parseStringArray(src[k.valStart:k.valEnd])
			return err == nil && coversShim(a.elems)
		}
	}
	return false
}
