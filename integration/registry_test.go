//go:build linux

package integration

// Wasm images from a registry, as a kubelet gets them: every layout people publish is pushed to
// a real OCI registry on 127.0.0.1 (go-containerregistry's pkg/registry, served by this test
// process) by wasmimg and by an independent client (containerd's own `ctr images push` of a
// layout written here with the OCI image-spec types), then pulled through each daemon's CRI
// plugin with crictl (as the kubelet pulls, with and without the pod's runtime handler) and run
// in a wazero pod; images that run are pulled again (imagePullPolicy Always) and run again.
// registryLayouts is the support matrix docs/kubernetes.md documents.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

var (
	wasmimgBin = filepath.Join(repoRoot, "testdata", "build", "wasmimg")
	helloWasm  = filepath.Join(repoRoot, "testdata", "build", "hello.wasm")
)

// pullOutcome is what a kubelet sees for an image on one containerd: the pull fails (pullErr, a
// part of crictl pull's error), or the pull succeeds and creating the container fails
// (createErr), or both succeed and the module runs (the zero value).
type pullOutcome struct{ pullErr, createErr string }

func (o pullOutcome) String() string {
	switch {
	case o.pullErr != "":
		return "pull fails: " + o.pullErr
	case o.createErr != "":
		return "create fails: " + o.createErr
	}
	return "runs"
}

// matches reports whether o is the outcome want describes (its errors contain want's).
func (o pullOutcome) matches(want pullOutcome) bool {
	return (want.pullErr == "") == (o.pullErr == "") && strings.Contains(o.pullErr, want.pullErr) &&
		(want.createErr == "") == (o.createErr == "") && strings.Contains(o.createErr, want.createErr)
}

// The errors a user sees (docs/kubernetes.md quotes them).
const (
	errNoMatch     = "no match for platform in manifest"
	errNoParent    = "does not exist" // failed to create containerd container: ... parent snapshot sha256:... does not exist
	errV16Mismatch = "mismatched image rootfs and manifest layers"
)

// registryLayout is one way an image is published, and what each containerd (by "major.minor"
// of its version) does with it; a version not listed runs it.
type registryLayout struct {
	name    string
	wasmimg []string                              // wasmimg -push arguments (before the module), or nil
	ctr     func(l *ociLayout) ocispec.Descriptor // content pushed by ctr, or nil
	expect  map[string]pullOutcome
}

