package decorator

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/internal/flight"
)

// Cached returns a function with fn's signature that memoizes fn in c: a
// call returns the value stored for its argument, or calls fn, stores its
// result and returns it. See the package documentation for what is stored,
// how keys are made, and what each option does.
//
// Cached is New(c, fn, opts).Call; use [New] to also get the Invalidate and
// Refresh helpers. It panics when fn needs Options.Name or an option is
// invalid.
func Cached[K comparable, V any](c *cachekit.Typed[V], fn func(context.Context, K) (V, error), opts *Options[K]) func(context.Context, K) (V, error) {
	return New(c, fn, opts).Call
}

// Func is a decorated function: [Func.Call] has fn's signature, and the
// other methods act on the values stored for one argument. Make one with
// [New]. It is safe for concurrent use.
type Func[K comparable, V any] struct {
	core[K, V]
	fn         func(context.Context, K) (V, error)
	detached   bool                             // SoftTimeout or HardTimeout: fn outlives its callers
	loads      flight.Group[string, outcome[V]] // one load per key in this process
	running    sync.Map                         // key -> *bgLoad[V], detached runs of fn
	refreshing sync.Map                         // key -> struct{}, early refreshes

	leases leaser // with Options.Lease
}

// New returns fn decorated with the cache c and opts, which may be nil. It
// panics when fn needs Options.Name (a function literal or generic
// instance) or when an option is invalid.
func New[K comparable, V any](c *cachekit.Typed[V], fn func(context.Context, K) (V, error), opts *Options[K]) *Func[K, V] {
	if fn == nil {
		panic("decorator: nil fn")
	}
	f := &Func[K, V]{fn: fn}
	f.init(c, fn, opts)
	if f.o.NegativeTTL > 0 && f.o.NegativeError == nil {
		panic("decorator: Options.NegativeTTL needs Options.NegativeError, the error that means \"not found\"")
	}
	f.detached = f.o.SoftTimeout > 0 || f.o.HardTimeout > 0
	if f.o.Lease {
		lc := f.cache
		if f.local != nil {
			// Typed.Cache() is the wrapper that publishes every write on
			// the backplane; lease keys are never held in a local tier,
			// so their writes go to the cache below it, unpublished.
			if u, ok := lc.(interface{ Unwrap() cachekit.Cache }); ok {
				lc = u.Unwrap()
			}
		}
		f.leases = newLeaser(lc, f.keys.leasePrefix(), f.o.LeaseTTL)
	}
	return f
}

// outcome is what one load hands to its waiters.
type outcome[V any] struct {
	done  bool  // false: the load ended without returning (runtime.Goexit)
	v     V     // the value, or the stale value fail-safe served
	err   error // fn's error, returned as it is, or the load's own error
	stale bool  // v is stale
}

// mode says why a load runs.
type mode uint8

const (
	modeMiss    mode = iota // a caller found no fresh value
	modeEarly               // early refresh of a fresh value
	modeRefresh             // Func.Refresh: run fn now, ignore leases
)

// Key returns the cache key of k: the key under which Call stores fn's
// result for k. The error, for an argument whose type has no stable
// identity (an interface holding a pointer, say), wraps
// cachekit.ErrInvalidKey.
func (f *Func[K, V]) Key(k K) (string, error) { return f.keys.key(k) }

// Call returns fn(ctx, k), from the cache when a fresh value is stored.
//
// fn's errors are returned as they are (the same error value) and not
// stored. Errors that Call makes itself are *cachekit.Error values: ctx's
// error when ctx ends first (errors.Is works with context.Canceled and
// context.DeadlineExceeded), a panic in fn (errors.Is(err,
// cachekit.ErrLoaderPanic)), a hard timeout (errors.Is(err,
// ErrHardTimeout)), a key that cannot be made (cachekit.ErrInvalidKey),
// and, with FailFast, cache errors.
func (f *Func[K, V]) Call(ctx context.Context, k K) (V, error) {
	var zero V
	key, err := f.keys.key(k)
	if err != nil {
		return zero, err
	}
	if err := ctx.Err(); err != nil {
		return zero, ctxError(key, err)
	}
	seen := f.ended.Load() // before the read: see loadOnce
	var e entry[V]
	if err := f.read(ctx, k, key, &e); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return zero, ctxError(key, cerr)
		}
		if f.o.FailFast {
			return zero, err
		}
		f.report(ctx, err)
	}
	switch e.state {
	case stFresh:
		if f.env {
			if e.h.flags&flagStale != 0 {
				f.emit(ctx, cachekit.EventStaleServed, key, nil, 0)
			} else if f.refreshDue(&e.h) {
				f.startRefresh(ctx, k, key, e)
			}
		}
		return e.v, nil
	case stNegative:
		return zero, f.o.NegativeError
	}
	e.seen = seen
	return f.load(ctx, k, key, e)
}

