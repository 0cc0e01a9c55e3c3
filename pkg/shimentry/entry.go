package shimentry

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// RuntimeName is the runtime type users put in `ctr run --runtime` and in containerd's config
// (pkg/shim.RuntimeName; repeated here so that the entry does not link pkg/shim).
const RuntimeName = "io.containerd.wazero.v1"

// ServerBinary is the file name of the shim's server binary (cmd/containerd-shim-wazero-v1-server):
// the task service containerd talks to, and the full `delete`. The entry looks for it beside its own
// executable.
const ServerBinary = "containerd-shim-wazero-v1-server"

// Main is the entry binary: it runs the `start` and `delete` actions it can answer itself and
// replaces itself with the server binary for everything else. It returns only to exit (the code).
func Main() int {
	server, err := serverPath()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", RuntimeName, err)
		return 1
	}
	c, ok := parseAction(os.Args[1:])
	switch {
	case ok && c.action == "start":
		if err := c.start(server, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %s", RuntimeName, err)
			return 1
		}
		return 0
	case ok && c.action == "delete":
		handled, err := c.delete(os.Stdout)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %s", RuntimeName, err)
			return 1
		}
		if handled {
			return 0
		}
	}
	err = syscall.Exec(server, append([]string{server}, os.Args[1:]...), os.Environ())
	fmt.Fprintf(os.Stderr, "%s: run the shim server %s: %v\n", RuntimeName, server, err)
	return 1
}

// serverPath returns ServerBinary beside this executable, or an error that says what to install.
func serverPath() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("cannot find this executable's directory (to run %s from it): %w", ServerBinary, err)
	}
	p := filepath.Join(filepath.Dir(exe), ServerBinary)
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("the shim server %s is missing: install it beside %s (make install, or the node installer, installs both)", p, exe)
		}
		return "", fmt.Errorf("the shim server %s: %w", p, err)
	}
	return p, nil
}

// call is a `start` or `delete` action as containerd passes it on the command line (the flags of
// containerd's pkg/shim).
type call struct {
	action                         string
	namespace, id, address, bundle string
	debug                          bool
}

// parseAction reports whether args are a `start` or `delete` action with flags the entry knows;
// anything else goes to the server binary, which reports its own errors.
func parseAction(args []string) (call, bool) {
	fs := flag.NewFlagSet("shim", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var c call
	fs.StringVar(&c.namespace, "namespace", "", "")
	fs.StringVar(&c.id, "id", "", "")
	fs.StringVar(&c.address, "address", "", "")
	fs.StringVar(&c.bundle, "bundle", "", "")
	fs.BoolVar(&c.debug, "debug", false, "")
	fs.String("publish-binary", "", "")
	fs.String("socket", "", "")
	fs.String("debug-socket", "", "")
	var v, version, info bool
	fs.BoolVar(&v, "v", false, "")
	fs.BoolVar(&version, "version", false, "")
	fs.BoolVar(&info, "info", false, "")
	if err := fs.Parse(args); err != nil || v || version || info || fs.NArg() != 1 {
		return c, false
	}
	c.action = fs.Arg(0)
	return c, c.action == "start" || c.action == "delete"
}
