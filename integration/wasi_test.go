//go:build linux

package integration

import (
	"os"
	"path/filepath"
	"testing"
)

// wasiCompatImage is testdata/build/images/wasicompat.tar: /wasicompat.wasm (testdata/c/wasicompat.c),
// one check per WASI preview 1 behaviour where pkg/wasi makes the shim behave as wasmtime and
// wazero v1.12 alone does not (docs/WASI.md). Every check fails on wazero's own WASI module.
const wasiCompatImage = "docker.io/library/wasm-wasicompat:latest"

// TestWASICompat runs each check of wasicompat through ctr, in a bind-mounted directory, and
// looks at what it left there from the host where that shows the behaviour better than the
// guest can.
func TestWASICompat(t *testing.T) {
	checks := []struct {
		name string
		// host checks the bind-mounted directory afterwards (nil: nothing to check there).
		host func(t *testing.T, dir string)
	}{
		{"renumber-stdout", func(t *testing.T, dir string) {
			wantFile(t, filepath.Join(dir, "stdout.txt"), "to the file through stdout\n")
		}},
		{"renumber-preopen", nil},
		{"renumber-closed", nil},
		{"poll-write", nil},
		{"symlink-times", func(t *testing.T, dir string) {
			l, err := os.Lstat(filepath.Join(dir, "link"))
			if err != nil {
				t.Fatal(err)
			}
			if l.Mode()&os.ModeSymlink == 0 || l.ModTime().Unix() != 1000000000 {
				t.Errorf("link: mode %v mtime %v, want a symlink with mtime 1000000000 s", l.Mode(), l.ModTime().Unix())
			}
			if f, err := os.Stat(filepath.Join(dir, "target")); err != nil || f.ModTime().Unix() == 1000000000 {
				t.Errorf("target: %v, mtime changed to the link's", err)
			}
		}},
		{"pwrite-append", func(t *testing.T, dir string) {
			wantFile(t, filepath.Join(dir, "append.txt"), "abXYZ")
		}},
		{"readlink-short", nil},
		{"open-flags", nil},
		{"rights", nil},
		{"prestat-name", nil},
		{"link-follow", func(t *testing.T, dir string) {
			if _, err := os.Lstat(filepath.Join(dir, "dst")); !os.IsNotExist(err) {
				t.Errorf("path_link with SYMLINK_FOLLOW made a link (lstat: %v)", err)
			}
		}},
		{"shutdown-notsock", nil},
		// Without the root preopen the mount is the only one, at fd 3 (the official suite's
		// c/sock_shutdown-invalid_fd expects nothing there).
		{"no-root", func(t *testing.T, dir string) {
			if _, err := os.Stat(filepath.Join(dir, "made")); err != nil {
				t.Errorf("the guest could not create a file through its only preopen: %v", err)
			}
		}},
	}
	// More ctr run flags, by check.
	flags := map[string][]string{"no-root": {"--annotation", "io.containerd.wazero.v1.root-preopen=false"}}
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		d.importImage(t, filepath.Join(imagesDir, "wasicompat.tar"))
		for _, c := range checks {
			t.Run(c.name, func(t *testing.T) {
				dir := t.TempDir()
				r := d.run(t, runOpts{
					image:  wasiCompatImage,
					args:   []string{"/wasicompat.wasm", c.name, "/data"},
					mounts: []mount{{src: dir, dst: "/data"}},
					flags:  flags[c.name],
				})
				wantSuccess(t, r)
				// renumber-stdout says ok on stderr: its stdout is the file.
				if !hasLine(r.stdout+r.stderr, "ok "+c.name) {
					t.Errorf("no line %q in the output\n%s", "ok "+c.name, r)
				}
				if c.host != nil {
					c.host(t, dir)
				}
			})
		}
	})
}

// wantFile fails t unless the file at path holds exactly want.
func wantFile(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Errorf("%s holds %q, want %q", path, b, want)
	}
}
