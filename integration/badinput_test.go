//go:build linux

package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The bad-input corpus (issue 11, item 5): every kind of input a user can get wrong, each through
// real ctr on every daemon, with the message the user then reads. A case passes when the
// operation fails and ctr's stderr holds every one of its substrings: the name of the bad input
// (module path, mount path, variable, image or layer digest) and what is wrong with it. After the
// corpus, nothing of the failed containers may be left (processes, mounts, cgroups, task state,
// FIFOs, containerd's file descriptors, temporary module copies). The per-request traffic cases
// are in TestBadTraffic (badtraffic_test.go). docs/RELIABILITY.md ("Bad input: the corpus") lists
// the cases with the messages of a real run; WZ_BADINPUT_TABLE=FILE writes those rows.

// badImage is the rootfs-layout image of the module and mount cases, built by buildBadFixtures.
const badImage = "docker.io/library/wz-badinput:latest"

// badCase is one bad input.
type badCase struct {
	group string // spec, env, image, module, mount, listen: the grouping
	name  string
	input string // what is wrong, in words (the corpus table's "input")
	// do makes the attempt and returns what ctr printed; when nil, `ctr run` with the options
	// that run returns is the attempt.
	do  func(t *testing.T, d *daemon, b *badFixtures) result
	run func(b *badFixtures) runOpts
	// want are substrings of ctr's stderr: the input's name and what is wrong with it.
	want []string
	// exit, when not 0, is the exact exit status wanted (a module that fails at run time rather
	// than at Create); 0 means any failing status.
	exit int
	// v1 replaces want on containerd 1.6 when that daemon refuses the input itself, before the
	// shim is asked (it cannot unpack images with non-tar layers).
	v1 []string
}

// badFixtures are the files and images the cases use, made once per test run.
type badFixtures struct {
	dir      string            // host files: mount sources, spec files
	tarballs map[string]string // image name -> OCI layout tarball
	digests  map[string]string // fixture name -> digest, for the messages that name a layer or config
	vars     map[string]string // values a case chose while it ran (the held address...)
}

func (b *badFixtures) path(name string) string { return filepath.Join(b.dir, name) }

// Images of the image group (built by buildBadFixtures).
const (
	imgGarbageLayer   = "docker.io/library/wz-bad-garbage-layer:latest"
	imgV2Layer        = "docker.io/library/wz-bad-v2-layer:latest"
	imgUnknownMedia   = "docker.io/library/wz-bad-unknown-media:latest"
	imgNoWasmLayer    = "docker.io/library/wz-bad-no-wasm-layer:latest"
	imgNotWasmArch    = "docker.io/library/wz-bad-not-wasm-arch:latest"
	imgHugeConfig     = "docker.io/library/wz-bad-huge-config:latest"
	imgWrongDigest    = "docker.io/library/wz-bad-wrong-digest:latest"
	imgTruncated      = "docker.io/library/wz-bad-truncated:latest"
	imgWasmAsTar      = "docker.io/library/wz-bad-wasm-as-tar:latest"
	imgConfigMedia    = "docker.io/library/wz-bad-config-media:latest"
	imgManifestBroken = "docker.io/library/wz-bad-manifest-json:latest"
)

