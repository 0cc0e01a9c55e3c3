package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/wasi"
)

// The per-request (WAGI) mode (oci.WAGIEnv, docs/networking.md).
//
// The runner serves HTTP itself on the listeners it opened at Create, and runs a fresh instance
// of the compiled module for every request, CGI style (RFC 3875, with WAGI's conventions): the
// request line, headers and query in the environment, the body on stdin; the module writes a CGI
// response (header lines, a blank line, the body) to stdout and its diagnostics to stderr, which
// is the container's. No request can see another's linear memory: each instance starts from the
// module's initial state and is closed when it ends.

// MaxWAGIResponse bounds what one instance may write to stdout (headers and body): 16 MiB. The
// response is buffered until the instance ends (its exit code decides between the response and a
// 500), so this bounds the runner's memory per request outside the guest's linear memory.
const MaxWAGIResponse = 16 << 20

// wagiMaxHeaderBytes bounds a request's line and header block: 32 KiB (Go's default is 1 MiB),
// nginx's default total (4 buffers of 8 KiB). A larger one gets 431 without running the module.
// Headers are read before a slot is taken, on every open connection at once, so this and the
// connection cap bound the runner's memory for headers (see RATIONALE.md).
const wagiMaxHeaderBytes = 32 << 10

// wagiReadHeaderTimeout bounds the time to receive a request's line and headers (a client
// sending them slowly is disconnected). A variable for tests.
var wagiReadHeaderTimeout = 10 * time.Second

// wagiGCPercent is the runner's GOGC in the per-request mode, unless GOGC is set.
const wagiGCPercent = 400

// wagiServerSoftware is SERVER_SOFTWARE in a handler's environment.
const wagiServerSoftware = "containerd-shim-wazero-v1"

// wagiHandler serves each request with a fresh instance of p's module.
type wagiHandler struct {
	cfg  *Config
	w    *oci.WAGI
	p    *Prepared
	base wazero.ModuleConfig
	// env is the container's environment (KEY=VALUE, without repeated names), envAt the index
	// of each name in it: a request's CGI variables replace those of the same name.
	env   []string
	envAt map[string]int
	// slots holds a token per running instance; its capacity is the concurrency bound. A token
	// is taken before the body is read and given back only once the instance has ended (also
	// after its request got a 504), so all tokens free means no instance runs.
	slots  chan struct{}
	stderr io.Writer
	// writeTimeout bounds writing a response (WAGIWriteTimeoutEnv).
	writeTimeout time.Duration
	// wasi configures each instance's WASI descriptor table (pkg/wasi).
	wasi wasi.Options
	// mem lends instances linear memory that earlier ones used, zeroed (wagi_pool.go).
	mem *wagiMemoryPool
	// jobs hands instances to idle workers; quit, closed when serving ends, stops them.
	jobs chan wagiJob
	quit chan struct{}
}

// ServeWAGI serves requests on p.Listeners (opened at Create by OpenListeners) until the runner
// gets SIGTERM or SIGINT, then stops accepting, lets the requests in flight finish (for at most
// the request timeout) and returns 0. It returns ExitRunnerError if a listener fails. stderr is
// the container's: the guests' stderr and the runner's own messages go there.
func ServeWAGI(ctx context.Context, cfg *Config, p *Prepared, stderr io.Writer) int {
	// Runners start with one P (Spawn): instances of this mode run at once, on every CPU the
	// container may use (Go's default: the cgroup's CPU quota).
	runtime.SetDefaultGOMAXPROCS()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(stop)
	return serveWAGI(ctx, cfg, p, stderr, stop)
}

