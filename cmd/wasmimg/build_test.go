package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// readTar returns the regular files and directories of a tar stream.
func readTar(t *testing.T, r io.Reader) (files map[string][]byte, dirs []string) {
	t.Helper()
	files = map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files, dirs
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Uid != 0 || hdr.Gid != 0 || hdr.ModTime.Unix() != 0 {
			t.Errorf("%s: uid=%d gid=%d mtime=%v, want 0/0/epoch", hdr.Name, hdr.Uid, hdr.Gid, hdr.ModTime)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			dirs = append(dirs, hdr.Name)
		case tar.TypeReg:
			if hdr.Mode&0o777 == 0 {
				t.Errorf("%s: mode %o", hdr.Name, hdr.Mode)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[hdr.Name] = data
		default:
			t.Errorf("%s: unexpected type %c", hdr.Name, hdr.Typeflag)
		}
	}
}

// blobFor returns the blob for desc, checking its digest and size.
func blobFor(t *testing.T, layout map[string][]byte, desc Descriptor, mediaType string) []byte {
	t.Helper()
	if desc.MediaType != mediaType {
		t.Errorf("media type %q, want %q", desc.MediaType, mediaType)
	}
	data, ok := layout["blobs/sha256/"+strings.TrimPrefix(desc.Digest, "sha256:")]
	if !ok {
		t.Fatalf("blob %s missing", desc.Digest)
	}
	sum := sha256.Sum256(data)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != desc.Digest {
		t.Errorf("blob digest %s, descriptor says %s", got, desc.Digest)
	}
	if int64(len(data)) != desc.Size {
		t.Errorf("blob %s size %d, descriptor says %d", desc.Digest, len(data), desc.Size)
	}
	return data
}

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	app := write("app.wasm", "\x00asm app")
	other := write("other.wasm", "\x00asm other")

	tests := []struct {
		name      string
		opts      Options
		wantArch  string
		wantOS    string
		wantEntry []string
		wantFiles map[string]string // layer path -> content
		wantDirs  []string
		wantErr   string
	}{
		{
			name:      "defaults",
			opts:      Options{Name: "docker.io/library/a:latest", Files: []File{{Src: app}}},
			wantArch:  "wasm",
			wantOS:    "wasip1",
			wantEntry: []string{"/app.wasm"},
			wantFiles: map[string]string{"app.wasm": "\x00asm app"},
		},
		{
			name: "dest cmd env",
			opts: Options{
				Name:       "docker.io/library/b:1",
				Entrypoint: []string{"/app.wasm"},
				Cmd:        []string{"hello", "x y"},
				Env:        []string{"PATH=/bin", "EMPTY="},
				Files:      []File{{Src: app}, ParseFile(other + "=/bin/sub/tool.wasm")},
			},
			wantArch:  "wasm",
			wantOS:    "wasip1",
			wantEntry: []string{"/app.wasm"},
			wantFiles: map[string]string{"app.wasm": "\x00asm app", "bin/sub/tool.wasm": "\x00asm other"},
			wantDirs:  []string{"bin/", "bin/sub/"},
		},
		{
			name:      "native",
			opts:      Options{Name: "registry.k8s.io/pause:3.10.2", Arch: "amd64", OS: "linux", Files: []File{{Src: other, Dest: "pause"}}},
			wantArch:  "amd64",
			wantOS:    "linux",
			wantEntry: []string{"/pause"},
			wantFiles: map[string]string{"pause": "\x00asm other"},
		},
		{name: "missing file", opts: Options{Name: "x", Files: []File{{Src: filepath.Join(dir, "nope.wasm")}}}, wantErr: "nope.wasm"},
		{name: "bad env", opts: Options{Name: "x", Env: []string{"NOEQUALS"}, Files: []File{{Src: app}}}, wantErr: `"NOEQUALS"`},
		{name: "no name", opts: Options{Files: []File{{Src: app}}}, wantErr: "name"},
		{name: "no files", opts: Options{Name: "x"}, wantErr: "file"},
		{name: "duplicate", opts: Options{Name: "x", Files: []File{{Src: app}, {Src: other, Dest: "/app.wasm"}}}, wantErr: "duplicate"},
		{name: "file vs dir", opts: Options{Name: "x", Files: []File{{Src: app, Dest: "/a"}, {Src: other, Dest: "/a/b"}}}, wantErr: "both"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := Build(&buf, tc.opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var again bytes.Buffer
			if err := Build(&again, tc.opts); err != nil || !bytes.Equal(buf.Bytes(), again.Bytes()) {
				t.Errorf("output not deterministic (err %v)", err)
			}

			layout, _ := readTar(t, &buf)
			if got := string(layout["oci-layout"]); got != `{"imageLayoutVersion":"1.0.0"}` {
				t.Errorf("oci-layout = %q", got)
			}
			var index Index
			if err := json.Unmarshal(layout["index.json"], &index); err != nil {
				t.Fatalf("index.json: %v", err)
			}
			if index.SchemaVersion != 2 || index.MediaType != MediaTypeIndex || len(index.Manifests) != 1 {
				t.Fatalf("index = %+v", index)
			}
			md := index.Manifests[0]
			if md.Platform == nil || md.Platform.Architecture != tc.wantArch || md.Platform.OS != tc.wantOS {
				t.Errorf("platform = %+v", md.Platform)
			}
			for _, k := range []string{AnnotationContainerdName, AnnotationRefName} {
				if md.Annotations[k] != tc.opts.Name {
					t.Errorf("annotation %s = %q, want %q", k, md.Annotations[k], tc.opts.Name)
				}
			}

			var manifest Manifest
			if err := json.Unmarshal(blobFor(t, layout, md, MediaTypeManifest), &manifest); err != nil {
				t.Fatal(err)
			}
			if manifest.SchemaVersion != 2 || len(manifest.Layers) != 1 {
				t.Fatalf("manifest = %+v", manifest)
			}
			var cfg ImageConfig
			if err := json.Unmarshal(blobFor(t, layout, manifest.Config, MediaTypeConfig), &cfg); err != nil {
				t.Fatal(err)
			}
			if cfg.Architecture != tc.wantArch || cfg.OS != tc.wantOS {
				t.Errorf("config platform = %s/%s", cfg.OS, cfg.Architecture)
			}
			if !reflect.DeepEqual(cfg.Config.Entrypoint, tc.wantEntry) {
				t.Errorf("Entrypoint = %q, want %q", cfg.Config.Entrypoint, tc.wantEntry)
			}
			if !reflect.DeepEqual(cfg.Config.Cmd, tc.opts.Cmd) || !reflect.DeepEqual(cfg.Config.Env, tc.opts.Env) {
				t.Errorf("Cmd = %q Env = %q", cfg.Config.Cmd, cfg.Config.Env)
			}

			gzData := blobFor(t, layout, manifest.Layers[0], MediaTypeLayer)
			zr, err := gzip.NewReader(bytes.NewReader(gzData))
			if err != nil {
				t.Fatal(err)
			}
			layerTar, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(layerTar)
			if diffID := "sha256:" + hex.EncodeToString(sum[:]); len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != diffID {
				t.Errorf("diff_ids = %v, want [%s]", cfg.RootFS.DiffIDs, diffID)
			}
			files, dirs := readTar(t, bytes.NewReader(layerTar))
			got := map[string]string{}
			for k, v := range files {
				got[k] = string(v)
			}
			if !reflect.DeepEqual(got, tc.wantFiles) {
				t.Errorf("layer files = %q, want %q", got, tc.wantFiles)
			}
			if !reflect.DeepEqual(dirs, tc.wantDirs) {
				t.Errorf("layer dirs = %q, want %q", dirs, tc.wantDirs)
			}
		})
	}
}

