package shim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/anypb"
)

// addRunner moves a runner (a container's or an exec's) into cg. A runner already gone is not
// an error of the cgroup: one killed and reaped before it could be moved gives ESRCH (a zombie is
// moved without error, TestCgroupAddProcGone), and the caller's wait for the runner's report
// then says how it ended, as for any runner that dies before it is ready.
func addRunner(cg cgroup, pid int) error {
	if err := cg.AddProc(uint64(pid)); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// cgroup is a container's cgroup on either cgroup v1 (and hybrid) or v2 hosts.
type cgroup interface {
	AddProc(pid uint64) error
	Delete() error
	Freeze() error
	Thaw() error
	// Metrics returns the cgroup's statistics in the types `ctr task metrics` and the CRI plugin read.
	Metrics() (*anypb.Any, error)
	// WatchOOM calls onOOM, from another goroutine, each time the kernel's OOM killer acts in
	// the cgroup, until stop is called.
	WatchOOM(onOOM func()) (stop func(), err error)
	// Procs lists the processes in the cgroup (in any v1 hierarchy).
	Procs() ([]int, error)
	// Update applies new resource limits (memory, CPU, pids...) to the live cgroup. Device
	// rules are not changed: they are the container's from Create.
	Update(res *specs.LinuxResources) error
}

// cgroupHost says how the host's cgroups are laid out. The shim uses hostCgroups(); tests use a
// fake cgroupfs in a temporary directory.
type cgroupHost struct {
	unified    bool              // cgroups v2 unified hierarchy (not v1, not hybrid)
	mountpoint string            // the v2 mountpoint
	v1         cgroup1.Hierarchy // the v1 controllers; nil means cgroup1.Default (from mountinfo)
}

// hostCgroups is the host's real cgroup layout: cgroups.Mode() decides v1 or v2, and on a hybrid
// host (v1 controllers, empty v2 mount) it is v1.
func hostCgroups() cgroupHost {
	return cgroupHost{unified: cgroups.Mode() == cgroups.Unified, mountpoint: "/sys/fs/cgroup"}
}

// newCgroup creates the cgroup at path (linux.cgroupsPath, a cgroupfs path such as
// /k8s.io/ID or /kubepods/burstable/podUID/ID) with the spec's resources applied. The host's
// cgroup mode decides v1 or v2: on a hybrid host (v1 controllers, empty v2 mount) it is v1.
// A systemd-style path ("slice:prefix:name") is refused with a message that says so.
func newCgroup(path string, res *specs.LinuxResources) (cgroup, error) {
	return hostCgroups().create(path, res)
}

// loadCgroup opens an existing cgroup (for cleanup by the `delete` action).
func loadCgroup(path string) (cgroup, error) {
	return hostCgroups().load(path)
}

func (h cgroupHost) v1Opts() []cgroup1.InitOpts {
	if h.v1 == nil {
		return nil
	}
	return []cgroup1.InitOpts{cgroup1.WithHierarchy(h.v1)}
}

func (h cgroupHost) create(path string, res *specs.LinuxResources) (cgroup, error) {
	if err := checkCgroupsPath(path); err != nil {
		return nil, err
	}
	if res == nil {
		res = &specs.LinuxResources{}
	}
	if h.unified {
		// The device rules become an eBPF program attached to the new directory (devices.go):
		// built before the directory is made, so a bad rule leaves nothing behind, and attached
		// before any process joins. ToResources (v3.1.3) does not copy them; Devices is cleared
		// anyway so that the library never attaches a second program, nor skips a failure as its
		// own setDevices does when every rule is a deny.
		filter, err := newDeviceFilter(res.Devices)
		if err != nil {
			return nil, fmt.Errorf("create cgroup %s: %w", path, err)
		}
		r := *res
		r.Devices = nil
		m, err := cgroup2.NewManager(h.mountpoint, path, cgroup2.ToResources(&r))
		if err != nil {
			return nil, fmt.Errorf("create cgroup %s: %w", path, err)
		}
		if filter != nil {
			if err := attachDeviceFilter(filepath.Join(h.mountpoint, path), filter); err != nil {
				_ = m.Delete() // empty: no process has joined
				return nil, deviceFilterError(path, len(res.Devices), err)
			}
		}
		return v2cgroup{m}, nil
	}
	// The device rules are checked as on v2 before any directory exists: the kernel refuses a
	// bad one with a bare EINVAL from devices.allow, which says neither which rule nor why.
	if _, err := deviceFilterRules(res.Devices); err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w: %w", path, err, errdefs.ErrInvalidArgument)
	}
	cg, err := cgroup1.New(cgroup1.StaticPath(path), res, h.v1Opts()...)
	if err != nil {
		// cgroup1.New makes every hierarchy's directory before it writes the limits, and leaves
		// them when the kernel refuses one: remove them (empty, no process has joined).
		if left, lerr := cgroup1.Load(cgroup1.StaticPath(path), h.v1Opts()...); lerr == nil {
			_ = left.Delete()
		}
		return nil, fmt.Errorf("create cgroup %s: %w", path, err)
	}
	return v1cgroup{cg}, nil
}

