package oci

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestBindMounts(t *testing.T) {
	src := t.TempDir()
	src2 := t.TempDir()
	file := filepath.Join(src, "file.txt")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(src, "missing")
	loop := filepath.Join(src, "loop")
	if err := os.Symlink("loop", loop); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		mounts  []specs.Mount
		want    []Mount
		wantErr func(error) bool
		errHas  string
	}{
		{name: "no mounts"},
		{
			name:   "type bind",
			mounts: []specs.Mount{{Type: "bind", Source: src, Destination: "/data"}},
			want:   []Mount{{Source: src, Destination: "/data"}},
		},
		{
			name:   "bind option without type",
			mounts: []specs.Mount{{Source: src, Destination: "/data", Options: []string{"bind"}}},
			want:   []Mount{{Source: src, Destination: "/data"}},
		},
		{
			name:   "rbind option is recursive",
			mounts: []specs.Mount{{Type: "none", Source: src, Destination: "/data", Options: []string{"rbind"}}},
			want:   []Mount{{Source: src, Destination: "/data", Recursive: true}},
		},
		{
			name:   "file source",
			mounts: []specs.Mount{{Type: "bind", Source: file, Destination: "/etc/hosts"}},
			want:   []Mount{{Source: file, Destination: "/etc/hosts"}},
		},
		{
			name: "kernel filesystems skipped",
			mounts: []specs.Mount{
				{Type: "proc", Source: "proc", Destination: "/proc"},
				{Type: "tmpfs", Source: "tmpfs", Destination: "/dev", Options: []string{"nosuid", "mode=755"}},
				{Type: "sysfs", Source: "sysfs", Destination: "/sys", Options: []string{"ro"}},
				{Type: "devpts", Source: "devpts", Destination: "/dev/pts"},
				{Type: "mqueue", Source: "mqueue", Destination: "/dev/mqueue"},
				{Type: "cgroup", Source: "cgroup", Destination: "/sys/fs/cgroup"},
				{Type: "bind", Source: src, Destination: "/data"},
			},
			want: []Mount{{Source: src, Destination: "/data"}},
		},
		{
			name:   "ro",
			mounts: []specs.Mount{{Type: "bind", Source: src, Destination: "/data", Options: []string{"rbind", "ro"}}},
			want:   []Mount{{Source: src, Destination: "/data", ReadOnly: true, Recursive: true}},
		},
		{
			name:   "ro then rw: last wins",
			mounts: []specs.Mount{{Type: "bind", Source: src, Destination: "/data", Options: []string{"ro", "rw"}}},
			want:   []Mount{{Source: src, Destination: "/data"}},
		},
		{
			name:   "rw then ro: last wins",
			mounts: []specs.Mount{{Type: "bind", Source: src, Destination: "/data", Options: []string{"rw", "nosuid", "ro"}}},
			want:   []Mount{{Source: src, Destination: "/data", ReadOnly: true, NoSuid: true}},
		},
		{
			name:   "nodev, nosuid, noexec; dev after nodev wins",
			mounts: []specs.Mount{{Type: "bind", Source: src, Destination: "/data", Options: []string{"rbind", "nodev", "nosuid", "noexec", "exec"}}},
			want:   []Mount{{Source: src, Destination: "/data", Recursive: true, NoDev: true, NoSuid: true}},
		},
		{
			name:   "rro is recursive read-only",
			mounts: []specs.Mount{{Type: "bind", Source: src, Destination: "/data", Options: []string{"rbind", "rro"}}},
			want:   []Mount{{Source: src, Destination: "/data", ReadOnly: true, Recursive: true, RecursiveReadOnly: true}},
		},
		{
			name:   "destination cleaned",
			mounts: []specs.Mount{{Type: "bind", Source: src, Destination: "/data/./x/../y/"}},
			want:   []Mount{{Source: src, Destination: "/data/y"}},
		},
		{
			name: "order preserved",
			mounts: []specs.Mount{
				{Type: "bind", Source: src2, Destination: "/z"},
				{Type: "tmpfs", Source: "tmpfs", Destination: "/tmp"},
				{Type: "bind", Source: src, Destination: "/a", Options: []string{"ro"}},
				{Type: "bind", Source: src2, Destination: "/m"},
			},
			want: []Mount{
				{Source: src2, Destination: "/z"},
				{Source: src, Destination: "/a", ReadOnly: true},
				{Source: src2, Destination: "/m"},
			},
		},
		{
			name:    "relative destination",
			mounts:  []specs.Mount{{Type: "bind", Source: src, Destination: "data"}},
			wantErr: errdefs.IsInvalidArgument, errHas: `"data"`,
		},
		{
			name:    "relative source",
			mounts:  []specs.Mount{{Type: "bind", Source: "src", Destination: "/data"}},
			wantErr: errdefs.IsInvalidArgument, errHas: `"src"`,
		},
		{
			name:    "missing source",
			mounts:  []specs.Mount{{Type: "bind", Source: missing, Destination: "/data"}},
			wantErr: errdefs.IsNotFound, errHas: missing,
		},
		{
			// It exists, as a link to itself: the message says why it cannot be used.
			name:    "source is a symlink loop",
			mounts:  []specs.Mount{{Type: "bind", Source: loop, Destination: "/data"}},
			wantErr: errdefs.IsInvalidArgument, errHas: loop + " (for /data) cannot be used: too many levels of symbolic links",
		},
		{
			name:    "relative source of a skipped mount is fine",
			mounts:  []specs.Mount{{Type: "proc", Source: "proc", Destination: "proc"}},
			wantErr: nil,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := BindMounts(&specs.Spec{Mounts: tc.mounts})
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("BindMounts = %+v, want an error", got)
				}
				if !tc.wantErr(err) {
					t.Errorf("error %q has the wrong errdefs kind", err)
				}
				if !strings.Contains(err.Error(), tc.errHas) {
					t.Errorf("error %q does not name %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatalf("BindMounts: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("BindMounts =\n  %+v\nwant\n  %+v", got, tc.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestMemoryLimit(t *testing.T) {
	withLimit := func(l *int64) *specs.Spec {
		return &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: l}}}}
	}
	cases := []struct {
		name string
		spec *specs.Spec
		want int64
	}{
		{"no linux", &specs.Spec{}, 0},
		{"no resources", &specs.Spec{Linux: &specs.Linux{}}, 0},
		{"no memory", &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{}}}, 0},
		{"no limit", withLimit(nil), 0},
		{"unlimited", withLimit(ptr[int64](-1)), 0},
		{"zero", withLimit(ptr[int64](0)), 0},
		{"64 MiB", withLimit(ptr[int64](64 << 20)), 64 << 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := MemoryLimit(tc.spec); got != tc.want {
				t.Errorf("MemoryLimit = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestMemoryPages(t *testing.T) {
	const MiB = 1 << 20
	cases := []struct {
		name  string
		limit int64
		want  uint32
	}{
		{"none", 0, MaxPages},
		{"negative", -1, MaxPages},
		{"1 byte", 1, 1},
		{"below MinReserve", 12 * MiB, 1},
		{"exactly MinReserve", MinReserve, 1},
		{"MinReserve plus one page", MinReserve + PageSize, 1},
		{"MinReserve plus two pages", MinReserve + 2*PageSize, 2},
		// An eighth of 32 MiB is 4 MiB < MinReserve: the reserve is 16 MiB, the guest gets 16 MiB.
		{"32 MiB", 32 * MiB, 16 * MiB / PageSize},
		{"64 MiB", 64 * MiB, 48 * MiB / PageSize},
		// From 128 MiB up the eighth is the larger reserve.
		{"128 MiB", 128 * MiB, 112 * MiB / PageSize},
		{"1 GiB", 1 << 30, (896 * MiB) / PageSize},
		{"4 GiB", 4 << 30, (3584 * MiB) / PageSize},
		{"just enough for 4 GiB", (4 << 30) * 8 / 7, MaxPages},
		{"8 GiB", 8 << 30, MaxPages},
		{"huge", 1 << 62, MaxPages},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := MemoryPages(tc.limit)
			if got != tc.want {
				t.Errorf("MemoryPages(%d) = %d, want %d", tc.limit, got, tc.want)
			}
			// The documented rule: the reserve (limit - guest share) is at least max(limit/8, MinReserve),
			// except for the 1-page floor.
			if tc.limit > 0 && got > 1 {
				reserve := tc.limit - int64(got)*PageSize
				if reserve < max(tc.limit/8, MinReserve) {
					t.Errorf("MemoryPages(%d) leaves a reserve of %d bytes, below the rule", tc.limit, reserve)
				}
			}
		})
	}
}

