// Package warm compiles the modules of the wasm images on a node into the shim's compilation
// cache as soon as containerd has them, so that the first container of an image on the node
// starts from the cache (a warm start) instead of compiling or interpreting its module.
//
// A Warmer watches one containerd namespace (k8s.io: what the kubelet pulls): it goes through the
// images there at its start, then through each image containerd creates or updates (its events
// service). For a wasm image it finds the module the image runs (its Entrypoint, else its Cmd,
// first argument) in the image's layers, the way the container will see it, and compiles it with
// engine.Prepare: the same compile, cache entry and bookkeeping as a runner's cold start. Images
// that are not wasm images are skipped by their manifests and configs, without reading a layer.
//
// What is warmed: commands and services (WAZERO_LISTEN) of wasm images, which runners compile
// identically. Not warmed: per-request (WAZERO_WAGI) containers, whose compile wazero keys apart.
package warm

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	contentapi "github.com/containerd/containerd/api/services/content/v1"
	eventsapi "github.com/containerd/containerd/api/services/events/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/engine"
	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// DefaultMaxModuleBytes is the biggest module a Warmer compiles by default (64 MiB, as the
// shim's background compiles).
const DefaultMaxModuleBytes = 64 << 20

// maxJSON bounds the manifests, indexes and configs a Warmer reads.
const maxJSON = 4 << 20

// Warmer compiles the modules of a namespace's wasm images into a compilation cache.
type Warmer struct {
	// Address is containerd's GRPC socket.
	Address string
	// Namespace is the containerd namespace watched; the kubelet's images are in k8s.io.
	Namespace string
	// CacheDir is the shim's compilation cache (engine.CacheDir() of the shim's environment).
	CacheDir string
	// CacheMaxBytes bounds the cache as the shim's runners do (engine.CacheMaxBytes); 0: none.
	CacheMaxBytes int64
	// MaxModuleBytes: bigger modules are not compiled; 0 means DefaultMaxModuleBytes.
	MaxModuleBytes int64
	// Report is called once per image looked at; nil: nothing.
	Report func(Result)

	// done maps the targets (manifest or index digests) already warmed to the image name they
	// were warmed as: the CRI plugin records each pull under its tag, its digest and its config
	// digest, three images with one target.
	done map[digest.Digest]string
}

// maxDone bounds Warmer.done; past it the map starts again (a target seen again is compiled
// again, which is a cache hit).
const maxDone = 4096

// Result is what a Warmer did with one image.
type Result struct {
	Image string
	// Module is the module's path in the image ("" when none was found).
	Module string
	// Digest is the module's sha256 digest ("sha256:<hex>").
	Digest string
	// CacheHit is true when the cache already held the module (nothing was compiled).
	CacheHit bool
	// Skipped says why nothing was compiled: not a wasm image, no module found, too big.
	Skipped string
	// Err is a failure (the image could not be read, the module does not compile).
	Err error
	// Duration is how long the look-up and compile took.
	Duration time.Duration
}

// String is the Result as one log line.
func (r Result) String() string {
	switch {
	case r.Err != nil:
		return fmt.Sprintf("warm %s: error: %v", r.Image, r.Err)
	case r.Skipped != "":
		return fmt.Sprintf("warm %s: skipped: %s", r.Image, r.Skipped)
	}
	what := "compiled"
	if r.CacheHit {
		what = "already in the cache"
	}
	return fmt.Sprintf("warm %s: module %s (%s) %s in %d ms", r.Image, r.Module, r.Digest, what, r.Duration.Milliseconds())
}

func (w *Warmer) report(r Result) {
	if w.Report != nil {
		w.Report(r)
	}
}

