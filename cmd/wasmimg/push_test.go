package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestPushLayouts pushes every layout to an in-process registry (go-containerregistry's
// pkg/registry, a real OCI distribution server over HTTP) and reads back what a client sees.
func TestPushLayouts(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	app := filepath.Join(t.TempDir(), "app.wasm")
	if err := os.WriteFile(app, []byte("\x00asm\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	type entry struct{ os, arch, cfgOS, cfgArch string }
	tests := []struct {
		name    string
		opts    Options
		index   []entry // nil: a bare manifest
		cfgType string
	}{
		{"portable", Options{Layout: LayoutPortable}, []entry{{"wasip1", "wasm", "wasip1", "wasm"}, {"linux", "amd64", "linux", "amd64"}, {"linux", "arm64", "linux", "arm64"}}, MediaTypeConfig},
		{"portable-arm-v7", Options{Layout: LayoutPortable, Platforms: []string{"linux/arm/v7"}}, []entry{{"wasip1", "wasm", "wasip1", "wasm"}, {"linux", "arm", "linux", "arm"}}, MediaTypeConfig},
		{"rootfs", Options{Layout: LayoutRootfs}, nil, MediaTypeConfig},
		{"rootfs-index", Options{Layout: LayoutRootfs, Index: true}, []entry{{"wasip1", "wasm", "wasip1", "wasm"}}, MediaTypeConfig},
		{"wasm-layers", Options{Layout: LayoutWasmLayers}, nil, MediaTypeConfig},
		{"artifact-index", Options{Layout: LayoutArtifact, Index: true}, []entry{{"wasip1", "wasm", "wasip1", "wasm"}}, MediaTypeWasmConfig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ref := host + "/test/" + tc.name + ":v1"
			tc.opts.Name, tc.opts.Files = ref, []File{{Src: app}}
			img, err := Assemble(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			pushed, err := Push(context.Background(), img, ref, PushOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if want := host + "/test/" + tc.name + "@" + img.Top.digest; pushed != want {
				t.Errorf("Push returned %q, want %q", pushed, want)
			}
			r, err := name.ParseReference(ref)
			if err != nil {
				t.Fatal(err)
			}
			desc, err := remote.Get(r)
			if err != nil {
				t.Fatal(err)
			}
			if desc.Digest.String() != img.Top.digest {
				t.Errorf("registry's %s is %s, pushed %s", ref, desc.Digest, img.Top.digest)
			}
			checkConfig := func(m Manifest, os, arch string) {
				t.Helper()
				if m.Config.MediaType != tc.cfgType || len(m.Layers) != 1 {
					t.Fatalf("manifest %+v", m)
				}
				cfg, err := remote.Layer(r.Context().Digest(m.Config.Digest))
				if err != nil {
					t.Fatal(err)
				}
				rc, err := cfg.Compressed()
				if err != nil {
					t.Fatal(err)
				}
				defer rc.Close()
				var c struct{ OS, Architecture string }
				if err := json.NewDecoder(rc).Decode(&c); err != nil {
					t.Fatal(err)
				}
				if c.OS != os || c.Architecture != arch {
					t.Errorf("config of %s says %s/%s, want %s/%s", m.Config.Digest, c.OS, c.Architecture, os, arch)
				}
				if _, err := remote.Layer(r.Context().Digest(m.Layers[0].Digest)); err != nil {
					t.Errorf("layer %s: %v", m.Layers[0].Digest, err)
				}
			}
			if tc.index == nil {
				if string(desc.MediaType) != MediaTypeManifest {
					t.Fatalf("media type %s, want a bare manifest", desc.MediaType)
				}
				var m Manifest
				if err := json.Unmarshal(desc.Manifest, &m); err != nil {
					t.Fatal(err)
				}
				checkConfig(m, "wasip1", "wasm")
				return
			}
			if string(desc.MediaType) != MediaTypeIndex {
				t.Fatalf("media type %s, want an index", desc.MediaType)
			}
			var idx Index
			if err := json.Unmarshal(desc.Manifest, &idx); err != nil {
				t.Fatal(err)
			}
			if len(idx.Manifests) != len(tc.index) {
				t.Fatalf("index lists %d manifests, want %d: %s", len(idx.Manifests), len(tc.index), desc.Manifest)
			}
			layer := ""
			for i, want := range tc.index {
				d := idx.Manifests[i]
				if d.Platform == nil || d.Platform.OS != want.os || d.Platform.Architecture != want.arch {
					t.Errorf("entry %d platform %+v, want %s/%s", i, d.Platform, want.os, want.arch)
				}
				md, err := remote.Get(r.Context().Digest(d.Digest))
				if err != nil {
					t.Fatal(err)
				}
				var m Manifest
				if err := json.Unmarshal(md.Manifest, &m); err != nil {
					t.Fatal(err)
				}
				checkConfig(m, want.cfgOS, want.cfgArch)
				if layer != "" && m.Layers[0].Digest != layer {
					t.Errorf("entry %d has layer %s, entry 0 %s: want one shared layer", i, m.Layers[0].Digest, layer)
				}
				layer = m.Layers[0].Digest
			}
		})
	}
}

func TestPushErrors(t *testing.T) {
	app := filepath.Join(t.TempDir(), "app.wasm")
	if err := os.WriteFile(app, []byte("\x00asm\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Assemble(Options{Name: "x", Layout: LayoutPortable, Platforms: []string{"amd64"}, Files: []File{{Src: app}}}); err == nil || !strings.Contains(err.Error(), "OS/ARCH") {
		t.Errorf("bad platform: %v", err)
	}
	if _, err := Assemble(Options{Name: "x", Layout: LayoutPortable, Platforms: []string{"linux/amd64", "linux/amd64"}, Files: []File{{Src: app}}}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate platform: %v", err)
	}
	if _, err := Assemble(Options{Name: "x", Layout: LayoutRootfs, Platforms: []string{"linux/amd64"}, Files: []File{{Src: app}}}); err == nil || !strings.Contains(err.Error(), "-platform") {
		t.Errorf("-platform with rootfs: %v", err)
	}
	if _, err := Assemble(Options{Name: "x", Layout: LayoutPortable, Index: true, Files: []File{{Src: app}}}); err == nil || !strings.Contains(err.Error(), "drop -index") {
		t.Errorf("-index with portable: %v", err)
	}
	if _, err := Assemble(Options{Name: "x", Layout: LayoutWasmLayers, Files: []File{{Src: app}, {Src: app, Dest: "/b.wasm"}}}); err == nil || !strings.Contains(err.Error(), "exactly one file") {
		t.Errorf("two files in wasm-layers: %v", err)
	}
	img, err := Assemble(Options{Name: "x", Files: []File{{Src: app}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Push(context.Background(), img, "UPPER/Case::bad", PushOptions{}); err == nil || !strings.Contains(err.Error(), "bad reference") {
		t.Errorf("bad reference: %v", err)
	}
	// Nothing listens on port 1: the error names what was being pushed.
	if _, err := Push(context.Background(), img, "127.0.0.1:1/x/y:z", PushOptions{}); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1/x/y") {
		t.Errorf("unreachable registry: %v", err)
	}
}

// TestPushDockerConfigAuth: a registry that wants basic auth gets the credentials of the docker
// config (DOCKER_CONFIG/config.json, as `docker login` writes it); without them the push fails
// with the registry's refusal.
func TestPushDockerConfigAuth(t *testing.T) {
	const user, pass = "wasm", "s3cret"
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	var authorized int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="wasmimg-test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		authorized++
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	app := filepath.Join(t.TempDir(), "app.wasm")
	if err := os.WriteFile(app, []byte("\x00asm\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := Assemble(Options{Name: "x", Layout: LayoutPortable, Files: []File{{Src: app}}})
	if err != nil {
		t.Fatal(err)
	}
	ref := host + "/private/app:1"

	t.Setenv("DOCKER_CONFIG", t.TempDir())
	if _, err := Push(context.Background(), img, ref, PushOptions{}); err == nil || !strings.Contains(strings.ToLower(err.Error()), "unauthorized") {
		t.Fatalf("push without credentials: %v, want the registry's refusal", err)
	}

	dir := t.TempDir()
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
	if _, err := Push(context.Background(), img, ref, PushOptions{}); err != nil {
		t.Fatalf("push with the docker config's credentials: %v", err)
	}
	if authorized == 0 {
		t.Error("no request carried the credentials")
	}
}
