package otel_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/goleak"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
	"github.com/cachekit/cachekit/cachetest"
	ckotel "github.com/cachekit/cachekit/plugin/otel"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var bg = context.Background()

// telemetry is an in-memory trace and metric pipeline.
type telemetry struct {
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	tp     *sdktrace.TracerProvider
	mp     *sdkmetric.MeterProvider
}

func newTelemetry(t *testing.T) *telemetry {
	t.Helper()
	tel := &telemetry{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	tel.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tel.spans))
	tel.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	t.Cleanup(func() {
		_ = tel.tp.Shutdown(bg)
		_ = tel.mp.Shutdown(bg)
	})
	return tel
}

func (tel *telemetry) hook(t *testing.T, o ckotel.Options) *ckotel.Hook {
	t.Helper()
	o.TracerProvider, o.MeterProvider = tel.tp, tel.mp
	h, err := ckotel.New(&o)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// point is one data point: a metric name and its attributes, rendered.
type point struct {
	name  string
	attrs string
}

// collect returns the sum of every counter point and the count of every
// histogram point, by metric name and attributes.
func (tel *telemetry) collect(t *testing.T) (map[point]int64, []attribute.Set) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(bg, &rm); err != nil {
		t.Fatal(err)
	}
	out := map[point]int64{}
	var sets []attribute.Set
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != ckotel.ScopeName {
			t.Errorf("scope %q", sm.Scope.Name)
		}
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if !d.IsMonotonic {
					t.Errorf("%s is not monotonic", m.Name)
				}
				for _, dp := range d.DataPoints {
					out[point{m.Name, render(dp.Attributes)}] += dp.Value
					sets = append(sets, dp.Attributes)
				}
			case metricdata.Histogram[float64]:
				if m.Unit != "s" {
					t.Errorf("%s unit %q", m.Name, m.Unit)
				}
				for _, dp := range d.DataPoints {
					out[point{m.Name, render(dp.Attributes)}] += int64(dp.Count)
					sets = append(sets, dp.Attributes)
				}
			default:
				t.Errorf("%s: unexpected data %T", m.Name, m.Data)
			}
		}
	}
	return out, sets
}

func render(s attribute.Set) string {
	var parts []string
	for _, kv := range s.ToSlice() {
		parts = append(parts, string(kv.Key)+"="+kv.Value.Emit())
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func TestConformance(t *testing.T) {
	tel := newTelemetry(t)
	h := tel.hook(t, ckotel.Options{System: "memory", KeyOnSpans: true})
	const maxValue = 1 << 20
	root := memory.New(&memory.Options{MaxBytes: 64 << 20, MaxValueSize: maxValue})
	t.Cleanup(func() { root.Close() })
	cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
		return cachekit.WithHooks(root.WithNamespace(ns), h)
	}, &cachetest.Options{MaxValueSize: maxValue})
}

// scriptKeys are the keys script uses: none may appear in a metric.
var scriptKeys = []string{"a", "b", "c", "d", "e", "f", "g", "s", "n", "z", "k"}

// script runs the same sequence as the stats plugin's and the integration
// tests, and returns the metric points it must produce for system.
func script(t *testing.T, c cachekit.Cache, system string) map[point]int64 {
	t.Helper()
	ctx := bg
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Set(ctx, "a", []byte("1"), 0))
	must(c.Set(ctx, "b", []byte("two"), time.Minute))
	must(c.Set(ctx, "s", []byte("text"), 0))
	_, _ = c.Get(ctx, "a")
	_, _ = c.Get(ctx, "b")
	_, _ = c.Get(ctx, "c")
	_, _ = c.GetMany(ctx, []string{"a", "b", "c", "d"})
	must(c.SetMany(ctx, map[string][]byte{"e": []byte("5"), "f": []byte("6")}, time.Hour))
	_ = c.Add(ctx, "a", []byte("x"), 0)
	must(c.Add(ctx, "g", []byte("7"), 0))
	_, _ = c.Exists(ctx, "a")
	_, _ = c.Exists(ctx, "z")
	_, _ = c.Increment(ctx, "n", 1)
	_, _ = c.Increment(ctx, "n", 2)
	_, _ = c.Increment(ctx, "s", 1)
	_, _ = c.Expire(ctx, "a", 0)
	_, _ = c.Expire(ctx, "z", 0)
	_, _ = c.Delete(ctx, "a", "z")
	_, _ = c.Get(ctx, "")
	_ = c.Set(ctx, "k", nil, -1)
	must(c.Clear(ctx))
	_, _ = c.Get(ctx, "b")
	_, _ = c.GetMany(ctx, []string{})

	sys := "db.system=" + system
	op := func(name string) string { return "db.operation=" + name + "," + sys }
	want := map[point]int64{}
	for name, n := range map[string]int64{
		"Get": 5, "GetMany": 2, "Set": 4, "SetMany": 1, "Add": 2, "Delete": 1,
		"Exists": 2, "Increment": 3, "Expire": 2, "Clear": 1,
	} {
		want[point{"cachekit.operations", op(name)}] = n
		want[point{"cachekit.operation.duration", op(name)}] = n
	}
	want[point{"cachekit.hits", op("Get")}] = 2
	want[point{"cachekit.hits", op("GetMany")}] = 2
	want[point{"cachekit.hits", op("Exists")}] = 1
	want[point{"cachekit.misses", op("Get")}] = 2
	want[point{"cachekit.misses", op("GetMany")}] = 2
	want[point{"cachekit.misses", op("Exists")}] = 1
	want[point{"cachekit.errors", op("Get") + ",error.type=invalid_key"}] = 1
	want[point{"cachekit.errors", op("Set") + ",error.type=invalid_ttl"}] = 1
	want[point{"cachekit.errors", op("Increment") + ",error.type=not_integer"}] = 1
	return want
}