// serveWAGI is ServeWAGI with the stop signal as a channel (tests close it).
func serveWAGI(ctx context.Context, cfg *Config, p *Prepared, stderr io.Writer, stop <-chan os.Signal) int {
	w := cfg.WAGI
	if os.Getenv("GOGC") == "" {
		// Each request allocates a little garbage (its request, environment and response, and
		// wazero's instance): collect at five times the live heap, not twice, which spends
		// about a quarter of the CPU per request on collections (docs/PERFORMANCE.md). The
		// live heap is small (the instances' memories, kept in the pool), and the memory limit
		// below still applies.
		debug.SetGCPercent(wagiGCPercent)
	}
	if cfg.MemoryLimit > 0 {
		// Instances' memory is Go heap: collect before the container's limit, not at twice the
		// live heap (GOGC's default), which would get the runner OOM-killed under load.
		debug.SetMemoryLimit(cfg.MemoryLimit - cfg.MemoryLimit/8)
	}
	h := newWAGIHandler(cfg, p, stderr)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: wagiReadHeaderTimeout,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    wagiMaxHeaderBytes,
	}
	maxConns := w.MaxConnections
	if maxConns <= 0 {
		maxConns = oci.DefaultWAGIMaxConnections
	}
	conns := make(chan struct{}, maxConns) // one token per open connection, over all listeners
	errs := make(chan error, len(p.Listeners))
	for _, l := range p.Listeners {
		ll := &limitListener{Listener: l, conns: conns, closed: make(chan struct{})}
		go func() { errs <- fmt.Errorf("%s: %w", l.Addr(), srv.Serve(ll)) }()
	}
	names := make([]string, len(p.Listeners))
	for i, l := range p.Listeners {
		names[i] = l.Addr().String()
	}
	fmt.Fprintf(stderr, "wagi: serving %s on %s (%s), a fresh instance per request, at most %d at once, %v each\n",
		cfg.Module.GuestPath, strings.Join(names, ", "), oci.WAGIEnv, w.Concurrency, w.Timeout)
	code := 0
	select {
	case <-stop:
	case err := <-errs:
		fmt.Fprintf(stderr, "wagi: module %s: serving stopped: %v\n", cfg.Module.GuestPath, err)
		code = ExitRunnerError
	}
	sctx, cancel := context.WithTimeout(ctx, w.Timeout)
	defer cancel()
	_ = srv.Shutdown(sctx)
	h.drain(sctx)
	close(h.quit)
	p.Listeners = nil
	return code
}

func newWAGIHandler(cfg *Config, p *Prepared, stderr io.Writer) *wagiHandler {
	fc, _ := fsConfig(cfg)
	base := guestModuleConfig(cfg, fc, instanceStderr{stderr})
	// The environment is given per instance through the WASI layer (wasi.WithEnviron), not
	// the ModuleConfig, whose WithEnv copies the whole configuration per variable.
	var env []string
	envAt := map[string]int{}
	for _, kv := range cfg.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue // not KEY=VALUE: a guest could not see it as a variable either
		}
		if i, ok := envAt[k]; ok {
			env[i] = kv // a later entry of the same name replaces the earlier, in its place
			continue
		}
		envAt[k] = len(env)
		env = append(env, kv)
	}
	wt := cfg.WAGI.WriteTimeout
	if wt <= 0 {
		wt = oci.DefaultWAGIWriteTimeout
	}
	// Every instance starts with the same descriptors: the WASI layer reads them from the first
	// and copies them into the others (pkg/wasi Layout).
	wo := wasiOptions(cfg)
	wo.Layout = wasi.NewLayout()
	return &wagiHandler{cfg: cfg, w: cfg.WAGI, p: p, base: base, env: env, envAt: envAt, slots: make(chan struct{}, cfg.WAGI.Concurrency), stderr: stderr, writeTimeout: wt, wasi: wo, mem: newWAGIMemoryPool(cfg.WAGI.Concurrency), jobs: make(chan wagiJob), quit: make(chan struct{})}
}

// instanceStderr is the container's stderr as instances get it: a plain writer, so that wazero
// does not fstat the container's stderr (an *os.File: its FIFO or log pipe) at every
// instantiation, which took over a quarter of the runner's CPU per request in a container
// (docs/PERFORMANCE.md). The guest writes to the same file; fd 2 shows as a character device
// rather than a FIFO.
type instanceStderr struct{ io.Writer }

