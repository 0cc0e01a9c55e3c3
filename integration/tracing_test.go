//go:build linux

package integration

import (
	"bytes"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// collector is an OTLP/HTTP trace receiver the test runs: it keeps every span it is sent.
type collector struct {
	url string
	mu  sync.Mutex
	// spans by name: service, trace ID and parent span ID (hex; "" for a root)
	spans []collectedSpan
}

type collectedSpan struct {
	service, name, traceID, spanID, parentID string
}

func startCollector(t *testing.T) *collector {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{url: "http://" + ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "not an OTLP trace export", http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		for _, rs := range req.ResourceSpans {
			service := ""
			for _, a := range rs.GetResource().GetAttributes() {
				if a.Key == "service.name" {
					service = a.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					c.spans = append(c.spans, collectedSpan{service: service, name: sp.Name, traceID: hex.EncodeToString(sp.TraceId),
						spanID: hex.EncodeToString(sp.SpanId), parentID: hex.EncodeToString(sp.ParentSpanId)})
				}
			}
		}
		c.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return c
}

func (c *collector) named(name string) []collectedSpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []collectedSpan
	for _, s := range c.spans {
		if s.name == name {
			out = append(out, s)
		}
	}
	return out
}

func (c *collector) byID(id string) (collectedSpan, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.spans {
		if s.spanID == id {
			return s, true
		}
	}
	return collectedSpan{}, false
}

// TestTracing: with the standard OTEL_* variables set for containerd (which its shims inherit),
// a `ctr run` exports the shim's spans of the task lifecycle (create with its compile or cache
// load, start, the guest's run, delete) to an OTLP collector the test runs; on 2.x daemons, which
// pass their trace context to shims, they are children of containerd's spans, in its traces.
func TestTracing(t *testing.T) {
	requireSuite(t)
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			col := startCollector(t)
			d := &daemon{version: v, dir: filepath.Join(suite.tmp, v+"-otel"), bin: binDir(v), ns: suite.ns,
				images: map[string]bool{}, cacheDir: filepath.Join(suite.tmp, v+"-otel", "cache"),
				extraEnv: []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + col.url, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"}}
			if err := d.start(); err != nil {
				t.Fatalf("containerd %s with OTEL_* set: %v", v, err)
			}
			defer d.stop()
			d.importImage(t, filepath.Join(imagesDir, "wasmtest.tar"))
			r := d.run(t, runOpts{args: testprog("hello")})
			if r.exit != 0 || !strings.Contains(r.stdout, "hello from wasm") {
				t.Fatalf("ctr run: %s", r)
			}
			want := []string{"wazero.create", "wazero.compile", "wazero.start", "wazero.run", "wazero.delete"}
			var missing []string
			for end := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
				missing = nil
				for _, name := range want {
					if len(col.named(name)) == 0 && !(name == "wazero.compile" && len(col.named("wazero.cache_load")) > 0) {
						missing = append(missing, name)
					}
				}
				if len(missing) == 0 || time.Now().After(end) {
					break
				}
			}
			if len(missing) > 0 {
				t.Fatalf("spans not exported: %v; got %v\n%s", missing, col.spans, tail(d.logPath(), 30))
			}
			create := col.named("wazero.create")[0]
			if create.service != "containerd-shim-wazero-v1" {
				t.Errorf("service.name of the shim's spans: %q, want containerd-shim-wazero-v1", create.service)
			}
			start, run := col.named("wazero.start")[0], col.named("wazero.run")[0]
			if run.parentID != start.spanID || run.traceID != start.traceID {
				t.Errorf("wazero.run (parent %s) is not under wazero.start (%s)", run.parentID, start.spanID)
			}
			// The shim's ttrpc server span of the call is wazero.create's parent; on 2.x its own
			// parent is containerd's span of the call, exported by containerd in the same trace.
			call, ok := col.byID(create.parentID)
			if !ok || !strings.HasSuffix(call.name, "Task/Create") || call.traceID != create.traceID {
				t.Errorf("wazero.create's parent %q (%v) is not the shim's span of the Create call", call.name, ok)
			} else if major, _ := majorMinor(v); major >= 2 {
				// containerd exports in batches, every 5 s.
				up, ok := col.byID(call.parentID)
				for end := time.Now().Add(20 * time.Second); !ok && time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
					up, ok = col.byID(call.parentID)
				}
				if !ok || up.service != "containerd" || up.traceID != create.traceID {
					t.Errorf("the Create call's span has parent %q (%q, service %q, found %v), want containerd's, in the same trace", call.parentID, up.name, up.service, ok)
				} else {
					t.Logf("wazero.create < %s < containerd's %q", call.name, up.name)
				}
			}
			var b bytes.Buffer
			for _, s := range col.spans {
				b.WriteString(s.service + " " + s.name + "; ")
			}
			t.Logf("collected: %s", b.String())
		})
	}
}
