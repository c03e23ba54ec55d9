package otel_test

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
	ckotel "github.com/cachekit/cachekit/plugin/otel"
)

// Every operation becomes a span, a child of the span in its context.
func Example() {
	ctx := context.Background()
	spans := tracetest.NewSpanRecorder() // in production: an OTLP exporter
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(ctx)

	hook, err := ckotel.New(&ckotel.Options{TracerProvider: tp, System: "memory"})
	if err != nil {
		panic(err)
	}
	c := cachekit.WithHooks(memory.New(nil), hook)
	defer c.Close()

	ctx, request := tp.Tracer("app").Start(ctx, "GET /users/42")
	_, _ = c.Get(ctx, "user:42")
	_ = c.Set(ctx, "user:42", []byte(`{"name":"Ada"}`), 0)
	request.End()

	for _, s := range spans.Ended() {
		var attrs []string
		for _, kv := range s.Attributes() {
			attrs = append(attrs, string(kv.Key)+"="+kv.Value.Emit())
		}
		fmt.Println(s.Name(), attrs)
	}
	// Output:
	// cachekit Get [db.operation=Get db.system=memory cachekit.outcome=miss]
	// cachekit Set [db.operation=Set db.system=memory cachekit.outcome=ok]
	// GET /users/42 []
}

// The metrics reach Prometheus through the OpenTelemetry Prometheus
// exporter. A real program serves the registry with
// promhttp.HandlerFor(registry, promhttp.HandlerOpts{}) on /metrics; this
// example gathers it in-process instead.
func Example_prometheus() {
	ctx := context.Background()
	registry := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry), otelprom.WithoutScopeInfo())
	if err != nil {
		panic(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	defer mp.Shutdown(ctx)

	hook, err := ckotel.New(&ckotel.Options{MeterProvider: mp, System: "memory"})
	if err != nil {
		panic(err)
	}
	c := cachekit.WithHooks(memory.New(nil), hook)
	defer c.Close()

	_ = c.Set(ctx, "user:1", []byte("ada"), 0)
	_, _ = c.Get(ctx, "user:1")
	_, _ = c.Get(ctx, "user:2")
	_, _ = c.Get(ctx, "user:3")
	_, _ = c.Increment(ctx, "user:1", 1) // not an integer

	families, err := registry.Gather()
	if err != nil {
		panic(err)
	}
	for _, line := range promLines(families, "cachekit_") {
		fmt.Println(line)
	}
	// Output:
	// cachekit_errors_total{db_operation="Increment",db_system="memory",error_type="not_integer"} 1
	// cachekit_hits_total{db_operation="Get",db_system="memory"} 1
	// cachekit_misses_total{db_operation="Get",db_system="memory"} 2
	// cachekit_operation_duration_seconds_count{db_operation="Get",db_system="memory"} 3
	// cachekit_operation_duration_seconds_count{db_operation="Increment",db_system="memory"} 1
	// cachekit_operation_duration_seconds_count{db_operation="Set",db_system="memory"} 1
	// cachekit_operations_total{db_operation="Get",db_system="memory"} 3
	// cachekit_operations_total{db_operation="Increment",db_system="memory"} 1
	// cachekit_operations_total{db_operation="Set",db_system="memory"} 1
}

// promLines renders the counters and histogram counts of the families whose
// names start with prefix, as the text exposition format would, sorted.
func promLines(families []*dto.MetricFamily, prefix string) []string {
	var lines []string
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), prefix) {
			continue
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			ls := "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.GetCounter() != nil:
				lines = append(lines, fmt.Sprintf("%s%s %v", f.GetName(), ls, m.GetCounter().GetValue()))
			case m.GetHistogram() != nil:
				lines = append(lines, fmt.Sprintf("%s_count%s %v", f.GetName(), ls, m.GetHistogram().GetSampleCount()))
			}
		}
	}
	sort.Strings(lines)
	return lines
}
