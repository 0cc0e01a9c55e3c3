package wasi

import (
	"context"
	"encoding/binary"

	"github.com/tetratelabs/wazero/api"
)

// pollOneoff is poll_oneoff(in, out, nsubscriptions, result).
//
// A call with a subscription that is ready by nature (readyNow) does not wait (pollReady). Other
// calls go to wazero with the descriptors translated (wazero answers FD_READ, and sleeps for
// clocks).
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
	for i := uint32(0); i < n; i++ {
		if t.readyNow(subs[i*subSize:]) {
			h.pollReady(ctx, mod, t, subs, stack)
			return
		}
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
		wfd := int32(notOpen)
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

// readyNow tells whether subscription s is answered at once, as wasmtime answers it: FD_WRITE
// (files and stdio are always writable; wazero answers ENOTSUP), and FD_READ on a regular file,
// which is always readable (wazero waits for stdin instead).
func (t *table) readyNow(s []byte) bool {
	switch s[8] {
	case eventFdWrite:
		return true
	case eventFdRead:
		e := t.get(uint64(binary.LittleEndian.Uint32(s[16:])))
		return e != nil && e.ftype == typeRegularFile
	}
	return false
}

// pollReady answers a poll_oneoff(in, out, n, result) with subscriptions that are ready by nature
// (readyNow) at once: those are reported ready (EBADF for a descriptor that is not open). The
// call's other FD_READ subscriptions are answered by wazero as in any other call, but without
// waiting (for wazero, the subscriptions answered here become expired clocks for the call only);
// clock events are not reported, since descriptors are ready.
func (h *host) pollReady(ctx context.Context, mod api.Module, t *table, subs []byte, stack []uint64) {
	in, out, n, result := uint32(stack[0]), uint32(stack[1]), uint32(stack[2]), uint32(stack[3])
	mem := mod.Memory()
	if uint64(out)+uint64(n)*eventSize > uint64(mem.Size()) {
		stack[0] = uint64(errFault)
		return
	}
	var events [][]byte
	ready := make([]bool, n)
	reads := false
	for i := uint32(0); i < n; i++ {
		ready[i] = t.readyNow(subs[i*subSize:])
		reads = reads || !ready[i] && subs[i*subSize+8] == eventFdRead
	}
	if reads {
		saved := append([]byte(nil), subs...)
		for i := uint32(0); i < n; i++ {
			s := subs[i*subSize : (i+1)*subSize]
			switch {
			case ready[i]:
				clear(s[8:])
				s[8] = eventClock
				binary.LittleEndian.PutUint32(s[16:], 1) // CLOCK_MONOTONIC, relative, 0 ns
			case s[8] == eventFdRead:
				wfd := int32(notOpen)
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
		if !ready[i] {
			continue
		}
		ev := make([]byte, eventSize)
		copy(ev, s[:8]) // userdata
		ev[10] = s[8]   // FD_READ or FD_WRITE
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

// notOpen is the descriptor wazero is asked about for a guest descriptor that is not open: one it
// never has (a negative one would fail the whole call), so that it reports EBADF for that
// subscription alone.
const notOpen = 1<<31 - 1
