package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

func write(t *testing.T, root, p, content string) {
	t.Helper()
	full := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, root, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// assertNothingInstalled checks that a refused run left no binary, config or backup behind.
func assertNothingInstalled(t *testing.T, o options, cfg string, before []byte) {
	t.Helper()
	for _, b := range []string{shimName, runnerName} {
		if _, err := os.Lstat(filepath.Join(o.hostRoot, "usr/local/bin", b)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("refused, but installed %s", b)
		}
	}
	got, err := os.ReadFile(filepath.Join(o.hostRoot, cfg))
	switch {
	case before == nil && !errors.Is(err, os.ErrNotExist):
		t.Errorf("refused, but created %s", cfg)
	case before != nil && !bytes.Equal(got, before):
		t.Errorf("refused, but changed %s:\n%s", cfg, got)
	}
	if _, err := os.Lstat(filepath.Join(o.hostRoot, cfg+backupSuffix)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused, but wrote a backup")
	}
}

// Each distribution's layout: detected from its paths, the right file edited in the form its
// containerd reads, the right unit restarted and socket asked.
func TestLayouts(t *testing.T) {
	base3 := "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n"
	base2 := "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n"
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, root string)
		file    string // edited or created
		want    string // in the file
		unit    string
		socket  string
		summary string
	}{
		{
			name: "containerd-1.6-no-config",
			setup: func(t *testing.T, root string) {
				setContainerd(t, root, "/usr/bin/containerd", "1.6.20~ds1")
			},
			file: "/etc/containerd/config.toml", want: "version = 2\n\n# containerd 1.x's default runtime: a version 2 file's runtimes replace the built-in ones.\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n\n# Added by wazero-shim-installer: WebAssembly (WASI) workloads, RuntimeClass handler \"wazero\".\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.wazero]\n",
			unit: "containerd", socket: "/run/containerd/containerd.sock",
			summary: "config: created /etc/containerd/config.toml with runtime wazero (version 2, for containerd 1.6.20~ds1; there was none), checked by containerd 1.6.20~ds1",
		},
		{
			name: "containerd-2-in-usr-local",
			setup: func(t *testing.T, root string) {
				os.Remove(filepath.Join(root, "usr/bin/containerd"))
				setContainerd(t, root, "/usr/local/bin/containerd", "2.2.9")
			},
			file: "/etc/containerd/config.toml", want: "version = 3\n\n# Added by",
			unit: "containerd", socket: "/run/containerd/containerd.sock",
		},
		{
			name: "k3s-containerd-2",
			setup: func(t *testing.T, root string) {
				os.Remove(filepath.Join(root, "usr/bin/containerd"))
				// data/current is a link with an absolute target: resolved in the host root.
				setContainerd(t, root, "/var/lib/rancher/k3s/data/abc123/bin/containerd", "v2.0.5-k3s1")
				os.Symlink("/var/lib/rancher/k3s/data/abc123", filepath.Join(root, "var/lib/rancher/k3s/data/current"))
				write(t, root, "/var/lib/rancher/k3s/agent/etc/containerd/config.toml", base3)
				write(t, root, "/etc/systemd/system/k3s-agent.service", "")
			},
			file: "/var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl",
			want: "{{ template \"base\" . }}\n\n# Added by wazero-shim-installer: WebAssembly (WASI) workloads, RuntimeClass handler \"wazero\".\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.wazero]\n",
			unit: "k3s-agent", socket: "/run/k3s/containerd/containerd.sock",
			summary: "checked by containerd 2.0.5-k3s1",
		},
		{
			name: "k3s-containerd-1.7-existing-template",
			setup: func(t *testing.T, root string) {
				os.Remove(filepath.Join(root, "usr/bin/containerd"))
				setContainerd(t, root, "/var/lib/rancher/k3s/data/current/bin/containerd", "v1.7.22-k3s1")
				write(t, root, "/var/lib/rancher/k3s/agent/etc/containerd/config.toml", base2)
				write(t, root, "/var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl", "{{ template \"base\" . }}\n# mine\n")
				write(t, root, "/etc/systemd/system/multi-user.target.wants/k3s.service", "")
			},
			file: "/var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl",
			want: "{{ template \"base\" . }}\n# mine\n\n# Added by wazero-shim-installer: WebAssembly (WASI) workloads, RuntimeClass handler \"wazero\".\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.wazero]\n",
			unit: "k3s", socket: "/run/k3s/containerd/containerd.sock",
		},
		{
			name: "rke2",
			setup: func(t *testing.T, root string) {
				os.Remove(filepath.Join(root, "usr/bin/containerd"))
				setContainerd(t, root, "/var/lib/rancher/rke2/bin/containerd", "v2.1.4-k3s1")
				write(t, root, "/var/lib/rancher/rke2/agent/etc/containerd/config.toml", base3)
				write(t, root, "/usr/local/lib/systemd/system/rke2-server.service", "")
			},
			file: "/var/lib/rancher/rke2/agent/etc/containerd/config-v3.toml.tmpl",
			want: "{{ template \"base\" . }}\n\n# Added by", unit: "rke2-server", socket: "/run/k3s/containerd/containerd.sock",
		},
		{
			name: "k0s",
			setup: func(t *testing.T, root string) {
				os.Remove(filepath.Join(root, "usr/bin/containerd"))
				setContainerd(t, root, "/var/lib/k0s/bin/containerd", "1.7.27")
				write(t, root, "/etc/systemd/system/k0sworker.service", "")
			},
			file: "/etc/k0s/containerd.d/wazero.toml",
			want: "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n\n# Added by wazero-shim-installer: WebAssembly (WASI) workloads, RuntimeClass handler \"wazero\".\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.wazero]\n",
			unit: "k0sworker", socket: "/run/k0s/containerd.sock",
		},
		{
			name: "microk8s",
			setup: func(t *testing.T, root string) {
				os.Remove(filepath.Join(root, "usr/bin/containerd"))
				setContainerd(t, root, "/snap/microk8s/current/bin/containerd", "1.6.28")
				write(t, root, "/var/snap/microk8s/current/args/containerd-template.toml",
					"version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.7\"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n[plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"${SNAP_DATA}/opt/cni/bin\"\n")
			},
			file: "/var/snap/microk8s/current/args/containerd-template.toml",
			want: "  bin_dir = \"${SNAP_DATA}/opt/cni/bin\"\n\n# Added by wazero-shim-installer: WebAssembly (WASI) workloads, RuntimeClass handler \"wazero\".\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.wazero]\n",
			unit: "snap.microk8s.daemon-containerd", socket: "/var/snap/microk8s/common/run/containerd.sock",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			restarts := 0
			o, _ := node(t, nil, &restarts)
			tc.setup(t, o.hostRoot)
			var units, sockets []string
			o.restartFn = func(_, unit string, _ io.Writer) error { units = append(units, unit); return nil }
			o.criCheck = func(sock, h string, _ time.Duration) error {
				sockets = append(sockets, strings.TrimPrefix(sock, o.hostRoot))
				return nil
			}
			sum, err := run(o)
			if err != nil {
				t.Fatalf("%v (summary %s)", err, sum)
			}
			if got := read(t, o.hostRoot, tc.file); !strings.Contains(got, tc.want) {
				t.Errorf("%s:\n%s\nwant it to contain:\n%s", tc.file, got, tc.want)
			}
			if !strings.Contains(sum, tc.summary) {
				t.Errorf("summary %s\nwant %s", sum, tc.summary)
			}
			if len(units) != 1 || units[0] != tc.unit {
				t.Errorf("restarted %v, want [%s]", units, tc.unit)
			}
			if len(sockets) != 1 || sockets[0] != tc.socket {
				t.Errorf("asked the CRI at %v, want [%s]", sockets, tc.socket)
			}
			// Idempotent: the second run changes and restarts nothing.
			before := read(t, o.hostRoot, tc.file)
			if sum, err := run(o); err != nil || !strings.Contains(sum, "config: unchanged") || len(units) != 1 {
				t.Errorf("second run: %s, %v, restarts %v", sum, err, units)
			}
			if read(t, o.hostRoot, tc.file) != before {
				t.Error("second run changed the file")
			}
		})
	}
}

