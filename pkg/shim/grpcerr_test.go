package shim

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A Create error crosses to containerd once: its message, its kind as the code, no details that
// containerd 2.x would print as extra lines; containerd's side still sees the kind.
func TestToGRPCOnce(t *testing.T) {
	err := fmt.Errorf("container c1: %w: %w", errors.New("module /app.wasm not found in the container rootfs"), errdefs.ErrFailedPrecondition)
	if s, _ := status.FromError(errgrpc.ToGRPC(err)); len(s.Proto().GetDetails()) == 0 {
		t.Log("errgrpc.ToGRPC no longer adds details")
	}
	g := toGRPCOnce(err)
	s, ok := status.FromError(g)
	if !ok || s.Code() != codes.FailedPrecondition || len(s.Proto().GetDetails()) != 0 {
		t.Fatalf("status %v, details %d", s, len(s.Proto().GetDetails()))
	}
	if n := strings.Count(errgrpc.ToNative(g).Error(), "failed precondition"); n != 1 {
		t.Errorf("%q says failed precondition %d times", errgrpc.ToNative(g), n)
	}
	if !errdefs.IsFailedPrecondition(errgrpc.ToNative(g)) {
		t.Error("the kind is lost")
	}
	if toGRPCOnce(nil) != nil {
		t.Error("nil")
	}
}
