package wasi

import (
	"context"
	"encoding/binary"

	"github.com/tetratelabs/wazero/api"
)

// pollOneoff is poll_oneoff(in, out, nsubscriptions, result).
//
// A call with FD_WRITE subscriptions is answered here, at once, as wasmtime answers it for files
// and stdio: every FD_WRITE subscription on an open descriptor is ready (EBADF for one that is
// not open), and only those are reported (a clock is not, nor FD_READ, which the guest polls
// again). Other calls go to wazero with the descriptors translated (wazero answers FD_READ,
// and sleeps for clocks).
func (h *host) pollOneoff(ctx context.Context, mod api.Module, stack []uint64) {
	t := h.tableOf(ctx, mod)
	if t == nil {
		h.o.pollOneoff.Call(ctx, mod, stack)
		return
	}
	in, out, n, result := uint32(stack[0]), uint32(stack[1]), uint32(stack[2]), uint32(stack[3])
	mem := mod.Memory()
	size := uint64(n) * subSize
	if n == 0 || size > uint64(mem.Size()) {
		h.o.pollOneoff.Call(ctx, mod, stack) // wazero's EINVAL or EFAULT
		return
	}
	subs, ok := mem.Read(in, uint32(size))
	if !ok {
		stack[0] = uint64(errFault)
		return
	}
	writes := false
	for i := uint32(0); i < n; i++ {
		if subs[i*subSize+8] == eventFdWrite {
			writes = true
			break
		}
	}
	if writes {
		if uint64(out)+uint64(n)*eventSize > uint64(mem.Size()) {
			stack[0] = uint64(errFault)
			return
		}
		events := uint32(0)
		for i := uint32(0); i < n; i++ {
			s := subs[i*subSize:]
			if s[8] != eventFdWrite {
				continue
			}
			ev := make([]byte, eventSize)
			copy(ev, s[:8]) // userdata
			ev[10] = eventFdWrite
			if t.get(uint64(binary.LittleEndian.Uint32(s[16:]))) == nil {
				putU16(ev[8:], uint16(errBadf))
			}
			mem.Write(out+events*eventSize, ev)
			events++
		}
		if !mem.WriteUint32Le(result, events) {
			stack[0] = uint64(errFault)
			return
		}
		stack[0] = uint64(errSuccess)
		return
	}
	// Translate the FD_READ subscriptions' descriptors for wazero, and put the guest's back.
	type saved struct{ at, fd uint32 }
	var restore []saved
	for i := uint32(0); i < n; i++ {
		s := subs[i*subSize:]
		if s[8] != eventFdRead {
			continue
		}
		fd := binary.LittleEndian.Uint32(s[16:])
		wfd := int32(-1) // not open: wazero reports EBADF for it
		if e := t.get(uint64(fd)); e != nil {
			wfd = e.wfd
		}
		if uint32(wfd) != fd {
			restore = append(restore, saved{i*subSize + 16, fd})
			binary.LittleEndian.PutUint32(s[16:], uint32(wfd))
		}
	}
	h.o.pollOneoff.Call(ctx, mod, stack)
	for _, r := range restore {
		binary.LittleEndian.PutUint32(subs[r.at:], r.fd)
	}
}
