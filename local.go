package cachekit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/cachekit/cachekit/internal/tracker"
)

// LocalOptions configures the local tier of a [Typed] cache
// (TypedOptions.Local): values kept decoded in this process, in front of
// the shared cache. Zero and negative fields take their defaults.
type LocalOptions struct {
	// MaxEntries bounds the number of values held in this process. When
	// full, the tier drops the values least likely to be read again
	// (W-TinyLFU, by github.com/maypok86/otter). Default (zero or
	// negative): DefaultLocalMaxEntries.
	MaxEntries int

	// TTL is the longest a value lives in the local tier. It is what
	// bounds staleness when a write made elsewhere reaches this process by
	// no Backplane (none configured, a lost connection, a writer that does
	// not publish), so keep it as short as the data allows. A value never
	// lives locally longer than its remote TTL where the Typed knows it:
	// a value this Typed wrote lives at most the TTL it was written with,
	// and a value read from the cache at most TypedOptions.TTL when that is
	// set (the cache does not tell the remaining TTL of what it returns).
	// Default (zero or negative): DefaultLocalTTL.
	TTL time.Duration

	// Copy makes every read served by the local tier decode a fresh V from
	// the encoded bytes it keeps beside the value, instead of returning the
	// shared decoded value: no network round trip, but a decode and its
	// allocations, and the encoded bytes held in memory. Set it when
	// callers modify the values they get (maps, slices, pointers inside V).
	// Default false: values are shared between callers, see [Typed].
	Copy bool
}

// Defaults of [LocalOptions].
const (
	DefaultLocalMaxEntries = 10_000
	DefaultLocalTTL        = time.Minute
)

// clockBase makes local deadlines monotonic nanoseconds.
var clockBase = time.Now()

func monotonicNow() int64 { return int64(time.Since(clockBase)) }

// localEntry is one value of a local tier. Entries are never changed once
// stored: writes replace them.
type localEntry[V any] struct {
	v    V
	b    []byte   // the encoded value, with LocalOptions.Copy only
	exp  int64    // deadline on the tier's clock
	tags []string // the entry's tags, nil when untagged
}

// localTier holds decoded values of one Typed.
type localTier[V any] struct {
	c      *otter.Cache[string, *localEntry[V]]
	ttl    time.Duration
	copy   bool
	now    func() int64
	closed atomic.Bool
	events bool // the cache takes events: report local hits and misses
}

func newLocalTier[V any](o LocalOptions) *localTier[V] {
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultLocalMaxEntries
	}
	if o.TTL <= 0 {
		o.TTL = DefaultLocalTTL
	}
	// No ExpiryCalculator: deadlines are checked on read, so the engine
	// starts no goroutine, and expired entries go by the size bound.
	c := otter.Must(&otter.Options[string, *localEntry[V]]{
		MaximumSize: o.MaxEntries,
	})
	return &localTier[V]{c: c, ttl: o.TTL, copy: o.Copy, now: monotonicNow}
}

// get returns the live entry of key.
func (l *localTier[V]) get(key string) (*localEntry[V], bool) {
	e, ok := l.c.GetIfPresent(key)
	if !ok {
		return nil, false
	}
	if l.now() >= e.exp || l.closed.Load() {
		l.c.Invalidate(key)
		return nil, false
	}
	return e, true
}

// lifetime returns how long a value may live locally when its remote TTL
// is remote (0: none, or unknown).
func (l *localTier[V]) lifetime(remote time.Duration) time.Duration {
	if remote > 0 && remote < l.ttl {
		return remote
	}
	return l.ttl
}

func (l *localTier[V]) evict(key string) { l.c.Invalidate(key) }

func (l *localTier[V]) evictAll() { l.c.InvalidateAll() }

func (l *localTier[V]) evictTag(tag string) {
	var keys []string
	for k, e := range l.c.All() {
		for _, t := range e.tags {
			if t == tag {
				keys = append(keys, k)
				break
			}
		}
	}
	for _, k := range keys {
		l.c.Invalidate(k)
	}
}

func (l *localTier[V]) len() int {
	l.c.CleanUp()
	return l.c.EstimatedSize()
}

