package oci

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func layer(mediaType, d string, title string) ocispec.Descriptor {
	l := ocispec.Descriptor{MediaType: mediaType, Digest: digest.Digest("sha256:" + d), Size: 8}
	if title != "" {
		l.Annotations = map[string]string{ocispec.AnnotationTitle: title}
	}
	return l
}

func TestManifestCandidates(t *testing.T) {
	plat := func(os, arch string) *ocispec.Platform { return &ocispec.Platform{OS: os, Architecture: arch} }
	m := func(d string, p *ocispec.Platform) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.Digest("sha256:" + d), Platform: p}
	}
	idx := ocispec.Index{Manifests: []ocispec.Descriptor{
		m("amd64", plat("linux", "amd64")),
		m("noplat", nil),
		m("wasi", plat("wasi", "wasm")),
		m("other", plat("wasip2", "wasm")),
		m("wasip1", plat("wasip1", "wasm")),
		{MediaType: "application/vnd.in-toto+json", Digest: "sha256:att"},
		m("attest", plat("unknown", "unknown")),
	}}
	var got []string
	for _, d := range ManifestCandidates(idx) {
		got = append(got, d.Digest.Encoded())
	}
	if want := "wasip1 wasi other noplat"; strings.Join(got, " ") != want {
		t.Errorf("ManifestCandidates = %v, want %s", got, want)
	}
}