// registryLayouts is the support matrix (docs/kubernetes.md, "Which published images a kubelet
// can pull").
func registryLayouts() []registryLayout {
	noMatch := pullOutcome{pullErr: errNoMatch}
	return []registryLayout{
		// wasmimg's default.
		{name: "wasmimg-portable", wasmimg: []string{}},
		{name: "wasmimg-portable-amd64", wasmimg: []string{"-platform", "linux/amd64"}},
		{name: "wasmimg-rootfs", wasmimg: []string{"-layout", "rootfs"},
			expect: map[string]pullOutcome{"2.4": {createErr: errNoParent}}},
		{name: "wasmimg-rootfs-index", wasmimg: []string{"-layout", "rootfs", "-index"},
			expect: map[string]pullOutcome{"2.4": noMatch, "2.2": noMatch, "1.6": noMatch}},
		{name: "wasmimg-wasm-layers", wasmimg: []string{"-layout", "wasm-layers"},
			expect: map[string]pullOutcome{"1.6": {pullErr: errV16Mismatch}}},
		{name: "wasmimg-wasm-layers-vnd", wasmimg: []string{"-layout", "wasm-layers", "-layer-media-type", "application/vnd.wasm.content.layer.v1+wasm"},
			expect: map[string]pullOutcome{"1.6": {pullErr: errV16Mismatch}}},
		{name: "wasmimg-wasm-layers-index", wasmimg: []string{"-layout", "wasm-layers", "-index"},
			expect: map[string]pullOutcome{"2.4": noMatch, "2.2": noMatch, "1.6": noMatch}},
		{name: "wasmimg-artifact", wasmimg: []string{"-layout", "artifact"},
			expect: map[string]pullOutcome{"1.6": {pullErr: errV16Mismatch}}},
		{name: "wasmimg-artifact-index", wasmimg: []string{"-layout", "artifact", "-index"},
			expect: map[string]pullOutcome{"2.4": noMatch, "2.2": noMatch, "1.6": noMatch}},
		// docker buildx --platform wasi/wasm: an index with only the wasm manifest.
		{name: "ctr-buildx-wasi", ctr: func(l *ociLayout) ocispec.Descriptor {
			return l.index(l.rootfsManifest("wasi", "wasm"))
		}, expect: map[string]pullOutcome{"2.4": noMatch, "2.2": noMatch, "1.6": noMatch}},
		{name: "ctr-buildx-wasip1", ctr: func(l *ociLayout) ocispec.Descriptor {
			return l.index(l.rootfsManifest("wasip1", "wasm"))
		}, expect: map[string]pullOutcome{"2.4": noMatch, "2.2": noMatch, "1.6": noMatch}},
		{name: "ctr-bare-rootfs", ctr: func(l *ociLayout) ocispec.Descriptor {
			return l.rootfsManifest("wasip1", "wasm")
		}, expect: map[string]pullOutcome{"2.4": {createErr: errNoParent}}},
		// The portable layout written by another hand: wasm, linux/amd64 and linux/arm64 manifests.
		{name: "ctr-wasm-and-linux", ctr: func(l *ociLayout) ocispec.Descriptor {
			return l.index(l.rootfsManifest("wasip1", "wasm"), l.rootfsManifest("linux", "amd64"), l.rootfsManifest("linux", "arm64"))
		}},
		// The wasm manifest (config wasip1/wasm) listed under linux/amd64 too.
		{name: "ctr-same-manifest-both", ctr: func(l *ociLayout) ocispec.Descriptor {
			m := l.rootfsManifest("wasip1", "wasm")
			linux := m
			linux.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
			return l.index(m, linux)
		}, expect: map[string]pullOutcome{"2.4": {createErr: errNoParent}}},
	}
}

// startRegistry serves an OCI distribution registry on 127.0.0.1 for the test and returns its
// host:port. containerd (CRI and ctr) reaches registries on loopback addresses over plain HTTP.
func startRegistry(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// ociLayout collects blobs for an OCI image-layout tarball, written with the image-spec types
// (independently of wasmimg).
type ociLayout struct {
	t      *testing.T
	module []byte
	own    []byte // /layout.txt
	blobs  map[digest.Digest][]byte
	layer  *ocispec.Descriptor
	diffID digest.Digest
}

func (l *ociLayout) add(mediaType string, data []byte) ocispec.Descriptor {
	d := digest.FromBytes(data)
	l.blobs[d] = data
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}
}

func (l *ociLayout) addJSON(mediaType string, v any) ocispec.Descriptor {
	b, err := json.Marshal(v)
	if err != nil {
		l.t.Fatal(err)
	}
	return l.add(mediaType, b)
}

// rootfsManifest adds a manifest whose config says os/arch over a gzip tar layer holding
// /hello.wasm (the entrypoint) and /layout.txt, and returns its descriptor with that platform.
func (l *ociLayout) rootfsManifest(os, arch string) ocispec.Descriptor {
	if l.layer == nil {
		var raw bytes.Buffer
		tw := tar.NewWriter(&raw)
		tw.WriteHeader(&tar.Header{Name: "hello.wasm", Mode: 0o755, Size: int64(len(l.module)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)})
		tw.Write(l.module)
		tw.WriteHeader(&tar.Header{Name: "layout.txt", Mode: 0o644, Size: int64(len(l.own)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)})
		tw.Write(l.own)
		tw.Close()
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(raw.Bytes())
		zw.Close()
		d := l.add(ocispec.MediaTypeImageLayerGzip, gz.Bytes())
		l.layer, l.diffID = &d, digest.FromBytes(raw.Bytes())
	}
	cfg := ocispec.Image{
		Platform: ocispec.Platform{OS: os, Architecture: arch},
		Config:   ocispec.ImageConfig{Entrypoint: []string{"/hello.wasm"}},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{l.diffID}},
	}
	m := l.addJSON(ocispec.MediaTypeImageManifest, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    l.addJSON(ocispec.MediaTypeImageConfig, cfg),
		Layers:    []ocispec.Descriptor{*l.layer},
	})
	m.Platform = &ocispec.Platform{OS: os, Architecture: arch}
	return m
}

