package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/nodedir"
)

// The compilation cache directory holds wazero's own entries (in its per-version subdirectory
// wazero-VERSION-ARCH-OS, named by a hash of the module, wazero's version and the CPU features)
// and, beside them, this package's bookkeeping, keyed by the sha256 of the module's bytes:
//
//	seen/<hex>        marker: the module was compiled with this cache; lists (one per line, relative
//	                  to the cache directory) the entry files that compile wrote
//	locks/<hex>.lock  flock(2)ed while a runner compiles the module without a marker
//
// Everything lives in the root-only cache directory (PrivateDir), so no container can plant a
// marker or a lock. See RATIONALE.md ("Why flock ...").
const (
	seenDir  = "seen"
	locksDir = "locks"
)

// lockWait bounds how long a runner waits for another runner compiling the same module before it
// compiles the module itself. A variable for tests.
var lockWait = 2 * time.Minute

// staleTmp is how old a temporary file of wazero's (an entry being written) must be before the
// size bound removes it as the leftover of a runner that died while writing.
const staleTmp = time.Hour

var errLockTimeout = errors.New("timed out waiting for another runner compiling the same module")

// bookkeeping reports whether rel, a path relative to the cache directory, is the package's own
// bookkeeping rather than a wazero entry.
func bookkeeping(rel string) bool {
	first, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
	return first == seenDir || first == locksDir || first == ScratchDir
}

// ScratchDir is the cache directory's place for the temporary files of tools that compile into
// the cache from outside a container (the node's warm agent, pkg/warm, whose image has no /tmp).
// Its files are not entries: the size bound never counts or removes them.
const ScratchDir = "scratch"

// cacheEntry is a file of wazero's in the cache directory.
type cacheEntry struct {
	rel   string // relative to the cache directory
	size  int64
	mtime time.Time
	ino   uint64
}

// listEntries returns wazero's entry files under dir (any wazero version's), skipping the
// bookkeeping directories and temporary files.
func listEntries(dir string) map[string]cacheEntry {
	out := map[string]cacheEntry{}
	if dir == "" {
		return out
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, rerr := filepath.Rel(dir, p)
		if rerr != nil || rel == "." {
			return nil
		}
		if d.IsDir() {
			if bookkeeping(rel) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || strings.HasSuffix(d.Name(), ".tmp") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		e := cacheEntry{rel: rel, size: info.Size(), mtime: info.ModTime()}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			e.ino = st.Ino
		}
		out[rel] = e
		return nil
	})
	return out
}

// newEntries returns the entries of after that are not in before, or are another file (wazero
// writes an entry to a temporary file and renames it, so a rewritten entry has a new inode). The
// modification time is not compared: other runners touch the entries they load (their last use),
// which must not make this runner's load look like a compile. (An entry removed and written again
// may get its old inode back: that happens only after a purge, which Prepare counts as a miss.)
func newEntries(before, after map[string]cacheEntry) []string {
	var out []string
	for rel, e := range after {
		if b, ok := before[rel]; !ok || b.ino != e.ino {
			out = append(out, rel)
		}
	}
	sort.Strings(out)
	return out
}

// readMarker returns whether the module with sha256 hex has a marker, and the entry files it
// lists. Lines that are not a clean path inside the cache, outside the bookkeeping, are ignored:
// a damaged marker costs only its fast path.
func readMarker(dir, hex string) (ok bool, files []string) {
	b, err := os.ReadFile(filepath.Join(dir, seenDir, hex))
	if err != nil {
		return false, nil
	}
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && filepath.IsLocal(l) && !bookkeeping(l) {
			files = append(files, filepath.Clean(l))
		}
	}
	return true, files
}