func badCorpus() []badCase {
	fail := func(args ...string) func(b *badFixtures) runOpts {
		return func(b *badFixtures) runOpts { return runOpts{image: badImage, args: args} }
	}
	withEnv := func(module string, env ...string) func(b *badFixtures) runOpts {
		return func(b *badFixtures) runOpts {
			return runOpts{args: []string{module}, env: env, flags: []string{"--net-host"}}
		}
	}
	mountCase := func(src func(b *badFixtures) string, dst string) func(b *badFixtures) runOpts {
		return func(b *badFixtures) runOpts {
			return runOpts{image: badImage, args: []string{"/testprog.wasm", "hello"}, mounts: []mount{{src: src(b), dst: dst}}}
		}
	}
	hostPath := func(name string) func(b *badFixtures) string {
		return func(b *badFixtures) string { return b.path(name) }
	}
	const v16Wasm = "mismatched image rootfs and manifest layers" // 1.6 unpacks tar layers only (image_test.go)
	return []badCase{
		// ---- spec fields --------------------------------------------------------------------
		{group: "spec", name: "args0-empty", input: `process.args[0] is ""`,
			run: fail(""), want: []string{"process.args[0] is empty", "must name the .wasm module"}},
		{group: "spec", name: "no-args", input: "process.args is empty (ctr run --config)",
			do: specRun(func(s *specs.Spec) { s.Process.Args = nil }), want: []string{"OCI spec has no process args"}},
		{group: "spec", name: "root-missing", input: "root.path does not exist (ctr run --config)",
			do: specRun(func(s *specs.Spec) { s.Root.Path = "/nonexistent-rootfs-xyz" }), want: []string{"container rootfs /nonexistent-rootfs-xyz does not exist"}},
		{group: "spec", name: "oom-score-adj", input: "process.oomScoreAdj 5000",
			do: specRun(func(s *specs.Spec) { v := 5000; s.Process.OOMScoreAdj = &v }), want: []string{"process.oomScoreAdj 5000", "[-1000, 1000]"}},
		{group: "spec", name: "rlimit-type", input: "process.rlimits type RLIMIT_BOGUS",
			do: specRun(func(s *specs.Spec) {
				s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_BOGUS", Soft: 1, Hard: 1}}
			}), want: []string{"process.rlimits", `"RLIMIT_BOGUS"`}},
		{group: "spec", name: "rlimit-soft-above-hard", input: "RLIMIT_NOFILE soft 2048 above hard 1024",
			do: specRun(func(s *specs.Spec) {
				s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 2048, Hard: 1024}}
			}), want: []string{"RLIMIT_NOFILE", "soft limit 2048 is above its hard limit 1024"}},
		{group: "spec", name: "env-nul", input: "a NUL byte in process.env",
			do:   specRun(func(s *specs.Spec) { s.Process.Env = append(s.Process.Env, "BAD=a\x00b") }),
			want: []string{`("BAD")`, "NUL byte"}},
		{group: "spec", name: "seccomp-action", input: "linux.seccomp action SCMP_ACT_BOGUS",
			do: specRun(func(s *specs.Spec) {
				s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_BOGUS"}
			}), want: []string{"seccomp", "SCMP_ACT_BOGUS"}},
		{group: "spec", name: "device-rule", input: `linux.resources.devices type "q"`,
			do: specRun(func(s *specs.Spec) {
				s.Linux.Resources = &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: true, Type: "q", Access: "rwm"}}}
			}), want: []string{"linux.resources.devices[0]", `type "q" is not a, b or c`}},
		{group: "spec", name: "cpuset-cpus", input: `linux.resources.cpu.cpus "9999" (no such CPU)`,
			do: specRun(func(s *specs.Spec) {
				s.Linux.Resources = &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "9999"}}
			}), want: []string{"cpuset.cpus"}},
		{group: "spec", name: "cgroup-systemd", input: "cgroupsPath in systemd slice:prefix:name form",
			run: func(b *badFixtures) runOpts {
				return runOpts{image: badImage, args: []string{"/testprog.wasm", "hello"}, flags: []string{"--cgroup", "system.slice:wz:bad"}}
			}, want: []string{`"system.slice:wz:bad"`, "SystemdCgroup = false"}},
		{group: "spec", name: "cgroup-relative", input: "cgroupsPath not absolute",
			run: func(b *badFixtures) runOpts {
				return runOpts{image: badImage, args: []string{"/testprog.wasm", "hello"}, flags: []string{"--cgroup", "relative/wz"}}
			}, want: []string{`"relative/wz"`, "must be an absolute cgroupfs path"}},
		{group: "spec", name: "shared-server-annotation", input: "annotation wazero.dev/shared-server=soon (not a duration)",
			run: func(b *badFixtures) runOpts {
				return runOpts{image: badImage, args: []string{"/testprog.wasm", "hello"}, flags: []string{"--annotation", "wazero.dev/shared-server=soon"}}
			}, want: []string{"wazero.dev/shared-server", `"soon"`, "e.g. 30s"}},
		{group: "spec", name: "memory-below-minimum", input: "--memory-limit 64 MiB for a module declaring 2.5 GiB",
			run: func(b *badFixtures) runOpts {
				return runOpts{image: badImage, args: []string{"/hugememory.wasm"}, memoryLimit: 64 << 20}
			}, want: []string{"/hugememory.wasm", "needs more linear memory than the container's memory limit leaves for it", "raise the memory limit"}},

		// ---- WAZERO_* values -----------------------------------------------------------------
		{group: "env", name: "wagi-malformed", input: "WAZERO_WAGI=:http",
			run: withEnv("/wagi.wasm", "WAZERO_WAGI=:http"), want: []string{`WAZERO_WAGI=":http"`, `port "http" is not a number`}},
		{group: "env", name: "wagi-and-listen", input: "WAZERO_WAGI and WAZERO_LISTEN both set",
			run: withEnv("/wagi.wasm", "WAZERO_WAGI=127.0.0.1:1", "WAZERO_LISTEN=127.0.0.1:2"), want: []string{"WAZERO_WAGI and WAZERO_LISTEN are both set", "set only one"}},
		{group: "env", name: "wagi-concurrency", input: "WAZERO_WAGI_CONCURRENCY=0",
			run: withEnv("/wagi.wasm", "WAZERO_WAGI=127.0.0.1:1", "WAZERO_WAGI_CONCURRENCY=0"), want: []string{`WAZERO_WAGI_CONCURRENCY="0"`, "from 1 to 1024"}},
		{group: "env", name: "wagi-timeout", input: "WAZERO_WAGI_TIMEOUT=-1s",
			run: withEnv("/wagi.wasm", "WAZERO_WAGI=127.0.0.1:1", "WAZERO_WAGI_TIMEOUT=-1s"), want: []string{`WAZERO_WAGI_TIMEOUT="-1s"`, "positive duration"}},
		{group: "env", name: "wagi-max-body", input: "WAZERO_WAGI_MAX_BODY=10MB",
			run: withEnv("/wagi.wasm", "WAZERO_WAGI=127.0.0.1:1", "WAZERO_WAGI_MAX_BODY=10MB"), want: []string{`WAZERO_WAGI_MAX_BODY="10MB"`, "number of bytes"}},
		{group: "env", name: "wagi-write-timeout", input: "WAZERO_WAGI_WRITE_TIMEOUT=soon",
			run: withEnv("/wagi.wasm", "WAZERO_WAGI=127.0.0.1:1", "WAZERO_WAGI_WRITE_TIMEOUT=soon"), want: []string{`WAZERO_WAGI_WRITE_TIMEOUT="soon"`, "positive duration"}},
		{group: "env", name: "wagi-max-connections", input: "WAZERO_WAGI_MAX_CONNECTIONS=70000",
			run: withEnv("/wagi.wasm", "WAZERO_WAGI=127.0.0.1:1", "WAZERO_WAGI_MAX_CONNECTIONS=70000"), want: []string{`WAZERO_WAGI_MAX_CONNECTIONS="70000"`, "from 1 to 65536"}},
		{group: "env", name: "wagi-memory-per-instance", input: "WAZERO_WAGI_CONCURRENCY=1024 under a 24 MiB limit",
			run: func(b *badFixtures) runOpts {
				return runOpts{args: []string{"/wagi.wasm"}, flags: []string{"--net-host"}, memoryLimit: 24 << 20,
					env: []string{"WAZERO_WAGI=127.0.0.1:1", "WAZERO_WAGI_CONCURRENCY=1024"}}
			}, want: []string{"/wagi.wasm", "WAZERO_WAGI_CONCURRENCY", "raise the memory limit"}},
		{group: "env", name: "cold-start", input: "WAZERO_COLD_START=fast",
			run: withEnv("/hello.wasm", "WAZERO_COLD_START=fast"), want: []string{`WAZERO_COLD_START="fast"`, "want auto"}},

		// ---- images: configs, manifests, layers ---------------------------------------------
		{group: "image", name: "wrong-digest", input: "a layer whose bytes do not match its digest",
			do: importThenRun(imgWrongDigest), want: []string{"{wrong-digest}"}},
		{group: "image", name: "truncated-layer", input: "a layer shorter than its descriptor's size",
			do: importThenRun(imgTruncated), want: []string{"{truncated}"}},
		{group: "image", name: "wasm-as-tar", input: "a wasm module labelled as a tar layer",
			do: importThenRun(imgWasmAsTar), want: []string{"failed to extract layer"}},
		{group: "image", name: "manifest-not-json", input: "a manifest blob that is not JSON",
			do: importOnly(imgManifestBroken), want: []string{"{broken-manifest}", "invalid character"}},
		{group: "image", name: "config-media-type", input: "config media type application/octet-stream",
			do: importThenRun(imgConfigMedia), want: []string{"unknown image config media type", "application/octet-stream"}},
		{group: "image", name: "huge-config", input: "a 5 MiB image config, module not in the rootfs",
			do: importThenRun(imgHugeConfig), want: []string{imgHugeConfig, "{huge-config}", "larger than 4194304"}},
		{group: "image", name: "not-wasm-arch", input: "architecture amd64, module not in the rootfs",
			do: importThenRun(imgNotWasmArch), want: []string{"/app.wasm", "not found", imgNotWasmArch, `has architecture "amd64"`}},
		{group: "image", name: "no-wasm-layer", input: "architecture wasm, no wasm layer",
			do: importThenRun(imgNoWasmLayer), want: []string{"/app.wasm", imgNoWasmLayer, "has no layer of a wasm media type"}},
		{group: "image", name: "garbage-layer", input: "an application/wasm layer holding text",
			do: importThenRun(imgGarbageLayer), want: []string{"{garbage-layer}", imgGarbageLayer, "is not a WebAssembly module"},
			v1: []string{v16Wasm}},
		{group: "image", name: "v2-layer", input: "an application/wasm layer of binary version 2",
			do: importThenRun(imgV2Layer), want: []string{"{v2-layer}", imgV2Layer, "WebAssembly binary version 2"},
			v1: []string{v16Wasm}},
		{group: "image", name: "unknown-media-type", input: "a layer of media type application/vnd.example.wasm.v9",
			do: importThenRun(imgUnknownMedia), want: []string{"{unknown-media}", "application/vnd.example.wasm.v9", "does not support"},
			v1: []string{v16Wasm}},

		// ---- modules -----------------------------------------------------------------------
		{group: "module", name: "missing", input: "args[0] not in the rootfs",
			run: fail("/nope.wasm"), want: []string{"/nope.wasm", "not found"}},
		{group: "module", name: "not-in-path", input: "args[0] without a slash, not on PATH",
			run: fail("nope.wasm"), want: []string{`"nope.wasm"`, "not found in the container's PATH (/bin/nope.wasm)"}},
		{group: "module", name: "directory", input: "args[0] is a directory",
			run: fail("/dir.wasm"), want: []string{"/dir.wasm", "is not a regular file"}},
		{group: "module", name: "symlink-loop", input: "args[0] is a symlink to itself",
			run: fail("/loop.wasm"), want: []string{"/loop.wasm", "too many symlinks"}},
		{group: "module", name: "empty", input: "a 0-byte file",
			run: fail("/empty.wasm"), want: []string{"/empty.wasm", "not a WebAssembly module"}},
		{group: "module", name: "text", input: "a text file",
			run: fail("/notwasm.wasm"), want: []string{"/notwasm.wasm", "not a WebAssembly module"}},
		{group: "module", name: "truncated", input: "the first 200 bytes of a valid module",
			run: fail("/truncated.wasm"), want: []string{"/truncated.wasm", "is invalid"}},
		{group: "module", name: "version-2", input: "binary version 2",
			run: fail("/v2.wasm"), want: []string{"/v2.wasm", "WebAssembly binary version 2"}},
		{group: "module", name: "component", input: "a WebAssembly component",
			run: fail("/component.wasm"), want: []string{"/component.wasm", "is a WebAssembly component (WASI preview 2)"}},
		{group: "module", name: "invalid", input: "fails validation",
			run: fail("/invalid.wasm"), want: []string{"/invalid.wasm", "is invalid"}},
		{group: "module", name: "huge", input: "a 64 MiB module under a 32 MiB memory limit",
			run: func(b *badFixtures) runOpts {
				return runOpts{image: badImage, args: []string{"/huge.wasm"}, memoryLimit: 32 << 20}
			}, want: []string{"/huge.wasm", "memory limit of 32 MiB is too small for this module"}},
		{group: "module", name: "no-start", input: "no _start export",
			run: fail("/nostart.wasm"), want: []string{"/nostart.wasm", "exports no _start function"}},
		{group: "module", name: "start-params", input: "_start takes a parameter",
			run: fail("/startparams.wasm"), want: []string{"/startparams.wasm", "its _start function has parameters or results"}},
		{group: "module", name: "import-env", input: "imports env.not_a_wasi_function",
			run: fail("/badimport.wasm"), want: []string{"/badimport.wasm", "env.not_a_wasi_function", "which this runtime does not provide"}},
		{group: "module", name: "import-unknown-wasi", input: "imports wasi_snapshot_preview1.no_such_function",
			run: fail("/wasiunknown.wasm"), want: []string{"/wasiunknown.wasm", "wasi_snapshot_preview1.no_such_function"}},
		{group: "module", name: "import-wasi-signature", input: "imports fd_write with the wrong signature",
			exit: 134, run: fail("/wasisig.wasm"), want: []string{"/wasisig.wasm", "fd_write"}},
		{group: "module", name: "import-memory", input: "imports its memory",
			run: fail("/importmemory.wasm"), want: []string{"/importmemory.wasm", "env.memory (memory)"}},
		{group: "module", name: "start-section-traps", input: "its start section traps",
			exit: 134, run: fail("/trapstart.wasm"), want: []string{"/trapstart.wasm", "unreachable"}},
		{group: "module", name: "entry-traps", input: "_start executes unreachable",
			run: fail("/testprog.wasm", "trap"), exit: 134, want: []string{"unreachable"}},
		{group: "module", name: "deep-recursion", input: "_start recurses without end",
			run: fail("/recurse.wasm"), exit: 134, want: []string{"stack overflow"}},

		// ---- mounts ------------------------------------------------------------------------
		{group: "mount", name: "source-missing", input: "bind source does not exist",
			run: mountCase(hostPath("no-such-dir"), "/data"), want: []string{"{dir}/no-such-dir", "does not exist on the host"}},
		{group: "mount", name: "source-relative", input: "bind source is a relative path",
			run: mountCase(func(*badFixtures) string { return "relative/dir" }, "/data"), want: []string{`"relative/dir"`, "must be an absolute host path"}},
		{group: "mount", name: "source-symlink-loop", input: "bind source is a symlink loop",
			run: mountCase(hostPath("loop"), "/data"), want: []string{"{dir}/loop", "cannot be used: too many levels of symbolic links"}},
		{group: "mount", name: "file-onto-dir", input: "a host file bound onto a directory",
			run: mountCase(hostPath("file"), "/data"), want: []string{"{dir}/file", "/data is a directory in the container"}},
		{group: "mount", name: "dir-onto-file", input: "a host directory bound onto a file",
			run: mountCase(hostPath("srcdir"), "/plain.txt"), want: []string{"{dir}/srcdir", "/plain.txt"}},
		{group: "mount", name: "destination-symlink-loop", input: "destination below a symlink loop in the rootfs",
			run: mountCase(hostPath("srcdir"), "/mnt-loop/x"), want: []string{"/mnt-loop/x"}},
		{group: "mount", name: "destination-root", input: "a bind mount onto /",
			run: mountCase(hostPath("srcdir"), "/"), want: []string{"cannot replace the container's root"}},

		// ---- listeners ---------------------------------------------------------------------
		{group: "listen", name: "malformed", input: "WAZERO_LISTEN=nonsense",
			run: withEnv("/httpserver.wasm", "WAZERO_LISTEN=nonsense"), want: []string{`WAZERO_LISTEN="nonsense"`, "missing port"}},
		{group: "listen", name: "port-range", input: "WAZERO_LISTEN=:70000",
			run: withEnv("/httpserver.wasm", "WAZERO_LISTEN=:70000"), want: []string{`WAZERO_LISTEN=":70000"`, "out of range 1-65535"}},
		{group: "listen", name: "host-name", input: "WAZERO_LISTEN=localhost:8080",
			run: withEnv("/httpserver.wasm", "WAZERO_LISTEN=localhost:8080"), want: []string{`"localhost:8080"`, "is not an IP address"}},
		{group: "listen", name: "twice", input: "WAZERO_LISTEN=127.0.0.1:8080,127.0.0.1:8080",
			run: withEnv("/httpserver.wasm", "WAZERO_LISTEN=127.0.0.1:8080,127.0.0.1:8080"), want: []string{"127.0.0.1:8080 is declared twice"}},
		{group: "listen", name: "empty-item", input: "WAZERO_LISTEN=:8080,",
			run: withEnv("/httpserver.wasm", "WAZERO_LISTEN=:8080,"), want: []string{`WAZERO_LISTEN=":8080,"`, "empty item"}},
		{group: "listen", name: "not-local", input: "WAZERO_LISTEN=192.0.2.1:8080 (no such local address)",
			run: withEnv("/httpserver.wasm", "WAZERO_LISTEN=192.0.2.1:8080"), want: []string{"192.0.2.1:8080", "WAZERO_LISTEN", "cannot assign requested address"}},
		{group: "listen", name: "taken", input: "a port another process listens on",
			do: portTaken, want: []string{"{held}", "address already in use", "WAZERO_LISTEN"}},
		{group: "listen", name: "privileged", input: "port 81 without CAP_NET_BIND_SERVICE",
			run: func(b *badFixtures) runOpts {
				return runOpts{args: []string{"/httpserver.wasm"}, env: []string{"WAZERO_LISTEN=127.0.0.1:81"},
					flags: []string{"--net-host", "--cap-drop", "CAP_NET_BIND_SERVICE"}}
			}, want: []string{"127.0.0.1:81", "permission denied", "CAP_NET_BIND_SERVICE"}},
		{group: "listen", name: "no-network", input: "WAZERO_LISTEN without --net-host (a new network namespace)",
			run: func(b *badFixtures) runOpts {
				return runOpts{args: []string{"/httpserver.wasm"}, env: []string{"WAZERO_LISTEN=127.0.0.1:1"}}
			}, want: []string{"WAZERO_LISTEN", "--net-host"}},
	}
}