// limitListener accepts a connection only while fewer than cap(conns) are open (over every
// listener sharing conns); further clients wait in the kernel's listen queue, costing the runner
// nothing. Closing it ends an Accept waiting for a token.
type limitListener struct {
	net.Listener
	conns     chan struct{}
	closeOnce sync.Once
	closed    chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.conns <- struct{}{}:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.conns
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.conns }}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// limitConn gives its token back once, at its first Close.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// ServeHTTP runs one request: it waits for a free instance slot (503 after the timeout), reads
// the body (413 beyond the bound), runs a fresh instance with the request in its environment and
// stdin, and writes its CGI response (within the write timeout), all while holding the slot. A
// trap, a non-zero exit or a malformed response is a 500, an instance still running at the
// timeout a 504; the instance's stderr says why.
func (h *wagiHandler) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(rw)
	// A write deadline stays on the connection: clear the previous response's, and bound the
	// flush of this one's last bytes (after the handler returns, the slot given back).
	_ = rc.SetWriteDeadline(time.Time{})
	defer func() { _ = rc.SetWriteDeadline(time.Now().Add(h.writeTimeout)) }()
	if !h.acquire(rw, r) {
		return
	}
	s := &wagiSlot{h: h}
	defer s.release()

	body, ok := h.readBody(rw, r, rc)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.w.Timeout)
	defer cancel()
	out := &cappedBuffer{max: MaxWAGIResponse}
	mc := h.base.WithStdin(bytes.NewReader(body)).WithStdout(out)
	ictx, err := wasi.WithEnviron(experimental.WithMemoryAllocator(wasi.NewContext(ctx, h.wasi), h.mem), h.environ(r, int64(len(body))))
	if err != nil {
		// A NUL byte, from a %00 in the path: a C program would see the variable cut short.
		http.Error(rw, fmt.Sprintf("request not representable as CGI variables: %v", err), http.StatusBadRequest)
		return
	}
	err = h.run(ctx, ictx, mc, s)
	if r.Context().Err() != nil {
		return // the client went away; its instance was stopped
	}
	if !h.instanceSucceeded(rw, r, err, out) {
		return
	}
	// The slot is held until the response has been written (or its write timed out): a client
	// that does not read its response holds one slot and one buffered response, never more, so
	// such clients cannot make the runner buffer responses beyond the concurrency bound.
	_ = rc.SetWriteDeadline(time.Now().Add(h.writeTimeout))
	if err := writeCGIResponse(rw, out.Bytes()); err != nil {
		fmt.Fprintf(h.stderr, "wagi: %s %s: module %s: %v\n", r.Method, r.URL.RequestURI(), h.cfg.Module.GuestPath, err)
		http.Error(rw, "handler response malformed", http.StatusInternalServerError)
	}
}

// acquire takes an instance slot for r, waiting at most the request timeout. It answers 503
// (with Retry-After) when none frees in time, and returns false then or when the client left.
func (h *wagiHandler) acquire(rw http.ResponseWriter, r *http.Request) bool {
	select {
	case h.slots <- struct{}{}:
		return true // a free slot: no timer needed
	default:
	}
	deadline := time.NewTimer(h.w.Timeout)
	defer deadline.Stop()
	select {
	case h.slots <- struct{}{}:
		return true
	case <-deadline.C:
		rw.Header().Set("Retry-After", "1")
		http.Error(rw, fmt.Sprintf("all %d instances are busy", h.w.Concurrency), http.StatusServiceUnavailable)
	case <-r.Context().Done():
	}
	return false
}

// wagiSlot is the slot a request holds: released once, by the handler, or by the instance's
// goroutine when the handler answered before the instance stopped (keep).
type wagiSlot struct {
	h    *wagiHandler
	kept bool
}

func (s *wagiSlot) release() {
	if !s.kept {
		s.kept = true
		<-s.h.slots
	}
}

