// Package otel is a cachekit hook that reports every cache operation to
// OpenTelemetry: a span per operation, and metrics (counters of operations,
// hits, misses, errors and events, and a latency histogram). It is a module
// of its own, github.com/cachekit/cachekit/plugin/otel, so that
// OpenTelemetry's dependencies stay out of programs that don't use it.
//
//	import ckotel "github.com/cachekit/cachekit/plugin/otel"
//
//	hook, err := ckotel.New(&ckotel.Options{System: "redis"})
//	...
//	c := cachekit.WithHooks(backend, hook)
//
// # Spans
//
// Each operation is a span of kind client named "cachekit " and the method
// ("cachekit Get", "cachekit SetMany", ...), a child of the span in the
// operation's context, with the attributes:
//
//	db.system          Options.System, e.g. "redis", "memcached", "memory"
//	db.operation       the Cache method, e.g. "Get"
//	cachekit.outcome   ok, hit, miss, exists or error (see cachekit.Outcome)
//	cachekit.keys      the number of keys, for GetMany, SetMany and Delete
//	cachekit.hits      GetMany: keys found
//	cachekit.misses    GetMany: keys not found
//	cachekit.key       the key, only with Options.KeyOnSpans
//	error.type         for failures, as on the metrics below
//
// A failed operation also records the error on its span and sets the span's
// status to Error; a miss, and Add finding its key present, are not
// failures. Unless KeyOnSpans is set, the error is recorded without the key
// that a *cachekit.Error names. Events that the layers above the cache report (a load, a
// stampede join, ...) are added to the span in their context as span events
// named "cachekit." and the kind, e.g. "cachekit.load".
//
// # Metrics
//
//	cachekit.operations          counter    operations, by db.system and db.operation
//	cachekit.hits                counter    keys found (Get, GetMany, Exists), same attributes
//	cachekit.misses              counter    keys not found, same attributes
//	cachekit.errors              counter    failed operations, also by error.type
//	cachekit.operation.duration  histogram  seconds, by db.system and db.operation
//	cachekit.events              counter    events, by db.system and cachekit.event
//
// error.type is one of the values [ErrorType] returns, such as
// deadline_exceeded or invalid_key. The cache
// key is never a metric attribute, not even with KeyOnSpans: every distinct
// key would be a time series of its own. Every attribute value above comes
// from a small fixed set, plus Options.Attributes, which must be too.
//
// Through the OpenTelemetry Prometheus exporter the metrics become
// cachekit_operations_total, cachekit_hits_total, cachekit_misses_total,
// cachekit_errors_total, cachekit_operation_duration_seconds and
// cachekit_events_total, with labels db_system, db_operation, error_type
// and cachekit_event; see the package's Prometheus example.
package otel

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/cachekit/cachekit"
)

// ScopeName is the instrumentation scope of the tracer and the meter.
const ScopeName = "github.com/cachekit/cachekit/plugin/otel"

// Attribute keys this package sets, other than db.system and db.operation.
const (
	AttrOutcome   = attribute.Key("cachekit.outcome")
	AttrKeys      = attribute.Key("cachekit.keys")
	AttrHits      = attribute.Key("cachekit.hits")
	AttrMisses    = attribute.Key("cachekit.misses")
	AttrKey       = attribute.Key("cachekit.key")
	AttrEvent     = attribute.Key("cachekit.event")
	AttrErrorType = attribute.Key("error.type")
	AttrSystem    = attribute.Key("db.system")
	AttrOperation = attribute.Key("db.operation")
)

