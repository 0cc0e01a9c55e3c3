package wasi

import (
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"golang.org/x/sys/unix"
)

func TestTableNumbers(t *testing.T) {
	tb := &table{}
	a, b, c := &entry{wfd: 0}, &entry{wfd: 1}, &entry{wfd: 2}
	if tb.add(a) != 0 || tb.add(b) != 1 || tb.add(c) != 2 {
		t.Fatal("add does not number from 0")
	}
	tb.del(1)
	if tb.get(1) != nil {
		t.Fatal("del left the entry")
	}
	if n := tb.add(&entry{wfd: 7}); n != 1 {
		t.Errorf("add after del = %d, want the lowest free number 1", n)
	}
	tb.put(5, a)
	if tb.get(5) != a || tb.get(4) != nil || tb.get(1000) != nil {
		t.Error("put does not place the entry at its number alone")
	}
	// An i32 parameter arrives with garbage in the upper half of its stack slot.
	if tb.get(0xdead_beef_0000_0002) != c {
		t.Error("get does not ignore the upper half of the parameter")
	}
}

func TestRights(t *testing.T) {
	dir := &entry{ftype: typeDirectory, base: rightsDir, inheriting: rightsInheriting}
	if rightsDir&(rightFdRead|rightFdWrite|rightFdSeek|rightFdAllocate|rightFdFilestatSetSize) != 0 {
		t.Error("directories have file-only rights")
	}
	if !dir.may(rightPathFilestatSetSize) {
		t.Error("a directory may not truncate through path_open")
	}
	if dir.may(rightFdAllocate) {
		t.Error("a directory may fd_allocate")
	}
	ro := &entry{ftype: typeRegularFile, base: rightFdRead}
	if ro.may(rightFdWrite) {
		t.Error("a file opened for reading may write")
	}
	if !ro.may(rightFdSeek) {
		t.Error("a right that was never asked for, but not dropped, is refused (wazero checked none)")
	}
	ro.dropped = rightFdSeek
	if ro.may(rightFdSeek) {
		t.Error("a dropped right is still allowed")
	}
	if rightsOf(typeCharDevice)&(rightFdSeek|rightFdTell) != 0 {
		t.Error("a character device can seek (wasi-libc's isatty tests these rights)")
	}
}

func TestUnder(t *testing.T) {
	for _, c := range []struct {
		dir, rel, want string
		err            errno
	}{
		{"/", "a/b", "/a/b", errSuccess},
		{"/data", "x/../y", "/data/y", errSuccess},
		{"/data", "d/", "/data/d/", errSuccess},
		{"/data", "..", "", errNotcapable},
		{"/data", "a/../../etc", "", errNotcapable},
		{"/data", "/etc/passwd", "", errNotcapable},
	} {
		got, err := under(c.dir, c.rel)
		if got != c.want || err != c.err {
			t.Errorf("under(%q, %q) = %q, %d; want %q, %d", c.dir, c.rel, got, err, c.want, c.err)
		}
	}
}

func TestTimespecs(t *testing.T) {
	if _, err := timespecs(0, 0, fstMtim|fstMtimNow); err != errInval {
		t.Error("MTIM with MTIM_NOW accepted")
	}
	if _, err := timespecs(0, 0, fstAtim|fstAtimNow); err != errInval {
		t.Error("ATIM with ATIM_NOW accepted")
	}
	ts, err := timespecs(5, 3_000_000_007, fstMtim)
	if err != errSuccess || ts[0].Nsec != unix.UTIME_OMIT || ts[1].Sec != 3 || ts[1].Nsec != 7 {
		t.Errorf("timespecs(MTIM) = %v, %d", ts, err)
	}
	if ts, _ := timespecs(0, 0, fstAtimNow); ts[0].Nsec != unix.UTIME_NOW || ts[1].Nsec != unix.UTIME_OMIT {
		t.Errorf("timespecs(ATIM_NOW) = %v", ts)
	}
}