// readBody reads r's body, at most MaxBody bytes, within the request timeout: bodies in memory
// are bounded by the concurrency (the slot is held), and a client trickling its body cannot hold
// a slot for longer. It answers 413 or 408 and returns false when the body cannot be read; a
// request without a body (http.NoBody, as Go's server gives a GET) costs nothing.
func (h *wagiHandler) readBody(rw http.ResponseWriter, r *http.Request, rc *http.ResponseController) ([]byte, bool) {
	if r.ContentLength > h.w.MaxBody {
		http.Error(rw, fmt.Sprintf("request body over %d bytes (%s)", h.w.MaxBody, oci.WAGIMaxBodyEnv), http.StatusRequestEntityTooLarge)
		return nil, false
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil, true
	}
	_ = rc.SetReadDeadline(time.Now().Add(h.w.Timeout))
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, h.w.MaxBody))
	if err != nil {
		// The rest of the body is not read: the connection cannot serve another request.
		rw.Header().Set("Connection", "close")
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			http.Error(rw, fmt.Sprintf("request body over %d bytes (%s)", h.w.MaxBody, oci.WAGIMaxBodyEnv), http.StatusRequestEntityTooLarge)
		case errors.Is(err, os.ErrDeadlineExceeded):
			http.Error(rw, fmt.Sprintf("request body not received within %v (%s)", h.w.Timeout, oci.WAGITimeoutEnv), http.StatusRequestTimeout)
		}
		return nil, false // otherwise the client went away: nobody to answer
	}
	_ = rc.SetReadDeadline(time.Time{})
	return body, true
}

// run instantiates the module (which runs its _start) with ictx and mc on a goroutine of its
// own, and returns its error, or ctx's once ctx ends first: a handler blocked in a host call (a
// long sleep) notices its deadline only when it returns to wasm, so the request is answered now
// and the instance's goroutine gives s back once it has really stopped.
func (h *wagiHandler) run(ctx, ictx context.Context, mc wazero.ModuleConfig, s *wagiSlot) error {
	done := make(chan error, 1)
	j := wagiJob{ictx: ictx, mc: mc, done: done}
	select {
	case h.jobs <- j:
	default:
		go h.worker(j)
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		s.kept = true
		go func() { <-done; <-h.slots }()
		return ctx.Err()
	}
}

// wagiJob is one instance to run: its context and configuration, and where its end is sent.
type wagiJob struct {
	ictx context.Context
	mc   wazero.ModuleConfig
	done chan<- error
}

// worker runs j, then every job sent on h.jobs, until h.quit is closed. Instances run on kept
// goroutines so that each does not grow a fresh goroutine's stack again (wazero's calls are
// deep). A new worker starts only when none is waiting for a job, so there are at most about
// twice the concurrency bound: the running instances, and workers that have just ended one.
func (h *wagiHandler) worker(j wagiJob) {
	for {
		mod, err := h.p.Runtime.InstantiateModule(j.ictx, h.p.Compiled, j.mc)
		if mod != nil {
			_ = mod.Close(context.Background())
		}
		j.done <- err
		select {
		case j = <-h.jobs:
		case <-h.quit:
			return
		}
	}
}

// instanceSucceeded answers r with the error status its instance's end calls for (504 for one
// stopped at the timeout, 500 for a non-zero exit, a trap or a response over MaxWAGIResponse),
// says why on the container's stderr, and returns false; it returns true when the instance
// ended with exit code 0 and its response is to be written.
func (h *wagiHandler) instanceSucceeded(rw http.ResponseWriter, r *http.Request, err error, out *cappedBuffer) bool {
	var exit *sys.ExitError
	isExit := errors.As(err, &exit)
	var why string
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (isExit && exit.ExitCode() == sys.ExitCodeDeadlineExceeded):
		fmt.Fprintf(h.stderr, "wagi: %s %s: module %s still running after %v (%s): stopped\n", r.Method, r.URL.RequestURI(), h.cfg.Module.GuestPath, h.w.Timeout, oci.WAGITimeoutEnv)
		why, code = "handler timed out", http.StatusGatewayTimeout
	case isExit && exit.ExitCode() != 0:
		fmt.Fprintf(h.stderr, "wagi: %s %s: module %s exited with code %d\n", r.Method, r.URL.RequestURI(), h.cfg.Module.GuestPath, exit.ExitCode())
		why = "handler failed"
	case err != nil && !isExit:
		fmt.Fprintf(h.stderr, "wagi: %s %s: wasm trap in module %s: %v\n", r.Method, r.URL.RequestURI(), h.cfg.Module.GuestPath, err)
		why = "handler failed"
	case out.overflow:
		fmt.Fprintf(h.stderr, "wagi: %s %s: module %s wrote more than %d bytes\n", r.Method, r.URL.RequestURI(), h.cfg.Module.GuestPath, MaxWAGIResponse)
		why = "handler response too large"
	default:
		return true
	}
	http.Error(rw, why, code)
	return false
}