// DurationBuckets are the bounds, in seconds, of the latency histogram's
// buckets: from a microsecond (an in-process backend) to ten seconds.
var DurationBuckets = []float64{
	0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005,
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
	0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// Options configures a [Hook]. A nil *Options means the defaults of every
// field.
type Options struct {
	// TracerProvider makes the tracer for the spans. A
	// go.opentelemetry.io/otel/trace/noop.TracerProvider turns spans off
	// at no cost per operation (any other provider, even one that samples
	// nothing, costs a context and a span per operation). Default (nil):
	// otel.GetTracerProvider(), the global one.
	TracerProvider trace.TracerProvider

	// MeterProvider makes the meter for the metrics. Default (nil):
	// otel.GetMeterProvider(), the global one.
	MeterProvider metric.MeterProvider

	// System is the db.system attribute of every span and metric: the
	// backend, such as "redis", "memcached" or "memory". Default (""):
	// "cachekit".
	System string

	// Attributes are added to every span and every metric point, to tell
	// caches apart (attribute.String("cache.name", "sessions"), say).
	// They must take few distinct values: each combination is a time
	// series. Default: none.
	Attributes []attribute.KeyValue

	// KeyOnSpans puts the cache key on each span as cachekit.key (cut to
	// 256 bytes). Keys may be personal data, so it is off by default. Keys
	// never become metric attributes. Default: false.
	KeyOnSpans bool
}

// maxKeyOnSpan bounds the cachekit.key span attribute.
const maxKeyOnSpan = 256

// Hook is a [cachekit.Hook] and [cachekit.EventHook] that traces and
// measures every operation. Make one with [New]; it is safe for concurrent
// use, and one Hook may serve several caches.
type Hook struct {
	tracer     trace.Tracer // nil: no spans
	keyOnSpans bool

	ops      metric.Int64Counter
	hits     metric.Int64Counter
	misses   metric.Int64Counter
	errs     metric.Int64Counter
	duration metric.Float64Histogram
	events   metric.Int64Counter

	base []attribute.KeyValue // db.system and Options.Attributes

	// Per operation kind, prepared once so that the hot path allocates
	// nothing for metrics.
	spanName  [cachekit.NumOpKinds]string
	spanStart [cachekit.NumOpKinds][]trace.SpanStartOption
	addOpts   [cachekit.NumOpKinds][]metric.AddOption
	recOpts   [cachekit.NumOpKinds][]metric.RecordOption
	opAttrs   [cachekit.NumOpKinds][]attribute.KeyValue
}

var (
	_ cachekit.Hook      = (*Hook)(nil)
	_ cachekit.EventHook = (*Hook)(nil)
)

// New returns a Hook configured by opts, which may be nil. It fails only if
// the meter provider cannot make an instrument.
func New(opts *Options) (*Hook, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.TracerProvider == nil {
		o.TracerProvider = otel.GetTracerProvider()
	}
	if o.MeterProvider == nil {
		o.MeterProvider = otel.GetMeterProvider()
	}
	if o.System == "" {
		o.System = "cachekit"
	}
	h := &Hook{
		keyOnSpans: o.KeyOnSpans,
		base:       append([]attribute.KeyValue{AttrSystem.String(o.System)}, o.Attributes...),
	}
	if _, off := o.TracerProvider.(noop.TracerProvider); !off {
		h.tracer = o.TracerProvider.Tracer(ScopeName)
	}
	m := o.MeterProvider.Meter(ScopeName)
	var err, e error
	h.ops, e = m.Int64Counter("cachekit.operations", metric.WithUnit("{operation}"),
		metric.WithDescription("Cache operations, by method."))
	err = errors.Join(err, e)
	h.hits, e = m.Int64Counter("cachekit.hits", metric.WithUnit("{key}"),
		metric.WithDescription("Keys found by Get, GetMany and Exists."))
	err = errors.Join(err, e)
	h.misses, e = m.Int64Counter("cachekit.misses", metric.WithUnit("{key}"),
		metric.WithDescription("Keys not found by Get, GetMany and Exists."))
	err = errors.Join(err, e)
	h.errs, e = m.Int64Counter("cachekit.errors", metric.WithUnit("{operation}"),
		metric.WithDescription("Cache operations that failed, by method and error type."))
	err = errors.Join(err, e)
	h.duration, e = m.Float64Histogram("cachekit.operation.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of cache operations."),
		metric.WithExplicitBucketBoundaries(DurationBuckets...))
	err = errors.Join(err, e)
	h.events, e = m.Int64Counter("cachekit.events", metric.WithUnit("{event}"),
		metric.WithDescription("Events reported by the layers above the cache: loads, load errors, stampede joins, ..."))
	err = errors.Join(err, e)
	if err != nil {
		return nil, err
	}

	for k := range cachekit.NumOpKinds {
		kind := cachekit.OpKind(k)
		attrs := append(append([]attribute.KeyValue(nil), h.base...), AttrOperation.String(kind.String()))
		set := attribute.NewSet(attrs...)
		h.opAttrs[k] = attrs
		h.spanName[k] = "cachekit " + kind.String()
		h.spanStart[k] = []trace.SpanStartOption{
			trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attrs...),
		}
		h.addOpts[k] = []metric.AddOption{metric.WithAttributeSet(set)}
		h.recOpts[k] = []metric.RecordOption{metric.WithAttributeSet(set)}
	}
	return h, nil
}

