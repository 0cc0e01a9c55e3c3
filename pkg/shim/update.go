package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// Update changes a container's resource limits live (`ctr task update`, the CRI's
// UpdateContainerResources, Kubernetes in-place resize): memory, CPU and pids, written to the
// container's cgroup (v1 or v2), which its runner and its exec processes share. A memory limit
// below what the container holds is the kernel's business, as under runc: cgroup v1 refuses it
// (EBUSY, "device or resource busy") when it cannot reclaim enough, and the error is returned;
// cgroup v2 takes it and reclaims, OOM-killing if it must.
func (s *service) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) (*emptypb, error) {
	res, err := updateResources(r)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	c, err := s.get(r.ID)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.phase {
	case phaseCreated, phaseRunning, phasePaused:
	case phaseDeleting, phaseDeleted:
		return nil, errgrpc.ToGRPC(fmt.Errorf("update container %s: it is %s: %w", r.ID, c.phase, errdefs.ErrNotFound))
	default:
		return nil, errgrpc.ToGRPC(fmt.Errorf("update container %s: it is %s: %w", r.ID, c.phase, errdefs.ErrFailedPrecondition))
	}
	if err := c.inst.Update(res); err != nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("update container %s: %w", r.ID, err))
	}
	return empty, nil
}

// updateResources decodes UpdateTaskRequest.Resources: an OCI LinuxResources, as JSON (how
// containerd's typeurl carries a type that is not a protobuf message).
func updateResources(r *taskAPI.UpdateTaskRequest) (*specs.LinuxResources, error) {
	if r.Resources == nil || len(r.Resources.GetValue()) == 0 {
		return nil, fmt.Errorf("update container %s: no resources given: %w", r.ID, errdefs.ErrInvalidArgument)
	}
	if u := r.Resources.GetTypeUrl(); !strings.HasSuffix(u, "/LinuxResources") {
		return nil, fmt.Errorf("update container %s: resources of type %q; want the OCI runtime spec's LinuxResources: %w", r.ID, u, errdefs.ErrInvalidArgument)
	}
	var res specs.LinuxResources
	if err := json.Unmarshal(r.Resources.GetValue(), &res); err != nil {
		return nil, fmt.Errorf("update container %s: decode resources: %v: %w", r.ID, err, errdefs.ErrInvalidArgument)
	}
	if m := res.Memory; m != nil && m.Limit != nil && *m.Limit != -1 && *m.Limit < 0 {
		return nil, fmt.Errorf("update container %s: memory limit %d is negative (-1 means unlimited): %w", r.ID, *m.Limit, errdefs.ErrInvalidArgument)
	}
	return &res, nil
}

// Update writes res to the container's cgroup, moves the linear-memory cap of the container's
// guest and of its exec processes' guests to the new memory limit (oci.MemoryPages: the limit
// less the runner's reserve), and keeps res in the spec that exec processes are configured from,
// so a later exec gets the new cap too. The cgroup comes first: a limit the kernel refuses
// changes nothing.
func (i *wasmInstance) Update(res *specs.LinuxResources) error {
	if i.cg == nil {
		return fmt.Errorf("updating resources needs a cgroup (linux.cgroupsPath): %w", errdefs.ErrFailedPrecondition)
	}
	if err := i.cg.Update(res); err != nil {
		return fmt.Errorf("write the new limits to the container's cgroup: %w", err)
	}
	i.recordResources(res)
	if res.Memory == nil || res.Memory.Limit == nil {
		return nil
	}
	pages := oci.MemoryPages(max(*res.Memory.Limit, 0))
	i.specMu.Lock()
	defer i.specMu.Unlock()
	// A pod sandbox runs no guest; the per-request mode's instances keep the share of the
	// limit they were compiled for (docs/networking.md).
	if oci.IsSandbox(i.spec) || hasWAGI(i.spec) {
		return nil
	}
	var errs []error
	if err := i.runner.SetMemoryPages(pages); err != nil && i.running() {
		errs = append(errs, err)
	}
	for e := range i.execs {
		_ = e.runner.SetMemoryPages(pages) // an exec that has exited needs no cap
	}
	if len(errs) > 0 {
		return fmt.Errorf("the cgroup has the new limits, but the guest's memory cap could not follow: %w", errs[0])
	}
	return nil
}

// running reports whether the container's runner has not exited yet.
func (i *wasmInstance) running() bool {
	select {
	case <-i.exited:
		return false
	default:
		return true
	}
}

func hasWAGI(spec *specs.Spec) bool {
	if spec.Process == nil {
		return false
	}
	w, err := oci.ParseWAGI(spec.Process.Env)
	return err == nil && w != nil
}

// recordResources merges what res sets into the spec's linux.resources (the fields Update
// writes: memory, CPU, pids), for the exec processes created from now on.
func (i *wasmInstance) recordResources(res *specs.LinuxResources) {
	i.specMu.Lock()
	defer i.specMu.Unlock()
	spec := *i.spec
	linux := specs.Linux{}
	if spec.Linux != nil {
		linux = *spec.Linux
	}
	cur := specs.LinuxResources{}
	if linux.Resources != nil {
		cur = *linux.Resources
	}
	if res.Memory != nil {
		cur.Memory = res.Memory
	}
	if res.CPU != nil {
		cur.CPU = res.CPU
	}
	if res.Pids != nil {
		cur.Pids = res.Pids
	}
	linux.Resources = &cur
	spec.Linux = &linux
	i.spec = &spec
}
