package engine

import (
	"sync"

	"github.com/tetratelabs/wazero/experimental"
)

// Linear memories of the per-request mode, reused between instances.
//
// Without an allocator wazero makes a new Go slice for each instance's memory (the module's
// declared minimum, 128 KiB for a small C handler): the runtime zeroes it, the garbage collector
// frees it, and its scavenger gives the pages back to the kernel (madvise) only for the next
// instance to fault them in again. wagiMemoryPool keeps the buffers of ended instances instead.
//
// Isolation: a buffer is zeroed (every byte the instance could have touched: up to its largest
// size) before it goes back to the pool, so the next instance starts from zeroed memory exactly
// as a fresh one, and no request sees another's bytes (TestWAGIIsolation).

// wagiPoolKeepBytes is the largest buffer the pool keeps: 16 MiB. A handler that grew beyond it
// gets its memory freed as without the pool, so the idle runner never holds more than
// Concurrency times this.
const wagiPoolKeepBytes = 16 << 20

// wagiMemoryPool is an experimental.MemoryAllocator whose memories go back to it when their
// instance is closed. It keeps at most max buffers.
type wagiMemoryPool struct {
	mu   sync.Mutex
	free []*pooledMemory
	max  int
}

func newWAGIMemoryPool(max int) *wagiMemoryPool { return &wagiMemoryPool{max: max} }

// Allocate implements experimental.MemoryAllocator: a buffer from the pool (zeroed), or a new
// one. cap is what wazero would reserve (the minimum); limit the memory's maximum in bytes.
func (p *wagiMemoryPool) Allocate(cap, limit uint64) experimental.LinearMemory {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		m := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		m.limit = limit
		return m
	}
	p.mu.Unlock()
	return &pooledMemory{pool: p, limit: limit}
}

// put zeroes m's used bytes and keeps it, unless the pool is full or m is too large.
func (p *wagiMemoryPool) put(m *pooledMemory) {
	if cap(m.buf) > wagiPoolKeepBytes {
		m.buf, m.used = nil, 0
		return
	}
	clear(m.buf[:m.used])
	m.used = 0
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) < p.max {
		p.free = append(p.free, m)
	}
}

// pooledMemory is one instance's linear memory: buf, of which the first used bytes may hold
// the instance's data (the rest of buf is zero).
type pooledMemory struct {
	pool  *wagiMemoryPool
	buf   []byte
	used  uint64
	limit uint64
}

// Reallocate implements experimental.LinearMemory: the memory at size bytes, the bytes past its
// previous size zero. Growing beyond the buffer copies it into one twice as large (at most the
// memory's maximum), so a handler growing page by page copies its memory a few times only.
func (m *pooledMemory) Reallocate(size uint64) []byte {
	if size > uint64(cap(m.buf)) {
		n := max(size, min(2*uint64(cap(m.buf)), m.limit))
		b := make([]byte, n)
		copy(b, m.buf[:m.used])
		m.buf = b
	}
	m.used = max(m.used, size)
	return m.buf[:size:size]
}

// Free implements experimental.LinearMemory: wazero calls it when the instance is closed.
func (m *pooledMemory) Free() { m.pool.put(m) }
