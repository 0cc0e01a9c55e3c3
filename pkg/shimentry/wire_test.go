package shimentry

import (
	"context"
	"strings"
	"testing"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/protobuf/proto"
	cshim "github.com/containerd/containerd/v2/pkg/shim"
	"google.golang.org/protobuf/types/known/anypb"
)

// The hand-encoded messages must be what containerd's generated code reads, and the decoder must
// read what containerd writes: both sides go through the real proto package here.

func TestDecodeBootstrapParamsFromContainerd(t *testing.T) {
	dir := "/run/x/s"
	for _, level := range []bootapi.LogLevel{bootapi.LogLevel_LOG_LEVEL_INFO, bootapi.LogLevel_LOG_LEVEL_DEBUG, bootapi.LogLevel_LOG_LEVEL_TRACE, bootapi.LogLevel_LOG_LEVEL_ERROR} {
		in := &bootapi.BootstrapParams{
			InstanceID: "c1", Namespace: "ns", LogLevel: level, ContainerdVersion: "v2.4.2",
			ContainerdTtrpcAddress: "/run/c/ttrpc.sock", ContainerdGrpcAddress: "/run/c/grpc.sock",
			ContainerdBinary: "/usr/bin/containerd", SocketDir: &dir,
			Extensions: []*bootapi.Extension{{Value: &anypb.Any{TypeUrl: "x/y", Value: []byte{1, 2, 3}}}},
		}
		data, err := proto.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeBootstrapParams(data)
		if err != nil {
			t.Fatalf("%v: %v", level, err)
		}
		want := bootstrapParams{InstanceID: "c1", Namespace: "ns", LogLevel: int32(level),
			TTRPCAddress: "/run/c/ttrpc.sock", GRPCAddress: "/run/c/grpc.sock", SocketDir: dir}
		if got != want {
			t.Errorf("%v: decoded %+v, want %+v", level, got, want)
		}
	}
}

func TestDecodeBootstrapParamsRejectsGarbage(t *testing.T) {
	for _, in := range []string{"\xff\xff\xff", "\x0a\x10short", "/run/containerd/containerd.sock"} {
		if p, err := decodeBootstrapParams([]byte(in)); err == nil && p.InstanceID != "" {
			t.Errorf("%q decoded as %+v", in, p)
		}
	}
}

func TestBootstrapResultReadByContainerd(t *testing.T) {
	var res bootapi.BootstrapResult
	if err := proto.Unmarshal(encodeBootstrapResult("unix:///run/s/abc"), &res); err != nil {
		t.Fatal(err)
	}
	if res.Version != 3 || res.Address != "unix:///run/s/abc" || res.Protocol != "ttrpc" {
		t.Errorf("containerd read %+v", &res)
	}
}

func TestDeleteResponseReadByContainerd(t *testing.T) {
	at := time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.UTC)
	for _, c := range []struct{ pid, status uint32 }{{0, 137}, {4242, 0}, {7, 3}} {
		data := encodeDeleteResponse(c.pid, c.status, at)
		var v2 taskv2.DeleteResponse
		var v3 taskv3.DeleteResponse
		if err := proto.Unmarshal(data, &v2); err != nil {
			t.Fatal(err)
		}
		if err := proto.Unmarshal(data, &v3); err != nil {
			t.Fatal(err)
		}
		for _, r := range []interface {
			GetPid() uint32
			GetExitStatus() uint32
		}{&v2, &v3} {
			if r.GetPid() != c.pid || r.GetExitStatus() != c.status {
				t.Errorf("containerd read pid %d status %d, want %d %d", r.GetPid(), r.GetExitStatus(), c.pid, c.status)
			}
		}
		if got := v2.ExitedAt.AsTime(); !got.Equal(at) {
			t.Errorf("exited_at %v, want %v", got, at)
		}
	}
}

func TestSocketAddressIsContainerds(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "k8s.io")
	want, err := cshim.CreateSocketAddress(ctx, "/run/containerd/s", "/run/containerd/containerd.sock", "pod-1", false)
	if err != nil {
		t.Fatal(err)
	}
	if got := socketAddress("/run/containerd/s", "/run/containerd/containerd.sock", "k8s.io", "pod-1"); got != want {
		t.Errorf("socketAddress = %s, containerd's %s", got, want)
	}
}

func TestMountinfoHas(t *testing.T) {
	const info = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
97 22 0:50 / /run/c/io.containerd.runtime.v2.task/ns/a\040b/rootfs rw - overlay overlay rw
98 22 0:51 / /run/c/io.containerd.runtime.v2.task/ns/c/rootfs/proc rw - proc proc rw
`
	for dir, want := range map[string]bool{
		"/run/c/io.containerd.runtime.v2.task/ns/a b/rootfs": true,  // escaped space
		"/run/c/io.containerd.runtime.v2.task/ns/c/rootfs":   true,  // a mount below it
		"/run/c/io.containerd.runtime.v2.task/ns/d/rootfs":   false, // nothing
		"/run/c/io.containerd.runtime.v2.task/ns/c/root":     false, // a prefix of a name is not below
	} {
		got, err := mountinfoHas(strings.NewReader(info), dir)
		if err != nil || got != want {
			t.Errorf("mountinfoHas(%s) = %v, %v; want %v", dir, got, err, want)
		}
	}
}

func TestParseAction(t *testing.T) {
	for args, want := range map[string]string{
		"-namespace ns -address /a -publish-binary /c -id x start":             "start",
		"-namespace ns -address /a -publish-binary /c -id x -bundle /b delete": "delete",
		"-namespace ns -address /a -publish-binary /c -id x -debug start":      "start",
		"-namespace ns -id x -address /a":                                      "", // the server
		"-v":                                                                   "",
		"-info":                                                                "",
		"runner":                                                               "",
		"-namespace ns -unknown start":                                         "",
	} {
		c, ok := parseAction(strings.Fields(args))
		if got := map[bool]string{true: c.action}[ok]; got != want {
			t.Errorf("%q: action %q, want %q", args, got, want)
		}
	}
}
