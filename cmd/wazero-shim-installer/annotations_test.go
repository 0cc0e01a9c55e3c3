package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCoversShim: a pattern covers the shim's prefix only when containerd's path.Match passes
// every wazero.dev/ key the shim reads; "*" does not (it stops at the '/').
func TestCoversShim(t *testing.T) {
	for _, tc := range []struct {
		patterns []string
		want     bool
	}{
		{[]string{"wazero.dev/*"}, true},
		{[]string{"example.com/*", "wazero.dev/*"}, true},
		{[]string{"*/*"}, true},
		{[]string{"wazero.*/*"}, true},
		{nil, false},
		{[]string{"*"}, false},
		{[]string{"wazero.dev/shared-server"}, false},
		{[]string{"wazero.dev/runtime*"}, false},
		{[]string{"wazero.dev/?"}, false},
		{[]string{"wazero.dev/[*"}, false}, // a bad pattern, which containerd never matches
	} {
		if got := coversShim(tc.patterns); got != tc.want {
			t.Errorf("coversShim(%q) = %v, want %v", tc.patterns, got, tc.want)
		}
	}
}

// TestParseStringArray: what counts as an array of strings, and where the pattern goes in it.
func TestParseStringArray(t *testing.T) {
	for _, tc := range []struct {
		val   string
		elems []string
		last  int // lastEnd
		err   string
	}{
		{val: `[]`, last: -1},
		{val: `[ ]`, last: -1},
		{val: `["a"]`, elems: []string{"a"}, last: 4},
		{val: `['a', "b\u00e9",]`, elems: []string{"a", "b\u00e9"}, last: 15},
		{val: "[\n  'a', # c\n  # d\n]", elems: []string{"a"}, last: 7},
		{val: `"wazero.dev/*"`, err: "it is not an array"},
		{val: `42`, err: "it is not an array"},
		{val: `{ a = "b" }`, err: "it is not an array"},
		{val: `["a", 42]`, err: "it holds 42, which is not a single-line string"},
		{val: `[["a"]]`, err: `it holds ["a", which is not a single-line string`},
		{val: `["""a"""]`, err: "not a single-line string"},
		{val: `["a" "b"]`, err: "expected ',' or ']'"},
	} {
		a, err := parseStringArray([]byte(tc.val))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err = %v, want %q", tc.val, err, tc.err)
			}
			continue
		}
		if err != nil || strings.Join(a.elems, "|") != strings.Join(tc.elems, "|") || a.lastEnd != tc.last || a.open != 1 {
			t.Errorf("%s: %+v, %v; want elems %q, lastEnd %d", tc.val, a, err, tc.elems, tc.last)
		}
	}
}

// TestEditConfigAnnotationSummaries: what the summary (the installer's output line, and its
// dry-run line) says for each case of an existing runtime table.
func TestEditConfigAnnotationSummaries(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		force    bool
	}{
		{in: "v3-present.toml", want: `added pod_annotations = ["wazero.dev/*"] and container_annotations = ["wazero.dev/*"] to runtime wazero (version 3)`},
		{in: "v2-annotations-partial.toml", want: `added "wazero.dev/*" to pod_annotations (line 6, its other 1 kept) and container_annotations = ["wazero.dev/*"] to runtime wazero (version 2)`},
		{in: "v3-annotations-partial.toml", want: `added "wazero.dev/*" to pod_annotations (line 6, its other 2 kept) and "wazero.dev/*" to container_annotations (line 10, its other 0 kept) to runtime wazero (version 3)`},
		{in: "v3-annotations-set.toml", want: `unchanged (runtime wazero (version 3) already set up)`},
		{in: "v3-conflict.toml", force: true, want: `set runtime_type of runtime wazero (version 3) to "io.containerd.wazero.v1" (-force; it has runtime_type = 'io.containerd.runc.v2' (line 3)); added pod_annotations = ["wazero.dev/*"] and container_annotations = ["wazero.dev/*"] to runtime wazero (version 3)`},
	} {
		in, err := os.ReadFile(filepath.Join("testdata", tc.in))
		if err != nil {
			t.Fatal(err)
		}
		_, res, err := editConfig(in, "wazero", tc.force)
		if err != nil || res.summary != tc.want {
			t.Errorf("%s: summary %q, err %v\nwant %q", tc.in, res.summary, err, tc.want)
		}
	}
}

