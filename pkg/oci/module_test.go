package oci

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// fakeWasm is the 8-byte header of an empty WebAssembly module: enough for ResolveModule.
var fakeWasm = []byte("\x00asm\x01\x00\x00\x00")

// tree builds files and links under root. Keys are paths relative to root; a value of
// "->TARGET" makes a symlink to TARGET, "dir/" makes a directory, "wasm" a fake module and
// anything else a file with that content.
func tree(t *testing.T, root string, entries map[string]string) {
	t.Helper()
	for name, v := range entries {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case strings.HasPrefix(v, "->"):
			err = os.Symlink(strings.TrimPrefix(v, "->"), p)
		case v == "dir/":
			err = os.MkdirAll(p, 0o755)
		case v == "wasm":
			err = os.WriteFile(p, fakeWasm, 0o644)
		default:
			err = os.WriteFile(p, []byte(v), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// within reports whether host is rootfs itself or a path below it.
func within(rootfs, host string) bool {
	rel, err := filepath.Rel(rootfs, host)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}

func TestResolveModule(t *testing.T) {
	type errKind func(error) bool
	cases := []struct {
		name  string
		files map[string]string
		args0 string
		cwd   string
		env   []string
		// wantGuest is the expected GuestPath; wantHost the expected HostPath relative to the rootfs
		// ("" means: only check that it is inside the rootfs).
		wantGuest, wantHost string
		// wantErr, when set, is what the error must be; errHas are substrings of its message.
		wantErr errKind
		errHas  []string
	}{
		{
			name:  "absolute path",
			files: map[string]string{"app/m.wasm": "wasm"},
			args0: "/app/m.wasm", cwd: "/elsewhere",
			wantGuest: "/app/m.wasm", wantHost: "app/m.wasm",
		},
		{
			name:      "absolute path is cleaned",
			files:     map[string]string{"app/m.wasm": "wasm"},
			args0:     "/app/./x/../m.wasm",
			wantGuest: "/app/m.wasm", wantHost: "app/m.wasm",
		},
		{
			name:  "relative to cwd",
			files: map[string]string{"app/m.wasm": "wasm"},
			args0: "./m.wasm", cwd: "/app",
			wantGuest: "/app/m.wasm", wantHost: "app/m.wasm",
		},
		{
			name:      "relative with empty cwd is relative to /",
			files:     map[string]string{"sub/m.wasm": "wasm"},
			args0:     "sub/m.wasm",
			wantGuest: "/sub/m.wasm", wantHost: "sub/m.wasm",
		},
		{
			name:  "bare name in PATH, first match wins",
			files: map[string]string{"a/m.wasm": "wasm", "b/m.wasm": "wasm"},
			args0: "m.wasm", env: []string{"PATH=/a:/b"},
			wantGuest: "/a/m.wasm", wantHost: "a/m.wasm",
		},
		{
			name:  "bare name in a later PATH dir",
			files: map[string]string{"a/other.wasm": "wasm", "b/m.wasm": "wasm"},
			args0: "m.wasm", env: []string{"PATH=/a:/b"},
			wantGuest: "/b/m.wasm", wantHost: "b/m.wasm",
		},
		{
			name:  "last PATH in env wins",
			files: map[string]string{"a/m.wasm": "wasm", "b/m.wasm": "wasm"},
			args0: "m.wasm", env: []string{"PATH=/a", "HOME=/", "PATH=/b"},
			wantGuest: "/b/m.wasm", wantHost: "b/m.wasm",
		},
		{
			name:  "default PATH when env has none",
			files: map[string]string{"usr/bin/m.wasm": "wasm", "bin/m.wasm": "wasm"},
			args0: "m.wasm", env: []string{"HOME=/root"},
			wantGuest: "/usr/bin/m.wasm", wantHost: "usr/bin/m.wasm",
		},
		{
			name:  "relative PATH entry is relative to cwd",
			files: map[string]string{"app/bin/m.wasm": "wasm"},
			args0: "m.wasm", cwd: "/app", env: []string{"PATH=/nope:bin"},
			wantGuest: "/app/bin/m.wasm", wantHost: "app/bin/m.wasm",
		},
		{
			name:    "missing absolute",
			files:   map[string]string{"app/other.wasm": "wasm"},
			args0:   "/app/m.wasm",
			wantErr: errdefs.IsNotFound, errHas: []string{"/app/m.wasm"},
		},
		{
			name:  "missing in PATH",
			files: map[string]string{"a/other.wasm": "wasm"},
			args0: "m.wasm", env: []string{"PATH=/a:/b"},
			wantErr: errdefs.IsNotFound, errHas: []string{`"m.wasm"`, "/a/m.wasm", "/b/m.wasm"},
		},
		{
			name:  "missing in one-dir PATH",
			files: map[string]string{"a/other.wasm": "wasm"},
			args0: "m.wasm", env: []string{"PATH=/a"},
			wantErr: errdefs.IsNotFound, errHas: []string{`"m.wasm" not found in the container's PATH (/a/m.wasm)`},
		},
		{
			name:    "directory",
			files:   map[string]string{"app/m.wasm": "dir/"},
			args0:   "/app/m.wasm",
			wantErr: errdefs.IsInvalidArgument, errHas: []string{"/app/m.wasm", "not a regular file"},
		},
		{
			name:    "not wasm",
			files:   map[string]string{"app/m.wasm": "#!/bin/sh\necho hi\n"},
			args0:   "/app/m.wasm",
			wantErr: errdefs.IsInvalidArgument, errHas: []string{"/app/m.wasm", "not a WebAssembly module"},
		},
		{
			name:    "empty file",
			files:   map[string]string{"app/m.wasm": ""},
			args0:   "/app/m.wasm",
			wantErr: errdefs.IsInvalidArgument, errHas: []string{"not a WebAssembly module"},
		},
		{
			name:      "absolute symlink resolves inside the rootfs",
			files:     map[string]string{"real/m.wasm": "wasm", "app/m.wasm": "->/real/m.wasm"},
			args0:     "/app/m.wasm",
			wantGuest: "/app/m.wasm", wantHost: "real/m.wasm",
		},
		{
			name:  "absolute symlink to a directory on the way",
			files: map[string]string{"real/bin/m.wasm": "wasm", "usr/local/bin": "->/real/bin"},
			args0: "m.wasm", env: []string{"PATH=/usr/local/bin"},
			wantGuest: "/usr/local/bin/m.wasm", wantHost: "real/bin/m.wasm",
		},
		{
			name:      "relative symlink",
			files:     map[string]string{"real/m.wasm": "wasm", "app/m.wasm": "->../real/m.wasm"},
			args0:     "/app/m.wasm",
			wantGuest: "/app/m.wasm", wantHost: "real/m.wasm",
		},
		{
			name:    "relative symlink climbing out is clamped to the rootfs",
			files:   map[string]string{"app/m.wasm": "->../../../../etc/passwd"},
			args0:   "/app/m.wasm",
			wantErr: errdefs.IsNotFound,
		},
		{
			name:      "absolute symlink to a host file is read in the rootfs",
			files:     map[string]string{"app/m.wasm": "->/etc/passwd", "etc/passwd": "wasm"},
			args0:     "/app/m.wasm",
			wantGuest: "/app/m.wasm", wantHost: "etc/passwd",
		},
		{
			name:    "absolute symlink to a missing host file",
			files:   map[string]string{"app/m.wasm": "->/etc/passwd"},
			args0:   "/app/m.wasm",
			wantErr: errdefs.IsNotFound,
		},
		{
			name:    "symlink loop",
			files:   map[string]string{"app/a.wasm": "->b.wasm", "app/b.wasm": "->a.wasm"},
			args0:   "/app/a.wasm",
			wantErr: errdefs.IsInvalidArgument, errHas: []string{"/app/a.wasm"},
		},
		{
			name:    "empty args0",
			args0:   "",
			wantErr: errdefs.IsInvalidArgument, errHas: []string{"args[0]"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rootfs := t.TempDir()
			tree(t, rootfs, tc.files)
			m, err := ResolveModule(rootfs, tc.args0, tc.cwd, tc.env)
			if m.HostPath != "" && !within(rootfs, m.HostPath) {
				t.Fatalf("HostPath %s is outside the rootfs %s", m.HostPath, rootfs)
			}
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("ResolveModule = %+v, want an error", m)
				}
				if !tc.wantErr(err) {
					t.Errorf("error %q has the wrong errdefs kind", err)
				}
				for _, s := range tc.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ResolveModule: %v", err)
			}
			if m.GuestPath != tc.wantGuest {
				t.Errorf("GuestPath = %q, want %q", m.GuestPath, tc.wantGuest)
			}
			if want := filepath.Join(rootfs, tc.wantHost); filepath.Clean(m.HostPath) != want {
				t.Errorf("HostPath = %q, want %q", m.HostPath, want)
			}
		})
	}
}

// A FIFO named as the module must be refused at once, not block ResolveModule (and with it the
// shim's Create) until some writer opens it.
func TestResolveModuleFIFO(t *testing.T) {
	rootfs := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(rootfs, "m.wasm"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := ResolveModule(rootfs, "/m.wasm", "/", nil)
		done <- err
	}()
	select {
	case err := <-done:
		if !errdefs.IsInvalidArgument(err) {
			t.Fatalf("err = %v, want invalid argument", err)
		}
	case <-time.After(5 * time.Second):
		// Unblock the open so the goroutine ends.
		if f, err := os.OpenFile(filepath.Join(rootfs, "m.wasm"), os.O_WRONLY, 0); err == nil {
			f.Close()
		}
		t.Fatal("ResolveModule blocked on a FIFO")
	}
}

func TestResolveModuleBadRootfs(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	_, err := ResolveModule(missing, "/m.wasm", "/", nil)
	if err == nil || !strings.Contains(err.Error(), "container rootfs "+missing+" does not exist") || !errdefs.IsNotFound(err) {
		t.Fatalf("err = %v, want a NotFound error naming the missing rootfs", err)
	}
}

func TestResolveIn(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		rel   string
		want  string // relative to the rootfs
		err   bool
	}{
		{name: "plain", files: map[string]string{"a/b": "x"}, rel: "a/b", want: "a/b"},
		{name: "leading slash", files: map[string]string{"a/b": "x"}, rel: "/a/b", want: "a/b"},
		{name: "empty is the root", rel: "", want: "."},
		{name: "dotdot stays inside", rel: "../../../etc/passwd", want: "etc/passwd"},
		{name: "dotdot in the middle", files: map[string]string{"a/b": "x"}, rel: "a/../../a/b", want: "a/b"},
		{name: "absolute link", files: map[string]string{"lib": "->/usr/lib", "usr/lib/x": "x"}, rel: "lib/x", want: "usr/lib/x"},
		{name: "absolute link to /", files: map[string]string{"r": "->/"}, rel: "r/r/r/etc", want: "etc"},
		{name: "absolute link to host path", files: map[string]string{"p": "->/etc/passwd"}, rel: "p", want: "etc/passwd"},
		{name: "relative link", files: map[string]string{"a/l": "->../b", "b/x": "x"}, rel: "a/l/x", want: "b/x"},
		{name: "relative link climbing out", files: map[string]string{"a/l": "->../../../../etc"}, rel: "a/l/passwd", want: "etc/passwd"},
		// rel is cleaned lexically first (as runc cleans mount destinations): "l/.." is gone before l is read.
		{name: "dotdot after a link is lexical", files: map[string]string{"a/l": "->../../x/y/z"}, rel: "a/l/..", want: "a"},
		{name: "dotdot inside a link target", files: map[string]string{"a/l": "->../x/../y", "y/f": "x"}, rel: "a/l/f", want: "y/f"},
		{name: "missing components kept", files: map[string]string{"a": "dir/"}, rel: "a/b/c", want: "a/b/c"},
		{name: "dangling link target kept", files: map[string]string{"l": "->/nope/x"}, rel: "l/y", want: "nope/x/y"},
		{name: "chain of links", files: map[string]string{"l1": "->l2", "l2": "->/l3", "l3": "->d", "d/f": "x"}, rel: "l1/f", want: "d/f"},
		{name: "loop", files: map[string]string{"a": "->b", "b": "->a"}, rel: "a", err: true},
		{name: "self loop", files: map[string]string{"a": "->a/x"}, rel: "a", err: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rootfs := t.TempDir()
			tree(t, rootfs, tc.files)
			got, err := ResolveIn(rootfs, tc.rel)
			if tc.err {
				if err == nil {
					t.Fatalf("ResolveIn = %q, want an error", got)
				}
				if !errdefs.IsInvalidArgument(err) {
					t.Errorf("error %v is not invalid argument", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ResolveIn: %v", err)
			}
			if !within(rootfs, got) {
				t.Fatalf("ResolveIn = %q, outside %q", got, rootfs)
			}
			if want := filepath.Join(rootfs, tc.want); filepath.Clean(got) != want {
				t.Errorf("ResolveIn = %q, want %q", got, want)
			}
		})
	}
}

// errors.Is must see both the errdefs kind and the cause through ResolveModule's wrapping.
func TestResolveModuleErrorKindsAreExclusive(t *testing.T) {
	rootfs := t.TempDir()
	_, err := ResolveModule(rootfs, "/nope.wasm", "/", nil)
	if !errors.Is(err, errdefs.ErrNotFound) || errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("err = %v: want only not found", err)
	}
}

