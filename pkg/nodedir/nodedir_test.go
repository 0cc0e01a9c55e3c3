package nodedir

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestTryLockConflicts(t *testing.T) {
	p := filepath.Join(t.TempDir(), "l")
	a, _ := os.Create(p)
	defer a.Close()
	b, _ := os.Open(p)
	defer b.Close()
	if ok, err := TryLock(a, syscall.LOCK_EX); !ok || err != nil {
		t.Fatalf("first exclusive lock: %v %v", ok, err)
	}
	if ok, err := TryLock(b, syscall.LOCK_SH); ok || err != nil {
		t.Fatalf("shared lock under an exclusive one: taken=%v err=%v, want refused without error", ok, err)
	}
	a.Close() // releases the lock
	if ok, err := TryLock(b, syscall.LOCK_SH); !ok || err != nil {
		t.Fatalf("shared lock after the holder closed: %v %v", ok, err)
	}
}

func TestPoll(t *testing.T) {
	n := 0
	if err := Poll(context.Background(), 5*time.Millisecond, func() (bool, error) { n++; return n == 4, nil }); err != nil || n != 4 {
		t.Fatalf("Poll: err %v after %d tries, want success at the 4th", err, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := Poll(ctx, 5*time.Millisecond, func() (bool, error) { return false, nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Poll that never succeeds: %v, want the context's deadline", err)
	}
	boom := errors.New("boom")
	if err := Poll(context.Background(), time.Millisecond, func() (bool, error) { return false, boom }); err != boom {
		t.Fatalf("Poll: %v, want the try's error at once", err)
	}
}

func TestSameFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	f, _ := os.Create(p)
	defer f.Close()
	if !SameFile(f, p) {
		t.Fatal("a file is not the same as itself")
	}
	os.Remove(p)
	os.WriteFile(p, nil, 0o600)
	if SameFile(f, p) {
		t.Fatal("a replaced file counted as the same")
	}
}

func TestEvictLRU(t *testing.T) {
	t0 := time.Unix(1000, 0)
	entries := []Entry{
		{"new", 10, t0.Add(3 * time.Second)},
		{"old-b", 10, t0},
		{"old-a", 10, t0},
		{"mid", 10, t0.Add(time.Second)},
	}
	var removed []string
	n, freed := EvictLRU(entries, 15, func(e Entry) bool {
		if e.Name == "old-a" {
			return false // held: kept
		}
		removed = append(removed, e.Name)
		return true
	})
	// 40 bytes, bound 15: old-a is kept, so old-b, mid and new go... until 10 (old-a) remains.
	if want := []string{"old-b", "mid", "new"}; !slices.Equal(removed, want) || n != 3 || freed != 30 {
		t.Fatalf("removed %v (n=%d freed=%d), want %v: oldest first, ties by name, held kept", removed, n, freed, want)
	}
	if n, _ := EvictLRU(entries, 40, func(Entry) bool { t.Fatal("removed under the bound"); return true }); n != 0 {
		t.Fatal("evicted while under the bound")
	}
	if n, _ := EvictLRU(entries, 0, func(Entry) bool { t.Fatal("removed with no bound"); return true }); n != 0 {
		t.Fatal("evicted with maxBytes 0 (unbounded)")
	}
}

func TestPrivateDir(t *testing.T) {
	d := filepath.Join(t.TempDir(), "a", "b")
	if err := PrivateDir(d); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(d); st.Mode().Perm() != 0o700 {
		t.Fatalf("mode %v, want 0700", st.Mode().Perm())
	}
	os.Chmod(d, 0o777)
	if err := PrivateDir(d); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Fatalf("a world-writable dir: %v, want refused", err)
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o600)
	if err := PrivateDir(f); err == nil {
		t.Fatal("a file accepted as a private dir")
	}
}