func TestLayoutOverrideAndAmbiguity(t *testing.T) {
	restarts := 0
	o, _ := node(t, nil, &restarts)
	write(t, o.hostRoot, "/var/lib/rancher/k3s/agent/etc/containerd/config.toml", "version = 3\n")
	write(t, o.hostRoot, "/var/snap/microk8s/current/args/containerd-template.toml", "version = 2\n")
	if _, err := run(o); err == nil || !strings.Contains(err.Error(), "k3s and microk8s") || !strings.Contains(err.Error(), "-distro") {
		t.Errorf("two layouts: %v", err)
	}
	assertNothingInstalled(t, o, "/etc/containerd/config.toml", nil)
	// -distro containerd with explicit -config and -containerd wins.
	o.distro = "containerd"
	o.config = "/srv/ctrd/config.toml"
	o.containerd = "/opt/ctrd/containerd"
	setContainerd(t, o.hostRoot, "/opt/ctrd/containerd", "2.4.2")
	write(t, o.hostRoot, "/srv/ctrd/config.toml", "version = 3\n")
	if sum, err := run(o); err != nil || !strings.Contains(sum, "config: added runtime wazero (version 3), checked by containerd 2.4.2") {
		t.Errorf("override: %s, %v", sum, err)
	}
	o.distro = "nomad"
	if _, err := run(o); err == nil || !strings.Contains(err.Error(), "want auto, containerd, k3s, rke2, k0s, microk8s") {
		t.Errorf("unknown -distro: %v", err)
	}
}

