package engine

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// wagiServer prepares testdata's wagi.wasm in the per-request mode with w's settings on a
// loopback port, serves it in this process, and returns its base URL, its stderr so far, and a
// stop function that returns serveWAGI's exit code.
func wagiServer(t *testing.T, w oci.WAGI, env ...string) (base string, stderr func() string, stop func() int) {
	t.Helper()
	cfg := testConfig(t, "wagi.wasm")
	if err := os.Mkdir(filepath.Join(cfg.Rootfs, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg.Env = env
	w.Listen = []oci.ListenAddr{{Host: "127.0.0.1"}} // port 0: any free one
	cfg.WAGI = &w
	cfg.BindPrivileged = true // port 0 is below 1024
	ls, err := OpenListeners(cfg)
	if err != nil {
		t.Fatalf("OpenListeners: %v", err)
	}
	p := prepare(t, cfg)
	p.Listeners = ls
	errb := &syncBuffer{}
	sig := make(chan os.Signal)
	code := make(chan int, 1)
	go func() { code <- serveWAGI(context.Background(), cfg, p, errb, sig) }()
	stopped := false
	stop = func() int {
		if stopped {
			t.Fatal("stopped twice")
		}
		stopped = true
		close(sig)
		select {
		case c := <-code:
			return c
		case <-time.After(30 * time.Second):
			t.Fatal("serveWAGI did not return 30s after the stop signal")
			return -1
		}
	}
	t.Cleanup(func() {
		if !stopped {
			stop()
		}
	})
	return "http://" + ls[0].Addr().String(), errb.String, stop
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type reply struct {
	code   int
	body   string
	header http.Header
}

// do sends one request; redirects are not followed.
func do(t *testing.T, method, url, body string, header map[string]string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	c := &http.Client{
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, url, err)
		return reply{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, string(b), resp.Header}
}

func TestWAGIServe(t *testing.T) {
	base, stderr, stop := wagiServer(t, oci.WAGI{Concurrency: 2, Timeout: 2 * time.Second, MaxBody: 64},
		"GREETING=hi", "REQUEST_METHOD=from-the-spec")

	if r := do(t, "GET", base+"/hello", "", nil); r.code != 200 || r.body != "hello from wagi\n" || r.header.Get("Content-Type") != "text/plain" {
		t.Errorf("GET /hello: %d %q %v", r.code, r.body, r.header)
	}
	want := "method=POST\nquery=a=1&b=two\nx-test=header value\nbody=the body\n"
	if r := do(t, "POST", base+"/echo?a=1&b=two", "the body", map[string]string{"X-Test": "header value"}); r.code != 200 || r.body != want {
		t.Errorf("POST /echo: %d %q, want 200 %q", r.code, r.body, want)
	}
	// The container's environment is there; CGI variables replace the container's of that name.
	if r := do(t, "GET", base+"/env?GREETING", "", nil); r.body != "hi\n" {
		t.Errorf("GET /env?GREETING: %d %q", r.code, r.body)
	}
	if r := do(t, "GET", base+"/env?REQUEST_METHOD", "", nil); r.body != "GET\n" {
		t.Errorf("GET /env?REQUEST_METHOD: %d %q", r.code, r.body)
	}
	// A NUL byte cannot be in a C string: the request is refused, not run with a variable cut short.
	if r := do(t, "GET", base+"/env%00x", "", nil); r.code != 400 || !strings.Contains(r.body, "PATH_INFO has a NUL byte") {
		t.Errorf("GET /env%%00x: %d %q, want 400 naming PATH_INFO", r.code, r.body)
	}
	if r := do(t, "GET", base+"/status", "", nil); r.code != 404 || r.body != "nothing here\n" {
		t.Errorf("GET /status: %d %q, want 404", r.code, r.body)
	}
	if r := do(t, "GET", base+"/redirect", "", nil); r.code != 302 || r.header.Get("Location") != "/hello" {
		t.Errorf("GET /redirect: %d %v, want 302 to /hello", r.code, r.header)
	}
	// A handler's stderr is the container's (given to instances as a plain writer, instanceStderr).
	if r := do(t, "GET", base+"/log?from-the-handler", "", nil); r.code != 200 || !strings.Contains(stderr(), "wagi log: from-the-handler\n") {
		t.Errorf("GET /log: %d %q; stderr %q does not hold the handler's line", r.code, r.body, stderr())
	}
	if r := do(t, "POST", base+"/echo", strings.Repeat("x", 65), nil); r.code != 413 {
		t.Errorf("POST /echo with 65 bytes over a 64-byte bound: %d, want 413", r.code)
	}

	// Fresh instances: a handler counting its calls in linear memory always sees 1, also when
	// requests run at once.
	var wg sync.WaitGroup
	counts := make([]string, 8)
	for i := range counts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts[i] = do(t, "GET", base+"/count", "", nil).body
		}()
	}
	wg.Wait()
	for i, c := range counts {
		if c != "calls=1\n" {
			t.Errorf("concurrent GET /count #%d: %q, want calls=1 (a fresh instance per request)", i, c)
		}
	}

	// Failures are the request's, not the service's.
	for _, tc := range []struct {
		path    string
		code    int
		message string
	}{
		{"/trap", 500, "wasm trap in module /wagi.wasm"},
		{"/exit", 500, "exited with code 3"},
		{"/noheader", 500, "does not start with CGI header lines"},
		{"/spin", 504, "still running after 2s"},
		{"/sleep?5000", 504, "GET /sleep?5000: module /wagi.wasm still running after 2s"},
	} {
		if r := do(t, "GET", base+tc.path, "", nil); r.code != tc.code {
			t.Errorf("GET %s: %d %q, want %d", tc.path, r.code, r.body, tc.code)
		}
		if !strings.Contains(stderr(), tc.message) {
			t.Errorf("GET %s: stderr %q does not say %q", tc.path, stderr(), tc.message)
		}
		if r := do(t, "GET", base+"/count", "", nil); r.code != 200 || r.body != "calls=1\n" {
			t.Errorf("GET /count after %s: %d %q: the service must keep serving", tc.path, r.code, r.body)
		}
	}
	if code := stop(); code != 0 {
		t.Errorf("serveWAGI returned %d after the stop signal, want 0", code)
	}
	if _, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), time.Second); err == nil {
		t.Errorf("%s still accepts connections after stop", base)
	}
}

