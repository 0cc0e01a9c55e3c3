package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/tetratelabs/wazero/experimental/sock"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// Preopened listeners (WAZERO_LISTEN, docs/networking.md).
//
// wazero v1.12 preopens TCP listeners only from addresses (experimental/sock): it calls
// net.Listen itself while instantiating the module, which is at Start, and takes no socket that is
// already open. Errors must come at Create, though, so the runner listens on every address at
// Create (OpenListeners), holds the sockets until Start, and closes them right before wazero
// listens again on the same addresses in the same thread, microseconds later (see RATIONALE.md).

// unprivilegedPortStart is the sysctl below which binding a port needs CAP_NET_BIND_SERVICE. It
// is per network namespace: read from the thread that joined the container's.
const unprivilegedPortStart = "/proc/sys/net/ipv4/ip_unprivileged_port_start"

// OpenListeners listens on each address of cfg.Listen (or, in the per-request mode, of
// cfg.WAGI.Listen), in order, in the network namespace of the calling thread (the runner's main
// thread, which joined the container's). An address in use, one the network namespace does not
// have, or a privileged port the container may not bind (see Config.BindPrivileged) is an error
// naming the address and the variable that declared it; the listeners opened so far are closed.
func OpenListeners(cfg *Config) ([]net.Listener, error) {
	addrs, variable := cfg.Listen, oci.ListenEnv
	if cfg.WAGI != nil {
		addrs, variable = cfg.WAGI.Listen, oci.WAGIEnv
	}
	var ls []net.Listener
	minPort := -1
	for _, a := range addrs {
		if !cfg.BindPrivileged && a.Port < 1024 {
			if minPort < 0 {
				minPort = privilegedPortLimit()
			}
			if a.Port < minPort {
				closeListeners(ls)
				return nil, fmt.Errorf("cannot listen on %s (%s): permission denied: port %d is below net.ipv4.ip_unprivileged_port_start (%d) of the container's network namespace and the container's process does not have CAP_NET_BIND_SERVICE: use a port from %d up, or give the container that capability",
					a, variable, a.Port, minPort, minPort)
			}
		}
		l, err := net.Listen("tcp", a.String())
		if err != nil {
			closeListeners(ls)
			return nil, listenError(a, variable, err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// privilegedPortLimit reads net.ipv4.ip_unprivileged_port_start of the calling thread's network
// namespace; 1024, the kernel's default, when it cannot.
func privilegedPortLimit() int {
	b, err := os.ReadFile(unprivilegedPortStart)
	if err != nil {
		return 1024
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 1024
	}
	return n
}

// listenError says which declared address failed and, for the usual causes, what to do.
func listenError(a oci.ListenAddr, variable string, err error) error {
	hint := ""
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		hint = ": another process in the container's network namespace (the host's, with host networking) is using the port"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		hint = ": the container's network namespace has no such address"
	case errors.Is(err, syscall.EACCES):
		hint = ": the container may not bind this port"
	}
	return fmt.Errorf("cannot listen on %s (%s): %w%s", a, variable, err, hint)
}

func closeListeners(ls []net.Listener) {
	for _, l := range ls {
		_ = l.Close()
	}
}

// listenFDs returns the guest's file descriptors of cfg.Listen, in order: wazero numbers stdin,
// stdout and stderr 0-2, then each preopened directory (preopens of them), then each listener.
func listenFDs(cfg *Config, preopens int) []int {
	fds := make([]int, len(cfg.Listen))
	for i := range fds {
		fds[i] = 3 + preopens + i
	}
	return fds
}

// withListeners returns ctx with wazero's socket configuration for cfg.Listen, and env with
// WAZERO_LISTEN_FDS set to their guest fds (replacing any the spec had: it must be right).
// Without listeners both are returned unchanged.
func withListeners(ctx context.Context, cfg *Config, preopens int, env []string) (context.Context, []string) {
	if len(cfg.Listen) == 0 {
		return ctx, env
	}
	sc := sock.NewConfig()
	for _, a := range cfg.Listen {
		// wazero joins host and port with a colon: an IPv6 host needs its brackets.
		sc = sc.WithTCPListener(a.BracketedHost(), a.Port)
	}
	fds := make([]string, len(cfg.Listen))
	for i, fd := range listenFDs(cfg, preopens) {
		fds[i] = strconv.Itoa(fd)
	}
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, oci.ListenFDsEnv+"=") {
			out = append(out, kv)
		}
	}
	return sock.WithConfig(ctx, sc), append(out, oci.ListenFDsEnv+"="+strings.Join(fds, ","))
}
