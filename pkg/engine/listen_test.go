package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// freePort returns a TCP port of 127.0.0.1 that nothing listens on (at the time of the call).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func loopback(port int) oci.ListenAddr { return oci.ListenAddr{Host: "127.0.0.1", Port: port} }

// The guest's listener fds follow stdio and every distinct preopened directory, in declared
// order, and WAZERO_LISTEN_FDS says so (replacing one from the spec).
func TestListenFDs(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	addrs := []oci.ListenAddr{loopback(9000), {Port: 8080}, {Host: "::", Port: 8081}}
	for _, tc := range []struct {
		name   string
		mounts []oci.Mount
		want   string
	}{
		{name: "root only", want: "4,5,6"},
		{name: "two dirs and a file", mounts: []oci.Mount{{Source: dirA, Destination: "/a"}, {Source: file, Destination: "/etc/f"}, {Source: dirB, Destination: "/b/"}}, want: "6,7,8"},
		{name: "same destination twice", mounts: []oci.Mount{{Source: dirA, Destination: "/a"}, {Source: dirB, Destination: "/a/"}}, want: "5,6,7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &Config{Rootfs: t.TempDir(), NoIsolation: true, Mounts: tc.mounts, Listen: addrs}
			_, preopens := fsConfig(cfg)
			ctx, env := withListeners(context.Background(), cfg, preopens, []string{"A=1", "WAZERO_LISTEN_FDS=99", "B=2"})
			if want := []string{"A=1", "B=2", "WAZERO_LISTEN_FDS=" + tc.want}; !reflect.DeepEqual(env, want) {
				t.Errorf("env %q, want %q", env, want)
			}
			if ctx == context.Background() {
				t.Error("no socket configuration in the context")
			}
		})
	}
	cfg := &Config{Rootfs: t.TempDir(), NoIsolation: true}
	env := []string{"A=1"}
	if ctx, got := withListeners(context.Background(), cfg, 1, env); ctx != context.Background() || !reflect.DeepEqual(got, env) {
		t.Errorf("without listeners: env %q, want it unchanged, and the context unchanged", got)
	}
}

func TestOpenListeners(t *testing.T) {
	p1, p2 := freePort(t), freePort(t)
	ls, err := OpenListeners(&Config{Listen: []oci.ListenAddr{loopback(p1), loopback(p2)}})
	if err != nil {
		t.Fatalf("OpenListeners: %v", err)
	}
	for i, l := range ls {
		if got, want := l.Addr().String(), loopback([]int{p1, p2}[i]).String(); got != want {
			t.Errorf("listener %d on %s, want %s", i, got, want)
		}
	}
	closeListeners(ls)

	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	inUse := held.Addr().(*net.TCPAddr).Port
	free := freePort(t)

	cases := []struct {
		name   string
		cfg    Config
		errHas []string
		errno  syscall.Errno
	}{
		{
			name:   "port in use",
			cfg:    Config{Listen: []oci.ListenAddr{loopback(free), loopback(inUse)}},
			errHas: []string{fmt.Sprintf("127.0.0.1:%d", inUse), "address already in use", "WAZERO_LISTEN"},
			errno:  syscall.EADDRINUSE,
		},
		{
			name:   "address not here",
			cfg:    Config{Listen: []oci.ListenAddr{{Host: "192.0.2.1", Port: free}}}, // TEST-NET-1
			errHas: []string{fmt.Sprintf("192.0.2.1:%d", free), "cannot assign requested address", "WAZERO_LISTEN"},
			errno:  syscall.EADDRNOTAVAIL,
		},
	}
	if privilegedPortLimit() > 80 {
		cases = append(cases, struct {
			name   string
			cfg    Config
			errHas []string
			errno  syscall.Errno
		}{
			name:   "privileged port without CAP_NET_BIND_SERVICE",
			cfg:    Config{Listen: []oci.ListenAddr{loopback(free), loopback(80)}},
			errHas: []string{"127.0.0.1:80", "permission denied", "CAP_NET_BIND_SERVICE", "WAZERO_LISTEN"},
		})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ls, err := OpenListeners(&tc.cfg)
			if err == nil {
				closeListeners(ls)
				t.Fatal("OpenListeners succeeded")
			}
			for _, s := range tc.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if tc.errno != 0 && !errors.Is(err, tc.errno) {
				t.Errorf("error %q is not %v", err, tc.errno)
			}
			// The listeners opened before the failure are closed again.
			l, err := net.Listen("tcp", loopback(free).String())
			if err != nil {
				t.Fatalf("the first listener was left open: %v", err)
			}
			l.Close()
		})
	}
}

