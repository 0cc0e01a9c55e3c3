package shimentry

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/nodedir"
)

func TestSharedLinger(t *testing.T) {
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		env         string
		want        time.Duration
		err         string
	}{
		{name: "off by default"},
		{name: "node setting", env: "30s", want: 30 * time.Second},
		{name: "annotation wins", annotations: map[string]string{SharedAnnotation: "2m"}, env: "30s", want: 2 * time.Minute},
		{name: "annotation turns it off", annotations: map[string]string{SharedAnnotation: "0"}, env: "30s"},
		{name: "bad annotation", annotations: map[string]string{SharedAnnotation: "forever"}, err: `the container's annotation wazero.dev/shared-server is "forever": want how long`},
		{name: "bad env", env: "-1s", err: `the node's CONTAINERD_SHIM_WAZERO_SHARED_SERVER is "-1s"`},
		{name: "too long", env: "25h", err: "a duration from 0 (no shared server) to 24h0m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sharedLinger(tc.annotations, tc.env)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("sharedLinger = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// A server that leaves removes the directory while holding the lock: an entry waiting for the
// lock must not keep the old file's lock (it would write its claim where no server looks).
func TestLockSharedReplacedFile(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "sock")
	dir := SharedDir(socket)
	if err := os.MkdirAll(filepath.Join(dir, SharedClaimsDir), 0o700); err != nil {
		t.Fatal(err)
	}
	old, err := os.OpenFile(filepath.Join(dir, SharedLockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(old.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	got := make(chan *sharedClaim)
	go func() {
		c, err := lockShared(socket)
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	select {
	case <-got:
		t.Fatal("lockShared returned while the lock was held")
	case <-time.After(200 * time.Millisecond):
	}
	// The leaving server's part: remove the directory, then let go.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	old.Close()
	c := <-got
	if c == nil {
		t.Fatal("no lock")
	}
	defer c.unlock()
	if !nodedir.SameFile(c.lock, filepath.Join(dir, SharedLockFile)) {
		t.Fatal("the lock taken is not the directory's lock file")
	}
	if err := c.claim("task1"); err != nil {
		t.Fatalf("claim in the new directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, SharedClaimsDir, "task1")); err != nil {
		t.Fatal(err)
	}
	c.unclaim("task1")
	if _, err := os.Stat(filepath.Join(dir, SharedClaimsDir, "task1")); !os.IsNotExist(err) {
		t.Fatalf("claim still there after unclaim: %v", err)
	}
	for _, bad := range []string{"", "..", "a/b"} {
		if err := c.claim(bad); err == nil {
			t.Errorf("claim(%q) accepted", bad)
		}
	}
}

// Tasks with the annotation go to the namespace's shared server: the first starts it (with the
// shared server's variables) and claims it, the second finds it listening and only claims it;
// pods go there too when they ask, and keep a server of their own otherwise.
func TestStartShared(t *testing.T) {
	server, record := fakeServer(t)
	tmp, err := os.MkdirTemp("", "se") // short: a socket path must fit in 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	defer func(d string) { defaultSocketDir = d }(defaultSocketDir)
	defaultSocketDir = filepath.Join(tmp, "s")
	t.Setenv("TTRPC_ADDRESS", "/run/c/ttrpc.sock")
	t.Setenv(SharedEnv, "")
	start := func(id, annotations string) string {
		t.Helper()
		t.Chdir(t.TempDir())
		if err := os.WriteFile("config.json", []byte(`{"annotations":{`+annotations+`}}`), 0o644); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		c := call{action: "start", namespace: "default", id: id, address: "/run/c/grpc.sock"}
		if err := c.start(server, bytes.NewReader(nil), &out); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	shared := `"` + SharedAnnotation + `":"5s"`
	a1 := start("t1", shared)
	if want := socketAddress(defaultSocketDir, "/run/c/grpc.sock", "default", sharedGroup); a1 != want {
		t.Fatalf("address %q, want the namespace's shared one %q", a1, want)
	}
	path := strings.TrimPrefix(a1, "unix://")
	waitFile(t, record)
	rec, _ := os.ReadFile(record)
	if !strings.Contains(string(rec), "-id t1 ") {
		t.Errorf("the server got %q", rec)
	}
	claims := filepath.Join(SharedDir(path), SharedClaimsDir)
	if _, err := os.Stat(filepath.Join(claims, "t1")); err != nil {
		t.Fatalf("no claim for t1: %v", err)
	}
	// The fake server exited; a live one listens on the socket from now on.
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	os.Remove(record)
	if a2 := start("t2", shared); a2 != a1 {
		t.Fatalf("second task: address %q, want the shared %q", a2, a1)
	}
	if _, err := os.Stat(filepath.Join(claims, "t2")); err != nil {
		t.Fatalf("no claim for t2: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Stat(record); err == nil {
		t.Fatal("a second server was started for t2")
	}
	pod := `"io.kubernetes.cri.sandbox-id":"pod1"`
	if a3 := start("t3", shared+","+pod); a3 != a1 {
		t.Fatalf("a pod's task with the annotation: address %q, want the shared %q", a3, a1)
	}
	if a4 := start("t4", ""); a4 == a1 {
		t.Fatal("a task without the annotation went to the shared server")
	}
	if a4 := start("t4p", pod); a4 == a1 {
		t.Fatal("a pod's task without the annotation went to the shared server")
	}
	t.Setenv(SharedEnv, "1m")
	if a5 := start("t5", ""); a5 != a1 {
		t.Fatalf("with the node setting: address %q, want the shared %q", a5, a1)
	}
	if a5 := start("t5p", pod); a5 != a1 {
		t.Fatalf("a pod's task with the node setting: address %q, want the shared %q", a5, a1)
	}
	if a5 := start("t5o", pod+`,"`+SharedAnnotation+`":"0"`); a5 == a1 {
		t.Fatal("a pod that opted out with \"0\" went to the shared server")
	}
	var out bytes.Buffer
	t.Chdir(t.TempDir())
	os.WriteFile("config.json", []byte(`{"annotations":{"`+SharedAnnotation+`":"soon"}}`), 0o644)
	c := call{action: "start", namespace: "default", id: "t6", address: "/run/c/grpc.sock"}
	if err := c.start(server, bytes.NewReader(nil), &out); err == nil || !strings.Contains(err.Error(), SharedAnnotation) {
		t.Fatalf("a bad annotation: %v", err)
	}
}
