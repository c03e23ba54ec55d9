package cachekit

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cachekit/cachekit/internal/flight"
	"github.com/cachekit/cachekit/internal/tracker"
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
	// to keep serving: a failed read before a load, a value that fails to
	// encode, and a failed background write of the loaded value. Default:
	// nil, such errors are dropped. It must be safe for concurrent use; it
	// may be called from a background goroutine after GetOrLoad returned.
	OnError func(ctx context.Context, err error)

	// WriteTimeout bounds the background write with which GetOrLoad stores
	// a loaded value. The write does not inherit the caller's cancellation
	// or deadline (the caller has its value already), only its context's
	// values. Default (0): DefaultWriteTimeout. Negative: no bound of
	// Typed's own, the write is bounded only by the backend's own operation
	// timeout (the timeout URL parameter of Redis and Memcached).
	WriteTimeout time.Duration

	// Local, when set, keeps values decoded in this process in front of
	// the cache (a local tier, L1 in FusionCache's words): a read that
	// finds its key there makes no cache call and no decode. See
	// [LocalOptions] for its bounds and [Typed] for the rules. Default:
	// nil, no local tier.
	Local *LocalOptions

	// Backplane, when set, carries invalidations between the Typed caches,
	// in this process and others, that share the cache: every write
	// through this Typed (or through its Cache()) publishes the keys it
	// wrote, after the write succeeded, whether or not this Typed has a
	// Local tier; and a Typed with a Local tier drops the local entries
	// that others' messages name. If the Backplane implements
	// [BackplaneWatcher], NewTyped calls its Watch with the cache. Backplane
	// trouble goes to OnError and to hooks as [EventBackplaneError], and
	// never fails a read or a write. Nor does it delay one past its
	// context: a publish is bounded by WriteTimeout, and when the writer's
	// context ends first, the write returns and its publish goes on in the
	// background ([Typed.Wait] waits for it). Default: nil, local entries
	// are bounded by LocalOptions.TTL alone.
	Backplane Backplane
}

// DefaultWriteTimeout is the bound on GetOrLoad's background writes when
// TypedOptions.WriteTimeout is 0.
const DefaultWriteTimeout = time.Second

// Typed is a cache of values of type V over a byte-level [Cache]: it
// serializes values, applies a default TTL, and loads missing values through
// GetOrLoad with one load per key at a time.
//
// A stored zero value or nil is a hit, not a miss: only ErrNotFound is a
// miss. A stored value that cannot be decoded into V is an error for which
// errors.Is(err, ErrDecode) reports true, carried in an [*Error] naming the
// operation and key; it is never a panic and never a silent zero value.
//
// Typed is safe for concurrent use. Close the underlying Cache when done,
// after calling [Typed.Wait] so that the values GetOrLoad is still writing
// in the background land first; a Typed with a Local tier and a Backplane
// also has a subscription to end, with [Typed.Close], first.
//
// # Local tier
//
// With TypedOptions.Local, reads (Get, GetMany, GetOrLoad) look in process
// memory first and return the decoded value found there: no cache call, no
// decode, no allocation. A local miss reads the cache and keeps what it
// decoded. Writes through the Typed (Set, Add, GetOrLoad's write) keep the
// value written; SetMany, Delete, Update, InvalidateTags and every write
// through t.Cache() drop the local entries they touch. A local entry lives
// at most LocalOptions.TTL, and never longer than its remote TTL where the
// Typed knows it (see [LocalOptions]).
//
// Values from the local tier are shared: every caller that reads a key gets
// the same V, and the value given to Set is the one later Gets return. Do
// not modify a V after Set or after a Get; if V holds maps, slices or
// pointers that callers change, set LocalOptions.Copy, and each local hit
// decodes a private copy instead.
//
// Writes made elsewhere (another process, another Typed, a client other
// than cachekit) reach the local tier only through a Backplane: without
// one, a local entry may be stale for up to LocalOptions.TTL. With
// [NewMemoryBackplane], delivery is synchronous: once a write through one
// Typed returns, every other Typed on that backplane misses or sees the new
// value on its next Get. Other backplanes deliver soon after the write,
// not before it returns.
type Typed[V any] struct {
	c            Cache         // what Cache returns: the coherent wrapper of base when co is set
	base         Cache         // the cache given to NewTyped
	shared       SharedGetter  // base, if it is one: reads decode its bytes without a copy
	neverPanics  bool          // ser's Unmarshal returns panics as errors: decodePayload needs no recover
	co           *coherence    // nil: no local tier and no backplane
	local        *localTier[V] // nil: no local tier
	ser          serializer.Serializer
	ttl          time.Duration
	writeTimeout time.Duration // > 0: bound on background writes; < 0: none
	onError      func(context.Context, error)
	loads        flight.Group[string, loaded[V]]

	// Loads that finished while another caller read the cache (see
	// GetOrLoad). gens[i] counts the loads of the keys hashing to stripe i
	// that finished or whose write ended; recent holds each loaded value
	// until its background write has ended.
	seed     maphash.Seed
	gens     [genStripes]atomic.Uint64
	recentMu sync.Mutex
	recent   map[string]*recentLoad[V]
	pending  atomic.Int32    // writes not ended: when 0, settle has nothing to do
	writes   tracker.Tracker // background writes
}

