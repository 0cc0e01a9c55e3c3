package shim

import (
	goruntime "runtime"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	cshim "github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/containerd/v2/pkg/sys/reaper"
	"github.com/containerd/containerd/v2/plugins"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"
)

func init() {
	registry.Register(&plugin.Registration{
		Type:     plugins.TTRPCPlugin,
		ID:       "task",
		Requires: []plugin.Type{plugins.EventPlugin, plugins.InternalPlugin},
		InitFn: func(ic *plugin.InitContext) (any, error) {
			// The server waits on containerd, FIFOs and runners; it runs no guest code: one P
			// instead of the two containerd asks for (GOMAXPROCS=2 in the shim's environment)
			// is enough and holds less memory (RATIONALE.md, "Why runners and shim servers run
			// with GOMAXPROCS=1").
			goruntime.GOMAXPROCS(1)
			pp, err := ic.GetByID(plugins.EventPlugin, "publisher")
			if err != nil {
				return nil, err
			}
			ss, err := ic.GetByID(plugins.InternalPlugin, "shutdown")
			if err != nil {
				return nil, err
			}
			// Runners are started from the runner binary beside the shim when it was built
			// together with this shim, else from /proc/self/exe, the very binary this shim runs
			// even after an upgrade replaced the file: a shim and its runners are always one
			// build (runnerexe.go).
			const self = "/proc/self/exe"
			// containerd 1.6 sets no NAMESPACE in the shim's environment; pkg/shim puts the
			// -namespace flag in the context.
			ns, _ := namespaces.Namespace(ic.Context)
			node, err := loadSettings()
			if err != nil {
				log.G(ic.Context).WithError(err).Warn("bad shim settings in containerd's environment: their defaults are used")
			}
			// containerd's GRPC address: the shim connects back, only when a module is not in
			// the rootfs, to read it from the image's layers (image.go).
			images := newImageModules(ic.Properties[plugins.PropertyGRPCAddress], ns, node)
			// runc's exits (native containers, native.go) are seen by the shim's reaper, which
			// reaps every child of the shim server: go-runc must wait through it, not through
			// exec.Cmd.Wait, which would race with it. (The `delete` action has no reaper and
			// keeps go-runc's default.)
			runc.Monitor = reaper.Default
			rt := &wasmRuntime{self: self, namespace: ns, node: node, images: images, runnerBin: newRunnerBinary()}
			svc := newService(ic.Context, rt, pp.(cshim.Publisher), ss.(shutdown.Service))
			if sh, err := loadShared(); err != nil {
				log.G(ic.Context).WithError(err).Warn("shared shim server")
			} else if sh != nil {
				svc.share(sh)
			}
			return svc, nil
		},
	})
}