// evictor is what coherence needs of a local tier, whatever its V.
type evictor interface {
	evict(key string)
	evictAll()
	evictTag(tag string)
}

// coherenceStripes is the number of write generations coherence keeps:
// keys share them by hash, and a shared one costs only a local miss.
const coherenceStripes = 256

// coherence keeps one Typed's local tier coherent with the writes of this
// process and, through the backplane, of others, and publishes its writes.
//
// Ordering: every write of a key bumps the key's generation before and
// after the remote operation, and drops the local entry after it; an
// invalidation received bumps and drops too. A value is put in the local
// tier only when no generation change happened since the value was known
// to be current (for a read: since before the remote read; for a write:
// between the write's own two bumps, so no other write overlapped it), and
// the generation is checked again after the put, which undoes it if a
// change raced it. So a local entry never survives a write or an
// invalidation that completed after it was read.
type coherence struct {
	gens   [coherenceStripes]atomic.Uint64
	all    atomic.Uint64 // bumped by Clear, tags, resets: every key changes
	seed   maphash.Seed
	tier   evictor // nil without a local tier
	bp     Backplane
	ns     string
	origin string
	// publishTimeout bounds a Publish, which runs with the writer's
	// context values but not its cancellation: the write has landed, and
	// the other processes must hear of it.
	publishTimeout time.Duration
	// publishes counts the publishes running on goroutines of their own
	// (see publish); Typed.Wait waits for them.
	publishes tracker.Tracker
	onError   func(context.Context, error)
	events    Cache // where events go (the Typed's wrapper)

	stopMu sync.Mutex
	stop   func() // ends the subscription; nil when none or stopped
}

func newOrigin() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// token returns key's current generation.
func (co *coherence) token(key string) uint64 {
	return co.gens[maphash.String(co.seed, key)%coherenceStripes].Load() + co.all.Load()
}

// begin marks the start of a write of keys and returns the token of the
// first key after its bump.
func (co *coherence) begin(keys ...string) uint64 {
	var tok uint64
	for i, k := range keys {
		g := co.gens[maphash.String(co.seed, k)%coherenceStripes].Add(1)
		if i == 0 {
			tok = g + co.all.Load()
		}
	}
	return tok
}

// end marks the end of a write of keys: it bumps their generations, drops
// their local entries and returns the token of the first key after its
// bump.
func (co *coherence) end(keys ...string) uint64 {
	var tok uint64
	for i, k := range keys {
		g := co.gens[maphash.String(co.seed, k)%coherenceStripes].Add(1)
		if i == 0 {
			tok = g + co.all.Load()
		}
		if co.tier != nil {
			co.tier.evict(k)
		}
	}
	return tok
}

// endAll marks a change of every key (Clear) and drops the local tier.
func (co *coherence) endAll() {
	co.all.Add(1)
	if co.tier != nil {
		co.tier.evictAll()
	}
}

// endTags marks the invalidation of tags and drops their local entries.
func (co *coherence) endTags(tags []string) {
	co.all.Add(1)
	if co.tier != nil {
		for _, t := range tags {
			co.tier.evictTag(t)
		}
	}
}

// publish tells the other processes that keys (or, with all, every key)
// of the namespace changed, after a write that landed. Trouble goes to
// OnError and the hooks.
//
// The publish is not cut short by the end of ctx (the other processes must
// hear of the write), but the writer does not wait for it past that end: a
// writer whose ctx can end waits for the publish or for ctx, whichever
// comes first, and the publish goes on without it, bounded by
// publishTimeout. A slow or frozen backplane thus never holds a write past
// its caller's deadline. The in-process backplane delivers at once, and
// inline, so that its writes stay synchronous.
func (co *coherence) publish(ctx context.Context, all bool, keys ...string) {
	if co.bp == nil {
		return
	}
	inv := Invalidation{Namespace: co.ns, All: all, Origin: co.origin}
	if !all {
		inv.Keys = keys
	}
	if _, inline := co.bp.(*memoryBackplane); inline || ctx.Done() == nil {
		co.send(ctx, inv)
		return
	}
	inv.Keys = slices.Clone(inv.Keys) // the caller may reuse keys once it returns
	co.publishes.Run(ctx, func() { co.send(ctx, inv) })
}

