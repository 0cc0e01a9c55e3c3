package shim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	contentapi "github.com/containerd/containerd/api/services/content/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/nodedir"
	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// imageTimeout bounds everything the shim asks containerd about one container's image, the copy
// of the module included.
const imageTimeout = 60 * time.Second

// maxJSONBlob bounds the manifests, indexes and configs read from the content store.
const maxJSONBlob = 4 << 20

// imageModules finds modules in the images of containers, through containerd's GRPC API (the
// containers, images and content services), and keeps them in a node-wide directory named by
// digest. Only the API's generated clients are used: containerd's client package would add
// modules this project does not depend on.
type imageModules struct {
	// address is containerd's GRPC socket (the shim's -address); empty disables image lookups.
	address   string
	namespace string
	// dir is engine.ModulesDir: modules are dir/sha256/<hex>.wasm.
	dir string
	// maxBytes bounds the total size of the modules in dir (engine.ModulesMaxBytes); 0: unbounded.
	maxBytes int64
}

// newImageModules returns the image lookups of a shim, with the modules directory and its bound
// from the node's settings.
func newImageModules(address, namespace string, node settings) *imageModules {
	return &imageModules{address: address, namespace: namespace, dir: node.ModulesDir, maxBytes: node.ModulesMaxBytes}
}

// module returns the module of container id from its image: a wasm layer (runwasi style) or the
// layer 0 of a CNCF Wasm artifact, copied out of the content store into m.dir (reused when there).
// GuestPath is args0 as given. An image without any wasm layer gives an error wrapping
// oci.ErrNoWasmLayer.
//
// The module's file is held until release is called (see store): call it once the runner has
// read the module.
func (m *imageModules) module(ctx context.Context, id, args0 string) (_ oci.Module, release func(), _ error) {
	if m == nil || m.address == "" {
		return oci.Module{}, nil, fmt.Errorf("containerd's address is unknown, the image cannot be read: %w", oci.ErrNoWasmLayer)
	}
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(ctx, m.namespace), imageTimeout)
	defer cancel()
	target := m.address
	if !strings.Contains(target, "://") {
		target = "unix://" + target
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return oci.Module{}, nil, fmt.Errorf("connect to containerd at %s: %w", m.address, err)
	}
	defer conn.Close()

	c, err := containersapi.NewContainersClient(conn).Get(ctx, &containersapi.GetContainerRequest{ID: id})
	if err != nil {
		return oci.Module{}, nil, fmt.Errorf("container %s: %w", id, errgrpc.ToNative(err))
	}
	name := c.GetContainer().GetImage()
	if name == "" {
		return oci.Module{}, nil, fmt.Errorf("container %s has no image: %w", id, oci.ErrNoWasmLayer)
	}
	img, err := imagesapi.NewImagesClient(conn).Get(ctx, &imagesapi.GetImageRequest{Name: name})
	if err != nil {
		return oci.Module{}, nil, fmt.Errorf("image %s of container %s: %w", name, id, errgrpc.ToNative(err))
	}
	t := img.GetImage().GetTarget()
	store := contentStore{contentapi.NewContentClient(conn)}
	top := ocispec.Descriptor{MediaType: t.GetMediaType(), Digest: digest.Digest(t.GetDigest()), Size: t.GetSize()}
	layer, err := chooseLayer(ctx, store, name, top, args0)
	if oci.IsNoWasmLayer(err) {
		return oci.Module{}, nil, fmt.Errorf("%s (%s): %w", strings.TrimSuffix(err.Error(), ": "+oci.ErrNoWasmLayer.Error()), republishHint, oci.ErrNoWasmLayer)
	}
	if err != nil {
		return oci.Module{}, nil, err
	}
	host, release, err := m.store(ctx, store, name, layer.Layer)
	if err != nil {
		return oci.Module{}, nil, err
	}
	return oci.Module{GuestPath: args0, HostPath: host}, release, nil
}

// republishHint is the fix named when neither the rootfs nor the image's layers hold the module:
// an image published by wasmimg carries it where every supported containerd unpacks it.
const republishHint = "the command must name a module the image holds (wasmimg images: their Entrypoint, /app.wasm); publish modules with `wasmimg -push REGISTRY/REPO:TAG app.wasm`, whose default (portable) layout every supported containerd pulls and unpacks for a kubelet; see docs/kubernetes.md#images"

