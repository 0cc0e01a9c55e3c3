//go:build linux

package integration

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Images whose module is in the image's own layers (docs/images.md), built by testdata/Makefile
// with `wasmimg -layout wasm-layers|artifact` from hello.wasm.
const (
	helloImage         = "docker.io/library/wasm-hello:latest"          // rootfs layout, /hello.wasm
	helloLayersImage   = "docker.io/library/wasm-hello-layers:latest"   // application/wasm layer, no tar layer
	helloArtifactImage = "docker.io/library/wasm-hello-artifact:latest" // CNCF Wasm OCI artifact
	helloWant          = "hello from wasm"
	// componentWant is the stable part of the shim's error for a WebAssembly component.
	componentWant = "is a WebAssembly component (WASI preview 2); this shim runs WASI preview 1 core modules"
	// artifactRefusal is ctr's refusal of a config media type other than an image config's (ctr
	// run's image-config spec option). The CNCF artifact can only run through CRI.
	artifactRefusal = "unknown image config media type application/vnd.wasm.config.v0+json"
	// v16Refusal is containerd 1.6's refusal to unpack an image with a layer that is not a tar
	// layer: its unpacker wants one rootfs.diff_ids entry per layer (1.7 and later skip layers of
	// other media types).
	v16Refusal = "mismatched image rootfs and manifest layers"
)

// componentBytes is the header of a WebAssembly component (version 0x0d, layer 1): enough for the
// shim, which refuses it by its header before compiling.
var componentBytes = []byte("\x00asm\x0d\x00\x01\x00")

func TestImageLayouts(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		d.importImage(t, filepath.Join(imagesDir, "hello.tar"))
		if d.v1() {
			// containerd 1.6 cannot unpack an image with a non-tar layer, so neither `ctr images
			// import` (which unpacks) nor `ctr run` of an image imported with --no-unpack gets to
			// the shim: the wasm-layers and artifact layouts need containerd 1.7 or later.
			for _, img := range []string{"hello-layers.tar", "hello-artifact.tar"} {
				tarball := filepath.Join(imagesDir, img)
				if _, se, code := d.ctr(t, "images", "import", "--all-platforms", tarball); code == 0 || !strings.Contains(se, v16Refusal) {
					t.Errorf("containerd 1.6: ctr images import %s: exit %d, want a failure with %q: %s", img, code, v16Refusal, se)
				}
				if _, se, code := d.ctr(t, "images", "import", "--all-platforms", "--no-unpack", tarball); code != 0 {
					t.Fatalf("containerd 1.6: ctr images import --no-unpack %s: exit %d: %s", img, code, se)
				}
			}
			for _, img := range []string{helloLayersImage, helloArtifactImage} {
				r := d.run(t, runOpts{image: img, args: []string{"/hello.wasm"}})
				if r.exit == 0 || !strings.Contains(r.stderr, v16Refusal) && !strings.Contains(r.stderr, artifactRefusal) {
					t.Errorf("containerd 1.6: ctr run %s: exit %d, want a failure with %q\n%s", img, r.exit, v16Refusal, r)
				}
			}
		} else {
			for _, img := range []string{"hello-layers.tar", "hello-artifact.tar"} {
				d.importImage(t, filepath.Join(imagesDir, img))
			}
		}
		t.Run("rootfs", func(t *testing.T) {
			r := d.run(t, runOpts{image: helloImage})
			wantSuccess(t, r)
			if !strings.Contains(r.stdout, helloWant) {
				t.Errorf("stdout %q does not contain %q", r.stdout, helloWant)
			}
		})
		if d.v1() {
			return
		}
		t.Run("wasm-layers", func(t *testing.T) {
			// The image's entrypoint, /hello.wasm, is not in the (empty) rootfs: the shim takes
			// the module from the application/wasm layer in containerd's content store.
			r := d.run(t, runOpts{image: helloLayersImage})
			wantSuccess(t, r)
			if !strings.Contains(r.stdout, helloWant) {
				t.Errorf("stdout %q does not contain %q", r.stdout, helloWant)
			}
			// Args reach the module; the copy made by the first run is reused.
			r = d.run(t, runOpts{image: helloLayersImage, args: []string{"/hello.wasm", "a", "b"}})
			wantSuccess(t, r)
			if !strings.Contains(r.stdout, helloWant+" a b") {
				t.Errorf("stdout %q does not contain %q", r.stdout, helloWant+" a b")
			}
			checkModulesDir(t, d, filepath.Join(repoRoot, "testdata", "build", "hello.wasm"))
		})
		t.Run("artifact", func(t *testing.T) {
			// ctr run builds the container's spec from the image config and refuses any config
			// media type other than an OCI or Docker image config's, before the shim is asked.
			// This layout runs through CRI (docs/images.md).
			r := d.run(t, runOpts{image: helloArtifactImage, args: []string{"/hello.wasm"}})
			if r.exit == 0 || !strings.Contains(r.stderr, artifactRefusal) {
				t.Errorf("ctr run of the CNCF artifact: exit %d, want a failure with %q\n%s", r.exit, artifactRefusal, r)
			}
		})
		if !d.v1() {
			// containerd 2.x: the local importer can unpack for the wasm platform (the way
			// docs/kubernetes.md imports for CRI); ctr run works on the result as well.
			t.Run("wasm-layers-local-platform", func(t *testing.T) {
				d.ctr(t, "images", "rm", helloLayersImage)
				d.mu.Lock()
				delete(d.images, filepath.Join(imagesDir, "hello-layers.tar"))
				d.mu.Unlock()
				if _, se, code := d.ctr(t, "images", "import", "--local", "--platform", "wasip1/wasm", filepath.Join(imagesDir, "hello-layers.tar")); code != 0 {
					t.Fatalf("ctr images import --local --platform wasip1/wasm: exit %d: %s", code, se)
				}
				r := d.run(t, runOpts{image: helloLayersImage, flags: []string{"--platform", "wasip1/wasm"}})
				wantSuccess(t, r)
				if !strings.Contains(r.stdout, helloWant) {
					t.Errorf("stdout %q does not contain %q", r.stdout, helloWant)
				}
			})
		}
	})
}