// ---- how a case is tried ------------------------------------------------------------------------

// specRun returns a case that runs `ctr run --config` with the base spec (badSpec) changed by
// change: the way to reach spec fields that ctr has no flag for.
func specRun(change func(*specs.Spec)) func(t *testing.T, d *daemon, b *badFixtures) result {
	return func(t *testing.T, d *daemon, b *badFixtures) result {
		id := newID(t, d)
		s := badSpec(b, d, id)
		change(s)
		return d.runSpec(t, b, id, s)
	}
}

// badSpec is a spec that runs /testprog.wasm hello from the host directory b.path("rootfs"),
// in the cgroup containerd would choose, as `ctr run` would (TestBadInput's control runs it).
func badSpec(b *badFixtures, d *daemon, id string) *specs.Spec {
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Args: []string{"/testprog.wasm", "hello"},
			Env:  []string{"PATH=/bin"},
			Cwd:  "/",
		},
		Root: &specs.Root{Path: b.path("rootfs")},
		Linux: &specs.Linux{
			CgroupsPath: "/" + d.ns + "/" + id,
			Namespaces:  []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}},
		},
	}
}

// runSpec runs `ctr run --rm --config FILE id` with spec s written to FILE.
func (d *daemon) runSpec(t *testing.T, b *badFixtures, id string, s *specs.Spec) result {
	t.Helper()
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	file := b.path(id + ".json")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	args := []string{"run", "--fifo-dir", filepath.Join(d.dir, "fifo"), "--runtime", runtimeType, "--rm", "--config", file, id}
	r := d.exec(ctx, nil, args...)
	t.Logf("ctr %s\n%s", strings.Join(args, " "), r)
	d.ensureRemoved(t, id)
	return r
}