// load runs fn for a miss or a stale value, once per key in this process.
func (f *Func[K, V]) load(ctx context.Context, k K, key string, prev entry[V]) (V, error) {
	var zero V
	waitCtx := ctx
	if f.detached {
		var d time.Duration
		if prev.state == stStale && f.o.SoftTimeout > 0 {
			d = f.o.SoftTimeout
		}
		if f.o.HardTimeout > 0 && (d == 0 || f.o.HardTimeout < d) {
			d = f.o.HardTimeout
		}
		if d > 0 {
			var cancel context.CancelFunc
			waitCtx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
	}
	o, err, joined := f.loads.Do(waitCtx, key, func(lctx context.Context) (outcome[V], error) {
		return f.run(lctx, k, key, &prev, modeMiss), nil
	})
	if joined {
		f.emit(ctx, cachekit.EventStampedeJoin, key, nil, 0)
	}
	if err != nil {
		var pe *flight.PanicError
		switch {
		case errors.As(err, &pe): // a bug in this package: fn's panics are recovered in call
			return zero, panicError(key, pe.Value)
		case errors.Is(err, flight.ErrGoexit): // fn called runtime.Goexit
			if prev.state == stStale && f.o.FailSafeMaxStale > 0 {
				// A load that never returned failed, as a panicking one
				// does: fail-safe serves the stale value.
				f.emit(ctx, cachekit.EventStaleServed, key, nil, 0)
				return prev.v, nil
			}
			return zero, &cachekit.Error{Op: "Cached", Key: key, Err: errGoexit}
		case ctx.Err() != nil:
			return zero, ctxError(key, ctx.Err())
		case prev.state == stStale: // soft or hard timeout with a stale value
			f.emit(ctx, cachekit.EventStaleServed, key, nil, 0)
			return prev.v, nil
		default:
			return zero, &cachekit.Error{Op: "Cached", Key: key, Err: ErrHardTimeout}
		}
	}
	return f.result(ctx, key, o)
}

func (f *Func[K, V]) result(ctx context.Context, key string, o outcome[V]) (V, error) {
	switch {
	case !o.done:
		var zero V
		return zero, &cachekit.Error{Op: "Cached", Key: key, Err: errGoexit}
	case o.err != nil:
		var zero V
		return zero, o.err
	case o.stale:
		f.emit(ctx, cachekit.EventStaleServed, key, nil, 0)
	}
	return o.v, nil
}

// run is the body of a load under the flight group. Detached, it runs fn
// in a goroutine of its own that outlives the callers, bounded by
// BackgroundTimeout; a later load of the key waits for that run instead of
// starting another.
func (f *Func[K, V]) run(ctx context.Context, k K, key string, prev *entry[V], m mode) outcome[V] {
	if !f.detached {
		return f.loadOnce(ctx, k, key, prev, m)
	}
	p := &bgLoad[V]{done: make(chan struct{})}
	if old, loaded := f.running.LoadOrStore(key, p); loaded {
		p = old.(*bgLoad[V])
	} else {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.o.BackgroundTimeout)
		f.goBackground(func() {
			defer func() {
				cancel()
				f.running.CompareAndDelete(key, p)
				close(p.done)
			}()
			p.o = f.loadOnce(bctx, k, key, prev, m)
		})
	}
	select {
	case <-p.done:
		return p.o
	case <-ctx.Done():
		return outcome[V]{done: true, err: ctxError(key, ctx.Err())}
	}
}

// bgLoad is a detached run of fn.
type bgLoad[V any] struct {
	done chan struct{}
	o    outcome[V]
}

