package wasi

import (
	"context"
	"encoding/binary"
	"sync"

	"github.com/tetratelabs/wazero/api"
)

// entry is one descriptor of the guest's.
type entry struct {
	// wfd is wazero's descriptor behind it.
	wfd int32
	// ftype is its WASI file type, as wazero's fd_fdstat_get reported it when it was opened.
	ftype uint8
	// base and inheriting are its rights (see rightsOf: never more than its type allows).
	base, inheriting uint64
	// dropped are the rights the guest gave up with fd_fdstat_set_rights.
	dropped uint64
	// flags are the fdflags wazero does not keep (fdflagsKept), plus fdflagAppend as last set.
	flags uint16
	// preopen is the name a preopened directory is known by (fd_prestat_dir_name); "" otherwise.
	preopen string
	// host is the directory's path on the host (a directory's only; path_filestat_set_times).
	host string
	// readOnly is set for directories of a read-only preopen that only wazero enforces (Options).
	readOnly bool
}

// may tells whether e has right r. Reading and writing need the right path_open asked for (a
// file opened for reading only cannot be written, whatever the host file allows); any other
// right is the type's, unless the guest dropped it (so a program that asks for too few rights
// keeps working as it did with wazero, which checked none).
func (e *entry) may(r uint64) bool {
	if e.base&r != 0 {
		return true
	}
	return r&(rightFdRead|rightFdWrite) == 0 && e.dropped&r == 0 && rightsOf(e.ftype)&r != 0
}

// table is one guest instance's descriptors: the index is the guest's number.
type table struct {
	// Options given to NewContext.
	opts Options
	// fds is nil until the instance's first WASI call that involves a descriptor (init).
	fds []*entry
	// ready is set once init has read wazero's descriptors.
	ready bool
}

// Options configure an instance's table.
type Options struct {
	// HostDirs maps each preopened directory's guest name to its directory on the host, when
	// they differ (the runner without isolation); a name not in it is its own host path (the
	// runner has pivoted into the container's root, where mounts are at their destinations).
	HostDirs map[string]string
	// ReadOnly names the preopened directories that wazero makes read-only (not the kernel: the
	// runner without isolation); what this package changes itself there fails with EROFS too.
	ReadOnly map[string]bool
	// Layout, when set, is shared by every instance of one module configuration (the same
	// stdio, preopens and listeners: the per-request mode's instances): the first instance reads
	// wazero's descriptors into it, the others copy it instead of asking wazero again (which
	// costs a few WASI calls and opening each preopened directory per instance). Nil: each
	// instance reads its own.
	Layout *Layout
}

// Layout is the initial descriptor table of instances that share a configuration (Options):
// read once from the first instance, copied into each later one. The zero value is ready.
type Layout struct {
	once sync.Once
	fds  []entry
}

// NewLayout returns an empty Layout for Options.Layout.
func NewLayout() *Layout { return &Layout{} }

// fill reads wazero's descriptors into t, from l once it holds them (the first caller reads
// them from wazero and keeps a copy; callers meanwhile wait for it).
func (l *Layout) fill(ctx context.Context, h *host, mod api.Module, t *table) {
	first := false
	l.once.Do(func() {
		first = true
		h.initTable(ctx, mod, t)
		l.fds = make([]entry, len(t.fds))
		for i, e := range t.fds {
			l.fds[i] = *e
		}
	})
	if first {
		return
	}
	// One allocation for every entry: each instance changes its own copies only.
	es := make([]entry, len(l.fds))
	copy(es, l.fds)
	t.fds = make([]*entry, len(es), len(es)+4)
	for i := range es {
		t.fds[i] = &es[i]
	}
}

type tableKey struct{}

// NewContext returns ctx with an empty table for one guest instance: instantiate the guest with
// it. Each instance needs its own.
func NewContext(ctx context.Context, opts Options) context.Context {
	return context.WithValue(ctx, tableKey{}, &table{opts: opts})
}

// tableOf is the table of the instance being called, read from wazero's descriptors the first
// time; nil if the instance has none (wazero's functions are then called unchanged).
func (h *host) tableOf(ctx context.Context, mod api.Module) *table {
	t, _ := ctx.Value(tableKey{}).(*table)
	if t != nil && !t.ready {
		t.ready = true
		if t.opts.Layout != nil {
			t.opts.Layout.fill(ctx, h, mod, t)
		} else {
			h.initTable(ctx, mod, t)
		}
	}
	return t
}