func fixOrder(want map[point]int64) map[point]int64 {
	// render sorts attributes; build the wanted points the same way.
	out := map[point]int64{}
	for p, v := range want {
		parts := strings.Split(p.attrs, ",")
		sort.Strings(parts)
		out[point{p.name, strings.Join(parts, ",")}] = v
	}
	return out
}

func diff(t *testing.T, got, want map[point]int64) {
	t.Helper()
	want = fixOrder(want)
	var keys []point
	for p := range got {
		keys = append(keys, p)
	}
	for p := range want {
		if _, ok := got[p]; !ok {
			keys = append(keys, p)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].name+keys[i].attrs < keys[j].name+keys[j].attrs
	})
	for _, p := range keys {
		if got[p] != want[p] {
			t.Errorf("%s{%s} = %d, want %d", p.name, p.attrs, got[p], want[p])
		}
	}
}

// checkNoKeys fails if any metric attribute is a cache key, or names one.
func checkNoKeys(t *testing.T, sets []attribute.Set, keys []string) {
	t.Helper()
	for _, s := range sets {
		for _, kv := range s.ToSlice() {
			if kv.Key == ckotel.AttrKey || strings.Contains(string(kv.Key), "key") {
				t.Errorf("metric attribute %s=%s names a key", kv.Key, kv.Value.Emit())
			}
			if slices.Contains(keys, kv.Value.Emit()) {
				t.Errorf("metric attribute %s=%s is a cache key", kv.Key, kv.Value.Emit())
			}
		}
	}
}

func TestScriptedSequence(t *testing.T) {
	tel := newTelemetry(t)
	h := tel.hook(t, ckotel.Options{System: "memory", KeyOnSpans: true})
	m := memory.New(nil)
	defer m.Close()
	want := script(t, cachekit.WithHooks(m, h), "memory")
	got, sets := tel.collect(t)
	diff(t, got, want)
	checkNoKeys(t, sets, scriptKeys)

	spans := tel.spans.Ended()
	if len(spans) != 23 {
		t.Fatalf("%d spans, want 23", len(spans))
	}
	first := spans[0]
	if first.Name() != "cachekit Set" || first.SpanKind().String() != "client" {
		t.Errorf("first span %q kind %v", first.Name(), first.SpanKind())
	}
	attrs := spanAttrs(first)
	for k, v := range map[string]string{"db.system": "memory", "db.operation": "Set", "cachekit.outcome": "ok", "cachekit.key": "a"} {
		if attrs[k] != v {
			t.Errorf("first span: %s = %q, want %q (%v)", k, attrs[k], v, attrs)
		}
	}
	var errSpans, missSpans int
	for _, s := range spans {
		a := spanAttrs(s)
		switch a["cachekit.outcome"] {
		case "error":
			errSpans++
			if s.Status().Code != codes.Error || a["error.type"] == "" || len(s.Events()) == 0 {
				t.Errorf("failed span %q: status %v, attrs %v, events %d", s.Name(), s.Status(), a, len(s.Events()))
			}
		case "miss":
			missSpans++
			if s.Status().Code == codes.Error {
				t.Errorf("a miss is not an error: %q %v", s.Name(), s.Status())
			}
		}
		if s.Name() == "cachekit GetMany" && a["cachekit.keys"] == "4" && (a["cachekit.hits"] != "2" || a["cachekit.misses"] != "2") {
			t.Errorf("GetMany span %v", a)
		}
	}
	if errSpans != 3 || missSpans != 3 {
		t.Errorf("%d failed spans and %d misses, want 3 and 3", errSpans, missSpans)
	}
}

