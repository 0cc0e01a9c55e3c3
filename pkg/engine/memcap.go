package engine

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// A guest's linear memory is capped below its container's memory limit (oci.MemoryPages), and
// the cap follows the limit live: when the shim changes the container's memory limit (Update), it
// sends the runner the new cap (Runner.SetMemoryPages), and the guest's next memory.grow is held
// to it. The module is compiled with wazero's own limit at the wasm32 maximum and the cap is
// enforced by the memory allocator below, since wazero fixes its limit at instantiation.
//
// The allocator reserves the largest memory the guest could ever have as one anonymous
// mapping (address space only: untouched pages cost nothing, and are charged to the cgroup only
// once written), so memory.grow never copies the guest's memory into a bigger buffer (which would
// need twice its memory at once), whatever the cap becomes. The whole 2 MiB pages within the
// module's declared minimum are advised as huge pages (adviseGuestHugePages, hugepages.go).

// memoryCap is the live cap of a guest's linear memory, in 64 KiB pages, and whether the memory
// may have huge pages within its declared minimum (hugePagesFit).
type memoryCap struct {
	pages     atomic.Uint32
	hugePages bool
}

// allocator returns the wazero memory allocator that holds the guest to c.
func (c *memoryCap) allocator() experimental.MemoryAllocator {
	return experimental.MemoryAllocatorFunc(func(capBytes, maxBytes uint64) experimental.LinearMemory {
		return &cappedMemory{limit: c, max: maxBytes}
	})
}

// watch reads cap updates from the control pipe until it closes (the shim's Runner.Close).
func (c *memoryCap) watch(in *bufio.Reader) {
	for {
		line, err := in.ReadString('\n')
		if err != nil {
			return
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), strings.TrimSpace(memCapPrefix)); ok {
			if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil && n > 0 && n <= 65536 {
				c.pages.Store(uint32(n))
			}
		}
	}
}

// cappedMemory is one linear memory, in a mapping of its maximum size reserved at the first
// allocation.
type cappedMemory struct {
	limit   *memoryCap
	max     uint64
	mapping []byte
	grown   bool
}

// Reallocate implements experimental.LinearMemory: size within the live cap (the first call,
// the module's declared minimum, is always given: wazero has no error path for it, and a minimum
// above the cap was refused at Create, see checkMemoryMin).
func (m *cappedMemory) Reallocate(size uint64) []byte {
	if m.grown && size > uint64(m.limit.pages.Load())*65536 {
		return nil
	}
	m.grown = true
	if m.mapping == nil {
		// The maximum first; where the address space is short (vm.overcommit_memory=2, an
		// RLIMIT_AS in the spec) the current cap, then what is asked: the guest then cannot grow
		// past that, but runs.
		for _, n := range []uint64{max(m.max, size, 65536), max(uint64(m.limit.pages.Load())*65536, size, 65536), max(size, 65536)} {
			if b, err := unix.Mmap(-1, 0, int(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE); err == nil {
				m.mapping = b
				if m.limit.hugePages {
					adviseGuestHugePages(b, size)
				}
				break
			}
		}
		if m.mapping == nil {
			return nil
		}
	}
	if size > uint64(len(m.mapping)) {
		return nil
	}
	return m.mapping[:size:size]
}

// Free implements experimental.LinearMemory.
func (m *cappedMemory) Free() {
	if m.mapping != nil {
		_ = unix.Munmap(m.mapping)
		m.mapping = nil
	}
}

// checkMemoryMin refuses a module whose memory's declared minimum is above the cap: the error
// wazero gave when its own limit was the cap.
func checkMemoryMin(name string, pages uint32, mems []api.MemoryDefinition) error {
	for _, d := range mems {
		if d.Min() > pages {
			return memoryMinError(name, pages, d.Min())
		}
	}
	return nil
}

func memoryMinError(name string, pages, min uint32) error {
	return fmt.Errorf("module %s needs more linear memory than the container's memory limit leaves for it (%d KiB): raise the memory limit: its memory's minimum is %d pages (%d KiB)",
		name, uint64(pages)*64, min, uint64(min)*64)
}

// guestPages is the cap a guest starts with: cfg.MemoryPages, or the wasm32 maximum when unset.
func guestPages(cfg *Config) uint32 {
	if cfg.MemoryPages == 0 || cfg.MemoryPages > oci.MaxPages {
		return oci.MaxPages
	}
	return cfg.MemoryPages
}

// memoryMinPages returns the largest declared minimum of the module's memories (defined in its
// memory section or imported), in pages, read from the binary before anything is compiled: a
// minimum above the cap fails at once instead of after a compile the container's memory limit
// may not even allow. ok is false when the module has no memory or cannot be read that far (the
// compile then reports what is wrong with it).
func memoryMinPages(code []byte) (pages uint32, ok bool) {
	r := wasmReader{b: code, i: 8}
	if len(code) < 8 {
		return 0, false
	}
	// limits reads a table's or memory's limits; memory records its minimum.
	limits := func(memory bool) bool {
		flags, good := r.byte()
		if !good {
			return false
		}
		min, good := r.uleb()
		if !good {
			return false
		}
		if memory && min <= 65536 && uint32(min) >= pages {
			pages, ok = uint32(min), true
		}
		if flags&1 != 0 {
			_, good = r.uleb()
		}
		return good
	}
	for r.i < len(r.b) {
		id, good := r.byte()
		size, good2 := r.uleb()
		if !good || !good2 || r.i+int(size) > len(r.b) || size > uint64(len(r.b)) {
			return pages, ok
		}
		end := r.i + int(size)
		switch id {
		case 2: // imports
			n, _ := r.uleb()
			for k := uint64(0); k < n && r.i < end; k++ {
				if !r.name() || !r.name() {
					return pages, ok
				}
				kind, _ := r.byte()
				switch kind {
				case 0:
					r.uleb()
				case 1:
					r.byte()
					if !limits(false) {
						return pages, ok
					}
				case 2:
					if !limits(true) {
						return pages, ok
					}
				case 3:
					r.byte()
					r.byte()
				default:
					return pages, ok
				}
			}
		case 5: // memories
			n, _ := r.uleb()
			for k := uint64(0); k < n && r.i < end; k++ {
				if !limits(true) {
					return pages, ok
				}
			}
		}
		r.i = end
	}
	return pages, ok
}

// wasmReader reads a WebAssembly binary's bytes, LEB128 integers and names.
type wasmReader struct {
	b []byte
	i int
}

func (r *wasmReader) byte() (byte, bool) {
	if r.i >= len(r.b) {
		return 0, false
	}
	r.i++
	return r.b[r.i-1], true
}

func (r *wasmReader) uleb() (uint64, bool) {
	var v uint64
	for shift := 0; shift < 64; shift += 7 {
		c, ok := r.byte()
		if !ok {
			return 0, false
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, true
		}
	}
	return 0, false
}

func (r *wasmReader) name() bool {
	n, ok := r.uleb()
	if !ok || n > uint64(len(r.b)-r.i) {
		return false
	}
	r.i += int(n)
	return true
}
