package warm

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"runtime"
	"strings"
	"testing"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
)

// fakeContent is a content store of blobs by digest; only Read is used.
type fakeContent struct {
	contentapi.ContentClient
	blobs map[digest.Digest][]byte
}

type readStream struct {
	grpc.ClientStream
	data []byte
	done bool
}

func (s *readStream) Recv() (*contentapi.ReadContentResponse, error) {
	if s.done {
		return nil, io.EOF
	}
	s.done = true
	return &contentapi.ReadContentResponse{Data: s.data}, nil
}

func (f *fakeContent) Read(_ context.Context, in *contentapi.ReadContentRequest, _ ...grpc.CallOption) (contentapi.Content_ReadClient, error) {
	b, ok := f.blobs[digest.Digest(in.GetDigest())]
	if !ok {
		return nil, errgrpc.ToGRPC(errdefs.ErrNotFound)
	}
	return &readStream{data: b}, nil
}

func (f *fakeContent) add(mediaType string, b []byte) ocispec.Descriptor {
	d := digest.FromBytes(b)
	f.blobs[d] = b
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

func (f *fakeContent) addJSON(t *testing.T, mediaType string, v any) ocispec.Descriptor {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return f.add(mediaType, b)
}

// layer is a gzip tar layer of files (name -> content; "" content with a ".wh." name: whiteout).
func (f *fakeContent) layer(files ...[2]string) ocispec.Descriptor {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, fl := range files {
		tw.WriteHeader(&tar.Header{Name: fl[0], Mode: 0o755, Size: int64(len(fl[1])), Typeflag: tar.TypeReg})
		tw.Write([]byte(fl[1]))
	}
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw.Bytes())
	zw.Close()
	return f.add(ocispec.MediaTypeImageLayerGzip, gz.Bytes())
}

func (f *fakeContent) manifest(t *testing.T, os, arch string, entry []string, layers ...ocispec.Descriptor) ocispec.Descriptor {
	cfg := f.addJSON(t, ocispec.MediaTypeImageConfig, ocispec.Image{Platform: ocispec.Platform{OS: os, Architecture: arch}, Config: ocispec.ImageConfig{Entrypoint: entry}})
	m := f.addJSON(t, ocispec.MediaTypeImageManifest, ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: layers})
	m.Platform = &ocispec.Platform{OS: os, Architecture: arch}
	return m
}

func (f *fakeContent) index(t *testing.T, ms ...ocispec.Descriptor) ocispec.Descriptor {
	return f.addJSON(t, ocispec.MediaTypeImageIndex, ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: ms})
}

const module = "\x00asm\x01\x00\x00\x00"

func TestFindModule(t *testing.T) {
	f := &fakeContent{blobs: map[digest.Digest][]byte{}}
	entry := []string{"/app.wasm"}
	base := f.layer([2]string{"app.wasm", "\x00asm old"}, [2]string{"lib/x", "x"})
	top := f.layer([2]string{"./app.wasm", module})
	portableWasm := f.manifest(t, "wasip1", "wasm", entry, base, top)
	wasmLayer := f.add("application/wasm", []byte(module))
	whited := f.layer([2]string{".wh.app.wasm", ""})

	tests := []struct {
		name     string
		target   func() ocispec.Descriptor
		drop     []digest.Digest // blobs absent from the store (not pulled)
		want     string          // module content, or "" with skip
		skip     string
		wantErr  string
		maxBytes int64
	}{
		{name: "bare wasm manifest, last layer wins", target: func() ocispec.Descriptor { return portableWasm }, want: module},
		{name: "portable index, only the node's manifest pulled", target: func() ocispec.Descriptor {
			n := f.manifest(t, "linux", runtime.GOARCH, entry, base, top)
			return f.index(t, portableWasm, n)
		}, drop: []digest.Digest{portableWasm.Digest}, want: module},
		{name: "wasm layer", target: func() ocispec.Descriptor {
			return f.manifest(t, "wasip1", "wasm", entry, wasmLayer)
		}, want: module},
		{name: "whiteout hides it", target: func() ocispec.Descriptor {
			return f.manifest(t, "wasip1", "wasm", entry, top, whited)
		}, skip: "not in the image's layers"},
		{name: "native image", target: func() ocispec.Descriptor {
			return f.manifest(t, "linux", "amd64", []string{"/bin/sh"}, base)
		}, skip: "not a wasm image"},
		{name: "native index", target: func() ocispec.Descriptor {
			return f.index(t, f.manifest(t, "linux", "amd64", []string{"/bin/sh"}, base))
		}, skip: "not a wasm image"},
		{name: "no entrypoint", target: func() ocispec.Descriptor {
			return f.manifest(t, "wasip1", "wasm", nil, top)
		}, skip: "no Entrypoint or Cmd"},
		{name: "not wasm", target: func() ocispec.Descriptor {
			return f.manifest(t, "wasip1", "wasm", []string{"/lib/x"}, base)
		}, skip: "not a WebAssembly module"},
		{name: "too big", target: func() ocispec.Descriptor { return portableWasm }, maxBytes: 4, skip: "bigger than 4 bytes"},
		{name: "nothing pulled", target: func() ocispec.Descriptor {
			return f.index(t, portableWasm)
		}, drop: []digest.Digest{portableWasm.Digest}, skip: "none of the image's manifests was pulled"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target := tc.target()
			saved := map[digest.Digest][]byte{}
			for _, d := range tc.drop {
				saved[d] = f.blobs[d]
				delete(f.blobs, d)
			}
			defer func() {
				for d, b := range saved {
					f.blobs[d] = b
				}
			}()
			max := tc.maxBytes
			if max == 0 {
				max = DefaultMaxModuleBytes
			}
			mod, args0, skip, err := findModule(context.Background(), store{f}, target, max)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case tc.skip != "":
				if !strings.Contains(skip, tc.skip) {
					t.Errorf("skip %q, want %q", skip, tc.skip)
				}
			default:
				if skip != "" || string(mod) != tc.want || args0 != "/app.wasm" {
					t.Errorf("module %q args0 %q skip %q, want %q /app.wasm", mod, args0, skip, tc.want)
				}
			}
		})
	}
}