// Run warms every image of the namespace, then every image containerd creates or updates there,
// until ctx ends or the connection to containerd fails (the caller restarts it).
func (w *Warmer) Run(ctx context.Context) error {
	target := w.Address
	if !strings.Contains(target, "://") {
		target = "unix://" + target
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("connect to containerd at %s: %w", w.Address, err)
	}
	defer conn.Close()
	ctx = namespaces.WithNamespace(ctx, w.Namespace)
	// Subscribe first, so that no image created during the first pass is missed.
	sub, err := eventsapi.NewEventsClient(conn).Subscribe(ctx, &eventsapi.SubscribeRequest{
		Filters: []string{fmt.Sprintf(`namespace==%q,topic~="/images/"`, w.Namespace)},
	})
	if err != nil {
		return fmt.Errorf("subscribe to containerd's image events: %w", errgrpc.ToNative(err))
	}
	list, err := imagesapi.NewImagesClient(conn).List(ctx, &imagesapi.ListImagesRequest{})
	if err != nil {
		return fmt.Errorf("list images in namespace %s: %w", w.Namespace, errgrpc.ToNative(err))
	}
	for _, img := range list.GetImages() {
		w.report(w.WarmImage(ctx, conn, img.GetName()))
	}
	for {
		env, err := sub.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("containerd's image events: %w", errgrpc.ToNative(err))
		}
		var name string
		switch env.GetTopic() {
		case "/images/create":
			var ev apievents.ImageCreate
			if err := proto.Unmarshal(env.GetEvent().GetValue(), &ev); err == nil {
				name = ev.GetName()
			}
		case "/images/update":
			var ev apievents.ImageUpdate
			if err := proto.Unmarshal(env.GetEvent().GetValue(), &ev); err == nil {
				name = ev.GetName()
			}
		}
		if name != "" {
			w.report(w.WarmImage(ctx, conn, name))
		}
	}
}

// WarmImage compiles the module of image name into the cache; ctx carries the namespace.
func (w *Warmer) WarmImage(ctx context.Context, conn *grpc.ClientConn, name string) (r Result) {
	start := time.Now()
	r.Image = name
	defer func() { r.Duration = time.Since(start) }()
	img, err := imagesapi.NewImagesClient(conn).Get(ctx, &imagesapi.GetImageRequest{Name: name})
	if err != nil {
		r.Err = errgrpc.ToNative(err)
		return r
	}
	t := img.GetImage().GetTarget()
	cs := store{contentapi.NewContentClient(conn)}
	desc := ocispec.Descriptor{MediaType: t.GetMediaType(), Digest: digest.Digest(t.GetDigest()), Size: t.GetSize()}
	if as, ok := w.done[desc.Digest]; ok {
		r.Skipped = "the same image as " + as + ", warmed already"
		return r
	}
	defer func() {
		if r.Err == nil && r.Module != "" {
			if w.done == nil || len(w.done) >= maxDone {
				w.done = map[digest.Digest]string{}
			}
			w.done[desc.Digest] = name
		}
	}()
	mod, args0, skip, err := findModule(ctx, cs, desc, w.maxModule())
	switch {
	case err != nil:
		r.Err = err
		return r
	case skip != "":
		r.Skipped = skip
		return r
	}
	r.Module = args0
	r.CacheHit, r.Digest, r.Err = w.compile(ctx, name, args0, mod)
	return r
}

func (w *Warmer) maxModule() int64 {
	if w.MaxModuleBytes > 0 {
		return w.MaxModuleBytes
	}
	return DefaultMaxModuleBytes
}

// compile runs the runner's compile of module (args0 of image) into the cache.
func (w *Warmer) compile(ctx context.Context, image, args0 string, module []byte) (hit bool, moduleDigest string, _ error) {
	// Not in /tmp: the installer's image is FROM scratch and has none. The cache directory is a
	// host directory the agent writes anyway.
	tmp := filepath.Join(w.CacheDir, engine.ScratchDir)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return false, "", err
	}
	f, err := os.CreateTemp(tmp, "module-*.wasm")
	if err != nil {
		return false, "", err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(module)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, "", err
	}
	cfg := &engine.Config{
		ID:            "warm",
		Module:        oci.Module{GuestPath: args0, HostPath: f.Name()},
		MemoryPages:   oci.MaxPages,
		CacheDir:      w.CacheDir,
		CacheMaxBytes: w.CacheMaxBytes,
		ColdStart:     oci.ColdStartCompile,
	}
	p, err := engine.Prepare(ctx, cfg)
	if err != nil {
		return false, "", fmt.Errorf("module %s of image %s: %w", args0, image, err)
	}
	defer p.Runtime.Close(ctx)
	if p.CacheProblem != "" {
		return p.CacheHit, p.Digest, fmt.Errorf("module %s of image %s compiled, but the cache was not written: %s", args0, image, p.CacheProblem)
	}
	return p.CacheHit, p.Digest, nil
}