// TestEditConfigAnnotationsEdgeCases: the keys go under the table's header when it has no
// runtime_type line before them, at the end of a file without a final newline, and a table or
// sub-table where an array belongs is an error naming the line.
func TestEditConfigAnnotationsEdgeCases(t *testing.T) {
	const hdr = "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.wazero]"
	for _, tc := range []struct{ name, in, want, err string }{
		{
			name: "no-final-newline",
			in:   "version = 3\n" + hdr + "\n  runtime_type = 'io.containerd.wazero.v1' # ours",
			want: "version = 3\n" + hdr + "\n  runtime_type = 'io.containerd.wazero.v1' # ours\n  pod_annotations = [\"wazero.dev/*\"]\n  container_annotations = [\"wazero.dev/*\"]\n",
		},
		{
			name: "type-after-other-keys",
			in:   "version = 3\n" + hdr + "\n    base_runtime_spec = ''\n    runtime_type = 'io.containerd.wazero.v1'\n    cni_conf_dir = ''\n",
			want: "version = 3\n" + hdr + "\n    base_runtime_spec = ''\n    runtime_type = 'io.containerd.wazero.v1'\n    pod_annotations = [\"wazero.dev/*\"]\n    container_annotations = [\"wazero.dev/*\"]\n    cni_conf_dir = ''\n",
		},
		{
			name: "only-container-key-missing",
			in:   "version = 3\n" + hdr + "\n  pod_annotations = ['wazero.dev/*']\n  runtime_type = 'io.containerd.wazero.v1'\n[x]\n",
			want: "version = 3\n" + hdr + "\n  pod_annotations = ['wazero.dev/*']\n  runtime_type = 'io.containerd.wazero.v1'\n  container_annotations = [\"wazero.dev/*\"]\n[x]\n",
		},
		{
			name: "sub-table",
			in:   "version = 3\n" + hdr + "\n  runtime_type = 'io.containerd.wazero.v1'\n" + hdr[:len(hdr)-1] + ".pod_annotations]\n  a = 1\n",
			err:  "line 4: [plugins.io.containerd.cri.v1.runtime.containerd.runtimes.wazero.pod_annotations] makes pod_annotations a table; it must be an array of strings",
		},
		{
			name: "dotted-table",
			in:   "version = 3\n" + hdr + "\n  runtime_type = 'io.containerd.wazero.v1'\n  pod_annotations.a = 'b'\n",
			err:  "line 4: pod_annotations is defined as a table",
		},
		{
			name: "inline-table-value",
			in:   "version = 3\n" + hdr + "\n  runtime_type = 'io.containerd.wazero.v1'\n  container_annotations = { a = 'b' }\n",
			err:  "line 4: container_annotations is defined as a table",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, res, err := editConfig([]byte(tc.in), "wazero", false)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "config not changed") {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || string(out) != tc.want || !res.changed {
				t.Fatalf("changed %v, err %v, out:\n%s\nwant:\n%s", res.changed, err, out, tc.want)
			}
			if again, res, err := editConfig(out, "wazero", true); err != nil || res.changed || !bytes.Equal(again, out) {
				t.Errorf("second run: changed %v, err %v (%s)", res.changed, err, res.summary)
			}
		})
	}
}

// A k3s/RKE2 template whose runtime table was written by an earlier installer: the keys are added
// under it, the template's actions kept, and a second run changes nothing.
func TestEditTemplateAddsAnnotations(t *testing.T) {
	in := []byte("{{ template \"base\" . }}\n\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.wazero]\n  runtime_type = \"io.containerd.wazero.v1\"\n{{ if .NodeConfig.AgentConfig.Snapshotter }}\n")
	eo := editOpts{defaultVersion: 3, template: true}
	out, res, err := editConfigWith(in, "wazero", false, eo)
	if err != nil || !res.changed {
		t.Fatalf("%v %+v", err, res)
	}
	want := "{{ template \"base\" . }}\n\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.wazero]\n  runtime_type = \"io.containerd.wazero.v1\"\n  pod_annotations = [\"wazero.dev/*\"]\n  container_annotations = [\"wazero.dev/*\"]\n{{ if .NodeConfig.AgentConfig.Snapshotter }}\n"
	if string(out) != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
	if again, res, err := editConfigWith(out, "wazero", false, eo); err != nil || res.changed || !bytes.Equal(again, out) {
		t.Errorf("second run: %v %+v", err, res)
	}
}

