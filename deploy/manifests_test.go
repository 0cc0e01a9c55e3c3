// Package deploy holds the Kubernetes manifests; its tests check that the examples agree with what
// they run.
package deploy

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// TestHTTPServerExample: deploy/example-httpserver.yaml and testdata/go/httpserver must not drift
// apart. The probes must ask for paths the server serves (for GET), on the port the container
// declares in WAZERO_LISTEN (which is what opens it: containerPort only documents it), the named
// port and the Service must lead there too, and the image must be the one testdata/Makefile builds.
func TestHTTPServerExample(t *testing.T) {
	docs := parseManifest(t, "example-httpserver.yaml")
	var dep, svc any
	for _, d := range docs {
		switch str(t, d, "kind") {
		case "Deployment":
			dep = d
		case "Service":
			svc = d
		}
	}
	if dep == nil || svc == nil {
		t.Fatalf("want a Deployment and a Service, have %d documents", len(docs))
	}
	served := servedPaths(t, "../testdata/go/httpserver/main.go")
	if !slices.Contains(served, "GET /health") {
		t.Fatalf("the server no longer serves GET /health (serves %v): the probes and docs/networking.md rely on it", served)
	}

	pod := get(t, dep, "spec", "template", "spec")
	if rc := str(t, pod, "runtimeClassName"); rc != "wazero" {
		t.Errorf("runtimeClassName %q, want wazero (deploy/runtimeclass.yaml)", rc)
	}
	labels := get(t, dep, "spec", "template", "metadata", "labels")
	for what, sel := range map[string]any{
		"Deployment selector": get(t, dep, "spec", "selector", "matchLabels"),
		"Service selector":    get(t, svc, "spec", "selector"),
	} {
		for k := range mapping(t, sel, what) {
			if v := str(t, sel, k); v != str(t, labels, k) {
				t.Errorf("%s %s=%s does not select the pod template's labels", what, k, v)
			}
		}
	}

	ctrs := list(t, get(t, pod, "containers"), "containers")
	if len(ctrs) != 1 {
		t.Fatalf("want one container, have %d", len(ctrs))
	}
	c := ctrs[0]

	// The image: the one testdata/Makefile builds from the server.
	img := str(t, c, "image")
	mk, err := os.ReadFile("../testdata/Makefile")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`-name ` + regexp.QuoteMeta(img) + `\s[^\n]*\\\n\s*-entrypoint /httpserver\.wasm\s`).Match(mk) {
		t.Errorf("image %s: testdata/Makefile builds no image of that name with entrypoint /httpserver.wasm", img)
	}

	// The port: what WAZERO_LISTEN declares, parsed as the shim parses it.
	var listen []oci.ListenAddr
	for _, e := range list(t, get(t, c, "env"), "env") {
		if str(t, e, "name") == oci.ListenEnv {
			if listen, err = oci.ParseListen(str(t, e, "value")); err != nil {
				t.Fatalf("%s: %v", oci.ListenEnv, err)
			}
		}
	}
	if len(listen) != 1 {
		t.Fatalf("%s declares %d addresses, want one", oci.ListenEnv, len(listen))
	}
	if listen[0].Host != "" {
		t.Errorf("%s=%s listens on %s only: the kubelet and the Service connect to the pod IP", oci.ListenEnv, listen[0], listen[0].Host)
	}
	port := listen[0].Port

	named := map[string]int{}
	var declared []int
	for _, p := range list(t, get(t, c, "ports"), "ports") {
		n := num(t, p, "containerPort")
		declared = append(declared, n)
		if _, ok := mapping(t, p, "ports")["name"]; ok {
			named[str(t, p, "name")] = n
		}
	}
	if !slices.Contains(declared, port) {
		t.Errorf("containerPort %v does not include %d, the port of %s", declared, port, oci.ListenEnv)
	}
	// resolve turns a probe's or the Service's port (a number or a name) into a number.
	resolve := func(what, v string) int {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
		n, ok := named[v]
		if !ok {
			t.Errorf("%s: port %q is not a named port of the container (%v)", what, v, named)
		}
		return n
	}
	for _, probe := range []string{"readinessProbe", "livenessProbe"} {
		g := get(t, c, probe, "httpGet")
		path := str(t, g, "path")
		if !slices.Contains(served, "GET "+path) {
			t.Errorf("%s: GET %s, which the server does not serve (it serves %v)", probe, path, served)
		}
		if p := resolve(probe, str(t, g, "port")); p != port {
			t.Errorf("%s: port %d, but the server listens on %d (%s)", probe, p, port, oci.ListenEnv)
		}
		if _, ok := mapping(t, g, probe)["scheme"]; ok && str(t, g, "scheme") != "HTTP" {
			t.Errorf("%s: scheme %s; the server speaks plain HTTP", probe, str(t, g, "scheme"))
		}
	}
	for _, p := range list(t, get(t, svc, "spec", "ports"), "Service ports") {
		if tp := resolve("Service targetPort", str(t, p, "targetPort")); tp != port {
			t.Errorf("Service targetPort %d, but the server listens on %d", tp, port)
		}
	}
}

