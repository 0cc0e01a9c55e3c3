package shim

import (
	"context"
	"os"
	"time"

	// containerd's shim tracing plugins: "otlp" and "tracing" export spans over OTLP when the
	// standard OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set in the shim's environment (containerd's,
	// which a shim inherits) and skip themselves otherwise; "otelttrpc" takes the trace context
	// containerd sends with each task call as the parent of the call's spans.
	_ "github.com/containerd/containerd/v2/pkg/tracing/plugin"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// tracerName names the spans of the task lifecycle this shim exports (see docs/tracing.md), and
// is the service.name of the exported resource.
const tracerName = "containerd-shim-wazero-v1"

// The exporter's service.name comes from OTEL_SERVICE_NAME, which containerd sets to "containerd"
// in its own environment when it was unset, and shims inherit: the shim's spans are named as the
// shim's unless the user chose another name.
func init() {
	if v := os.Getenv("OTEL_SERVICE_NAME"); v == "" || v == "containerd" {
		os.Setenv("OTEL_SERVICE_NAME", tracerName)
	}
}

// startSpan starts a span of the task lifecycle as a child of ctx's. With tracing off (no OTLP
// endpoint) the global tracer provider is OpenTelemetry's no-op one: nothing is recorded or
// allocated beyond the call (BenchmarkSpanOff).
func startSpan(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return otel.Tracer(tracerName).Start(ctx, name, trace.WithAttributes(attrs...))
}

// endSpan ends span, recording err as its status.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// recordPhase records a phase that ran in the runner, from began for d, as a child span of
// ctx's: the compile or the cache load of a module, which the runner reports once ready.
func recordPhase(ctx context.Context, name string, began time.Time, d time.Duration, attrs ...attribute.KeyValue) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return
	}
	_, span := otel.Tracer(tracerName).Start(ctx, name, trace.WithTimestamp(began), trace.WithAttributes(attrs...))
	span.End(trace.WithTimestamp(began.Add(d)))
}
