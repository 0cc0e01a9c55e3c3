package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// OCI media types used in the generated layout.
const (
	MediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"

	// MediaTypeWasm is the module layer of the wasm-layers and artifact layouts.
	MediaTypeWasm = "application/wasm"
	// MediaTypeWasmConfig is the config of the CNCF Wasm OCI artifact.
	MediaTypeWasmConfig = "application/vnd.wasm.config.v0+json"
	// AnnotationTitle names a layer's file (the module's base name).
	AnnotationTitle = "org.opencontainers.image.title"

	// AnnotationContainerdName is read by `ctr images import`.
	AnnotationContainerdName = "io.containerd.image.name"
	// AnnotationRefName is the OCI image-layout reference name.
	AnnotationRefName = "org.opencontainers.image.ref.name"
)

// Layouts Build can write (see docs/images.md).
const (
	// LayoutPortable: an index of the wasm manifest (wasip1/wasm) and one manifest per node
	// platform (linux/amd64, linux/arm64 by default) whose config says that platform, all over
	// the same tar layer holding the files. Every supported containerd pulls it through CRI (the
	// kubelet's pull, pinned to the node's platform) and runs it with no node configuration.
	// wasmimg's default when pushing.
	LayoutPortable = "portable"
	// LayoutRootfs: a tar layer holding the files, like `docker buildx --platform wasi/wasm`.
	LayoutRootfs = "rootfs"
	// LayoutWasmLayers: a standard image config (architecture wasm) and the module as a layer of a
	// wasm media type, runwasi style. No tar layer.
	LayoutWasmLayers = "wasm-layers"
	// LayoutArtifact: the CNCF Wasm OCI artifact (config application/vnd.wasm.config.v0+json,
	// layer 0 the module).
	LayoutArtifact = "artifact"
)

// File is one file to place in the image layer.
type File struct {
	Src  string // path on the host
	Dest string // absolute path inside the image; default "/" + base(Src)
}

// Options describes the image Build writes.
type Options struct {
	Name       string   // image reference, e.g. docker.io/library/x:latest
	Arch       string   // default "wasm"
	OS         string   // default "wasip1"
	Entrypoint []string // default: the first file's Dest
	Cmd        []string
	Env        []string // KEY=VALUE
	Files      []File
	// Layout is LayoutRootfs (default), LayoutPortable, LayoutWasmLayers or LayoutArtifact. The
	// last two take exactly one file, the module.
	Layout string
	// Platforms are the node platforms (OS/ARCH[/VARIANT]) of LayoutPortable; default
	// DefaultPlatforms.
	Platforms []string
	// Index wraps the single manifest of the other layouts in an index that lists it under the
	// wasm platform, as `docker buildx --platform wasi/wasm` publishes.
	Index bool
	// LayerMediaType is the module layer's media type in LayoutWasmLayers (default MediaTypeWasm).
	LayerMediaType string
	// CharDevices are character device nodes to place in the rootfs layer (mode 0666, root-owned),
	// for tests of what a guest may open: a runtime must refuse those its device rules deny.
	CharDevices []CharDevice
}

// CharDevice is a character device node in the image layer.
type CharDevice struct {
	Dest         string // absolute path inside the image
	Major, Minor int64
}

// ParseCharDevice parses a /DEST=MAJOR:MINOR command-line argument.
func ParseCharDevice(arg string) (CharDevice, error) {
	dest, nums, ok := strings.Cut(arg, "=")
	var d CharDevice
	if _, err := fmt.Sscanf(nums, "%d:%d", &d.Major, &d.Minor); !ok || err != nil || !strings.HasPrefix(dest, "/") {
		return d, fmt.Errorf("char device %q: want /DEST=MAJOR:MINOR", arg)
	}
	d.Dest = dest
	return d, nil
}

// ParseFile parses a FILE[=/DEST] command-line argument.
func ParseFile(arg string) File {
	src, dest, _ := strings.Cut(arg, "=")
	return File{Src: src, Dest: dest}
}

// Descriptor is an OCI content descriptor.
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *Platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Platform is an OCI platform.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
}

// DefaultPlatforms are the node platforms of the portable layout when none are given.
var DefaultPlatforms = []string{"linux/amd64", "linux/arm64"}

