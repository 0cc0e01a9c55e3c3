package shim

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/cgroups/v3/cgroup2"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
)

// raised is an update a resize makes: twice the memory, a full CPU, more pids, and device rules
// that must not be applied (the container keeps those of its Create).
func raised() *specs.LinuxResources {
	return &specs.LinuxResources{
		Memory:  &specs.LinuxMemory{Limit: ptr[int64](128 << 20)},
		CPU:     &specs.LinuxCPU{Shares: ptr[uint64](1024), Quota: ptr[int64](100000), Period: ptr[uint64](100000)},
		Pids:    &specs.LinuxPids{Limit: ptr[int64](200)},
		Devices: []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}},
	}
}

func TestCgroupV1Update(t *testing.T) {
	h, root := fakeCgroup1(t)
	cg, err := h.create("/k8s.io/abc", testResources())
	if err != nil {
		t.Fatal(err)
	}
	if err := cg.Update(raised()); err != nil {
		t.Fatalf("update: %v", err)
	}
	dir := func(c string) string { return filepath.Join(root, c, "k8s.io", "abc") }
	for file, want := range map[string]string{
		"memory/memory.limit_in_bytes": "134217728",
		"cpu/cpu.cfs_quota_us":         "100000",
		"cpu/cpu.shares":               "1024",
		"pids/pids.max":                "200",
		"devices/devices.allow":        "c 1:3 rwm", // Create's rules, not the update's "a *:* rwm"
	} {
		c, f, _ := strings.Cut(file, "/")
		if got := readFile(t, filepath.Join(dir(c), f)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
}

func TestCgroupV2Update(t *testing.T) {
	h, root := fakeCgroup2(t)
	cg, err := h.create("/k8s.io/abc", testResources())
	if err != nil {
		t.Fatal(err)
	}
	attached := len(fakeAttached)
	if err := cg.Update(raised()); err != nil {
		t.Fatalf("update: %v", err)
	}
	dir := filepath.Join(root, "k8s.io", "abc")
	for file, want := range map[string]string{
		"memory.max": "134217728",
		"cpu.max":    "100000 100000",
		"cpu.weight": strconv.FormatUint(cgroup2.ConvertCPUSharesToCgroupV2Value(1024), 10),
		"pids.max":   "200",
	} {
		if got := readFile(t, filepath.Join(dir, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if len(fakeAttached) != attached {
		t.Errorf("update attached another device filter")
	}
}

func updateReq(t *testing.T, id string, res *specs.LinuxResources) *taskAPI.UpdateTaskRequest {
	t.Helper()
	data, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	return &taskAPI.UpdateTaskRequest{ID: id, Resources: &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources", Value: data}}
}

func TestServiceUpdate(t *testing.T) {
	s, rt, _, _ := newTestService(t)
	ctx := context.Background()
	check := func(name string, err error, is func(error) bool) {
		t.Helper()
		if !is(errgrpc.ToNative(err)) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	_, err := s.Update(ctx, updateReq(t, "nope", raised()))
	check("update of an unknown container", err, errdefs.IsNotFound)
	startRunning(t, s, "c")
	if _, err := s.Update(ctx, updateReq(t, "c", raised())); err != nil {
		t.Fatal(err)
	}
	if u := rt.instances["c"].updates; len(u) != 1 || *u[0].Memory.Limit != 128<<20 {
		t.Fatalf("updates reaching the instance: %v", u)
	}
	_, err = s.Update(ctx, &taskAPI.UpdateTaskRequest{ID: "c", Resources: &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/WindowsResources", Value: []byte("{}")}})
	check("windows resources", err, errdefs.IsInvalidArgument)
	_, err = s.Update(ctx, updateReq(t, "c", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](-5)}}))
	check("negative memory limit", err, errdefs.IsInvalidArgument)
	rt.instances["c"].exit(0)
	if _, err := s.Wait(ctx, &taskAPI.WaitRequest{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Update(ctx, updateReq(t, "c", raised()))
	check("update of a stopped container", err, errdefs.IsFailedPrecondition)
}

// An update is kept for the exec processes made afterwards: their guest memory cap follows it.
func TestUpdateRecordedForExecs(t *testing.T) {
	i := &wasmInstance{spec: &specs.Spec{Linux: &specs.Linux{Resources: testResources()}}}
	before := i.spec
	i.recordResources(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](256 << 20)}})
	if got := *i.spec.Linux.Resources.Memory.Limit; got != 256<<20 {
		t.Errorf("recorded memory limit %d, want %d", got, 256<<20)
	}
	if *i.spec.Linux.Resources.Pids.Limit != 100 || len(i.spec.Linux.Resources.Devices) != 2 {
		t.Errorf("fields the update did not set changed: %+v", i.spec.Linux.Resources)
	}
	if *before.Linux.Resources.Memory.Limit != 64<<20 {
		t.Errorf("the spec the container was created from was modified in place")
	}
}
