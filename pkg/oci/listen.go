package oci

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ListenEnv is the variable of process.env in which a container declares the TCP addresses it
// serves on: a comma-separated list of [host]:port, such as ":8080", "0.0.0.0:8080",
// "127.0.0.1:9000" or "[::]:8080". The runner listens on each in the container's network
// namespace and hands them to the guest as preopened sockets, in this order. The variable stays
// in the guest's environment. See docs/networking.md.
const ListenEnv = "WAZERO_LISTEN"

// ListenFDsEnv is the variable the runner adds to the guest's environment when ListenEnv is set:
// the guest's file descriptor numbers of the listeners, comma-separated, in ListenEnv's order.
const ListenFDsEnv = "WAZERO_LISTEN_FDS"

// ListenAddr is one TCP address a container serves on.
type ListenAddr struct {
	// Host is an IP address without brackets ("127.0.0.1", "::"), or "" for every address of the
	// network namespace.
	Host string `json:"host,omitempty"`
	// Port is the TCP port, 1-65535.
	Port int `json:"port"`
}

// String is the address as net.Listen takes it: "host:port", "[v6]:port" or ":port".
func (a ListenAddr) String() string {
	return net.JoinHostPort(a.Host, strconv.Itoa(a.Port))
}

// BracketedHost is Host with brackets around an IPv6 address, ready to be followed by ":port".
func (a ListenAddr) BracketedHost() string {
	if strings.Contains(a.Host, ":") {
		return "[" + a.Host + "]"
	}
	return a.Host
}

// Listen returns the addresses declared by ListenEnv in env (the last definition wins, as for
// any variable), in order; none when it is unset or blank. A malformed item, a host that is not
// an IP address, a port out of range and an address given twice are InvalidArgument errors that
// name the variable and the item.
func Listen(env []string) ([]ListenAddr, error) {
	v, ok := Env(env, ListenEnv)
	if !ok {
		return nil, nil
	}
	return ParseListen(v)
}

// ParseListen parses a ListenEnv value; see Listen.
func ParseListen(value string) ([]ListenAddr, error) {
	return parseAddrs(ListenEnv, value)
}

// parseAddrs parses a comma-separated list of [host]:port, the value of the variable name (which
// errors name); see Listen.
func parseAddrs(name, value string) ([]ListenAddr, error) {
	if strings.TrimSpace(value) == "" {
		return nil, nil
	}
	bad := func(item, format string, args ...any) error {
		return fmt.Errorf("%s=%q: %q: %s (want a comma-separated list of [host]:port, such as :8080, 127.0.0.1:8080 or [::]:8080): %w",
			name, value, item, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
	}
	var addrs []ListenAddr
	seen := map[ListenAddr]bool{}
	for _, item := range strings.Split(value, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, bad(item, "empty item")
		}
		host, port, err := net.SplitHostPort(item)
		if err != nil {
			if ae, ok := err.(*net.AddrError); ok {
				return nil, bad(item, "%s", ae.Err)
			}
			return nil, bad(item, "%v", err)
		}
		a := ListenAddr{}
		if host != "" {
			ip, err := netip.ParseAddr(host)
			if err != nil {
				return nil, bad(item, "host %q is not an IP address (names are not resolved; leave the host out for every address)", host)
			}
			a.Host = ip.String()
		}
		n, err := strconv.Atoi(port)
		switch {
		case port == "":
			return nil, bad(item, "no port")
		case strings.Trim(port, "0123456789") != "":
			return nil, bad(item, "port %q is not a number", port)
		case err != nil || n < 1 || n > 65535:
			return nil, bad(item, "port %s is out of range 1-65535", port)
		}
		a.Port = n
		if seen[a] {
			return nil, bad(item, "%s is declared twice", a)
		}
		seen[a] = true
		addrs = append(addrs, a)
	}
	return addrs, nil
}

// NewNetNS reports whether the spec asks for a new network namespace (a network namespace entry
// without a path), as `ctr run` does without --net-host. The shim does not create one (see
// NetNSPath), so a container that declares listeners in it is refused rather than listening on
// the host's network.
func NewNetNS(s *specs.Spec) bool {
	if s.Linux == nil {
		return false
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path == ""
		}
	}
	return false
}
