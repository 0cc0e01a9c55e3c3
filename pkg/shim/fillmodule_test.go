package shim

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestFillModuleIsACopy: the filler's module is a memory copy that holds nothing of the rootfs
// (the source can be removed and its directory unmounted), with the same bytes and size; a module
// over the cap is the file itself, for the size check to refuse.
func TestFillModuleIsACopy(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "m.wasm")
	data := bytes.Repeat([]byte("\x00asm\x01\x00\x00\x00"), 1000)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := fillModule(src, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if link, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd()))); !strings.HasPrefix(link, "/memfd:") {
		t.Errorf("the filler's module is %q, want a memfd", link)
	}
	os.Remove(src)
	fi, err := f.Stat()
	if err != nil || fi.Size() != int64(len(data)) || !fi.Mode().IsRegular() {
		t.Fatalf("stat of the copy: %v %v", fi, err)
	}
	got, _ := io.ReadAll(f)
	if !bytes.Equal(got, data) {
		t.Errorf("the copy differs from the module")
	}

	os.WriteFile(src, data, 0o644)
	big, err := fillModule(src, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	if big.Name() != src {
		t.Errorf("a module over the cap is %q, want the file itself", big.Name())
	}
}
