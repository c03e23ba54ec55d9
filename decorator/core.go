package decorator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/internal/flight"
)

// ErrHardTimeout is reported (inside a *cachekit.Error) when a caller has
// waited Options.HardTimeout for fn and no stale value exists. It wraps
// context.DeadlineExceeded, so errors.Is(err, context.DeadlineExceeded)
// reports true as well.
var ErrHardTimeout = fmt.Errorf("decorator: hard timeout: %w", context.DeadlineExceeded)

// errGoexit is the error of a load whose fn called runtime.Goexit.
var errGoexit = errors.New("decorator: fn called runtime.Goexit")

// CompareAndDeleter is an optional interface for a [cachekit.Cache]: it
// deletes key only if its value equals value, atomically. The lease of
// Options.Lease uses it, when the cache implements it, to release a lease
// without any risk of deleting a lease that another process won after this
// one's expired. Without it, release is Get, compare, Delete, skipped once
// the lease is within a tenth of LeaseTTL of its expiry; the remaining
// race needs a holder whose lease expires between the Get and the Delete.
// A Redis backend implements it with a Lua script, the memory backend
// with an atomic compute, Memcached with gets/cas.
type CompareAndDeleter interface {
	CompareAndDelete(ctx context.Context, key string, value []byte) (deleted bool, err error)
}

// state says what a read found.
type state uint8

const (
	stMiss     state = iota // absent, expired, or undecodable
	stFresh                 // a value before its expiry
	stStale                 // a value past its expiry, within fail-safe's window
	stNegative              // a remembered "not found" before its expiry
)

// entry is the result of reading one key.
type entry[V any] struct {
	state state
	v     V
	raw   []byte // the stored bytes
	h     header // envelope mode only
}

// stripe serializes invalidations with the writes of loads that overlap
// them: a load reads the epoch before it calls fn and writes only if the
// epoch is unchanged, holding the read lock; Invalidate bumps the epoch and
// deletes holding the write lock.
type stripe struct {
	mu    sync.RWMutex
	epoch atomic.Uint64
}

const nStripes = 64

// core is what Cached and CachedMany share.
type core[K comparable, V any] struct {
	typed   *cachekit.Typed[V]
	cache   cachekit.Cache
	o       Options[K]
	keys    *keyer[K]
	env     bool
	seed    maphash.Seed
	stripes [nStripes]stripe

	bgMu   sync.Mutex
	bgCond sync.Cond
	bgN    int
}

func (c *core[K, V]) init(typed *cachekit.Typed[V], fn any, opts *Options[K]) {
	if typed == nil {
		panic("decorator: nil *cachekit.Typed")
	}
	o, err := normalize(opts)
	if err != nil {
		panic(err.Error())
	}
	if o.Name == "" {
		if o.Name, err = deriveName(fn); err != nil {
			panic(err.Error())
		}
	}
	keys, err := newKeyer[K](o.Name, o.KeyFunc)
	if err != nil {
		panic(err.Error())
	}
	c.typed, c.cache, c.o, c.keys, c.env = typed, typed.Cache(), o, keys, o.envelope()
	c.seed = maphash.MakeSeed()
	c.bgCond.L = &c.bgMu
}

// noCancel is the cancel function of a context that was not derived.
func noCancel() {}

// cacheCtx bounds one cache operation by CacheTimeout.
func (c *core[K, V]) cacheCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.o.CacheTimeout <= 0 {
		return ctx, noCancel
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= c.o.CacheTimeout {
		return ctx, noCancel
	}
	return context.WithTimeout(ctx, c.o.CacheTimeout)
}

// writeCtx is the context of a write or lease release: it keeps ctx's
// values but not its cancellation, because a value that was loaded should
// reach the cache even when its callers have gone, bounded by CacheTimeout
// or, without one, by BackgroundTimeout.
func (c *core[K, V]) writeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	d := c.o.CacheTimeout
	if d <= 0 {
		d = c.o.BackgroundTimeout
	}
	return context.WithTimeout(context.WithoutCancel(ctx), d)
}

func (c *core[K, V]) report(ctx context.Context, err error) {
	if c.o.OnError != nil && err != nil {
		c.o.OnError(ctx, err)
	}
}

func (c *core[K, V]) emit(ctx context.Context, kind cachekit.EventKind, key string, err error, d time.Duration) {
	cachekit.Emit(ctx, c.cache, cachekit.Event{Kind: kind, Key: key, Err: err, Duration: d})
}