// What the installer refuses, it refuses before installing anything.
func TestRefusalInstallsNothing(t *testing.T) {
	v3 := []byte("version = 3\n[plugins.'io.containerd.cri.v1.runtime']\n  enable_selinux = false\n")
	for _, tc := range []struct {
		name   string
		config []byte
		setup  func(t *testing.T, o *options)
		want   string
	}{
		{"version-1", []byte("root = \"/var/lib/containerd\"\n"), nil, "version 1 config"},
		{"docker-disabled-cri", []byte("disabled_plugins = [\"cri\"]\n"), nil, `turns off containerd's CRI plugin ("cri")`},
		{"v2-disabled-cri", []byte("version = 2\ndisabled_plugins = [\"cri\"]\n"), nil, `remove "cri" from disabled_plugins`},
		{"v3-for-containerd-1.6", v3, func(t *testing.T, o *options) { setContainerd(t, o.hostRoot, "/usr/bin/containerd", "1.6.20~ds1") },
			"the node's containerd is 1.6.20~ds1, which reads only version 2 configs"},
		{"containerd-refuses", v3, func(t *testing.T, o *options) { os.Setenv("WZ_FAKE_REFUSE", "failed to load TOML: bad things") },
			"containerd refuses the edited config (`containerd --config FILE config dump`): exit status 1: containerd: failed to load TOML: bad things"},
		{"v2-without-default-runtime-for-1.6", []byte("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  enable_selinux = false\n"),
			func(t *testing.T, o *options) { setContainerd(t, o.hostRoot, "/usr/bin/containerd", "1.6.20~ds1") },
			`without its default runtime "runc" (default_runtime_name): the CRI plugin would not start`},
		{"no-containerd", v3, func(t *testing.T, o *options) { os.Remove(filepath.Join(o.hostRoot, "usr/bin/containerd")) }, "no containerd binary for containerd at /usr/bin/containerd"},
		{"conflict", []byte("version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.wazero]\n  runtime_type = \"io.containerd.runc.v2\"\n"), nil, "conflict"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("WZ_FAKE_REFUSE", "")
			restarts := 0
			o, _ := node(t, tc.config, &restarts)
			o.runnerSrc = filepath.Join(t.TempDir(), runnerName)
			os.WriteFile(o.runnerSrc, []byte("runner"), 0o644)
			if tc.setup != nil {
				tc.setup(t, &o)
			}
			sum, err := run(o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant it to say %s", err, tc.want)
			}
			if sum != "" || restarts != 0 {
				t.Errorf("summary %q, restarts %d", sum, restarts)
			}
			assertNothingInstalled(t, o, "/etc/containerd/config.toml", tc.config)
		})
	}
}

// A containerd that does not come back with the handler listed: the config is put back, containerd
// restarted again, the error says so (exit 4), and the same edit is not retried without -retry.
func TestRestartRolledBack(t *testing.T) {
	in, _ := os.ReadFile("testdata/v3-cri.toml")
	restarts := 0
	o, _ := node(t, in, &restarts)
	var calls []string
	o.criCheck = func(sock, h string, _ time.Duration) error {
		calls = append(calls, "check "+h)
		if h != "" {
			return errors.New("the CRI at " + sock + " answers but does not list runtime handler \"wazero\"")
		}
		return nil
	}
	sum, err := run(o)
	if !errors.Is(err, errRolledBack) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"after restarting containerd: the CRI at", "Rolled back: put /etc/containerd/config.toml back as it was", "and restarted containerd; containerd answers again with the previous config", rollbackMarker} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	if !strings.HasSuffix(sum, "restart: rolled back") || restarts != 2 || strings.Join(calls, ",") != "check wazero,check " {
		t.Errorf("summary %s, restarts %d, checks %v", sum, restarts, calls)
	}
	if got := read(t, o.hostRoot, "etc/containerd/config.toml"); got != string(in) {
		t.Errorf("config not restored:\n%s", got)
	}
	if got := read(t, o.hostRoot, "etc/containerd/config.toml"+backupSuffix); got != string(in) {
		t.Errorf("backup:\n%s", got)
	}
	// The next run (the DaemonSet's init container restarting) does not restart containerd again.
	if _, err := run(o); err == nil || !strings.Contains(err.Error(), "an earlier run restarted containerd with this very edit") || restarts != 2 {
		t.Errorf("second run: %v, restarts %d", err, restarts)
	}
	// -retry tries again; a success removes the marker.
	o.retry = true
	o.criCheck = func(string, string, time.Duration) error { return nil }
	if sum, err := run(o); err != nil || !strings.Contains(sum, "restart: restarted containerd") || restarts != 3 {
		t.Errorf("retry: %s, %v", sum, err)
	}
	if _, err := os.Stat(filepath.Join(o.hostRoot, rollbackMarker)); !errors.Is(err, os.ErrNotExist) {
		t.Error("marker left after a successful restart")
	}
}

