package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the .golden.toml files from the current output")

func TestEditConfig(t *testing.T) {
	tests := []struct {
		in      string // testdata file
		force   bool
		golden  string // expected output file; "" means the input comes back unchanged
		version int
		err     string // substring of the expected error
		// inPlace: the edit is inside the existing runtime table (its annotation keys), not
		// appended at the end.
		inPlace bool
		warn    string // substring of the expected warning
	}{
		{in: "v2-plain.toml", golden: "v2-plain.golden.toml", version: 2},
		{in: "v3-cri.toml", golden: "v3-cri.golden.toml", version: 3},
		{in: "v4.toml", golden: "v4.golden.toml", version: 4},
		// The runtime table exists without the annotation keys (set up by hand, or by an
		// installer before it wrote them): both are added under its runtime_type.
		{in: "v3-present.toml", golden: "v3-present.golden.toml", version: 3, inPlace: true},
		{in: "v2-present.toml", golden: "v2-present.golden.toml", version: 2, inPlace: true},
		{in: "v3-double-quotes.toml", golden: "v3-double-quotes.golden.toml", version: 3, inPlace: true},
		// Lists without a pattern covering wazero.dev/: the pattern is appended, the others kept.
		{in: "v3-annotations-partial.toml", golden: "v3-annotations-partial.golden.toml", version: 3, inPlace: true},
		{in: "v2-annotations-partial.toml", golden: "v2-annotations-partial.golden.toml", version: 2, inPlace: true},
		// Lists that cover it already: nothing changes.
		{in: "v3-annotations-set.toml", version: 3},
		{in: "v2-annotations-set.toml", version: 2},
		{in: "v3-annotations-malformed.toml", err: `line 4: pod_annotations = "wazero.dev/*" in plugins.io.containerd.cri.v1.runtime.containerd.runtimes.wazero is not an array of strings (it is not an array): write it as pod_annotations = ["wazero.dev/*"]`},
		{in: "v2-annotations-malformed.toml", err: `line 7: container_annotations = ["wazero.dev/*", 42] in plugins.io.containerd.grpc.v1.cri.containerd.runtimes.wazero is not an array of strings (it holds 42, which is not a single-line string)`},
		// An inline table is not extended: unchanged, with a warning saying what to add.
		{in: "v3-dotted.toml", version: 3, warn: `an inline table (its runtime_type is on line 4), which the installer does not extend, and has no pod_annotations: add pod_annotations = ["wazero.dev/*"] to it by hand`},
		{in: "v3-no-trailing-newline.toml", golden: "v3-no-trailing-newline.golden.toml", version: 3},
		{in: "v3-crlf.toml", golden: "v3-crlf.golden.toml", version: 3},
		{in: "v3-subtable-only.toml", golden: "v3-subtable-only.golden.toml", version: 3},
		{in: "v3-multiline.toml", golden: "v3-multiline.golden.toml", version: 3},
		{in: "v3-conflict.toml", err: `runtime_type = 'io.containerd.runc.v2' (line 3), not "io.containerd.wazero.v1"`},
		{in: "v3-conflict.toml", force: true, golden: "v3-conflict.force.golden.toml", version: 3},
		{in: "v3-no-runtime-type.toml", err: "has no runtime_type"},
		{in: "v3-no-runtime-type.toml", force: true, golden: "v3-no-runtime-type.force.golden.toml", version: 3},
		{in: "v3-inline-parent.toml", err: "is defined as an inline table"},
		{in: "v3-unterminated.toml", err: "ends inside a multi-line string"},
		{in: "v1-no-version.toml", err: "version 1 config"},
		{in: "v1-explicit.toml", err: "version 1 config"},
	}
	for _, tc := range tests {
		name := strings.TrimSuffix(tc.in, ".toml")
		if tc.force {
			name += "-force"
		}
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", tc.in))
			if err != nil {
				t.Fatal(err)
			}
			out, res, err := editConfig(in, "wazero", tc.force)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want one containing %q", err, tc.err)
				}
				if strings.Contains(tc.err, "not \"io.containerd") && !errors.Is(err, errConflict) {
					t.Errorf("error %v is not errConflict", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if w := strings.Join(res.warn, "\n"); tc.warn == "" && w != "" || !strings.Contains(w, tc.warn) {
				t.Errorf("warnings %q, want %q", w, tc.warn)
			}
			if res.version != tc.version {
				t.Errorf("version = %d, want %d", res.version, tc.version)
			}
			want := in
			if tc.golden != "" {
				gp := filepath.Join("testdata", tc.golden)
				if *update {
					if err := os.WriteFile(gp, out, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				if want, err = os.ReadFile(gp); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(out, want) {
				t.Errorf("output differs from %s:\n%s", tc.golden, out)
			}
			if res.changed != (tc.golden != "") {
				t.Errorf("changed = %v, want %v (summary %q)", res.changed, tc.golden != "", res.summary)
			}
			// Everything before the edit point is kept byte for byte: the edit only appends,
			// or (with -force) touches one line.
			if !tc.force && !tc.inPlace && !bytes.HasPrefix(out, bytes.TrimRight(in, "\r\n")) {
				t.Errorf("output does not start with the input")
			}
			if err := checkEdited(out, res.version, "wazero", false); err != nil {
				t.Error(err)
			}
			// Idempotent: a second run changes nothing, even with -force.
			for _, force := range []bool{false, true} {
				again, res2, err := editConfig(out, "wazero", force)
				if err != nil {
					t.Fatalf("second run: %v", err)
				}
				if res2.changed || !bytes.Equal(again, out) {
					t.Errorf("second run (force=%v) changed the config: %s\n%s", force, res2.summary, again)
				}
			}
		})
	}
}

func TestEditConfigSummary(t *testing.T) {
	in, _ := os.ReadFile("testdata/v3-cri.toml")
	_, res, err := editConfig(in, "wazero", false)
	if err != nil {
		t.Fatal(err)
	}
	if res.summary != "added runtime wazero (version 3)" {
		t.Errorf("summary = %q", res.summary)
	}
	if _, _, err := editConfig(in, "Bad_Name", false); err == nil {
		t.Error("an invalid handler was accepted")
	}
	// Another handler is another table.
	out, res, err := editConfig(in, "wasm", false)
	if err != nil || !res.changed || !bytes.Contains(out, []byte("[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.wasm]\n")) {
		t.Errorf("handler wasm: changed=%v err=%v\n%s", res.changed, err, out)
	}
}

// A config that disables the CRI plugin is refused, naming the plugin it disables (Docker's
// containerd.io package ships disabled_plugins = ["cri"] in a version 1 file).
func TestDisabledCRIRefused(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"version = 2\ndisabled_plugins = [\"cri\"]\n", `line 2: disabled_plugins = ["cri"] turns off containerd's CRI plugin ("cri")`},
		{"version = 3\ndisabled_plugins = ['io.containerd.cri.v1.runtime']\n", `remove "io.containerd.cri.v1.runtime" from disabled_plugins`},
		{"disabled_plugins = [\"cri\"]\n", `version 1 config`},
		{"disabled_plugins = [\"cri\"]\n", `also, line 1: disabled_plugins = ["cri"] turns off containerd's CRI plugin ("cri")`},
	} {
		if _, _, err := editConfig([]byte(tc.in), "wazero", false); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want it to say %s", tc.in, err, tc.want)
		}
	}
	if _, res, err := editConfig([]byte("version = 2\ndisabled_plugins = [\"io.containerd.snapshotter.v1.btrfs\"]\n"), "wazero", false); err != nil || !res.changed {
		t.Errorf("another disabled plugin: %v", err)
	}
}

