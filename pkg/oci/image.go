package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of wasm images (see docs/images.md).
const (
	// MediaTypeWasm is the layer of the CNCF Wasm OCI artifact, also used by runwasi-style images.
	MediaTypeWasm = "application/wasm"
	// MediaTypeWasmComponentLayer is a WebAssembly component (WASI preview 2) layer.
	MediaTypeWasmComponentLayer = "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm"
	// MediaTypeWasmContentLayer is the wasm layer of wasm-to-oci and Spin style images.
	MediaTypeWasmContentLayer = "application/vnd.wasm.content.layer.v1+wasm"
	// MediaTypeWasmConfig is the config of the CNCF Wasm OCI artifact.
	MediaTypeWasmConfig = "application/vnd.wasm.config.v0+json"

	mediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerIndex    = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerConfig   = "application/vnd.docker.container.image.v1+json"
)

// WasmArchitecture is the architecture of every wasm image.
const WasmArchitecture = "wasm"

// ImageLayout is how an image carries its module.
type ImageLayout string

const (
	// LayoutRootfs: the module is a file in the image's tar layers (docker buildx wasi/wasm style).
	LayoutRootfs ImageLayout = "rootfs"
	// LayoutWasmLayers: a standard image config with architecture wasm, the module in a layer
	// of a wasm media type (runwasi style).
	LayoutWasmLayers ImageLayout = "wasm-layers"
	// LayoutArtifact: the CNCF Wasm OCI artifact (config application/vnd.wasm.config.v0+json,
	// layer 0 the module).
	LayoutArtifact ImageLayout = "artifact"
)

// IsIndex reports whether mediaType is an image index (OCI or Docker manifest list).
func IsIndex(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageIndex || mediaType == mediaTypeDockerIndex
}

// IsManifest reports whether mediaType is an image manifest (OCI or Docker schema 2).
func IsManifest(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageManifest || mediaType == mediaTypeDockerManifest
}

// isWasmLayer reports whether mediaType is a layer this shim can take a module from (a component
// layer counts: it gets a clear error once chosen).
func isWasmLayer(mediaType string) bool {
	switch mediaType {
	case MediaTypeWasm, MediaTypeWasmContentLayer, MediaTypeWasmComponentLayer:
		return true
	}
	return false
}

// ManifestCandidates returns the manifests of an index that may hold a wasm module, best first:
// those whose platform is architecture wasm (os wasip1, then wasi, then any other os), then those
// without a platform (their config tells). Manifests for other platforms (attestations included)
// are left out.
func ManifestCandidates(idx ocispec.Index) []ocispec.Descriptor {
	var byRank [4][]ocispec.Descriptor
	for _, d := range idx.Manifests {
		if !IsManifest(d.MediaType) {
			continue
		}
		switch {
		case d.Platform == nil:
			byRank[3] = append(byRank[3], d)
		case d.Platform.Architecture != WasmArchitecture:
		case d.Platform.OS == "wasip1":
			byRank[0] = append(byRank[0], d)
		case d.Platform.OS == "wasi":
			byRank[1] = append(byRank[1], d)
		default:
			byRank[2] = append(byRank[2], d)
		}
	}
	var out []ocispec.Descriptor
	for _, r := range byRank {
		out = append(out, r...)
	}
	return out
}

// ErrNoWasmLayer is wrapped by ModuleLayer's error for an image that has no module outside its
// rootfs: not a wasm image, or no layer of a wasm media type. It is an errdefs.ErrNotFound.
var ErrNoWasmLayer = fmt.Errorf("no wasm layer: %w", errdefs.ErrNotFound)

// wasmConfig is the config of the CNCF Wasm OCI artifact (the fields this shim reads).
type wasmConfig struct {
	Architecture string   `json:"architecture"`
	OS           string   `json:"os"`
	LayerDigests []string `json:"layerDigests"`
}

// ImageModule is the layer a module is taken from.
type ImageModule struct {
	Layout ImageLayout
	Layer  ocispec.Descriptor
}