// findModule finds the module an image runs. skip is set (and err nil) for an image that is not
// a wasm image or has no module to warm.
func findModule(ctx context.Context, cs store, target ocispec.Descriptor, max int64) (module []byte, args0, skip string, err error) {
	manifests := []ocispec.Descriptor{target}
	wasm := false
	if oci.IsIndex(target.MediaType) {
		var idx ocispec.Index
		if err := cs.readJSON(ctx, target, &idx); err != nil {
			return nil, "", "", fmt.Errorf("index %s: %w", target.Digest, err)
		}
		// The manifest the node pulled (what a CRI pull unpacks: its own platform), then the
		// wasm ones, which a pull with a wasm platform fetches.
		manifests = nil
		for _, d := range idx.Manifests {
			if p := d.Platform; p != nil && p.OS == "linux" && p.Architecture == runtime.GOARCH {
				manifests = append(manifests, d)
			}
		}
		for _, d := range idx.Manifests {
			if d.Platform != nil && d.Platform.Architecture == oci.WasmArchitecture {
				manifests, wasm = append(manifests, d), true
			}
		}
		if !wasm {
			return nil, "", "not a wasm image (its index lists no */wasm platform)", nil
		}
	}
	for _, md := range manifests {
		var mf ocispec.Manifest
		if err := cs.readJSON(ctx, md, &mf); err != nil {
			if errors.Is(err, errNotPulled) {
				continue
			}
			return nil, "", "", fmt.Errorf("manifest %s: %w", md.Digest, err)
		}
		var cfg ocispec.Image
		if err := cs.readJSON(ctx, mf.Config, &cfg); err != nil {
			return nil, "", "", fmt.Errorf("config %s: %w", mf.Config.Digest, err)
		}
		if !wasm && cfg.Architecture != oci.WasmArchitecture && wasmLayer(mf) < 0 {
			return nil, "", "not a wasm image (architecture " + cfg.Architecture + ", no wasm layer)", nil
		}
		argv := append(append([]string{}, cfg.Config.Entrypoint...), cfg.Config.Cmd...)
		if len(argv) == 0 || argv[0] == "" {
			return nil, "", "the image names no module (no Entrypoint or Cmd)", nil
		}
		args0 = argv[0]
		if i := wasmLayer(mf); i >= 0 {
			module, err = cs.read(ctx, mf.Layers[i], max)
		} else {
			module, err = fileInLayers(ctx, cs, mf.Layers, args0, max)
		}
		switch {
		case errors.Is(err, errTooBig):
			return nil, args0, fmt.Sprintf("module %s is bigger than %d bytes", args0, max), nil
		case errors.Is(err, errNotFound):
			return nil, args0, fmt.Sprintf("module %s is not in the image's layers (a relative or PATH command, or another file)", args0), nil
		case err != nil:
			return nil, args0, "", fmt.Errorf("module %s: %w", args0, err)
		}
		if len(module) < 8 || string(module[:4]) != "\x00asm" {
			return nil, args0, fmt.Sprintf("%s is not a WebAssembly module", args0), nil
		}
		if module[6] == 1 && module[7] == 0 {
			return nil, args0, fmt.Sprintf("%s is a WebAssembly component, which the shim refuses", args0), nil
		}
		return module, args0, "", nil
	}
	return nil, "", "none of the image's manifests was pulled on this node", nil
}