// servedPaths returns the patterns ("GET /health") the server registers with HandleFunc.
func servedPaths(t *testing.T, file string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		if sel, ok := call.Fun.(*ast.SelectorExpr); !ok || (sel.Sel.Name != "HandleFunc" && sel.Sel.Name != "Handle") {
			return true
		}
		if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if s, err := strconv.Unquote(lit.Value); err == nil {
				out = append(out, s)
			}
		}
		return true
	})
	if len(out) == 0 {
		t.Fatalf("%s: no HandleFunc patterns found", file)
	}
	return out
}

// ---- a strict reader for the block-style YAML of these manifests --------------------------------
//
// No YAML parser is among the module's dependencies, and the manifests need little: block
// mappings and sequences, plain or quoted scalars, comments and "---" between documents. Anything
// else (flow collections, block scalars, anchors, tags) fails the test rather than being misread.

// Values are map[string]any (mappings), []any (sequences) and string (scalars).

func mapping(t *testing.T, v any, what string) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: not a mapping: %v", what, v)
	}
	return m
}

func list(t *testing.T, v any, what string) []any {
	t.Helper()
	l, ok := v.([]any)
	if !ok {
		t.Fatalf("%s: not a sequence: %v", what, v)
	}
	return l
}

// get follows keys through mappings.
func get(t *testing.T, v any, path ...string) any {
	t.Helper()
	for i, k := range path {
		var ok bool
		if v, ok = mapping(t, v, strings.Join(path[:i], "."))[k]; !ok {
			t.Fatalf("no %s", strings.Join(path[:i+1], "."))
		}
	}
	return v
}

// str is the scalar at key of mapping v.
func str(t *testing.T, v any, key string) string {
	t.Helper()
	s, ok := get(t, v, key).(string)
	if !ok {
		t.Fatalf("%s: not a scalar", key)
	}
	return s
}

func num(t *testing.T, v any, key string) int {
	t.Helper()
	n, err := strconv.Atoi(str(t, v, key))
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return n
}

type yline struct {
	indent int
	text   string
	no     int
}