// ModuleLayer chooses the layer that holds the module of image (its name, for messages) from its
// manifest and the raw config blob:
//
//   - CNCF Wasm artifact (config MediaTypeWasmConfig): architecture must be wasm and os wasip1
//     (wasip2 is a component); layer 0 is the module and must be application/wasm.
//   - image config (OCI or Docker) with architecture wasm: the layers of a wasm media type; the one
//     whose org.opencontainers.image.title annotation equals the base name of args0 if any, else the
//     first.
//
// An image that is not wasm, or has no wasm layer, gives an error wrapping ErrNoWasmLayer (and so
// errdefs.ErrNotFound); a component layer, a component artifact or a config this shim does not
// understand an errdefs.ErrInvalidArgument. Errors name the image and the layer.
func ModuleLayer(image string, m ocispec.Manifest, config []byte, args0 string) (ImageModule, error) {
	switch m.Config.MediaType {
	case MediaTypeWasmConfig:
		var c wasmConfig
		if err := json.Unmarshal(config, &c); err != nil {
			return ImageModule{}, fmt.Errorf("image %s: decode wasm config %s: %v: %w", image, m.Config.Digest, err, errdefs.ErrInvalidArgument)
		}
		if c.Architecture != WasmArchitecture {
			return ImageModule{}, fmt.Errorf("image %s: wasm artifact config has architecture %q, want %q: %w", image, c.Architecture, WasmArchitecture, errdefs.ErrInvalidArgument)
		}
		if len(m.Layers) == 0 {
			return ImageModule{}, fmt.Errorf("image %s: wasm artifact has no layer: %w", image, ErrNoWasmLayer)
		}
		l := m.Layers[0]
		if c.OS == "wasip2" || l.MediaType == MediaTypeWasmComponentLayer {
			return ImageModule{}, ComponentError(fmt.Sprintf("image %s: layer %s", image, l.Digest))
		}
		if c.OS != "wasip1" && c.OS != "wasi" {
			return ImageModule{}, fmt.Errorf("image %s: wasm artifact has os %q; this shim runs wasip1 modules: %w", image, c.OS, errdefs.ErrInvalidArgument)
		}
		if l.MediaType != MediaTypeWasm {
			return ImageModule{}, fmt.Errorf("image %s: layer 0 (%s) of the wasm artifact has media type %q, want %q: %w", image, l.Digest, l.MediaType, MediaTypeWasm, errdefs.ErrInvalidArgument)
		}
		return ImageModule{Layout: LayoutArtifact, Layer: l}, nil
	case ocispec.MediaTypeImageConfig, mediaTypeDockerConfig:
		var c ocispec.Image
		if err := json.Unmarshal(config, &c); err != nil {
			return ImageModule{}, fmt.Errorf("image %s: decode image config %s: %v: %w", image, m.Config.Digest, err, errdefs.ErrInvalidArgument)
		}
		var wasm []ocispec.Descriptor
		for _, l := range m.Layers {
			if isWasmLayer(l.MediaType) {
				wasm = append(wasm, l)
			}
		}
		if c.Architecture != WasmArchitecture {
			return ImageModule{}, fmt.Errorf("image %s has architecture %q, not %q: %w", image, c.Architecture, WasmArchitecture, ErrNoWasmLayer)
		}
		if len(wasm) == 0 {
			for _, l := range m.Layers {
				if strings.Contains(l.MediaType, "wasm") {
					return ImageModule{}, fmt.Errorf("image %s: layer %s has media type %q, which this shim does not support (it reads %s, %s and %s): %w",
						image, l.Digest, l.MediaType, MediaTypeWasm, MediaTypeWasmContentLayer, MediaTypeWasmComponentLayer, errdefs.ErrInvalidArgument)
				}
			}
			return ImageModule{}, fmt.Errorf("image %s has no layer of a wasm media type: %w", image, ErrNoWasmLayer)
		}
		l := wasm[0]
		if base := path.Base(args0); args0 != "" {
			for _, w := range wasm {
				if w.Annotations[ocispec.AnnotationTitle] == base {
					l = w
					break
				}
			}
		}
		if l.MediaType == MediaTypeWasmComponentLayer {
			return ImageModule{}, ComponentError(fmt.Sprintf("image %s: layer %s (%s)", image, l.Digest, l.MediaType))
		}
		return ImageModule{Layout: LayoutWasmLayers, Layer: l}, nil
	default:
		return ImageModule{}, fmt.Errorf("image %s: config media type %q is not supported (this shim reads %s, %s and %s): %w",
			image, m.Config.MediaType, ocispec.MediaTypeImageConfig, mediaTypeDockerConfig, MediaTypeWasmConfig, errdefs.ErrInvalidArgument)
	}
}

// ComponentError is the error for what is a WebAssembly component.
func ComponentError(what string) error {
	return fmt.Errorf("%s is a WebAssembly component (WASI preview 2); this shim runs WASI preview 1 core modules: %w", what, errdefs.ErrInvalidArgument)
}

// CheckHeader checks the first 8 bytes of a wasm binary: the \0asm magic number, then a 16-bit
// version and a 16-bit layer (little endian). Core modules are version 1, layer 0
// (01 00 00 00); components are layer 1 (0d 00 01 00 today). what names the binary in errors.
func CheckHeader(what string, head []byte) error {
	if len(head) < 8 || string(head[:4]) != string(wasmMagic) {
		return fmt.Errorf("%s is not a WebAssembly module (no \\0asm magic number at its start): %w", what, errdefs.ErrInvalidArgument)
	}
	version := uint16(head[4]) | uint16(head[5])<<8
	layer := uint16(head[6]) | uint16(head[7])<<8
	switch {
	case layer == 1:
		return ComponentError(what)
	case layer != 0 || version != 1:
		return fmt.Errorf("%s has WebAssembly binary version %d, layer %d; this shim runs version 1 core modules: %w", what, version, layer, errdefs.ErrInvalidArgument)
	}
	return nil
}

// IsNoWasmLayer reports whether err says an image has no module outside its rootfs.
func IsNoWasmLayer(err error) bool { return errors.Is(err, ErrNoWasmLayer) }