func TestModuleLayer(t *testing.T) {
	const img = "docker.io/library/x:latest"
	imageConfig := `{"architecture":"wasm","os":"wasip1","rootfs":{"type":"layers","diff_ids":[]}}`
	cases := []struct {
		name       string
		configType string
		config     string
		layers     []ocispec.Descriptor
		args0      string
		want       string // digest hex of the chosen layer
		wantLayout ImageLayout
		wantErr    func(error) bool
		errHas     []string
	}{
		{
			name: "wasm layer", configType: ocispec.MediaTypeImageConfig, config: imageConfig,
			layers: []ocispec.Descriptor{layer(MediaTypeWasm, "a", "")}, args0: "/app.wasm",
			want: "a", wantLayout: LayoutWasmLayers,
		},
		{
			name: "tar layers are skipped, first wasm layer wins", configType: ocispec.MediaTypeImageConfig, config: imageConfig,
			layers: []ocispec.Descriptor{
				layer(ocispec.MediaTypeImageLayerGzip, "t", ""), layer(MediaTypeWasmContentLayer, "b", ""), layer(MediaTypeWasm, "c", ""),
			},
			args0: "/app.wasm", want: "b", wantLayout: LayoutWasmLayers,
		},
		{
			name: "title annotation matching args0 wins", configType: ocispec.MediaTypeImageConfig, config: imageConfig,
			layers: []ocispec.Descriptor{layer(MediaTypeWasm, "a", "first.wasm"), layer(MediaTypeWasm, "b", "app.wasm")},
			args0:  "/usr/bin/app.wasm", want: "b", wantLayout: LayoutWasmLayers,
		},
		{
			name: "docker config", configType: mediaTypeDockerConfig, config: imageConfig,
			layers: []ocispec.Descriptor{layer(MediaTypeWasm, "a", "")}, args0: "app.wasm",
			want: "a", wantLayout: LayoutWasmLayers,
		},
		{
			name: "component layer", configType: ocispec.MediaTypeImageConfig, config: imageConfig,
			layers:  []ocispec.Descriptor{layer(MediaTypeWasmComponentLayer, "c", "")},
			wantErr: errdefs.IsInvalidArgument, errHas: []string{img, "sha256:c", "WebAssembly component (WASI preview 2)", "WASI preview 1 core modules"},
		},
		{
			name: "first wasm layer is a component", configType: ocispec.MediaTypeImageConfig, config: imageConfig,
			layers:  []ocispec.Descriptor{layer(MediaTypeWasmComponentLayer, "c", ""), layer(MediaTypeWasm, "m", "")},
			args0:   "/app.wasm",
			wantErr: errdefs.IsInvalidArgument, errHas: []string{"sha256:c", "WebAssembly component"},
		},
		{
			name: "not a wasm architecture", configType: ocispec.MediaTypeImageConfig, config: `{"architecture":"amd64","os":"linux"}`,
			layers:  []ocispec.Descriptor{layer(MediaTypeWasm, "a", "")},
			wantErr: IsNoWasmLayer, errHas: []string{img, `"amd64"`},
		},
		{
			name: "rootfs layout: only tar layers", configType: ocispec.MediaTypeImageConfig, config: imageConfig,
			layers:  []ocispec.Descriptor{layer(ocispec.MediaTypeImageLayerGzip, "t", "")},
			wantErr: IsNoWasmLayer, errHas: []string{img, "no layer of a wasm media type"},
		},
		{
			name: "unsupported wasm layer type", configType: ocispec.MediaTypeImageConfig, config: imageConfig,
			layers:  []ocispec.Descriptor{layer("application/vnd.example.wasm.v9+gzip", "u", "")},
			wantErr: errdefs.IsInvalidArgument, errHas: []string{img, "sha256:u", "application/vnd.example.wasm.v9+gzip", "does not support"},
		},
		{
			name: "artifact", configType: MediaTypeWasmConfig,
			config: `{"created":"1970-01-01T00:00:00Z","architecture":"wasm","os":"wasip1","layerDigests":["sha256:a"]}`,
			layers: []ocispec.Descriptor{layer(MediaTypeWasm, "a", ""), layer(MediaTypeWasm, "b", "app.wasm")},
			args0:  "/app.wasm", want: "a", wantLayout: LayoutArtifact,
		},
		{
			name: "artifact component (wasip2)", configType: MediaTypeWasmConfig,
			config:  `{"architecture":"wasm","os":"wasip2","layerDigests":["sha256:a"]}`,
			layers:  []ocispec.Descriptor{layer(MediaTypeWasm, "a", "")},
			wantErr: errdefs.IsInvalidArgument, errHas: []string{img, "sha256:a", "WASI preview 2"},
		},
		{
			name: "artifact with a wrong layer type", configType: MediaTypeWasmConfig,
			config:  `{"architecture":"wasm","os":"wasip1"}`,
			layers:  []ocispec.Descriptor{layer(ocispec.MediaTypeImageLayerGzip, "t", "")},
			wantErr: errdefs.IsInvalidArgument, errHas: []string{img, "sha256:t", "layer 0"},
		},
		{
			name: "artifact with no layer", configType: MediaTypeWasmConfig,
			config:  `{"architecture":"wasm","os":"wasip1"}`,
			wantErr: IsNoWasmLayer,
		},
		{
			name: "artifact wrong architecture", configType: MediaTypeWasmConfig,
			config:  `{"architecture":"amd64","os":"wasip1"}`,
			layers:  []ocispec.Descriptor{layer(MediaTypeWasm, "a", "")},
			wantErr: errdefs.IsInvalidArgument, errHas: []string{"architecture"},
		},
		{
			name: "unknown config type", configType: "application/vnd.fermyon.spin.application.v1+config", config: `{}`,
			layers:  []ocispec.Descriptor{layer(MediaTypeWasmContentLayer, "a", "")},
			wantErr: errdefs.IsInvalidArgument, errHas: []string{img, "application/vnd.fermyon.spin.application.v1+config", "not supported"},
		},
		{
			name: "bad config json", configType: ocispec.MediaTypeImageConfig, config: `{`,
			wantErr: errdefs.IsInvalidArgument, errHas: []string{img},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := ocispec.Manifest{
				MediaType: ocispec.MediaTypeImageManifest,
				Config:    ocispec.Descriptor{MediaType: tc.configType, Digest: "sha256:cfg"},
				Layers:    tc.layers,
			}
			got, err := ModuleLayer(img, m, []byte(tc.config), tc.args0)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("ModuleLayer = %+v, want an error", got)
				}
				if !tc.wantErr(err) {
					t.Errorf("error %q has the wrong kind", err)
				}
				for _, s := range tc.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ModuleLayer: %v", err)
			}
			if got.Layer.Digest.Encoded() != tc.want || got.Layout != tc.wantLayout {
				t.Errorf("ModuleLayer = %s %s, want %s %s", got.Layout, got.Layer.Digest, tc.wantLayout, tc.want)
			}
		})
	}
}

func TestNoWasmLayerIsNotFound(t *testing.T) {
	if !errdefs.IsNotFound(ErrNoWasmLayer) {
		t.Fatal("ErrNoWasmLayer must be an errdefs.ErrNotFound")
	}
}

func TestCheckHeader(t *testing.T) {
	cases := []struct {
		name    string
		head    string
		wantErr string
	}{
		{"core module", "\x00asm\x01\x00\x00\x00", ""},
		{"component", "\x00asm\x0d\x00\x01\x00", "WebAssembly component (WASI preview 2); this shim runs WASI preview 1 core modules"},
		{"pre-release component", "\x00asm\x0a\x00\x01\x00", "WebAssembly component"},
		{"unknown version", "\x00asm\x02\x00\x00\x00", "version 2"},
		{"not wasm", "#!/bin/sh", "not a WebAssembly module"},
		{"short", "\x00asm", "not a WebAssembly module"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckHeader("layer sha256:x of image y", []byte(tc.head))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckHeader: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "layer sha256:x of image y") {
				t.Fatalf("CheckHeader error %v, want one containing %q and the name", err, tc.wantErr)
			}
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("error %q is not InvalidArgument", err)
			}
		})
	}
}