// environ is the environment of r's instance: the container's, with r's CGI variables
// replacing those of the same name, and the others after it.
func (h *wagiHandler) environ(r *http.Request, bodyLen int64) []string {
	cgi := cgiEnv(r, bodyLen)
	// The variables' KEY=VALUE strings are cut from one string: one allocation, not one each.
	n := 0
	for _, kv := range cgi {
		n += len(kv[0]) + 1 + len(kv[1])
	}
	var b strings.Builder
	b.Grow(n)
	for _, kv := range cgi {
		b.WriteString(kv[0])
		b.WriteByte('=')
		b.WriteString(kv[1])
	}
	all := b.String()
	env := make([]string, len(h.env), len(h.env)+len(cgi))
	copy(env, h.env)
	for _, kv := range cgi {
		v := all[:len(kv[0])+1+len(kv[1])]
		all = all[len(v):]
		if i, ok := h.envAt[kv[0]]; ok {
			env[i] = v
		} else {
			env = append(env, v)
		}
	}
	return env
}

// drain waits until no instance runs (every slot is free) or ctx ends, and keeps the slots.
func (h *wagiHandler) drain(ctx context.Context) {
	for range cap(h.slots) {
		select {
		case h.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
	}
}

// cgiEnv returns the request's CGI variables (RFC 3875 section 4.1, with WAGI's X_* additions)
// as key-value pairs, in a stable order: they are set after the container's own environment and
// replace any variable of the same name there.
func cgiEnv(r *http.Request, bodyLen int64) [][2]string {
	host, port := r.Host, ""
	if h, p, err := net.SplitHostPort(r.Host); err == nil {
		host, port = h, p
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if _, p, err := net.SplitHostPort(la.String()); err == nil {
			port = p
		}
	}
	remote, remotePort := r.RemoteAddr, ""
	if h, p, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		remote, remotePort = h, p
	}
	scheme := "http"
	env := [][2]string{
		{"GATEWAY_INTERFACE", "CGI/1.1"},
		{"SERVER_SOFTWARE", wagiServerSoftware},
		{"SERVER_PROTOCOL", r.Proto},
		{"SERVER_NAME", host},
		{"SERVER_PORT", port},
		{"REQUEST_METHOD", r.Method},
		{"SCRIPT_NAME", ""},
		{"PATH_INFO", r.URL.Path},
		{"PATH_TRANSLATED", r.URL.Path},
		{"QUERY_STRING", r.URL.RawQuery},
		{"REMOTE_ADDR", remote},
		{"REMOTE_HOST", remote},
		{"REMOTE_PORT", remotePort},
		{"REMOTE_USER", ""},
		{"AUTH_TYPE", ""},
		{"CONTENT_TYPE", r.Header.Get("Content-Type")},
		{"CONTENT_LENGTH", strconv.FormatInt(bodyLen, 10)},
		{"X_MATCHED_ROUTE", "/..."},
		{"X_RAW_PATH_INFO", r.URL.EscapedPath()},
		{"X_FULL_URL", scheme + "://" + r.Host + r.URL.RequestURI()},
		{"HTTP_HOST", r.Host},
	}
	return appendHeaderVars(env, r.Header)
}

