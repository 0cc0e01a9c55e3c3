package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// rollbackMarker is a host file left by a run whose restart was rolled back: the same edit is not
// tried again (restarting containerd on that node every time the pod restarts) until it is removed
// or -retry is given.
const rollbackMarker = "/var/lib/containerd-shim-wazero/installer-rolled-back"

// configPlan is the config change, worked out and checked before anything is written.
type configPlan struct {
	file    hostFile
	shown   string // the file for messages: as given, with where its links lead
	existed bool
	fi      fs.FileInfo
	src     []byte // the file as it is
	out     []byte // the file as it will be
	changed bool
	summary string
	version int
	id      string // identifies this edit in the rollback marker
}

// planConfig works out the edit of the layout's config file for the node's containerd (version
// ver, binary bin), and has that containerd check the result. Its steps: find the file, work out
// its new text (a new file, or an edit of the one there), add -local-image-pull's setting, refuse
// an edit an earlier run rolled back, and have containerd check what it will load.
func (o *options) planConfig(l layout, ver ctrdVersion, bin string) (*configPlan, error) {
	p, err := o.planFile(l, ver)
	if err != nil {
		return nil, err
	}
	rendered := o.renderedConfig(l)
	fi, err := os.Stat(p.file.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		o.planNew(p, l, ver, rendered)
	case err != nil:
		return nil, err
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s is not a regular file", p.shown)
	default:
		if err := o.planEdit(p, fi, l, ver, rendered); err != nil {
			return nil, err
		}
	}
	if err := o.planLocalImagePull(p, l, ver); err != nil {
		return nil, err
	}
	if !p.changed {
		return p, nil
	}
	sum := sha256.Sum256(append([]byte(p.file.host+"\n"), p.out...))
	p.id = "sha256:" + hex.EncodeToString(sum[:])
	if err := o.refuseRolledBack(p); err != nil {
		return nil, err
	}
	if err := o.checkPlan(p, l, ver, bin, rendered); err != nil {
		return nil, err
	}
	return p, nil
}

// planFile starts the plan with the config file to edit: -config, else the layout's file (for
// k3s and RKE2, the template for the node's containerd major version).
func (o *options) planFile(l layout, ver ctrdVersion) (*configPlan, error) {
	path := o.config
	if path == "" {
		path = l.config
		if l.template {
			path = o.templateFor(l, ver.major)
		}
	}
	f, err := o.resolve(path)
	if err != nil {
		return nil, err
	}
	p := &configPlan{file: f, shown: path}
	if f.host != filepath.Clean(path) {
		p.shown = fmt.Sprintf("%s (a link to %s)", path, f.host)
	}
	return p, nil
}

// renderedConfig is, for a layout with a template (k3s, RKE2), the config its distribution
// generated last; nil for other layouts or when there is none (yet).
func (o *options) renderedConfig(l layout) []byte {
	if !l.template {
		return nil
	}
	r, err := o.resolve(l.rendered)
	if err != nil {
		return nil
	}
	rendered, _ := os.ReadFile(r.path)
	return rendered
}

// planNew plans a config file where there is none: a config with the runtime alone, of the
// version the node's containerd reads by default (a template takes the generated config's).
func (o *options) planNew(p *configPlan, l layout, ver ctrdVersion, rendered []byte) {
	p.version = ver.configVersion()
	kind := ""
	if l.template {
		p.version = renderedVersion(rendered, p.version)
		p.out = newTemplate(o.handler, p.version)
		kind = " (a template over the generated config)"
	} else {
		p.out = newConfig(o.handler, p.version)
	}
	p.changed = true
	p.summary = fmt.Sprintf("created %s%s with runtime %s (version %d, for containerd %s; there was none)", p.shown, kind, o.handler, p.version, ver)
}

// planEdit plans the edit of the config file there is (fi): the runtime added to it, its warnings
// written to stderr. A version 3 or later config is refused on a containerd 1.x, which would
// ignore its sections without a word.
func (o *options) planEdit(p *configPlan, fi fs.FileInfo, l layout, ver ctrdVersion, rendered []byte) error {
	p.existed, p.fi = true, fi
	var err error
	if p.src, err = os.ReadFile(p.file.path); err != nil {
		return err
	}
	eo := editOpts{template: l.template}
	if l.template {
		eo.defaultVersion = renderedVersion(rendered, ver.configVersion())
	}
	out, res, err := editConfigWith(p.src, o.handler, o.force, eo)
	for _, w := range res.warn {
		fmt.Fprintf(o.stderr, "wazero-shim-installer: warning: %s: %s\n", p.shown, w)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", p.shown, err)
	}
	if res.version >= 3 && ver.major < 2 {
		return fmt.Errorf("%s has version = %d, but the node's containerd is %s, which reads only version 2 configs and ignores the sections of a version %d one without a word: rewrite it as a version 2 config (`containerd config default` of this containerd), then run the installer again", p.shown, res.version, ver, res.version)
	}
	if res.changed {
		if err := checkEdited(out, res.version, o.handler, l.template); err != nil {
			return err
		}
	}
	p.out, p.changed, p.summary, p.version = out, res.changed, res.summary, res.version
	return nil
}

