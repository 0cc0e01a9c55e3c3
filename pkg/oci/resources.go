package oci

import specs "github.com/opencontainers/runtime-spec/specs-go"

const (
	// PageSize is the size of a WebAssembly linear memory page.
	PageSize = 65536
	// MaxPages is the most pages a 32-bit linear memory can have (4 GiB).
	MaxPages = 65536
	// MinReserve is the least memory kept out of the guest's linear memory for the runner itself:
	// the Go runtime, wazero, the compiled code and the WASI state (why 16 MiB: RATIONALE.md,
	// "Why the guest's memory is capped below the cgroup limit").
	MinReserve = 16 << 20
)

// MemoryLimit returns linux.resources.memory.limit in bytes, or 0 when the spec sets none
// (or sets -1, "unlimited").
func MemoryLimit(s *specs.Spec) int64 {
	if s.Linux == nil || s.Linux.Resources == nil || s.Linux.Resources.Memory == nil || s.Linux.Resources.Memory.Limit == nil {
		return 0
	}
	if l := *s.Linux.Resources.Memory.Limit; l > 0 {
		return l
	}
	return 0
}

// MemoryPages returns the cap on a guest's linear memory, in 64 KiB pages, for a container memory
// limit in bytes. The runner process needs memory of its own besides the guest's linear memory, so
// the cap keeps a reserve of an eighth of the limit, at least MinReserve, out of the guest's reach:
// a guest that grows past its share gets a failed memory.grow (and usually traps) instead of the
// kernel OOM-killing the container. With no limit (0) the cap is the wasm32 maximum, 4 GiB.
// The result is never below 1 page, so a module that needs one page can still start.
func MemoryPages(limit int64) uint32 {
	if limit <= 0 {
		return MaxPages
	}
	reserve := max(limit/8, int64(MinReserve))
	pages := (limit - reserve) / PageSize
	switch {
	case pages < 1:
		return 1
	case pages > MaxPages:
		return MaxPages
	}
	return uint32(pages)
}