func TestBuildWasmLayouts(t *testing.T) {
	dir := t.TempDir()
	module := []byte("\x00asm\x01\x00\x00\x00")
	app := filepath.Join(dir, "app.wasm")
	if err := os.WriteFile(app, module, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(module)
	moduleDigest := "sha256:" + hex.EncodeToString(sum[:])
	tests := []struct {
		name          string
		opts          Options
		wantConfig    string
		wantLayerType string
		wantTitle     string
	}{
		{
			name:       "wasm-layers",
			opts:       Options{Name: "docker.io/library/l:1", Layout: LayoutWasmLayers, Cmd: []string{"a"}, Env: []string{"K=V"}, Files: []File{{Src: app}}},
			wantConfig: MediaTypeConfig, wantLayerType: MediaTypeWasm, wantTitle: "app.wasm",
		},
		{
			name: "wasm-layers with another media type and destination",
			opts: Options{Name: "docker.io/library/l:2", Layout: LayoutWasmLayers, LayerMediaType: "application/vnd.wasm.content.layer.v1+wasm",
				Files: []File{{Src: app, Dest: "/bin/tool.wasm"}}},
			wantConfig: MediaTypeConfig, wantLayerType: "application/vnd.wasm.content.layer.v1+wasm", wantTitle: "tool.wasm",
		},
		{
			name:       "artifact",
			opts:       Options{Name: "docker.io/library/a:1", Layout: LayoutArtifact, Cmd: []string{"a"}, Env: []string{"K=V"}, Files: []File{{Src: app}}},
			wantConfig: MediaTypeWasmConfig, wantLayerType: MediaTypeWasm, wantTitle: "app.wasm",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Build(&buf, tc.opts); err != nil {
				t.Fatal(err)
			}
			layout, _ := readTar(t, &buf)
			var index Index
			if err := json.Unmarshal(layout["index.json"], &index); err != nil || len(index.Manifests) != 1 {
				t.Fatalf("index.json: %v %+v", err, index)
			}
			md := index.Manifests[0]
			if md.Platform == nil || md.Platform.Architecture != "wasm" || md.Platform.OS != "wasip1" {
				t.Errorf("platform = %+v", md.Platform)
			}
			if md.Annotations[AnnotationContainerdName] != tc.opts.Name {
				t.Errorf("annotations = %v", md.Annotations)
			}
			var manifest Manifest
			if err := json.Unmarshal(blobFor(t, layout, md, MediaTypeManifest), &manifest); err != nil {
				t.Fatal(err)
			}
			if len(manifest.Layers) != 1 {
				t.Fatalf("layers = %+v, want only the module", manifest.Layers)
			}
			l := manifest.Layers[0]
			if got := blobFor(t, layout, l, tc.wantLayerType); !bytes.Equal(got, module) || l.Digest != moduleDigest {
				t.Errorf("module layer %s holds %q, want the module %s", l.Digest, got, moduleDigest)
			}
			if l.Annotations[AnnotationTitle] != tc.wantTitle {
				t.Errorf("layer title = %q, want %q", l.Annotations[AnnotationTitle], tc.wantTitle)
			}
			raw := blobFor(t, layout, manifest.Config, tc.wantConfig)
			entry := []string{"/" + tc.wantTitle}
			if tc.opts.Files[0].Dest != "" {
				entry = []string{tc.opts.Files[0].Dest}
			}
			if tc.wantConfig == MediaTypeWasmConfig {
				var wc WasmConfig
				if err := json.Unmarshal(raw, &wc); err != nil {
					t.Fatal(err)
				}
				if wc.Architecture != "wasm" || wc.OS != "wasip1" || wc.Created == "" || !reflect.DeepEqual(wc.LayerDigests, []string{moduleDigest}) {
					t.Errorf("wasm config = %s", raw)
				}
				if wc.Config == nil || !reflect.DeepEqual(wc.Config.Entrypoint, entry) || !reflect.DeepEqual(wc.Config.Cmd, tc.opts.Cmd) || !reflect.DeepEqual(wc.Config.Env, tc.opts.Env) {
					t.Errorf("wasm config's entrypoint/cmd/env = %s", raw)
				}
				return
			}
			var cfg ImageConfig
			if err := json.Unmarshal(raw, &cfg); err != nil {
				t.Fatal(err)
			}
			if cfg.Architecture != "wasm" || cfg.OS != "wasip1" || cfg.RootFS.Type != "layers" || cfg.RootFS.DiffIDs == nil || len(cfg.RootFS.DiffIDs) != 0 {
				t.Errorf("config = %s, want wasm/wasip1 with rootfs.diff_ids = []", raw)
			}
			if !reflect.DeepEqual(cfg.Config.Entrypoint, entry) || !reflect.DeepEqual(cfg.Config.Cmd, tc.opts.Cmd) || !reflect.DeepEqual(cfg.Config.Env, tc.opts.Env) {
				t.Errorf("config's entrypoint/cmd/env = %s", raw)
			}
		})
	}

	other := filepath.Join(dir, "x.txt")
	os.WriteFile(other, []byte("hello"), 0o644)
	for _, tc := range []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"two files", Options{Name: "x", Layout: LayoutArtifact, Files: []File{{Src: app}, {Src: app, Dest: "/b.wasm"}}}, "exactly one file"},
		{"not wasm", Options{Name: "x", Layout: LayoutWasmLayers, Files: []File{{Src: other}}}, "not a WebAssembly module"},
		{"unknown layout", Options{Name: "x", Layout: "zip", Files: []File{{Src: app}}}, `unknown layout "zip"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Build(io.Discard, tc.opts); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Build error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestLayerTarCharDevices(t *testing.T) {
	d, err := ParseCharDevice("/dev/kmsg=1:11")
	if err != nil || d != (CharDevice{Dest: "/dev/kmsg", Major: 1, Minor: 11}) {
		t.Fatalf("ParseCharDevice = %+v, %v", d, err)
	}
	for _, bad := range []string{"kmsg=1:11", "/kmsg", "/kmsg=1"} {
		if _, err := ParseCharDevice(bad); err == nil {
			t.Errorf("ParseCharDevice(%q): no error", bad)
		}
	}
	data, err := layerTar(map[string][]byte{"app.wasm": []byte("\x00asm")}, []CharDevice{d})
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(data))
	found := map[string]*tar.Header{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		found[hdr.Name] = hdr
	}
	h := found["dev/kmsg"]
	if h == nil || h.Typeflag != tar.TypeChar || h.Devmajor != 1 || h.Devminor != 11 || h.Mode != 0o666 {
		t.Errorf("dev/kmsg entry = %+v", h)
	}
	if found["dev/"] == nil || found["app.wasm"] == nil {
		t.Errorf("entries %v: want dev/ and app.wasm too", found)
	}
	if _, err := layerTar(map[string][]byte{"dev/kmsg": nil}, []CharDevice{d}); err == nil {
		t.Error("a device and a file at one path: no error")
	}
}

// wasmimg refuses to package a WebAssembly component, in every layout, and writes no image.
func TestBuildRefusesComponent(t *testing.T) {
	dir := t.TempDir()
	comp := filepath.Join(dir, "comp.wasm")
	if err := os.WriteFile(comp, []byte("\x00asm\x0d\x00\x01\x00rest"), 0o644); err != nil {
		t.Fatal(err)
	}
	core := filepath.Join(dir, "core.wasm")
	if err := os.WriteFile(core, []byte("\x00asm\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, layout := range []string{LayoutRootfs, LayoutWasmLayers, LayoutArtifact} {
		out := filepath.Join(dir, layout+".tar")
		err := run(out, Options{Name: "docker.io/library/c:1", Layout: layout, Files: []File{{Src: comp}}})
		if err == nil || !strings.Contains(err.Error(), `comp.wasm" is a WebAssembly component (WASI preview 2)`) || !strings.Contains(err.Error(), "wasip1") {
			t.Errorf("%s: err = %v", layout, err)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s: an image was written", layout)
		}
	}
	// A component among other rootfs files too; core modules still build.
	if err := run(filepath.Join(dir, "mixed.tar"), Options{Name: "docker.io/library/m:1", Files: []File{{Src: core}, {Src: comp, Dest: "/lib/comp.wasm"}}}); err == nil {
		t.Error("a component in a rootfs layer was packaged")
	}
	if err := run(filepath.Join(dir, "core.tar"), Options{Name: "docker.io/library/m:1", Files: []File{{Src: core}}}); err != nil {
		t.Errorf("core module: %v", err)
	}
}