// checkModulesDir checks that the module copied out of the content store is where the shim keeps
// modules (engine.ModulesDir: "modules" beside the compilation cache), named by its digest, root's
// only, and identical to want, and that the copy left no temporary file.
//
// The size bound (CONTAINERD_SHIM_WAZERO_MODULES_MAX_BYTES) is not exercised here: the shim
// inherits it from its daemon's environment, which the harness sets once per daemon for all
// tests. Eviction is tested in pkg/shim (modgc_test.go).
func checkModulesDir(t *testing.T, d *daemon, want string) {
	t.Helper()
	data, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	dir := filepath.Join(filepath.Dir(d.cacheDir), "modules")
	p := filepath.Join(dir, "sha256", hex.EncodeToString(sum[:])+".wasm")
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("module copy: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("%s differs from %s", p, want)
	}
	for _, q := range []string{dir, filepath.Join(dir, "sha256"), p} {
		if fi, err := os.Stat(q); err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: %v, mode %v: want root-only", q, err, fi.Mode())
		}
	}
	ents, err := os.ReadDir(filepath.Join(dir, "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".wasm") || strings.HasPrefix(e.Name(), ".") {
			t.Errorf("%s left in %s: want only modules named by their digest", e.Name(), filepath.Join(dir, "sha256"))
		}
	}
}

