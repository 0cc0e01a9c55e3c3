package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/defaults"
	"github.com/containerd/containerd/v2/pkg/atomicfile"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	cshim "github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/log"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// Version is the shim's version, printed by -v and reported by -info. Set at build time with
// -ldflags "-X github.com/wazero-shim/containerd-shim-wazero-v1/pkg/shim.Version=...".
var Version = "0.1.0-dev"

// groupLabels are the annotations that make containers share one shim, in order of precedence:
// the runc shim's own grouping label and the Kubernetes pod (sandbox) ID.
var groupLabels = []string{
	"io.containerd.runc.v2.group",
	"io.kubernetes.cri.sandbox-id",
}

// Manager implements containerd's shim manager: the `start`, `delete` and `-info` actions.
type Manager struct {
	name string
}

// NewManager returns the shim manager for the runtime name.
func NewManager(name string) *Manager { return &Manager{name: name} }

// Name is the runtime name.
func (m *Manager) Name() string { return m.name }

// Start starts the shim server for params.InstanceID, or returns the address of the server that
// already serves its group (the pod), and returns how containerd connects to it.
func (m *Manager) Start(ctx context.Context, params *bootapi.BootstrapParams) (_ *bootapi.BootstrapResult, retErr error) {
	id := params.GetInstanceID()
	group := id
	if s, err := readAnnotations("."); err == nil {
		for _, l := range groupLabels {
			if g, ok := s[l]; ok && g != "" {
				group = g
				break
			}
		}
	}
	socketDir := params.GetSocketDir()
	if socketDir == "" {
		socketDir = filepath.Join(defaults.DefaultStateDir, "s")
	}
	res := &bootapi.BootstrapResult{Version: 3, Protocol: "ttrpc"}
	address, err := cshim.CreateSocketAddress(ctx, socketDir, params.GetContainerdGrpcAddress(), group, false)
	if err != nil {
		return nil, err
	}
	l, err := cshim.NewSocket(address)
	if err != nil {
		if !cshim.SocketEaddrinuse(err) {
			return nil, fmt.Errorf("create shim socket %s: %w", address, err)
		}
		if cshim.CanConnect(address) {
			res.Address = address // the pod's shim is alive: it serves this container too
			return res, writeAddress(address)
		}
		if err := cshim.RemoveSocket(address); err != nil {
			return nil, fmt.Errorf("remove stale shim socket: %w", err)
		}
		if l, err = cshim.NewSocket(address); err != nil {
			return nil, fmt.Errorf("create shim socket %s: %w", address, err)
		}
	}
	defer func() {
		if retErr != nil {
			l.Close()
			_ = cshim.RemoveSocket(address)
		}
	}()
	f, err := l.File()
	if err != nil {
		return nil, err
	}
	defer f.Close()

	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	args := []string{"-namespace", ns, "-id", id, "-address", params.GetContainerdGrpcAddress()}
	if params.GetLogLevel() <= bootapi.LogLevel_LOG_LEVEL_DEBUG {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Dir, _ = os.Getwd()
	cmd.Env = append(os.Environ(), "TTRPC_ADDRESS="+params.GetContainerdTtrpcAddress(), "GRPC_ADDRESS="+params.GetContainerdGrpcAddress())
	cmd.ExtraFiles = []*os.File{f} // fd 3: the listening socket pkg/shim serves on
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start shim server: %w", err)
	}
	go cmd.Wait()
	if err := cshim.AdjustOOMScore(cmd.Process.Pid); err != nil {
		log.G(ctx).WithError(err).Warn("could not adjust the shim's OOM score")
	}
	res.Address = address
	return res, writeAddress(address)
}

// addressFile is the file in the bundle (the `start` action's working directory) that names the
// shim's socket. containerd 1.6 and 1.7 read it when they restart, to reconnect to the shims of
// running tasks; without it they take the task for dead, run the `delete` action and forget it
// while it still runs. containerd 2.x records the address itself (bootstrap.json) and falls back
// to this file.
const addressFile = "address"