// loadOnce takes the lease (when on), calls fn, and stores what it
// returns in the background: the callers get fn's value as soon as fn
// returns, never after the cache write (Refresh and early refreshes, which
// have no caller waiting for a miss, write before returning).
func (f *Func[K, V]) loadOnce(ctx context.Context, k K, key string, prev *entry[V], m mode) outcome[V] {
	epoch := f.stripe(key).epoch.Load()
	if m == modeMiss {
		// A write of the key from a load that just ended is on its way:
		// its value is as fresh as ours would be. Or a write of the key
		// ended after the caller's read began, perhaps the value the
		// caller missed: look again before calling fn. (With the lease,
		// acquire looks again after winning it.)
		p, pending, landed := f.lookup(key, prev.seen)
		if pending {
			return f.pendingOutcome(p)
		}
		if landed && !f.o.Lease {
			if o, ok := f.found(ctx, key, prev, false); ok {
				return o
			}
		}
	}
	var release func(bool)
	if f.o.Lease && m != modeRefresh {
		hold, o, done := f.acquire(ctx, key, prev, m)
		if done {
			return o
		}
		if hold != nil {
			release = func(bool) { f.release(ctx, hold) }
		}
	}
	now := m != modeMiss // Refresh and early refresh: write before returning
	start := time.Now()
	returned := false
	defer func() {
		if !returned { // fn called runtime.Goexit (its panics are recovered in call)
			f.emit(ctx, cachekit.EventLoadError, key, errGoexit, time.Since(start))
			if release != nil {
				f.goBackground(func() { release(false) })
			}
		}
	}()
	v, err := f.call(ctx, k, key)
	returned = true
	took := time.Since(start)
	at := time.Now()
	if err != nil {
		if !f.detached && ctx.Err() != nil && isContextError(err) {
			// Every caller has gone and fn returned because its ctx was
			// cancelled: that is not fn failing, so fail-safe must not
			// re-store the stale value as if it were.
			if release != nil {
				f.goBackground(func() { release(false) })
			}
			return outcome[V]{done: true, err: ctxError(key, ctx.Err())}
		}
		f.emit(ctx, cachekit.EventLoadError, key, err, took)
		if f.o.NegativeTTL > 0 && errors.Is(err, f.o.NegativeError) {
			p := &pendingWrite[V]{key: key, neg: true}
			f.save(ctx, p, epoch, f.negativeEntry(took, at), f.o.NegativeTTL, nil, now, release)
			return outcome[V]{done: true, err: err}
		}
		if prev.state == stStale && m == modeMiss && f.o.FailSafeMaxStale > 0 {
			if b, ttl, ok := f.throttled(prev, at); ok {
				p := &pendingWrite[V]{key: key, v: prev.v, stale: true}
				f.save(ctx, p, epoch, b, ttl, nil, now, release)
				release = nil
			}
			if release != nil {
				f.goBackground(func() { release(false) })
			}
			return outcome[V]{done: true, v: prev.v, stale: true}
		}
		if release != nil {
			f.goBackground(func() { release(false) })
		}
		return outcome[V]{done: true, err: err}
	}
	f.emit(ctx, cachekit.EventLoad, key, nil, took)
	if b, ttl, ok := f.encode(ctx, k, key, v, took, at); ok {
		var guard []byte
		then := release
		if m == modeEarly {
			guard = prev.raw
			then = func(stored bool) {
				if stored {
					f.emit(ctx, cachekit.EventEarlyRefresh, key, nil, took)
				}
				if release != nil {
					release(stored)
				}
			}
		}
		f.save(ctx, &pendingWrite[V]{key: key, v: v}, epoch, b, ttl, guard, now, then)
	} else if release != nil {
		f.goBackground(func() { release(false) })
	}
	return outcome[V]{done: true, v: v}
}

// pendingOutcome is the outcome of a load that takes the value of a write
// on its way.
func (f *Func[K, V]) pendingOutcome(p pendingWrite[V]) outcome[V] {
	if p.neg {
		return outcome[V]{done: true, err: f.o.NegativeError}
	}
	return outcome[V]{done: true, v: p.v, stale: p.stale}
}

// isContextError reports whether err is a context's error.
func isContextError(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// call runs fn, turning a panic into an error.
func (f *Func[K, V]) call(ctx context.Context, k K, key string) (v V, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError(key, r)
		}
	}()
	return f.fn(ctx, k)
}