// TestWAGIIsolation: a request never sees what an earlier one left in linear memory (a static
// variable, the heap, the stack) or in its descriptor table (a file left open), although its
// instance reuses the earlier one's memory buffer (wagi_pool.go) and descriptor layout (pkg/wasi
// Layout). One instance at a time, so that each reuses the previous one's buffer; the trap and
// the exit end instances in the other ways, which must not hand back unzeroed memory either.
func TestWAGIIsolation(t *testing.T) {
	base, _, _ := wagiServer(t, oci.WAGI{Concurrency: 1, Timeout: 5 * time.Second, MaxBody: 64})
	for i, before := range []string{"", "/trap", "/exit", "/grow?3"} {
		secret := fmt.Sprintf("secret-%d-%d", i, time.Now().UnixNano())
		r := do(t, "GET", base+"/keep?"+secret, "", nil)
		var fd, found int
		if _, err := fmt.Sscanf(r.body, "kept fd=%d found=%d", &fd, &found); err != nil || r.code != 200 || fd < 4 || found < 2 {
			t.Fatalf("GET /keep: %d %q: want the kept file's descriptor and at least 2 copies (static and heap) found in the same instance", r.code, r.body)
		}
		if before != "" {
			do(t, "GET", base+before, "", nil)
		}
		for range 2 {
			if r := do(t, "GET", base+"/find?"+secret, "", nil); r.code != 200 || r.body != "found 0\nfds\n" {
				t.Errorf("GET /find after /keep and %q: %d %q: want no copy of the secret and no descriptor past the preopens", before, r.code, r.body)
			}
		}
	}
}

