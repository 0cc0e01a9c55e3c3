package shimentry

import (
	"errors"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// The protobuf messages of the two actions, encoded and decoded by hand with protowire so that
// the entry links no generated API (field numbers from containerd's api module:
// runtime/bootstrap/v1/bootstrap.proto and runtime/task/v{2,3}/shim.proto, which agree).

// Log levels of BootstrapParams.log_level (bootstrap.proto's LogLevel) that the entry uses.
const (
	logLevelInfo  int32 = 0
	logLevelDebug int32 = -4
)

// bootstrapParams is the part of containerd's BootstrapParams the entry needs.
type bootstrapParams struct {
	InstanceID   string // 1
	Namespace    string // 2
	LogLevel     int32  // 3
	TTRPCAddress string // 5
	GRPCAddress  string // 6
	SocketDir    string // 9 (optional)
}

var errMalformed = errors.New("malformed protobuf message")

// decodeBootstrapParams decodes a BootstrapParams message, skipping fields it does not use. It
// fails on bytes that are not a well-formed message (the old protocol sends nothing, or garbage).
func decodeBootstrapParams(b []byte) (bootstrapParams, error) {
	var p bootstrapParams
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return p, errMalformed
		}
		b = b[n:]
		switch {
		case typ == protowire.BytesType && (num == 1 || num == 2 || num == 5 || num == 6 || num == 9):
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return p, errMalformed
			}
			s := string(v)
			switch num {
			case 1:
				p.InstanceID = s
			case 2:
				p.Namespace = s
			case 5:
				p.TTRPCAddress = s
			case 6:
				p.GRPCAddress = s
			case 9:
				p.SocketDir = s
			}
			b = b[n:]
		case typ == protowire.VarintType && num == 3:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return p, errMalformed
			}
			p.LogLevel = int32(v) // an enum: negative values are sign-extended to 64 bits
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return p, errMalformed
			}
			b = b[n:]
		}
	}
	return p, nil
}

// encodeBootstrapResult encodes the BootstrapResult of a ttrpc shim at address (version 3, the
// version pkg/shim's Manager.Start reports).
func encodeBootstrapResult(address string) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 3)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, address)
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendString(b, "ttrpc")
	return b
}

// encodeDeleteResponse encodes the task API's DeleteResponse{pid, exit_status, exited_at}, which
// containerd reads from the `delete` action's stdout. Zero fields are left out, as proto3 does.
func encodeDeleteResponse(pid, exitStatus uint32, exitedAt time.Time) []byte {
	var b []byte
	if pid != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(pid))
	}
	if exitStatus != 0 {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(exitStatus))
	}
	// google.protobuf.Timestamp{seconds = 1 (int64), nanos = 2 (int32)}.
	var ts []byte
	if s := exitedAt.Unix(); s != 0 {
		ts = protowire.AppendTag(ts, 1, protowire.VarintType)
		ts = protowire.AppendVarint(ts, uint64(s))
	}
	if ns := exitedAt.Nanosecond(); ns != 0 {
		ts = protowire.AppendTag(ts, 2, protowire.VarintType)
		ts = protowire.AppendVarint(ts, uint64(ns))
	}
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendBytes(b, ts)
	return b
}
