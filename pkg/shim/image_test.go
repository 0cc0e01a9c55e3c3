package shim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// fakeContent serves blobs by digest through the content service's Read, in chunks of 3 bytes.
// Safe for concurrent reads (blobs must not change meanwhile).
type fakeContent struct {
	contentapi.ContentClient
	blobs map[string][]byte
	reads atomic.Int64
}

func (f *fakeContent) Read(ctx context.Context, r *contentapi.ReadContentRequest, _ ...grpc.CallOption) (contentapi.Content_ReadClient, error) {
	f.reads.Add(1)
	data, ok := f.blobs[r.Digest]
	if !ok {
		return nil, errdefs.ErrNotFound
	}
	return &fakeStream{data: data}, nil
}

type fakeStream struct {
	contentapi.Content_ReadClient
	data []byte
	off  int
}

func (s *fakeStream) Recv() (*contentapi.ReadContentResponse, error) {
	if s.off >= len(s.data) {
		return nil, io.EOF
	}
	n := min(3, len(s.data)-s.off)
	r := &contentapi.ReadContentResponse{Offset: int64(s.off), Data: s.data[s.off : s.off+n]}
	s.off += n
	return r, nil
}

func desc(data []byte) ocispec.Descriptor {
	sum := sha256.Sum256(data)
	return ocispec.Descriptor{MediaType: oci.MediaTypeWasm, Digest: digest.Digest("sha256:" + hex.EncodeToString(sum[:])), Size: int64(len(data))}
}

func TestStoreModule(t *testing.T) {
	module := []byte("\x00asm\x01\x00\x00\x00 core module")
	component := []byte("\x00asm\x0d\x00\x01\x00 component")
	good, comp := desc(module), desc(component)
	lying := desc(module)
	fc := &fakeContent{blobs: map[string][]byte{
		good.Digest.String():  module,
		comp.Digest.String():  component,
		lying.Digest.String(): module,
	}}
	m := &imageModules{dir: filepath.Join(t.TempDir(), "modules")}
	store := contentStore{fc}
	ctx := context.Background()

	p, release, err := m.store(ctx, store, "img", good)
	if err != nil {
		t.Fatal(err)
	}
	release()
	if want := filepath.Join(m.dir, "sha256", good.Digest.Encoded()+".wasm"); p != want {
		t.Errorf("path %s, want %s", p, want)
	}
	if got, _ := os.ReadFile(p); string(got) != string(module) {
		t.Errorf("stored %q", got)
	}
	for _, q := range []string{m.dir, filepath.Dir(p), p} {
		if fi, err := os.Stat(q); err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v (%v), want private", q, fi.Mode(), err)
		}
	}
	reads := fc.reads.Load()
	if _, release, err := m.store(ctx, store, "img", good); err != nil || fc.reads.Load() != reads {
		t.Errorf("second store: err %v, %d more reads: want the stored file reused", err, fc.reads.Load()-reads)
	} else {
		release()
	}

	if _, _, err := m.store(ctx, store, "img", comp); err == nil || !strings.Contains(err.Error(), "WebAssembly component (WASI preview 2)") || !strings.Contains(err.Error(), comp.Digest.String()) {
		t.Errorf("component: err %v", err)
	}

	// The store returns other bytes than the digest says: refused, nothing left behind.
	bad := desc([]byte("something else"))
	fc.blobs[bad.Digest.String()] = module
	if _, _, err := m.store(ctx, store, "img", bad); !errors.Is(err, errdefs.ErrDataLoss) {
		t.Errorf("digest mismatch: err %v, want data loss", err)
	}
	entries, _ := os.ReadDir(filepath.Join(m.dir, "sha256"))
	for _, e := range entries {
		if e.Name() != good.Digest.Encoded()+".wasm" {
			t.Errorf("left behind: %s", e.Name())
		}
	}

	// A modules directory others could write is refused.
	open := filepath.Join(t.TempDir(), "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	if _, _, err := (&imageModules{dir: open}).store(ctx, store, "img", good); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("world-writable dir: err %v", err)
	}
}

// fakeSource is a moduleSource with a canned answer. It counts the holds it gave and released.
type fakeSource struct {
	mod      oci.Module
	err      error
	calls    int
	released int
}

func (f *fakeSource) module(ctx context.Context, id, args0 string) (oci.Module, func(), error) {
	f.calls++
	if f.err != nil {
		return oci.Module{}, nil, f.err
	}
	return f.mod, func() { f.released++ }, nil
}

func TestRunnerConfigImageFallback(t *testing.T) {
	rootfs := t.TempDir()
	os.WriteFile(filepath.Join(rootfs, "in-rootfs.wasm"), []byte("\x00asm\x01\x00\x00\x00"), 0o644)
	spec := func(args0 string) *specs.Spec {
		return &specs.Spec{Process: &specs.Process{Args: []string{args0}, Cwd: "/"}}
	}
	ctx := context.Background()

	src := &fakeSource{mod: oci.Module{GuestPath: "/app.wasm", HostPath: "/modules/x.wasm"}}
	cfg, _, err := runnerConfig(ctx, spec("/in-rootfs.wasm"), "id", rootfs, noCache, src)
	if err != nil || src.calls != 0 || cfg.Module.HostPath != filepath.Join(rootfs, "in-rootfs.wasm") {
		t.Errorf("module in the rootfs: %+v, %v, %d image lookups: want the rootfs's file and no lookup", cfg, err, src.calls)
	}

	cfg, release, err := runnerConfig(ctx, spec("/app.wasm"), "id", rootfs, noCache, src)
	if err != nil || src.calls != 1 || cfg.Module != src.mod {
		t.Fatalf("module not in the rootfs: %+v, %v: want the image's", cfg, err)
	}
	// The image's module stays held until the caller releases it (after the runner read it).
	if src.released != 0 {
		t.Errorf("module released by runnerConfig, want it held until release")
	}
	release()
	if src.released != 1 {
		t.Errorf("release: %d releases, want 1", src.released)
	}
	// An error after the module was found releases it at once.
	bad := spec("/app.wasm")
	bad.Process.Env = []string{oci.ListenEnv + "=nonsense"}
	if _, _, err := runnerConfig(ctx, bad, "id", rootfs, noCache, src); !errdefs.IsInvalidArgument(err) || src.released != 2 {
		t.Errorf("bad %s: %v, %d releases: want InvalidArgument and the module released", oci.ListenEnv, err, src.released)
	}

	src = &fakeSource{err: fmt.Errorf("image x has no layer of a wasm media type: %w", oci.ErrNoWasmLayer)}
	_, _, err = runnerConfig(ctx, spec("/app.wasm"), "id", rootfs, noCache, src)
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "/app.wasm not found in the container rootfs") || !strings.Contains(err.Error(), "no module in the image's layers either: image x has no layer of a wasm media type") {
		t.Errorf("no wasm layer either: %v", err)
	}

	src = &fakeSource{err: oci.ComponentError("layer y of image x")}
	if _, _, err = runnerConfig(ctx, spec("/app.wasm"), "id", rootfs, noCache, src); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "component") {
		t.Errorf("component: %v", err)
	}

	// A module in the rootfs that is not wasm is an error of its own: the image is not asked.
	os.WriteFile(filepath.Join(rootfs, "bad.wasm"), []byte("text"), 0o644)
	src = &fakeSource{}
	if _, _, err = runnerConfig(ctx, spec("/bad.wasm"), "id", rootfs, noCache, src); !errdefs.IsInvalidArgument(err) || src.calls != 0 {
		t.Errorf("not wasm in the rootfs: %v, %d lookups", err, src.calls)
	}
}
