package wasi

import (
	"context"
	"fmt"
	"strings"

	"github.com/tetratelabs/wazero/api"
)

// An instance's environment given through its context (WithEnviron) instead of its
// wazero.ModuleConfig: each ModuleConfig.WithEnv copies the whole configuration, so building a
// configuration per instance with a few dozen variables (the per-request mode's CGI variables)
// costs more than the variables themselves.

type environKey struct{}

// WithEnviron returns ctx with the environment ("KEY=VALUE" entries, in order) that
// environ_sizes_get and environ_get report to an instance instantiated with it, in place of its
// ModuleConfig's. It returns an error naming the first entry that has no '=' before its value,
// an empty name, or a NUL byte (which would cut the entry short in the guest's C strings).
func WithEnviron(ctx context.Context, environ []string) (context.Context, error) {
	for _, kv := range environ {
		k, _, ok := strings.Cut(kv, "=")
		switch {
		case !ok || k == "":
			return ctx, fmt.Errorf("environment entry %q is not NAME=VALUE", kv)
		case strings.IndexByte(kv, 0) >= 0:
			return ctx, fmt.Errorf("environment variable %s has a NUL byte", k)
		}
	}
	return context.WithValue(ctx, environKey{}, environ), nil
}

// environSizesGet is environ_sizes_get(count, buf_size): the number of entries and the bytes
// they take with a NUL each.
func (h *host) environSizesGet(ctx context.Context, mod api.Module, stack []uint64) {
	env, ok := ctx.Value(environKey{}).([]string)
	if !ok {
		h.orig["environ_sizes_get"].Call(ctx, mod, stack)
		return
	}
	size := 0
	for _, kv := range env {
		size += len(kv) + 1
	}
	mem := mod.Memory()
	if !mem.WriteUint32Le(uint32(stack[0]), uint32(len(env))) || !mem.WriteUint32Le(uint32(stack[1]), uint32(size)) {
		stack[0] = uint64(errFault)
		return
	}
	stack[0] = uint64(errSuccess)
}

// environGet is environ_get(environ, environ_buf): a pointer per entry at environ, into the
// NUL-terminated entries written one after the other at environ_buf.
func (h *host) environGet(ctx context.Context, mod api.Module, stack []uint64) {
	env, ok := ctx.Value(environKey{}).([]string)
	if !ok {
		h.orig["environ_get"].Call(ctx, mod, stack)
		return
	}
	ptrs, buf := uint32(stack[0]), uint32(stack[1])
	size := 0
	for _, kv := range env {
		size += len(kv) + 1
	}
	mem := mod.Memory()
	pb, ok1 := mem.Read(ptrs, uint32(4*len(env)))
	bb, ok2 := mem.Read(buf, uint32(size))
	if !ok1 || !ok2 {
		stack[0] = uint64(errFault)
		return
	}
	at := 0
	for i, kv := range env {
		putU32(pb[4*i:], buf+uint32(at))
		at += copy(bb[at:], kv)
		bb[at] = 0
		at++
	}
	stack[0] = uint64(errSuccess)
}