func (c *core[K, V]) stripe(key string) *stripe {
	return &c.stripes[maphash.String(c.seed, key)%nStripes]
}

// ctxError wraps the caller's context error.
func ctxError(key string, err error) error {
	return &cachekit.Error{Op: "Cached", Key: key, Err: err}
}

// read sets *e to what is stored under key. A miss is not an error; an
// undecodable value is an error wrapping cachekit.ErrDecode. (It fills *e
// rather than returning an entry so that the hit path copies the value
// once.)
func (c *core[K, V]) read(ctx context.Context, key string, e *entry[V]) error {
	cctx, cancel := c.cacheCtx(ctx)
	b, err := c.cache.Get(cctx, key)
	cancel()
	if err != nil {
		if errors.Is(err, cachekit.ErrNotFound) {
			return nil
		}
		return cachekit.WrapError("Get", key, err)
	}
	return c.parseInto(ctx, key, b, 0, e)
}

// parse decodes stored bytes in the configured format; see parseInto.
func (c *core[K, V]) parse(ctx context.Context, key string, b []byte, now int64) (entry[V], error) {
	var e entry[V]
	err := c.parseInto(ctx, key, b, now, &e)
	return e, err
}

// parseInto decodes stored bytes in the configured format into *e, which
// must be zero. now is the time to judge expiry by, in Unix nanoseconds; 0
// means time.Now (read only in the envelope format: the plain hit path
// doesn't pay for a clock read).
func (c *core[K, V]) parseInto(ctx context.Context, key string, b []byte, now int64, e *entry[V]) error {
	e.raw = b
	if !c.env {
		if hasMagic(b) {
			return c.decodeError(ctx, key, errors.New("the value is a decorator envelope, written with fail-safe, "+
				"early refresh or negative caching on"))
		}
		v, err := c.typed.Decode(b)
		if err != nil {
			return c.decodeError(ctx, key, err)
		}
		e.state, e.v = stFresh, v
		return nil
	}
	h, payload, ok := parseEnvelope(b)
	if !ok {
		return c.decodeError(ctx, key, errors.New("the value is not a version 1 decorator envelope "+
			"(written with fail-safe, early refresh and negative caching off, or by another version)"))
	}
	if now == 0 {
		now = time.Now().UnixNano()
	}
	fresh := h.expiry == 0 || now < h.expiry
	if h.flags&flagNegative != 0 {
		if fresh {
			e.state, e.h = stNegative, h
		}
		return nil
	}
	st := stFresh
	if !fresh {
		if now >= h.staleUntil {
			return nil
		}
		st = stStale
	}
	v, err := c.typed.Decode(payload)
	if err != nil {
		return c.decodeError(ctx, key, err)
	}
	e.state, e.v, e.h = st, v, h
	return nil
}

func (c *core[K, V]) decodeError(ctx context.Context, key string, err error) error {
	if !errors.Is(err, cachekit.ErrDecode) {
		err = fmt.Errorf("%w: %w", cachekit.ErrDecode, err)
	}
	c.emit(ctx, cachekit.EventDecodeError, key, err, 0)
	return &cachekit.Error{Op: "Get", Key: key, Err: err}
}

// ttlFor returns the TTL of a result, and false when it must not be stored.
func (c *core[K, V]) ttlFor(k K, v V) (time.Duration, bool) {
	if c.o.SkipCache != nil && c.o.SkipCache(k, v) {
		return 0, false
	}
	ttl := c.o.TTL
	switch {
	case c.o.TTLFunc != nil:
		ttl = c.o.TTLFunc(k, v)
	case ttl == 0:
		ttl = c.typed.DefaultTTL()
	}
	return ttl, ttl >= 0
}

// encode returns the bytes to store for a loaded value and their physical
// TTL, or false when the value must not be stored.
func (c *core[K, V]) encode(ctx context.Context, k K, key string, v V, took time.Duration, now time.Time) ([]byte, time.Duration, bool) {
	ttl, ok := c.ttlFor(k, v)
	if !ok {
		return nil, 0, false
	}
	b, err := c.typed.Encode(v)
	if err != nil {
		c.report(ctx, cachekit.WrapError("Set", key, err))
		return nil, 0, false
	}
	if !c.env {
		return b, ttl, true
	}
	h := header{storedAt: now.UnixNano(), delta: int64(took)}
	phys := ttl
	if ttl > 0 {
		h.expiry = now.Add(ttl).UnixNano()
		h.staleUntil = h.expiry
		if c.o.FailSafeMaxStale > 0 {
			h.staleUntil = now.Add(ttl + c.o.FailSafeMaxStale).UnixNano()
			phys = ttl + c.o.FailSafeMaxStale
		}
	}
	return appendEnvelope(make([]byte, 0, envHeaderLen+len(b)), h, b), phys, true
}