// ParsePlatform parses OS/ARCH[/VARIANT], e.g. linux/arm64 or linux/arm/v7.
func ParsePlatform(s string) (Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return Platform{}, fmt.Errorf("platform %q: want OS/ARCH[/VARIANT], e.g. linux/amd64", s)
	}
	p := Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// Index is the OCI image index (index.json).
type Index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []Descriptor `json:"manifests"`
}

// Manifest is an OCI image manifest.
type Manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        Descriptor   `json:"config"`
	Layers        []Descriptor `json:"layers"`
}

// WasmConfig is the config of the CNCF Wasm OCI artifact. Config is not part of that
// specification: it carries Entrypoint, Cmd and Env in the place an OCI image config has them,
// where containerd's CRI plugin finds them (it decodes every config as an OCI image config); tools
// that follow the CNCF specification ignore it.
type WasmConfig struct {
	Created      string   `json:"created"`
	Architecture string   `json:"architecture"`
	OS           string   `json:"os"`
	LayerDigests []string `json:"layerDigests"`
	Config       *struct {
		Entrypoint []string `json:"Entrypoint,omitempty"`
		Cmd        []string `json:"Cmd,omitempty"`
		Env        []string `json:"Env,omitempty"`
	} `json:"config,omitempty"`
}

// ImageConfig is the subset of the OCI image config that Build writes.
type ImageConfig struct {
	Created      string `json:"created"`
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
	Config       struct {
		Entrypoint []string `json:"Entrypoint,omitempty"`
		Cmd        []string `json:"Cmd,omitempty"`
		Env        []string `json:"Env,omitempty"`
	} `json:"config"`
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

var epoch = time.Unix(0, 0).UTC()

type blob struct {
	digest string
	data   []byte
}

func newBlob(data []byte) blob {
	sum := sha256.Sum256(data)
	return blob{digest: "sha256:" + hex.EncodeToString(sum[:]), data: data}
}

func (b blob) desc(mediaType string) Descriptor {
	return Descriptor{MediaType: mediaType, Digest: b.digest, Size: int64(len(b.data))}
}

// isComponent reports whether data is a WebAssembly component: the \0asm magic number, then a
// 16-bit version and a 16-bit layer field that is 1 for components (0 for core modules).
func isComponent(data []byte) bool {
	return len(data) >= 8 && string(data[:4]) == "\x00asm" && data[6] == 1 && data[7] == 0
}

// Build writes a deterministic OCI image-layout tarball for opts to w (see Assemble and
// Image.WriteLayout).
func Build(w io.Writer, opts Options) error {
	img, err := Assemble(opts)
	if err != nil {
		return err
	}
	return img.WriteLayout(w)
}

// Image is an assembled image: its top-level manifest (or index, for the portable layout and
// -index) and every blob it references. Nothing is written yet: WriteLayout writes it as an OCI
// image-layout tarball, Push sends it to a registry.
type Image struct {
	Name string
	// Top is the manifest or index that the image's name points to.
	Top     blob
	TopType string
	// TopPlatform is Top's platform when Top is a manifest (recorded in the layout's index.json).
	TopPlatform *Platform
	// Manifests are the manifests Top lists when it is an index.
	Manifests []blob
	// Blobs are the configs and layers, with their media types.
	Blobs []typedBlob
}

type typedBlob struct {
	blob
	mediaType string
}

// Assemble builds the image opts describe, deterministically (fixed timestamps, sorted entries).
// Its steps: check the options, read the files, build the layers and manifests of the layout, then
// wrap them in an index when the layout or -index asks for one.
func Assemble(opts Options) (*Image, error) {
	if err := checkOptions(&opts); err != nil {
		return nil, err
	}
	files, order, err := readFiles(opts.Files)
	if err != nil {
		return nil, err
	}
	entrypoint := opts.Entrypoint
	if len(entrypoint) == 0 {
		entrypoint = []string{"/" + order[0]}
	}
	a := &assembler{opts: opts, img: &Image{Name: opts.Name}, wasmPlatform: Platform{Architecture: opts.Arch, OS: opts.OS}}
	a.cfg.Created = epoch.Format(time.RFC3339)
	a.cfg.Config.Entrypoint, a.cfg.Config.Cmd, a.cfg.Config.Env = entrypoint, opts.Cmd, opts.Env
	a.cfg.RootFS.Type = "layers"
	a.cfg.RootFS.DiffIDs = []string{}

	var (
		top     blob
		indexed []Descriptor // the manifests of an index, with their platforms
	)
	switch opts.Layout {
	case "", LayoutRootfs, LayoutPortable:
		top, indexed, err = a.tarLayout(files)
	case LayoutWasmLayers, LayoutArtifact:
		top, err = a.wasmLayout(files, order)
	default:
		err = fmt.Errorf("unknown layout %q: want %s, %s, %s or %s", opts.Layout, LayoutPortable, LayoutRootfs, LayoutWasmLayers, LayoutArtifact)
	}
	if err != nil {
		return nil, err
	}
	return a.finish(top, indexed)
}

// checkOptions fills in the default platform (wasip1/wasm) and refuses options that contradict
// each other or the layout.
func checkOptions(opts *Options) error {
	if opts.Name == "" {
		return errors.New("image name is required")
	}
	if len(opts.Files) == 0 {
		return errors.New("at least one file is required")
	}
	if opts.Arch == "" {
		opts.Arch = "wasm"
	}
	if opts.OS == "" {
		opts.OS = "wasip1"
	}
	for _, e := range opts.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return fmt.Errorf("bad env %q: want KEY=VALUE", e)
		}
	}
	if len(opts.Platforms) > 0 && opts.Layout != LayoutPortable {
		return fmt.Errorf("node platforms (-platform) are for the %s layout, not %q", LayoutPortable, opts.Layout)
	}
	if opts.Index && opts.Layout == LayoutPortable {
		return fmt.Errorf("the %s layout is an index already: drop -index", LayoutPortable)
	}
	return nil
}