func (h cgroupHost) load(path string) (cgroup, error) {
	if h.unified {
		m, err := cgroup2.Load(path, cgroup2.WithMountpoint(h.mountpoint))
		if err != nil {
			return nil, err
		}
		return v2cgroup{m}, nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(path), h.v1Opts()...)
	if err != nil {
		return nil, err
	}
	return v1cgroup{cg}, nil
}

func checkCgroupsPath(path string) error {
	switch {
	case strings.Count(path, ":") == 2 && !strings.HasPrefix(path, "/"):
		return fmt.Errorf("cgroupsPath %q is in the systemd driver's slice:prefix:name form, which this shim does not support yet: configure containerd/kubelet with the cgroupfs driver (SystemdCgroup = false): %w", path, errdefs.ErrInvalidArgument)
	case !strings.HasPrefix(path, "/"):
		return fmt.Errorf("cgroupsPath %q must be an absolute cgroupfs path: %w", path, errdefs.ErrInvalidArgument)
	}
	return nil
}

type v1cgroup struct{ cg cgroup1.Cgroup }

func (c v1cgroup) AddProc(pid uint64) error { return c.cg.AddProc(pid) }
func (c v1cgroup) Delete() error            { return c.cg.Delete() }
func (c v1cgroup) Freeze() error            { return c.cg.Freeze() }
func (c v1cgroup) Thaw() error              { return c.cg.Thaw() }

// Update on v1: memory.limit_in_bytes may never exceed memory.memsw.limit_in_bytes, so a raise
// of both (the CRI plugin sets swap to the limit) must write memsw first. The library's own
// reordering swaps the wrong pair (v3.1.3), so the new swap limit is written alone first; when
// the limits are lowered instead, that write fails harmlessly and the full update, limit first,
// does it in the right order.
func (c v1cgroup) Update(res *specs.LinuxResources) error {
	r := *res
	r.Devices = nil
	if m := r.Memory; m != nil && m.Swap != nil && *m.Swap > 0 {
		_ = c.cg.Update(&specs.LinuxResources{Memory: &specs.LinuxMemory{Swap: m.Swap}})
	}
	return c.cg.Update(&r)
}
func (c v1cgroup) Procs() ([]int, error) {
	seen := map[int]bool{}
	var out []int
	for _, sub := range c.cg.Subsystems() {
		ps, err := c.cg.Processes(sub.Name(), true)
		if err != nil {
			continue // a hierarchy the cgroup is not in
		}
		for _, p := range ps {
			if !seen[p.Pid] {
				seen[p.Pid] = true
				out = append(out, p.Pid)
			}
		}
	}
	return out, nil
}
func (c v1cgroup) Metrics() (*anypb.Any, error) {
	m, err := c.cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return nil, err
	}
	return typeurl.MarshalAnyToProto(m)
}

type v2cgroup struct{ m *cgroup2.Manager }

func (c v2cgroup) AddProc(pid uint64) error { return c.m.AddProc(pid) }
func (c v2cgroup) Delete() error            { return c.m.Delete() }
func (c v2cgroup) Freeze() error            { return c.m.Freeze() }
func (c v2cgroup) Thaw() error              { return c.m.Thaw() }
func (c v2cgroup) Update(res *specs.LinuxResources) error {
	r := *res
	r.Devices = nil // the eBPF device filter attached at Create stays
	return c.m.Update(cgroup2.ToResources(&r))
}
func (c v2cgroup) Procs() ([]int, error) {
	ps, err := c.m.Procs(true)
	out := make([]int, len(ps))
	for i, p := range ps {
		out[i] = int(p)
	}
	return out, err
}
func (c v2cgroup) Metrics() (*anypb.Any, error) {
	m, err := c.m.Stat()
	if err != nil {
		return nil, err
	}
	return typeurl.MarshalAnyToProto(m)
}

// WatchOOM watches memory.oom_control through an eventfd. The eventfd also fires when the cgroup
// is removed, so stop must be called before Delete.
func (c v1cgroup) WatchOOM(onOOM func()) (func(), error) {
	fd, err := c.cg.OOMEventFD()
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(int(fd), true); err != nil {
		unix.Close(int(fd))
		return nil, err
	}
	f := os.NewFile(fd, "oom-eventfd") // non-blocking: reads park in Go's poller, not a thread
	var stopped atomic.Bool
	go func() {
		buf := make([]byte, 8)
		for {
			if _, err := f.Read(buf); err != nil || stopped.Load() {
				return
			}
			onOOM()
		}
	}()
	return func() { stopped.Store(true); f.Close() }, nil
}

// WatchOOM follows the oom_kill count of memory.events. Kills counted before the watch began (a
// cgroup directory left under the same path) are not reported, as v1's eventfd reports none.
func (c v2cgroup) WatchOOM(onOOM func()) (func(), error) {
	var kills uint64
	if m, err := c.m.StatFiltered(cgroup2.StatMemoryEvents); err == nil && m.MemoryEvents != nil {
		kills = m.MemoryEvents.OomKill
	}
	events, errs := c.m.EventChan()
	done := make(chan struct{})
	go func() {
		for {
			select {
			case e := <-events:
				select {
				case <-done: // select picks at random when both are ready: stop wins
					return
				default:
				}
				if e.OOMKill > kills {
					kills = e.OOMKill
					onOOM()
				}
			case <-errs:
				return
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }, nil
}