// genStripes is the number of load generations a Typed keeps: keys share
// them by hash, and a shared one only costs an extra cache read.
const genStripes = 64

// loaded is what GetOrLoad's flight returns: the value, and whether it came
// from another caller's load instead of a load of this flight's own.
type loaded[V any] struct {
	v      V
	shared bool
}

type recentLoad[V any] struct {
	v    V
	done chan struct{} // closed when the write has ended
}

// NewTyped returns a Typed cache of V values stored in c.
//
// With a Local tier and a Backplane, NewTyped subscribes to the backplane;
// [Typed.Close] ends the subscription. With a Backplane that implements
// [BackplaneWatcher], NewTyped calls Watch(c) once; an error goes to
// OnError and the hooks, and the Typed works without it.
func NewTyped[V any](c Cache, opts *TypedOptions) *Typed[V] {
	t := &Typed[V]{c: c, base: c, ser: serializer.JSON{}, writeTimeout: DefaultWriteTimeout, seed: maphash.MakeSeed()}
	t.shared, _ = c.(SharedGetter)
	if opts == nil {
		return t
	}
	if opts.Serializer != nil {
		t.ser = opts.Serializer
	}
	// MsgPack's Unmarshal never panics (it says so, and recovers inside):
	// its decodes need no deferred recover here, which costs about 4% of a
	// Get of a small value.
	_, t.neverPanics = t.ser.(serializer.MsgPack)
	t.ttl = opts.TTL
	t.onError = opts.OnError
	if opts.WriteTimeout != 0 {
		t.writeTimeout = opts.WriteTimeout
	}
	if opts.Local == nil && opts.Backplane == nil {
		return t
	}
	co := &coherence{
		seed:           maphash.MakeSeed(),
		bp:             opts.Backplane,
		ns:             NamespaceOf(c),
		origin:         newOrigin(),
		publishTimeout: t.writeTimeout,
		onError:        t.onError,
	}
	t.co = co
	t.c = newCoherent(c, co)
	co.events = t.c
	if opts.Local != nil {
		t.local = newLocalTier[V](*opts.Local)
		_, t.local.events = c.(EventHandler)
		co.tier = t.local
	}
	if bp := opts.Backplane; bp != nil {
		if w, ok := bp.(BackplaneWatcher); ok {
			if err := w.Watch(c); err != nil {
				co.fail(context.Background(), fmt.Errorf("cachekit: backplane watch: %w", err))
			}
		}
		if t.local != nil {
			co.subscribe()
		}
	}
	return t
}

// Close ends what NewTyped started beside the cache: the subscription to
// the Backplane of a Typed with a Local tier (Close waits until no
// invalidation is being applied), and the local tier, which it empties.
// The Typed stays usable: it reads and writes the cache as one without a
// local tier, and still publishes its writes. Close closes neither the
// Cache nor the Backplane, which may be shared; close them yourself, after
// [Typed.Wait]. Close is idempotent and returns nil; it does nothing on a
// Typed without a Local tier.
func (t *Typed[V]) Close() error {
	if t.co != nil {
		t.co.unsubscribe()
	}
	if t.local != nil {
		t.local.closed.Store(true)
		t.local.evictAll()
	}
	return nil
}