// writeMarker records that the module with sha256 hex was compiled into files, atomically
// (a temporary file renamed into place).
func writeMarker(dir, hex string, files []string) error {
	sd := filepath.Join(dir, seenDir)
	if err := os.MkdirAll(sd, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(sd, "."+hex+".*.tmp")
	if err != nil {
		return err
	}
	_, err = f.WriteString(strings.Join(files, "\n") + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(sd, hex))
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// touch marks files (relative to dir) as just used, for the least-recently-used eviction.
func touch(dir string, files []string) {
	now := time.Now()
	for _, f := range files {
		_ = os.Chtimes(filepath.Join(dir, f), now, now)
	}
}

// lockModule takes the exclusive flock of the module with sha256 hex, waiting at most wait.
// The kernel releases it when the returned file is closed or the process dies (even by SIGKILL
// or the OOM killer), so a dead runner never leaves others waiting.
func lockModule(dir, hex string, wait time.Duration) (*os.File, error) {
	ld := filepath.Join(dir, locksDir)
	if err := os.MkdirAll(ld, 0o700); err != nil {
		return nil, err
	}
	return lockFile(filepath.Join(ld, hex+".lock"), time.Now().Add(wait))
}

// lockFile flocks path exclusively, polling until deadline. A lock file may be removed by the
// size bound (under its lock); a runner that locked the removed file opens it again.
func lockFile(path string, deadline time.Time) (*os.File, error) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, err
		}
		err = nodedir.Poll(ctx, 50*time.Millisecond, func() (bool, error) { return nodedir.TryLock(f, syscall.LOCK_EX) })
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			f.Close()
			return nil, errLockTimeout
		case err != nil:
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		case nodedir.SameFile(f, path):
			return f, nil
		}
		f.Close()
	}
}

// removeLock removes the lock file of the module with sha256 hex if nobody holds it: it is
// removed while locked, and a runner that was waiting on it notices (lockFile) and retries.
func removeLock(dir, hex string) {
	p := filepath.Join(dir, locksDir, hex+".lock")
	f, err := os.OpenFile(p, os.O_RDWR|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer f.Close()
	if ok, _ := nodedir.TryLock(f, syscall.LOCK_EX); ok && nodedir.SameFile(f, p) {
		_ = os.Remove(p)
	}
}

// evict keeps the total size of the cache's entries under dir at most maxBytes by removing the
// least recently used ones (oldest mtime: a hit touches its entries), never those in keep (the
// entries this runner just wrote, which it is about to run). An evicted entry's markers go first,
// so no runner skips the lock for a module whose entry is gone. It also removes temporary files
// older than staleTmp. It returns how many entries it removed and their bytes.
func evict(dir string, maxBytes int64, keep []string) (n int, freed int64) {
	if dir == "" || maxBytes <= 0 {
		return 0, 0
	}
	removeStaleTmp(dir)
	entries := listEntries(dir)
	kept := map[string]bool{}
	for _, k := range keep {
		kept[filepath.Clean(k)] = true
	}
	var (
		list      []nodedir.Entry
		markersOf map[string][]string // which markers name each entry, read only when needed
	)
	for _, e := range entries {
		list = append(list, nodedir.Entry{Name: e.rel, Size: e.size, MTime: e.mtime})
	}
	return nodedir.EvictLRU(list, maxBytes, func(e nodedir.Entry) bool {
		if kept[e.Name] {
			return false
		}
		if markersOf == nil {
			markersOf = entryMarkers(dir)
		}
		for _, m := range markersOf[e.Name] {
			_ = os.Remove(filepath.Join(dir, seenDir, m))
			removeLock(dir, m)
		}
		err := os.Remove(filepath.Join(dir, e.Name))
		return err == nil || errors.Is(err, fs.ErrNotExist)
	})
}

// entryMarkers maps each cache entry (its path below dir) to the markers that name it.
func entryMarkers(dir string) map[string][]string {
	markersOf := map[string][]string{}
	ents, err := os.ReadDir(filepath.Join(dir, seenDir))
	if err != nil {
		return markersOf
	}
	for _, m := range ents {
		if !m.Type().IsRegular() || strings.HasPrefix(m.Name(), ".") {
			continue
		}
		_, files := readMarker(dir, m.Name())
		for _, f := range files {
			markersOf[f] = append(markersOf[f], m.Name())
		}
	}
	return markersOf
}

// removeStaleTmp removes temporary files (entries and markers being written) older than staleTmp:
// what a runner killed while writing leaves behind.
func removeStaleTmp(dir string) {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			if rel, _ := filepath.Rel(dir, p); filepath.ToSlash(rel) == locksDir {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && strings.HasSuffix(d.Name(), ".tmp") {
			if info, err := d.Info(); err == nil && time.Since(info.ModTime()) > staleTmp {
				_ = os.Remove(p)
			}
		}
		return nil
	})
}
