package decorator

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/cachekit/cachekit"
)

// CachedMany returns a function with fn's signature that memoizes a batch
// function (aiocache's multi_cached): a call reads every argument's key
// with one GetMany, calls fn once with only the arguments that missed, and
// stores what fn returned with one SetMany per TTL (one, unless TTLFunc
// varies). The result holds the hits and fn's results for the requested
// arguments. Arguments that fn's map leaves out are not stored, or, with
// NegativeTTL, remembered as "not found" and left out without calling fn.
//
// Concurrent calls whose arguments overlap don't load an argument twice: a
// call waits for the arguments another call is loading and passes fn only
// the rest. As with Cached, each caller waits only as long as its own ctx
// allows, and a load's ctx is cancelled only when every caller waiting for
// it has gone; a panic in fn is an error for every waiter. fn's errors are
// returned as they are and nothing is stored; with fail-safe, when every
// argument of a failed load has a stale value, the stale values are
// returned instead.
//
// The options apply as they do to Cached, except Lease, SoftTimeout,
// HardTimeout, RefreshAhead and RefreshBeta, which CachedMany does not
// support (it panics when they are set), and NegativeError, which it does
// not use. CachedMany is NewMany(c, fn, opts).Call.
func CachedMany[K comparable, V any](c *cachekit.Typed[V], fn func(context.Context, []K) (map[K]V, error), opts *Options[K]) func(context.Context, []K) (map[K]V, error) {
	return NewMany(c, fn, opts).Call
}

// ManyFunc is a decorated batch function: [ManyFunc.Call] has fn's
// signature. Make one with [NewMany]. It is safe for concurrent use.
type ManyFunc[K comparable, V any] struct {
	core[K, V]
	fn func(context.Context, []K) (map[K]V, error)

	mu       sync.Mutex
	inflight map[string]*batch[K, V] // key -> the batch loading it
}

// NewMany returns the batch function fn decorated with the cache c and
// opts, which may be nil. It panics when fn needs Options.Name or an option
// is invalid or unsupported.
func NewMany[K comparable, V any](c *cachekit.Typed[V], fn func(context.Context, []K) (map[K]V, error), opts *Options[K]) *ManyFunc[K, V] {
	if fn == nil {
		panic("decorator: nil fn")
	}
	if opts != nil && (opts.Lease || opts.SoftTimeout > 0 || opts.HardTimeout > 0 || opts.RefreshAhead != 0 || opts.RefreshBeta != 0) {
		panic("decorator: CachedMany does not support Lease, SoftTimeout, HardTimeout, RefreshAhead or RefreshBeta")
	}
	f := &ManyFunc[K, V]{fn: fn, inflight: map[string]*batch[K, V]{}}
	f.init(c, fn, opts)
	return f
}

// batch is one call of fn, shared by every caller waiting for one of its
// arguments.
type batch[K comparable, V any] struct {
	done   chan struct{}
	res    map[K]V
	stale  map[K]bool // arguments fail-safe answered with a stale value
	err    error
	refs   int // callers waiting; guarded by ManyFunc.mu
	keys   []string
	cancel context.CancelFunc
}

// item is one requested argument.
type item[K comparable, V any] struct {
	k     K
	key   string
	e     entry[V]
	local bool   // e came from the local tier
	tok   uint64 // the key's coherence token before the cache read
}

// Key returns the cache key of k.
func (f *ManyFunc[K, V]) Key(k K) (string, error) { return f.keys.key(k) }