// importOnly returns a case that imports the image tarball of name, which must fail; the image
// is removed afterwards if it was imported after all.
func importOnly(name string) func(t *testing.T, d *daemon, b *badFixtures) result {
	return func(t *testing.T, d *daemon, b *badFixtures) result {
		t.Cleanup(func() { d.ctr(t, "images", "rm", name) })
		return d.importResult(t, b.tarballs[name])
	}
}

// importThenRun returns a case that imports the image tarball of name and runs /app.wasm from
// it; when the import fails, the import's result is the case's. The image is removed afterwards.
func importThenRun(name string) func(t *testing.T, d *daemon, b *badFixtures) result {
	return func(t *testing.T, d *daemon, b *badFixtures) result {
		t.Cleanup(func() { d.ctr(t, "images", "rm", name) })
		if r := d.importResult(t, b.tarballs[name]); r.exit != 0 {
			return r
		}
		return d.run(t, runOpts{image: name, args: []string{"/app.wasm"}})
	}
}

func (d *daemon) importResult(t *testing.T, tarball string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ctrTimeout)
	defer cancel()
	args := []string{"images", "import", "--all-platforms", tarball}
	r := d.exec(ctx, nil, args...)
	t.Logf("ctr %s\n%s", strings.Join(args, " "), r)
	return r
}

