//go:build linux

package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBadTraffic is the per-request traffic part of the bad-input corpus (issue 11, item 5): a
// WAGI service (testdata/c/wagi.c through `ctr run`, WAZERO_WAGI) faced with huge headers, bodies
// over the limit, a malformed request, headers sent slowly, clients that never read their
// responses and more idle connections than its cap. Each case checks what the client gets, then
// that the runner still serves a normal request; at the end the container is stopped and nothing
// of it may be left. WZ_BADTRAFFIC_IDLE sets the idle connections (default 256, above the cap of
// 64 set here; 10000 for the figure).
func TestBadTraffic(t *testing.T) {
	const maxConns = 64
	idle := envInt("WZ_BADTRAFFIC_IDLE", 256)
	if idle <= maxConns {
		t.Fatalf("WZ_BADTRAFFIC_IDLE=%d: want more than the runner's cap of %d", idle, maxConns)
	}
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		if r := d.run(t, runOpts{args: testprog("hello")}); r.exit != 0 {
			t.Fatalf("warm-up run: exit %d\n%s", r.exit, r)
		}
		fdsBefore := fdCount(t, d.cmd.Process.Pid)
		addr := fmt.Sprintf("127.0.0.1:%d", freeLoopbackPort(t))
		base := "http://" + addr
		id := newID(t, d)
		runDetached(t, d, id, []string{"/wagi.wasm"}, "--net-host",
			"--env", "WAZERO_WAGI="+addr, "--env", "WAZERO_WAGI_CONCURRENCY=2", "--env", "WAZERO_WAGI_TIMEOUT=5s",
			"--env", "WAZERO_WAGI_MAX_BODY=1024", "--env", "WAZERO_WAGI_WRITE_TIMEOUT=1s",
			"--env", "WAZERO_WAGI_MAX_CONNECTIONS="+strconv.Itoa(maxConns))
		if code, body := getUntil(t, base+"/hello", 60*time.Second); code != 200 || body != "hello from wagi\n" {
			t.Fatalf("GET /hello: %d %q", code, body)
		}
		runner := d.taskPid(t, id)
		serving := func(t *testing.T, after string) {
			t.Helper()
			if code, body := getUntil(t, base+"/count", 15*time.Second); code != 200 || body != "calls=1\n" {
				t.Errorf("GET /count after %s: %d %q, want 200 calls=1: the service must keep serving", after, code, body)
			}
		}
		client := &http.Client{Timeout: 15 * time.Second}

		t.Run("huge-headers", func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, base+"/hello", nil)
			req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("GET with a 64 KiB header: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("GET with a 64 KiB header: %d, want 431", resp.StatusCode)
			}
			serving(t, "huge headers")
		})
		t.Run("body-over-limit", func(t *testing.T) {
			for _, chunked := range []bool{false, true} {
				var body io.Reader = strings.NewReader(strings.Repeat("b", 4096))
				if chunked {
					body = io.MultiReader(body) // unknown length: sent chunked, no Content-Length
				}
				resp, err := client.Post(base+"/echo", "text/plain", body)
				if err != nil {
					t.Fatalf("POST of 4096 bytes (chunked %v): %v", chunked, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "WAZERO_WAGI_MAX_BODY") {
					t.Errorf("POST of 4096 bytes over a 1024-byte limit (chunked %v): %d %q, want 413 naming WAZERO_WAGI_MAX_BODY", chunked, resp.StatusCode, b)
				}
			}
			serving(t, "bodies over the limit")
		})
		t.Run("malformed-request", func(t *testing.T) {
			status := rawRequest(t, addr, "NOT HTTP AT ALL\r\n\r\n")
			if !strings.Contains(status, " 400 ") {
				t.Errorf("a malformed request line got %q, want a 400", status)
			}
			serving(t, "a malformed request")
		})
		t.Run("slow-headers", func(t *testing.T) {
			// One header line a second, never the blank line: the runner closes the connection
			// after its header timeout (10 s) and serves others meanwhile.
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, "GET /hello HTTP/1.1\r\nHost: x\r\n"); err != nil {
				t.Fatal(err)
			}
			closed := make(chan time.Duration, 1)
			start := time.Now()
			go func() {
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				io.Copy(io.Discard, c) // returns when the runner closes the connection
				closed <- time.Since(start)
			}()
			serving(t, "a client sending headers slowly")
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case took := <-closed:
					if took >= 30*time.Second {
						t.Errorf("the runner kept a connection sending one header line a second for %v", took)
					}
					t.Logf("slow-header connection closed by the runner after %v", took.Round(100*time.Millisecond))
					serving(t, "a slow-header connection closed")
					return
				case <-tick.C:
					fmt.Fprintf(c, "X-Slow-%d: a\r\n", i)
				}
			}
		})
		t.Run("never-read", func(t *testing.T) {
			// As many clients as instances ask for 12 MiB and read nothing: each holds its
			// instance slot until the write timeout (1 s) closes its connection, which the
			// runner's side of the socket shows (it leaves ESTABLISHED with the response unsent).
			// Were the slots held longer than the request timeout (5 s), the next request would
			// get 503.
			const size = 12 << 20
			var conns []net.Conn
			for i := 0; i < 2; i++ {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if _, err := fmt.Fprintf(c, "GET /big?%d HTTP/1.1\r\nHost: x\r\n\r\n", size>>10); err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
			}
			for i, c := range conns {
				deadline := time.Now().Add(30 * time.Second)
				for serverSideEstablished(c) && time.Now().Before(deadline) {
					time.Sleep(100 * time.Millisecond)
				}
				if serverSideEstablished(c) {
					t.Fatalf("client %d, which reads nothing, still has its connection open after 30 s (write timeout 1 s)", i)
				}
			}
			serving(t, "clients that never read")
			for i, c := range conns {
				c.SetReadDeadline(time.Now().Add(20 * time.Second))
				n, _ := io.Copy(io.Discard, c)
				t.Logf("client %d that did not read: %d bytes reached it before the runner closed the connection", i, n)
				if n >= size {
					t.Errorf("client %d that did not read got all %d bytes later: its connection was not closed", i, n)
				}
			}
		})
		t.Run("idle-connections", func(t *testing.T) {
			fdsRunner := fdCount(t, runner)
			var conns []net.Conn
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			for i := 0; i < idle; i++ {
				c, err := net.DialTimeout("tcp", addr, 2*time.Second)
				if err != nil {
					break // the listen queue is full: the kernel refuses more
				}
				conns = append(conns, c)
			}
			if len(conns) <= maxConns {
				t.Fatalf("opened %d idle connections, want more than the cap of %d", len(conns), maxConns)
			}
			time.Sleep(500 * time.Millisecond) // let the runner accept what it will
			fds := fdCount(t, runner)
			t.Logf("%d idle connections: the runner holds %d fds (%d before), VmRSS %s", len(conns), fds, fdsRunner, vmRSS(runner))
			if fds > fdsRunner+maxConns+8 {
				t.Errorf("%d idle connections: the runner holds %d fds, %d before: more than its cap of %d connections", len(conns), fds, fdsRunner, maxConns)
			}
			for _, c := range conns {
				c.Close()
			}
			conns = nil
			serving(t, fmt.Sprintf("%d idle connections closed", idle))
		})

		if _, se, code := d.ctr(t, "task", "kill", id); code != 0 {
			t.Fatalf("ctr task kill %s: exit %d: %s", id, code, se)
		}
		d.waitStatus(t, id, "STOPPED", 20*time.Second)
		if _, se, code := d.ctr(t, "task", "rm", id); code != 0 {
			t.Errorf("ctr task rm %s: exit %d: %s", id, code, se)
		}
		if _, se, code := d.ctr(t, "container", "rm", id); code != 0 {
			t.Errorf("ctr container rm %s: exit %d: %s", id, code, se)
		}
		for _, l := range daemonLeaks(t, d, fdsBefore) {
			t.Errorf("left behind after the traffic cases: %s", l)
		}
	})
}

// rawRequest writes req on a new connection to addr and returns the response's status line.
func rawRequest(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && line == "" {
		t.Fatalf("no response to %q: %v", req, err)
	}
	return strings.TrimSpace(line)
}

// vmRSS is the resident set size of pid, as /proc/PID/status says it.
func vmRSS(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// serverSideEstablished reports whether the peer's end of the loopback connection c is still
// ESTABLISHED in /proc/net/tcp (a server that closed it with data unsent is in FIN_WAIT1).
func serverSideEstablished(c net.Conn) bool {
	hexAddr := func(a net.Addr) string {
		ta := a.(*net.TCPAddr)
		ip := ta.IP.To4()
		return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], ta.Port)
	}
	local, remote := hexAddr(c.RemoteAddr()), hexAddr(c.LocalAddr()) // as the server sees it
	b, _ := os.ReadFile("/proc/net/tcp")
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 3 && f[1] == local && f[2] == remote {
			return f[3] == "01"
		}
	}
	return false
}