// readFiles reads each file into a map from its cleaned destination (no leading "/") to its
// content, and returns the destinations in the order given. A component (WASI preview 2) is
// refused: the shim would refuse the image.
func readFiles(list []File) (files map[string][]byte, order []string, err error) {
	files = map[string][]byte{}
	for _, f := range list {
		dest := f.Dest
		if dest == "" {
			dest = path.Base(f.Src)
		}
		dest = strings.TrimPrefix(path.Clean("/"+dest), "/")
		if dest == "" {
			return nil, nil, fmt.Errorf("file %q: bad destination %q", f.Src, f.Dest)
		}
		if _, dup := files[dest]; dup {
			return nil, nil, fmt.Errorf("file %q: duplicate destination /%s", f.Src, dest)
		}
		data, err := os.ReadFile(f.Src)
		if err != nil {
			return nil, nil, fmt.Errorf("file %q: %w", f.Src, err)
		}
		if isComponent(data) {
			return nil, nil, fmt.Errorf("file %q is a WebAssembly component (WASI preview 2): containerd-shim-wazero-v1 runs WASI preview 1 core modules only, so it would refuse this image; build the module for wasip1 (GOOS=wasip1, clang --target=wasm32-wasi, cargo --target wasm32-wasip1)", f.Src)
		}
		files[dest] = data
		order = append(order, dest)
	}
	return files, order, nil
}

// assembler holds what the layout steps of Assemble share: the image being built, its image
// config and the layers the next manifest lists.
type assembler struct {
	opts         Options
	img          *Image
	cfg          ImageConfig
	layers       []Descriptor
	wasmPlatform Platform
}

// manifest adds config (of media type configType) to the image's blobs and returns a manifest of
// it over a.layers.
func (a *assembler) manifest(config any, configType string) (blob, error) {
	c, err := jsonBlob(config)
	if err != nil {
		return blob{}, err
	}
	a.img.Blobs = append(a.img.Blobs, typedBlob{c, configType})
	return jsonBlob(Manifest{SchemaVersion: 2, MediaType: MediaTypeManifest, Config: c.desc(configType), Layers: a.layers})
}

// imageConfig is the image config for platform p.
func (a *assembler) imageConfig(p Platform) ImageConfig {
	c := a.cfg
	c.Architecture, c.OS, c.Variant = p.Architecture, p.OS, p.Variant
	return c
}

