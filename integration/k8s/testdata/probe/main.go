// Command probe is the wasip1 guest of the Kubernetes tests (integration/k8s): its behaviour is
// steered through files in /state, a hostPath volume the test writes, so a test can make a probe
// pass and then fail while the container keeps running.
//
//	probe serve       serves HTTP on the listeners of WAZERO_LISTEN_FDS (docs/networking.md):
//	                  GET /ready 200 while /state/ready exists, else 503;
//	                  GET /live  200 while /state/live exists, else 503;
//	                  GET /hello "hello from probe".
//	                  A second listener, if declared, is closed once /state/tcp is gone.
//	probe fail-once N exits N on its first run in the pod (marker /state/ran, written first), 0 on the next.
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
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe serve | fail-once N")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		serve()
	case "fail-once":
		code := 1
		if len(os.Args) > 2 {
			code, _ = strconv.Atoi(os.Args[2])
		}
		if _, err := os.Stat("/state/ran"); err == nil {
			fmt.Println("probe: second run, exiting 0")
			return
		}
		if err := os.WriteFile("/state/ran", []byte("1"), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "probe:", err)
			os.Exit(2)
		}
		fmt.Printf("probe: first run, exiting %d\n", code)
		os.Exit(code)
	default:
		fmt.Fprintln(os.Stderr, "probe: unknown command", os.Args[1])
		os.Exit(2)
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func serve() {
	ls, err := listeners()
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(2)
	}
	mux := http.NewServeMux()
	gate := func(file string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !exists(file) {
				http.Error(w, file+" is gone", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprint(w, "ok")
		}
	}
	mux.HandleFunc("GET /ready", gate("/state/ready"))
	mux.HandleFunc("GET /live", gate("/state/live"))
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello from probe") })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errs := make(chan error, 1)
	go func() { errs <- srv.Serve(ls[0]) }()
	fmt.Println("probe: serving")
	if len(ls) > 1 {
		// The second listener only accepts (and closes) connections, until /state/tcp is gone.
		tcp := ls[1]
		go func() {
			for {
				c, err := tcp.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		go func() {
			for exists("/state/tcp") {
				time.Sleep(200 * time.Millisecond)
			}
			fmt.Println("probe: /state/tcp is gone, closing the second listener")
			tcp.Close()
		}()
	}
	err = <-errs
	if errors.Is(err, http.ErrServerClosed) {
		return
	}
	fmt.Fprintln(os.Stderr, "probe:", err)
	os.Exit(1)
}

// listeners turns each file descriptor of WAZERO_LISTEN_FDS into a net.Listener.
func listeners() ([]net.Listener, error) {
	fds := os.Getenv("WAZERO_LISTEN_FDS")
	if fds == "" {
		return nil, errors.New("no WAZERO_LISTEN_FDS: declare WAZERO_LISTEN")
	}
	var ls []net.Listener
	for _, s := range strings.Split(fds, ",") {
		fd, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("WAZERO_LISTEN_FDS=%q: %v", fds, err)
		}
		if err := syscall.SetNonblock(fd, true); err != nil {
			return nil, fmt.Errorf("fd %d: %w", fd, err)
		}
		f := os.NewFile(uintptr(fd), "listener")
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("fd %d: %w", fd, err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}