// At most Concurrency instances run at once; requests beyond wait for a free one, and get 503
// when none frees up within the timeout.
func TestWAGIConcurrency(t *testing.T) {
	base, _, _ := wagiServer(t, oci.WAGI{Concurrency: 2, Timeout: 5 * time.Second, MaxBody: 64})
	var wg sync.WaitGroup
	replies := make([]reply, 6)
	for i := range replies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i] = do(t, "GET", base+"/active?400", "", nil)
		}()
	}
	wg.Wait()
	most := 0
	for i, r := range replies {
		var n int
		if _, err := fmt.Sscanf(r.body, "active=%d", &n); err != nil || r.code != 200 {
			t.Errorf("GET /active #%d: %d %q", i, r.code, r.body)
			continue
		}
		if n > 2 {
			t.Errorf("GET /active #%d saw %d instances at once, want at most 2", i, n)
		}
		most = max(most, n)
	}
	if most != 2 {
		t.Errorf("the most instances seen at once is %d: six requests of 400 ms with a bound of 2 should run 2 at once", most)
	}

	base, _, _ = wagiServer(t, oci.WAGI{Concurrency: 1, Timeout: time.Second, MaxBody: 64})
	busy := make(chan reply, 1)
	go func() { busy <- do(t, "GET", base+"/sleep?3000", "", nil) }()
	time.Sleep(200 * time.Millisecond) // let it take the only instance
	if r := do(t, "GET", base+"/hello", "", nil); r.code != 503 || r.header.Get("Retry-After") == "" {
		t.Errorf("GET /hello while the only instance sleeps past the timeout: %d %q, want 503 with Retry-After", r.code, r.body)
	}
	if r := <-busy; r.code != 504 {
		t.Errorf("GET /sleep?3000 with a 1s timeout: %d, want 504", r.code)
	}
}

// A client that trickles its body is cut off at the timeout (408), and its slot serves others.
func TestWAGISlowBody(t *testing.T) {
	base, _, _ := wagiServer(t, oci.WAGI{Concurrency: 1, Timeout: time.Second, MaxBody: 1 << 10})
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly a part")
	began := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to the trickled request: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("trickled body: %d, want 408", resp.StatusCode)
	}
	if waited := time.Since(began); waited > 20*time.Second {
		t.Errorf("the answer took %v", waited)
	}
	if r := do(t, "GET", base+"/hello", "", nil); r.code != 200 {
		t.Errorf("GET /hello after the trickled request: %d %q", r.code, r.body)
	}
}

// Each instance gets the container's guest memory divided by the concurrency.
func TestWAGIMemory(t *testing.T) {
	cfg := testConfig(t, "wagi.wasm")
	cfg.WAGI = &oci.WAGI{Concurrency: 4, Timeout: time.Second}
	cfg.MemoryPages = 4 // 1 page each: less than the module's own minimum
	_, err := Prepare(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), oci.WAGIConcurrencyEnv) || !strings.Contains(err.Error(), "64 KiB") {
		t.Fatalf("Prepare with 1 page per instance: err = %v, want one naming %s and 64 KiB", err, oci.WAGIConcurrencyEnv)
	}

	// 64 MiB of guest memory among 4: an instance cannot allocate 20 MiB, and says so, and the
	// service goes on; 8 MiB fits.
	cfg2 := testConfig(t, "wagi.wasm")
	cfg2.MemoryPages = 1024
	cfg2.WAGI = &oci.WAGI{Concurrency: 4, Timeout: 5 * time.Second, MaxBody: 64, Listen: []oci.ListenAddr{{Host: "127.0.0.1"}}}
	cfg2.BindPrivileged = true
	ls, err := OpenListeners(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	p := prepare(t, cfg2)
	p.Listeners = ls
	sig := make(chan os.Signal)
	done := make(chan int, 1)
	go func() { done <- serveWAGI(context.Background(), cfg2, p, io.Discard, sig) }()
	url := "http://" + ls[0].Addr().String()
	if r := do(t, "GET", url+"/grow?20", "", nil); r.code != 507 {
		t.Errorf("GET /grow?20 with 16 MiB per instance: %d %q, want 507 (malloc fails)", r.code, r.body)
	}
	if r := do(t, "GET", url+"/grow?8", "", nil); r.code != 200 || r.body != "grew 8\n" {
		t.Errorf("GET /grow?8 with 16 MiB per instance: %d %q", r.code, r.body)
	}
	close(sig)
	if c := <-done; c != 0 {
		t.Errorf("serveWAGI returned %d", c)
	}
}