// planLocalImagePull adds -local-image-pull's setting to the planned config: for containerd 2.x
// with a version 3 or later config only (1.x's CRI plugin always pulls with containerd's client).
func (o *options) planLocalImagePull(p *configPlan, l layout, ver ctrdVersion) error {
	if !o.localImagePull {
		return nil
	}
	if ver.major < 2 || p.version < 3 {
		return fmt.Errorf("-local-image-pull is for containerd 2.x (config version 3 or 4); the node's containerd is %s with a version %d config, whose CRI plugin always pulls with containerd's client: drop the flag", ver, p.version)
	}
	out, changed, summary, err := setLocalImagePull(p.out, o.force, l.template)
	if err != nil {
		return fmt.Errorf("%s: %w", p.shown, err)
	}
	p.out, p.changed, p.summary = out, p.changed || changed, p.summary+"; "+summary
	return nil
}

// refuseRolledBack refuses, under -restart systemctl without -retry, the very edit (p.id) that an
// earlier run rolled back, as the rollback marker records it: trying it again would restart
// containerd on the node every time the installer's pod restarts.
func (o *options) refuseRolledBack(p *configPlan) error {
	if o.restart != "systemctl" || o.retry {
		return nil
	}
	m, err := o.resolve(rollbackMarker)
	if err != nil {
		return nil
	}
	b, err := os.ReadFile(m.path)
	if err != nil {
		return nil
	}
	first, rest, _ := strings.Cut(string(b), "\n")
	if first == p.id {
		return fmt.Errorf("an earlier run restarted containerd with this very edit of %s and rolled it back (%s); nothing done. Fix the cause, then run again with -retry (or remove %s)", p.shown, strings.TrimSpace(rest), rollbackMarker)
	}
	return nil
}

// checkPlan has the node's containerd (bin) check the config it will load: the planned file, or
// for a template, the template rendered over the generated config. A template that cannot be
// rendered here, or with no generated config yet, is not checked, and the summary says so.
func (o *options) checkPlan(p *configPlan, l layout, ver ctrdVersion, bin string, rendered []byte) error {
	check := p.out
	checked := true
	if l.template {
		if rendered == nil {
			checked = false
		} else {
			check, checked = renderTemplate(p.out, rendered)
		}
	}
	if !checked {
		p.summary += fmt.Sprintf(", not checked by containerd (the template has actions other than {{ template \"base\" . }}, or %s does not exist yet)", l.rendered)
		return nil
	}
	dir, err := o.checkDir(p.file)
	if err != nil {
		return err
	}
	if err := o.validate(bin, dir, check); err != nil {
		return fmt.Errorf("%s: not changed: %w", p.shown, err)
	}
	p.summary += ", checked by containerd " + ver.String()
	return nil
}

// checkDir is the directory the config is checked from: its own (relative imports), else the
// host's /tmp.
func (o *options) checkDir(f hostFile) (hostFile, error) {
	dir := hostFile{host: filepath.Dir(f.host), path: filepath.Dir(f.path)}
	if fi, err := os.Stat(dir.path); err == nil && fi.IsDir() {
		return dir, nil
	}
	t, err := o.resolve("/tmp")
	if err != nil {
		return hostFile{}, err
	}
	if fi, err := os.Stat(t.path); err != nil || !fi.IsDir() {
		return hostFile{}, fmt.Errorf("neither %s nor /tmp exists on the host to check the config from", dir.host)
	}
	return t, nil
}

// renderedVersion is the version line of a k3s/RKE2 generated config, or def.
func renderedVersion(rendered []byte, def int) int {
	if rendered == nil {
		return def
	}
	doc, err := scan(rendered)
	if err != nil || !hasVersionLine(doc) {
		return def
	}
	if v, err := configVersion(rendered, doc); err == nil {
		return v
	}
	return def
}