// Templates (k3s, RKE2): action lines are skipped, the version comes from their generated config.
func TestEditTemplate(t *testing.T) {
	in := []byte("{{ template \"base\" . }}\n\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.crun]\n  runtime_type = \"io.containerd.runc.v2\"\n")
	out, res, err := editConfigWith(in, "wazero", false, editOpts{defaultVersion: 3, template: true})
	if err != nil || !res.changed || res.version != 3 {
		t.Fatalf("%v %+v", err, res)
	}
	if !bytes.HasPrefix(out, in) || !bytes.HasSuffix(out, []byte("[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.wazero]\n  runtime_type = \"io.containerd.wazero.v1\"\n  pod_annotations = [\"wazero.dev/*\"]\n  container_annotations = [\"wazero.dev/*\"]\n")) {
		t.Errorf("output:\n%s", out)
	}
	if again, res, err := editConfigWith(out, "wazero", false, editOpts{defaultVersion: 3, template: true}); err != nil || res.changed || !bytes.Equal(again, out) {
		t.Errorf("second run: %v %+v", err, res)
	}
	if _, _, err := editConfig(in, "wazero", false); err == nil {
		t.Error("a template was read as a plain config")
	}
	rendered, ok := renderTemplate(out, []byte("version = 3\n[plugins]\n"))
	if !ok || !bytes.HasPrefix(rendered, []byte("version = 3\n[plugins]\n\n\n[plugins.")) {
		t.Errorf("render: %v\n%s", ok, rendered)
	}
	if _, ok := renderTemplate([]byte("{{ template \"base\" . }}\n{{ if .X }}a = 1{{ end }}\n"), nil); ok {
		t.Error("a template with other actions rendered")
	}
}