// tarLayout builds the rootfs layout (one gzipped tar layer holding the files, one wasm
// manifest) and, for the portable layout, the index entries over that same layer: the wasm
// manifest first, then one per node platform.
func (a *assembler) tarLayout(files map[string][]byte) (top blob, indexed []Descriptor, err error) {
	tarData, err := layerTar(files, a.opts.CharDevices)
	if err != nil {
		return blob{}, nil, err
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz) // header ModTime stays zero: deterministic
	if _, err := zw.Write(tarData); err != nil {
		return blob{}, nil, err
	}
	if err := zw.Close(); err != nil {
		return blob{}, nil, err
	}
	layer := newBlob(gz.Bytes())
	a.cfg.RootFS.DiffIDs = []string{newBlob(tarData).digest}
	a.layers = []Descriptor{layer.desc(MediaTypeLayer)}
	a.img.Blobs = append(a.img.Blobs, typedBlob{layer, MediaTypeLayer})
	if top, err = a.manifest(a.imageConfig(a.wasmPlatform), MediaTypeConfig); err != nil {
		return blob{}, nil, err
	}
	if a.opts.Layout != LayoutPortable {
		return top, nil, nil
	}
	// The wasm manifest first, then one per node platform whose config says that platform,
	// all over the same layer: a CRI pull pinned to the node's platform finds its manifest,
	// and its unpacker (which checks the config's platform) unpacks it.
	platforms := a.opts.Platforms
	if len(platforms) == 0 {
		platforms = DefaultPlatforms
	}
	indexed = []Descriptor{top.desc(MediaTypeManifest)}
	indexed[0].Platform = &a.wasmPlatform
	seen := map[Platform]bool{a.wasmPlatform: true}
	for _, s := range platforms {
		p, err := ParsePlatform(s)
		if err != nil {
			return blob{}, nil, err
		}
		if seen[p] {
			return blob{}, nil, fmt.Errorf("platform %s is given twice", s)
		}
		seen[p] = true
		m, err := a.manifest(a.imageConfig(p), MediaTypeConfig)
		if err != nil {
			return blob{}, nil, err
		}
		d := m.desc(MediaTypeManifest)
		d.Platform = &p
		indexed = append(indexed, d)
		a.img.Manifests = append(a.img.Manifests, m)
	}
	a.img.Manifests = append([]blob{top}, a.img.Manifests...)
	return top, indexed, nil
}

// wasmLayout builds the wasm-layers layout (the module as the manifest's one layer, with an OCI
// image config) or the artifact layout (the module under a wasm config, as runwasi's OCI
// artifacts): exactly one file, a core module.
func (a *assembler) wasmLayout(files map[string][]byte, order []string) (blob, error) {
	if len(order) != 1 {
		return blob{}, fmt.Errorf("layout %s takes exactly one file, the module (got %d)", a.opts.Layout, len(order))
	}
	data := files[order[0]]
	if len(data) < 4 || string(data[:4]) != "\x00asm" {
		return blob{}, fmt.Errorf("file %q is not a WebAssembly module (no \\0asm magic number)", a.opts.Files[0].Src)
	}
	module := newBlob(data)
	d := module.desc(MediaTypeWasm)
	d.Annotations = map[string]string{AnnotationTitle: path.Base(order[0])}
	a.img.Blobs = append(a.img.Blobs, typedBlob{module, MediaTypeWasm})
	if a.opts.Layout == LayoutWasmLayers {
		if a.opts.LayerMediaType != "" {
			d.MediaType = a.opts.LayerMediaType
			a.img.Blobs[len(a.img.Blobs)-1].mediaType = d.MediaType
		}
		// No tar layer: diff_ids stays empty, and containerd unpacks the image to an
		// empty snapshot (it skips layers that are not tar media types).
		a.layers = []Descriptor{d}
		return a.manifest(a.imageConfig(a.wasmPlatform), MediaTypeConfig)
	}
	a.layers = []Descriptor{d}
	wc := WasmConfig{Created: a.cfg.Created, Architecture: a.opts.Arch, OS: a.opts.OS, LayerDigests: []string{d.Digest}}
	wc.Config = &a.cfg.Config
	return a.manifest(wc, MediaTypeWasmConfig)
}

