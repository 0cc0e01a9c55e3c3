package wasi

import (
	"context"

	"github.com/tetratelabs/wazero/api"
)

// fdClose is fd_close(fd).
func (h *host) fdClose(ctx context.Context, mod api.Module, stack []uint64) {
	t := h.tableOf(ctx, mod)
	if t == nil {
		h.o.fdClose.Call(ctx, mod, stack)
		return
	}
	fd := stack[0]
	e := t.get(fd)
	if e == nil {
		stack[0] = uint64(errBadf)
		return
	}
	stack[0] = uint64(uint32(e.wfd))
	h.o.fdClose.Call(ctx, mod, stack)
	if errno(stack[0]) == errSuccess {
		t.del(fd)
	}
}

// fdRenumber is fd_renumber(from, to): to, which must be open, is closed and becomes from.
// Any descriptor can be renumbered, stdio and preopened directories included.
func (h *host) fdRenumber(ctx context.Context, mod api.Module, stack []uint64) {
	t := h.tableOf(ctx, mod)
	if t == nil {
		h.o.fdRenumber.Call(ctx, mod, stack)
		return
	}
	from, to := t.get(stack[0]), t.get(stack[1])
	if from == nil || to == nil {
		stack[0] = uint64(errBadf)
		return
	}
	if from != to {
		// wazero's descriptor of to goes: closed, whatever it is (wazero refuses none).
		close := []uint64{uint64(uint32(to.wfd))}
		h.o.fdClose.Call(ctx, mod, close)
		t.put(uint32(stack[1]), from)
		t.del(stack[0])
	}
	stack[0] = uint64(errSuccess)
}

// fdFdstatGet is fd_fdstat_get(fd, result): wazero's, with this table's rights and flags.
func (h *host) fdFdstatGet(ctx context.Context, mod api.Module, stack []uint64) {
	t := h.tableOf(ctx, mod)
	if t == nil {
		h.o.fdFdstatGet.Call(ctx, mod, stack)
		return
	}
	e := t.get(stack[0])
	if e == nil {
		stack[0] = uint64(errBadf)
		return
	}
	ptr := uint32(stack[1])
	stack[0] = uint64(uint32(e.wfd))
	h.o.fdFdstatGet.Call(ctx, mod, stack)
	if errno(stack[0]) != errSuccess {
		return
	}
	b, ok := mod.Memory().Read(ptr, fdstatSize)
	if !ok {
		stack[0] = uint64(errFault)
		return
	}
	flags := uint16(b[2]) | uint16(b[3])<<8
	putU16(b[2:], flags|e.flags&fdflagsKept)
	putU64(b[8:], e.base)
	putU64(b[16:], e.inheriting)
}

// fdFdstatSetFlags is fd_fdstat_set_flags(fd, flags): wazero's; the flags it does not keep
// are recorded for fd_fdstat_get.
func (h *host) fdFdstatSetFlags(ctx context.Context, mod api.Module, stack []uint64) {
	t := h.tableOf(ctx, mod)
	if t == nil {
		h.o.fdFdstatSetFlags.Call(ctx, mod, stack)
		return
	}
	e := t.get(stack[0])
	if e == nil {
		stack[0] = uint64(errBadf)
		return
	}
	flags := uint16(stack[1])
	stack[0] = uint64(uint32(e.wfd))
	h.o.fdFdstatSetFlags.Call(ctx, mod, stack)
	if errno(stack[0]) == errSuccess {
		e.flags = flags & (fdflagsKept | fdflagAppend)
	}
}

// fdFdstatSetRights is fd_fdstat_set_rights(fd, base, inheriting): rights can only be dropped.
func (h *host) fdFdstatSetRights(ctx context.Context, mod api.Module, stack []uint64) {
	t := h.tableOf(ctx, mod)
	if t == nil {
		h.o.fdFdstatSetRights.Call(ctx, mod, stack)
		return
	}
	e := t.get(stack[0])
	switch {
	case e == nil:
		stack[0] = uint64(errBadf)
	case stack[1]&^e.base != 0 || stack[2]&^e.inheriting != 0:
		stack[0] = uint64(errNotcapable)
	default:
		e.dropped |= e.base &^ stack[1]
		e.base, e.inheriting = stack[1], stack[2]
		stack[0] = uint64(errSuccess)
	}
}