func spanAttrs(s sdktrace.ReadOnlySpan) map[string]string {
	out := map[string]string{}
	for _, kv := range s.Attributes() {
		out[string(kv.Key)] = kv.Value.Emit()
	}
	return out
}

// TestKeysStayOffSpans checks the default: no key on spans, not even in
// the error a span records.
func TestKeysStayOffSpans(t *testing.T) {
	tel := newTelemetry(t)
	h := tel.hook(t, ckotel.Options{})
	m := memory.New(nil)
	defer m.Close()
	c := cachekit.WithHooks(m, h)
	_ = c.Set(bg, "private-key", []byte("text"), 0)
	_, _ = c.Increment(bg, "private-key", 1)
	for _, s := range tel.spans.Ended() {
		if a := spanAttrs(s); a["db.system"] != "cachekit" {
			t.Errorf("default db.system %q", a["db.system"])
		}
		text := fmt.Sprint(s.Attributes(), s.Status(), s.Events())
		if strings.Contains(text, "private-key") {
			t.Errorf("span %q shows the key: %s", s.Name(), text)
		}
	}
}

func TestParentAndEvents(t *testing.T) {
	tel := newTelemetry(t)
	h := tel.hook(t, ckotel.Options{System: "memory", Attributes: []attribute.KeyValue{attribute.String("cache.name", "users")}})
	m := memory.New(nil)
	defer m.Close()
	typed := cachekit.NewTyped[string](cachekit.WithHooks(m, h), nil)

	ctx, parent := tel.tp.Tracer("test").Start(bg, "request")
	_, _ = typed.GetOrLoad(ctx, "u1", func(context.Context) (string, error) { return "ada", nil })
	typed.Wait() // GetOrLoad writes in the background: u1's Set span ends here
	_, _ = typed.GetOrLoad(ctx, "u2", func(context.Context) (string, error) { return "", errors.New("down") })
	parent.End()

	var parentSpan sdktrace.ReadOnlySpan
	for _, s := range tel.spans.Ended() {
		if s.Name() == "request" {
			parentSpan = s
		}
	}
	var children []string
	for _, s := range tel.spans.Ended() {
		if s.Parent().SpanID() == parentSpan.SpanContext().SpanID() {
			children = append(children, s.Name())
			if a := spanAttrs(s); a["cache.name"] != "users" {
				t.Errorf("span %q lacks the configured attribute: %v", s.Name(), a)
			}
		}
	}
	if want := []string{"cachekit Get", "cachekit Set", "cachekit Get"}; !slices.Equal(children, want) {
		t.Errorf("children of the request span: %v, want %v", children, want)
	}
	var events []string
	for _, e := range parentSpan.Events() {
		events = append(events, e.Name)
	}
	if want := []string{"cachekit.load", "cachekit.load_error"}; !slices.Equal(events, want) {
		t.Errorf("events on the request span: %v, want %v", events, want)
	}

	got, _ := tel.collect(t)
	for _, kind := range []string{"load", "load_error"} {
		p := point{"cachekit.events", "cache.name=users,cachekit.event=" + kind + ",db.system=memory"}
		if got[p] != 1 {
			t.Errorf("%v = %d, want 1 (all: %v)", p, got[p], got)
		}
	}
	if n := got[point{"cachekit.operations", "cache.name=users,db.operation=Get,db.system=memory"}]; n != 2 {
		t.Errorf("Get operations %d, want 2", n)
	}
}

func TestNoAllocationsForMetrics(t *testing.T) {
	// With the noop tracer provider there are no spans, and the metrics of
	// a hit do not allocate.
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(bg)
	h, err := ckotel.New(&ckotel.Options{MeterProvider: mp, TracerProvider: noop.NewTracerProvider()})
	if err != nil {
		t.Fatal(err)
	}
	m := memory.New(nil)
	defer m.Close()
	_ = m.Set(bg, "k", []byte("v"), 0)
	c := cachekit.WithHooks(m, h)
	_, _ = c.Get(bg, "k") // first use creates the series
	bare := testing.AllocsPerRun(200, func() { _, _ = m.Get(bg, "k") })
	hooked := testing.AllocsPerRun(200, func() { _, _ = c.Get(bg, "k") })
	if hooked > bare {
		t.Errorf("Get allocates %v times with otel metrics, %v bare", hooked, bare)
	}
	got, _ := (&telemetry{reader: reader}).collect(t)
	if n := got[point{"cachekit.operations", "db.operation=Get,db.system=cachekit"}]; n != 202 {
		t.Errorf("%d Gets counted, want 202 (1 + AllocsPerRun's 1 + 200)", n)
	}
}
