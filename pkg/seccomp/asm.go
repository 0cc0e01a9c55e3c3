package seccomp

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// Classic BPF opcode parts (linux/filter.h, linux/bpf_common.h).
const (
	opLdAbsW = 0x00 | 0x00 | 0x20 // BPF_LD | BPF_W | BPF_ABS
	opAndK   = 0x04 | 0x50 | 0x00 // BPF_ALU | BPF_AND | BPF_K
	opRetK   = 0x06 | 0x00        // BPF_RET | BPF_K
	opJa     = 0x05 | 0x00        // BPF_JMP | BPF_JA
	opJmpK   = 0x05 | 0x00        // BPF_JMP | BPF_K, or-ed with a condition below

	jeq  = 0x10 // BPF_JEQ
	jgt  = 0x20 // BPF_JGT
	jge  = 0x30 // BPF_JGE
	jset = 0x40 // BPF_JSET
)

// maxInsns is the kernel's limit on the length of one filter (BPF_MAXINSNS).
const maxInsns = 4096

type label int

type itemKind int

const (
	kindInsn  itemKind = iota // an instruction without jumps
	kindCond                  // a conditional jump to two labels
	kindJa                    // an unconditional jump to a label
	kindLabel                 // marks the position of a label
)

type item struct {
	kind   itemKind
	op     uint16
	k      uint32
	jt, jf label // kindCond
	to     label // kindJa, kindLabel
}

// assembler builds a classic BPF program whose jumps name labels instead of
// offsets. assemble resolves them; classic BPF conditional jumps can only
// skip 255 instructions forward, so a conditional jump whose target is
// further away is rewritten as a short conditional jump over two
// unconditional "ja" jumps, which have a 32-bit offset. All jumps must go
// forward, as the kernel requires.
type assembler struct {
	items   []item
	nlabels int
}

func (a *assembler) newLabel() label {
	a.nlabels++
	return label(a.nlabels - 1)
}

func (a *assembler) mark(l label) { a.items = append(a.items, item{kind: kindLabel, to: l}) }

func (a *assembler) ld(off uint32) {
	a.items = append(a.items, item{kind: kindInsn, op: opLdAbsW, k: off})
}

func (a *assembler) and(k uint32) { a.items = append(a.items, item{kind: kindInsn, op: opAndK, k: k}) }

func (a *assembler) ret(k uint32) { a.items = append(a.items, item{kind: kindInsn, op: opRetK, k: k}) }

func (a *assembler) ja(l label) { a.items = append(a.items, item{kind: kindJa, to: l}) }

// jump compares the accumulator with k using cond (jeq, jgt, jge, jset) and
// continues at jt if the comparison holds, at jf otherwise.
func (a *assembler) jump(cond uint16, k uint32, jt, jf label) {
	a.items = append(a.items, item{kind: kindCond, op: opJmpK | cond, k: k, jt: jt, jf: jf})
}

func (a *assembler) assemble() ([]bpf.RawInstruction, error) {
	long := make([]bool, len(a.items))
	pos := make([]int, len(a.items))
	addr := make([]int, a.nlabels)
	for {
		for i := range addr {
			addr[i] = -1
		}
		pc := 0
		for i, it := range a.items {
			pos[i] = pc
			switch {
			case it.kind == kindLabel:
				addr[it.to] = pc
			case it.kind == kindCond && long[i]:
				pc += 3
			default:
				pc++
			}
		}
		changed := false
		for i, it := range a.items {
			if it.kind != kindCond || long[i] {
				continue
			}
			for _, l := range []label{it.jt, it.jf} {
				if addr[l] < 0 {
					return nil, fmt.Errorf("seccomp: internal error: label %d never placed", l)
				}
				if off := addr[l] - pos[i] - 1; off > 255 {
					long[i] = true
					changed = true
				}
			}
		}
		if !changed {
			// Lengths only ever grow, so this terminates.
			break
		}
	}

	var prog []bpf.RawInstruction
	offset := func(from int, l label) (int, error) {
		if addr[l] < 0 {
			return 0, fmt.Errorf("seccomp: internal error: label %d never placed", l)
		}
		off := addr[l] - from - 1
		if off < 0 {
			return 0, fmt.Errorf("seccomp: internal error: backward jump to label %d", l)
		}
		return off, nil
	}
	for i, it := range a.items {
		switch it.kind {
		case kindLabel:
		case kindInsn:
			prog = append(prog, bpf.RawInstruction{Op: it.op, K: it.k})
		case kindJa:
			off, err := offset(pos[i], it.to)
			if err != nil {
				return nil, err
			}
			prog = append(prog, bpf.RawInstruction{Op: opJa, K: uint32(off)})
		case kindCond:
			if !long[i] {
				jt, err := offset(pos[i], it.jt)
				if err != nil {
					return nil, err
				}
				jf, err := offset(pos[i], it.jf)
				if err != nil {
					return nil, err
				}
				prog = append(prog, bpf.RawInstruction{Op: it.op, Jt: uint8(jt), Jf: uint8(jf), K: it.k})
				continue
			}
			jt, err := offset(pos[i]+1, it.jt)
			if err != nil {
				return nil, err
			}
			jf, err := offset(pos[i]+2, it.jf)
			if err != nil {
				return nil, err
			}
			prog = append(prog,
				bpf.RawInstruction{Op: it.op, Jt: 0, Jf: 1, K: it.k},
				bpf.RawInstruction{Op: opJa, K: uint32(jt)},
				bpf.RawInstruction{Op: opJa, K: uint32(jf)})
		}
	}
	for l, at := range addr {
		if at >= len(prog) {
			return nil, fmt.Errorf("seccomp: internal error: label %d past the end of the program", l)
		}
	}
	return prog, nil
}
