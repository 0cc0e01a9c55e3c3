package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestWAGI runs the per-request handler testdata/c/wagi.c (/wagi.wasm in testImage) in the
// per-request mode (WAZERO_WAGI) through `ctr run` with host networking: requests at once get
// fresh instances (a handler counting its calls always sees 1), at most WAZERO_WAGI_CONCURRENCY
// run at once, a trap is a 500 and a spinning handler a 504 while the service keeps serving, the
// guests' failures are in the container's log, and SIGTERM stops it cleanly (exit 0, port freed).
func TestWAGI(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		t.Run("serve", func(t *testing.T) {
			port := freeLoopbackPort(t)
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			base := "http://" + addr
			tmp := t.TempDir()
			logPath := filepath.Join(t.TempDir(), "log")
			id := newID(t, d)
			runDetached(t, d, id, []string{"/wagi.wasm"}, "--net-host",
				"--env", "WAZERO_WAGI="+addr, "--env", "WAZERO_WAGI_CONCURRENCY=2", "--env", "WAZERO_WAGI_TIMEOUT=2s",
				"--env", "GREETING=from the spec",
				"--mount", "type=bind,src="+tmp+",dst=/tmp,options=rbind:rw",
				"--log-uri", "file://"+logPath)
			if code, body := getUntil(t, base+"/hello", 60*time.Second); code != 200 || body != "hello from wagi\n" {
				t.Fatalf("GET /hello: %d %q", code, body)
			}
			if code, body := getUntil(t, base+"/env?GREETING", 10*time.Second); code != 200 || body != "from the spec\n" {
				t.Errorf("GET /env?GREETING: %d %q, want the container's env", code, body)
			}
			resp, err := http.Post(base+"/echo?q=1", "text/plain", strings.NewReader("posted"))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := "method=POST\nquery=q=1\nx-test=\nbody=posted\n"; string(b) != want {
				t.Errorf("POST /echo: %d %q, want %q", resp.StatusCode, b, want)
			}

			// Concurrent requests: each a fresh instance, at most 2 at once.
			var wg sync.WaitGroup
			bodies := make([]string, 6)
			for i := range bodies {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, bodies[i] = getUntil(t, base+"/active?400", 10*time.Second)
				}()
			}
			counts := make([]string, 6)
			for i := range counts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, counts[i] = getUntil(t, base+"/count", 10*time.Second)
				}()
			}
			wg.Wait()
			most := 0
			for i, b := range bodies {
				var n int
				if _, err := fmt.Sscanf(b, "active=%d", &n); err != nil || n > 2 {
					t.Errorf("GET /active #%d: %q, want active=1 or 2", i, b)
				}
				most = max(most, n)
			}
			if most != 2 {
				t.Errorf("most instances seen at once: %d, want 2 (six 400 ms requests, at most 2 at once)", most)
			}
			for i, c := range counts {
				if c != "calls=1\n" {
					t.Errorf("GET /count #%d: %q, want calls=1: each request must get a fresh instance", i, c)
				}
			}

			// A trap and a timeout fail their request only.
			for _, tc := range []struct {
				path string
				code int
			}{{"/trap", 500}, {"/spin", 504}} {
				if code, _ := getUntil(t, base+tc.path, 30*time.Second); code != tc.code {
					t.Errorf("GET %s: %d, want %d", tc.path, code, tc.code)
				}
				if code, body := getUntil(t, base+"/count", 10*time.Second); code != 200 || body != "calls=1\n" {
					t.Errorf("GET /count after %s: %d %q: the service must keep serving", tc.path, code, body)
				}
			}

			if _, se, code := d.ctr(t, "task", "kill", id); code != 0 { // SIGTERM
				t.Fatalf("ctr task kill %s: exit %d: %s", id, code, se)
			}
			d.waitStatus(t, id, "STOPPED", 20*time.Second)
			if l, err := net.Listen("tcp", addr); err != nil {
				t.Errorf("%s is still in use after SIGTERM: %v", addr, err)
			} else {
				l.Close()
			}
			_, rmErr, code := d.ctr(t, "task", "rm", id)
			if code != 0 || strings.Contains(rmErr, "non-zero exit") {
				t.Errorf("ctr task rm %s: exit %d: %s (want the runner to exit 0 on SIGTERM)", id, code, rmErr)
			}
			if _, se, code := d.ctr(t, "container", "rm", id); code != 0 {
				t.Errorf("ctr container rm %s: exit %d: %s", id, code, se)
			}
			log, _ := os.ReadFile(logPath)
			for _, want := range []string{
				"wagi: serving /wagi.wasm on " + addr,
				"wagi: GET /trap: wasm trap in module /wagi.wasm",
				"wagi: GET /spin: module /wagi.wasm still running after 2s (WAZERO_WAGI_TIMEOUT): stopped",
			} {
				if !strings.Contains(string(log), want) {
					t.Errorf("container log does not contain %q:\n%s", want, log)
				}
			}
			if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
				t.Errorf("handlers left %d files in /tmp", len(ents))
			}
		})
		t.Run("bad-concurrency", func(t *testing.T) {
			r := d.run(t, runOpts{args: []string{"/wagi.wasm"}, flags: []string{"--net-host"},
				env: []string{"WAZERO_WAGI=127.0.0.1:1", "WAZERO_WAGI_CONCURRENCY=0"}})
			wantRunErr(t, r, "WAZERO_WAGI_CONCURRENCY", "from 1 to 1024")
		})
		t.Run("with-listen", func(t *testing.T) {
			r := d.run(t, runOpts{args: []string{"/wagi.wasm"}, flags: []string{"--net-host"},
				env: []string{"WAZERO_WAGI=127.0.0.1:1", "WAZERO_LISTEN=127.0.0.1:2"}})
			wantRunErr(t, r, "WAZERO_WAGI and WAZERO_LISTEN are both set")
		})
		t.Run("port-in-use", func(t *testing.T) {
			held, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()
			r := d.run(t, runOpts{args: []string{"/wagi.wasm"}, flags: []string{"--net-host"}, env: []string{"WAZERO_WAGI=" + held.Addr().String()}})
			wantRunErr(t, r, held.Addr().String(), "address already in use", "WAZERO_WAGI")
		})
		t.Run("memory-per-instance", func(t *testing.T) {
			// 24 MiB limit: 8 MiB (128 pages) for the guests after the runner's 16 MiB reserve,
			// shared among 1024 instances: 1 page each, less than the module's initial memory.
			r := d.run(t, runOpts{args: []string{"/wagi.wasm"}, flags: []string{"--net-host"}, memoryLimit: 24 << 20,
				env: []string{"WAZERO_WAGI=127.0.0.1:1", "WAZERO_WAGI_CONCURRENCY=1024"}})
			wantRunErr(t, r, "/wagi.wasm", "WAZERO_WAGI_CONCURRENCY", "raise the memory limit")
		})
	})
}
