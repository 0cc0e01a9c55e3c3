package wasi

import (
	"context"
	"encoding/binary"

	"github.com/tetratelabs/wazero/api"
)

// pollOneoff is poll_oneoff(in, out, nsubscriptions, result).
//
// A call with FD_WRITE subscriptions does not wait (pollWrites). Other calls go to wazero with
// the descriptors translated (wazero answers FD_READ, and sleeps for clocks).
func (h *host) pollOneoff(ctx context.Context, mod api.Module, stack []uint64) {
	t := h.tableOf(ctx, mod)
	if t == nil {
		h.o.pollOneoff.Call(ctx, mod, stack)
		return
	}
	in, n := uint32(stack[0]), uint32(stack[2])
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
		h.pollWrites(ctx, mod, t, subs, stack)
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

// pollWrites answers a poll_oneoff(in, out, n, result) that has FD_WRITE subscriptions, at once,
// as wasmtime answers it for files and stdio: every FD_WRITE subscription on an open descriptor
// is ready (EBADF for one that is not open). Its FD_READ subscriptions are answered by wazero as
// in any other call, without waiting (each FD_WRITE subscription becomes an expired clock for
// wazero, for the call only); clock events are not reported, since descriptors are ready.
func (h *host) pollWrites(ctx context.Context, mod api.Module, t *table, subs []byte, stack []uint64) {
	in, out, n, result := uint32(stack[0]), uint32(stack[1]), uint32(stack[2]), uint32(stack[3])
	mem := mod.Memory()
	if uint64(out)+uint64(n)*eventSize > uint64(mem.Size()) {
		stack[0] = uint64(errFault)
		return
	}
	var events [][]byte
	reads := false
	for i := uint32(0); i < n; i++ {
		reads = reads || subs[i*subSize+8] == eventFdRead
	}
	if reads {
		saved := append([]byte(nil), subs...)
		for i := uint32(0); i < n; i++ {
			s := subs[i*subSize : (i+1)*subSize]
			switch s[8] {
			case eventFdWrite:
				clear(s[8:])
				s[8] = eventClock
				binary.LittleEndian.PutUint32(s[16:], 1) // CLOCK_MONOTONIC, relative, 0 ns
			case eventFdRead:
				wfd := int32(-1) // not open: wazero reports EBADF for it
				if e := t.get(uint64(binary.LittleEndian.Uint32(s[16:]))); e != nil {
					wfd = e.wfd
				}
				binary.LittleEndian.PutUint32(s[16:], uint32(wfd))
			}
		}
		inner := []uint64{uint64(in), uint64(out), uint64(n), uint64(result)}
		h.o.pollOneoff.Call(ctx, mod, inner)
		copy(subs, saved)
		if errno(inner[0]) == errSuccess {
			k, _ := mem.ReadUint32Le(result)
			got, _ := mem.Read(out, min(k, n)*eventSize)
			for j := uint32(0); j < min(k, n); j++ {
				if ev := got[j*eventSize : (j+1)*eventSize]; ev[10] == eventFdRead {
					events = append(events, append([]byte(nil), ev...))
				}
			}
		}
	}
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
		events = append(events, ev)
	}
	for j, ev := range events {
		mem.Write(out+uint32(j)*eventSize, ev)
	}
	if !mem.WriteUint32Le(result, uint32(len(events))) {
		stack[0] = uint64(errFault)
		return
	}
	stack[0] = uint64(errSuccess)
}
