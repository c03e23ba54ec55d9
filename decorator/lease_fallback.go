package decorator

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/lock"
)

// This file is the lease over a cache without cachekit.CompareAndDeleter,
// and the only place where the decorator releases a lease without it.
// Every backend of this module implements CompareAndDelete and every
// wrapper of one forwards it, so only a foreign Cache implementation (or
// a wrapper that hides the method) gets here. lock.Locker refuses such a
// cache (cachekit.ErrUnsupported), because it cannot release a lease
// atomically; the decorator still takes the lease, since without one every
// process would run fn on a miss, and the worst its remaining race can do
// is what no lease does all the time: let another process run fn as well.

// fallbackLeaser takes leases as lock.Locker does, with an Add of the same
// key (Prefix+name+":owner") and a random owner value, so that processes
// on either side exclude each other; it releases them by Get, compare and
// Delete.
type fallbackLeaser struct {
	c        cachekit.Cache
	prefix   string
	ttl      time.Duration
	reported atomic.Bool // OnError was told that the release is not atomic
}

// notice returns, on the first call only, the error that tells OnError
// about the fallback; nil afterwards.
func (l *fallbackLeaser) notice(key string) error {
	if !l.reported.CompareAndSwap(false, true) {
		return nil
	}
	return &cachekit.Error{Op: "Lease", Key: key, Err: fmt.Errorf("%w: %T is not a cachekit.CompareAndDeleter: "+
		"the lease is released by Get, compare and Delete, which can delete the lease of another process "+
		"that won it between the two when this process's lease expires; forward CompareAndDelete to close that race",
		cachekit.ErrUnsupported, l.c)}
}

// wait returns at once: a fallbackLeaser runs nothing in the background.
func (l *fallbackLeaser) wait() {}

func (l *fallbackLeaser) tryAcquire(ctx context.Context, name string) (heldLease, error) {
	h := &fallbackLease{l: l, name: name, key: l.prefix + name + leaseSuffix, value: []byte(rand.Text()), at: time.Now()}
	if err := l.c.Add(ctx, h.key, h.value, l.ttl); err != nil {
		if errors.Is(err, cachekit.ErrExists) {
			return nil, lock.ErrLocked
		}
		return nil, err
	}
	return h, nil
}

// fallbackLease is a lease taken by a fallbackLeaser.
type fallbackLease struct {
	l     *fallbackLeaser
	name  string
	key   string
	value []byte
	at    time.Time // before the Add: the lease expires no sooner than at+ttl
}

func (h *fallbackLease) Name() string { return h.name }

// Release deletes the lease if the cache still holds this lease's value.
// In the last tenth of the lease's TTL it does nothing (the lease expires
// by itself, and may be another process's by the time a Delete lands), so
// what remains of the race needs the Get and the Delete to straddle the
// expiry after the check, and another process to win the lease between
// them: that process's lease is then deleted, and a third may run fn.
func (h *fallbackLease) Release(ctx context.Context) error {
	if time.Since(h.at) >= h.l.ttl-h.l.ttl/10 {
		return nil // expired or about to: leave it to its TTL
	}
	cur, err := h.l.c.Get(ctx, h.key)
	if errors.Is(err, cachekit.ErrNotFound) {
		return lock.ErrLockLost
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(cur, h.value) {
		return lock.ErrLockLost
	}
	_, err = h.l.c.Delete(ctx, h.key)
	return err
}
