package cachekit

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/cachekit/cachekit/internal/flight"
	"github.com/cachekit/cachekit/serializer"
)

// TypedOptions configures a [Typed] cache. A nil *TypedOptions means the
// defaults of every field.
type TypedOptions struct {
	// Serializer encodes and decodes values. Default: serializer.JSON{}.
	Serializer serializer.Serializer

	// TTL is the expiry that Set, SetMany, Add and GetOrLoad use when the
	// call has no WithTTL option. Default: 0, no expiry. A negative TTL makes
	// those calls fail with ErrInvalidTTL.
	TTL time.Duration

	// OnError, when set, receives the cache errors that GetOrLoad absorbs
	// to keep serving: a failed read before a load, and a failed write of
	// the loaded value. Default: nil, such errors are dropped. It must be
	// safe for concurrent use.
	OnError func(ctx context.Context, err error)
}

// Typed is a cache of values of type V over a byte-level [Cache]: it
// serializes values, applies a default TTL, and loads missing values through
// GetOrLoad with one load per key at a time.
//
// A stored zero value or nil is a hit, not a miss: only ErrNotFound is a
// miss. A stored value that cannot be decoded into V is an error for which
// errors.Is(err, ErrDecode) reports true, carried in an [*Error] naming the
// operation and key; it is never a panic and never a silent zero value.
//
// Typed is safe for concurrent use. Close the underlying Cache, not the
// Typed, when done.
type Typed[V any] struct {
	c       Cache
	ser     serializer.Serializer
	ttl     time.Duration
	onError func(context.Context, error)
	loads   flight.Group[string, V]
}

// NewTyped returns a Typed cache of V values stored in c.
func NewTyped[V any](c Cache, opts *TypedOptions) *Typed[V] {
	t := &Typed[V]{c: c, ser: serializer.JSON{}}
	if opts != nil {
		if opts.Serializer != nil {
			t.ser = opts.Serializer
		}
		t.ttl = opts.TTL
		t.onError = opts.OnError
	}
	return t
}

// SetOption changes one write of a [Typed] cache.
type SetOption func(*setOptions)

type setOptions struct {
	ttl time.Duration
}

// WithTTL sets the expiry of the values one call writes, overriding
// TypedOptions.TTL. A ttl of 0 means no expiry.
func WithTTL(ttl time.Duration) SetOption {
	return func(o *setOptions) { o.ttl = ttl }
}

func (t *Typed[V]) setOptions(opts []SetOption) setOptions {
	o := setOptions{ttl: t.ttl}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Cache returns the byte-level cache that t reads and writes.
func (t *Typed[V]) Cache() Cache { return t.c }

// Encode returns the bytes that Set would store for v. An encoding failure
// is an error for which errors.Is(err, ErrEncode) reports true. Layers built
// on Typed (the decorator package) use it to wrap values in envelopes of
// their own.
func (t *Typed[V]) Encode(v V) ([]byte, error) {
	return t.encode("Encode", "", v)
}

// Decode decodes bytes that Encode produced. Garbage is an error for which
// errors.Is(err, ErrDecode) reports true.
func (t *Typed[V]) Decode(b []byte) (V, error) {
	var v V
	if err := t.decode(b, &v); err != nil {
		var zero V
		return zero, &Error{Op: "Decode", Err: err}
	}
	return v, nil
}

// DefaultTTL returns the TTL that writes use when they have no WithTTL
// option (TypedOptions.TTL).
func (t *Typed[V]) DefaultTTL() time.Duration { return t.ttl }

// Get returns the value stored under key. A miss is an error for which
// errors.Is(err, ErrNotFound) reports true; a value that does not decode into
// V is one for which errors.Is(err, ErrDecode) reports true.
func (t *Typed[V]) Get(ctx context.Context, key string) (V, error) {
	var v V
	b, err := t.c.Get(ctx, key)
	if err != nil {
		return v, WrapError("Get", key, err)
	}
	if err := t.decode(b, &v); err != nil {
		Emit(ctx, t.c, Event{Kind: EventDecodeError, Key: key, Err: err})
		var zero V
		return zero, &Error{Op: "Get", Key: key, Err: err}
	}
	return v, nil
}

// decode unmarshals b into v, turning a serializer error or panic into an
// error that wraps both ErrDecode and the serializer's error.
func (t *Typed[V]) decode(b []byte, v *V) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: serializer panicked: %v", ErrDecode, r)
		}
	}()
	if err := t.ser.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %w", ErrDecode, err)
	}
	return nil
}

func (t *Typed[V]) encode(op, key string, v V) ([]byte, error) {
	b, err := t.ser.Marshal(v)
	if err != nil {
		return nil, &Error{Op: op, Key: key, Err: fmt.Errorf("%w: %w", ErrEncode, err)}
	}
	return b, nil
}

// Set stores v under key with the default TTL, or the one WithTTL gives.
func (t *Typed[V]) Set(ctx context.Context, key string, v V, opts ...SetOption) error {
	b, err := t.encode("Set", key, v)
	if err != nil {
		return err
	}
	return WrapError("Set", key, t.c.Set(ctx, key, b, t.setOptions(opts).ttl))
}

