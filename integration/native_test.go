//go:build linux

package integration

// Native containers through ctr: `ctr run --runtime io.containerd.wazero.v1` of a native image
// (an ELF entrypoint, a #! script) is run by runc under this shim (pkg/shim/native.go), exactly
// as the native containers of wazero pods are.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const nativeToolImage = "docker.io/library/native-tool:latest"

// runcStateDir is runc's state directory of the shim's native containers in containerd namespace
// ns (pkg/shim.RuncRootDir).
func runcStateDir(ns string) string { return filepath.Join("/run/containerd/wazero-runc", ns) }

// processesWith lists the live processes whose command line contains marker.
func processesWith(marker string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), marker) {
			out = append(out, fmt.Sprintf("process %s: %s", e.Name(), strings.ReplaceAll(string(b), "\x00", " ")))
		}
	}
	return out
}

// TestCtrNative: ctr run of a native image through the wazero runtime: an ELF program's output
// and exit status, a #! script, and a wasm container of the same daemon still run by wazero;
// nothing left afterwards (runc state, processes, mounts, cgroups).
func TestCtrNative(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		d.importImage(t, filepath.Join(imagesDir, "native-tool.tar"))
		fdsBefore := fdCount(t, d.cmd.Process.Pid)
		var ids []string

		hello := runOpts{image: nativeToolImage, args: []string{"/nativetool", "hello", "via-ctr"}}
		d.defaults(t, &hello)
		ids = append(ids, hello.id)
		if r := d.run(t, hello); r.exit != 0 || !strings.Contains(r.stdout, "hello from native via-ctr") {
			t.Errorf("ctr run of the native image: exit %d, stdout %q; want 0 and %q", r.exit, r.stdout, "hello from native via-ctr")
		}

		script := runOpts{image: nativeToolImage, args: []string{"/script.sh", "from-a-script"}}
		d.defaults(t, &script)
		ids = append(ids, script.id)
		if r := d.run(t, script); r.exit != 0 || !strings.Contains(r.stdout, "hello from script from-a-script") {
			t.Errorf("ctr run of a #! script: exit %d, stdout %q; want 0 and %q", r.exit, r.stdout, "hello from script from-a-script")
		}

		fails := runOpts{image: nativeToolImage, args: []string{"/nativetool", "exit", "7"}}
		d.defaults(t, &fails)
		ids = append(ids, fails.id)
		if r := d.run(t, fails); r.exit != 7 || !strings.Contains(r.stderr+r.stdout, "native container exiting with 7") {
			t.Errorf("ctr run of a failing native program: exit %d, output %q; want 7", r.exit, r.stdout+r.stderr)
		}

		// The same daemon and runtime still run wasm modules in wazero.
		if r := d.run(t, runOpts{args: []string{"/hello.wasm"}}); r.exit != 0 || !strings.Contains(r.stdout, "hello from wasm") {
			t.Errorf("ctr run of a wasm module after native ones: exit %d, stdout %q", r.exit, r.stdout)
		}

		// The shim's log says which runtime ran each container and why.
		logs, _ := os.ReadFile(d.logPath())
		for _, id := range ids {
			if !strings.Contains(grepLines(logs, id), "runtime=native") {
				t.Errorf("the daemon log has no runtime=native decision for %s", id)
			}
		}

		for _, l := range daemonLeaks(t, d, fdsBefore) {
			t.Errorf("left after the native runs: %s", l)
		}
		for _, id := range ids {
			if _, err := os.Stat(filepath.Join(runcStateDir(d.ns), id)); err == nil {
				t.Errorf("runc state of %s left in %s", id, runcStateDir(d.ns))
			}
		}
		for _, p := range processesWith("via-ctr") {
			t.Errorf("left: %s", p)
		}
	})
}

// TestCtrNativeRefusals: a native container asked for a terminal gets a clear error, and an
// annotation that forces wasm on a native image names the module it could not run.
func TestCtrNativeRefusals(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		d.importImage(t, filepath.Join(imagesDir, "native-tool.tar"))
		forced := runOpts{image: nativeToolImage, args: []string{"/nativetool", "hello"}, flags: []string{"--annotation", "wazero.dev/runtime=wasm"}}
		if r := d.run(t, forced); r.exit == 0 || !strings.Contains(r.stderr, "/nativetool") {
			t.Errorf("ctr run of a native image with wazero.dev/runtime=wasm: exit %d, stderr %q; want a failure naming /nativetool", r.exit, r.stderr)
		}
		bad := runOpts{image: nativeToolImage, args: []string{"/nativetool", "hello"}, flags: []string{"--annotation", "wazero.dev/runtime=docker"}}
		if r := d.run(t, bad); r.exit == 0 || !strings.Contains(r.stderr, "wazero.dev/runtime") {
			t.Errorf("ctr run with wazero.dev/runtime=docker: exit %d, stderr %q; want a failure naming the annotation", r.exit, r.stderr)
		}
	})
}