// TestCheckAnnotationsLoaded: containerd's config dump must show the annotation keys the edited
// config sets, where the CRI plugin reads them (a version 2 file on containerd 2.x dumps as
// version 3); a config that does not set them (an inline table left to the operator) is not held
// to it.
func TestCheckAnnotationsLoaded(t *testing.T) {
	o := &options{handler: "wazero"}
	v2 := []byte("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.wazero]\n  runtime_type = \"io.containerd.wazero.v1\"\n" + annotationLines("  ", "\n"))
	dump3 := "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.wazero]\n  runtime_type = 'io.containerd.wazero.v1'\n"
	check := func(content []byte, dump string) error {
		doc, err := scan([]byte(dump))
		if err != nil {
			t.Fatal(err)
		}
		return o.checkAnnotationsLoaded("containerd", content, []byte(dump), doc, 3)
	}
	if err := check(v2, dump3+"  pod_annotations = ['wazero.dev/*']\n  container_annotations = ['wazero.dev/*']\n"); err != nil {
		t.Errorf("dump with both keys: %v", err)
	}
	err := check(v2, dump3+"  pod_annotations = []\n  container_annotations = ['wazero.dev/*']\n")
	if err == nil || !strings.Contains(err.Error(), "without pod_annotations covering \"wazero.dev/*\"") || !strings.Contains(err.Error(), "plugins.io.containerd.cri.v1.runtime.containerd.runtimes.wazero.pod_annotations") {
		t.Errorf("dump without pod_annotations: %v", err)
	}
	inline := []byte("version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes]\n  wazero = { runtime_type = 'io.containerd.wazero.v1' }\n")
	if err := check(inline, dump3+"  pod_annotations = []\n"); err != nil {
		t.Errorf("a config without the keys: %v", err)
	}
}

// TestRunAddsAnnotationsOnUpgrade: on a node whose config has the runtime without the annotation
// keys (an earlier installer's), a run adds them, says so, keeps a backup and restarts containerd
// once; its dry run says what it would add and writes nothing; the next run changes nothing.
func TestRunAddsAnnotationsOnUpgrade(t *testing.T) {
	in, _ := os.ReadFile("testdata/v3-present.toml")
	golden, _ := os.ReadFile("testdata/v3-present.golden.toml")
	restarts := 0
	o, stdout := node(t, in, &restarts)
	cfg := filepath.Join(o.hostRoot, "etc/containerd/config.toml")

	dry := o
	dry.dryRun = true
	sum, err := run(dry)
	added := `added pod_annotations = ["wazero.dev/*"] and container_annotations = ["wazero.dev/*"] to runtime wazero (version 3)`
	if err != nil || !strings.Contains(sum, "config: would be "+added+", checked by containerd 2.4.2; restart: containerd would need a restart (containerd)") {
		t.Errorf("dry run: %s, %v", sum, err)
	}
	if !bytes.Equal(stdout.Bytes(), golden) {
		t.Errorf("dry-run output:\n%s", stdout)
	}
	if got, _ := os.ReadFile(cfg); !bytes.Equal(got, in) || restarts != 0 {
		t.Errorf("the dry run changed the config or restarted (%d):\n%s", restarts, got)
	}

	sum, err = run(o)
	if err != nil || !strings.Contains(sum, "config: "+added+", checked by containerd 2.4.2, backup /etc/containerd/config.toml.bak-wazero; restart: restarted containerd") {
		t.Errorf("run: %s, %v", sum, err)
	}
	if got, _ := os.ReadFile(cfg); !bytes.Equal(got, golden) {
		t.Errorf("config:\n%s", got)
	}
	if got, _ := os.ReadFile(cfg + backupSuffix); !bytes.Equal(got, in) {
		t.Errorf("backup differs from the original")
	}
	before := stat(t, cfg)
	if sum, err = run(o); err != nil || !strings.Contains(sum, "config: unchanged (runtime wazero (version 3) already set up); restart: not needed") {
		t.Errorf("second run: %s, %v", sum, err)
	}
	if restarts != 1 || stat(t, cfg) != before {
		t.Errorf("second run: %d restarts, config rewritten %v", restarts, stat(t, cfg) != before)
	}
}

// TestRunRefusesMalformedAnnotations: the error names the file, the line and the key, and nothing
// is installed.
func TestRunRefusesMalformedAnnotations(t *testing.T) {
	in, _ := os.ReadFile("testdata/v3-annotations-malformed.toml")
	restarts := 0
	o, _ := node(t, in, &restarts)
	_, err := run(o)
	if err == nil || !strings.HasPrefix(err.Error(), `/etc/containerd/config.toml: line 4: pod_annotations = "wazero.dev/*" in `) || !strings.Contains(err.Error(), "then run the installer again (config not changed)") {
		t.Errorf("err = %v", err)
	}
	assertNothingInstalled(t, o, "etc/containerd/config.toml", in)
}