// A runner in the per-request mode listens at Create, serves after Start, and on SIGTERM stops
// accepting, finishes the request in flight and exits 0, freeing the port.
func TestRunnerWAGI(t *testing.T) {
	t.Run("root", func(t *testing.T) { testRunnerWAGICase(t, false) })
	// As the non-root, capability-less, seccomp-confined process a restricted pod gets.
	t.Run("confined", func(t *testing.T) { testRunnerWAGICase(t, true) })
}

func testRunnerWAGICase(t *testing.T, confined bool) {
	r, _, stderr := spawn(t)
	port := freePort(t)
	cfg := testConfig(t, "wagi.wasm")
	cfg.WAGI = &oci.WAGI{Listen: []oci.ListenAddr{loopback(port)}, Concurrency: 2, Timeout: 10 * time.Second, MaxBody: 1 << 10}
	if confined {
		confine(t, cfg)
	}
	if _, err := r.Configure(cfg); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	if l, err := net.Listen("tcp", loopback(port).String()); err == nil {
		l.Close()
		t.Fatalf("port %d is free after Create: the runner must hold it", port)
	}
	if err := r.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if code, body := httpGet(t, base+"/count", 30*time.Second); code != 200 || body != "calls=1\n" {
		t.Errorf("GET /count: %d %q", code, body)
	}
	inflight := make(chan reply, 1)
	go func() { inflight <- do(t, "GET", base+"/sleep?1000", "", nil) }()
	time.Sleep(300 * time.Millisecond)
	r.Cmd.Process.Signal(syscall.SIGTERM)
	if rep := <-inflight; rep.code != 200 || rep.body != "slept\n" {
		t.Errorf("the request in flight at SIGTERM got %d %q, want it to finish", rep.code, rep.body)
	}
	if code := wait(t, r); code != 0 {
		t.Errorf("runner exit code %d after SIGTERM, want 0 (stderr %q)", code, stderr())
	}
	if !strings.Contains(stderr(), fmt.Sprintf("wagi: serving /wagi.wasm on 127.0.0.1:%d ", port)) {
		t.Errorf("stderr %q does not say where it serves", stderr())
	}
	l, err := net.Listen("tcp", loopback(port).String())
	if err != nil {
		t.Fatalf("port %d is not free after the runner exited: %v", port, err)
	}
	l.Close()
}

