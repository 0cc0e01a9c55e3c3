package oci

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Fuzz targets for everything that reads untrusted input on its way from a container's spec or
// image to a runner's configuration (scripts/fuzz.sh runs each briefly in `make unit`, longer
// in `make fuzz`). Each checks the invariants the code promises: no panic, errors of the errdefs
// kind the doc comment names, and round trips where there are some.

// isInvalid fails the target unless err is an InvalidArgument error.
func isInvalid(t *testing.T, what string, err error) {
	t.Helper()
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("%s: error %v is not InvalidArgument", what, err)
	}
}

// FuzzParseListen: WAZERO_LISTEN's value. A parsed list prints back to a value that parses to
// the same list; errors are InvalidArgument naming the variable.
func FuzzParseListen(f *testing.F) {
	for _, s := range []string{"", " ", ":8080", "127.0.0.1:9000", "[::]:8080", "[::1]:9000", ":8080, 127.0.0.1:9090",
		"8080", "localhost:80", ":0", ":65536", ":80,:80", "[fe80::1%eth0]:80", "0.0.0.0:1", ",", ":8080,,:9090", "::1:80", "[::ffff:1.2.3.4]:8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		addrs, err := ParseListen(v)
		if err != nil {
			isInvalid(t, "ParseListen", err)
			if !strings.Contains(err.Error(), ListenEnv) {
				t.Fatalf("error %q does not name %s", err, ListenEnv)
			}
			return
		}
		parts := make([]string, len(addrs))
		for i, a := range addrs {
			if a.Port < 1 || a.Port > 65535 {
				t.Fatalf("%q: port %d out of range", v, a.Port)
			}
			parts[i] = a.String()
		}
		again, err := ParseListen(strings.Join(parts, ","))
		if err != nil || !reflect.DeepEqual(again, addrs) && len(addrs) > 0 {
			t.Fatalf("%q parsed to %v, printed as %q, parsed again to %v, %v", v, addrs, strings.Join(parts, ","), again, err)
		}
	})
}

// FuzzParseWAGI: the WAZERO_WAGI* variables. Accepted settings are within their documented
// bounds; errors are InvalidArgument.
func FuzzParseWAGI(f *testing.F) {
	f.Add(":8080", "", "", "", "", "", "")
	f.Add(":8080", " 3", "1500ms", "0", "5s", "10", "")
	f.Add("127.0.0.1:80,[::1]:80", "1025", "30", "1MB", "0s", "0", "")
	f.Add(":8080", "many", "-1s", "-1", "1h", "65537", ":9090")
	f.Add(" ", "0", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, wagi, conc, timeout, body, write, conns, listen string) {
		env := []string{WAGIEnv + "=" + wagi, WAGIConcurrencyEnv + "=" + conc, WAGITimeoutEnv + "=" + timeout,
			WAGIMaxBodyEnv + "=" + body, WAGIWriteTimeoutEnv + "=" + write, WAGIMaxConnectionsEnv + "=" + conns, ListenEnv + "=" + listen}
		w, err := ParseWAGI(env)
		if err != nil {
			isInvalid(t, "ParseWAGI", err)
			return
		}
		if w == nil {
			if strings.TrimSpace(wagi) != "" {
				t.Fatalf("%s=%q: no configuration and no error", WAGIEnv, wagi)
			}
			return
		}
		if len(w.Listen) == 0 || w.Concurrency < 1 || w.Concurrency > MaxWAGIConcurrency || w.Timeout <= 0 || w.MaxBody < 0 ||
			w.WriteTimeout <= 0 || w.MaxConnections < 1 || w.MaxConnections > MaxWAGIConnections {
			t.Fatalf("out of bounds: %+v", w)
		}
		if pages := w.InstancePages(1024); pages < 1 || pages > 1024 {
			t.Fatalf("InstancePages(1024) = %d", pages)
		}
		// What the shim sends the runner survives its JSON.
		b, _ := json.Marshal(w)
		var back WAGI
		if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(&back, w) {
			t.Fatalf("JSON round trip: %+v -> %s -> %+v, %v", w, b, back, err)
		}
	})
}

