package shim

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/protobuf/proto"
	cshim "github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/log"
)

// RuntimeName is the runtime type users put in `ctr run --runtime` and in containerd's config.
const RuntimeName = "io.containerd.wazero.v1"

// Main runs the shim binary: containerd's `start`, `delete`, `-info` and `-v` actions and the
// long-running task server.
//
// containerd 2.3 changed how `start` gets its parameters: newer daemons send BootstrapParams on
// stdin and read a BootstrapResult on stdout; older ones (1.7, 2.0-2.2) pass flags and environment
// and read a JSON address. containerd's pkg/shim speaks only the new protocol, so Main answers the
// old one itself and hands everything else to pkg/shim. Both protocols start the same server.
func Main(ctx context.Context) {
	m := NewManager(RuntimeName)
	if len(os.Args) == 2 && (os.Args[1] == "-v" || os.Args[1] == "--version" || os.Args[1] == "-version") {
		printVersion(os.Stdout)
		return
	}
	if call, ok := parseStart(os.Args[1:]); ok {
		if err := call.run(ctx, m, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %s", RuntimeName, err)
			os.Exit(1)
		}
		return
	}
	// containerd's pkg/shim defines its flags on the command line's flag set, leaving -v (short for
	// -version) without a description; -h prints them through flag.Usage.
	flag.Usage = func() { writeUsage(flag.CommandLine.Output(), flag.CommandLine) }
	cshim.RunShim(ctx, m)
}

// writeUsage prints fs's flags as `-h` shows them, each with a description: -v, which containerd
// leaves blank, is described as -version's short form.
func writeUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage of %s (containerd runtime %s): [flags] start|delete\n", filepath.Base(os.Args[0]), RuntimeName)
	fs.VisitAll(func(f *flag.Flag) {
		usage := f.Usage
		if usage == "" && f.Name == "v" {
			usage = "show the shim version and exit (short for -version)"
		}
		name, _ := flag.UnquoteUsage(f)
		if name != "" {
			name = " " + name
		}
		fmt.Fprintf(w, "  -%s%s\n    \t%s\n", f.Name, name, usage)
	})
}

// startCall is a `start` invocation as containerd passes it on the command line.
type startCall struct {
	namespace, id, address string
	debug                  bool
}

// parseStart reports whether args are a `start` action; the caller then reads stdin to tell the
// two protocols apart.
func parseStart(args []string) (startCall, bool) {
	fs := flag.NewFlagSet("shim", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var c startCall
	fs.StringVar(&c.namespace, "namespace", "", "")
	fs.StringVar(&c.id, "id", "", "")
	fs.StringVar(&c.address, "address", "", "")
	fs.BoolVar(&c.debug, "debug", false, "")
	fs.String("publish-binary", "", "")
	fs.String("socket", "", "")
	fs.String("debug-socket", "", "")
	fs.String("bundle", "", "")
	fs.Bool("v", false, "")
	fs.Bool("version", false, "")
	fs.Bool("info", false, "")
	if err := fs.Parse(args); err != nil || fs.Arg(0) != "start" {
		return c, false
	}
	return c, true
}

// run answers a `start`: with BootstrapParams on stdin (containerd >= 2.3) it replies with a
// BootstrapResult; otherwise (older daemons) it builds the parameters from the flags and the
// TTRPC_ADDRESS environment and replies with the bare socket address the older daemons read.
func (c startCall) run(ctx context.Context, m *Manager, stdin io.Reader, stdout io.Writer) error {
	input, err := io.ReadAll(io.LimitReader(stdin, 10<<20))
	if err != nil {
		return fmt.Errorf("read stdin: %w", err)
	}
	if c.namespace == "" {
		return fmt.Errorf("shim namespace cannot be empty")
	}
	ctx = namespaces.WithNamespace(ctx, c.namespace)
	params := &bootapi.BootstrapParams{}
	if len(input) > 0 && proto.Unmarshal(input, params) == nil && params.InstanceID == c.id && params.Namespace == c.namespace {
		// The new protocol: exactly what pkg/shim would do, with socket dir bookkeeping.
		if dir := params.GetSocketDir(); dir != "" {
			_ = os.Remove("s")
			if err := os.Symlink(dir, "s"); err != nil {
				return fmt.Errorf("record socket dir: %w", err)
			}
		}
		res, err := m.Start(ctx, params)
		if err != nil {
			return err
		}
		data, err := proto.Marshal(res)
		if err != nil {
			return err
		}
		_, err = stdout.Write(data)
		return err
	}
	log.G(ctx).Debug("start: no bootstrap parameters on stdin, using the pre-2.3 protocol")
	params = &bootapi.BootstrapParams{
		InstanceID:             c.id,
		Namespace:              c.namespace,
		ContainerdGrpcAddress:  c.address,
		ContainerdTtrpcAddress: os.Getenv("TTRPC_ADDRESS"),
		LogLevel:               bootapi.LogLevel_LOG_LEVEL_INFO,
	}
	if c.debug {
		params.LogLevel = bootapi.LogLevel_LOG_LEVEL_DEBUG
	}
	res, err := m.Start(ctx, params)
	if err != nil {
		return err
	}
	// A bare address: every daemon before 2.3 (1.6 included) reads it, and then speaks task API
	// v2, which the server also serves (see registerTaskV2).
	_, err = io.WriteString(stdout, res.Address)
	return err
}

// printVersion prints the shim's version and those of the parts that decide its behaviour.
func printVersion(w io.Writer) {
	fmt.Fprintf(w, "containerd-shim-wazero-v1:\n  Runtime:    %s\n  Version:    %s\n  wazero:     %s\n  containerd: %s (pkg/shim)\n  Go:         %s\n",
		RuntimeName, Version, moduleVersion("github.com/tetratelabs/wazero"), moduleVersion("github.com/containerd/containerd/v2"), goruntime.Version())
}

// moduleVersion returns the version of a module this binary was built with.
func moduleVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				return d.Version
			}
		}
	}
	return "unknown"
}
