package shim

import (
	"context"
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// With an exporter, the task lifecycle gives spans create, start, run (the guest's run, under
// start) and delete, each a child of the trace context of its call (containerd's).
func TestLifecycleSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })

	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}, TraceFlags: trace.FlagsSampled, Remote: true})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), parent)
	s, rt, _, _ := newTestService(t)
	if _, err := s.Create(ctx, &taskAPI.CreateTaskRequest{ID: "c", Bundle: "/b/c"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, &taskAPI.StartRequest{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	rt.instances["c"].exit(0)
	if _, err := s.Delete(ctx, &taskAPI.DeleteRequest{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, sp := range rec.Ended() {
		byName[sp.Name()] = sp
		if sp.SpanContext().TraceID() != parent.TraceID() {
			t.Errorf("span %s in trace %s, want containerd's %s", sp.Name(), sp.SpanContext().TraceID(), parent.TraceID())
		}
	}
	for _, name := range []string{"wazero.create", "wazero.start", "wazero.delete"} {
		if sp, ok := byName[name]; !ok || sp.Parent().SpanID() != parent.SpanID() {
			t.Errorf("span %s: %v, want it under containerd's span", name, ok)
		}
	}
	if run, ok := byName["wazero.run"]; !ok || run.Parent().SpanID() != byName["wazero.start"].SpanContext().SpanID() {
		t.Errorf("span wazero.run missing or not under wazero.start")
	}
}

// BenchmarkSpanOff is the cost of a lifecycle span when tracing is off (no OTLP endpoint: the
// global provider is the no-op one), per call.
func BenchmarkSpanOff(b *testing.B) {
	otel.SetTracerProvider(noop.NewTracerProvider())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, span := startSpan(ctx, "wazero.start")
		endSpan(span, nil)
	}
}
