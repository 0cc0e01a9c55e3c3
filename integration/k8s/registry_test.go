//go:build linux

package k8s

// Wasm images pulled by the kubelet from a registry: an OCI registry (go-containerregistry's
// pkg/registry) served by this test process on 127.0.0.1 inside the cluster's network namespace,
// images pushed there by wasmimg, pods with imagePullPolicy Always.

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"golang.org/x/sys/unix"
)

// listenInNetns opens a TCP listener on 127.0.0.1 in the network namespace at nsPath: the socket
// is created on a thread that has entered the namespace, and belongs to it from then on.
func listenInNetns(nsPath string) (net.Listener, error) {
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer self.Close()
	target, err := os.Open(nsPath)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("setns %s: %w", nsPath, err)
	}
	ln, lerr := net.Listen("tcp", "127.0.0.1:0")
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked, so Go ends it with its goroutine rather than reuse it.
		if ln != nil {
			ln.Close()
		}
		return nil, fmt.Errorf("setns back: %w", err)
	}
	runtime.UnlockOSThread()
	return ln, lerr
}

// testRegistryPull: wasm pods whose images the kubelet pulls from a registry on the node, with
// imagePullPolicy Always. wasmimg's default (portable) image runs, and runs again in a second
// pod after a second pull; a buildx-style image (an index with only the wasm manifest) fails to
// pull with the error docs/kubernetes.md quotes.
func testRegistryPull(t *testing.T, c *cluster) {
	ln, err := listenInNetns(c.nsPath)
	if err != nil {
		t.Fatalf("registry listener in netns %s: %v", c.netns, err)
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	go srv.Serve(ln)
	defer srv.Close()
	host := ln.Addr().String()

	push := func(repo string, args ...string) string {
		ref := host + "/wz/" + repo + ":v1"
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		full := append([]string{"--net=" + c.nsPath, "--", filepath.Join(repoRoot, "testdata", "build", "wasmimg"), "-push", ref}, args...)
		full = append(full, filepath.Join(repoRoot, "testdata", "build", "hello.wasm"))
		if out, err := exec.CommandContext(ctx, "nsenter", full...).CombinedOutput(); err != nil {
			t.Fatalf("nsenter %s: %v\n%s", strings.Join(full, " "), err, out)
		}
		return ref
	}
	portable := push("hello")
	buildx := push("hello-buildx", "-layout", "rootfs", "-index")

	pod := func(name, image string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  runtimeClassName: wazero
  restartPolicy: Never
  containers:
    - name: hello
      image: %s
      imagePullPolicy: Always
      args: ["from", "the", "registry"]
`, name, image)
	}
	for _, name := range []string{"wasm-registry-1", "wasm-registry-2"} {
		c.apply(t, pod(name, portable))
		c.waitPod(t, name, "Succeeded", podTimeout, func(p map[string]any) bool {
			return str(jsonPath(p, "status", "phase")) == "Succeeded"
		})
		if logs := c.kubectl(t, "logs", name); !strings.Contains(logs, "hello from wasm from the registry") {
			t.Errorf("kubectl logs %s = %q, want the module's output with the pod's args", name, logs)
		}
		c.wait(t, "pod "+name+": a Pulled event (imagePullPolicy Always)", time.Minute, func() (bool, string) {
			evs := c.events(t, name)
			return hasEvent(evs, "Pulled: "), strings.Join(evs, "; ")
		})
		c.kubectl(t, "delete", "pod", name, "--wait=true", "--timeout=2m")
	}

	c.apply(t, pod("wasm-registry-buildx", buildx))
	defer c.kubectlR("delete", "pod", "wasm-registry-buildx", "--wait=false")
	c.waitPod(t, "wasm-registry-buildx", "ErrImagePull or ImagePullBackOff", podTimeout, func(p map[string]any) bool {
		r := str(jsonPath(p, "status", "containerStatuses", 0, "state", "waiting", "reason"))
		return r == "ErrImagePull" || r == "ImagePullBackOff"
	})
	c.wait(t, "pod wasm-registry-buildx: the pull failure in its events", time.Minute, func() (bool, string) {
		evs := c.events(t, "wasm-registry-buildx")
		return hasEvent(evs, "no match for platform in manifest"), strings.Join(evs, "; ")
	})
}
