package decorator

import (
	"bytes"
	"context"
	"errors"
	mrand "math/rand/v2"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/lock"
)

// leaser takes the leases of a decorated function: a lock.Locker
// (lockLeaser) over a cache with cachekit.CompareAndDeleter, which every
// backend and wrapper of this module has, and the fallback of
// lease_fallback.go over any other cache.
type leaser interface {
	// tryAcquire takes the lease called name, or returns lock.ErrLocked
	// when another process holds it.
	tryAcquire(ctx context.Context, name string) (heldLease, error)
	// wait returns when the background work of the leaser has ended: the
	// releases of leases whose acquisition failed after they may have
	// been stored (lock.Locker.Wait).
	wait()
}

// heldLease is a lease this process won.
type heldLease interface {
	// Name is the lease's name, as given to tryAcquire.
	Name() string
	// Release gives the lease up if it is still this process's, and
	// returns lock.ErrLockLost when it knows that it is not.
	Release(ctx context.Context) error
}

// newLeaser returns the leaser of a decorated function: in its cache,
// under the lease keys of its key space (see key.go), with LeaseTTL.
//
// The Locker takes no fencing tokens: the decorator needs none (a lease
// only keeps processes from duplicating work), and a token would leave a
// counter key with no expiry behind for every key ever loaded.
func newLeaser(c cachekit.Cache, prefix string, ttl time.Duration) leaser {
	if _, ok := c.(cachekit.CompareAndDeleter); !ok {
		return &fallbackLeaser{c: c, prefix: prefix, ttl: ttl}
	}
	return lockLeaser{lock.New(c, &lock.Options{TTL: ttl, Prefix: prefix, NoFence: true})}
}

// lockLeaser is a leaser on a lock.Locker.
type lockLeaser struct{ l *lock.Locker }

func (l lockLeaser) wait() { l.l.Wait() }

func (l lockLeaser) tryAcquire(ctx context.Context, name string) (heldLease, error) {
	k, err := l.l.TryAcquire(ctx, name)
	if err != nil {
		return nil, err
	}
	return k, nil
}

// acquire wins the lease of key for this process, or waits for the value
// that the holder stores. It returns the lease held (nil when the cache
// failed and fn should run without one), or done with the outcome to use:
// the value another process stored, or ctx's error.
//
// A waiter polls the value first and only then tries to win the lease, so
// when a holder stores the value and releases, the waiters find the value
// rather than all running fn.
func (f *Func[K, V]) acquire(ctx context.Context, key string, prev *entry[V], m mode) (heldLease, outcome[V], bool) {
	name := f.keys.leaseName(key)
	poll := f.o.LeasePoll
	maxPoll := min(32*poll, max(poll, f.o.LeaseTTL/4))
	waited := false
	if fb, ok := f.leases.(*fallbackLeaser); ok {
		if err := fb.notice(f.keys.lockKey(name)); err != nil {
			f.report(ctx, err)
		}
	}
	for {
		cctx, cancel := f.cacheCtx(ctx)
		hold, err := f.leases.tryAcquire(cctx, name)
		cancel()
		if err == nil {
			// The value may have been stored between our read and our
			// tryAcquire, by a holder that released just before.
			if o, ok := f.found(ctx, key, prev, false); ok {
				// The caller has its value: the release must not
				// hold it up (a stuck cache, say).
				f.goBackground(func() { f.release(ctx, hold) })
				return nil, o, true
			}
			return hold, outcome[V]{}, false
		}
		if ctx.Err() != nil {
			return nil, outcome[V]{done: true, err: ctxError(key, ctx.Err())}, true
		}
		// ErrLocked: another process holds the lease. ErrLockLost (only
		// with fencing tokens, which this Locker does not take) gave its
		// lease up: wait and try again as well.
		if !errors.Is(err, lock.ErrLocked) && !errors.Is(err, lock.ErrLockLost) {
			f.report(ctx, cachekit.WrapError("Add", f.keys.leaseKey(key), err))
			return nil, outcome[V]{}, false // run fn without a lease
		}
		if m == modeEarly {
			// Another process is loading or refreshing the key: leave it
			// to them and keep serving the value we have.
			return nil, outcome[V]{done: true, v: prev.v}, true
		}
		if !waited {
			waited = true
			f.emit(ctx, cachekit.EventStampedeJoin, key, nil, 0)
		}
		t := time.NewTimer(poll/2 + mrand.N(poll))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, outcome[V]{done: true, err: ctxError(key, ctx.Err())}, true
		case <-t.C:
		}
		poll = min(2*poll, maxPoll)
		if o, ok := f.found(ctx, key, prev, true); ok {
			return nil, o, true
		}
	}
}

// found reads key and reports whether it now holds a value that another
// load stored while we were deciding to load: a fresh value or a
// remembered "not found", other than the bytes prev was read from (the
// value being refreshed early, or an undecodable one). Cache errors are
// reported only when report is set: the caller has reported its own read.
func (f *Func[K, V]) found(ctx context.Context, key string, prev *entry[V], report bool) (outcome[V], bool) {
	cctx, cancel := f.cacheCtx(ctx)
	b, err := f.cache.Get(cctx, key)
	cancel()
	if err != nil {
		if report && ctx.Err() == nil && !errors.Is(err, cachekit.ErrNotFound) {
			f.report(ctx, cachekit.WrapError("Get", key, err))
		}
		return outcome[V]{}, false
	}
	if prev.raw != nil && bytes.Equal(b, prev.raw) {
		return outcome[V]{}, false
	}
	e, err := f.parse(ctx, key, b, 0)
	if err != nil {
		f.report(ctx, err)
		return outcome[V]{}, false
	}
	switch e.state {
	case stFresh:
		return outcome[V]{done: true, v: e.v, stale: e.h.flags&flagStale != 0}, true
	case stNegative:
		return outcome[V]{done: true, err: f.o.NegativeError}, true
	}
	return outcome[V]{}, false
}

// release gives the lease up, after the value's write (or after finding
// the value another process stored). A lock.Lock deletes the lease with
// the cache's CompareAndDelete only while it is still this process's, so
// a lease that expired and was won by another process is never touched. A
// lease lost before its release (fn and the write took longer than
// LeaseTTL, or the cache evicted the lease) is reported: another process
// may have run fn meanwhile.
func (f *Func[K, V]) release(ctx context.Context, h heldLease) {
	wctx, cancel := f.writeCtx(ctx)
	defer cancel()
	err := h.Release(wctx)
	switch {
	case err == nil:
	case errors.Is(err, lock.ErrLockLost):
		f.report(ctx, &cachekit.Error{Op: "Release", Key: f.keys.lockKey(h.Name()), Err: err})
	default:
		f.report(ctx, cachekit.WrapError("Delete", f.keys.lockKey(h.Name()), err))
	}
}