func TestScan(t *testing.T) {
	src := []byte(`a."b.c" . 'd' = 1 # comment
t = 1979-05-27 07:32:00Z
s = "x\"y\u00e9"
[x]
arr = [ [1, 2], { k = "v" }, ]
[[y.z]]
ml = """a \
b"""""
`)
	doc, err := scan(src)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, k := range doc.keys {
		paths = append(paths, strings.Join(k.path, "/"))
	}
	want := "a/b.c/d t s x/arr/[]/k x/arr y/z/ml"
	if got := strings.Join(paths, " "); got != want {
		t.Errorf("keys = %q, want %q", got, want)
	}
	if s := doc.keys[2].str; s == nil || *s != "x\"y\u00e9" {
		t.Errorf("string value = %v", s)
	}
	if len(doc.headers) != 2 || !doc.headers[1].array || strings.Join(doc.headers[1].path, ".") != "y.z" {
		t.Errorf("headers = %+v", doc.headers)
	}
	for _, bad := range []string{"a = [1, 2\n", "a = '''x\n", "[a\n", "a = 1 b = 2\n", "a = { b = 1\n", "a =\n"} {
		if _, err := scan([]byte(bad)); err == nil {
			t.Errorf("scan(%q) succeeded", bad)
		}
	}
}

// TestScanValueErrors checks what the value scanner says for each way a value can be cut or
// malformed: the line the array or inline table opened on, or the line the bad byte is on.
func TestScanValueErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"a = [1,\n 2\n", "line 1: the file ends inside an array"},
		{"a = [1 2]\n", "line 1: expected ',' or ']' in array, found '2'"},
		{"a = {b = 1\n", "line 1: the file ends inside an inline table"},
		{"a = {b = 1 c = 2}\n", "line 1: expected ',' or '}' in inline table, found 'c'"},
		{"a = [{b = 1 c}]\n", "line 1: expected ',' or '}' in inline table, found 'c'"},
		{"a = ", "line 1: expected a value at the end of the file"},
		{"x = 1\na = ,\n", "line 2: expected a value, found ','"},
	} {
		_, err := scan([]byte(tc.src))
		if err == nil || err.Error() != tc.want {
			t.Errorf("scan(%q) = %v, want %q", tc.src, err, tc.want)
		}
	}
	doc, err := scan([]byte("d = 1979-05-27 07:32:00\nn = [ 1 , { k = 2 } , ]\nt = {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string([]byte("d = 1979-05-27 07:32:00")[doc.keys[0].valStart:doc.keys[0].valEnd]); got != "1979-05-27 07:32:00" {
		t.Errorf("date-time value = %q", got)
	}
}
