package engine

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// A header block over wagiMaxHeaderBytes gets 431 without running the module (Go's default
// would accept 1 MiB); one within it is served.
func TestWAGIHeaderLimit(t *testing.T) {
	base, _, _ := wagiServer(t, oci.WAGI{Concurrency: 1, Timeout: 5 * time.Second, MaxBody: 64})
	if r := do(t, "GET", base+"/hello", "", map[string]string{"X-Big": strings.Repeat("a", 16<<10)}); r.code != 200 {
		t.Errorf("GET /hello with a 16 KiB header: %d %q, want 200", r.code, r.body)
	}
	if r := do(t, "GET", base+"/hello", "", map[string]string{"X-Big": strings.Repeat("a", 100<<10)}); r.code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("GET /hello with a 100 KiB header: %d, want 431", r.code)
	}
}

// A client sending its headers slowly is disconnected at wagiReadHeaderTimeout.
func TestWAGISlowHeaders(t *testing.T) {
	defer func(d time.Duration) { wagiReadHeaderTimeout = d }(wagiReadHeaderTimeout)
	wagiReadHeaderTimeout = time.Second
	base, _, _ := wagiServer(t, oci.WAGI{Concurrency: 1, Timeout: 30 * time.Second, MaxBody: 64})
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /hello HTTP/1.1\r\nHost: x\r\n")
	stop := time.Now().Add(20 * time.Second)
	for time.Now().Before(stop) {
		if _, err := fmt.Fprintf(conn, "X-Slow: 1\r\n"); err != nil {
			return // disconnected
		}
		conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := conn.Read(make([]byte, 1)); err != nil && !os.IsTimeout(err) {
			return // closed (EOF or reset)
		}
	}
	t.Fatal("a client trickling its headers for 20s was not disconnected (header timeout 1s)")
}

// At most MaxConnections connections are open at once: one more waits until one closes.
func TestWAGIMaxConnections(t *testing.T) {
	base, _, _ := wagiServer(t, oci.WAGI{Concurrency: 2, Timeout: 10 * time.Second, MaxBody: 64, MaxConnections: 2})
	addr := strings.TrimPrefix(base, "http://")
	var idle []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	third, err := net.Dial("tcp", addr) // the kernel completes the handshake; the runner does not accept
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	fmt.Fprintf(third, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(third)
	third.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
	if resp, err := http.ReadResponse(br, nil); err == nil {
		resp.Body.Close()
		t.Fatalf("a third connection was served (%s) while two were open with a cap of 2", resp.Status)
	}
	idle[0].Close()
	third.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the third connection was not served after one of the two closed: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("third connection: %s", resp.Status)
	}
}

// A client that does not read its response holds its instance slot only until the write
// timeout: then its connection is closed and the slot serves the next request.
func TestWAGIWriteTimeout(t *testing.T) {
	const size = 8 << 20
	base, _, _ := wagiServer(t, oci.WAGI{Concurrency: 1, Timeout: 5 * time.Second, MaxBody: size, WriteTimeout: time.Second})
	stuck := unreadClient(t, base, size)
	defer stuck.Close()
	time.Sleep(500 * time.Millisecond) // let it take the only slot
	if r := do(t, "GET", base+"/hello", "", nil); r.code != 200 {
		t.Errorf("GET /hello while a client does not read its 8 MiB response: %d %q, want 200 once its write timed out", r.code, r.body)
	}
}

// unreadClient connects to base, posts size bytes to /echo (an echo of size bytes comes back)
// and never reads.
func unreadClient(t *testing.T, base string, size int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetReadBuffer(4 << 10) // the kernel keeps little of the response for us
	}
	go func() {
		fmt.Fprintf(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size)
		c.Write(bytes.Repeat([]byte("x"), size))
	}()
	return c
}

// Clients that send a request and never read the response cannot grow the runner's memory
// beyond the concurrency bound: a slot is held until its response is written (or its write
// timed out), so at most Concurrency responses are buffered at once, whatever the number of
// such clients. Measured on a real runner: its RSS with 24 such clients, each getting 12 MiB.
func TestRunnerWAGIUnreadResponses(t *testing.T) {
	r, _, stderr := spawn(t)
	port := freePort(t)
	cfg := testConfig(t, "wagi.wasm")
	const size, clients = 12 << 20, 24
	cfg.WAGI = &oci.WAGI{Listen: []oci.ListenAddr{loopback(port)}, Concurrency: 2, Timeout: time.Minute,
		MaxBody: size, WriteTimeout: time.Minute}
	if _, err := r.Configure(cfg); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	if err := r.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for range 2 { // warm: the first instances, the Go heap
		if code, body := httpGet(t, base+"/hello", 30*time.Second); code != 200 {
			t.Fatalf("GET /hello: %d %q (stderr %q)", code, body, stderr())
		}
	}
	before := vmRSS(t, r.Pid())
	var mu sync.Mutex
	var conns []net.Conn
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	for range clients {
		c := unreadClient(t, base, size)
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	// Long enough for every client's request to have run if slots were given back before the
	// write (each takes well under a second); the bound is on memory, not on time.
	peak := before
	for end := time.Now().Add(12 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		peak = max(peak, vmRSS(t, r.Pid()))
	}
	grew := peak - before
	t.Logf("runner RSS %d MiB before, peak %d MiB with %d clients not reading %d MiB responses", before>>20, peak>>20, clients, size>>20)
	// Two slots: two bodies and two responses live at once (about 56 MiB with the buffers'
	// growth), plus garbage the collector has not reclaimed. Without the bound all 24
	// responses (288 MiB) stay buffered.
	if limit := int64(240 << 20); grew > limit {
		t.Errorf("the runner's RSS grew by %d MiB with %d clients not reading their responses, want at most %d MiB (Concurrency 2)", grew>>20, clients, limit>>20)
	}
}

// vmRSS is pid's resident set size in bytes.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
