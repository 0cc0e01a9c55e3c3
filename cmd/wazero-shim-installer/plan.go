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
// ver, binary bin), and has that containerd check the result.
func (o *options) planConfig(l layout, ver ctrdVersion, bin string) (*configPlan, error) {
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
	var rendered []byte // k3s/RKE2: their current generated config
	if l.template {
		if r, err := o.resolve(l.rendered); err == nil {
			rendered, _ = os.ReadFile(r.path)
		}
	}

	fi, err := os.Stat(f.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		p.version = ver.configVersion()
		kind := ""
		switch {
		case l.template:
			p.version = renderedVersion(rendered, p.version)
			p.out = newTemplate(o.handler, p.version)
			kind = " (a template over the generated config)"
		default:
			p.out = newConfig(o.handler, p.version)
		}
		p.changed = true
		p.summary = fmt.Sprintf("created %s%s with runtime %s (version %d, for containerd %s; there was none)", p.shown, kind, o.handler, p.version, ver)
	case err != nil:
		return nil, err
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s is not a regular file", p.shown)
	default:
		p.existed, p.fi = true, fi
		if p.src, err = os.ReadFile(f.path); err != nil {
			return nil, err
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
			return nil, fmt.Errorf("%s: %w", p.shown, err)
		}
		if res.version >= 3 && ver.major < 2 {
			return nil, fmt.Errorf("%s has version = %d, but the node's containerd is %s, which reads only version 2 configs and ignores the sections of a version %d one without a word: rewrite it as a version 2 config (`containerd config default` of this containerd), then run the installer again", p.shown, res.version, ver, res.version)
		}
		if res.changed {
			if err := checkEdited(out, res.version, o.handler, l.template); err != nil {
				return nil, err
			}
		}
		p.out, p.changed, p.summary, p.version = out, res.changed, res.summary, res.version
	}
	if o.localImagePull {
		if ver.major < 2 || p.version < 3 {
			return nil, fmt.Errorf("-local-image-pull is for containerd 2.x (config version 3 or 4); the node's containerd is %s with a version %d config, whose CRI plugin always pulls with containerd's client: drop the flag", ver, p.version)
		}
		out, changed, summary, err := setLocalImagePull(p.out, o.force, l.template)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.shown, err)
		}
		p.out, p.changed, p.summary = out, p.changed || changed, p.summary+"; "+summary
	}
	if !p.changed {
		return p, nil
	}
	sum := sha256.Sum256(append([]byte(f.host+"\n"), p.out...))
	p.id = "sha256:" + hex.EncodeToString(sum[:])
	if o.restart == "systemctl" && !o.retry {
		if m, err := o.resolve(rollbackMarker); err == nil {
			if b, err := os.ReadFile(m.path); err == nil {
				first, rest, _ := strings.Cut(string(b), "\n")
				if first == p.id {
					return nil, fmt.Errorf("an earlier run restarted containerd with this very edit of %s and rolled it back (%s); nothing done. Fix the cause, then run again with -retry (or remove %s)", p.shown, strings.TrimSpace(rest), rollbackMarker)
				}
			}
		}
	}

	// containerd checks what it will load.
	check := p.out
	checked := true
	if l.template {
		if rendered == nil {
			checked = false
		} else {
			check, checked = renderTemplate(p.out, rendered)
		}
	}
	if checked {
		dir, err := o.checkDir(f)
		if err != nil {
			return nil, err
		}
		if err := o.validate(bin, dir, check); err != nil {
			return nil, fmt.Errorf("%s: not changed: %w", p.shown, err)
		}
		p.summary += ", checked by containerd " + ver.String()
	} else {
		p.summary += fmt.Sprintf(", not checked by containerd (the template has actions other than {{ template \"base\" . }}, or %s does not exist yet)", l.rendered)
	}
	return p, nil
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