// writeAddress writes address to addressFile in the working directory (the bundle).
func writeAddress(address string) error {
	f, err := atomicfile.New(addressFile, 0o644)
	if err != nil {
		return fmt.Errorf("record the shim address: %w", err)
	}
	if _, err := f.Write([]byte(address)); err != nil {
		f.Cancel()
		return fmt.Errorf("record the shim address: %w", err)
	}
	return f.Close()
}

// readAnnotations reads only the annotations of bundle/config.json.
func readAnnotations(bundle string) (map[string]string, error) {
	f, err := os.Open(filepath.Join(bundle, oci.ConfigFile))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var s struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.NewDecoder(f).Decode(&s); err != nil {
		return nil, err
	}
	return s.Annotations, nil
}

// Stop is the `delete` action: containerd runs it when a shim died, to clean up after it. It kills
// the container's runner if it still lives (a native container: runc delete --force), unmounts
// the rootfs, removes the cgroup, and reports the recorded exit status, or 137 (SIGKILL) when
// none was recorded.
func (m *Manager) Stop(ctx context.Context, id string) (cshim.StopStatus, error) {
	bundle := ""
	if o, ok := ctx.Value(cshim.OptsKey{}).(cshim.Opts); ok {
		bundle = o.BundlePath
	}
	if bundle == "" {
		cwd, err := os.Getwd()
		if err != nil {
			return cshim.StopStatus{}, err
		}
		bundle = filepath.Join(filepath.Dir(cwd), id)
	}
	st, err := readState(bundle)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		log.G(ctx).WithError(err).Warn("cannot read the shim state of the dead shim")
	}
	if st.Native && st.RuncRoot != "" {
		// runc kills what is left of the container, removes its cgroup and its state.
		if r, err := (&nativeRuntime{root: st.RuncRoot}).runc(bundle); err != nil {
			log.G(ctx).WithError(err).Warn("cannot delete the native container")
		} else if err := runcDelete(r, id); err != nil {
			log.G(ctx).WithError(err).Warn("cannot delete the native container")
		}
	}
	if st.Pid > 0 && st.isLive() {
		_ = syscall.Kill(-st.Pid, syscall.SIGKILL)
		_ = syscall.Kill(st.Pid, syscall.SIGKILL)
		for i := 0; i < 100 && st.isLive(); i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := unmountRootfs(filepath.Join(bundle, "rootfs")); err != nil {
		log.G(ctx).WithError(err).Warn("failed to unmount rootfs")
	}
	if st.CgroupsPath != "" {
		if cg, err := loadCgroup(st.CgroupsPath); err == nil {
			// The shim may have died after the runner joined the cgroup but before it
			// recorded the runner's pid: whatever is still in the container's cgroup is the
			// container's, and goes.
			killCgroup(cg)
			if err := deleteCgroup(cg); err != nil {
				log.G(ctx).WithError(err).Warn("failed to remove cgroup")
			}
		}
	}
	// A shared server that died leaves its socket and directory; the first of its tasks'
	// deletes removes them.
	cleanupDeadShared(bundle)
	if st.Exited {
		return cshim.StopStatus{Pid: st.Pid, ExitStatus: int(st.ExitStatus), ExitedAt: st.ExitedAt}, nil
	}
	return cshim.StopStatus{Pid: st.Pid, ExitStatus: 128 + int(syscall.SIGKILL), ExitedAt: time.Now()}, nil
}

// Info is the `-info` action: the runtime's name and version.
func (m *Manager) Info(ctx context.Context, _ io.Reader) (*types.RuntimeInfo, error) {
	return &types.RuntimeInfo{
		Name:    m.name,
		Version: &types.RuntimeVersion{Version: Version},
	}, nil
}

var _ cshim.Shim = (*Manager)(nil)

// killCgroup SIGKILLs every process in cg and waits (at most 2 s) until it is empty.
func killCgroup(cg cgroup) {
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		pids, err := cg.Procs()
		if err != nil || len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
