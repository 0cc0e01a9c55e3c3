// Command httpserver is an example GOOS=wasip1 HTTP service for containerd-shim-wazero-v1. It
// serves on the listeners that the container declared in WAZERO_LISTEN, which the runtime
// preopens and numbers in WAZERO_LISTEN_FDS (docs/networking.md):
//
//	GET /health  200 "ok"
//	GET /hello   "hello from wasm http"
//
// Build: GOOS=wasip1 GOARCH=wasm go build -o httpserver.wasm .
//
// Built for another GOOS (GOOS=linux: the runc baseline of the HTTP benchmark, docs/BENCHMARKS.md),
// the same server listens on the WAZERO_LISTEN addresses itself when WAZERO_LISTEN_FDS is unset
// (listen_other.go); its answers are byte for byte those of the wasm build.
package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	listeners, err := listen()
	if err != nil {
		fmt.Fprintln(os.Stderr, "httpserver:", err)
		os.Exit(2)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello from wasm http")
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	errs := make(chan error, len(listeners))
	for _, l := range listeners {
		fmt.Printf("httpserver: serving on %s\n", l.name)
		go func() { errs <- fmt.Errorf("%s: %w", l.name, srv.Serve(l)) }()
	}
	// Serve returns only when a listener fails: stop serving on the others and say why.
	err = <-errs
	srv.Close()
	if errors.Is(err, http.ErrServerClosed) {
		return
	}
	fmt.Fprintln(os.Stderr, "httpserver:", err)
	os.Exit(1)
}

type listener struct {
	net.Listener
	name string
}

// preopenedListeners turns each file descriptor of WAZERO_LISTEN_FDS into a net.Listener.
func preopenedListeners() ([]listener, error) {
	fds := os.Getenv("WAZERO_LISTEN_FDS")
	if fds == "" {
		return nil, errors.New("no WAZERO_LISTEN_FDS: declare the addresses to serve on in WAZERO_LISTEN (for example WAZERO_LISTEN=:8080)")
	}
	addrs := strings.Split(os.Getenv("WAZERO_LISTEN"), ",")
	var ls []listener
	for i, s := range strings.Split(fds, ",") {
		fd, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || fd < 3 {
			return nil, fmt.Errorf("WAZERO_LISTEN_FDS=%q: %q is not a file descriptor", fds, s)
		}
		// Non-blocking first: Go's poller then waits for connections (wazero's poll_oneoff treats
		// a blocking socket as one it cannot poll) and net.FileListener makes it pollable.
		if err := syscall.SetNonblock(fd, true); err != nil {
			return nil, fmt.Errorf("fd %d: set non-blocking: %w", fd, err)
		}
		f := os.NewFile(uintptr(fd), "listener")
		l, err := net.FileListener(f)
		f.Close() // FileListener made its own copy
		if err != nil {
			return nil, fmt.Errorf("fd %d is not a listening socket: %w", fd, err)
		}
		name := fmt.Sprintf("fd %d", fd)
		if i < len(addrs) {
			name += " (" + strings.TrimSpace(addrs[i]) + ")"
		}
		ls = append(ls, listener{l, name})
	}
	return ls, nil
}
