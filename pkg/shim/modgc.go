package shim

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/nodedir"
)

// The modules directory (engine.ModulesDir) is bounded like the compilation cache: after a module
// is copied in, the least recently used modules beyond engine.ModulesMaxBytes are removed. A
// module's mtime is its last use: a copy writes it, and a Create that reuses the file touches it.
//
// A module is never removed while a Create needs it. The Create that chose a module holds a shared
// flock(2) on the file (holdModule, or the copy's own descriptor) from the moment it has the path
// until its runner has read the module (runners read it whole at the start of engine.Prepare, so
// the shim releases the hold when Create returns). Eviction removes a file only under an
// exclusive flock taken without waiting: a held module is skipped. A Create that opened a file
// which an eviction removed before the Create's flock was granted notices (the path no longer
// names the file it locked) and copies the module again. See RATIONALE.md.

// moduleTmpPrefix begins the names of copies in progress (os.CreateTemp's ".tmp-*.wasm").
const moduleTmpPrefix = ".tmp-"

// staleModuleTmp is how old a temporary file must be before eviction removes it as the leftover of
// a shim that died while copying. Copies in progress are flocked too, so they are never removed,
// whatever their age.
const staleModuleTmp = time.Hour

// holdModule opens the module at path and takes a shared flock on it, so that no eviction removes
// it until the returned file is closed. It returns nil and no error when there is no file at path,
// or when it was removed while holdModule waited for the flock.
func holdModule(ctx context.Context, path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// An eviction holds its exclusive flock only for the time of an unlink, so the wait is short.
	if err := nodedir.Poll(ctx, 20*time.Millisecond, func() (bool, error) { return nodedir.TryLock(f, syscall.LOCK_SH) }); err != nil {
		f.Close()
		return nil, err
	}
	if !nodedir.SameFile(f, path) {
		// Evicted between the open and the flock: the caller copies it again.
		f.Close()
		return nil, nil
	}
	return f, nil
}

// touchModule marks the module at path as just used, for the least-recently-used eviction.
func touchModule(path string) {
	now := time.Now()
	_ = os.Chtimes(path, now, now)
}

// isModuleName reports whether name is a module's file name: <64 lowercase hex>.wasm.
func isModuleName(name string) bool {
	hex, ok := strings.CutSuffix(name, ".wasm")
	if !ok || len(hex) != 64 {
		return false
	}
	for _, c := range hex {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// evictModules keeps the total size of the modules in dir (the modules directory's sha256/) at
// most maxBytes (0: unbounded) by removing the least recently used (oldest mtime) ones, never the
// one named keep (the module just copied, which a Create is about to run) and never one that is
// held. A bound smaller than what must be kept is exceeded rather than honoured. It also removes
// temporary files older than staleModuleTmp that nobody holds, whatever the bound. Files that are
// neither modules nor temporary files are left alone. It returns how many modules it removed and
// their bytes.
func evictModules(dir string, maxBytes int64, keep string) (n int, freed int64) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0
	}
	var mods []nodedir.Entry
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		switch name := e.Name(); {
		case strings.HasPrefix(name, moduleTmpPrefix):
			if time.Since(info.ModTime()) > staleModuleTmp {
				removeUnheld(filepath.Join(dir, name), info.ModTime())
			}
		case isModuleName(name):
			mods = append(mods, nodedir.Entry{Name: name, Size: info.Size(), MTime: info.ModTime()})
		}
	}
	return nodedir.EvictLRU(mods, maxBytes, func(m nodedir.Entry) bool {
		return m.Name != keep && removeUnheld(filepath.Join(dir, m.Name), m.MTime)
	})
}

// removeUnheld removes the file at path if nobody holds it and it was not used since it was seen
// with mtime: under an exclusive flock taken without waiting, so a Create holding it keeps it, and
// a Create that opened it before the removal notices (holdModule) and copies it again.
func removeUnheld(path string, mtime time.Time) bool {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer f.Close() // releases the flock, after the unlink
	if ok, _ := nodedir.TryLock(f, syscall.LOCK_EX); !ok || !nodedir.SameFile(f, path) {
		return false
	}
	if info, err := f.Stat(); err != nil || !info.ModTime().Equal(mtime) {
		return false // touched since it was listed: it was just used
	}
	return os.Remove(path) == nil
}
