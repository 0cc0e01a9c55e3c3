package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
