package decorator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/internal/flight"
	"github.com/cachekit/cachekit/internal/tracker"
)

// ErrHardTimeout is reported (inside a *cachekit.Error) when a caller has
// waited Options.HardTimeout for fn and no stale value exists. It wraps
// context.DeadlineExceeded, so errors.Is(err, context.DeadlineExceeded)
// reports true as well.
var ErrHardTimeout = fmt.Errorf("decorator: hard timeout: %w", context.DeadlineExceeded)

// errGoexit is the error of a load whose fn called runtime.Goexit (t.FailNow
// in a test's fn, say): a load that ended without returning, reported like
// a panic, as Typed.GetOrLoad reports it.
var errGoexit = fmt.Errorf("%w: decorator: fn called runtime.Goexit", cachekit.ErrLoaderPanic)

// CompareAndDeleter is [cachekit.CompareAndDeleter].
//
// Deprecated: the optional interface lives in the root package, where the
// backends implement it and the wrappers forward it; use
// cachekit.CompareAndDeleter.
type CompareAndDeleter = cachekit.CompareAndDeleter

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
	seen  uint64 // core.ended before the read began
}

// stripe coordinates, for the keys that hash to it, the writes of loads
// with the invalidations that overlap them, without holding a lock across
// any cache operation:
//
//   - a load reads epoch before it calls fn, and registers its write in
//     writes only if epoch is unchanged (a short lock);
//   - Invalidate bumps epoch and takes the key's registered writes out of
//     writes (the same short lock), waits for those writes to end, and
//     only then deletes. A write registered before the bump has landed by
//     then; one that would register after it sees the new epoch and is
//     dropped. So no value loaded before an Invalidate is stored after it
//     returns, and a slow Delete holds up nobody but its caller.
//
// A registered write also carries the value it writes, so that a load of
// the key that starts while the write is on its way takes that value
// rather than calling fn again (see core.ended for the writes that have
// landed).
type stripe[V any] struct {
	mu     sync.Mutex
	epoch  atomic.Uint64                 // written under mu
	writes map[string][]*pendingWrite[V] // guarded by mu
}

// nRecent is how many ended writes a core remembers the keys of.
const nRecent = 256

// pendingWrite is a write of a loaded value that has not ended yet.
type pendingWrite[V any] struct {
	key   string
	done  chan struct{} // closed when the write has ended
	v     V             // the value written, unless neg
	neg   bool          // a remembered "not found"
	stale bool          // a stale value re-stored by fail-safe
}

const nStripes = 64

// core is what Cached and CachedMany share.
type core[K comparable, V any] struct {
	typed   *cachekit.Typed[V]
	cache   cachekit.Cache
	local   *cachekit.LocalTier[V] // the Typed's local tier; nil without one
	events  bool                   // the cache below the local tier takes events
	o       Options[K]
	keys    *keyer[K]
	env     bool
	seed    maphash.Seed
	stripes [nStripes]stripe[V]

	bg tracker.Tracker // background work (goBackground)

	// ended counts the writes that have ended, and recent holds the key
	// hashes of the last ones, so that a load can tell whether a write of
	// its key landed after its caller's read began, and only then read
	// again before calling fn. (A caller reads ended before its read: one
	// atomic load on the hit path.)
	endMu  sync.Mutex
	ended  atomic.Uint64   // written under endMu
	recent [nRecent]uint64 // recent[i%nRecent]: the hash of the i-th ended write's key
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
	if c.local = typed.LocalTier(); c.local != nil {
		// Typed.Cache() is then the coherent wrapper of the cache given to
		// NewTyped: local hits and misses are worth an event only if that
		// cache takes events (so that a hit costs no call otherwise).
		if u, ok := c.cache.(interface{ Unwrap() cachekit.Cache }); ok {
			_, c.events = u.Unwrap().(cachekit.EventHandler)
		}
	}
	c.seed = maphash.MakeSeed()
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
// reach the cache even when its callers have gone. It is bounded by
// CacheTimeout when that is set. Without it, the context has no deadline,
// so that the backend applies its own operation timeout (the URL's
// timeout), and is cancelled after BackgroundTimeout in case the backend
// has none.
func (c *core[K, V]) writeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	base := context.WithoutCancel(ctx)
	if c.o.CacheTimeout > 0 {
		return context.WithTimeout(base, c.o.CacheTimeout)
	}
	wctx, cancel := context.WithCancel(base)
	t := time.AfterFunc(c.o.BackgroundTimeout, cancel)
	return wctx, func() {
		t.Stop()
		cancel()
	}
}