func TestLoadSpec(t *testing.T) {
	cases := []struct {
		name    string
		config  *string // nil: no config.json at all
		wantErr func(error) bool
		args    []string
	}{
		// The cause is kept (fs.ErrNotExist); LoadSpec does not add an errdefs kind for it.
		{name: "missing file", wantErr: func(err error) bool {
			return errors.Is(err, fs.ErrNotExist) && strings.Contains(err.Error(), ConfigFile)
		}},
		{name: "bad JSON", config: ptr(`{"process": `), wantErr: errdefs.IsInvalidArgument},
		{name: "no process", config: ptr(`{"ociVersion": "1.2.0"}`), wantErr: errdefs.IsInvalidArgument},
		{name: "no args", config: ptr(`{"process": {"args": []}}`), wantErr: errdefs.IsInvalidArgument},
		{name: "good", config: ptr(`{"ociVersion": "1.2.0", "process": {"args": ["/app.wasm", "x"], "cwd": "/"}}`), args: []string{"/app.wasm", "x"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bundle := t.TempDir()
			if tc.config != nil {
				if err := os.WriteFile(filepath.Join(bundle, ConfigFile), []byte(*tc.config), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			s, err := LoadSpec(bundle)
			if tc.wantErr != nil {
				if err == nil || !tc.wantErr(err) {
					t.Fatalf("LoadSpec err = %v, want a different kind", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadSpec: %v", err)
			}
			if !reflect.DeepEqual(s.Process.Args, tc.args) {
				t.Errorf("args = %q, want %q", s.Process.Args, tc.args)
			}
		})
	}
}

func TestEnv(t *testing.T) {
	env := []string{"A=1", "B=", "A=2", "NOEQ", "C=x=y", "=empty"}
	cases := []struct {
		key    string
		want   string
		wantOK bool
	}{
		{"A", "2", true},
		{"B", "", true},
		{"C", "x=y", true},
		{"D", "", false},
		{"NOEQ", "", false},
		{"", "empty", true},
	}
	for _, tc := range cases {
		t.Run(tc.key, func(t *testing.T) {
			got, ok := Env(env, tc.key)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("Env(%q) = %q, %v; want %q, %v", tc.key, got, ok, tc.want, tc.wantOK)
			}
		})
	}
	if _, ok := Env(nil, "A"); ok {
		t.Error("Env(nil) found a key")
	}
}