func (l *ociLayout) index(manifests ...ocispec.Descriptor) ocispec.Descriptor {
	return l.addJSON(ocispec.MediaTypeImageIndex, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: manifests,
	})
}

// writeTar writes the layout with top named name (the annotation ctr import reads) to path.
func (l *ociLayout) writeTar(path, name string, top ocispec.Descriptor) {
	top.Platform = nil
	if top.MediaType == ocispec.MediaTypeImageManifest {
		top.Platform = &ocispec.Platform{OS: "wasip1", Architecture: "wasm"}
	}
	top.Annotations = map[string]string{"io.containerd.image.name": name, ocispec.AnnotationRefName: name}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	put := func(n string, b []byte) {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)})
		tw.Write(b)
	}
	put(ocispec.ImageLayoutFile, []byte(`{"imageLayoutVersion":"1.0.0"}`))
	idx, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{top}})
	put(ocispec.ImageIndexFile, idx)
	for d, b := range l.blobs {
		put("blobs/sha256/"+d.Encoded(), b)
	}
	if err := tw.Close(); err != nil {
		l.t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		l.t.Fatal(err)
	}
}

// publish pushes the layout's image to ref: with wasmimg, or with ctr (import of the layout
// into namespace wz-publish of daemon d, then `ctr images push --plain-http`).
// It returns the layout tarball given to ctr ("" for wasmimg).
func (rl registryLayout) publish(t *testing.T, d *daemon, ref string, module []byte) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ctrTimeout)
	defer cancel()
	// Each layout's tar layer holds a file of its own (/layout.txt), so no two layouts share a
	// layer: a snapshot unpacked for one image would let another image whose own unpack failed
	// run on a node (containerd finds the snapshot by the layers' chain ID).
	own := filepath.Join(t.TempDir(), "layout.txt")
	if err := os.WriteFile(own, []byte(rl.name+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if rl.wasmimg != nil {
		args := append([]string{"-push", ref}, rl.wasmimg...)
		files := []string{helloWasm}
		if !strings.Contains(strings.Join(args, " "), "-layout wasm-layers") && !strings.Contains(strings.Join(args, " "), "-layout artifact") {
			files = append(files, own+"=/layout.txt")
		}
		if r := runCmd(ctx, wasmimgBin, append(args, files...)...); r.exit != 0 {
			t.Fatalf("wasmimg %s:\n%s", strings.Join(args, " "), r)
		}
		return ""
	}
	l := &ociLayout{t: t, module: module, own: []byte(rl.name + "\n"), blobs: map[digest.Digest][]byte{}}
	tarball := filepath.Join(t.TempDir(), rl.name+".tar")
	l.writeTar(tarball, ref, rl.ctr(l))
	ctr := func(args ...string) {
		full := append([]string{"--address", d.sock(), "--namespace", "wz-publish"}, args...)
		if r := runCmd(ctx, filepath.Join(d.bin, "ctr"), full...); r.exit != 0 {
			t.Fatalf("ctr %s:\n%s", strings.Join(full, " "), r)
		}
	}
	imp := []string{"images", "import", "--all-platforms", "--no-unpack"}
	if !d.v1() {
		imp = append(imp, "--local")
	}
	ctr(append(imp, tarball)...)
	ctr("images", "push", "--plain-http", ref)
	return tarball
}

// pullAndRun pulls ref with crictl (podConfig: crictl pull --pod-config, which puts the pod's
// sandbox config, and so its runtime-handler annotation, in the PullImageRequest) and runs a
// container of it in p without a command (the image's entrypoint). It returns what happened; a
// container that is created must run and print the module's output.
func (c *criClient) pullAndRun(p *pod, tr *tracked, ref, podConfig, name string) pullOutcome {
	t := c.t
	t.Helper()
	args := []string{"pull"}
	if podConfig != "" {
		args = append(args, "--pod-config", podConfig)
	}
	if r := c.crictl(append(args, ref)...); r.exit != 0 {
		return pullOutcome{pullErr: crictlError(r.stderr)}
	}
	return c.runOnly(p, tr, ref, name)
}

// runOnly runs a container of ref, as pullAndRun does, without pulling.
func (c *criClient) runOnly(p *pod, tr *tracked, ref, name string) pullOutcome {
	t := c.t
	t.Helper()
	id, _, r := p.tryCreate(ctrSpec{name: name, image: ref})
	if r.exit != 0 {
		return pullOutcome{createErr: crictlError(r.stderr)}
	}
	tr.ids = append(tr.ids, id)
	c.must("start", id)
	ci := c.waitState(id, stateExited, 30*time.Second)
	if out := c.logs(id); ci.Status.ExitCode != 0 || !strings.Contains(out, helloWant) {
		t.Errorf("%s: created from %s, exit code %d, crictl logs %q; want 0 and %q\ndaemon log:\n%s", name, ref, ci.Status.ExitCode, out, helloWant, logLinesFor(c.d, id))
	}
	return pullOutcome{}
}

// crictlError is the error crictl ends with (its last `level=fatal msg="..."`), else its stderr.
func crictlError(stderr string) string {
	const mark = `level=fatal msg="`
	if i := strings.LastIndex(stderr, mark); i >= 0 {
		msg, _, _ := strings.Cut(stderr[i+len(mark):], "\n")
		return strings.TrimSuffix(msg, `"`)
	}
	return strings.TrimSpace(stderr)
}

func TestRegistryPull(t *testing.T) {
	requireSuite(t)
	module, err := os.ReadFile(helloWasm)
	if err != nil {
		t.Fatalf("%v (run make testdata)", err)
	}
	if _, err := os.Stat(wasmimgBin); err != nil {
		t.Fatalf("%v (run make testdata)", err)
	}
	host := startRegistry(t)
	layouts := registryLayouts()
	pub := getDaemon(t, versions[0])
	tarballs := map[string]string{}
	for _, rl := range layouts {
		tarballs[rl.name] = rl.publish(t, pub, host+"/wz/"+rl.name+":v1", module)
	}
	forEachCRIDaemon(t, func(t *testing.T, c *criClient) {
		major, minor := majorMinor(c.d.version)
		key := fmt.Sprintf("%d.%d", major, minor)
		p := c.runPod("wz-reg", "wazero", true)
		var tr tracked
		tr.track(t, p.id, p.inspect().Info.Pid)
		// The pod config the kubelet sends with the pull: the runtime handler as the CRI plugin
		// reads it from a PullImageRequest's sandbox config.
		withHandler := writeJSON(t, t.TempDir(), "pull-pod.json", map[string]any{
			"metadata":    map[string]any{"name": "wz-pull", "namespace": "default", "uid": "wz-pull", "attempt": 0},
			"annotations": map[string]string{"io.containerd.cri.runtime-handler": "wazero"},
			"linux":       map[string]any{},
		})
		var table []string
		for _, rl := range layouts {
			ref := host + "/wz/" + rl.name + ":v1"
			want := rl.expect[key]
			t.Run(rl.name, func(t *testing.T) {
				c := &criClient{t: t, d: c.d}
				check := func(what string, got pullOutcome) {
					t.Helper()
					table = append(table, fmt.Sprintf("%-26s %-16s %s", rl.name, what, got))
					if !got.matches(want) {
						t.Errorf("containerd %s, %s, %s: %s; the support matrix says %s", c.d.version, ref, what, got, want)
					}
				}
				for _, h := range []struct{ name, podConfig string }{{"no-handler", ""}, {"handler", withHandler}} {
					c.crictl("rmi", ref) // a fresh pull each time; absent the first time
					got := c.pullAndRun(p, &tr, ref, h.podConfig, rl.name+"-"+h.name)
					check(h.name, got)
					if got == (pullOutcome{}) {
						// imagePullPolicy Always: the kubelet pulls the tag again for every container.
						check(h.name+" again", c.pullAndRun(p, &tr, ref, h.podConfig, rl.name+"-"+h.name+"-again"))
					}
				}
			})
		}
		t.Logf("containerd %s, what a kubelet pull of each layout gives:\n%s", c.d.version, strings.Join(table, "\n"))

		// A module that is neither in the rootfs nor in a wasm layer: the shim's error (at start,
		// when the CRI plugin creates the task) names the fix.
		t.Run("shim-names-the-fix", func(t *testing.T) {
			c := &criClient{t: t, d: c.d}
			ref := host + "/wz/wasmimg-portable:v1"
			c.must("pull", ref)
			id, _ := p.create(ctrSpec{name: "nope", image: ref, command: []string{"/nope.wasm"}})
			tr.ids = append(tr.ids, id)
			r := c.crictl("start", id)
			got := crictlError(r.stderr)
			if r.exit == 0 || !strings.Contains(got, "/nope.wasm not found") || !strings.Contains(got, "wasmimg -push") {
				t.Errorf("start with command /nope.wasm: exit %d, %q; want a failure naming /nope.wasm and wasmimg -push", r.exit, got)
			}
			t.Logf("containerd %s, start with command /nope.wasm: %s", c.d.version, got)
		})

		// An arm64 node: containerd asked for linux/arm64 selects the portable index's arm64
		// entry, unpacks it (2.4's unpacker checks that the config says arm64) and the module
		// runs. ctr pulls for a platform that is not the host's (on 2.x, --local: the transfer
		// service unpacks only the host's platform), and ctr run --platform uses that entry.
		t.Run("arm64-node", func(t *testing.T) {
			ref := host + "/wz/wasmimg-portable:v1"
			pull := []string{"images", "pull", "--plain-http", "--platform", "linux/arm64"}
			if !c.d.v1() {
				pull = append(pull, "--local")
			}
			if _, se, code := c.d.ctr(t, append(pull, ref)...); code != 0 {
				t.Fatalf("ctr %s %s: exit %d\n%s", strings.Join(pull, " "), ref, code, se)
			}
			defer c.d.ctr(t, "images", "rm", ref)
			r := c.d.run(t, runOpts{image: ref, flags: []string{"--platform", "linux/arm64"}})
			if r.exit != 0 || !strings.Contains(r.stdout, helloWant) {
				t.Errorf("ctr run --platform linux/arm64 %s: exit %d, stdout %q; want 0 and %q\n%s", ref, r.exit, r.stdout, helloWant, r.stderr)
			}
			so, _, _ := c.d.ctr(t, "images", "ls", "name=="+ref)
			if !strings.Contains(so, "linux/arm64") {
				t.Errorf("ctr images ls: %q, want the image listed with platform linux/arm64", so)
			}
		})

		// docs/kubernetes.md's old workaround: import the wasm image on the node (a layout whose
		// index.json names the wasm manifest, as wasmimg -o writes), while the registry has the
		// buildx-style index under the same tag; then the kubelet pulls the tag
		// (imagePullPolicy Always).
		t.Run("import-then-pull", func(t *testing.T) {
			c := &criClient{t: t, d: c.d}
			ref := host + "/wz/ctr-buildx-wasip1:v1"
			c.crictl("rmi", ref)
			l := &ociLayout{t: t, module: module, own: []byte("ctr-buildx-wasip1\n"), blobs: map[digest.Digest][]byte{}}
			tarball := filepath.Join(t.TempDir(), "import.tar")
			l.writeTar(tarball, ref, l.rootfsManifest("wasip1", "wasm"))
			imp := []string{"images", "import", "--platform", "wasip1/wasm"}
			if !c.d.v1() {
				imp = append(imp, "--local")
			}
			if r := c.ctrK8s(append(imp, tarball)...); r.exit != 0 {
				t.Fatalf("ctr -n k8s.io %s:\n%s", strings.Join(imp, " "), r)
			}
			// The CRI plugin learns of an image imported by ctr from containerd's events.
			for end := time.Now().Add(10 * time.Second); c.crictl("inspecti", ref).exit != 0 && time.Now().Before(end); {
				time.Sleep(100 * time.Millisecond)
			}
			want := pullOutcome{createErr: "error unpacking image: " + errNoMatch}
			if c.d.v1() {
				want = pullOutcome{} // 1.6 keeps the imported record when the pull fails
			}
			var steps []string
			step := func(what string, got, want pullOutcome) {
				steps = append(steps, fmt.Sprintf("%s: %s", what, got))
				if !got.matches(want) {
					t.Errorf("containerd %s, %s: %s; want %s", c.d.version, what, got, want)
				}
			}
			step("imported, create", c.runOnly(p, &tr, ref, "imported"), pullOutcome{})
			got := pullOutcome{}
			if r := c.crictl("pull", ref); r.exit != 0 {
				got.pullErr = crictlError(r.stderr)
			}
			step("crictl pull", got, pullOutcome{pullErr: errNoMatch})
			step("pulled again, create", c.runOnly(p, &tr, ref, "imported-again"), want)
			t.Logf("containerd %s, import then pull of %s:\n  %s", c.d.version, ref, strings.Join(steps, "\n  "))
		})
		c.removeAllAndCheck(&tr)
	})
}

// TestRegistryPullLocalImagePull: the installer's -local-image-pull on a containerd 2.x node
// (a private daemon started with the harness's config as edited by the installer) makes a
// kubelet pull of a bare wasip1/wasm manifest unpack, so it runs on 2.4 too; a wasm-only index
// still has no entry for the node. containerd 1.x refuses the flag.
func TestRegistryPullLocalImagePull(t *testing.T) {
	requireInstallerPrereqs(t)
	inst := buildInstaller(t)
	host := startRegistry(t)
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			E, err := os.MkdirTemp(suite.tmp, "lip-")
			if err != nil {
				t.Fatal(err)
			}
			bin := filepath.Join(E, "bin")
			os.MkdirAll(bin, 0o755)
			d := &daemon{version: v, dir: E, bin: binDir(v), ns: suite.ns, images: map[string]bool{}, cacheDir: filepath.Join(E, "cache")}
			cfg := filepath.Join(E, "config.toml")
			if err := os.WriteFile(cfg, []byte(d.config()), 0o600); err != nil {
				t.Fatal(err)
			}
			so, se, code := installerRun(t, inst, v, cfg, bin, "-restart", "none", "-local-image-pull")
			if d.v1() {
				if code != 1 || !strings.Contains(se, "-local-image-pull is for containerd 2.x") {
					t.Errorf("containerd %s: installer -local-image-pull: exit %d\n%s", v, code, se)
				}
				return
			}
			if code != 0 || !strings.Contains(so, "added use_local_image_pull = true under [plugins.io.containerd.cri.v1.images]") {
				t.Fatalf("installer -local-image-pull: exit %d\n%s\n%s", code, so, se)
			}
			path := d.daemonPATH()
			t.Setenv("PATH", path)
			t.Setenv(cacheDirEnv, d.cacheDir)
			t.Cleanup(startPrivate(t, v, E, cfg)) // after the pods' own cleanups
			c := &criClient{t: t, d: d}
			if r := c.ctrK8s("images", "import", filepath.Join(imagesDir, "pause.tar")); r.exit != 0 {
				t.Fatalf("ctr -n k8s.io images import pause.tar:\n%s", r)
			}
			for _, l := range []struct {
				name string
				args []string
				want pullOutcome
			}{
				{"lip-bare-rootfs", []string{"-layout", "rootfs"}, pullOutcome{}},
				{"lip-rootfs-index", []string{"-layout", "rootfs", "-index"}, pullOutcome{pullErr: errNoMatch}},
				{"lip-portable", nil, pullOutcome{}},
			} {
				ref := host + "/wz/" + l.name + "-" + strings.ReplaceAll(v, ".", "") + ":v1"
				registryLayout{name: l.name, wasmimg: append([]string{}, l.args...)}.publish(t, d, ref, nil)
				p := c.runPod(l.name, "wazero", true)
				var tr tracked
				tr.track(t, p.id, p.inspect().Info.Pid)
				got := c.pullAndRun(p, &tr, ref, "", l.name)
				if !got.matches(l.want) {
					t.Errorf("containerd %s with use_local_image_pull, %s: %s; want %s", v, ref, got, l.want)
				}
				if got == (pullOutcome{}) {
					if again := c.pullAndRun(p, &tr, ref, "", l.name+"-again"); again != (pullOutcome{}) {
						t.Errorf("containerd %s with use_local_image_pull, %s pulled again: %s; want it to run", v, ref, again)
					}
				}
				c.removeAllAndCheck(&tr)
			}
		})
	}
}