func TestImageModuleChoice(t *testing.T) {
	hello, err := os.ReadFile(filepath.Join(repoRoot, "testdata", "build", "hello.wasm"))
	if err != nil {
		requireSuite(t)
		t.Fatal(err)
	}
	dir := t.TempDir()
	imgs := []struct {
		file, name string
		layers     []testLayer
	}{
		{"component-layer.tar", "docker.io/library/wz-component-layer:latest", []testLayer{
			{mediaType: "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm", data: componentBytes, title: "app.wasm"},
		}},
		{"component-first.tar", "docker.io/library/wz-component-first:latest", []testLayer{
			{mediaType: "application/wasm", data: componentBytes},
			{mediaType: "application/wasm", data: hello},
		}},
		{"title.tar", "docker.io/library/wz-title:latest", []testLayer{
			{mediaType: "application/wasm", data: componentBytes, title: "other.wasm"},
			{mediaType: "application/wasm", data: hello, title: "app.wasm"},
		}},
		{"both.tar", "docker.io/library/wz-both:latest", []testLayer{
			{tarFile: "app.wasm", data: hello},
			{mediaType: "application/wasm", data: componentBytes, title: "app.wasm"},
		}},
	}
	for _, img := range imgs {
		writeTestImage(t, filepath.Join(dir, img.file), img.name, "/app.wasm", img.layers)
	}
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		wantErr := func(t *testing.T, r result, subs ...string) {
			t.Helper()
			if r.exit == 0 {
				t.Fatalf("ctr run succeeded, want an error\n%s", r)
			}
			for _, s := range subs {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr does not contain %q\n%s", s, r)
				}
			}
		}
		t.Run("neither", func(t *testing.T) {
			// Not in the rootfs, and a rootfs-layout image has no wasm layer: the rootfs's
			// not-found error, which also says so.
			r := d.run(t, runOpts{args: []string{"/nope.wasm"}})
			wantErr(t, r, "/nope.wasm", "not found", "no module in the image's layers either", testImage)
		})
		if d.v1() {
			return // containerd 1.6 cannot unpack images with non-tar layers (see TestImageLayouts)
		}
		for _, img := range imgs {
			d.importImage(t, filepath.Join(dir, img.file))
		}
		t.Run("component-layer", func(t *testing.T) {
			r := d.run(t, runOpts{image: imgs[0].name})
			wantErr(t, r, componentWant, imgs[0].name, "vnd.bytecodealliance.wasm.component.layer.v0+wasm")
		})
		t.Run("component-first", func(t *testing.T) {
			// No layer title names app.wasm: the first wasm layer is the module, and it is a
			// component by its header.
			r := d.run(t, runOpts{image: imgs[1].name})
			wantErr(t, r, componentWant, imgs[1].name, digestOf(componentBytes))
		})
		t.Run("title-names-module", func(t *testing.T) {
			r := d.run(t, runOpts{image: imgs[2].name})
			wantSuccess(t, r)
			if !strings.Contains(r.stdout, helloWant) {
				t.Errorf("stdout %q does not contain %q", r.stdout, helloWant)
			}
		})
		t.Run("rootfs-module-wins", func(t *testing.T) {
			// /app.wasm is both in the rootfs (hello) and a wasm layer (a component): the rootfs
			// is looked at first, and the image's layers are never read.
			r := d.run(t, runOpts{image: imgs[3].name})
			wantSuccess(t, r)
			if !strings.Contains(r.stdout, helloWant) {
				t.Errorf("stdout %q does not contain %q", r.stdout, helloWant)
			}
		})
	})
}

// testLayer is a layer of writeTestImage: a wasm blob of mediaType (with an optional
// org.opencontainers.image.title), or, with tarFile set, an uncompressed tar layer holding data
// as /tarFile.
type testLayer struct {
	mediaType string
	data      []byte
	title     string
	tarFile   string
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// writeTestImage writes an OCI image-layout tarball: one wasip1/wasm manifest with an OCI image
// config (architecture wasm, Entrypoint [entrypoint], diff_ids of the tar layers) and layers.
func writeTestImage(t *testing.T, path, name, entrypoint string, layers []testLayer) {
	t.Helper()
	type desc struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int               `json:"size"`
		Platform    map[string]string `json:"platform,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	blobs := map[string][]byte{}
	add := func(mediaType string, data []byte) desc {
		d := digestOf(data)
		blobs[d] = data
		return desc{MediaType: mediaType, Digest: d, Size: len(data)}
	}
	diffIDs := []string{}
	var ls []desc
	for _, l := range layers {
		if l.tarFile != "" {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			tw.WriteHeader(&tar.Header{Name: l.tarFile, Mode: 0o755, Size: int64(len(l.data)), Typeflag: tar.TypeReg})
			tw.Write(l.data)
			tw.Close()
			d := add("application/vnd.oci.image.layer.v1.tar", buf.Bytes())
			diffIDs = append(diffIDs, d.Digest)
			ls = append(ls, d)
			continue
		}
		d := add(l.mediaType, l.data)
		if l.title != "" {
			d.Annotations = map[string]string{"org.opencontainers.image.title": l.title}
		}
		ls = append(ls, d)
	}
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	config := add("application/vnd.oci.image.config.v1+json", mustJSON(map[string]any{
		"architecture": "wasm", "os": "wasip1",
		"config": map[string]any{"Entrypoint": []string{entrypoint}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	}))
	manifest := add("application/vnd.oci.image.manifest.v1+json", mustJSON(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config, "layers": ls,
	}))
	manifest.Platform = map[string]string{"architecture": "wasm", "os": "wasip1"}
	manifest.Annotations = map[string]string{"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name}
	index := mustJSON(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []desc{manifest}})

	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	file := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	file("index.json", index)
	for d, data := range blobs {
		file("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