// Add stores v under key only if key is absent; otherwise it returns an error
// for which errors.Is(err, ErrExists) reports true.
func (t *Typed[V]) Add(ctx context.Context, key string, v V, opts ...SetOption) error {
	b, err := t.encode("Add", key, v)
	if err != nil {
		return err
	}
	return WrapError("Add", key, t.c.Add(ctx, key, b, t.setOptions(opts).ttl))
}

// GetMany returns the values of the keys that are present, decoded. Missing
// keys are absent from the map. If any present value does not decode, GetMany
// returns no map and an error naming that key.
func (t *Typed[V]) GetMany(ctx context.Context, keys []string) (map[string]V, error) {
	raw, err := t.c.GetMany(ctx, keys)
	if err != nil {
		return nil, WrapError("GetMany", "", err)
	}
	out := make(map[string]V, len(raw))
	for k, b := range raw {
		var v V
		if err := t.decode(b, &v); err != nil {
			Emit(ctx, t.c, Event{Kind: EventDecodeError, Key: k, Err: err})
			return nil, &Error{Op: "GetMany", Key: k, Err: err}
		}
		out[k] = v
	}
	return out, nil
}

// SetMany stores every item with the same TTL: the default, or the one
// WithTTL gives. Nothing is written if any value fails to encode.
func (t *Typed[V]) SetMany(ctx context.Context, items map[string]V, opts ...SetOption) error {
	raw := make(map[string][]byte, len(items))
	for k, v := range items {
		b, err := t.encode("SetMany", k, v)
		if err != nil {
			return err
		}
		raw[k] = b
	}
	return WrapError("SetMany", "", t.c.SetMany(ctx, raw, t.setOptions(opts).ttl))
}

// Delete removes keys and reports how many existed.
func (t *Typed[V]) Delete(ctx context.Context, keys ...string) (int, error) {
	n, err := t.c.Delete(ctx, keys...)
	return n, WrapError("Delete", "", err)
}

// GetOrLoad returns the value under key, calling load to produce it on a
// miss and storing what load returns (with the default TTL, or WithTTL's).
//
// Concurrent calls for the same key on this Typed share one call of load.
// Each caller waits only as long as its own ctx allows, and a caller that
// gives up never fails the others. load runs with a context that carries
// the first caller's values but not its cancellation; that context is
// cancelled when every caller waiting for it has given up. A panic in load
// is returned to every waiter as an error for which
// errors.Is(err, ErrLoaderPanic) reports true.
//
// Errors from load are returned as they are (inside an *Error) and nothing is
// stored. Cache trouble does not stop a load: if reading the cache fails with
// anything but a miss or a context error, or the stored value does not
// decode, GetOrLoad loads anyway (and overwrites an undecodable value); if
// storing the loaded value fails, the value is still returned. Such errors go
// to TypedOptions.OnError.
func (t *Typed[V]) GetOrLoad(ctx context.Context, key string, load func(context.Context) (V, error), opts ...SetOption) (V, error) {
	v, err := t.Get(ctx, key)
	switch {
	case err == nil:
		return v, nil
	case errors.Is(err, ErrNotFound):
	case ctx.Err() != nil, errors.Is(err, ErrInvalidKey), errors.Is(err, ErrClosed):
		return v, err
	default:
		t.reportError(ctx, err)
	}
	o := t.setOptions(opts)
	if err := CheckTTL(o.ttl); err != nil {
		return v, &Error{Op: "GetOrLoad", Key: key, Err: err}
	}
	v, err, joined := t.loads.Do(ctx, key, func(lctx context.Context) (V, error) {
		start := time.Now()
		v, err := callLoad(lctx, load)
		if err != nil {
			Emit(lctx, t.c, Event{Kind: EventLoadError, Key: key, Err: err, Duration: time.Since(start)})
			return v, err
		}
		Emit(lctx, t.c, Event{Kind: EventLoad, Key: key, Duration: time.Since(start)})
		if b, err := t.encode("GetOrLoad", key, v); err != nil {
			t.reportError(lctx, err)
		} else if err := t.c.Set(lctx, key, b, o.ttl); err != nil {
			t.reportError(lctx, WrapError("GetOrLoad", key, err))
		}
		return v, nil
	})
	if joined {
		Emit(ctx, t.c, Event{Kind: EventStampedeJoin, Key: key})
	}
	if err != nil {
		return v, &Error{Op: "GetOrLoad", Key: key, Err: err}
	}
	return v, nil
}

// callLoad runs load, turning a panic into an error that wraps
// ErrLoaderPanic and carries the panic value and stack.
func callLoad[V any](ctx context.Context, load func(context.Context) (V, error)) (v V, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %w", ErrLoaderPanic, &flight.PanicError{Value: r, Stack: debug.Stack()})
		}
	}()
	return load(ctx)
}

func (t *Typed[V]) reportError(ctx context.Context, err error) {
	if t.onError != nil {
		t.onError(ctx, err)
	}
}