func (c *core[K, V]) report(ctx context.Context, err error) {
	if c.o.OnError != nil && err != nil {
		c.o.OnError(ctx, err)
	}
}

func (c *core[K, V]) emit(ctx context.Context, kind cachekit.EventKind, key string, err error, d time.Duration) {
	cachekit.Emit(ctx, c.cache, cachekit.Event{Kind: kind, Key: key, Err: err, Duration: d})
}

func (c *core[K, V]) stripe(key string) *stripe[V] {
	return &c.stripes[c.hash(key)%nStripes]
}

func (c *core[K, V]) hash(key string) uint64 { return maphash.String(c.seed, key) }

// ctxError wraps the caller's context error.
func ctxError(key string, err error) error {
	return &cachekit.Error{Op: "Cached", Key: key, Err: err}
}

// read sets *e to what is stored under key, the argument k's key: from
// the local tier when it holds key, else from the cache (and then keeps
// what it read in the local tier). A miss is not an error; an undecodable
// value is an error wrapping cachekit.ErrDecode. (It fills *e rather than
// returning an entry so that the hit path copies the value once.)
func (c *core[K, V]) read(ctx context.Context, k K, key string, e *entry[V]) error {
	var tok uint64
	if c.local != nil {
		if c.readLocal(ctx, key, e) {
			return nil
		}
		tok = c.local.Token(key) // before the read: see LocalTier.Fill
	}
	cctx, cancel := c.cacheCtx(ctx)
	b, err := c.cache.Get(cctx, key)
	cancel()
	if err != nil {
		if errors.Is(err, cachekit.ErrNotFound) {
			return nil
		}
		return cachekit.WrapError("Get", key, err)
	}
	if err := c.parseInto(ctx, key, b, 0, e); err != nil {
		return err
	}
	if c.local != nil {
		c.keepRead(k, key, e, tok)
	}
	return nil
}

// readLocal sets *e to key's entry in the local tier and reports whether
// there was one that counts: in the plain format, the Typed's shared entry
// (a fresh value); in the envelope format, the decorator's private entry,
// judged now as a read of the cache would be (fresh, stale, or a
// remembered "not found"; one past its fail-safe window is a miss). It
// reports EventLocalHit or EventLocalMiss.
func (c *core[K, V]) readLocal(ctx context.Context, key string, e *entry[V]) bool {
	l := c.local
	if !c.env {
		v, ok := l.Get(key)
		if ok {
			e.state, e.v = stFresh, v
		}
		c.localEvent(ctx, key, ok)
		return ok
	}
	now := time.Now()
	v, b, ok := l.GetPrivate(key, now)
	if ok {
		h, payload, _ := parseEnvelope(b) // private entries hold envelopes only
		st := judge(&h, now.UnixNano())
		if st == stStale || st == stFresh {
			if l.Copy() {
				var err error
				if v, err = c.typed.Decode(payload); err != nil {
					st = stMiss // it decoded when it was kept: cannot happen
				}
			}
		}
		if st != stMiss {
			e.state, e.v, e.h, e.raw = st, v, h, b
			c.localEvent(ctx, key, true)
			return true
		}
	}
	c.localEvent(ctx, key, false)
	return false
}

// localEvent reports a local hit or miss, when the cache takes events.
func (c *core[K, V]) localEvent(ctx context.Context, key string, hit bool) {
	if !c.events {
		return
	}
	kind := cachekit.EventLocalMiss
	if hit {
		kind = cachekit.EventLocalHit
	}
	c.emit(ctx, kind, key, nil, 0)
}

// keepRead keeps in the local tier what a read of key (argument k) found
// in the cache when its coherence token was tok: a plain value for at most
// the TTL this function stores it with (the cache does not tell what is
// left of it), an envelope until the end of its fail-safe window (its
// physical expiry); both for at most LocalOptions.TTL.
func (c *core[K, V]) keepRead(k K, key string, e *entry[V], tok uint64) {
	switch {
	case e.state == stMiss:
	case !c.env:
		if ttl, ok := c.ttlFor(k, e.v); ok {
			c.local.Fill(key, e.v, e.raw, ttl, tok)
		}
	default:
		var ttl time.Duration
		if e.h.staleUntil != 0 {
			if ttl = time.Duration(e.h.staleUntil - time.Now().UnixNano()); ttl <= 0 {
				return
			}
		}
		c.local.FillPrivate(key, e.v, e.raw, ttl, tok)
	}
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
	switch st := judge(&h, now); st {
	case stMiss:
	case stNegative:
		e.state, e.h = st, h
	default:
		v, err := c.typed.Decode(payload)
		if err != nil {
			return c.decodeError(ctx, key, err)
		}
		e.state, e.v, e.h = st, v, h
	}
	return nil
}

