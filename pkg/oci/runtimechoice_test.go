package oci

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestChosenRuntime(t *testing.T) {
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		want        Runtime
		key         string
		bad         bool
	}{
		{name: "none", want: RuntimeAuto},
		{name: "container annotation", annotations: map[string]string{RuntimeAnnotation: "native"}, want: RuntimeNative, key: RuntimeAnnotation},
		{name: "case and blanks", annotations: map[string]string{RuntimeAnnotation: " Wasm "}, want: RuntimeWasm, key: RuntimeAnnotation},
		{name: "per container wins", annotations: map[string]string{ContainerNameAnnotation: "proxy", RuntimeAnnotation: "wasm", RuntimeAnnotationPrefix + "proxy": "native"}, want: RuntimeNative, key: RuntimeAnnotationPrefix + "proxy"},
		{name: "another container's", annotations: map[string]string{ContainerNameAnnotation: "app", RuntimeAnnotationPrefix + "proxy": "native"}, want: RuntimeAuto},
		{name: "auto", annotations: map[string]string{RuntimeAnnotation: "auto"}, want: RuntimeAuto, key: RuntimeAnnotation},
		{name: "bad", annotations: map[string]string{RuntimeAnnotation: "docker"}, key: RuntimeAnnotation, bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, key, err := ChosenRuntime(&specs.Spec{Annotations: tc.annotations})
			if tc.bad {
				if !errdefs.IsInvalidArgument(err) || key != tc.key {
					t.Fatalf("got %q %q %v, want an InvalidArgument error naming %s", got, key, err, tc.key)
				}
				return
			}
			if err != nil || got != tc.want || key != tc.key {
				t.Fatalf("got %q %q %v, want %q %q", got, key, err, tc.want, tc.key)
			}
		})
	}
}

func TestNativeProgram(t *testing.T) {
	root := t.TempDir()
	write := func(p string, data []byte, mode os.FileMode) {
		t.Helper()
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, mode); err != nil {
			t.Fatal(err)
		}
	}
	write("bin/envoy", append([]byte{0x7f, 'E', 'L', 'F'}, 2, 1, 1), 0o755)
	write("entry.sh", []byte("#!/bin/sh\necho hi\n"), 0o755)
	write("app.wasm", []byte{0, 'a', 's', 'm', 1, 0, 0, 0}, 0o644)
	write("notes.txt", []byte("hello"), 0o644)
	write("tiny", []byte{0x7f}, 0o755)
	if err := os.Symlink("/bin/envoy", filepath.Join(root, "proxy")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../bin/envoy", filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args0, cwd string
		env        []string
		guest      string
		kind       string
	}{
		{args0: "/bin/envoy", guest: "/bin/envoy", kind: "ELF executable"},
		{args0: "envoy", env: []string{"PATH=/usr/bin:/bin"}, guest: "/bin/envoy", kind: "ELF executable"},
		{args0: "./entry.sh", cwd: "/", guest: "/entry.sh", kind: "script"},
		{args0: "/proxy", guest: "/proxy", kind: "ELF executable"},
		{args0: "/escape", guest: "/escape", kind: "ELF executable"}, // resolved inside the rootfs
		{args0: "/app.wasm"},
		{args0: "/notes.txt"},
		{args0: "/tiny"},
		{args0: "/missing"},
		{args0: "missing", env: []string{"PATH=/bin"}},
		{args0: "/bin"},
		{args0: ""},
	} {
		guest, kind, ok := NativeProgram(root, tc.args0, tc.cwd, tc.env)
		if ok != (tc.guest != "") || guest != tc.guest || kind != tc.kind {
			t.Errorf("NativeProgram(%q) = %q %q %v, want %q %q", tc.args0, guest, kind, ok, tc.guest, tc.kind)
		}
	}
}
