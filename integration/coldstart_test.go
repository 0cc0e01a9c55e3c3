package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestColdStartInterpret: under the default policy (auto), a command's first run on the node
// runs in the interpreter and the shim compiles the module into the cache in the background; the
// next run loads the compiled module. A service (WAZERO_LISTEN) compiles on its first run. A bad
// policy value fails Create.
func TestColdStartInterpret(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		resetCache(t, d)
		first := runHelloGo(t, d, "A=1") // no WAZERO_COLD_START: auto
		if first["interpreted"] != "true" || first["cacheHit"] != "false" {
			t.Errorf("first run: interpreted=%q cacheHit=%q, want an interpreted start", first["interpreted"], first["cacheHit"])
		}
		// The background compile fills the cache (the filler outlives the container: --rm
		// deleted it right after it exited).
		want := fileDigest(t, filepath.Join(repoRoot, "testdata", "build", "hello-go.wasm"))
		marker := filepath.Join(d.cacheDir, "seen", strings.TrimPrefix(want, "sha256:"))
		deadline := time.Now().Add(2 * time.Minute)
		for {
			if b, err := os.ReadFile(marker); err == nil && strings.HasPrefix(string(b), "wazero-") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cache marker %s not written 2 minutes after the interpreted run: no background compile\n%s", marker, tail(d.logPath(), 30))
			}
			time.Sleep(100 * time.Millisecond)
		}
		second := runHelloGo(t, d, "A=1")
		if second["interpreted"] == "true" || second["cacheHit"] != "true" {
			t.Errorf("second run: interpreted=%q cacheHit=%q, want the compiled module from the cache", second["interpreted"], second["cacheHit"])
		}

		// A service compiles on its first run, even under auto.
		resetCache(t, d)
		port := freeLoopbackPort(t)
		id := newID(t, d)
		runDetached(t, d, id, []string{"/httpserver.wasm"}, "--net-host", "--env", "WAZERO_LISTEN=127.0.0.1:"+strconv.Itoa(port))
		svc := waitReady(t, d, id)
		if svc["interpreted"] == "true" || svc["cacheHit"] != "false" {
			t.Errorf("service's first run: interpreted=%q cacheHit=%q, want a compile", svc["interpreted"], svc["cacheHit"])
		}
		killRemove(t, d, id)

		r := d.run(t, runOpts{args: []string{"/hello.wasm"}, env: []string{"WAZERO_COLD_START=jit"}})
		wantRunErr(t, r, `WAZERO_COLD_START="jit"`, "auto", "compile", "interpret")
	})
}
