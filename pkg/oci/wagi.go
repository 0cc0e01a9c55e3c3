package oci

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

// The per-request (WAGI) mode: instead of running the module once as a long-lived process, the
// runner serves HTTP itself and runs a fresh instance of the (already compiled) module for every
// request, CGI style: the request in the environment and on stdin, the response on stdout. A
// container asks for it with variables of process.env, which a Kubernetes Pod spec and
// `ctr run --env` can both set. See docs/networking.md.
const (
	// WAGIEnv declares the TCP addresses the runner serves requests on: a comma-separated list
	// of [host]:port, as ListenEnv. Setting it selects the per-request mode.
	WAGIEnv = "WAZERO_WAGI"
	// WAGIConcurrencyEnv bounds how many instances run at once (default DefaultWAGIConcurrency,
	// 1-1024). Requests beyond it wait for a free instance, at most the timeout, then get 503.
	WAGIConcurrencyEnv = "WAZERO_WAGI_CONCURRENCY"
	// WAGITimeoutEnv bounds how long one request's instance may run, as a Go duration ("30s",
	// "500ms"; default DefaultWAGITimeout). An instance still running then is stopped and the
	// client gets 504 Gateway Timeout.
	WAGITimeoutEnv = "WAZERO_WAGI_TIMEOUT"
	// WAGIMaxBodyEnv bounds a request's body, in bytes (default DefaultWAGIMaxBody); a larger one
	// gets 413 Request Entity Too Large without running the module.
	WAGIMaxBodyEnv = "WAZERO_WAGI_MAX_BODY"
	// WAGIWriteTimeoutEnv bounds how long writing one response to the client may take, as a Go
	// duration (default DefaultWAGIWriteTimeout). The request's instance slot is held until the
	// response is written, so a client that does not read its response holds a slot (and the
	// buffered response) at most this long; then its connection is closed.
	WAGIWriteTimeoutEnv = "WAZERO_WAGI_WRITE_TIMEOUT"
	// WAGIMaxConnectionsEnv bounds the client connections open at once, over all the listeners
	// (default DefaultWAGIMaxConnections, 1-MaxWAGIConnections). Connections beyond it wait in
	// the kernel's listen queue until one closes.
	WAGIMaxConnectionsEnv = "WAZERO_WAGI_MAX_CONNECTIONS"
)

// Defaults of the per-request mode.
const (
	DefaultWAGIConcurrency = 8
	MaxWAGIConcurrency     = 1024
	DefaultWAGITimeout     = 30 * time.Second
	DefaultWAGIMaxBody     = 10 << 20
	// DefaultWAGIWriteTimeout lets a 16 MiB response (the most an instance may write) reach a
	// client reading at about 0.5 MB/s; see RATIONALE.md.
	DefaultWAGIWriteTimeout = 30 * time.Second
	// DefaultWAGIMaxConnections keeps idle connections (about 10 KiB each in the runner) and
	// headers being read (at most the header limit each) within a few tens of MiB; see RATIONALE.md.
	DefaultWAGIMaxConnections = 1024
	MaxWAGIConnections        = 65536
)

// WAGI is the per-request mode's configuration, from the WAGI* variables.
type WAGI struct {
	// Listen are the addresses to serve on, in declared order.
	Listen []ListenAddr `json:"listen"`
	// Concurrency is the most instances running at once.
	Concurrency int `json:"concurrency"`
	// Timeout bounds each request's instance; a request waiting for an instance also waits at
	// most this long.
	Timeout time.Duration `json:"timeout"`
	// MaxBody is the largest request body accepted, in bytes.
	MaxBody int64 `json:"maxBody"`
	// WriteTimeout bounds writing one response; 0 means DefaultWAGIWriteTimeout.
	WriteTimeout time.Duration `json:"writeTimeout,omitempty"`
	// MaxConnections bounds the client connections open at once; 0 means
	// DefaultWAGIMaxConnections.
	MaxConnections int `json:"maxConnections,omitempty"`
}

// ParseWAGI returns the per-request mode's configuration from env, or nil when WAGIEnv is unset
// or blank (the module then runs once, as a command). A malformed value of any WAGI* variable,
// and WAGIEnv together with ListenEnv (a per-request instance cannot serve on preopened
// sockets: the runner serves), are InvalidArgument errors naming the variable.
func ParseWAGI(env []string) (*WAGI, error) {
	v, ok := Env(env, WAGIEnv)
	if !ok || strings.TrimSpace(v) == "" {
		return nil, nil
	}
	addrs, err := parseAddrs(WAGIEnv, v)
	if err != nil {
		return nil, err
	}
	if l, ok := Env(env, ListenEnv); ok && strings.TrimSpace(l) != "" {
		return nil, fmt.Errorf("%s and %s are both set: %s serves each request with a fresh instance of the module, %s hands listeners to one long-lived instance; set only one: %w",
			WAGIEnv, ListenEnv, WAGIEnv, ListenEnv, errdefs.ErrInvalidArgument)
	}
	w := &WAGI{Listen: addrs, Concurrency: DefaultWAGIConcurrency, Timeout: DefaultWAGITimeout, MaxBody: DefaultWAGIMaxBody,
		WriteTimeout: DefaultWAGIWriteTimeout, MaxConnections: DefaultWAGIMaxConnections}
	if s, ok := Env(env, WAGIConcurrencyEnv); ok && strings.TrimSpace(s) != "" {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > MaxWAGIConcurrency {
			return nil, fmt.Errorf("%s=%q: want a number of instances from 1 to %d (default %d): %w",
				WAGIConcurrencyEnv, s, MaxWAGIConcurrency, DefaultWAGIConcurrency, errdefs.ErrInvalidArgument)
		}
		w.Concurrency = n
	}
	if s, ok := Env(env, WAGITimeoutEnv); ok && strings.TrimSpace(s) != "" {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%s=%q: want a positive duration such as 30s or 500ms (default %v): %w",
				WAGITimeoutEnv, s, DefaultWAGITimeout, errdefs.ErrInvalidArgument)
		}
		w.Timeout = d
	}
	if s, ok := Env(env, WAGIMaxBodyEnv); ok && strings.TrimSpace(s) != "" {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%s=%q: want a number of bytes (default %d): %w",
				WAGIMaxBodyEnv, s, DefaultWAGIMaxBody, errdefs.ErrInvalidArgument)
		}
		w.MaxBody = n
	}
	if s, ok := Env(env, WAGIWriteTimeoutEnv); ok && strings.TrimSpace(s) != "" {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%s=%q: want a positive duration such as 30s or 500ms (default %v): %w",
				WAGIWriteTimeoutEnv, s, DefaultWAGIWriteTimeout, errdefs.ErrInvalidArgument)
		}
		w.WriteTimeout = d
	}
	if s, ok := Env(env, WAGIMaxConnectionsEnv); ok && strings.TrimSpace(s) != "" {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > MaxWAGIConnections {
			return nil, fmt.Errorf("%s=%q: want a number of connections from 1 to %d (default %d): %w",
				WAGIMaxConnectionsEnv, s, MaxWAGIConnections, DefaultWAGIMaxConnections, errdefs.ErrInvalidArgument)
		}
		w.MaxConnections = n
	}
	return w, nil
}

// InstancePages is the cap on each instance's linear memory in the per-request mode: the
// container's guest memory (total, from MemoryPages) shared among Concurrency instances, so that
// all of them at their cap still fit in the container's memory limit. Never below 1 page.
func (w *WAGI) InstancePages(total uint32) uint32 {
	if total >= MaxPages || w.Concurrency <= 1 {
		return total
	}
	return max(total/uint32(w.Concurrency), 1)
}