// writeConfig carries out the plan.
func (o *options) writeConfig(p *configPlan) (string, error) {
	switch {
	case !p.changed:
		return p.summary, nil
	case o.dryRun:
		return "would be " + p.summary, nil
	case !p.existed:
		if err := os.MkdirAll(filepath.Dir(p.file.path), 0o755); err != nil {
			return "", err
		}
		return p.summary, writeAtomic(p.file.path, p.out, 0o644, nil)
	}
	backup := p.file.path + backupSuffix
	if _, err := os.Lstat(backup); errors.Is(err, fs.ErrNotExist) {
		if err := writeAtomic(backup, p.src, p.fi.Mode().Perm(), p.fi); err != nil {
			return "", fmt.Errorf("writing the backup: %w", err)
		}
		p.summary += ", backup " + p.file.host + backupSuffix
	}
	if err := writeAtomic(p.file.path, p.out, p.fi.Mode().Perm(), p.fi); err != nil {
		return "", err
	}
	return p.summary, nil
}

// socket is the CRI socket in the installer's filesystem.
func (o *options) socket(l layout) (string, string, error) {
	s := o.criSocket
	if s == "" {
		s = l.socket
	}
	f, err := o.resolve(s)
	return f.path, s, err
}

// restartAndCheck restarts containerd after a config change and waits for the CRI to list the
// handler. When it does not, the config is put back as it was, containerd restarted again, and
// the error says so (errRolledBack).
func (o *options) restartAndCheck(l layout, unit string, p *configPlan) (string, error) {
	sock, shownSock, err := o.socket(l)
	if err != nil {
		return "", err
	}
	err = o.restartFn(o.hostRoot, unit, o.stderr)
	if err == nil {
		err = o.criCheck(sock, o.handler, o.wait)
	}
	if err == nil {
		if m, merr := o.resolve(rollbackMarker); merr == nil {
			os.Remove(m.path)
		}
		return fmt.Sprintf("restarted %s; the CRI (%s) lists runtime handler %s", unit, shownSock, o.handler), nil
	}
	cause := fmt.Sprintf("after restarting %s: %v", unit, err)

	var undo string
	var uerr error
	if p.existed {
		uerr = writeAtomic(p.file.path, p.src, p.fi.Mode().Perm(), p.fi)
		undo = "put " + p.shown + " back as it was (also kept as " + p.file.host + backupSuffix + ")"
	} else {
		uerr = os.Remove(p.file.path)
		undo = "removed the " + p.shown + " it had created"
	}
	if uerr != nil {
		return "FAILED", fmt.Errorf("%s; rolling back FAILED: %v: restore %s from %s by hand and restart %s", cause, uerr, p.file.host, p.file.host+backupSuffix, unit)
	}
	if m, merr := o.resolve(rollbackMarker); merr == nil && os.MkdirAll(filepath.Dir(m.path), 0o755) == nil {
		writeAtomic(m.path, []byte(p.id+"\n"+time.Now().UTC().Format(time.RFC3339)+": "+cause+"\n"), 0o644, nil)
	}
	after := "containerd answers again with the previous config"
	rerr := o.restartFn(o.hostRoot, unit, o.stderr)
	if rerr == nil {
		rerr = o.criCheck(sock, "", o.wait)
	}
	if rerr != nil {
		after = fmt.Sprintf("containerd still does not answer (%v): look at the node now (journalctl -u %s)", rerr, unit)
	}
	return "rolled back", fmt.Errorf("%w: %s. Rolled back: %s and restarted %s; %s. The shim binaries stay installed, unused; this edit is not tried again until %s is removed or -retry is given",
		errRolledBack, cause, undo, unit, after, rollbackMarker)
}

// checkUnchanged is -restart systemctl when the config already has the runtime: nothing is
// restarted when the CRI lists the handler; a containerd that answers without it (never restarted
// since the config was edited) is restarted and checked.
func (o *options) checkUnchanged(l layout, unit string) (string, error) {
	sock, shownSock, err := o.socket(l)
	if err != nil {
		return "", err
	}
	if err := o.criCheck(sock, o.handler, 10*time.Second); err == nil {
		return fmt.Sprintf("not needed (the CRI at %s lists runtime handler %s)", shownSock, o.handler), nil
	}
	if err := o.criCheck(sock, "", 10*time.Second); err != nil {
		fmt.Fprintf(o.stderr, "wazero-shim-installer: warning: %v (pass -cri-socket if containerd listens elsewhere)\n", err)
		return "not needed (config unchanged); the CRI did not answer, so the handler could not be checked", nil
	}
	if err := o.restartFn(o.hostRoot, unit, o.stderr); err != nil {
		return "FAILED", err
	}
	if err := o.criCheck(sock, o.handler, o.wait); err != nil {
		return "FAILED", fmt.Errorf("the config has runtime %s, but after restarting %s: %w", o.handler, unit, err)
	}
	return fmt.Sprintf("restarted %s (the config had runtime %s, the running containerd did not list it); the CRI lists it now", unit, o.handler), nil
}
