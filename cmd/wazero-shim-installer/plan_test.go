package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRefuseRolledBack: the edit an earlier run rolled back is refused under -restart systemctl,
// with the marker's cause in the error; another edit, -retry, or another -restart goes ahead.
func TestRefuseRolledBack(t *testing.T) {
	root := t.TempDir()
	marker := filepath.Join(root, rollbackMarker)
	if err := os.MkdirAll(filepath.Dir(marker), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(marker, []byte("sha256:aa\n2026-01-01T00:00:00Z: the CRI did not list wazero\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := &options{hostRoot: root, restart: "systemctl"}
	p := &configPlan{id: "sha256:aa", shown: "/etc/containerd/config.toml"}
	err := o.refuseRolledBack(p)
	if err == nil || !strings.Contains(err.Error(), "rolled it back (2026-01-01T00:00:00Z: the CRI did not list wazero)") || !strings.Contains(err.Error(), "-retry") {
		t.Fatalf("same edit: err = %v, want a refusal naming the cause and -retry", err)
	}
	for name, o := range map[string]*options{
		"-retry":        {hostRoot: root, restart: "systemctl", retry: true},
		"-restart none": {hostRoot: root, restart: "none"},
	} {
		if err := o.refuseRolledBack(p); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := o.refuseRolledBack(&configPlan{id: "sha256:bb"}); err != nil {
		t.Errorf("another edit: %v", err)
	}
	if err := (&options{hostRoot: t.TempDir(), restart: "systemctl"}).refuseRolledBack(p); err != nil {
		t.Errorf("no marker: %v", err)
	}
}

// TestPlanLocalImagePull: the setting is refused for containerd 1.x and for a version 2 config,
// added (and the plan marked changed) otherwise, and nothing is done without the flag.
func TestPlanLocalImagePull(t *testing.T) {
	v2 := ctrdVersion{major: 2, minor: 4, raw: "2.4.2"}
	v1 := ctrdVersion{major: 1, minor: 6, raw: "1.6.20"}
	src := newConfig("wazero", 3)
	o := &options{localImagePull: true, handler: "wazero"}
	for _, tc := range []struct {
		ver     ctrdVersion
		version int
	}{{v1, 3}, {v2, 2}} {
		p := &configPlan{out: src, version: tc.version}
		if err := o.planLocalImagePull(p, layout{}, tc.ver); err == nil || !strings.Contains(err.Error(), "drop the flag") {
			t.Errorf("containerd %s, config version %d: err = %v, want a refusal", tc.ver, tc.version, err)
		}
	}
	p := &configPlan{out: src, version: 3, summary: "unchanged"}
	if err := o.planLocalImagePull(p, layout{}, v2); err != nil {
		t.Fatal(err)
	}
	if !p.changed || !strings.Contains(string(p.out), "use_local_image_pull") || !strings.HasPrefix(p.summary, "unchanged; ") {
		t.Errorf("plan = changed %v, summary %q, out:\n%s", p.changed, p.summary, p.out)
	}
	p = &configPlan{out: src, version: 2}
	if err := (&options{}).planLocalImagePull(p, layout{}, v1); err != nil || p.changed {
		t.Errorf("without the flag: err %v, changed %v", err, p.changed)
	}
}

// TestPlanNew: a missing file becomes a config of the version the node's containerd reads by
// default, or for a template, the version of the generated config it goes over.
func TestPlanNew(t *testing.T) {
	o := &options{handler: "wazero"}
	p := &configPlan{shown: "/etc/containerd/config.toml"}
	o.planNew(p, layout{}, ctrdVersion{major: 1, minor: 6, raw: "1.6.20"}, nil)
	if p.version != 2 || !p.changed || !strings.Contains(string(p.out), "version = 2") || !strings.Contains(p.summary, "for containerd 1.6.20; there was none") {
		t.Errorf("1.6: version %d, summary %q, out:\n%s", p.version, p.summary, p.out)
	}
	p = &configPlan{shown: "/var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl"}
	o.planNew(p, layout{template: true}, ctrdVersion{major: 2, minor: 0, raw: "v2.0.5-k3s1"}, []byte("version = 2\n"))
	if p.version != 2 || !strings.Contains(string(p.out), `{{ template "base" . }}`) || !strings.Contains(p.summary, "a template over the generated config") {
		t.Errorf("template: version %d, summary %q, out:\n%s", p.version, p.summary, p.out)
	}
}

// TestCheckPlanTemplateUnrendered: a template with no generated config to render it over is not
// given to containerd, and the summary says it was not checked.
func TestCheckPlanTemplateUnrendered(t *testing.T) {
	o := &options{handler: "wazero"}
	p := &configPlan{out: newTemplate("wazero", 3), summary: "created"}
	l := layout{template: true, rendered: "/var/lib/rancher/k3s/agent/etc/containerd/config.toml"}
	if err := o.checkPlan(p, l, ctrdVersion{major: 2, raw: "2.0.5"}, "/nonexistent/containerd", nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.summary, "not checked by containerd") || !strings.Contains(p.summary, l.rendered+" does not exist yet") {
		t.Errorf("summary = %q", p.summary)
	}
}