// send publishes inv, with ctx's values but not its cancellation, for at
// most publishTimeout.
func (co *coherence) send(ctx context.Context, inv Invalidation) {
	pctx := context.WithoutCancel(ctx)
	if co.publishTimeout > 0 {
		var cancel context.CancelFunc
		pctx, cancel = context.WithTimeout(pctx, co.publishTimeout)
		defer cancel()
	}
	if err := co.bp.Publish(pctx, inv); err != nil {
		co.fail(context.WithoutCancel(ctx), fmt.Errorf("cachekit: backplane publish: %w", err))
	}
}

// fail reports backplane trouble.
func (co *coherence) fail(ctx context.Context, err error) {
	Emit(ctx, co.events, Event{Kind: EventBackplaneError, Err: err})
	if co.onError != nil {
		co.onError(ctx, err)
	}
}

// wrote reports whether a write that returned err may have changed the
// cache, so that its invalidation must be published.
func wrote(err error) bool {
	return err == nil || errors.Is(err, ErrUnknownOutcome)
}

// wroteSome is wrote for a write that spans keys or servers (SetMany or
// Delete of several keys, Clear, the stamps of InvalidateTags): the failure
// of one part does not undo the others, and the error may tell only of the
// part that failed (a memcached pool with a server down, a Redis Cluster
// with a master frozen). So only an error that proves nothing was sent
// (the call was refused before any I/O) counts as nothing written: an
// invalidation too many only costs the other processes a miss, one too few
// leaves them serving what the write removed.
func wroteSome(err error) bool {
	return wrote(err) || !(errors.Is(err, ErrInvalidKey) || errors.Is(err, ErrInvalidTTL) ||
		errors.Is(err, ErrFlushNotAllowed) || errors.Is(err, ErrClosed) || errors.Is(err, ErrEncode))
}

// receive applies an invalidation from the backplane.
func (co *coherence) receive(inv Invalidation) {
	if inv.Origin == co.origin {
		return
	}
	ev := Event{Kind: EventInvalidation}
	switch {
	case inv.Reset:
		co.endAll()
	case inv.Namespace != co.ns:
		return
	case inv.All:
		co.endAll()
	default:
		if len(inv.Keys) == 1 {
			ev.Key = inv.Keys[0]
		}
		for _, k := range inv.Keys {
			if tag, ok := cutTagKey(k); ok {
				co.endTags([]string{tag})
				continue
			}
			co.end(k)
		}
	}
	Emit(context.Background(), co.events, ev)
}

// subscribe starts receiving invalidations.
func (co *coherence) subscribe() {
	stop := co.bp.Subscribe(co.receive, func(err error) {
		co.fail(context.Background(), fmt.Errorf("cachekit: backplane subscription: %w", err))
	})
	co.stopMu.Lock()
	co.stop = stop
	co.stopMu.Unlock()
}

// unsubscribe ends the subscription, if any, and waits for it.
func (co *coherence) unsubscribe() {
	co.stopMu.Lock()
	stop := co.stop
	co.stop = nil
	co.stopMu.Unlock()
	if stop != nil {
		stop()
	}
}

// coherent is the Cache that Typed.Cache returns when the Typed has a
// local tier or a backplane: it forwards every call to the cache given to
// NewTyped, and around each write drops the written keys from the local
// tier and publishes their invalidation.
type coherent struct {
	c  Cache
	co *coherence
}

var (
	_ Cache        = (*coherent)(nil)
	_ EventHandler = (*coherent)(nil)
)

// newCoherent returns the wrapper, with the optional interfaces c has.
func newCoherent(c Cache, co *coherence) Cache {
	w := &coherent{c: c, co: co}
	_, cad := c.(CompareAndDeleter)
	_, cas := c.(CompareAndSwapper)
	_, ver := c.(Versioner) // implies cad and cas
	if _, sg := c.(SharedGetter); sg {
		switch {
		case ver:
			return &coherentVS{coherentV{coherentCADCAS{w}}}
		case cad && cas:
			return &coherentCADCASS{coherentCADCAS{w}}
		case cad:
			return &coherentCADS{coherentCAD{w}}
		case cas:
			return &coherentCASS{coherentCAS{w}}
		}
		return &coherentS{w}
	}
	switch {
	case ver:
		return &coherentV{coherentCADCAS{w}}
	case cad && cas:
		return &coherentCADCAS{w}
	case cad:
		return &coherentCAD{w}
	case cas:
		return &coherentCAS{w}
	}
	return w
}

