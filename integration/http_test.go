package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHTTP runs the example Go wasip1 HTTP server (testdata/go/httpserver, /httpserver.wasm in
// testImage) with host networking on a loopback port declared in WAZERO_LISTEN, and checks that
// declaration errors (port in use, bad syntax, privileged port, no network) fail `ctr run`.
func TestHTTP(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		t.Run("serve", func(t *testing.T) {
			port := freeLoopbackPort(t)
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			id := newID(t, d)
			runDetached(t, d, id, []string{"/httpserver.wasm"}, "--net-host", "--env", "WAZERO_LISTEN="+addr)
			if code, body := getUntil(t, "http://"+addr+"/health", 60*time.Second); code != 200 || body != "ok" {
				t.Errorf("GET /health: %d %q, want 200 \"ok\"", code, body)
			}
			if code, body := getUntil(t, "http://"+addr+"/hello", 10*time.Second); code != 200 || body != "hello from wasm http" {
				t.Errorf("GET /hello: %d %q, want 200 \"hello from wasm http\"", code, body)
			}
			if _, se, code := d.ctr(t, "task", "kill", id); code != 0 {
				t.Fatalf("ctr task kill %s: exit %d: %s", id, code, se)
			}
			d.waitStatus(t, id, "STOPPED", 20*time.Second)
			// The port is free again once the task is stopped.
			l, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatalf("%s is still in use after ctr task kill: %v", addr, err)
			}
			l.Close()
			if _, se, code := d.ctr(t, "task", "rm", id); code != 0 {
				t.Errorf("ctr task rm %s: exit %d: %s", id, code, se)
			}
			if _, se, code := d.ctr(t, "container", "rm", id); code != 0 {
				t.Errorf("ctr container rm %s: exit %d: %s", id, code, se)
			}
		})
		t.Run("port-in-use", func(t *testing.T) {
			held, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()
			addr := held.Addr().String()
			r := d.run(t, runOpts{args: []string{"/httpserver.wasm"}, flags: []string{"--net-host"}, env: []string{"WAZERO_LISTEN=" + addr}})
			wantRunErr(t, r, addr, "address already in use", "WAZERO_LISTEN")
		})
		t.Run("bad-syntax", func(t *testing.T) {
			r := d.run(t, runOpts{args: []string{"/httpserver.wasm"}, flags: []string{"--net-host"}, env: []string{"WAZERO_LISTEN=nonsense"}})
			wantRunErr(t, r, "WAZERO_LISTEN", "nonsense", "missing port")
		})
		t.Run("privileged-port", func(t *testing.T) {
			r := d.run(t, runOpts{
				args:  []string{"/httpserver.wasm"},
				flags: []string{"--net-host", "--cap-drop", "CAP_NET_BIND_SERVICE"},
				env:   []string{"WAZERO_LISTEN=127.0.0.1:81"},
			})
			wantRunErr(t, r, "127.0.0.1:81", "permission denied", "CAP_NET_BIND_SERVICE")
		})
		t.Run("no-network", func(t *testing.T) {
			// Without --net-host, ctr asks for a new network namespace, which the shim does not
			// create: listening would expose the container on the host's network.
			r := d.run(t, runOpts{args: []string{"/httpserver.wasm"}, env: []string{"WAZERO_LISTEN=127.0.0.1:1"}})
			wantRunErr(t, r, "WAZERO_LISTEN", "--net-host")
		})
	})
}

// wantRunErr checks that ctr run failed (at task creation) with stderr naming each of subs.
func wantRunErr(t *testing.T, r result, subs ...string) {
	t.Helper()
	if r.exit == 0 {
		t.Fatalf("ctr run succeeded, want an error\n%s", r)
	}
	for _, s := range subs {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("ctr run stderr does not contain %q\n%s", s, r)
		}
	}
}

// freeLoopbackPort returns a TCP port of 127.0.0.1 that nothing listened on when it was called.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// getUntil polls url until it answers or timeout passes, and returns the status and body.
func getUntil(t *testing.T, url string, timeout time.Duration) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err == nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				return resp.StatusCode, string(b)
			}
		}
		last = err
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("GET %s: no answer in %s: %v", url, timeout, last)
	return 0, ""
}