// When wazero cannot listen at Start (the port was taken after Create), Run says so on stderr and
// exits ExitRunnerError before any guest code runs.
func TestRunListenFailsAtStart(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	cfg := testConfig(t, "httpserver.wasm")
	cfg.Listen = []oci.ListenAddr{loopback(held.Addr().(*net.TCPAddr).Port)}
	r := run(t, cfg, "")
	if r.code != ExitRunnerError {
		t.Errorf("exit code %d, want %d (stderr %q)", r.code, ExitRunnerError, r.stderr)
	}
	for _, s := range []string{held.Addr().String(), "address already in use", "WAZERO_LISTEN", "/httpserver.wasm"} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr %q does not contain %q", r.stderr, s)
		}
	}
	if r.stdout != "" {
		t.Errorf("the guest ran: stdout %q", r.stdout)
	}
}

// httpGet polls url until it answers or timeout passes, and returns the status and body.
func httpGet(t *testing.T, url string, timeout time.Duration) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := c.Get(url)
		if err == nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				return resp.StatusCode, string(b)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v (for %s)", url, err, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A runner listens at Create (the ports are taken before Start), and the guest serves on both
// listeners at the fds of WAZERO_LISTEN_FDS, which follow the preopened directories.
func TestRunnerListeners(t *testing.T) {
	t.Run("root", func(t *testing.T) { testRunnerListenersCase(t, false) })
	// As the non-root, capability-less, seccomp-confined process a restricted pod gets.
	t.Run("confined", func(t *testing.T) { testRunnerListenersCase(t, true) })
}

func testRunnerListenersCase(t *testing.T, confined bool) {
	r, stdout, stderr := spawn(t)
	p1, p2 := freePort(t), freePort(t)
	cfg := testConfig(t, "httpserver.wasm")
	cfg.Mounts = []oci.Mount{{Source: t.TempDir(), Destination: "/data"}} // one more preopen: fds 5 and 6
	cfg.Listen = []oci.ListenAddr{loopback(p1), loopback(p2)}
	cfg.Env = []string{fmt.Sprintf("WAZERO_LISTEN=127.0.0.1:%d,127.0.0.1:%d", p1, p2)}
	if confined {
		confine(t, cfg)
	}
	if _, err := r.Configure(cfg); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	for _, p := range []int{p1, p2} {
		if l, err := net.Listen("tcp", loopback(p).String()); err == nil {
			l.Close()
			t.Fatalf("port %d is free after Create: the runner must hold it", p)
		}
	}
	if err := r.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	for _, p := range []int{p1, p2} {
		base := fmt.Sprintf("http://127.0.0.1:%d", p)
		if code, body := httpGet(t, base+"/health", 30*time.Second); code != 200 || body != "ok" {
			t.Errorf("GET /health on port %d: %d %q", p, code, body)
		}
		if code, body := httpGet(t, base+"/hello", 5*time.Second); code != 200 || body != "hello from wasm http" {
			t.Errorf("GET /hello on port %d: %d %q", p, code, body)
		}
	}
	for _, want := range []string{fmt.Sprintf("fd 5 (127.0.0.1:%d)", p1), fmt.Sprintf("fd 6 (127.0.0.1:%d)", p2)} {
		if !strings.Contains(stdout(), want) {
			t.Errorf("stdout %q does not contain %q (stderr %q)", stdout(), want, stderr())
		}
	}
	// Idle, the guest waits for its sockets: it must not spin (wazero alone reports non-blocking
	// sockets ready at once, see socketWait).
	before := cpuTicks(t, r.Pid())
	time.Sleep(time.Second)
	if used := cpuTicks(t, r.Pid()) - before; used > 20 {
		t.Errorf("the idle server used %d clock ticks of CPU in 1s: it spins", used)
	}
	r.Cmd.Process.Signal(syscall.SIGTERM)
	wait(t, r)
	if ws, ok := r.Cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("runner ended with %v, want killed by SIGTERM", r.Cmd.ProcessState)
	}
	for _, p := range []int{p1, p2} {
		l, err := net.Listen("tcp", loopback(p).String())
		if err != nil {
			t.Errorf("port %d is not free after the runner exited: %v", p, err)
			continue
		}
		l.Close()
	}
}

// A port in use fails Create, with the runner's message.
func TestRunnerListenInUse(t *testing.T) {
	r, stdout, _ := spawn(t)
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	cfg := testConfig(t, "httpserver.wasm")
	cfg.Listen = []oci.ListenAddr{loopback(held.Addr().(*net.TCPAddr).Port)}
	_, err = r.Configure(cfg)
	if err == nil || !strings.Contains(err.Error(), held.Addr().String()) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Configure err = %v, want one naming %s and 'address already in use'", err, held.Addr())
	}
	if code := wait(t, r); code != ExitRunnerError {
		t.Errorf("exit code %d, want %d", code, ExitRunnerError)
	}
	if stdout() != "" {
		t.Errorf("guest ran: %q", stdout())
	}
}

// cpuTicks is the user+system CPU time of process pid, in clock ticks.
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	return utime + stime
}
