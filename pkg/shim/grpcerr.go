package shim

import (
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc/status"
)

// toGRPCOnce is errgrpc.ToGRPC without status details. ToGRPC attaches every error that err wraps
// (errdefs.ErrFailedPrecondition, ...) as a detail, and containerd 2.x prints each detail as a line
// of its own after the message, which already ends with the kind: a Create error reached the user
// followed by two more "failed precondition" lines. The code still carries the kind.
func toGRPCOnce(err error) error {
	g := errgrpc.ToGRPC(err)
	if s, ok := status.FromError(g); ok && len(s.Proto().GetDetails()) > 0 {
		return status.New(s.Code(), s.Message()).Err()
	}
	return g
}