func TestToErrno(t *testing.T) {
	if toErrno(nil) != errSuccess || toErrno(unix.ENOENT) != 44 || toErrno(unix.EROFS) != errRofs || toErrno(unix.EHWPOISON) != errIO {
		t.Error("toErrno maps Linux errors wrongly")
	}
}

// TestSameFunctionsAsWazero: guests import exactly what wazero's WASI module exports, with the
// same signatures (the engine checks imports against this module).
func TestSameFunctionsAsWazero(t *testing.T) {
	ctx := context.Background()
	ours, theirs := wazero.NewRuntime(ctx), wazero.NewRuntime(ctx)
	defer ours.Close(ctx)
	defer theirs.Close(ctx)
	if _, err := Instantiate(ctx, ours); err != nil {
		t.Fatal(err)
	}
	wasi_snapshot_preview1.MustInstantiate(ctx, theirs)
	o := ours.Module(ModuleName).ExportedFunctionDefinitions()
	w := theirs.Module(ModuleName).ExportedFunctionDefinitions()
	if len(o) != len(w) {
		t.Errorf("%d functions, wazero has %d", len(o), len(w))
	}
	for name, d := range w {
		got, ok := o[name]
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		if fmt.Sprint(got.ParamTypes(), got.ResultTypes()) != fmt.Sprint(d.ParamTypes(), d.ResultTypes()) {
			t.Errorf("%s: %v %v, wazero's %v %v", name, got.ParamTypes(), got.ResultTypes(), d.ParamTypes(), d.ResultTypes())
		}
	}
}

// TestLayoutShared: instances sharing a Layout get the first one's descriptors, each as its own
// copy: what one instance changes in its table (rights it drops, a descriptor it closes) is
// never seen by the next.
func TestLayoutShared(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	if _, err := Instantiate(ctx, r); err != nil {
		t.Fatal(err)
	}
	compiled, err := r.CompileModule(ctx, callsWasm)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mc := wazero.NewModuleConfig().WithStdout(io.Discard).WithName("").
		WithFSConfig(wazero.NewFSConfig().WithDirMount(dir, "/data"))
	layout := NewLayout()
	own := func() *table {
		ictx := NewContext(ctx, Options{Layout: layout, HostDirs: map[string]string{"/data": dir}})
		mod, err := r.InstantiateModule(ictx, compiled, mc)
		if err != nil {
			t.Fatal(err)
		}
		defer mod.Close(ctx)
		if _, err := mod.ExportedFunction("fdstat").Call(ictx, 1); err != nil {
			t.Fatal(err)
		}
		return ictx.Value(tableKey{}).(*table)
	}
	first := own()
	if len(first.fds) != 4 || first.fds[3].preopen != "/data" || first.fds[3].host != dir || first.fds[3].ftype != typeDirectory {
		t.Fatalf("first instance's table: %d entries, fd 3 %+v; want stdio and the preopen /data", len(first.fds), first.fds[3])
	}
	first.fds[3].dropped = rightFdReaddir
	first.del(1)
	second := own()
	if len(second.fds) != 4 || second.fds[1] == nil || second.fds[3] == first.fds[3] {
		t.Fatal("the second instance shares entries with the first")
	}
	if second.fds[3].dropped != 0 || second.fds[3].preopen != "/data" || second.fds[3].host != dir {
		t.Errorf("second instance's fd 3 = %+v: not the initial layout", second.fds[3])
	}
}

func TestWithEnviron(t *testing.T) {
	for _, bad := range [][]string{{"NOVALUE"}, {"=v"}, {"A=1", "B=x\x00y"}} {
		if _, err := WithEnviron(context.Background(), bad); err == nil {
			t.Errorf("WithEnviron(%q) accepted", bad)
		}
	}
	if _, err := WithEnviron(context.Background(), []string{"A=", "B=c=d"}); err != nil {
		t.Errorf("WithEnviron refused valid entries: %v", err)
	}
}