// The wrappers of a CompareAndDeleter, a CompareAndSwapper, and a cache
// that is both.
type (
	coherentCAD    struct{ *coherent }
	coherentCAS    struct{ *coherent }
	coherentCADCAS struct{ *coherent }
)

var (
	_ CompareAndDeleter = (*coherentCAD)(nil)
	_ CompareAndSwapper = (*coherentCAS)(nil)
	_ CompareAndDeleter = (*coherentCADCAS)(nil)
	_ CompareAndSwapper = (*coherentCADCAS)(nil)
)

// The wrappers of a SharedGetter: GetShared reads, so it goes straight
// to the wrapped cache.
type (
	coherentS       struct{ *coherent }
	coherentCADS    struct{ coherentCAD }
	coherentCASS    struct{ coherentCAS }
	coherentCADCASS struct{ coherentCADCAS }
)

var (
	_ SharedGetter      = (*coherentS)(nil)
	_ SharedGetter      = (*coherentCADS)(nil)
	_ CompareAndDeleter = (*coherentCADS)(nil)
	_ SharedGetter      = (*coherentCASS)(nil)
	_ CompareAndSwapper = (*coherentCASS)(nil)
	_ SharedGetter      = (*coherentCADCASS)(nil)
	_ CompareAndDeleter = (*coherentCADCASS)(nil)
	_ CompareAndSwapper = (*coherentCADCASS)(nil)
)

func (w *coherentS) GetShared(ctx context.Context, key string) ([]byte, error) {
	return w.c.(SharedGetter).GetShared(ctx, key)
}

func (w *coherentCADS) GetShared(ctx context.Context, key string) ([]byte, error) {
	return w.c.(SharedGetter).GetShared(ctx, key)
}

func (w *coherentCASS) GetShared(ctx context.Context, key string) ([]byte, error) {
	return w.c.(SharedGetter).GetShared(ctx, key)
}

func (w *coherentCADCASS) GetShared(ctx context.Context, key string) ([]byte, error) {
	return w.c.(SharedGetter).GetShared(ctx, key)
}

func (w *coherentCAD) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	return w.compareAndDelete(ctx, key, old)
}

func (w *coherentCAS) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	return w.compareAndSwap(ctx, key, old, new, ttl)
}

func (w *coherentCADCAS) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	return w.compareAndDelete(ctx, key, old)
}

func (w *coherentCADCAS) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	return w.compareAndSwap(ctx, key, old, new, ttl)
}

// The wrappers of a Versioner (a CompareAndDeleter and a
// CompareAndSwapper), and of one that is also a SharedGetter. GetVersion
// reads, so it goes straight to the wrapped cache; the other methods write.
type (
	coherentV  struct{ coherentCADCAS }
	coherentVS struct{ coherentV }
)

var (
	_ Versioner    = (*coherentV)(nil)
	_ Versioner    = (*coherentVS)(nil)
	_ SharedGetter = (*coherentVS)(nil)
)

func (w *coherentV) GetVersion(ctx context.Context, key string) ([]byte, uint64, error) {
	return w.c.(Versioner).GetVersion(ctx, key)
}

func (w *coherentV) AddVersion(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	return w.addVersion(ctx, key, value, ttl)
}

func (w *coherentV) SwapVersion(ctx context.Context, key string, version uint64, value []byte, ttl time.Duration) (uint64, bool, error) {
	return w.swapVersion(ctx, key, version, value, ttl)
}

func (w *coherentV) DeleteVersion(ctx context.Context, key string, version uint64) (bool, error) {
	return w.deleteVersion(ctx, key, version)
}

func (w *coherentVS) GetShared(ctx context.Context, key string) ([]byte, error) {
	return w.c.(SharedGetter).GetShared(ctx, key)
}