// FuzzParseColdStart: WAZERO_COLD_START and the node's default.
func FuzzParseColdStart(f *testing.F) {
	for _, s := range []string{"", " ", "auto", "compile", "interpret", " Compile ", "INTERPRET", "jit", "auto,compile"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, parse := range []func() (ColdStart, error){
			func() (ColdStart, error) { return ParseColdStart([]string{ColdStartEnv + "=" + v}, ColdStartCompile) },
			func() (ColdStart, error) { return ParseColdStartDefault("NODE_VAR", v) },
		} {
			c, err := parse()
			if err != nil {
				isInvalid(t, "ParseColdStart", err)
				continue
			}
			switch c {
			case ColdStartAuto, ColdStartCompile, ColdStartInterpret:
			default:
				t.Fatalf("%q: policy %q", v, c)
			}
			c.Resolve(true)
			c.Resolve(false)
		}
	})
}

// fuzzRootfsDir is a rootfs with a module, a file that is not one, a directory, links inside and
// out, and a link loop, shared by every input (ResolveModule only reads it).
func fuzzRootfsDir(f *testing.F) string {
	dir := f.TempDir()
	{
		for _, d := range []string{"bin", "app/sub", "usr/local/bin"} {
			os.MkdirAll(filepath.Join(dir, d), 0o755)
		}
		os.WriteFile(filepath.Join(dir, "app", "m.wasm"), []byte("\x00asm\x01\x00\x00\x00"), 0o644)
		os.WriteFile(filepath.Join(dir, "bin", "tool"), []byte("\x00asm\x01\x00\x00\x00"), 0o755)
		os.WriteFile(filepath.Join(dir, "app", "text"), []byte("not wasm"), 0o644)
		os.WriteFile(filepath.Join(dir, "app", "comp.wasm"), []byte("\x00asm\x0d\x00\x01\x00"), 0o644)
		os.Symlink("/app/m.wasm", filepath.Join(dir, "usr", "local", "bin", "m"))
		os.Symlink("../../../../../etc/passwd", filepath.Join(dir, "app", "out"))
		os.Symlink("loop", filepath.Join(dir, "app", "loop"))
	}
	return dir
}

// FuzzResolveModule: process.args[0], cwd and PATH. A module found is a regular file inside
// the rootfs named by an absolute guest path; errors are NotFound or InvalidArgument.
func FuzzResolveModule(f *testing.F) {
	rootfs := fuzzRootfsDir(f)
	for _, s := range [][3]string{
		{"/app/m.wasm", "/", ""}, {"m.wasm", "/app", ""}, {"./m.wasm", "/app", ""}, {"m", "/", ""}, {"tool", "/", "/bin"},
		{"../app/m.wasm", "/bin", ""}, {"/app/text", "/", ""}, {"/app/comp.wasm", "/", ""}, {"/app/out", "/", ""},
		{"/app/loop", "/", ""}, {"/app", "/", ""}, {"", "/", ""}, {"nothere", "/", "/x:/y::"}, {"sub/../m.wasm", "app", ""},
		{"/../../app/m.wasm", "", ""}, {"m.wasm\x00", "/app", ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, args0, cwd, path string) {
		env := []string{"A=b"}
		if path != "" {
			env = append(env, "PATH="+path)
		}
		m, err := ResolveModule(rootfs, args0, cwd, env)
		if err != nil {
			if !errdefs.IsNotFound(err) && !errdefs.IsInvalidArgument(err) {
				t.Fatalf("ResolveModule(%q, %q, PATH=%q): error %v is neither NotFound nor InvalidArgument", args0, cwd, path, err)
			}
			return
		}
		if !strings.HasPrefix(m.GuestPath, "/") {
			t.Fatalf("guest path %q is not absolute", m.GuestPath)
		}
		if rel, err := filepath.Rel(rootfs, m.HostPath); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			t.Fatalf("ResolveModule(%q, %q, PATH=%q) = %q: outside the rootfs %s", args0, cwd, path, m.HostPath, rootfs)
		}
		if st, err := os.Stat(m.HostPath); err != nil || !st.Mode().IsRegular() {
			t.Fatalf("ResolveModule(%q) = %q: not a regular file (%v)", args0, m.HostPath, err)
		}
	})
}