// refreshDue reports whether a fresh value should be refreshed early.
func (f *Func[K, V]) refreshDue(h *header) bool {
	if h.expiry == 0 || (f.o.RefreshAhead == 0 && f.o.RefreshBeta == 0) {
		return false
	}
	now := time.Now().UnixNano()
	if f.o.RefreshAhead > 0 && float64(now-h.storedAt) >= f.o.RefreshAhead*float64(h.expiry-h.storedAt) {
		return true
	}
	if f.o.RefreshBeta > 0 && h.delta > 0 {
		// XFetch: now - delta*beta*ln(rand) >= expiry, rand in (0, 1].
		gap := -float64(h.delta) * f.o.RefreshBeta * math.Log(1-rand.Float64())
		return float64(now)+gap >= float64(h.expiry)
	}
	return false
}

// startRefresh starts one background refresh of key, unless one is
// running in this process.
func (f *Func[K, V]) startRefresh(ctx context.Context, k K, key string, prev entry[V]) {
	if _, busy := f.refreshing.LoadOrStore(key, struct{}{}); busy {
		return
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.o.BackgroundTimeout)
	f.goBackground(func() {
		defer func() {
			cancel()
			f.refreshing.Delete(key)
		}()
		f.loads.Do(bctx, key, func(lctx context.Context) (outcome[V], error) {
			return f.run(lctx, k, key, &prev, modeEarly), nil
		})
	})
}

// Invalidate deletes the values stored for the arguments, in every process
// that shares the cache. In this process it also makes sure that a load of
// one of them running meanwhile does not store what it loaded before the
// invalidation, and that calls after Invalidate start a new load rather
// than join it.
func (f *Func[K, V]) Invalidate(ctx context.Context, args ...K) error {
	keys := make([]string, 0, len(args))
	for _, k := range args {
		key, err := f.keys.key(k)
		if err != nil {
			return err
		}
		keys = append(keys, key)
	}
	for _, key := range keys {
		f.loads.Forget(key)
		f.running.Delete(key)
	}
	return f.invalidate(ctx, keys, true)
}

// Refresh calls fn for k now, stores the result and returns it, whatever
// the cache holds. Unlike a load, it returns only after the write has
// ended, so that the cache holds the new value (or the write failed,
// reported to OnError) when it returns. Calls for k that arrive meanwhile
// join it, and loads of k that started before it do not store their older
// result. It ignores the lease and fail-safe: fn's error is returned.
func (f *Func[K, V]) Refresh(ctx context.Context, k K) (V, error) {
	var zero V
	key, err := f.keys.key(k)
	if err != nil {
		return zero, err
	}
	f.loads.Forget(key)
	f.running.Delete(key)
	_ = f.invalidate(ctx, []string{key}, false) // bump the epoch only
	var prev entry[V]
	o, err, _ := f.loads.Do(ctx, key, func(lctx context.Context) (outcome[V], error) {
		return f.run(lctx, k, key, &prev, modeRefresh), nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return zero, ctxError(key, ctx.Err())
		}
		return zero, &cachekit.Error{Op: "Cached", Key: key, Err: err}
	}
	return f.result(ctx, key, o)
}

// Wait blocks until the background work started so far has ended: the
// cache writes of loaded values (and lease releases), early refreshes, runs
// of fn that every caller has left, and with SoftTimeout or HardTimeout,
// runs of fn that outlived their callers, and with Lease, the releases of
// leases whose acquisition failed after they may have been stored (see
// lock.Locker.Wait). Each write is bounded by
// CacheTimeout or, without it, by the backend's own timeout and at most
// BackgroundTimeout; each run of fn by BackgroundTimeout (when fn honours
// its ctx).
//
// A Func has no Close: it owns nothing but that background work. Call Wait
// before closing the cache (writes still on their way when the cache is
// closed fail, reported to OnError as cachekit.ErrClosed), and at the end
// of a test.
func (f *Func[K, V]) Wait() {
	// Loads start writes; background refreshes start loads: two rounds
	// see the work that the first round's work started.
	for range 2 {
		f.loads.Wait()
		f.wait()
	}
	if f.leases != nil {
		// The releases of leases that loads failed to take (their Add's
		// outcome unknown) and left running: each ends within a second.
		f.leases.wait()
	}
}