// fdPrestatGet is fd_prestat_get(fd, result).
func (h *host) fdPrestatGet(ctx context.Context, mod api.Module, stack []uint64) {
	t := h.tableOf(ctx, mod)
	if t == nil {
		h.o.fdPrestatGet.Call(ctx, mod, stack)
		return
	}
	e := t.get(stack[0])
	if e == nil || e.preopen == "" {
		stack[0] = uint64(errBadf)
		return
	}
	b, ok := mod.Memory().Read(uint32(stack[1]), prestatSize)
	if !ok {
		stack[0] = uint64(errFault)
		return
	}
	clear(b)
	b[0] = 0 // preopentype dir
	mod.Memory().WriteUint32Le(uint32(stack[1])+4, uint32(len(e.preopen)))
	stack[0] = uint64(errSuccess)
}

// fdPrestatDirName is fd_prestat_dir_name(fd, path, path_len): the name, if path_len holds it.
func (h *host) fdPrestatDirName(ctx context.Context, mod api.Module, stack []uint64) {
	t := h.tableOf(ctx, mod)
	if t == nil {
		h.o.fdPrestatDirName.Call(ctx, mod, stack)
		return
	}
	e := t.get(stack[0])
	switch {
	case e == nil || e.preopen == "":
		stack[0] = uint64(errBadf)
	case uint32(stack[2]) < uint32(len(e.preopen)):
		stack[0] = uint64(errNametoolong)
	case !mod.Memory().WriteString(uint32(stack[1]), e.preopen):
		stack[0] = uint64(errFault)
	default:
		stack[0] = uint64(errSuccess)
	}
}

// fdPwrite is fd_pwrite(fd, iovs, iovs_len, offset, result): on a file opened with O_APPEND
// the data goes to the end of the file, as on Linux, and the file offset is left unchanged.
func (h *host) fdPwrite(ctx context.Context, mod api.Module, stack []uint64) {
	t := h.tableOf(ctx, mod)
	if t == nil {
		h.o.fdPwrite.Call(ctx, mod, stack)
		return
	}
	e := t.get(stack[0])
	if e == nil {
		stack[0] = uint64(errBadf)
		return
	}
	if !e.may(rightFdWrite) {
		stack[0] = uint64(errNotcapable)
		return
	}
	wfd := uint64(uint32(e.wfd))
	if e.flags&fdflagAppend == 0 {
		stack[0] = wfd
		h.o.fdPwrite.Call(ctx, mod, stack)
		return
	}
	// fd_tell, fd_write (which appends), fd_seek back.
	var pos uint64
	if err := h.scratch(mod, 8, func(ptr uint32) errno {
		s := []uint64{wfd, uint64(ptr)}
		h.o.fdTell.Call(ctx, mod, s)
		pos, _ = mod.Memory().ReadUint64Le(ptr)
		return errno(s[0])
	}); err != errSuccess {
		stack[0] = uint64(err)
		return
	}
	w := []uint64{wfd, stack[1], stack[2], stack[4]}
	h.o.fdWrite.Call(ctx, mod, w)
	if err := h.scratch(mod, 8, func(ptr uint32) errno {
		s := []uint64{wfd, pos, 0 /* whence set */, uint64(ptr)}
		h.o.fdSeek.Call(ctx, mod, s)
		return errno(s[0])
	}); err != errSuccess && errno(w[0]) == errSuccess {
		w[0] = uint64(err)
	}
	stack[0] = w[0]
}

// sockAccept is sock_accept(fd, flags, result): the new connection gets a number of the table.
func (h *host) sockAccept(ctx context.Context, mod api.Module, stack []uint64) {
	t := h.tableOf(ctx, mod)
	if t == nil {
		h.o.sockAccept.Call(ctx, mod, stack)
		return
	}
	e := t.get(stack[0])
	if e == nil {
		stack[0] = uint64(errBadf)
		return
	}
	ptr := uint32(stack[2])
	stack[0] = uint64(uint32(e.wfd))
	h.o.sockAccept.Call(ctx, mod, stack)
	if errno(stack[0]) != errSuccess {
		return
	}
	wfd, _ := mod.Memory().ReadUint32Le(ptr)
	fd := t.add(&entry{wfd: int32(wfd), ftype: typeSocketStrm, base: rightsSocket})
	mod.Memory().WriteUint32Le(ptr, fd)
}

// sockShutdown is sock_shutdown(fd, how): ENOTSOCK for an open descriptor that is no socket.
func (h *host) sockShutdown(ctx context.Context, mod api.Module, stack []uint64) {
	t := h.tableOf(ctx, mod)
	if t == nil {
		h.o.sockShutdown.Call(ctx, mod, stack)
		return
	}
	e := t.get(stack[0])
	if e == nil {
		stack[0] = uint64(errBadf)
		return
	}
	stack[0] = uint64(uint32(e.wfd))
	h.o.sockShutdown.Call(ctx, mod, stack)
	if errno(stack[0]) == errBadf {
		stack[0] = uint64(errNotsock) // wazero's answer for a descriptor that is not a socket
	}
}
