package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
)

// The health check after a restart asks containerd's CRI plugin what the kubelet asks it:
// runtime.v1.RuntimeService/Status with verbose set, whose info["config"] is the CRI plugin's
// config as JSON (what `crictl info` prints), runtimes included. The two messages are encoded by
// hand (StatusRequest{verbose = 1}; StatusResponse{info = 2 (map), runtime_handlers = 3}) so that
// the installer does not need the CRI API's generated code for one call.

const criStatusMethod = "/runtime.v1.RuntimeService/Status"

// rawCodec passes already encoded protobuf bytes through gRPC.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// criStatus is what the health check reads from a StatusResponse.
type criStatus struct {
	handlers []string // runtimes of the CRI plugin's config, and runtime_handlers
}

func (s criStatus) has(h string) bool {
	for _, x := range s.handlers {
		if x == h {
			return true
		}
	}
	return false
}

// queryCRI makes one verbose Status call on the unix socket at path.
func queryCRI(ctx context.Context, path string) (criStatus, error) {
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		return criStatus{}, err
	}
	defer conn.Close()
	req := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1)
	var resp []byte
	if err := conn.Invoke(ctx, criStatusMethod, &req, &resp); err != nil {
		return criStatus{}, err
	}
	return parseStatus(resp)
}

// parseStatus decodes the parts of a StatusResponse the check needs.
func parseStatus(b []byte) (criStatus, error) {
	var st criStatus
	info := map[string]string{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return st, protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return st, protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return st, protowire.ParseError(n)
		}
		b = b[n:]
		switch num {
		case 2: // map<string, string> info: entries {key = 1; value = 2}
			k, val, err := mapEntry(v)
			if err != nil {
				return st, err
			}
			info[k] = val
		case 3: // repeated RuntimeHandler runtime_handlers {name = 1; ...}
			name, _, err := mapEntry(v)
			if err != nil {
				return st, err
			}
			st.handlers = append(st.handlers, name)
		}
	}
	if cfg := info["config"]; cfg != "" {
		var c struct {
			Containerd struct {
				Runtimes map[string]json.RawMessage `json:"runtimes"`
			} `json:"containerd"`
		}
		if err := json.Unmarshal([]byte(cfg), &c); err != nil {
			return st, fmt.Errorf("CRI status: info[\"config\"] is not the JSON expected: %w", err)
		}
		for h := range c.Containerd.Runtimes {
			st.handlers = append(st.handlers, h)
		}
	}
	return st, nil
}

// mapEntry returns fields 1 and 2 (strings) of an embedded message.
func mapEntry(b []byte) (f1, f2 string, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", "", protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == 1 || num == 2) {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return "", "", protowire.ParseError(n)
			}
			b = b[n:]
			if num == 1 {
				f1 = string(v)
			} else {
				f2 = string(v)
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return "", "", protowire.ParseError(n)
		}
		b = b[n:]
	}
	return f1, f2, nil
}

// waitCRI polls the CRI socket until it answers and, when handler is not "", lists handler; it
// gives up after timeout and returns why.
func waitCRI(path, handler string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := queryCRI(ctx, path)
		cancel()
		switch {
		case err != nil:
			last = fmt.Errorf("the CRI at %s does not answer: %w", path, err)
		case handler != "" && !st.has(handler):
			last = fmt.Errorf("the CRI at %s answers but does not list runtime handler %q (it lists %v)", path, handler, st.handlers)
		default:
			return nil
		}
		if time.Now().After(deadline) {
			return last
		}
		time.Sleep(500 * time.Millisecond)
	}
}

var errRolledBack = errors.New("rolled back")
