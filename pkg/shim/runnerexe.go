package shim

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sync/atomic"
	"syscall"

	"github.com/containerd/log"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/engine"
)

// runnerBinary finds runners' executable: engine.RunnerBinary beside the shim's own executable,
// used only when it was built together with the shim (see RATIONALE.md). Otherwise, or when it
// is missing, runners run from /proc/self/exe, the shim's own binary.
type runnerBinary struct {
	path   string // "" when the shim's executable is unknown
	warned atomic.Bool
	// verified is the identity of the file last found built with the shim: a file still the same
	// (device, inode, size, times) is not searched for the stamp again at the next Create.
	verified atomic.Pointer[fileID]
}

// fileID identifies a file's content: a file replaced on disk (an upgrade renames a new one into
// place) has another inode, and one rewritten in place other times.
type fileID struct {
	dev, ino, size   uint64
	mtimeNs, ctimeNs int64
}

func idOf(f *os.File) (fileID, bool) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return fileID{}, false
	}
	return fileID{dev: st.Dev, ino: st.Ino, size: uint64(st.Size), mtimeNs: st.Mtim.Nano(), ctimeNs: st.Ctim.Nano()}, true
}

// newRunnerBinary looks for the runner beside the executable of this process.
func newRunnerBinary() *runnerBinary {
	exe, err := os.Executable()
	if err != nil {
		return &runnerBinary{}
	}
	return &runnerBinary{path: filepath.Join(filepath.Dir(exe), engine.RunnerBinary)}
}

// open returns the runner executable for one Spawn (the caller closes it), or nil to run the
// shim's own binary. It checks the file each time it changed: after an upgrade replaced it, a
// shim that is still running from the old binary no longer matches it and falls back to its own.
// The same file as last time (fileID) is not searched again.
func (b *runnerBinary) open(ctx context.Context) *os.File {
	if b == nil || b.path == "" {
		return nil
	}
	if f, err := os.Open(b.path); err == nil {
		if id, ok := idOf(f); ok {
			if v := b.verified.Load(); v != nil && *v == id {
				return f
			}
		}
		f.Close()
	}
	f, err := openRunnerBinary(b.path)
	if err != nil {
		b.verified.Store(nil)
		if !errors.Is(err, fs.ErrNotExist) && b.warned.CompareAndSwap(false, true) {
			log.G(ctx).WithError(err).Warn("runners run from the shim's own binary")
		}
		return nil
	}
	if id, ok := idOf(f); ok {
		b.verified.Store(&id)
	}
	return f
}

// openRunnerBinary opens the runner executable at path and returns it when it can run this
// shim's runners: it was built from the same sources (it carries the shim's engine.BuildStamp,
// which must be set) for the same machine. The runner is executed from the returned file
// (engine.SpawnOptions.Exe), so a binary replaced on disk after the check can never run in its
// place. The error says why the file cannot be used; it wraps fs.ErrNotExist when there is none.
//
// The stamp is looked for in the runner's read-only data, where the linker put the string that -X
// gave engine.BuildStamp (the runner prints it with -build-stamp): the go command does not record
// -ldflags in the build information of -trimpath builds. It takes about 0.3 ms.
func openRunnerBinary(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if err := checkRunnerBinary(f, path); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func checkRunnerBinary(f *os.File, path string) error {
	if engine.BuildStamp == "" {
		return errors.New("the shim has no build stamp (built without the Makefile): it cannot tell whether " + path + " was built with it")
	}
	e, err := elf.NewFile(f)
	if err != nil {
		return fmt.Errorf("%s is not an executable: %w", path, err)
	}
	if m, ok := elfMachine[goruntime.GOARCH]; ok && e.Machine != m {
		return fmt.Errorf("%s is for another machine (%v, want %v)", path, e.Machine, m)
	}
	ro := e.Section(".rodata")
	if ro == nil || ro.Type == elf.SHT_NOBITS {
		return fmt.Errorf("%s has no read-only data section to look for its build stamp in", path)
	}
	found, err := streamContains(ro.Open(), []byte(engine.BuildStamp))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if !found {
		return fmt.Errorf("%s was not built together with this shim (its build stamp is not %s)", path, engine.BuildStamp)
	}
	return nil
}

// streamContains reports whether r holds want, reading it through a small buffer: the section is
// most of a megabyte, which would stay in the shim's heap (and resident) after a plain read.
func streamContains(r io.Reader, want []byte) (bool, error) {
	buf := make([]byte, 32<<10)
	have := 0
	for {
		n, err := r.Read(buf[have:])
		have += n
		if bytes.Contains(buf[:have], want) {
			return true, nil
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		// Keep the last len(want)-1 bytes: a match may straddle two reads.
		if k := len(want) - 1; have > k {
			copy(buf, buf[have-k:have])
			have = k
		}
	}
}

// elfMachine is the ELF machine of the architectures a runner may be built for.
var elfMachine = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "386": elf.EM_386, "arm": elf.EM_ARM,
	"riscv64": elf.EM_RISCV, "ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390, "loong64": elf.EM_LOONGARCH,
}
