package decorator

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	mrand "math/rand/v2"
	"time"

	"github.com/cachekit/cachekit"
)

// leaseHold is a lease this process won.
type leaseHold struct {
	key   string // the lease key
	token []byte
	at    time.Time
}

func newToken() []byte {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand documents it)
	t := make([]byte, hex.EncodedLen(len(b)))
	hex.Encode(t, b[:])
	return t
}

// acquire wins the lease of key for this process, or waits for the value
// that the holder stores. It returns the lease held (nil when the cache
// failed and fn should run without one), or done with the outcome to use:
// the value another process stored, or ctx's error.
//
// A waiter polls the value first and only then tries to win the lease, so
// when a holder stores the value and releases, the waiters find the value
// rather than all running fn.
func (f *Func[K, V]) acquire(ctx context.Context, key string, prev *entry[V], m mode) (*leaseHold, outcome[V], bool) {
	lkey := f.keys.leaseKey(key)
	token := newToken()
	poll := f.o.LeasePoll
	maxPoll := min(32*poll, max(poll, f.o.LeaseTTL/4))
	waited := false
	for {
		cctx, cancel := f.cacheCtx(ctx)
		err := f.cache.Add(cctx, lkey, token, f.o.LeaseTTL)
		cancel()
		if err == nil {
			hold := &leaseHold{key: lkey, token: token, at: time.Now()}
			// The value may have been stored between our read and our
			// Add, by a holder that released just before.
			if o, ok := f.found(ctx, key, prev, false); ok {
				f.release(ctx, hold)
				return nil, o, true
			}
			return hold, outcome[V]{}, false
		}
		if ctx.Err() != nil {
			return nil, outcome[V]{done: true, err: ctxError(key, ctx.Err())}, true
		}
		if !errors.Is(err, cachekit.ErrExists) {
			f.report(ctx, cachekit.WrapError("Add", lkey, err))
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

// release gives the lease up if this process still owns it: atomically,
// with cachekit.CompareAndDeleter, which every backend of this module
// implements and every wrapper of it forwards. Only a foreign cache without
// it gets the fallback, Get, compare, Delete, skipped once the lease is
// within a tenth of LeaseTTL of its expiry; its remaining race needs this
// holder's lease to expire, and another process to win it, between the Get
// and the Delete, which then deletes the other process's lease.
func (f *Func[K, V]) release(ctx context.Context, h *leaseHold) {
	wctx, cancel := f.writeCtx(ctx)
	defer cancel()
	if cad, ok := f.cache.(cachekit.CompareAndDeleter); ok {
		if _, err := cad.CompareAndDelete(wctx, h.key, h.token); err != nil {
			f.report(ctx, cachekit.WrapError("Delete", h.key, err))
		}
		return
	}
	if time.Since(h.at) >= f.o.LeaseTTL-f.o.LeaseTTL/10 {
		return // expired or about to: it may be someone else's by now
	}
	cur, err := f.cache.Get(wctx, h.key)
	if err != nil {
		if !errors.Is(err, cachekit.ErrNotFound) {
			f.report(ctx, cachekit.WrapError("Get", h.key, err))
		}
		return
	}
	if !bytes.Equal(cur, h.token) {
		return
	}
	if _, err := f.cache.Delete(wctx, h.key); err != nil {
		f.report(ctx, cachekit.WrapError("Delete", h.key, err))
	}
}