func (w *coherent) addVersion(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	w.co.begin(key)
	ver, err := w.c.(Versioner).AddVersion(ctx, key, value, ttl)
	w.after(ctx, err, key)
	return ver, err
}

func (w *coherent) swapVersion(ctx context.Context, key string, version uint64, value []byte, ttl time.Duration) (uint64, bool, error) {
	w.co.begin(key)
	ver, ok, err := w.c.(Versioner).SwapVersion(ctx, key, version, value, ttl)
	w.co.end(key)
	if ok || (err != nil && wrote(err)) {
		w.co.publish(ctx, false, key)
	}
	return ver, ok, err
}

func (w *coherent) deleteVersion(ctx context.Context, key string, version uint64) (bool, error) {
	w.co.begin(key)
	ok, err := w.c.(Versioner).DeleteVersion(ctx, key, version)
	w.co.end(key)
	if ok || (err != nil && wrote(err)) {
		w.co.publish(ctx, false, key)
	}
	return ok, err
}

func (w *coherent) compareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	w.co.begin(key)
	ok, err := w.c.(CompareAndDeleter).CompareAndDelete(ctx, key, old)
	w.co.end(key)
	if ok || (err != nil && wrote(err)) {
		w.co.publish(ctx, false, key)
	}
	return ok, err
}

func (w *coherent) compareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	w.co.begin(key)
	ok, err := w.c.(CompareAndSwapper).CompareAndSwap(ctx, key, old, new, ttl)
	w.co.end(key)
	if ok || (err != nil && wrote(err)) {
		w.co.publish(ctx, false, key)
	}
	return ok, err
}

func (w *coherent) Get(ctx context.Context, key string) ([]byte, error) { return w.c.Get(ctx, key) }

func (w *coherent) GetMany(ctx context.Context, keys []string) (map[string][]byte, error) {
	return w.c.GetMany(ctx, keys)
}

func (w *coherent) Exists(ctx context.Context, key string) (bool, error) {
	return w.c.Exists(ctx, key)
}

func (w *coherent) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	w.co.begin(key)
	err := w.c.Set(ctx, key, value, ttl)
	w.after(ctx, err, key)
	return err
}

func (w *coherent) SetMany(ctx context.Context, items map[string][]byte, ttl time.Duration) error {
	keys := make([]string, 0, len(items))
	for k := range items {
		keys = append(keys, k)
	}
	w.co.begin(keys...)
	err := w.c.SetMany(ctx, items, ttl)
	w.after(ctx, err, keys...)
	return err
}

func (w *coherent) Add(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	w.co.begin(key)
	err := w.c.Add(ctx, key, value, ttl)
	w.after(ctx, err, key)
	return err
}

func (w *coherent) Delete(ctx context.Context, keys ...string) (int, error) {
	w.co.begin(keys...)
	n, err := w.c.Delete(ctx, keys...)
	w.after(ctx, err, keys...)
	return n, err
}

func (w *coherent) Increment(ctx context.Context, key string, delta int64) (int64, error) {
	w.co.begin(key)
	n, err := w.c.Increment(ctx, key, delta)
	w.after(ctx, err, key)
	return n, err
}

func (w *coherent) Expire(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	w.co.begin(key)
	ok, err := w.c.Expire(ctx, key, ttl)
	w.after(ctx, err, key)
	return ok, err
}

func (w *coherent) Clear(ctx context.Context) error {
	err := w.c.Clear(ctx)
	w.co.endAll()
	if wroteSome(err) {
		w.co.publish(ctx, true)
	}
	return err
}

// after ends a write of keys that returned err.
func (w *coherent) after(ctx context.Context, err error, keys ...string) {
	if len(keys) == 0 {
		return
	}
	w.co.end(keys...)
	if wrote(err) || (len(keys) > 1 && wroteSome(err)) {
		w.co.publish(ctx, false, keys...)
	}
}

// Close closes the wrapped cache.
func (w *coherent) Close() error { return w.c.Close() }

// HandleEvent passes ev to the wrapped cache if it handles events.
func (w *coherent) HandleEvent(ctx context.Context, ev Event) { Emit(ctx, w.c, ev) }

// Unwrap returns the cache given to NewTyped.
func (w *coherent) Unwrap() Cache { return w.c }
