package main

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// PushOptions says how Push reaches the registry.
type PushOptions struct {
	// PlainHTTP talks HTTP rather than HTTPS to the registry (a local registry). Registries on
	// localhost and loopback addresses are reached over HTTP anyway.
	PlainHTTP bool
	// Keychain gives the credentials; nil means the docker config ($DOCKER_CONFIG/config.json,
	// else ~/.docker/config.json, with its credential helpers), anonymous when it has none.
	Keychain authn.Keychain
}

// rawManifest is a manifest or index pushed byte for byte as Assemble wrote it.
type rawManifest struct {
	data      []byte
	mediaType string
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.data, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.MediaType(m.mediaType), nil }

// Push uploads img to the registry as ref (REGISTRY/REPOSITORY[:TAG]): the configs and layers,
// then the manifests an index lists (by digest), then the top manifest or index under ref's
// tag. Blobs the registry already has are not uploaded again. It returns ref's repository
// @digest of what was pushed.
func Push(ctx context.Context, img *Image, ref string, po PushOptions) (string, error) {
	var nopts []name.Option
	if po.PlainHTTP {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return "", fmt.Errorf("push: bad reference %q: %w (want REGISTRY/REPOSITORY[:TAG], e.g. ghcr.io/me/app:1.0)", ref, err)
	}
	kc := po.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	p, err := remote.NewPusher(remote.WithContext(ctx), remote.WithAuthFromKeychain(kc), remote.WithUserAgent("wasmimg"))
	if err != nil {
		return "", err
	}
	repo := r.Context()
	for _, b := range img.Blobs {
		if err := p.Upload(ctx, repo, static.NewLayer(b.data, types.MediaType(b.mediaType))); err != nil {
			return "", fmt.Errorf("push %s: blob %s (%s): %w", repo, b.digest, b.mediaType, err)
		}
	}
	for _, m := range img.Manifests {
		if err := p.Put(ctx, repo.Digest(m.digest), rawManifest{m.data, MediaTypeManifest}); err != nil {
			return "", fmt.Errorf("push %s: manifest %s: %w", repo, m.digest, err)
		}
	}
	if err := p.Put(ctx, r, rawManifest{img.Top.data, img.TopType}); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	return repo.Name() + "@" + img.Top.digest, nil
}