// portTaken runs the HTTP server on a loopback port this test holds.
func portTaken(t *testing.T, d *daemon, b *badFixtures) result {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	b.vars["held"] = held.Addr().String()
	return d.run(t, runOpts{args: []string{"/httpserver.wasm"}, flags: []string{"--net-host"}, env: []string{"WAZERO_LISTEN=" + held.Addr().String()}})
}

// expand replaces {dir} with the fixtures' host directory, {NAME} with the digest or value
// recorded under NAME.
func (b *badFixtures) expand(s string) string {
	s = strings.ReplaceAll(s, "{dir}", b.dir)
	for k, v := range b.digests {
		s = strings.ReplaceAll(s, "{"+k+"}", v)
	}
	for k, v := range b.vars {
		s = strings.ReplaceAll(s, "{"+k+"}", v)
	}
	return s
}

// ---- the test -------------------------------------------------------------------------------

func TestBadInput(t *testing.T) {
	requireSuite(t)
	b := buildBadFixtures(t)
	cases := badCorpus()
	if len(cases) < 40 {
		t.Fatalf("the corpus has %d cases, issue 11 asks for at least 40", len(cases))
	}
	var rows []string
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		d.importImage(t, b.tarballs[badImage])
		// One good run first: what containerd keeps for good is then in the baseline.
		if r := d.run(t, runOpts{image: badImage, args: []string{"/testprog.wasm", "hello"}}); r.exit != 0 {
			t.Fatalf("control run of %s: exit %d\n%s", badImage, r.exit, r)
		}
		fdsBefore := fdCount(t, d.cmd.Process.Pid)
		t.Run("control/spec", func(t *testing.T) {
			// The base spec of the --config cases runs: their failures come from their one change.
			id := newID(t, d)
			if r := d.runSpec(t, b, id, badSpec(b, d, id)); r.exit != 0 || !strings.Contains(r.stdout, "hello from wasm") {
				t.Fatalf("the base spec of the spec cases does not run\n%s", r)
			}
		})
		for _, c := range cases {
			t.Run(c.group+"/"+c.name, func(t *testing.T) {
				var r result
				if c.do != nil {
					r = c.do(t, d, b)
				} else {
					r = d.run(t, c.run(b))
				}
				want := c.want
				if d.v1() && c.v1 != nil {
					want = c.v1
				}
				switch {
				case r.exit == 0:
					t.Fatalf("succeeded, want a failure\n%s", r)
				case c.exit != 0 && r.exit != c.exit:
					t.Errorf("exit %d, want %d\n%s", r.exit, c.exit, r)
				}
				var missing []string
				for _, w := range want {
					if !strings.Contains(r.stderr, b.expand(w)) {
						missing = append(missing, b.expand(w))
					}
				}
				if len(missing) > 0 {
					t.Errorf("stderr does not contain %q\n%s", missing, r)
				}
				rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s | `%s` |", d.version, c.group, c.name, c.input,
					b.shorten(messageLine(r.stderr, b.expand(want[len(want)-1])))))
			})
		}
		for _, l := range daemonLeaks(t, d, fdsBefore) {
			t.Errorf("left behind after the corpus: %s", l)
		}
	})
	if p := os.Getenv("WZ_BADINPUT_TABLE"); p != "" {
		if err := os.WriteFile(p, []byte(strings.Join(rows, "\n")+"\n"), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// messageLine is the line of stderr that holds sub (the message a user reads): ctr's own error
// line if it does (ctr also prints containerd's log lines), or its last line.
func messageLine(stderr, sub string) string {
	ls := lines(stderr)
	for _, ctrOnly := range []bool{true, false} {
		for _, l := range ls {
			if strings.Contains(l, sub) && (!ctrOnly || strings.HasPrefix(l, "ctr: ")) {
				return strings.TrimSpace(l)
			}
		}
	}
	if len(ls) == 0 {
		return ""
	}
	return strings.TrimSpace(ls[len(ls)-1])
}

// shorten makes a message fit the corpus table: the run's temporary directories become $TMP and
// digests their first 12 hex digits.
func (b *badFixtures) shorten(s string) string {
	s = strings.ReplaceAll(s, b.dir, "$DIR")
	s = strings.ReplaceAll(s, suite.tmp, "$TMP")
	s = strings.ReplaceAll(s, "`", "'")
	var out strings.Builder
	for {
		i := strings.Index(s, "sha256:")
		if i < 0 || len(s) < i+7+64 {
			out.WriteString(s)
			return out.String()
		}
		out.WriteString(s[:i+7+12] + "…")
		s = s[i+7+64:]
	}
}

// daemonLeaks reports what the containers run on d left: processes of the shim or a runner,
// mounts under the daemon's directory, container cgroups, task state, FIFOs, temporary module
// copies, and containerd file descriptors beyond fdsBefore (with the slack TestLeaksAfterManyRuns
// allows for connections ctr just closed).
func daemonLeaks(t *testing.T, d *daemon, fdsBefore int) []string {
	t.Helper()
	var leaks []string
	pids := shimPIDs()
	for end := time.Now().Add(10 * time.Second); len(pids) > 0 && time.Now().Before(end); pids = shimPIDs() {
		time.Sleep(100 * time.Millisecond)
	}
	for _, p := range pids {
		leaks = append(leaks, fmt.Sprintf("process %d of the shim or a runner", p))
	}
	for _, mp := range mountsUnder(d.dir) {
		leaks = append(leaks, "mount "+mp)
	}
	leaks = append(leaks, cgroupLeaks(d.ns)...)
	taskDir := filepath.Join(d.dir, "state", "io.containerd.runtime.v2.task", d.ns)
	if left := entries(taskDir); len(left) > 0 {
		leaks = append(leaks, fmt.Sprintf("task state in %s: %v", taskDir, left))
	}
	if left := entries(filepath.Join(d.dir, "fifo")); len(left) > 0 {
		leaks = append(leaks, fmt.Sprintf("FIFOs: %v", left))
	}
	modules := filepath.Join(filepath.Dir(d.cacheDir), "modules", "sha256")
	for _, e := range entries(modules) {
		if strings.HasPrefix(e, ".") {
			leaks = append(leaks, "temporary module copy "+filepath.Join(modules, e))
		}
	}
	fds := fdCount(t, d.cmd.Process.Pid)
	if fds > fdsBefore+4 {
		leaks = append(leaks, fmt.Sprintf("containerd holds %d fds, %d before", fds, fdsBefore))
	}
	t.Logf("containerd fds %d before the cases, %d after", fdsBefore, fds)
	return leaks
}

// ---- fixtures -------------------------------------------------------------------------------

// buildBadFixtures writes the host files of the mount and spec cases and the image tarballs.
func buildBadFixtures(t *testing.T) *badFixtures {
	t.Helper()
	b := &badFixtures{dir: t.TempDir(), tarballs: map[string]string{}, digests: map[string]string{}, vars: map[string]string{}}
	build := filepath.Join(repoRoot, "testdata", "build")
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(build, name))
		if err != nil {
			t.Fatalf("%v (run make testdata)", err)
		}
		return data
	}
	hello, testprog := read("hello.wasm"), read("testprog.wasm")

	// Host side: mount sources and the --config cases' rootfs.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(b.path("file"), []byte("a file\n"), 0o644))
	must(os.Mkdir(b.path("srcdir"), 0o755))
	must(os.Symlink("loop", b.path("loop")))
	must(os.MkdirAll(b.path("rootfs/bin"), 0o755))
	must(os.WriteFile(b.path("rootfs/testprog.wasm"), testprog, 0o755))

	// The module cases' image: one tar layer with every bad module and the mount destinations.
	files := []tarEntry{
		{name: "testprog.wasm", data: testprog},
		{name: "bin/", dir: true},
		{name: "empty.wasm", data: []byte{}},
		{name: "notwasm.wasm", data: []byte("this is not a wasm module\n")},
		{name: "truncated.wasm", data: hello[:200]},
		{name: "v2.wasm", data: []byte("\x00asm\x02\x00\x00\x00")},
		{name: "component.wasm", data: componentBytes},
		{name: "huge.wasm", data: withCustomSection(hello, "padding", 64<<20)},
		{name: "dir.wasm/", dir: true},
		{name: "loop.wasm", link: "loop.wasm"},
		{name: "data/", dir: true},
		{name: "plain.txt", data: []byte("a file in the image\n")},
		{name: "mnt-loop", link: "mnt-loop"},
	}
	for _, m := range []string{"invalid", "nostart", "badimport", "startparams", "wasiunknown", "wasisig",
		"importmemory", "trapstart", "recurse", "hugememory"} {
		files = append(files, tarEntry{name: m + ".wasm", data: read(m + ".wasm")})
	}
	rootfs := tarLayer(t, files)
	b.image(t, badImage, ociImage{arch: "wasm", os: "wasip1", env: []string{"PATH=/bin"}, layers: []ociBlob{{tar: true, data: rootfs}}})

	// The image group: one thing wrong in each.
	// Each image has layers of its own: images that share a layer race containerd's garbage
	// collection of its snapshot when one is removed as the next is unpacked.
	noModule := func(image string) []byte {
		return tarLayer(t, []tarEntry{{name: "readme.txt", data: []byte("no module in " + image + "\n")}})
	}
	garbage, v2 := []byte("this layer says application/wasm but holds text\n"), []byte("\x00asm\x02\x00\x00\x00\x01\x00")
	b.digests["garbage-layer"], b.digests["v2-layer"], b.digests["unknown-media"] = digestOf(garbage), digestOf(v2), digestOf(hello)
	b.image(t, imgGarbageLayer, ociImage{arch: "wasm", os: "wasip1", layers: []ociBlob{{mediaType: "application/wasm", data: garbage}}})
	b.image(t, imgV2Layer, ociImage{arch: "wasm", os: "wasip1", layers: []ociBlob{{mediaType: "application/wasm", data: v2}}})
	b.image(t, imgUnknownMedia, ociImage{arch: "wasm", os: "wasip1", layers: []ociBlob{{mediaType: "application/vnd.example.wasm.v9", data: hello}}})
	b.image(t, imgNoWasmLayer, ociImage{arch: "wasm", os: "wasip1", layers: []ociBlob{{tar: true, data: noModule(imgNoWasmLayer)}}})
	b.image(t, imgNotWasmArch, ociImage{arch: "amd64", os: "linux", layers: []ociBlob{{tar: true, data: noModule(imgNotWasmArch)}}})
	b.image(t, imgHugeConfig, ociImage{arch: "wasm", os: "wasip1", padConfig: 5 << 20, layers: []ociBlob{{tar: true, data: noModule(imgHugeConfig)}}})
	// Layers of their own: a blob already in the content store (another image's) is not read again.
	wrongDigest := tarLayer(t, []tarEntry{{name: "readme.txt", data: []byte("the bytes under this digest are others\n")}})
	truncated := tarLayer(t, []tarEntry{{name: "readme.txt", data: []byte("this layer is cut in half\n")}})
	b.image(t, imgWrongDigest, ociImage{arch: "wasm", os: "wasip1", layers: []ociBlob{{tar: true, data: wrongDigest, stored: noModule(imgWrongDigest)}}})
	b.image(t, imgTruncated, ociImage{arch: "wasm", os: "wasip1", layers: []ociBlob{{tar: true, data: truncated, stored: truncated[:len(truncated)/2]}}})
	b.digests["wrong-digest"], b.digests["truncated"] = digestOf(wrongDigest), digestOf(truncated)
	b.image(t, imgWasmAsTar, ociImage{arch: "wasm", os: "wasip1", layers: []ociBlob{{tar: true, data: withCustomSection(hello, "as-tar", 16)}}})
	b.image(t, imgConfigMedia, ociImage{arch: "wasm", os: "wasip1", configMediaType: "application/octet-stream", layers: []ociBlob{{tar: true, data: noModule(imgConfigMedia)}}})
	b.image(t, imgManifestBroken, ociImage{arch: "wasm", os: "wasip1", brokenManifest: true, layers: []ociBlob{{tar: true, data: noModule(imgManifestBroken)}}})
	return b
}

