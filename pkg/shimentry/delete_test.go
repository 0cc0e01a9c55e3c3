package shimentry

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/pkg/protobuf/proto"
)

// A bundle the server cleaned up (no state file, nothing mounted) is answered by the entry; one
// with the shim's state file is left to the server binary's full delete.
func TestDeleteAnswersOnlyCleanBundles(t *testing.T) {
	bundle := filepath.Join(t.TempDir(), "c1")
	if err := os.MkdirAll(filepath.Join(bundle, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := call{action: "delete", namespace: "ns", id: "c1", bundle: bundle}
	var out bytes.Buffer
	before := time.Now()
	handled, err := c.delete(&out)
	if err != nil || !handled {
		t.Fatalf("clean bundle: handled %v, %v", handled, err)
	}
	var res taskv3.DeleteResponse
	if err := proto.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if res.ExitStatus != 137 || res.ExitedAt.AsTime().Before(before.Truncate(time.Second)) {
		t.Errorf("clean bundle answered %+v", &res)
	}

	for _, state := range []string{`{"pid":12,"startTime":5,"cgroupsPath":"/ns/c1"}`, `{"native":true,"runcRoot":"/run/r"}`, `not json`} {
		if err := os.WriteFile(filepath.Join(bundle, stateFile), []byte(state), 0o600); err != nil {
			t.Fatal(err)
		}
		out.Reset()
		handled, err := c.delete(&out)
		if err != nil || handled || out.Len() != 0 {
			t.Errorf("state %s: handled %v (%d bytes written), %v; want it left to the server", state, handled, out.Len(), err)
		}
	}
}