// A component placed as a file in the rootfs (the docker buildx style) gets the component error,
// as from a layer or an artifact, not wazero's "invalid version header"; other binary versions and
// layers are named too.
func TestResolveModuleComponent(t *testing.T) {
	rootfs := t.TempDir()
	for name, head := range map[string]string{
		"comp.wasm":  "\x00asm\x0d\x00\x01\x00",
		"v2.wasm":    "\x00asm\x02\x00\x00\x00",
		"core.wasm":  "\x00asm\x01\x00\x00\x00",
		"short.wasm": "\x00asm\x01",
	} {
		if err := os.WriteFile(filepath.Join(rootfs, name), []byte(head), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err := ResolveModule(rootfs, "/comp.wasm", "/", nil)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "module /comp.wasm is a WebAssembly component (WASI preview 2); this shim runs WASI preview 1 core modules") {
		t.Errorf("component: %v", err)
	}
	if _, err := ResolveModule(rootfs, "/v2.wasm", "/", nil); err == nil || !strings.Contains(err.Error(), "module /v2.wasm has WebAssembly binary version 2, layer 0") {
		t.Errorf("version 2: %v", err)
	}
	if _, err := ResolveModule(rootfs, "/short.wasm", "/", nil); !errdefs.IsInvalidArgument(err) {
		t.Errorf("truncated header: %v", err)
	}
	if m, err := ResolveModule(rootfs, "/core.wasm", "/", nil); err != nil || m.GuestPath != "/core.wasm" {
		t.Errorf("core module: %+v %v", m, err)
	}
}