// judge returns the state of an envelope with header h at now (Unix
// nanoseconds): a remembered "not found" before its expiry, a value before
// its expiry (fresh) or within its fail-safe window (stale), or a miss.
func judge(h *header, now int64) state {
	fresh := h.expiry == 0 || now < h.expiry
	switch {
	case h.flags&flagNegative != 0:
		if fresh {
			return stNegative
		}
		return stMiss
	case fresh:
		return stFresh
	case now < h.staleUntil:
		return stStale
	}
	return stMiss
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
	at := now.UnixNano()
	h := header{storedAt: at, delta: int64(took)}
	phys := ttl
	if ttl > 0 {
		if c.o.FailSafeMaxStale > 0 {
			phys = addDuration(ttl, c.o.FailSafeMaxStale)
		}
		h.expiry, h.staleUntil = after(at, ttl), after(at, phys)
	}
	return appendEnvelope(make([]byte, 0, envHeaderLen+len(b)), h, b), phys, true
}

// after returns the time d after at, both in Unix nanoseconds, saturating
// at math.MaxInt64: a TTL that reaches past 2262 (the last time UnixNano
// can represent) is as good as no expiry, never a time in the past.
func after(at int64, d time.Duration) int64 {
	if int64(d) > math.MaxInt64-at {
		return math.MaxInt64
	}
	return at + int64(d)
}

