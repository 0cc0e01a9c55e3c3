package shim

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
)

// TestTaskV2 drives the service through the task v2 API over a real ttrpc connection, as a
// containerd 1.x daemon does, and checks that results and error kinds arrive intact.
func TestTaskV2(t *testing.T) {
	s, _, _, _ := newTestService(t)
	server, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterTTRPC(server); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	go server.Serve(context.Background(), l)
	defer server.Close()
	conn, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	tc := taskv2.NewTTRPCTaskClient(client)
	ctx := context.Background()

	cr, err := tc.Create(ctx, &taskv2.CreateTaskRequest{ID: "c", Bundle: "/b/c"})
	if err != nil || cr.Pid != 1000 {
		t.Fatalf("create over v2: %v %v", cr, err)
	}
	if _, err := tc.Start(ctx, &taskv2.StartRequest{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	st, err := tc.State(ctx, &taskv2.StateRequest{ID: "c"})
	if err != nil || st.Status != tasktypes.Status_RUNNING || st.Bundle != "/b/c" {
		t.Fatalf("state over v2: %v %v", st, err)
	}
	_, err = tc.State(ctx, &taskv2.StateRequest{ID: "nope"})
	if !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Fatalf("error kind lost over v2: %v", err)
	}
	_, err = tc.Exec(ctx, &taskv2.ExecProcessRequest{ID: "c", ExecID: "e"})
	if !errdefs.IsInvalidArgument(errgrpc.ToNative(err)) {
		t.Fatalf("exec without a process spec over v2: %v", err)
	}
}
