//go:build linux

package integration

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCRIImageLayouts runs the wasm-layers and CNCF artifact layouts (docs/images.md) through
// the CRI plugin: imported into k8s.io for platform wasip1/wasm (as docs/kubernetes.md says),
// then a container in a wazero pod with the image's own entrypoint (/hello.wasm), which is not in
// the (empty) rootfs, so the shim reads the module from the image's layer. containerd 1.6 cannot
// unpack an image with a non-tar layer, so the import fails there, with the message
// docs/images.md quotes.
func TestCRIImageLayouts(t *testing.T) {
	layouts := []struct{ name, tarball, image string }{
		{"wasm-layers", "hello-layers.tar", helloLayersImage},
		{"artifact", "hello-artifact.tar", helloArtifactImage},
	}
	forEachCRIDaemon(t, func(t *testing.T, c *criClient) {
		imp := []string{"images", "import", "--platform", "wasip1/wasm"}
		if !c.d.v1() {
			imp = append(imp, "--local")
		}
		if c.d.v1() {
			for _, l := range layouts {
				r := c.ctrK8s(append(imp, filepath.Join(imagesDir, l.tarball))...)
				if r.exit == 0 || !strings.Contains(r.stderr, v16Refusal) {
					t.Errorf("containerd 1.6: ctr -n k8s.io images import %s: exit %d, want a failure with %q\n%s", l.tarball, r.exit, v16Refusal, r)
				}
			}
			return
		}
		for _, l := range layouts {
			if r := c.ctrK8s(append(imp, filepath.Join(imagesDir, l.tarball))...); r.exit != 0 {
				t.Fatalf("ctr -n k8s.io %s %s:\n%s", strings.Join(imp, " "), l.tarball, r)
			}
		}
		var tr tracked
		p := c.runPod("wz-img", "wazero", true)
		tr.track(t, p.id, p.inspect().Info.Pid)
		for _, l := range layouts {
			t.Run(l.name, func(t *testing.T) {
				// No command: the CRI plugin takes the entrypoint from the image config (for the
				// artifact, the config wasmimg writes beside the CNCF fields).
				id, _ := p.run(ctrSpec{name: l.name, image: l.image})
				tr.ids = append(tr.ids, id)
				ci := c.waitState(id, stateExited, 30*time.Second)
				out := c.logs(id)
				if ci.Status.ExitCode != 0 || !strings.Contains(out, helloWant) {
					t.Errorf("%s: exitCode %d, crictl logs %q; want 0 and %q\ndaemon log:\n%s", l.image, ci.Status.ExitCode, out, helloWant, logLinesFor(c.d, id))
				}
				// Args from the pod spec reach the module taken from the layer.
				id2, _ := p.run(ctrSpec{name: l.name + "-args", image: l.image, args: []string{"x", "y"}})
				tr.ids = append(tr.ids, id2)
				ci = c.waitState(id2, stateExited, 30*time.Second)
				if out := c.logs(id2); ci.Status.ExitCode != 0 || !strings.Contains(out, helloWant+" x y") {
					t.Errorf("%s with args: exitCode %d, crictl logs %q; want 0 and %q", l.image, ci.Status.ExitCode, out, helloWant+" x y")
				}
			})
		}
		c.removeAllAndCheck(&tr)
	})
}