// A created config is removed again on rollback; a failing restart command is rolled back too.
func TestRestartFailureRemovesCreatedConfig(t *testing.T) {
	restarts := 0
	o, _ := node(t, nil, &restarts)
	o.restartFn = func(string, string, io.Writer) error {
		restarts++
		if restarts == 1 {
			return errors.New("systemctl: Job for containerd.service failed")
		}
		return nil
	}
	_, err := run(o)
	if !errors.Is(err, errRolledBack) || !strings.Contains(err.Error(), "Job for containerd.service failed") || !strings.Contains(err.Error(), "removed the /etc/containerd/config.toml it had created") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(o.hostRoot, "etc/containerd/config.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Error("created config not removed")
	}
}

// Host paths are resolved inside the host root: a symlinked /etc/containerd with an absolute
// target leads to the host's file, not the installer's own /etc.
func TestHostSymlinks(t *testing.T) {
	restarts := 0
	o, _ := node(t, nil, &restarts)
	write(t, o.hostRoot, "/data/containerd/config.toml", "version = 3\n")
	os.MkdirAll(filepath.Join(o.hostRoot, "etc"), 0o755)
	if err := os.Symlink("/data/containerd", filepath.Join(o.hostRoot, "etc/containerd")); err != nil {
		t.Fatal(err)
	}
	// /usr/local/bin -> /opt/bin (absolute) and ../.. that would climb above the root.
	os.Remove(filepath.Join(o.hostRoot, "usr/local/bin"))
	os.MkdirAll(filepath.Join(o.hostRoot, "opt/bin"), 0o755)
	os.Symlink("../../../../../../opt/bin", filepath.Join(o.hostRoot, "usr/local/bin"))
	sum, err := run(o)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sum, "binary: installed /opt/bin/containerd-shim-wazero-v1") || !strings.Contains(sum, "backup /data/containerd/config.toml.bak-wazero") {
		t.Errorf("summary %s", sum)
	}
	if got := read(t, o.hostRoot, "/data/containerd/config.toml"); !strings.Contains(got, "runtimes.wazero]") {
		t.Errorf("host file not edited:\n%s", got)
	}
	for _, c := range []struct{ in, want string }{
		{"/etc/containerd/config.toml", "/data/containerd/config.toml"},
		{"/usr/local/bin/x", "/opt/bin/x"},
		{"/etc/../../../etc/containerd/new.toml", "/data/containerd/new.toml"},
	} {
		in, h, err := resolveIn(o.hostRoot, c.in)
		if err != nil || h != c.want || in != filepath.Join(o.hostRoot, c.want) {
			t.Errorf("resolveIn(%s) = %s %s %v, want %s", c.in, in, h, err, c.want)
		}
	}
	os.Symlink("loop", filepath.Join(o.hostRoot, "loop"))
	if _, _, err := resolveIn(o.hostRoot, "/loop/x"); err == nil {
		t.Error("a symlink loop resolved")
	}
}

// The CRI Status decoder: handlers from the verbose config (1.6 to 2.4) and runtime_handlers.
func TestParseStatus(t *testing.T) {
	entry := func(k, v string) []byte {
		var e []byte
		e = protowire.AppendTag(e, 1, protowire.BytesType)
		e = protowire.AppendString(e, k)
		e = protowire.AppendTag(e, 2, protowire.BytesType)
		return protowire.AppendString(e, v)
	}
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType) // status: skipped
	b = protowire.AppendBytes(b, []byte{0x0a, 0x00})
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, entry("config", `{"containerd":{"defaultRuntimeName":"runc","runtimes":{"runc":{},"wazero":{"runtimeType":"io.containerd.wazero.v1"}}}}`))
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendBytes(b, entry("spin", ""))
	st, err := parseStatus(b)
	if err != nil {
		t.Fatal(err)
	}
	if !st.has("wazero") || !st.has("runc") || !st.has("spin") || st.has("kata") {
		t.Errorf("handlers = %v", st.handlers)
	}
	if _, err := parseStatus([]byte{0x12, 0x05, 0x0a}); err == nil {
		t.Error("truncated message decoded")
	}
}