// addDuration returns a+b for non-negative a and b, saturating at the
// longest Duration.
func addDuration(a, b time.Duration) time.Duration {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// negativeEntry returns the envelope of a remembered "not found".
func (c *core[K, V]) negativeEntry(took time.Duration, now time.Time) []byte {
	at := now.UnixNano()
	exp := after(at, c.o.NegativeTTL)
	return appendEnvelope(nil, header{flags: flagNegative, storedAt: at, expiry: exp, staleUntil: exp, delta: int64(took)}, nil)
}

// throttled returns prev re-stored by fail-safe: flagged stale, fresh for
// FailSafeThrottle (never past its stale window), and its physical TTL.
func (c *core[K, V]) throttled(prev *entry[V], now time.Time) ([]byte, time.Duration, bool) {
	h := prev.h
	at := now.UnixNano()
	left := time.Duration(h.staleUntil - at)
	if left <= 0 {
		return nil, 0, false
	}
	h.flags |= flagStale
	h.expiry = min(after(at, c.o.FailSafeThrottle), h.staleUntil)
	return appendEnvelope(nil, h, prev.raw[envHeaderLen:]), left, true
}

// register records a write of p.key that a load is about to make,
// unless an invalidation of the key happened since the load read epoch. It
// reports whether the write may go ahead; then end must be called once it
// has ended.
func (c *core[K, V]) register(p *pendingWrite[V], epoch uint64) bool {
	s := c.stripe(p.key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.epoch.Load() != epoch {
		return false
	}
	if s.writes == nil {
		s.writes = map[string][]*pendingWrite[V]{}
	}
	s.writes[p.key] = append(s.writes[p.key], p)
	return true
}

// end records that the registered write p has ended.
func (c *core[K, V]) end(p *pendingWrite[V]) {
	s := c.stripe(p.key)
	s.mu.Lock()
	ws := s.writes[p.key]
	for i, q := range ws {
		if q == p {
			ws = append(ws[:i:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(s.writes, p.key)
	} else {
		s.writes[p.key] = ws
	}
	s.mu.Unlock()
	c.endMu.Lock()
	n := c.ended.Load()
	c.recent[n%nRecent] = c.hash(p.key)
	c.ended.Store(n + 1)
	c.endMu.Unlock()
	close(p.done)
}

// pending returns the newest write of key that has not ended, if any.
func (c *core[K, V]) pending(key string) (pendingWrite[V], bool) {
	p, ok, _ := c.lookup(key, 0)
	return p, ok
}

// lookup returns the newest write of key that has not ended, if any, and
// reports whether a write of key may have ended since c.ended was seen.
func (c *core[K, V]) lookup(key string, seen uint64) (p pendingWrite[V], ok, landed bool) {
	h := c.hash(key)
	s := &c.stripes[h%nStripes]
	s.mu.Lock()
	if ws := s.writes[key]; len(ws) > 0 {
		p = *ws[len(ws)-1]
		s.mu.Unlock()
		return p, true, false
	}
	s.mu.Unlock()
	if c.ended.Load() == seen {
		return p, false, false
	}
	c.endMu.Lock()
	defer c.endMu.Unlock()
	n := c.ended.Load()
	if n-seen > nRecent {
		return p, false, true // too many to tell
	}
	for i := seen; i < n; i++ {
		if c.recent[i%nRecent] == h {
			return p, false, true
		}
	}
	return p, false, false
}

// write stores b, the encoding of v (of a remembered "not found" when v is
// zero and b says so), under key or, with guard set, only if key still
// holds exactly guard (it was not deleted or replaced meanwhile: an early
// refresh must not resurrect a deleted key). It reports whether it stored
// b. It holds no lock: the write was registered (see stripe). With a local
// tier, the write drops key there and is published, like any write through
// the Typed's cache, and then the local tier keeps v (see LocalTier.Set).
func (c *core[K, V]) write(ctx context.Context, key string, b []byte, ttl time.Duration, guard []byte, v V) bool {
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
	var err error
	if c.local != nil {
		err = c.local.Set(wctx, key, b, ttl, v, c.env)
	} else {
		err = c.cache.Set(wctx, key, b, ttl)
	}
	if err != nil {
		c.report(ctx, cachekit.WrapError("Set", key, err))
		return false
	}
	return true
}

// invalidate bumps the epochs of keys, so that loads running meanwhile
// don't store what they loaded before, waits for the writes of keys that
// were already on their way, and then, with del, deletes keys. It holds no
// lock while it waits or deletes.
func (c *core[K, V]) invalidate(ctx context.Context, keys []string, del bool) error {
	var wait []*pendingWrite[V]
	for _, key := range keys {
		s := c.stripe(key)
		s.mu.Lock()
		s.epoch.Add(1)
		wait = append(wait, s.writes[key]...)
		delete(s.writes, key) // later loads must not take these values
		s.mu.Unlock()
	}
	for _, p := range wait {
		select {
		case <-p.done:
		case <-ctx.Done():
			return ctxError("", ctx.Err())
		}
	}
	if !del || len(keys) == 0 {
		return nil
	}
	cctx, cancel := c.cacheCtx(ctx)
	defer cancel()
	_, err := c.cache.Delete(cctx, keys...)
	return cachekit.WrapError("Delete", "", err)
}

// save stores b under p.key for a load that read epoch before it called
// fn: it registers the write (so that Invalidate waits for it and loads
// that start meanwhile take p's value) and makes it in the background,
// tracked by wait, or before returning with now set. then, if not nil,
// runs after the write, whatever became of it (a lease release goes
// there: after the value is stored, so that other processes find it).
func (c *core[K, V]) save(ctx context.Context, p *pendingWrite[V], epoch uint64, b []byte, ttl time.Duration,
	guard []byte, now bool, then func(stored bool)) {
	p.done = make(chan struct{})
	if !c.register(p, epoch) {
		if then != nil {
			if now {
				then(false)
			} else {
				c.goBackground(func() { then(false) })
			}
		}
		return
	}
	work := func() {
		stored := c.write(ctx, p.key, b, ttl, guard, p.v)
		c.end(p)
		if then != nil {
			then(stored)
		}
	}
	if now {
		work()
	} else {
		c.goBackground(work)
	}
}

// goBackground runs f in a goroutine counted by wait.
func (c *core[K, V]) goBackground(f func()) { c.bg.Go(f) }

// wait blocks until no background work is running.
func (c *core[K, V]) wait() { c.bg.Wait() }

// panicError turns a recovered panic into the error every waiter gets.
func panicError(key string, r any) error {
	return &cachekit.Error{Op: "Cached", Key: key,
		Err: fmt.Errorf("%w: %w", cachekit.ErrLoaderPanic, &flight.PanicError{Value: r, Stack: debug.Stack()})}
}