// negativeEntry returns the envelope of a remembered "not found".
func (c *core[K, V]) negativeEntry(took time.Duration, now time.Time) []byte {
	exp := now.Add(c.o.NegativeTTL).UnixNano()
	return appendEnvelope(nil, header{flags: flagNegative, storedAt: now.UnixNano(), expiry: exp, staleUntil: exp, delta: int64(took)}, nil)
}

// throttled returns prev re-stored by fail-safe: flagged stale, fresh for
// FailSafeThrottle (never past its stale window), and its physical TTL.
func (c *core[K, V]) throttled(prev *entry[V], now time.Time) ([]byte, time.Duration, bool) {
	h := prev.h
	left := time.Duration(h.staleUntil - now.UnixNano())
	if left <= 0 {
		return nil, 0, false
	}
	h.flags |= flagStale
	h.expiry = min(now.Add(c.o.FailSafeThrottle).UnixNano(), h.staleUntil)
	return appendEnvelope(nil, h, prev.raw[envHeaderLen:]), left, true
}

// write stores b under key unless an invalidation of key's stripe happened
// since epoch was read, or, with guard set, unless key no longer holds
// exactly guard (it was deleted or replaced meanwhile: an early refresh
// must not resurrect a deleted key). It reports whether it stored b.
func (c *core[K, V]) write(ctx context.Context, key string, b []byte, ttl time.Duration, epoch uint64, guard []byte) bool {
	s := c.stripe(key)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.epoch.Load() != epoch {
		return false
	}
	wctx, cancel := c.writeCtx(ctx)
	defer cancel()
	if guard != nil {
		cur, err := c.cache.Get(wctx, key)
		if err != nil {
			if !errors.Is(err, cachekit.ErrNotFound) {
				c.report(ctx, cachekit.WrapError("Get", key, err))
			}
			return false
		}
		if !bytes.Equal(cur, guard) {
			return false
		}
	}
	if err := c.cache.Set(wctx, key, b, ttl); err != nil {
		c.report(ctx, cachekit.WrapError("Set", key, err))
		return false
	}
	return true
}

// invalidate deletes keys, bumping their stripes' epochs so that loads
// running meanwhile don't store what they loaded before the invalidation.
func (c *core[K, V]) invalidate(ctx context.Context, keys []string, del bool) error {
	idx := make([]int, 0, len(keys))
	seen := map[int]bool{}
	for _, k := range keys {
		i := int(maphash.String(c.seed, k) % nStripes)
		if !seen[i] {
			seen[i] = true
			idx = append(idx, i)
		}
	}
	sort.Ints(idx) // one lock order for everyone
	for _, i := range idx {
		c.stripes[i].mu.Lock()
		c.stripes[i].epoch.Add(1)
	}
	defer func() {
		for _, i := range idx {
			c.stripes[i].mu.Unlock()
		}
	}()
	if !del || len(keys) == 0 {
		return nil
	}
	cctx, cancel := c.cacheCtx(ctx)
	defer cancel()
	_, err := c.cache.Delete(cctx, keys...)
	return cachekit.WrapError("Delete", "", err)
}

// goBackground runs f in a goroutine counted by wait.
func (c *core[K, V]) goBackground(f func()) {
	c.bgMu.Lock()
	c.bgN++
	c.bgMu.Unlock()
	go func() {
		defer func() {
			c.bgMu.Lock()
			c.bgN--
			if c.bgN == 0 {
				c.bgCond.Broadcast()
			}
			c.bgMu.Unlock()
		}()
		f()
	}()
}

// wait blocks until no background work is running.
func (c *core[K, V]) wait() {
	c.bgMu.Lock()
	for c.bgN > 0 {
		c.bgCond.Wait()
	}
	c.bgMu.Unlock()
}

// panicError turns a recovered panic into the error every waiter gets.
func panicError(key string, r any) error {
	return &cachekit.Error{Op: "Cached", Key: key,
		Err: fmt.Errorf("%w: %w", cachekit.ErrLoaderPanic, &flight.PanicError{Value: r, Stack: debug.Stack()})}
}