// appendHeaderVars appends a request's headers to env as HTTP_* variables, in the order of their
// names: each name upper-cased with dashes as underscores, repeated values joined with ", ". Headers
// that have a variable of their own (Content-Type, Content-Length), Proxy ("httpoxy"), and names
// that are not letters, digits and dashes are left out; HTTP_HOST stays the one cgiEnv set.
func appendHeaderVars(env [][2]string, header http.Header) [][2]string {
	keys := make([]string, 0, len(header))
	for k := range header {
		// In canonical form: Go's server canonicalizes names, but a header map built otherwise
		// ("PRoXY", found by FuzzCGIEnv) must not slip past these checks.
		switch http.CanonicalHeaderKey(k) {
		case "Content-Type", "Content-Length":
			continue // CONTENT_TYPE and CONTENT_LENGTH
		case "Proxy":
			continue // HTTP_PROXY would tell the handler's HTTP clients to use a client-chosen proxy ("httpoxy")
		}
		if strings.Trim(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			// X_Forwarded_For would become HTTP_X_FORWARDED_FOR as X-Forwarded-For does, and
			// replace the proxy's value with the client's: dropped, as Apache does for CGI (and
			// so is any other name that is not letters, digits and dashes).
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fixed := len(env)
	// Two header names give the same variable only when they differ in case, which Go's server
	// never lets through (it canonicalizes): a linear search finds such repeats among a request's
	// few headers for less than a map costs, and a map takes over beyond wagiEnvScanHeaders.
	var at map[string]int // variable name -> index in env, for requests with many headers
	if len(keys) > wagiEnvScanHeaders {
		at = make(map[string]int, len(keys))
	}
	for _, k := range keys {
		name, v := "HTTP_"+strings.ToUpper(strings.ReplaceAll(k, "-", "_")), strings.Join(header[k], ", ")
		if name == "HTTP_HOST" {
			continue // r.Host's
		}
		i, ok := -1, false
		if at != nil {
			i, ok = at[name]
		} else {
			for j := fixed; j < len(env); j++ {
				if env[j][0] == name {
					i, ok = j, true
					break
				}
			}
		}
		if ok { // the same name in another case (not from Go's server, which canonicalizes)
			env[i][1] += ", " + v
			continue
		}
		if at != nil {
			at[name] = len(env)
		}
		env = append(env, [2]string{name, v})
	}
	return env
}

// wagiEnvScanHeaders is how many request headers cgiEnv checks for repeated variable names
// by a linear search; more use a map.
const wagiEnvScanHeaders = 16

// writeCGIResponse writes a CGI response (header lines, a blank line, the body) to rw. The
// Status header sets the status code ("404 Not Found" or "404"); a Location header without one
// is a 302 redirect, as CGI has it. A response must have a Content-Type, Location or Status
// header; one without a header block is an error (nothing is written).
func writeCGIResponse(rw http.ResponseWriter, out []byte) error {
	br := cgiReaders.Get().(*bufio.Reader)
	br.Reset(bytes.NewReader(out))
	defer func() {
		br.Reset(nil)
		cgiReaders.Put(br)
	}()
	hdr, err := textproto.NewReader(br).ReadMIMEHeader()
	if err != nil && !(errors.Is(err, io.EOF) && len(hdr) > 0) {
		return fmt.Errorf("its output does not start with CGI header lines and a blank line (%v)", err)
	}
	if len(hdr) == 0 || (hdr.Get("Content-Type") == "" && hdr.Get("Location") == "" && hdr.Get("Status") == "") {
		return errors.New("its output has no Content-Type, Location or Status header")
	}
	code := http.StatusOK
	if s := hdr.Get("Status"); s != "" {
		// The value is not empty, but may be only spaces textproto does not trim (U+2000...).
		n, err := -1, error(nil)
		if fs := strings.Fields(s); len(fs) > 0 {
			n, err = strconv.Atoi(fs[0])
		}
		if err != nil || n < 100 || n > 999 {
			return fmt.Errorf("its Status header %q does not start with a status code", s)
		}
		code = n
	} else if hdr.Get("Location") != "" {
		code = http.StatusFound
	}
	h := rw.Header()
	for k, vs := range hdr {
		if k == "Status" {
			continue
		}
		h[k] = vs
	}
	rw.WriteHeader(code)
	_, _ = io.Copy(rw, br)
	return nil
}

// cgiReaders keeps the readers writeCGIResponse parses responses with (4 KiB buffers each,
// which would otherwise be allocated per request).
var cgiReaders = sync.Pool{New: func() any { return bufio.NewReader(nil) }}

// cappedBuffer is a bytes.Buffer that refuses writes beyond max bytes (the guest's write then
// fails with EIO) and remembers that it did.
type cappedBuffer struct {
	bytes.Buffer
	max      int
	overflow bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		b.overflow = true
		return 0, fmt.Errorf("response over %d bytes", b.max)
	}
	return b.Buffer.Write(p)
}