// wasmLayer is the index of the first layer of a wasm media type (a wasm-layers image or a CNCF
// artifact), -1 when none.
func wasmLayer(mf ocispec.Manifest) int {
	for i, l := range mf.Layers {
		if l.MediaType == "application/wasm" || l.MediaType == "application/vnd.wasm.content.layer.v1+wasm" {
			return i
		}
	}
	return -1
}

var (
	errNotFound  = errors.New("not found")
	errTooBig    = errors.New("too big")
	errNotPulled = errors.New("not in the content store")
)

// fileInLayers returns the content of file p (absolute) in the image's tar layers: the last layer
// that has it wins, as in the unpacked rootfs. A whiteout of it in a later layer hides it.
func fileInLayers(ctx context.Context, cs store, layers []ocispec.Descriptor, p string, max int64) ([]byte, error) {
	want := strings.TrimPrefix(path.Clean("/"+p), "/")
	whiteout := path.Join(path.Dir(want), ".wh."+path.Base(want))
	for i := len(layers) - 1; i >= 0; i-- {
		l := layers[i]
		var gz bool
		switch l.MediaType {
		case ocispec.MediaTypeImageLayerGzip, "application/vnd.docker.image.rootfs.diff.tar.gzip":
			gz = true
		case ocispec.MediaTypeImageLayer, "application/vnd.docker.image.rootfs.diff.tar":
		default:
			continue // zstd, foreign or non-tar layers: not looked into
		}
		data, found, err := cs.fileInTar(ctx, l, gz, want, whiteout, max)
		if err != nil {
			return nil, err
		}
		if found {
			if data == nil {
				return nil, errNotFound // whited out
			}
			return data, nil
		}
	}
	return nil, errNotFound
}

// store reads blobs through containerd's content service.
type store struct{ c contentapi.ContentClient }

// read returns the blob of d, at most max bytes.
func (s store) read(ctx context.Context, d ocispec.Descriptor, max int64) ([]byte, error) {
	if d.Size > max {
		return nil, errTooBig
	}
	var buf bytes.Buffer
	if err := s.stream(ctx, d, &limited{w: &buf, n: max}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (s store) readJSON(ctx context.Context, d ocispec.Descriptor, v any) error {
	b, err := s.read(ctx, d, maxJSON)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// stream copies the blob of d to w.
func (s store) stream(ctx context.Context, d ocispec.Descriptor, w io.Writer) error {
	rc, err := s.c.Read(ctx, &contentapi.ReadContentRequest{Digest: d.Digest.String()})
	if err != nil {
		return s.native(err)
	}
	for {
		resp, err := rc.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return s.native(err)
		}
		if _, err := w.Write(resp.GetData()); err != nil {
			return err
		}
	}
}

func (s store) native(err error) error {
	err = errgrpc.ToNative(err)
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("%w: %w", errNotPulled, err)
	}
	return err
}

// fileInTar looks for want in the layer's tar: found with its data (nil data: whited out).
func (s store) fileInTar(ctx context.Context, l ocispec.Descriptor, gz bool, want, whiteout string, max int64) (data []byte, found bool, _ error) {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(s.stream(ctx, l, pw)) }()
	defer pr.Close()
	var r io.Reader = pr
	if gz {
		zr, err := gzip.NewReader(pr)
		if err != nil {
			return nil, false, fmt.Errorf("layer %s: %w", l.Digest, err)
		}
		r = zr
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("layer %s: %w", l.Digest, err)
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		switch {
		case name == whiteout:
			return nil, true, nil
		case name != want || h.Typeflag != tar.TypeReg:
			continue
		case h.Size > max:
			return nil, false, errTooBig
		}
		b, err := io.ReadAll(io.LimitReader(tr, h.Size))
		if err != nil {
			return nil, false, fmt.Errorf("layer %s: %w", l.Digest, err)
		}
		return b, true, nil
	}
}

// limited writes at most n bytes to w, then fails with errTooBig.
type limited struct {
	w io.Writer
	n int64
}

func (l *limited) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, errTooBig
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}
