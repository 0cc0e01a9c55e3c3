//go:build !wasip1

package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// listen returns the listeners to serve on. A native build (the runc baseline of the HTTP
// benchmark) uses preopened sockets too when a runtime hands it some in WAZERO_LISTEN_FDS;
// otherwise it listens itself on the addresses of WAZERO_LISTEN, in order, as the wazero shim
// would for the wasm build.
func listen() ([]listener, error) {
	if os.Getenv("WAZERO_LISTEN_FDS") != "" {
		return preopenedListeners()
	}
	var ls []listener
	for _, a := range strings.Split(os.Getenv("WAZERO_LISTEN"), ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		l, err := net.Listen("tcp", a)
		if err != nil {
			for _, x := range ls {
				x.Close()
			}
			return nil, fmt.Errorf("WAZERO_LISTEN: %w", err)
		}
		ls = append(ls, listener{l, l.Addr().String() + " (" + a + ")"})
	}
	if len(ls) == 0 {
		return nil, errors.New("no WAZERO_LISTEN: declare the addresses to serve on (for example WAZERO_LISTEN=:8080)")
	}
	return ls, nil
}