// parseManifest reads the documents of a manifest, each a mapping.
func parseManifest(t *testing.T, name string) []any {
	t.Helper()
	data, err := os.ReadFile(filepath.Clean(name))
	if err != nil {
		t.Fatal(err)
	}
	var docs []any
	var cur []yline
	flush := func() {
		if len(cur) == 0 {
			return
		}
		v, next, err := parseBlock(cur, 0, cur[0].indent)
		if err == nil && next != len(cur) {
			err = fmt.Errorf("line %d: unexpected indentation", cur[next].no)
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, ok := v.(map[string]any); !ok {
			t.Fatalf("%s: a document is not a mapping", name)
		}
		docs = append(docs, v)
		cur = nil
	}
	for i, raw := range strings.Split(string(data), "\n") {
		if strings.TrimRight(raw, " ") == "---" {
			flush()
			continue
		}
		text := stripComment(raw)
		if strings.TrimSpace(text) == "" {
			continue
		}
		if strings.Contains(text, "\t") {
			t.Fatalf("%s:%d: tab", name, i+1)
		}
		trimmed := strings.TrimLeft(text, " ")
		cur = append(cur, yline{indent: len(text) - len(trimmed), text: strings.TrimRight(trimmed, " "), no: i + 1})
	}
	flush()
	return docs
}

// stripComment removes a comment: '#' at the start or after a space, outside quotes.
func stripComment(s string) string {
	var q rune
	for i, r := range s {
		switch {
		case q != 0:
			if r == q {
				q = 0
			}
		case r == '"' || r == '\'':
			q = r
		case r == '#' && (i == 0 || s[i-1] == ' '):
			return s[:i]
		}
	}
	return s
}

// parseBlock parses the mapping or sequence whose lines start at ls[i] with the given indent.
func parseBlock(ls []yline, i, indent int) (any, int, error) {
	if strings.HasPrefix(ls[i].text, "- ") || ls[i].text == "-" {
		var seq []any
		for i < len(ls) && ls[i].indent == indent && (strings.HasPrefix(ls[i].text, "- ") || ls[i].text == "-") {
			rest := strings.TrimLeft(strings.TrimPrefix(ls[i].text, "-"), " ")
			if rest == "" {
				return nil, i, fmt.Errorf("line %d: empty sequence item", ls[i].no)
			}
			// The item's content starts after "- ": rewrite it as a line of its own.
			inner := indent + len(ls[i].text) - len(rest)
			sub := append([]yline{{indent: inner, text: rest, no: ls[i].no}}, ls[i+1:]...)
			var v any
			n := 1
			var err error
			if _, _, isKey := splitKey(rest); isKey {
				v, n, err = parseBlock(sub, 0, inner)
			} else {
				v, err = scalar(rest, ls[i].no)
			}
			if err != nil {
				return nil, i, err
			}
			seq = append(seq, v)
			i += n
		}
		return seq, i, nil
	}
	m := map[string]any{}
	for i < len(ls) && ls[i].indent == indent {
		k, v, ok := splitKey(ls[i].text)
		if !ok {
			return nil, i, fmt.Errorf("line %d: want key: value, have %q", ls[i].no, ls[i].text)
		}
		if _, dup := m[k]; dup {
			return nil, i, fmt.Errorf("line %d: key %s twice", ls[i].no, k)
		}
		if v != "" {
			s, err := scalar(v, ls[i].no)
			if err != nil {
				return nil, i, err
			}
			m[k] = s
			i++
			continue
		}
		i++
		switch {
		case i < len(ls) && ls[i].indent > indent:
			sub, n, err := parseBlock(ls, i, ls[i].indent)
			if err != nil {
				return nil, i, err
			}
			m[k], i = sub, n
		case i < len(ls) && ls[i].indent == indent && strings.HasPrefix(ls[i].text, "- "):
			sub, n, err := parseBlock(ls, i, indent) // a sequence may sit at its key's indent
			if err != nil {
				return nil, i, err
			}
			m[k], i = sub, n
		default:
			m[k] = ""
		}
	}
	if i < len(ls) && ls[i].indent > indent {
		return nil, i, fmt.Errorf("line %d: unexpected indentation", ls[i].no)
	}
	return m, i, nil
}

// splitKey splits "key: value" (or "key:"); keys are plain. "a:b" is not a key.
func splitKey(s string) (key, value string, ok bool) {
	k, v, found := strings.Cut(s, ":")
	if !found || k == "" || strings.ContainsAny(k, " \"'{}[]#") || (v != "" && v[0] != ' ') {
		return "", "", false
	}
	return k, strings.TrimSpace(v), true
}

// scalar returns a plain or quoted scalar as a string, and refuses what this reader does not handle.
func scalar(s string, no int) (string, error) {
	switch {
	case len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"':
		v, err := strconv.Unquote(s)
		if err != nil {
			return "", fmt.Errorf("line %d: %v", no, err)
		}
		return v, nil
	case len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'':
		return strings.ReplaceAll(s[1:len(s)-1], "''", "'"), nil
	case strings.ContainsAny(s[:1], "[{|>&*!%@`\"'"):
		return "", fmt.Errorf("line %d: %q: flow collections, block scalars, anchors and tags are not read here", no, s)
	}
	return s, nil
}

// TestInstallerDaemonSet: every argument the DaemonSet gives the installer is one of its flags, every
// installer flag has a description, and the manifest keeps the rollout one node at a time (labelled
// nodes only, maxUnavailable 1) with the restart asked for explicitly.
func TestInstallerDaemonSet(t *testing.T) {
	b, err := os.ReadFile("installer-daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ds := string(b)
	bin := filepath.Join(t.TempDir(), "wazero-shim-installer")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/wazero-shim-installer").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	usage, _ := exec.Command(bin, "-h").CombinedOutput()
	// flag's usage: "  -name type\n    \tdescription"; a flag without a description has no second line.
	described := map[string]bool{}
	lines := strings.Split(string(usage), "\n")
	for i, l := range lines {
		if m := regexp.MustCompile(`^  -([a-z-]+)`).FindStringSubmatch(l); m != nil {
			described[m[1]] = i+1 < len(lines) && strings.HasPrefix(lines[i+1], "    \t") && strings.TrimSpace(lines[i+1]) != ""
		}
	}
	if len(described) < 10 {
		t.Fatalf("installer usage:\n%s", usage)
	}
	for f, ok := range described {
		if !ok {
			t.Errorf("installer flag -%s has no description in -h", f)
		}
	}
	var args []string
	for _, m := range regexp.MustCompile(`(?m)^\s+- (-[a-z-]+)=?(\S*)$`).FindAllStringSubmatch(ds, -1) {
		args = append(args, m[1]+"="+m[2])
		if _, ok := described[strings.TrimPrefix(m[1], "-")]; !ok {
			t.Errorf("DaemonSet passes %s, which the installer does not have", m[1])
		}
	}
	for _, want := range []string{"-host-root=/host", "-restart=systemctl", "-distro=auto"} {
		if !slices.Contains(args, want) {
			t.Errorf("DaemonSet args %v lack %s", args, want)
		}
	}
	for _, want := range []string{"maxUnavailable: 1", "nodeSelector:\n        wazero.io/enabled: \"true\"", "hostPID: true", "mountPath: /host", "path: /"} {
		if !strings.Contains(ds, want) {
			t.Errorf("DaemonSet lacks %q", want)
		}
	}
	rc, _ := os.ReadFile("runtimeclass.yaml")
	if !strings.Contains(string(rc), "scheduling:\n  nodeSelector:\n    wazero.io/enabled: \"true\"") {
		t.Errorf("the RuntimeClass does not schedule onto the labelled nodes:\n%s", rc)
	}
}

// TestMixedPodExample: deploy/example-mixed-pod.yaml is a mixed pod the shim runs as its comments
// say. Each container's image is one testdata/Makefile builds; the shim's rule puts those built
// for linux (-os linux) in runc and the others in wazero, and the example has a native init
// container, a native sidecar and a wasm container. A runtime annotation names a container of the
// pod and agrees with the rule (oci.ChosenRuntime reads it as the shim does). The init container
// writes into a volume the wasm container mounts, and the containers, which share the pod's
// network namespace, listen on distinct ports that their probes ask for.
func TestMixedPodExample(t *testing.T) {
	docs := parseManifest(t, "example-mixed-pod.yaml")
	if len(docs) != 1 || str(t, docs[0], "kind") != "Deployment" {
		t.Fatalf("want one Deployment")
	}
	tmpl := get(t, docs[0], "spec", "template")
	pod := get(t, tmpl, "spec")
	if rc := str(t, pod, "runtimeClassName"); rc != "wazero" {
		t.Errorf("runtimeClassName %q, want wazero", rc)
	}
	mk, err := os.ReadFile("../testdata/Makefile")
	if err != nil {
		t.Fatal(err)
	}
	tool, err := os.ReadFile("../testdata/native/tool/main.go")
	if err != nil {
		t.Fatal(err)
	}
	// native reports whether testdata/Makefile builds image for linux, and its entrypoint.
	native := func(image string) (bool, string) {
		m := regexp.MustCompile(`-name ` + regexp.QuoteMeta(image) + `\s((?:[^\n]*\\\n)*[^\n]*)`).FindSubmatch(mk)
		if m == nil {
			t.Errorf("image %s: testdata/Makefile builds no image of that name", image)
			return false, ""
		}
		ep := regexp.MustCompile(`-entrypoint (\S+)`).FindSubmatch(m[1])
		if ep == nil {
			t.Errorf("image %s: no -entrypoint in testdata/Makefile", image)
			return false, ""
		}
		return strings.Contains(string(m[1]), "-os linux"), string(ep[1])
	}
	annotations := map[string]any{}
	if a, ok := mapping(t, get(t, tmpl, "metadata"), "pod metadata")["annotations"]; ok {
		annotations = mapping(t, a, "pod annotations")
	}
	type ctr struct {
		name   string
		native bool
		init   bool
		v      any
	}
	var ctrs []ctr
	for _, kind := range []string{"initContainers", "containers"} {
		for _, c := range list(t, get(t, pod, kind), kind) {
			nat, ep := native(str(t, c, "image"))
			cmd := ep
			if v, ok := mapping(t, c, "container")["command"]; ok {
				cmd = str(t, map[string]any{"c": list(t, v, "command")[0]}, "c")
			}
			if cmd != ep {
				t.Errorf("container %s runs %s, its image's entrypoint is %s: the rule would look at a file the image may not have", str(t, c, "name"), cmd, ep)
			}
			ctrs = append(ctrs, ctr{name: str(t, c, "name"), native: nat, init: kind == "initContainers", v: c})
		}
	}
	var nativeInit, nativeSidecar, wasm *ctr
	for i := range ctrs {
		c := &ctrs[i]
		switch {
		case c.native && c.init:
			nativeInit = c
		case c.native:
			nativeSidecar = c
		default:
			wasm = c
		}
		// The annotation, read as the shim reads it from the container's spec.
		spec := &specs.Spec{Annotations: map[string]string{oci.ContainerNameAnnotation: c.name}}
		for k := range annotations {
			spec.Annotations[k] = str(t, annotations, k)
		}
		rt, key, err := oci.ChosenRuntime(spec)
		if err != nil {
			t.Errorf("container %s: %v", c.name, err)
		}
		want := oci.RuntimeWasm
		if c.native {
			want = oci.RuntimeNative
		}
		if key != "" && rt != oci.RuntimeAuto && rt != want {
			t.Errorf("container %s: annotation %s chooses %s, but its image is %s", c.name, key, rt, want)
		}
	}
	for k := range annotations {
		if name, ok := strings.CutPrefix(k, oci.RuntimeAnnotationPrefix); ok && !slices.ContainsFunc(ctrs, func(c ctr) bool { return c.name == name }) {
			t.Errorf("annotation %s names no container of the pod", k)
		}
	}
	if nativeInit == nil || nativeSidecar == nil || wasm == nil {
		t.Fatalf("a mixed pod example needs a native init container, a native sidecar and a wasm container")
	}

	// The init container writes (nativetool write PATH TEXT) into a volume the wasm container mounts.
	if !strings.Contains(string(tool), `case "write":`) {
		t.Fatalf("testdata/native/tool has no write command")
	}
	cmd := list(t, get(t, nativeInit.v, "command"), "command")
	if len(cmd) != 4 || cmd[1] != "write" {
		t.Fatalf("init container command %v, want /nativetool write PATH TEXT", cmd)
	}
	mountOf := func(c any, path string) string {
		for _, m := range list(t, get(t, c, "volumeMounts"), "volumeMounts") {
			if mp := str(t, m, "mountPath"); strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/") {
				return str(t, m, "name")
			}
		}
		return ""
	}
	vol := mountOf(nativeInit.v, cmd[2].(string))
	if vol == "" {
		t.Errorf("init container writes %s, outside its volume mounts", cmd[2])
	} else if mountOf(wasm.v, cmd[2].(string)) != vol {
		t.Errorf("the wasm container does not mount volume %s at the path the init container writes (%s)", vol, cmd[2])
	}

	// One network namespace: distinct ports, each probed where its container listens.
	seen := map[int]string{}
	for _, c := range ctrs {
		if c.init {
			continue
		}
		var ports []int
		for _, e := range list(t, get(t, c.v, "env"), "env") {
			if str(t, e, "name") != oci.ListenEnv {
				continue
			}
			addrs, err := oci.Listen([]string{oci.ListenEnv + "=" + str(t, e, "value")})
			if err != nil {
				t.Fatalf("container %s: %v", c.name, err)
			}
			for _, a := range addrs {
				ports = append(ports, a.Port)
			}
		}
		if len(ports) != 1 {
			t.Fatalf("container %s listens on %v, want one port", c.name, ports)
		}
		if other, dup := seen[ports[0]]; dup {
			t.Errorf("containers %s and %s both listen on %d in the pod's one network namespace", other, c.name, ports[0])
		}
		seen[ports[0]] = c.name
		if p := num(t, get(t, c.v, "readinessProbe", "httpGet"), "port"); p != ports[0] {
			t.Errorf("container %s: readiness probe on port %d, it listens on %d", c.name, p, ports[0])
		}
	}
}