// finish sets the image's top: the manifest top itself, or an index of indexed (the portable
// layout's, or with -index a docker buildx style index listing the one wasm manifest).
func (a *assembler) finish(top blob, indexed []Descriptor) (*Image, error) {
	img := a.img
	if a.opts.Index && indexed == nil {
		d := top.desc(MediaTypeManifest)
		d.Platform = &a.wasmPlatform
		indexed = []Descriptor{d}
		img.Manifests = []blob{top}
	}
	if indexed == nil {
		img.Top, img.TopType, img.TopPlatform = top, MediaTypeManifest, &a.wasmPlatform
		return img, nil
	}
	index, err := jsonBlob(Index{SchemaVersion: 2, MediaType: MediaTypeIndex, Manifests: indexed})
	if err != nil {
		return nil, err
	}
	img.Top, img.TopType = index, MediaTypeIndex
	return img, nil
}

// WriteLayout writes the image as an OCI image-layout tarball for `ctr images import`: its
// index.json lists the image's top manifest (or index) under the image's name.
func (img *Image) WriteLayout(w io.Writer) error {
	top := img.Top.desc(img.TopType)
	top.Platform = img.TopPlatform
	top.Annotations = map[string]string{
		AnnotationContainerdName: img.Name,
		AnnotationRefName:        img.Name,
	}
	index, err := json.Marshal(Index{SchemaVersion: 2, MediaType: MediaTypeIndex, Manifests: []Descriptor{top}})
	if err != nil {
		return err
	}

	tw := tar.NewWriter(w)
	add := func(name string, data []byte) error {
		return writeEntry(tw, name, data, 0o644)
	}
	if err := add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := add("index.json", index); err != nil {
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := writeEntry(tw, d, nil, 0o755); err != nil {
			return err
		}
	}
	blobs := map[string]blob{img.Top.digest: img.Top}
	for _, b := range img.Manifests {
		blobs[b.digest] = b
	}
	for _, b := range img.Blobs {
		blobs[b.digest] = b.blob
	}
	digests := make([]string, 0, len(blobs))
	for d := range blobs {
		digests = append(digests, d)
	}
	sort.Strings(digests)
	for _, d := range digests {
		if err := add("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), blobs[d].data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// layerTar builds the uncompressed layer: sorted entries, parent dirs
// included, files mode 0755, root-owned, mtime 0.
func layerTar(files map[string][]byte, devices []CharDevice) ([]byte, error) {
	isDir := map[string]bool{}
	devs := map[string]CharDevice{}
	for dest := range files {
		isDir[dest] = false
	}
	for _, d := range devices {
		dest := strings.TrimPrefix(path.Clean(d.Dest), "/")
		if _, dup := isDir[dest]; dup {
			return nil, fmt.Errorf("destination /%s is given twice", dest)
		}
		isDir[dest], devs[dest] = false, d
	}
	for dest := range isDir {
		for d := path.Dir(dest); d != "."; d = path.Dir(d) {
			if dir, ok := isDir[d]; ok && !dir {
				return nil, fmt.Errorf("destination /%s is both a file and a directory", d)
			}
			isDir[d] = true
		}
	}
	names := make([]string, 0, len(isDir))
	for n := range isDir {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		var err error
		if d, ok := devs[n]; ok {
			err = tw.WriteHeader(&tar.Header{Name: n, Mode: 0o666, ModTime: epoch, Typeflag: tar.TypeChar, Devmajor: d.Major, Devminor: d.Minor, Format: tar.FormatPAX})
		} else if isDir[n] {
			err = writeEntry(tw, n+"/", nil, 0o755)
		} else {
			err = writeEntry(tw, n, files[n], 0o755)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeEntry writes a root-owned entry with mtime 0; names ending in "/" are directories.
func writeEntry(tw *tar.Writer, name string, data []byte, mode int64) error {
	hdr := &tar.Header{Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if strings.HasSuffix(name, "/") {
		hdr.Typeflag, hdr.Size = tar.TypeDir, 0
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

func jsonBlob(v any) (blob, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return blob{}, err
	}
	return newBlob(data), nil
}