// get is the entry of the guest's descriptor fd (an i32 parameter: the upper half of the
// stack value is not part of it), or nil.
func (t *table) get(param uint64) *entry {
	fd := uint32(param)
	if fd >= uint32(len(t.fds)) {
		return nil
	}
	return t.fds[fd]
}

// add puts e at the lowest free number (as POSIX and wazero number descriptors) and returns it.
func (t *table) add(e *entry) uint32 {
	for i, x := range t.fds {
		if x == nil {
			t.fds[i] = e
			return uint32(i)
		}
	}
	t.fds = append(t.fds, e)
	return uint32(len(t.fds) - 1)
}

// put places e at number fd.
func (t *table) put(fd uint32, e *entry) {
	for uint32(len(t.fds)) <= fd {
		t.fds = append(t.fds, nil)
	}
	t.fds[fd] = e
}

// del frees number fd (an i32 parameter, as in get).
func (t *table) del(param uint64) {
	if fd := uint32(param); fd < uint32(len(t.fds)) {
		t.fds[fd] = nil
	}
}

// initTable reads the descriptors wazero opened for the instance (stdio, preopened directories,
// listening sockets: numbered from 0 without gaps) into t, the guest's numbers equal to wazero's.
func (h *host) initTable(ctx context.Context, mod api.Module, t *table) {
	for fd := int32(0); ; fd++ {
		var st [fdstatSize]byte
		if h.fdstat(ctx, mod, fd, &st) != errSuccess {
			return
		}
		e := &entry{wfd: fd, ftype: st[0]}
		e.base, e.inheriting = rightsOf(e.ftype), 0
		if e.ftype == typeDirectory {
			e.inheriting = rightsInheriting
		}
		if name, ok := h.prestatName(ctx, mod, fd); ok {
			e.preopen = name
			e.host = name
			if d, ok := t.opts.HostDirs[name]; ok {
				e.host = d
			}
			e.readOnly = t.opts.ReadOnly[name]
		}
		t.put(uint32(fd), e)
	}
}

// fdstat calls wazero's fd_fdstat_get for its descriptor wfd into st.
func (h *host) fdstat(ctx context.Context, mod api.Module, wfd int32, st *[fdstatSize]byte) errno {
	return h.scratch(mod, fdstatSize, func(ptr uint32) errno {
		stack := []uint64{uint64(uint32(wfd)), uint64(ptr)}
		h.o.fdFdstatGet.Call(ctx, mod, stack)
		if e := errno(stack[0]); e != errSuccess {
			return e
		}
		b, _ := mod.Memory().Read(ptr, fdstatSize)
		copy(st[:], b)
		return errSuccess
	})
}

// prestatName asks wazero whether its descriptor wfd is a preopened directory, and its name.
func (h *host) prestatName(ctx context.Context, mod api.Module, wfd int32) (string, bool) {
	var n uint32
	if h.scratch(mod, prestatSize, func(ptr uint32) errno {
		stack := []uint64{uint64(uint32(wfd)), uint64(ptr)}
		h.o.fdPrestatGet.Call(ctx, mod, stack)
		if e := errno(stack[0]); e != errSuccess {
			return e
		}
		n, _ = mod.Memory().ReadUint32Le(ptr + 4)
		return errSuccess
	}) != errSuccess {
		return "", false
	}
	var name string
	if h.scratch(mod, n, func(ptr uint32) errno {
		stack := []uint64{uint64(uint32(wfd)), uint64(ptr), uint64(n)}
		h.o.fdPrestatDirName.Call(ctx, mod, stack)
		if e := errno(stack[0]); e != errSuccess {
			return e
		}
		b, _ := mod.Memory().Read(ptr, n)
		name = string(b)
		return errSuccess
	}) != errSuccess {
		return "", false
	}
	return name, true
}

// scratch lends f the first n bytes of the guest's memory, for a call of one of wazero's
// functions that writes its result there, and puts the guest's bytes back afterwards. The guest
// runs no code meanwhile, so it never sees the difference.
func (h *host) scratch(mod api.Module, n uint32, f func(ptr uint32) errno) errno {
	mem := mod.Memory()
	if mem == nil || mem.Size() < n {
		return errFault
	}
	b, _ := mem.Read(0, n)
	saved := append([]byte(nil), b...)
	defer mem.Write(0, saved)
	return f(0)
}

func putU16(b []byte, v uint16) { binary.LittleEndian.PutUint16(b, v) }
func putU32(b []byte, v uint32) { binary.LittleEndian.PutUint32(b, v) }
func putU64(b []byte, v uint64) { binary.LittleEndian.PutUint64(b, v) }
