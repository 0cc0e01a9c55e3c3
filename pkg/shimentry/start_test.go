package shimentry

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/protobuf/proto"
	cshim "github.com/containerd/containerd/v2/pkg/shim"
)

// fakeServer is a stand-in for the server binary that records its arguments, environment and
// whether it got the listening socket on fd 3, then exits.
func fakeServer(t *testing.T) (bin, record string) {
	t.Helper()
	dir := t.TempDir()
	record = filepath.Join(dir, "record")
	bin = filepath.Join(dir, "server")
	script := "#!/bin/sh\n{ echo \"$@\"; echo \"TTRPC=$TTRPC_ADDRESS GRPC=$GRPC_ADDRESS\"; [ -S /proc/self/fd/3 ] || readlink /proc/self/fd/3; } > " + record + "\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, record
}

// Both bootstrap protocols: the reply is what containerd reads, the socket is containerd's address
// for the group, the server gets its flags, environment and socket, and the bundle records the
// address (and, with the new protocol, the socket directory).
func TestStartBothProtocols(t *testing.T) {
	for _, newProto := range []bool{true, false} {
		t.Run(map[bool]string{true: "bootstrap-params", false: "pre-2.3"}[newProto], func(t *testing.T) {
			server, record := fakeServer(t)
			bundle := t.TempDir()
			t.Chdir(bundle)
			if err := os.WriteFile("config.json", []byte(`{"annotations":{"io.kubernetes.cri.sandbox-id":"pod1"}}`), 0o644); err != nil {
				t.Fatal(err)
			}
			// Short: a socket path must fit in 108 bytes.
			tmp, err := os.MkdirTemp("", "se")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(tmp) })
			sockDir := filepath.Join(tmp, "s")
			defer func(d string) { defaultSocketDir = d }(defaultSocketDir)
			defaultSocketDir = filepath.Join(tmp, "default")
			c := call{action: "start", namespace: "k8s.io", id: "c1", address: "/run/c/grpc.sock", debug: true}
			var stdin []byte
			if newProto {
				dir := sockDir
				stdin, err = proto.Marshal(&bootapi.BootstrapParams{InstanceID: "c1", Namespace: "k8s.io",
					LogLevel: bootapi.LogLevel_LOG_LEVEL_DEBUG, ContainerdGrpcAddress: "/run/c/grpc.sock",
					ContainerdTtrpcAddress: "/run/c/ttrpc.sock", SocketDir: &dir})
				if err != nil {
					t.Fatal(err)
				}
			} else {
				t.Setenv("TTRPC_ADDRESS", "/run/c/ttrpc.sock")
			}
			var out bytes.Buffer
			if err := c.start(server, bytes.NewReader(stdin), &out); err != nil {
				t.Fatal(err)
			}
			root := sockDir
			if !newProto {
				root = defaultSocketDir
			}
			want, err := cshim.CreateSocketAddress(namespaces.WithNamespace(context.Background(), "k8s.io"), root, "/run/c/grpc.sock", "pod1", false)
			if err != nil {
				t.Fatal(err)
			}
			path := strings.TrimPrefix(want, "unix://")
			t.Cleanup(func() { os.Remove(path) })
			got := out.String()
			if newProto {
				var res bootapi.BootstrapResult
				if err := proto.Unmarshal(out.Bytes(), &res); err != nil {
					t.Fatal(err)
				}
				got = res.Address
				if link, _ := os.Readlink("s"); link != sockDir {
					t.Errorf("s links to %q, want %q", link, sockDir)
				}
			}
			if got != want {
				t.Errorf("reply %q, want containerd's address for the pod %q", got, want)
			}
			if b, _ := os.ReadFile(addressFile); string(b) != want {
				t.Errorf("address file %q, want %q", b, want)
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
				t.Errorf("socket %s: %v, %v", path, fi, err)
			}
			waitFile(t, record)
			rec, _ := os.ReadFile(record)
			if w := "-namespace k8s.io -id c1 -address /run/c/grpc.sock -debug\nTTRPC=/run/c/ttrpc.sock GRPC=/run/c/grpc.sock\n"; string(rec) != w {
				t.Errorf("the server got:\n%s\nwant:\n%s", rec, w)
			}

			// A second container of the pod, while the pod's server listens: the same address,
			// and no second server.
			l, err := net.Listen("unix", path+".live")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			os.Remove(path)
			if err := os.Rename(path+".live", path); err != nil {
				t.Fatal(err)
			}
			os.Remove(record)
			out.Reset()
			c.id = "c2"
			if newProto {
				dir := sockDir
				stdin, _ = proto.Marshal(&bootapi.BootstrapParams{InstanceID: "c2", Namespace: "k8s.io",
					ContainerdGrpcAddress: "/run/c/grpc.sock", SocketDir: &dir})
			}
			if err := c.start(server, bytes.NewReader(stdin), &out); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(record); err == nil {
				t.Error("a second server was started for the pod")
			}
		})
	}
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if b, err := os.ReadFile(path); err == nil && bytes.Count(b, []byte("\n")) >= 2 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s not written", path)
}