// withCustomSection returns module with a custom section called name of size zero bytes
// appended: the module stays valid and grows by size.
func withCustomSection(module []byte, name string, size int) []byte {
	uleb := func(n int) []byte {
		var out []byte
		for {
			c := byte(n & 0x7f)
			n >>= 7
			if n != 0 {
				c |= 0x80
			}
			out = append(out, c)
			if n == 0 {
				return out
			}
		}
	}
	payload := append(uleb(len(name)), name...)
	out := append(append([]byte{}, module...), 0)
	out = append(out, uleb(len(payload)+size)...)
	out = append(out, payload...)
	return append(out, make([]byte, size)...)
}

// tarEntry is a file, directory (dir) or symlink (link: its target) of a tar layer.
type tarEntry struct {
	name string
	data []byte
	dir  bool
	link string
}

func tarLayer(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o755, Size: int64(len(e.data)), Typeflag: tar.TypeReg}
		switch {
		case e.dir:
			h.Typeflag, h.Size = tar.TypeDir, 0
		case e.link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.link, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write(e.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// ociImage describes an OCI image-layout tarball with one manifest, possibly malformed.
type ociImage struct {
	arch, os        string
	env             []string
	layers          []ociBlob
	configMediaType string // "" = application/vnd.oci.image.config.v1+json
	padConfig       int    // bytes of padding in the config (a "huge" config)
	brokenManifest  bool   // the manifest blob is not JSON (its digest is still its own)
}

// ociBlob is a layer: an uncompressed tar layer (tar) or a blob of mediaType. stored, when not
// nil, is written to the tarball in place of data under data's digest and size (a wrong digest,
// a truncated blob).
type ociBlob struct {
	mediaType string
	tar       bool
	data      []byte
	stored    []byte
}

// image writes img as the OCI layout tarball of name into the fixtures directory.
func (b *badFixtures) image(t *testing.T, name string, img ociImage) {
	t.Helper()
	type desc struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int               `json:"size"`
		Platform    map[string]string `json:"platform,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	blobs := map[string][]byte{}
	add := func(mediaType string, data, stored []byte) desc {
		d := digestOf(data)
		if stored == nil {
			stored = data
		}
		blobs[d] = stored
		return desc{MediaType: mediaType, Digest: d, Size: len(data)}
	}
	mustJSON := func(v any) []byte {
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	diffIDs := []string{}
	var layers []desc
	for _, l := range img.layers {
		mt := l.mediaType
		if l.tar {
			mt = "application/vnd.oci.image.layer.v1.tar"
			diffIDs = append(diffIDs, digestOf(l.data))
		}
		layers = append(layers, add(mt, l.data, l.stored))
	}
	cfg := map[string]any{
		"architecture": img.arch, "os": img.os,
		"config": map[string]any{"Entrypoint": []string{"/app.wasm"}, "Env": img.env},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	}
	if img.padConfig > 0 {
		cfg["comment"] = strings.Repeat("x", img.padConfig)
	}
	cmt := img.configMediaType
	if cmt == "" {
		cmt = "application/vnd.oci.image.config.v1+json"
	}
	config := add(cmt, mustJSON(cfg), nil)
	if img.padConfig > 0 {
		b.digests["huge-config"] = config.Digest
	}
	mf := mustJSON(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config, "layers": layers})
	if img.brokenManifest {
		mf = []byte("{this is not a manifest")
		b.digests["broken-manifest"] = digestOf(mf)
	}
	manifest := add("application/vnd.oci.image.manifest.v1+json", mf, nil)
	manifest.Platform = map[string]string{"architecture": img.arch, "os": img.os}
	manifest.Annotations = map[string]string{"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name}
	index := mustJSON(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []desc{manifest}})

	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	file := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	file("index.json", index)
	for d, data := range blobs {
		file("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	path := b.path(strings.NewReplacer("docker.io/library/", "", ":", "_").Replace(name) + ".tar")
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	b.tarballs[name] = path
}