// FuzzSpec: a container's config.json as the shim reads it (LoadSpec), then everything the
// runner's configuration takes from it: bind mounts, the security context, memory, namespaces,
// listeners, the per-request mode and the cold-start policy. Errors of BindMounts are NotFound
// or InvalidArgument, of ReadSecurity InvalidArgument.
func FuzzSpec(f *testing.F) {
	seeds := []string{
		`{}`,
		`{"process":{"args":["/m.wasm"],"env":["WAZERO_LISTEN=:8080"],"cwd":"/"}}`,
		`{"mounts":[{"destination":"/data","type":"bind","source":"/tmp","options":["rbind","ro"]},{"destination":"/proc","type":"proc","source":"proc"}]}`,
		`{"mounts":[{"destination":"data","type":"bind","source":"/nonexistent"},{"destination":"/x","options":["bind","rro","nosuid","nodev","noexec"],"source":"/"}]}`,
		`{"process":{"user":{"uid":1000,"gid":1000,"additionalGids":[5],"umask":18},"capabilities":{"bounding":["CAP_NET_BIND_SERVICE","CAP_NOPE"],"effective":["CAP_KILL"]},"noNewPrivileges":true,"rlimits":[{"type":"RLIMIT_NOFILE","hard":10,"soft":20},{"type":"RLIMIT_BOGUS","hard":1,"soft":1}],"oomScoreAdj":1001}}`,
		`{"linux":{"resources":{"memory":{"limit":134217728}},"namespaces":[{"type":"network","path":"/var/run/netns/x"},{"type":"pid"}],"seccomp":{"defaultAction":"SCMP_ACT_ERRNO"}}}`,
		`{"annotations":{"io.kubernetes.cri.container-type":"sandbox"},"linux":{"namespaces":[{"type":"network"},{"type":"ipc"},{"type":"uts"}],"resources":{"memory":{"limit":-1}}}}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var s specs.Spec
		if json.Unmarshal(data, &s) != nil {
			return
		}
		if ms, err := BindMounts(&s); err != nil {
			if !errdefs.IsNotFound(err) && !errdefs.IsInvalidArgument(err) {
				t.Fatalf("BindMounts: error %v is neither NotFound nor InvalidArgument", err)
			}
		} else {
			for _, m := range ms {
				if !filepath.IsAbs(m.Source) || !filepath.IsAbs(m.Destination) {
					t.Fatalf("BindMounts gave a relative mount %+v", m)
				}
			}
		}
		if sec, err := ReadSecurity(&s); err != nil {
			isInvalid(t, "ReadSecurity", err)
		} else {
			sec.FinalCaps()
		}
		limit := MemoryLimit(&s)
		if p := MemoryPages(limit); p > MaxPages {
			t.Fatalf("MemoryPages(%d) = %d, over %d", limit, p, MaxPages)
		}
		IsSandbox(&s)
		NetNSPath(&s)
		NewNetNS(&s)
		SandboxCloneflags(&s)
		if s.Process != nil {
			if _, err := Listen(s.Process.Env); err != nil {
				isInvalid(t, "Listen", err)
			}
			if _, err := ParseWAGI(s.Process.Env); err != nil {
				isInvalid(t, "ParseWAGI", err)
			}
			if _, err := ParseColdStart(s.Process.Env, ColdStartAuto); err != nil {
				isInvalid(t, "ParseColdStart", err)
			}
		}
	})
}

// FuzzModuleLayer: an image's manifest and config blob. The layer chosen is one of the
// manifest's; errors wrap ErrNoWasmLayer (NotFound) or are InvalidArgument.
func FuzzModuleLayer(f *testing.F) {
	layer := func(mt, title string) string {
		a := ""
		if title != "" {
			a = `,"annotations":{"org.opencontainers.image.title":"` + title + `"}`
		}
		return `{"mediaType":"` + mt + `","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":8` + a + `}`
	}
	manifest := func(configType string, layers ...string) []byte {
		return []byte(`{"schemaVersion":2,"mediaType":"` + ocispec.MediaTypeImageManifest + `","config":{"mediaType":"` + configType +
			`","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":2},"layers":[` + strings.Join(layers, ",") + `]}`)
	}
	f.Add(manifest(MediaTypeWasmConfig, layer(MediaTypeWasm, "")), []byte(`{"architecture":"wasm","os":"wasip1"}`), "/app.wasm")
	f.Add(manifest(MediaTypeWasmConfig, layer(MediaTypeWasmComponentLayer, "")), []byte(`{"architecture":"wasm","os":"wasip2"}`), "")
	f.Add(manifest(MediaTypeWasmConfig), []byte(`{"architecture":"wasm","os":"wasi"}`), "")
	f.Add(manifest(ocispec.MediaTypeImageConfig, layer(ocispec.MediaTypeImageLayerGzip, ""), layer(MediaTypeWasm, "a.wasm"), layer(MediaTypeWasmContentLayer, "b.wasm")),
		[]byte(`{"architecture":"wasm","os":"wasip1"}`), "/x/b.wasm")
	f.Add(manifest(mediaTypeDockerConfig, layer("application/vnd.wasm.unknown+wasm", "")), []byte(`{"architecture":"wasm"}`), "")
	f.Add(manifest(ocispec.MediaTypeImageConfig, layer(ocispec.MediaTypeImageLayer, "")), []byte(`{"architecture":"amd64","os":"linux"}`), "")
	f.Add(manifest("application/octet-stream"), []byte(`{`), "")
	f.Fuzz(func(t *testing.T, mb, config []byte, args0 string) {
		var m ocispec.Manifest
		if json.Unmarshal(mb, &m) != nil {
			return
		}
		got, err := ModuleLayer("img", m, config, args0)
		if err != nil {
			if IsNoWasmLayer(err) != errdefs.IsNotFound(err) || (!IsNoWasmLayer(err) && !errdefs.IsInvalidArgument(err)) {
				t.Fatalf("ModuleLayer: error %v is neither ErrNoWasmLayer nor InvalidArgument", err)
			}
			if !strings.Contains(err.Error(), "img") {
				t.Fatalf("error %q does not name the image", err)
			}
			return
		}
		found := false
		for _, l := range m.Layers {
			if reflect.DeepEqual(l, got.Layer) {
				found = true
			}
		}
		if !found || !isWasmLayer(got.Layer.MediaType) || got.Layer.MediaType == MediaTypeWasmComponentLayer {
			t.Fatalf("ModuleLayer chose %+v, not a core wasm layer of the manifest", got.Layer)
		}
		if got.Layout != LayoutArtifact && got.Layout != LayoutWasmLayers {
			t.Fatalf("layout %q", got.Layout)
		}
	})
}

// FuzzManifestCandidates: an image index. Candidates are manifests of the index, each once.
func FuzzManifestCandidates(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":1,"platform":{"architecture":"wasm","os":"wasip1"}},` +
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bb","size":1,"platform":{"architecture":"amd64","os":"linux"}},` +
		`{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"sha256:cc","size":1},` +
		`{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:dd","size":1}]}`))
	f.Add([]byte(`{"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","platform":{"architecture":"wasm","os":"wasi"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","platform":{"architecture":"wasm","os":"other"}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var idx ocispec.Index
		if json.Unmarshal(data, &idx) != nil {
			return
		}
		got := ManifestCandidates(idx)
		if len(got) > len(idx.Manifests) {
			t.Fatalf("%d candidates from %d manifests", len(got), len(idx.Manifests))
		}
		for _, d := range got {
			if !IsManifest(d.MediaType) {
				t.Fatalf("candidate of media type %q", d.MediaType)
			}
		}
	})
}

// FuzzCheckHeader: a module's first bytes. Only a version 1 core module passes; errors are
// InvalidArgument.
func FuzzCheckHeader(f *testing.F) {
	for _, s := range []string{"\x00asm\x01\x00\x00\x00", "\x00asm\x0d\x00\x01\x00", "\x00asm\x02\x00\x00\x00", "\x00asm", "text", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		err := CheckHeader("m", head)
		core := len(head) >= 8 && bytes.Equal(head[:8], []byte("\x00asm\x01\x00\x00\x00"))
		if (err == nil) != core {
			t.Fatalf("CheckHeader(%q) = %v", head, err)
		}
		if err != nil {
			isInvalid(t, "CheckHeader", err)
			if errors.Is(err, ErrNoWasmLayer) {
				t.Fatal("a header error is not ErrNoWasmLayer")
			}
		}
	})
}