// chooseLayer walks from an image's target (an index or a manifest) to the layer with its module.
func chooseLayer(ctx context.Context, store contentStore, name string, target ocispec.Descriptor, args0 string) (oci.ImageModule, error) {
	manifests := []ocispec.Descriptor{target}
	if oci.IsIndex(target.MediaType) {
		var idx ocispec.Index
		if err := store.readJSON(ctx, target, &idx); err != nil {
			return oci.ImageModule{}, fmt.Errorf("image %s: index %s: %w", name, target.Digest, err)
		}
		if manifests = oci.ManifestCandidates(idx); len(manifests) == 0 {
			return oci.ImageModule{}, fmt.Errorf("image %s has no manifest for architecture wasm: %w", name, oci.ErrNoWasmLayer)
		}
	} else if !oci.IsManifest(target.MediaType) {
		return oci.ImageModule{}, fmt.Errorf("image %s: target %s has media type %q, neither an index nor a manifest: %w", name, target.Digest, target.MediaType, errdefs.ErrInvalidArgument)
	}
	var firstErr error
	for _, md := range manifests {
		var mf ocispec.Manifest
		if err := store.readJSON(ctx, md, &mf); err != nil {
			if md.Digest != target.Digest && errdefs.IsNotFound(err) {
				// A manifest of the index that the node did not pull: a CRI pull fetches only
				// the node's platform (the portable layout's linux/<arch> manifest, whose
				// rootfs holds the module).
				if firstErr == nil {
					firstErr = fmt.Errorf("image %s has no wasm layer on this node (its wasm manifest %s was not pulled, only the node platform's): %w", name, md.Digest, oci.ErrNoWasmLayer)
				}
				continue
			}
			return oci.ImageModule{}, fmt.Errorf("image %s: manifest %s: %w", name, md.Digest, err)
		}
		config, err := store.read(ctx, mf.Config, maxJSONBlob)
		if err != nil {
			return oci.ImageModule{}, fmt.Errorf("image %s: config %s: %w", name, mf.Config.Digest, err)
		}
		l, err := oci.ModuleLayer(name, mf, config, args0)
		if err == nil {
			return l, nil
		}
		if !oci.IsNoWasmLayer(err) {
			return oci.ImageModule{}, err
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return oci.ImageModule{}, firstErr
}

// store makes sure the blob of layer is in m.dir and returns its path, held: no eviction removes
// the file until release is called, which the caller does once the runner has read the module. A
// module already there is reused and touched (its mtime is its last use). Otherwise the blob is
// verified against its digest while it is copied, written to a temporary file and linked into
// place (never over another file), so a file that has its final name is always complete and
// correct; then the least recently used modules beyond m.maxBytes are removed, never this one.
// Its header must say core module.
func (m *imageModules) store(ctx context.Context, store contentStore, name string, layer ocispec.Descriptor) (_ string, release func(), _ error) {
	what := fmt.Sprintf("layer %s of image %s", layer.Digest, name)
	if layer.Digest.Algorithm() != "sha256" || layer.Digest.Validate() != nil {
		return "", nil, fmt.Errorf("%s: unsupported digest: %w", what, errdefs.ErrInvalidArgument)
	}
	dir := filepath.Join(m.dir, "sha256")
	if err := nodedir.PrivateDir(m.dir); err != nil {
		return "", nil, fmt.Errorf("modules directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, fmt.Errorf("modules directory: %w", err)
	}
	final := filepath.Join(dir, layer.Digest.Encoded()+".wasm")
	// Each round returns, or found that the file went away as this Create opened it (evicted) or
	// that another Create linked it first; both are rare, and the next round settles them. The
	// rounds end with ctx (imageTimeout).
	for ctx.Err() == nil {
		f, err := holdModule(ctx, final)
		if err != nil {
			return "", nil, fmt.Errorf("%s: %w", what, err)
		}
		if f != nil {
			head := make([]byte, 8)
			if _, err := f.ReadAt(head, 0); err == nil {
				if err := oci.CheckHeader(what, head); err != nil {
					f.Close()
					return "", nil, err
				}
				touchModule(final)
				return final, func() { f.Close() }, nil
			}
			// Shorter than a header: not a copy of this shim's, which are verified and complete.
			_ = os.Remove(final)
			f.Close()
		}
		held, err := m.copyModule(ctx, store, what, layer, dir, final)
		if errors.Is(err, fs.ErrExist) {
			continue // another Create linked it first: use that one
		}
		if err != nil {
			return "", nil, err
		}
		if n, freed := evictModules(dir, m.maxBytes, filepath.Base(final)); n > 0 {
			log.G(ctx).WithFields(log.Fields{"evicted": n, "evictedBytes": freed, "maxBytes": m.maxBytes, "dir": m.dir}).
				Info("modules directory: removed least recently used modules")
		}
		return final, func() { held.Close() }, nil
	}
	return "", nil, fmt.Errorf("%s: copy to %s: %w", what, final, ctx.Err())
}

// copyModule copies the blob of layer into dir under a temporary name, verifies it and links it to
// final. It returns the copy's open file, which holds a shared flock on it from its creation (so
// no eviction removes a copy in progress, or the module before its Create has read it). An error
// wrapping fs.ErrExist means final appeared meanwhile; the copy is then discarded.
func (m *imageModules) copyModule(ctx context.Context, store contentStore, what string, layer ocispec.Descriptor, dir, final string) (_ *os.File, retErr error) {
	tmp, err := os.CreateTemp(dir, moduleTmpPrefix+"*.wasm")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer func() {
		// Linked or not, the temporary name goes; a linked copy stays open, for its flock.
		_ = os.Remove(tmp.Name())
		if retErr != nil {
			tmp.Close()
		}
	}()
	if err := syscall.Flock(int(tmp.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return nil, fmt.Errorf("%s: lock %s: %w", what, tmp.Name(), err)
	}
	h := sha256.New()
	n, err := store.copy(ctx, layer, io.MultiWriter(tmp, h))
	if err != nil {
		return nil, fmt.Errorf("%s: read from containerd's content store: %w", what, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != layer.Digest.String() || (layer.Size > 0 && n != layer.Size) {
		return nil, fmt.Errorf("%s: content store returned %d bytes with digest %s: %w", what, n, got, errdefs.ErrDataLoss)
	}
	head := make([]byte, 8)
	if _, err := tmp.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := oci.CheckHeader(what, head); err != nil {
		return nil, err
	}
	if err := tmp.Chmod(0o600); err != nil {
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		return nil, err
	}
	// A link, unlike a rename, never replaces a file another Create may be holding.
	if err := os.Link(tmp.Name(), final); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return tmp, nil
}

// contentStore reads blobs through containerd's content service.
type contentStore struct {
	c contentapi.ContentClient
}

// copy streams the blob of desc to w and returns how many bytes it wrote.
func (s contentStore) copy(ctx context.Context, desc ocispec.Descriptor, w io.Writer) (int64, error) {
	stream, err := s.c.Read(ctx, &contentapi.ReadContentRequest{Digest: desc.Digest.String()})
	if err != nil {
		return 0, errgrpc.ToNative(err)
	}
	var n int64
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, errgrpc.ToNative(err)
		}
		if resp.Offset != n {
			return n, fmt.Errorf("content store sent offset %d, want %d: %w", resp.Offset, n, errdefs.ErrDataLoss)
		}
		k, err := w.Write(resp.Data)
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
}

// limitedBuffer is a buffer that refuses to grow past max bytes.
type limitedBuffer struct {
	data []byte
	max  int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if len(b.data)+len(p) > b.max {
		return 0, fmt.Errorf("blob larger than %d bytes: %w", b.max, errdefs.ErrInvalidArgument)
	}
	b.data = append(b.data, p...)
	return len(p), nil
}

// read returns the blob of desc, at most max bytes, verified against its digest.
func (s contentStore) read(ctx context.Context, desc ocispec.Descriptor, max int) ([]byte, error) {
	if desc.Size > int64(max) {
		return nil, fmt.Errorf("blob %s of %d bytes is larger than %d: %w", desc.Digest, desc.Size, max, errdefs.ErrInvalidArgument)
	}
	buf := &limitedBuffer{max: max}
	if _, err := s.copy(ctx, desc, buf); err != nil {
		return nil, err
	}
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("blob %s: %w: %w", desc.Digest, err, errdefs.ErrInvalidArgument)
	}
	if got := desc.Digest.Algorithm().FromBytes(buf.data); got != desc.Digest {
		return nil, fmt.Errorf("blob %s has digest %s: %w", desc.Digest, got, errdefs.ErrDataLoss)
	}
	return buf.data, nil
}

func (s contentStore) readJSON(ctx context.Context, desc ocispec.Descriptor, v any) error {
	data, err := s.read(ctx, desc, maxJSONBlob)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s: %v: %w", desc.Digest, err, errdefs.ErrInvalidArgument)
	}
	return nil
}