// Call returns the values of args: fn's, for the arguments without a fresh
// value in the cache. Errors are as for [Func.Call].
func (f *ManyFunc[K, V]) Call(ctx context.Context, args []K) (map[K]V, error) {
	if err := ctx.Err(); err != nil {
		return nil, ctxError("", err)
	}
	items := make([]*item[K, V], 0, len(args))
	seen := make(map[K]bool, len(args))
	keys := make([]string, 0, len(args))
	for _, k := range args {
		if seen[k] {
			continue
		}
		seen[k] = true
		key, err := f.keys.key(k)
		if err != nil {
			return nil, err
		}
		items = append(items, &item[K, V]{k: k, key: key})
		keys = append(keys, key)
	}
	out := make(map[K]V, len(items))
	if len(items) == 0 {
		return out, nil
	}

	ended := f.ended.Load()
	for _, it := range items {
		it.e.seen = ended
	}
	if f.local != nil {
		// Serve what the local tier holds; read only the rest.
		keys = keys[:0]
		for _, it := range items {
			if it.local = f.readLocal(ctx, it.key, &it.e); !it.local {
				it.tok = f.local.Token(it.key) // before the read: see LocalTier.Fill
				keys = append(keys, it.key)
			}
		}
	}
	var raw map[string][]byte
	if len(keys) > 0 {
		cctx, cancel := f.cacheCtx(ctx)
		var err error
		raw, err = f.cache.GetMany(cctx, keys)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctxError("", ctx.Err())
			}
			err = cachekit.WrapError("GetMany", "", err)
			if f.o.FailFast {
				return nil, err
			}
			f.report(ctx, err)
			raw = nil
		}
	}
	now := time.Now().UnixNano()
	var missing []*item[K, V]
	for _, it := range items {
		if b, ok := raw[it.key]; ok && !it.local {
			e, err := f.parse(ctx, it.key, b, now)
			if err != nil {
				if f.o.FailFast {
					return nil, err
				}
				f.report(ctx, err)
			}
			e.seen = it.e.seen
			it.e = e
			if err == nil && f.local != nil {
				f.keepRead(it.k, it.key, &it.e, it.tok)
			}
		}
		switch it.e.state {
		case stFresh:
			out[it.k] = it.e.v
			if it.e.h.flags&flagStale != 0 {
				f.emit(ctx, cachekit.EventStaleServed, it.key, nil, 0)
			}
		case stNegative:
		default:
			missing = append(missing, it)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	if missing = f.recheck(ctx, missing, out); len(missing) == 0 {
		return out, nil
	}

	// Take the values of writes on their way (from loads that just
	// ended); claim the missing arguments nobody is loading; join the
	// batches loading the others.
	f.mu.Lock()
	var mine []*item[K, V]
	joined := map[*batch[K, V]][]*item[K, V]{}
	for _, it := range missing {
		if p, ok := f.pending(it.key); ok {
			if !p.neg {
				out[it.k] = p.v
				if p.stale {
					f.emit(ctx, cachekit.EventStaleServed, it.key, nil, 0)
				}
			}
			continue
		}
		if b := f.inflight[it.key]; b != nil {
			joined[b] = append(joined[b], it)
		} else {
			mine = append(mine, it)
		}
	}
	waits := make([]*batch[K, V], 0, len(joined)+1)
	if len(mine) > 0 {
		bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		b := &batch[K, V]{done: make(chan struct{}), refs: 1, cancel: cancel}
		for _, it := range mine {
			f.inflight[it.key] = b
			b.keys = append(b.keys, it.key)
		}
		joined[b] = mine
		waits = append(waits, b)
		f.goBackground(func() { f.runBatch(bctx, b, mine) })
	}
	for b := range joined {
		if len(mine) == 0 || b != waits[0] {
			b.refs++
			waits = append(waits, b)
			for _, it := range joined[b] {
				f.emit(ctx, cachekit.EventStampedeJoin, it.key, nil, 0)
			}
		}
	}
	f.mu.Unlock()

	var firstErr error
	for i, b := range waits {
		select {
		case <-b.done:
		case <-ctx.Done():
			for _, b := range waits[i:] {
				f.leave(b)
			}
			return nil, ctxError("", ctx.Err())
		}
		if b.err != nil {
			if firstErr == nil {
				firstErr = b.err
			}
			continue
		}
		for _, it := range joined[b] {
			if v, ok := b.res[it.k]; ok {
				out[it.k] = v
				if b.stale[it.k] {
					f.emit(ctx, cachekit.EventStaleServed, it.key, nil, 0)
				}
			}
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// recheck looks again at the missing arguments whose writes, from loads
// that just ended, may have landed after the caller's read began: it takes
// the values of writes still on their way, reads again (one GetMany) the
// keys whose writes ended meanwhile, and adds what it finds to out. It
// returns the arguments still missing.
func (f *ManyFunc[K, V]) recheck(ctx context.Context, missing []*item[K, V], out map[K]V) []*item[K, V] {
	var again []*item[K, V]
	rest := missing[:0:0]
	for _, it := range missing {
		p, pending, landed := f.lookup(it.key, it.e.seen)
		switch {
		case pending:
			if !p.neg {
				out[it.k] = p.v
				if p.stale {
					f.emit(ctx, cachekit.EventStaleServed, it.key, nil, 0)
				}
			}
		case landed:
			again = append(again, it)
		default:
			rest = append(rest, it)
		}
	}
	if len(again) == 0 {
		return rest
	}
	keys := make([]string, len(again))
	for i, it := range again {
		keys[i] = it.key
	}
	cctx, cancel := f.cacheCtx(ctx)
	raw, _ := f.cache.GetMany(cctx, keys) // on failure, load them
	cancel()
	now := time.Now().UnixNano()
	for _, it := range again {
		if b, ok := raw[it.key]; ok && !bytes.Equal(b, it.e.raw) {
			if e, err := f.parse(ctx, it.key, b, now); err == nil {
				switch e.state {
				case stFresh:
					out[it.k] = e.v
					if e.h.flags&flagStale != 0 {
						f.emit(ctx, cachekit.EventStaleServed, it.key, nil, 0)
					}
					continue
				case stNegative:
					continue
				}
			}
		}
		rest = append(rest, it)
	}
	return rest
}

// leave records that a caller stopped waiting for b; the last one cancels
// b's ctx and forgets b, so later callers load afresh.
func (f *ManyFunc[K, V]) leave(b *batch[K, V]) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b.refs--
	if b.refs > 0 {
		return
	}
	f.forget(b)
	b.cancel()
}

// forget removes b's claims; f.mu must be held.
func (f *ManyFunc[K, V]) forget(b *batch[K, V]) {
	for _, key := range b.keys {
		if f.inflight[key] == b {
			delete(f.inflight, key)
		}
	}
}

// runBatch calls fn for the claimed arguments and stores the results.
func (f *ManyFunc[K, V]) runBatch(ctx context.Context, b *batch[K, V], items []*item[K, V]) {
	b.err = &cachekit.Error{Op: "Cached", Err: errGoexit} // unless fn returns
	defer func() {
		b.cancel()
		f.mu.Lock()
		f.forget(b)
		f.mu.Unlock()
		close(b.done)
	}()
	epochs := make([]uint64, len(items))
	args := make([]K, len(items))
	for i, it := range items {
		epochs[i] = f.stripe(it.key).epoch.Load()
		args[i] = it.k
	}
	start := time.Now()
	res, err := f.call(ctx, args)
	took := time.Since(start)
	now := time.Now()
	if err != nil {
		if ctx.Err() != nil && isContextError(err) {
			// Every caller has gone and fn returned because its ctx was
			// cancelled: not fn failing, so no fail-safe re-store.
			b.err = ctxError("", ctx.Err())
			return
		}
		f.emit(ctx, cachekit.EventLoadError, "", err, took)
		b.err = err
		if f.o.FailSafeMaxStale == 0 {
			return
		}
		stale := map[K]V{}
		writes := map[string]write[V]{}
		for i, it := range items {
			if it.e.state != stStale {
				return
			}
			stale[it.k] = it.e.v
			if bs, ttl, ok := f.throttled(&it.e, now); ok {
				writes[it.key] = write[V]{b: bs, ttl: ttl, epoch: epochs[i], v: it.e.v, stale: true}
			}
		}
		b.res, b.err, b.stale = stale, nil, map[K]bool{}
		for k := range stale {
			b.stale[k] = true
		}
		f.writeMany(ctx, writes, false)
		return
	}
	f.emit(ctx, cachekit.EventLoad, "", nil, took)
	b.res = make(map[K]V, len(items))
	writes := map[string]write[V]{}
	for i, it := range items {
		v, ok := res[it.k]
		if !ok {
			if f.o.NegativeTTL > 0 {
				writes[it.key] = write[V]{b: f.negativeEntry(took, now), ttl: f.o.NegativeTTL, epoch: epochs[i], neg: true}
			}
			continue
		}
		b.res[it.k] = v
		if bs, ttl, ok := f.encode(ctx, it.k, it.key, v, took, now); ok {
			writes[it.key] = write[V]{b: bs, ttl: ttl, epoch: epochs[i], v: v}
		}
	}
	b.err = nil
	f.writeMany(ctx, writes, false)
}

func (f *ManyFunc[K, V]) call(ctx context.Context, args []K) (res map[K]V, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError("", r)
		}
	}()
	return f.fn(ctx, args)
}

// write is one value to store.
type write[V any] struct {
	b     []byte
	ttl   time.Duration
	epoch uint64 // the key's stripe's epoch before fn was called
	v     V      // the value b encodes, unless neg
	neg   bool   // a remembered "not found"
	stale bool   // a stale value re-stored by fail-safe
}

// writeMany stores the writes with one SetMany per TTL, leaving out keys
// invalidated since their load started. The writes are registered (see
// stripe) and made in the background, or before returning with now set.
func (f *ManyFunc[K, V]) writeMany(ctx context.Context, writes map[string]write[V], now bool) {
	type group struct {
		items map[string][]byte
		ps    []*pendingWrite[V]
	}
	byTTL := map[time.Duration]*group{}
	for key, w := range writes {
		p := &pendingWrite[V]{key: key, done: make(chan struct{}), v: w.v, neg: w.neg, stale: w.stale}
		if !f.register(p, w.epoch) {
			continue
		}
		g := byTTL[w.ttl]
		if g == nil {
			g = &group{items: map[string][]byte{}}
			byTTL[w.ttl] = g
		}
		g.items[key] = w.b
		g.ps = append(g.ps, p)
	}
	for ttl, g := range byTTL {
		work := func() {
			wctx, cancel := f.writeCtx(ctx)
			defer cancel()
			var err error
			if f.local != nil {
				// Drops the keys locally, publishes them, and keeps the
				// values written (see LocalTier.SetMany).
				values := make(map[string]V, len(g.ps))
				for _, p := range g.ps {
					values[p.key] = p.v
				}
				err = f.local.SetMany(wctx, g.items, ttl, values, f.env)
			} else {
				err = f.cache.SetMany(wctx, g.items, ttl)
			}
			if err != nil {
				f.report(ctx, cachekit.WrapError("SetMany", "", err))
			}
			for _, p := range g.ps {
				f.end(p)
			}
		}
		if now {
			work()
		} else {
			f.goBackground(work)
		}
	}
}

// Invalidate deletes the values stored for the arguments; see
// [Func.Invalidate].
func (f *ManyFunc[K, V]) Invalidate(ctx context.Context, args ...K) error {
	keys := make([]string, 0, len(args))
	for _, k := range args {
		key, err := f.keys.key(k)
		if err != nil {
			return err
		}
		keys = append(keys, key)
	}
	f.mu.Lock()
	for _, key := range keys {
		delete(f.inflight, key)
	}
	f.mu.Unlock()
	return f.invalidate(ctx, keys, true)
}

// Refresh calls fn for args now, stores the results and returns them,
// whatever the cache holds. It returns after the writes have ended.
func (f *ManyFunc[K, V]) Refresh(ctx context.Context, args ...K) (map[K]V, error) {
	keys := make([]string, 0, len(args))
	for _, k := range args {
		key, err := f.keys.key(k)
		if err != nil {
			return nil, err
		}
		keys = append(keys, key)
	}
	f.mu.Lock()
	for _, key := range keys {
		delete(f.inflight, key)
	}
	f.mu.Unlock()
	_ = f.invalidate(ctx, keys, false) // bump the epochs only
	epochs := make([]uint64, len(keys))
	for i, key := range keys {
		epochs[i] = f.stripe(key).epoch.Load()
	}
	start := time.Now()
	res, err := f.call(ctx, args)
	took := time.Since(start)
	if err != nil {
		f.emit(ctx, cachekit.EventLoadError, "", err, took)
		return nil, err
	}
	f.emit(ctx, cachekit.EventLoad, "", nil, took)
	now := time.Now()
	out := make(map[K]V, len(args))
	writes := map[string]write[V]{}
	for i, k := range args {
		v, ok := res[k]
		if !ok {
			if f.o.NegativeTTL > 0 {
				writes[keys[i]] = write[V]{b: f.negativeEntry(took, now), ttl: f.o.NegativeTTL, epoch: epochs[i], neg: true}
			}
			continue
		}
		out[k] = v
		if bs, ttl, ok := f.encode(ctx, k, keys[i], v, took, now); ok {
			writes[keys[i]] = write[V]{b: bs, ttl: ttl, epoch: epochs[i], v: v}
		}
	}
	f.writeMany(ctx, writes, true)
	return out, nil
}

// Wait blocks until the background work started so far has ended: the
// runs of fn that every caller has left, and the cache writes of loaded
// values. Each write is bounded by CacheTimeout or, without it, by the
// backend's own timeout and at most BackgroundTimeout. A ManyFunc has no
// Close: call Wait before closing the cache, and at the end of a test.
func (f *ManyFunc[K, V]) Wait() { f.wait() }