func TestWriteCGIResponse(t *testing.T) {
	cases := []struct {
		out    string
		code   int
		body   string
		header map[string]string
		errHas string
	}{
		{out: "Content-Type: text/plain\n\nhi", code: 200, body: "hi", header: map[string]string{"Content-Type": "text/plain"}},
		{out: "Content-Type: text/plain\r\nX-A: b\r\n\r\nhi\r\n", code: 200, body: "hi\r\n", header: map[string]string{"X-A": "b"}},
		{out: "Status: 201 Created\nContent-Type: a/b\n\n", code: 201},
		{out: "status: 418\n\nteapot", code: 418, body: "teapot"},
		{out: "Location: /x\n\n", code: 302, header: map[string]string{"Location": "/x"}},
		{out: "Location: /x\nStatus: 301 Moved\n\n", code: 301},
		{out: "Content-Type: text/plain\n", code: 200}, // EOF after headers: no body
		{out: "just a body\n", errHas: "does not start with CGI header lines"},
		{out: "", errHas: "does not start with CGI header lines"},
		{out: "X-Only: 1\n\nbody", errHas: "no Content-Type, Location or Status"},
		{out: "Status: soon\n\n", errHas: `Status header "soon"`},
		{out: "Status: 42\n\n", errHas: `Status header "42"`},
		{out: "Status: \u2000\n\n", errHas: `Status header "\u2000"`}, // a space textproto does not trim
	}
	for _, tc := range cases {
		t.Run(tc.out, func(t *testing.T) {
			rec := httptest.NewRecorder()
			err := writeCGIResponse(rec, []byte(tc.out))
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err = %v, want one containing %q", err, tc.errHas)
				}
				if rec.Body.Len() != 0 {
					t.Errorf("wrote %q on error", rec.Body.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rec.Code != tc.code || rec.Body.String() != tc.body {
				t.Errorf("got %d %q, want %d %q", rec.Code, rec.Body.String(), tc.code, tc.body)
			}
			for k, v := range tc.header {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if rec.Header().Get("Status") != "" {
				t.Error("the Status header was passed on")
			}
		})
	}
}

func TestCGIEnv(t *testing.T) {
	req := httptest.NewRequest("POST", "http://example.com:8080/a%20b/c?x=1&y=%2F", strings.NewReader("body"))
	req.RemoteAddr = "10.0.0.7:51000"
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("X-Forwarded-For", "1.2.3.4")
	// The same variable name through underscores: dropped, never shadowing the proxy's header.
	req.Header["X_Forwarded_For"] = []string{"6.6.6.6"}
	req.Header["X_forwarded-for"] = []string{"6.6.6.7"}
	req.Header["Only_Underscore"] = []string{"x"}
	req.Header.Add("Accept", "a")
	req.Header.Add("Accept", "b")
	req.Header.Set("Proxy", "http://evil:3128")
	got := map[string]string{}
	var keys []string
	for _, kv := range cgiEnv(req, 4) {
		got[kv[0]] = kv[1]
		keys = append(keys, kv[0])
	}
	want := map[string]string{
		"GATEWAY_INTERFACE":    "CGI/1.1",
		"SERVER_PROTOCOL":      "HTTP/1.1",
		"SERVER_NAME":          "example.com",
		"SERVER_PORT":          "8080",
		"REQUEST_METHOD":       "POST",
		"PATH_INFO":            "/a b/c",
		"X_RAW_PATH_INFO":      "/a%20b/c",
		"QUERY_STRING":         "x=1&y=%2F",
		"REMOTE_ADDR":          "10.0.0.7",
		"REMOTE_PORT":          "51000",
		"CONTENT_TYPE":         "text/plain",
		"CONTENT_LENGTH":       "4",
		"HTTP_HOST":            "example.com:8080",
		"HTTP_ACCEPT":          "a, b",
		"HTTP_X_FORWARDED_FOR": "1.2.3.4",
		"X_FULL_URL":           "http://example.com:8080/a%20b/c?x=1&y=%2F",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for _, k := range []string{"HTTP_PROXY", "HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTP_ONLY_UNDERSCORE"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s is set: %q", k, got[k])
		}
	}
	if n := strings.Count(strings.Join(keys, " "), "HTTP_X_FORWARDED_FOR"); n != 1 {
		t.Errorf("HTTP_X_FORWARDED_FOR set %d times, want once (from X-Forwarded-For)", n)
	}
	if again := cgiEnv(req, 4); !reflect.DeepEqual(again, cgiEnv(req, 4)) || len(keys) != len(again) {
		t.Error("cgiEnv is not deterministic")
	}
}

// BenchmarkWAGIHello: one request at a time over a kept-alive connection, a fresh instance of
// wagi.wasm each (go test -run - -bench WAGI ./pkg/engine/).
func BenchmarkWAGIHello(b *testing.B) {
	cfg := &Config{
		ID:             "bench",
		Module:         oci.Module{GuestPath: "/wagi.wasm", HostPath: filepath.Join(testdataDir, "build", "wagi.wasm")},
		Args:           []string{"wagi.wasm"},
		Rootfs:         b.TempDir(),
		MemoryPages:    oci.MaxPages,
		NoIsolation:    true,
		WAGI:           &oci.WAGI{Listen: []oci.ListenAddr{{Host: "127.0.0.1"}}, Concurrency: 4, Timeout: 10 * time.Second},
		BindPrivileged: true,
	}
	ls, err := OpenListeners(cfg)
	if err != nil {
		b.Fatal(err)
	}
	p, err := Prepare(context.Background(), cfg)
	if err != nil {
		b.Skip(err)
	}
	p.Listeners = ls
	sig := make(chan os.Signal)
	go serveWAGI(context.Background(), cfg, p, io.Discard, sig)
	defer close(sig)
	url := "http://" + ls[0].Addr().String() + "/hello"
	c := &http.Client{}
	// CPU time per request (this process's, client included) says more than the time per request
	// on a loaded machine.
	cpu0 := processCPU()
	b.ResetTimer()
	defer func() { b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op") }()
	for i := 0; i < b.N; i++ {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatal(resp.Status)
		}
	}
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