// Wait returns when every goroutine that GetOrLoad started in the
// background has ended: the background writes of loaded values (each
// bounded by TypedOptions.WriteTimeout), and loads that are still running
// after every caller waiting for them gave up (their context is cancelled,
// but a load may not watch it). Loads and writes started while Wait waits
// are waited for too.
//
// With a Backplane, Wait also waits for the publishes of writes whose
// callers' contexts ended before the publish did (see TypedOptions.Backplane).
//
// Call Wait before closing the underlying Cache, at shutdown or at the end
// of a test: a background write that runs after Close fails with ErrClosed
// (reported to TypedOptions.OnError) and stores nothing.
func (t *Typed[V]) Wait() {
	t.loads.Wait()  // a load ends after starting its write,
	t.writes.Wait() // so the writes are all known here
	if t.co != nil {
		t.co.publishes.Wait()
	}
}

// SetOption changes one write of a [Typed] cache.
type SetOption func(*setOptions)

type setOptions struct {
	ttl  time.Duration
	tags []string
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

// Cache returns the byte-level cache that t reads and writes. For a Typed
// with a Local tier or a Backplane, it is a wrapper of the cache given to
// NewTyped whose writes (Set, Delete, Clear, Increment, Expire,
// CompareAndSwap, ...) also drop the keys from t's local tier and publish
// their invalidation; it implements the optional interfaces that cache
// implements, and Unwrap() Cache returns that cache.
func (t *Typed[V]) Cache() Cache { return t.c }

// Encode returns the bytes that Set would store for v without tags: the
// serializer's encoding, escaped in the rare case that it starts like the
// envelope of a tagged value (possible with serializer.Raw), so that Decode
// and Get return it intact. An encoding failure is an error for which
// errors.Is(err, ErrEncode) reports true. Layers built on Typed (the
// decorator package) use it to wrap values in envelopes of their own.
func (t *Typed[V]) Encode(v V) ([]byte, error) {
	b, err := t.encode("Encode", "", v)
	if err != nil {
		return nil, err
	}
	return stored(b, nil, nil), nil
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
//
// When the cache given to NewTyped is a [SharedGetter] (the memory backend,
// and hooks or a local tier over it), Get reads with GetShared and decodes
// straight from the stored bytes: no copy, and no allocation beyond the
// decoder's own.
//
// With a Local tier, Get returns the value held in process memory when
// there is one (shared with other callers: do not modify it), and reports
// [EventLocalHit] or [EventLocalMiss]. A value written with tags costs a
// second round trip, to check its tags' stamps (see [Typed.InvalidateTags]).
func (t *Typed[V]) Get(ctx context.Context, key string) (V, error) {
	if l := t.local; l != nil {
		if e, ok := l.get(key); ok {
			if v, err := t.localValue(ctx, "Get", key, e); err == nil {
				if t.local.events {
					Emit(ctx, t.c, Event{Kind: EventLocalHit, Key: key})
				}
				return v, nil
			}
		}
		if t.local.events {
			Emit(ctx, t.c, Event{Kind: EventLocalMiss, Key: key})
		}
	}
	var v V
	var tok uint64
	if t.local != nil {
		tok = t.co.token(key)
	}
	b, err := t.read(ctx, key)
	if err != nil {
		return v, WrapError("Get", key, err)
	}
	payload, tags, stamps := b, []string(nil), []string(nil)
	if isEnvelope(b) { // inlined: most values are not envelopes
		payload, tags, stamps, _ = openEnvelope(b)
	}
	if len(tags) > 0 {
		valid, err := t.checkTags(ctx, map[string]tagged{key: {tags, stamps}})
		if err != nil {
			return v, WrapError("Get", key, err)
		}
		if !valid[key] {
			Emit(ctx, t.c, Event{Kind: EventTagMiss, Key: key})
			return v, &Error{Op: "Get", Key: key, Err: ErrNotFound}
		}
	}
	if err := t.decodePayload(payload, &v); err != nil {
		Emit(ctx, t.c, Event{Kind: EventDecodeError, Key: key, Err: err})
		var zero V
		return zero, &Error{Op: "Get", Key: key, Err: err}
	}
	if t.local != nil {
		t.fill(key, v, payload, tags, t.ttl, tok, true)
	}
	return v, nil
}

// read returns the bytes stored under key: with GetShared, when the cache
// has it, the cache's own bytes, which nothing here modifies (openEnvelope
// reads them, serializers must not modify their input, and the local tier
// keeps them only to decode them again); otherwise a copy, with Get.
func (t *Typed[V]) read(ctx context.Context, key string) ([]byte, error) {
	if t.shared != nil {
		return t.shared.GetShared(ctx, key)
	}
	return t.base.Get(ctx, key)
}

// localValue returns the value of a local entry: the shared one, or with
// LocalOptions.Copy a fresh decode of its bytes.
func (t *Typed[V]) localValue(ctx context.Context, op, key string, e *localEntry[V]) (V, error) {
	if !t.local.copy {
		return e.v, nil
	}
	var v V
	if err := t.decodePayload(e.b, &v); err != nil {
		t.local.evict(key)
		return v, &Error{Op: op, Key: key, Err: err}
	}
	return v, nil
}

// fill keeps v, which is current as of token want, in the local tier for
// at most remote (0: unknown or none) and LocalOptions.TTL, unless ok is
// false or a write or invalidation of key came after want. Tagged values
// are kept only with a Backplane, which carries tag invalidations.
func (t *Typed[V]) fill(key string, v V, b []byte, tags []string, remote time.Duration, want uint64, ok bool) {
	l, co := t.local, t.co
	if !ok || (len(tags) > 0 && co.bp == nil) || l.closed.Load() || co.token(key) != want {
		return
	}
	now := l.now()
	e := &localEntry[V]{v: v, exp: now + min(int64(l.lifetime(remote)), math.MaxInt64-now), tags: tags}
	if l.copy {
		// b may be the cache's own bytes (SharedGetter): they never
		// change, so keeping them is as safe as keeping a copy.
		e.b = b
	}
	l.c.Set(key, e)
	if co.token(key) != want { // a write or invalidation raced the put
		l.evict(key)
	}
}

// written ends a write of key through t that returned err: it drops the
// key from the local tier, publishes the invalidation, and keeps the value
// written in the local tier when no other write overlapped this one.
func (t *Typed[V]) written(ctx context.Context, key string, v V, b []byte, o setOptions, start uint64, err error) {
	co := t.co
	end := co.end(key)
	if wrote(err) {
		co.publish(ctx, false, key)
	}
	if err == nil && t.local != nil {
		t.fill(key, v, b, o.tags, o.ttl, end, end == start+1)
	}
}

// decode unmarshals b into v, turning a serializer error or panic into an
// error that wraps both ErrDecode and the serializer's error.
//
// An envelope of tags (see [Typed.InvalidateTags]) is decoded as its value.
func (t *Typed[V]) decode(b []byte, v *V) error {
	if isEnvelope(b) {
		b, _, _, _ = openEnvelope(b)
	}
	return t.decodePayload(b, v)
}

// decodePayload is decode for bytes that are not an envelope.
func (t *Typed[V]) decodePayload(b []byte, v *V) error {
	if !t.neverPanics {
		return t.decodeRecover(b, v)
	}
	// MsgPack returns panics as errors itself: no deferred recover.
	if err := t.ser.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %w", ErrDecode, err)
	}
	return nil
}

// decodeRecover is decodePayload for a serializer that may panic.
func (t *Typed[V]) decodeRecover(b []byte, v *V) (err error) {
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
//
// Like Add, SetMany and Delete, Set is ordered after the background write
// of key that a GetOrLoad of this Typed may have started: it waits for that
// write to end (at most TypedOptions.WriteTimeout), so a loaded value never
// lands after a later write of its key through the same Typed.
func (t *Typed[V]) Set(ctx context.Context, key string, v V, opts ...SetOption) error {
	b, err := t.encode("Set", key, v)
	if err != nil {
		return err
	}
	if err := t.settle(ctx, key); err != nil {
		return WrapError("Set", key, err)
	}
	o := t.setOptions(opts)
	sb, err := t.storedBytes(ctx, b, o)
	if err != nil {
		return WrapError("Set", key, err)
	}
	if t.co == nil {
		return WrapError("Set", key, t.base.Set(ctx, key, sb, o.ttl))
	}
	start := t.co.begin(key)
	err = t.base.Set(ctx, key, sb, o.ttl)
	t.written(ctx, key, v, b, o, start, err)
	return WrapError("Set", key, err)
}

// storedBytes returns what a write with o stores for the encoded value b:
// b itself, or with tags an envelope carrying their current stamps.
func (t *Typed[V]) storedBytes(ctx context.Context, b []byte, o setOptions) ([]byte, error) {
	if len(o.tags) == 0 {
		return stored(b, nil, nil), nil
	}
	tags := dedupe(o.tags)
	stamps, err := t.stamps(ctx, tags)
	if err != nil {
		return nil, err
	}
	return stored(b, tags, stamps), nil
}

// settle prepares a write of keys through t: it forgets the values of
// GetOrLoad's loads of those keys whose writes have not ended (a caller
// overlapping them must load afresh rather than take a value this write
// replaces), and waits for those writes to end, or for ctx.
func (t *Typed[V]) settle(ctx context.Context, keys ...string) error {
	if t.pending.Load() == 0 {
		return nil
	}
	var waits []chan struct{}
	t.recentMu.Lock()
	for _, k := range keys {
		if rl := t.recent[k]; rl != nil {
			delete(t.recent, k)
			waits = append(waits, rl.done)
		}
	}
	t.recentMu.Unlock()
	for _, done := range waits {
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Add stores v under key only if key is absent; otherwise it returns an error
// for which errors.Is(err, ErrExists) reports true.
func (t *Typed[V]) Add(ctx context.Context, key string, v V, opts ...SetOption) error {
	b, err := t.encode("Add", key, v)
	if err != nil {
		return err
	}
	if err := t.settle(ctx, key); err != nil {
		return WrapError("Add", key, err)
	}
	o := t.setOptions(opts)
	sb, err := t.storedBytes(ctx, b, o)
	if err != nil {
		return WrapError("Add", key, err)
	}
	if t.co == nil {
		return WrapError("Add", key, t.base.Add(ctx, key, sb, o.ttl))
	}
	start := t.co.begin(key)
	err = t.base.Add(ctx, key, sb, o.ttl)
	t.written(ctx, key, v, b, o, start, err)
	return WrapError("Add", key, err)
}

// GetMany returns the values of the keys that are present, decoded. Missing
// keys are absent from the map. If any present value does not decode, GetMany
// returns no map and an error naming that key.
//
// A cache may answer with a partial result: the values it could read
// together with an error for the others (a Memcached pool with a server
// down returns the keys of the live servers and an error wrapping
// ErrUnavailable). GetMany then returns the decoded values of that partial
// result, the local tier's too, together with the error, in an [*Error];
// the keys absent from the map are unknown, not misses. A cache error with
// no values returns no map.
//
// With a Local tier, the keys held in process memory are served from there
// and only the others are read from the cache, in one GetMany; the tags of
// the tagged values among them are checked in one more.
func (t *Typed[V]) GetMany(ctx context.Context, keys []string) (map[string]V, error) {
	var out map[string]V
	var toks map[string]uint64
	remote := keys
	if l := t.local; l != nil {
		out = make(map[string]V, len(keys))
		remote = make([]string, 0, len(keys))
		toks = make(map[string]uint64, len(keys))
		for _, k := range keys {
			if _, done := out[k]; done {
				continue
			}
			if e, ok := l.get(k); ok {
				if v, err := t.localValue(ctx, "GetMany", k, e); err == nil {
					out[k] = v
					Emit(ctx, t.c, Event{Kind: EventLocalHit, Key: k})
					continue
				}
			}
			if _, dup := toks[k]; !dup {
				Emit(ctx, t.c, Event{Kind: EventLocalMiss, Key: k})
				toks[k] = t.co.token(k)
				remote = append(remote, k)
			}
		}
		if len(remote) == 0 {
			return out, nil
		}
	}
	raw, partial := t.base.GetMany(ctx, remote)
	if partial != nil && raw == nil {
		return nil, WrapError("GetMany", "", partial)
	}
	if out == nil {
		out = make(map[string]V, len(raw))
	}
	var tagsOf map[string]tagged
	for k, b := range raw {
		if _, tags, stamps, _ := openEnvelope(b); len(tags) > 0 {
			if tagsOf == nil {
				tagsOf = map[string]tagged{}
			}
			tagsOf[k] = tagged{tags, stamps}
		}
	}
	if tagsOf != nil {
		valid, err := t.checkTags(ctx, tagsOf)
		if err != nil {
			return nil, WrapError("GetMany", "", err)
		}
		for _, k := range remote {
			if _, ok := tagsOf[k]; ok && !valid[k] {
				Emit(ctx, t.c, Event{Kind: EventTagMiss, Key: k})
				delete(tagsOf, k) // once, for a key asked for twice
				delete(raw, k)
			}
		}
	}
	var first error
	for _, k := range remote {
		b, ok := raw[k]
		if !ok {
			continue
		}
		if _, done := out[k]; done {
			continue // a key asked for twice
		}
		payload, tags, _, _ := openEnvelope(b)
		var v V
		if err := t.decodePayload(payload, &v); err != nil {
			// One event per undecodable value, so that a hook that counted
			// the value as a hit can count it as a miss instead.
			Emit(ctx, t.c, Event{Kind: EventDecodeError, Key: k, Err: err})
			if first == nil {
				first = &Error{Op: "GetMany", Key: k, Err: err}
			}
			delete(raw, k)
			continue
		}
		out[k] = v
		if t.local != nil {
			t.fill(k, v, payload, tags, t.ttl, toks[k], true)
		}
	}
	if first != nil {
		return nil, first
	}
	return out, WrapError("GetMany", "", partial)
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
	if t.pending.Load() != 0 {
		keys := make([]string, 0, len(items))
		for k := range items {
			keys = append(keys, k)
		}
		if err := t.settle(ctx, keys...); err != nil {
			return WrapError("SetMany", "", err)
		}
	}
	o := t.setOptions(opts)
	var tags, stamps []string
	if len(o.tags) > 0 {
		tags = dedupe(o.tags)
		var err error
		if stamps, err = t.stamps(ctx, tags); err != nil {
			return WrapError("SetMany", "", err)
		}
	}
	for k, b := range raw {
		raw[k] = stored(b, tags, stamps)
	}
	return WrapError("SetMany", "", t.c.SetMany(ctx, raw, o.ttl))
}

// Delete removes keys and reports how many existed. It is ordered after
// GetOrLoad's background writes of keys, as Set is.
func (t *Typed[V]) Delete(ctx context.Context, keys ...string) (int, error) {
	if err := t.settle(ctx, keys...); err != nil {
		return 0, WrapError("Delete", "", err)
	}
	n, err := t.c.Delete(ctx, keys...) // with a local tier or backplane: drops and publishes
	return n, WrapError("Delete", "", err)
}

// GetOrLoad returns the value under key, calling load to produce it on a
// miss and storing what load returns (with the default TTL, or WithTTL's).
//
// The caller gets the loaded value as soon as load returns: the value is
// written to the cache in the background, with a context that keeps the
// first caller's values but none of its cancellation, bounded by
// TypedOptions.WriteTimeout (1 s by default). A failed write goes to
// TypedOptions.OnError. [Typed.Wait] waits for these writes; call it before
// closing the Cache. Set, SetMany, Add and Delete of the key through the same
// Typed wait for such a write first, so it never lands after them; writes
// that bypass the Typed (t.Cache(), another process) are not ordered with it.
//
// Concurrent calls for the same key on this Typed share one call of load,
// and so do calls whose cache read overlaps a load that finished meanwhile:
// a caller whose read missed while another caller's load of the key ended
// takes that load's value rather than loading again (re-reading the cache
// if that load's write has landed already). Each caller waits only as long
// as its own ctx allows, and a caller that gives up never fails the others.
// load runs with a context that carries the first caller's values but not
// its cancellation; that context is cancelled when every caller waiting for
// it has given up. A panic in load, or a call of runtime.Goexit, is
// returned to every waiter as an error for which
// errors.Is(err, ErrLoaderPanic) reports true.
//
// Errors from load are returned as they are (inside an *Error) and nothing is
// stored. Cache trouble does not stop a load: if reading the cache fails with
// anything but a miss or a context error, or the stored value does not
// decode, GetOrLoad loads anyway (and overwrites an undecodable value); if
// storing the loaded value fails, the value is still returned. Such errors go
// to TypedOptions.OnError.
func (t *Typed[V]) GetOrLoad(ctx context.Context, key string, load func(context.Context) (V, error), opts ...SetOption) (V, error) {
	gen := &t.gens[maphash.String(t.seed, key)%genStripes]
	before := gen.Load() // loads of key that ended before this read began
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
	r, err, joined := t.loads.Do(ctx, key, func(lctx context.Context) (loaded[V], error) {
		// A load of key may have ended while this caller read the cache:
		// its value is then in recent (write pending) or in the cache.
		if v, ok := t.recentValue(key); ok {
			return loaded[V]{v: v, shared: true}, nil
		}
		if gen.Load() != before {
			if v, err := t.Get(lctx, key); err == nil {
				return loaded[V]{v: v, shared: true}, nil
			}
		}
		v, err := t.load(lctx, key, load, o, gen)
		return loaded[V]{v: v}, err
	})
	if joined || r.shared {
		Emit(ctx, t.c, Event{Kind: EventStampedeJoin, Key: key})
	}
	if err != nil {
		if errors.Is(err, flight.ErrGoexit) {
			err = fmt.Errorf("%w: %w", ErrLoaderPanic, err)
		}
		var zero V
		return zero, &Error{Op: "GetOrLoad", Key: key, Err: err}
	}
	return r.v, nil
}

// load calls load and, when it returns a value, starts its background
// write.
//
// With tags, it reads their stamps before calling load, so that a value
// loaded while one of its tags is invalidated is stored with the stamp
// that the invalidation replaced: a miss. If the stamps cannot be read,
// the value is returned and not stored.
func (t *Typed[V]) load(lctx context.Context, key string, load func(context.Context) (V, error), o setOptions, gen *atomic.Uint64) (V, error) {
	var tags, stamps []string
	var stampErr error
	if len(o.tags) > 0 {
		tags = dedupe(o.tags)
		stamps, stampErr = t.stamps(lctx, tags)
	}
	start := time.Now()
	returned := false
	defer func() {
		if !returned { // load called runtime.Goexit (panics are recovered in callLoad)
			Emit(lctx, t.c, Event{Kind: EventLoadError, Key: key, Err: fmt.Errorf("%w: %w", ErrLoaderPanic, flight.ErrGoexit), Duration: time.Since(start)})
		}
	}()
	v, err := callLoad(lctx, load)
	returned = true
	if err != nil {
		Emit(lctx, t.c, Event{Kind: EventLoadError, Key: key, Err: err, Duration: time.Since(start)})
		return v, err
	}
	Emit(lctx, t.c, Event{Kind: EventLoad, Key: key, Duration: time.Since(start)})
	b, err := t.encode("GetOrLoad", key, v)
	if err != nil {
		t.reportError(lctx, err)
		return v, nil
	}
	if stampErr != nil {
		t.reportError(lctx, WrapError("GetOrLoad", key, stampErr))
		return v, nil
	}
	rl := &recentLoad[V]{v: v, done: make(chan struct{})}
	t.pending.Add(1)
	t.recentMu.Lock()
	if t.recent == nil {
		t.recent = make(map[string]*recentLoad[V])
	}
	t.recent[key] = rl
	t.recentMu.Unlock()
	gen.Add(1)
	wctx, sb := context.WithoutCancel(lctx), stored(b, tags, stamps)
	t.writes.Go(func() { t.write(wctx, key, v, b, sb, setOptions{ttl: o.ttl, tags: tags}, rl, gen) })
	return v, nil
}

// write stores a loaded value in the background, then forgets it in recent.
// b is the encoded value, sb the bytes stored (b, or its envelope).
func (t *Typed[V]) write(ctx context.Context, key string, v V, b, sb []byte, o setOptions, rl *recentLoad[V], gen *atomic.Uint64) {
	if t.writeTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.writeTimeout)
		defer cancel()
	}
	var start uint64
	if t.co != nil {
		start = t.co.begin(key)
	}
	err := t.base.Set(ctx, key, sb, o.ttl)
	if t.co != nil {
		t.written(ctx, key, v, b, o, start, err)
	}
	if err != nil {
		t.reportError(ctx, WrapError("GetOrLoad", key, err))
	}
	t.recentMu.Lock()
	if t.recent[key] == rl {
		delete(t.recent, key)
	}
	t.recentMu.Unlock()
	// A caller whose read began before the write landed, and who finds
	// nothing in recent any more, sees this and reads the cache again.
	gen.Add(1)
	close(rl.done)
	t.pending.Add(-1)
}

// recentValue returns the value of a load of key whose write has not ended.
func (t *Typed[V]) recentValue(key string) (V, bool) {
	t.recentMu.Lock()
	rl, ok := t.recent[key]
	t.recentMu.Unlock()
	if !ok {
		var zero V
		return zero, false
	}
	return rl.v, true
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
