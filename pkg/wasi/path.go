package wasi

import (
	"context"
	"path"
	"strings"

	"github.com/tetratelabs/wazero/api"
	"golang.org/x/sys/unix"
)

// pathOpen is path_open(fd, dirflags, path, path_len, oflags, rights_base, rights_inheriting,
// fdflags, result): wazero opens the file; the table gives it a number, the rights asked for
// (within the directory's inheriting rights and the file's type) and the flags.
func (h *host) pathOpen(ctx context.Context, mod api.Module, stack []uint64) {
	t := h.tableOf(ctx, mod)
	if t == nil {
		h.o.pathOpen.Call(ctx, mod, stack)
		return
	}
	dir := t.get(stack[0])
	if dir == nil {
		stack[0] = uint64(errBadf)
		return
	}
	if uint16(stack[4])&oflagTrunc != 0 && !dir.may(rightPathFilestatSetSize) {
		stack[0] = uint64(errNotcapable)
		return
	}
	name, _ := mod.Memory().Read(uint32(stack[2]), uint32(stack[3]))
	rel := string(name)
	base, inheriting, fdflags, result := stack[5], stack[6], uint16(stack[7]), uint32(stack[8])
	stack[0] = uint64(uint32(dir.wfd))
	h.o.pathOpen.Call(ctx, mod, stack)
	if errno(stack[0]) != errSuccess {
		return
	}
	wfd, _ := mod.Memory().ReadUint32Le(result)
	var st [fdstatSize]byte
	if err := h.fdstat(ctx, mod, int32(wfd), &st); err != errSuccess {
		h.o.fdClose.Call(ctx, mod, []uint64{uint64(wfd)})
		stack[0] = uint64(err)
		return
	}
	e := &entry{
		wfd:        int32(wfd),
		ftype:      st[0],
		base:       base & dir.inheriting & rightsOf(st[0]),
		inheriting: inheriting & dir.inheriting,
		flags:      fdflags & (fdflagsKept | fdflagAppend),
		readOnly:   dir.readOnly,
	}
	if e.ftype == typeDirectory && dir.host != "" {
		e.host = path.Join(dir.host, rel)
	}
	mod.Memory().WriteUint32Le(result, t.add(e))
}

// pathReadlink is path_readlink(fd, path, path_len, buf, buf_len, result): a target longer
// than buf_len is truncated to it (as readlink(2)), not an error.
func (h *host) pathReadlink(ctx context.Context, mod api.Module, stack []uint64) {
	t := h.tableOf(ctx, mod)
	if t == nil {
		h.o.pathReadlink.Call(ctx, mod, stack)
		return
	}
	e := t.get(stack[0])
	if e == nil {
		stack[0] = uint64(errBadf)
		return
	}
	stack[0] = uint64(uint32(e.wfd))
	// wazero refuses a buffer shorter than the target: lend it the guest's memory after buf (up
	// to a maximal target, 4096 bytes, as far as memory goes) and put those bytes back.
	mem := mod.Memory()
	buf, n, result := uint32(stack[3]), uint32(stack[4]), uint32(stack[5])
	lent := uint32(0)
	if end := uint64(buf) + uint64(n); end < uint64(mem.Size()) && n < unix.PathMax {
		lent = min(unix.PathMax-n, uint32(uint64(mem.Size())-end))
	}
	var saved []byte
	if lent > 0 {
		b, _ := mem.Read(buf+n, lent)
		saved = append(saved, b...)
		stack[4] = uint64(n + lent)
	}
	h.o.pathReadlink.Call(ctx, mod, stack)
	used, _ := mem.ReadUint32Le(result)
	if lent > 0 {
		mem.Write(buf+n, saved)
	}
	if errno(stack[0]) == errSuccess {
		mem.WriteUint32Le(result, min(used, n))
	}
}

// pathFilestatSetTimes is path_filestat_set_times(fd, flags, path, path_len, atim, mtim,
// fstflags): without LOOKUPFLAGS_SYMLINK_FOLLOW a symlink's own times change, not its target's.
func (h *host) pathFilestatSetTimes(ctx context.Context, mod api.Module, stack []uint64) {
	t := h.tableOf(ctx, mod)
	if t == nil {
		h.o.pathFilestatSetTimes.Call(ctx, mod, stack)
		return
	}
	e := t.get(stack[0])
	if e == nil {
		stack[0] = uint64(errBadf)
		return
	}
	if stack[1]&lookupFollow != 0 || e.host == "" {
		stack[0] = uint64(uint32(e.wfd))
		h.o.pathFilestatSetTimes.Call(ctx, mod, stack)
		return
	}
	name, ok := mod.Memory().Read(uint32(stack[2]), uint32(stack[3]))
	if !ok {
		stack[0] = uint64(errFault)
		return
	}
	ts, err := timespecs(stack[4], stack[5], uint16(stack[6]))
	if err != errSuccess {
		stack[0] = uint64(err)
		return
	}
	p, err := under(e.host, string(name))
	if err != errSuccess {
		stack[0] = uint64(err)
		return
	}
	if e.readOnly {
		stack[0] = uint64(errRofs)
		return
	}
	stack[0] = uint64(toErrno(unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)))
}

// pathLink is path_link(old_fd, old_flags, old_path, old_path_len, new_fd, new_path,
// new_path_len): LOOKUPFLAGS_SYMLINK_FOLLOW is refused with EINVAL, as wasmtime does.
func (h *host) pathLink(ctx context.Context, mod api.Module, stack []uint64) {
	t := h.tableOf(ctx, mod)
	if t == nil {
		h.o.pathLink.Call(ctx, mod, stack)
		return
	}
	old, dst := t.get(stack[0]), t.get(stack[4])
	switch {
	case old == nil || dst == nil:
		stack[0] = uint64(errBadf)
	case stack[1]&lookupFollow != 0:
		stack[0] = uint64(errInval)
	default:
		stack[0], stack[4] = uint64(uint32(old.wfd)), uint64(uint32(dst.wfd))
		h.o.pathLink.Call(ctx, mod, stack)
	}
}

// under is rel below the host directory dir, refusing a path that leaves it by its name
// ("..", an absolute path): ENOTCAPABLE. Symlinks on the way resolve as the runner sees them:
// inside the container's root, where it has pivoted.
func under(dir, rel string) (string, errno) {
	if strings.HasPrefix(rel, "/") {
		return "", errNotcapable
	}
	clean := path.Clean(rel)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", errNotcapable
	}
	p := path.Join(dir, clean)
	if strings.HasSuffix(rel, "/") {
		p += "/" // a trailing slash still asks for a directory
	}
	return p, errSuccess
}

// timespecs converts WASI times and fstflags to utimensat's, EINVAL for contradicting flags.
func timespecs(atim, mtim uint64, flags uint16) ([]unix.Timespec, errno) {
	if flags&^fstflagsValid != 0 || flags&(fstAtim|fstAtimNow) == fstAtim|fstAtimNow ||
		flags&(fstMtim|fstMtimNow) == fstMtim|fstMtimNow {
		return nil, errInval
	}
	one := func(ns uint64, set, now uint16) unix.Timespec {
		switch {
		case flags&now != 0:
			return unix.Timespec{Nsec: unix.UTIME_NOW}
		case flags&set != 0:
			return unix.NsecToTimespec(int64(ns))
		default:
			return unix.Timespec{Nsec: unix.UTIME_OMIT}
		}
	}
	return []unix.Timespec{one(atim, fstAtim, fstAtimNow), one(mtim, fstMtim, fstMtimNow)}, errSuccess
}