// ProcessOp runs op in a span of its own and records its metrics, and
// returns its error unchanged.
func (h *Hook) ProcessOp(ctx context.Context, op *cachekit.Op) error {
	k := op.Kind()
	var span trace.Span
	if h.tracer != nil {
		ctx, span = h.tracer.Start(ctx, h.spanName[k], h.spanStart[k]...)
	}
	start := time.Now()
	err := op.Next(ctx)
	d := time.Since(start)

	outcome := op.Outcome()
	h.ops.Add(ctx, 1, h.addOpts[k]...)
	h.duration.Record(ctx, d.Seconds(), h.recOpts[k]...)
	hits, misses := op.Hits(), op.Misses()
	if hits > 0 {
		h.hits.Add(ctx, int64(hits), h.addOpts[k]...)
	}
	if misses > 0 {
		h.misses.Add(ctx, int64(misses), h.addOpts[k]...)
	}
	var errType string
	if outcome == cachekit.OutcomeError {
		errType = ErrorType(err)
		attrs := append(append(make([]attribute.KeyValue, 0, len(h.opAttrs[k])+1), h.opAttrs[k]...), AttrErrorType.String(errType))
		h.errs.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(attrs...)))
	}

	if span == nil {
		return err
	}
	if span.IsRecording() {
		span.SetAttributes(AttrOutcome.String(outcome.String()))
		switch k {
		case cachekit.OpGetMany:
			span.SetAttributes(AttrKeys.Int(op.NumKeys()), AttrHits.Int(hits), AttrMisses.Int(misses))
		case cachekit.OpSetMany, cachekit.OpDelete:
			span.SetAttributes(AttrKeys.Int(op.NumKeys()))
		}
		if h.keyOnSpans {
			switch {
			case op.Key != "":
				span.SetAttributes(AttrKey.String(cut(op.Key)))
			case len(op.Keys) == 1:
				span.SetAttributes(AttrKey.String(cut(op.Keys[0])))
			}
		}
		if errType != "" {
			span.SetAttributes(AttrErrorType.String(errType))
			serr := h.spanError(err)
			span.RecordError(serr)
			span.SetStatus(codes.Error, serr.Error())
		}
	}
	span.End()
	return err
}

// spanError returns err as spans show it: without the key that a
// *cachekit.Error names, unless keys go on spans.
func (h *Hook) spanError(err error) error {
	var ce *cachekit.Error
	if h.keyOnSpans || !errors.As(err, &ce) || ce.Key == "" {
		return err
	}
	return &cachekit.Error{Op: ce.Op, Err: ce.Err}
}

func cut(key string) string {
	if len(key) > maxKeyOnSpan {
		return key[:maxKeyOnSpan]
	}
	return key
}

// OnEvent counts ev and adds it to the span in ctx, if one is recording.
func (h *Hook) OnEvent(ctx context.Context, ev cachekit.Event) {
	attrs := append(append(make([]attribute.KeyValue, 0, len(h.base)+1), h.base...), AttrEvent.String(string(ev.Kind)))
	h.events.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(attrs...)))
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	eattrs := []attribute.KeyValue{}
	if ev.Duration != 0 {
		eattrs = append(eattrs, attribute.Float64("cachekit.duration", ev.Duration.Seconds()))
	}
	if h.keyOnSpans && ev.Key != "" {
		eattrs = append(eattrs, AttrKey.String(cut(ev.Key)))
	}
	if ev.Err != nil {
		eattrs = append(eattrs, AttrErrorType.String(ErrorType(ev.Err)))
	}
	span.AddEvent("cachekit."+string(ev.Kind), trace.WithAttributes(eattrs...))
}

// ErrorType classifies err for the error.type attribute, by the first of
// these it matches with errors.Is: canceled (context.Canceled),
// deadline_exceeded (context.DeadlineExceeded), closed, invalid_key,
// invalid_ttl, too_large, not_integer, decode, encode, not_found and exists
// (the cachekit sentinels); anything else is other.
func ErrorType(err error) string {
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline_exceeded"
	case errors.Is(err, cachekit.ErrClosed):
		return "closed"
	case errors.Is(err, cachekit.ErrInvalidKey):
		return "invalid_key"
	case errors.Is(err, cachekit.ErrInvalidTTL):
		return "invalid_ttl"
	case errors.Is(err, cachekit.ErrTooLarge):
		return "too_large"
	case errors.Is(err, cachekit.ErrNotInteger):
		return "not_integer"
	case errors.Is(err, cachekit.ErrDecode):
		return "decode"
	case errors.Is(err, cachekit.ErrEncode):
		return "encode"
	case errors.Is(err, cachekit.ErrNotFound):
		return "not_found"
	case errors.Is(err, cachekit.ErrExists):
		return "exists"
	}
	return "other"
}
