package cachekit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Update's retry bound and backoff. An Update makes at most UpdateAttempts
// read-modify-write attempts; after the n-th conflict it waits a random
// time between half and all of min(UpdateRetryDelay·2ⁿ⁻¹, UpdateMaxRetryDelay)
// before the next attempt. With these values an Update that never wins
// gives up after about 0.25 s of waiting in total (at most 0.33 s).
const (
	UpdateAttempts      = 10
	UpdateRetryDelay    = time.Millisecond
	UpdateMaxRetryDelay = 100 * time.Millisecond
)

// Update replaces the value under key with what fn makes of it, only if
// nobody wrote the key between Update's read and its write (optimistic
// concurrency, aiocache's OptimisticLock). It returns the value it stored.
//
// Each attempt reads the key, decodes it, calls fn with the value (found
// false and the zero value on a miss), encodes fn's result and stores it
// with the cache's CompareAndSwap: only while the key still holds the
// bytes read (or the version read, see below), or is still absent when it
// was. When another writer got
// there first, Update waits a jittered, growing delay and tries again
// with the new value, so fn may run several times and must have no side
// effects beyond its result. After [UpdateAttempts] lost attempts it
// returns an error for which errors.Is(err, ErrConflict) reports true and
// has stored nothing. When Update returns nil, its write is in the cache and
// every concurrent Update or CompareAndSwap that also succeeded was applied
// either before it (fn saw its result) or after it: no success is lost.
// A plain Set by another writer is not ordered this way: it may land at any
// time and overwrite the result.
//
// The value is stored with the default TTL, or the one WithTTL gives; it
// replaces the key's previous TTL. Tags work as for Set: the value is
// stored with the tags WithTags gives (and only those), and a value whose
// tag was invalidated is a miss to fn (found is false), which Update
// replaces.
//
// Update does not write, and returns an error, when:
//   - fn returns an error: that error, inside an [*Error] (errors.Is and
//     errors.As reach it);
//   - the stored value does not decode into V: errors.Is(err, ErrDecode);
//   - fn's result does not encode: errors.Is(err, ErrEncode);
//   - the cache does not implement [CompareAndSwapper]: errors.Is(err,
//     ErrUnsupported) (every backend of this module implements it);
//   - reading or swapping fails, or ctx is done, including while Update
//     waits between attempts: the cache's error or ctx's. (A swap whose
//     reply was lost, errors.Is(err, ErrUnknownOutcome), was applied once
//     or not at all; Update does not retry it.)
//
// A panic in fn is not recovered: it propagates to Update's caller, and
// nothing is written. Like Set, Update is ordered after a pending
// background write of key by GetOrLoad on the same Typed. Update reads and
// swaps through [Typed.Cache], as the Typed's other writes go.
//
// When the cache is a [Versioner] (memory, Memcached), Update reads the
// value with its version (GetVersion) and swaps on that version
// (SwapVersion), so that the server compares a number instead of the
// bytes; a miss is stored with CompareAndSwap from absent (an add). When
// its server gives no versions (memcached before 1.6), Update compares the
// bytes read, as with any other cache.
//
// An uncontended Update makes two cache calls, a read and a swap: two
// round trips on Redis (GET, and a Lua compare-and-swap) and two requests
// on Memcached (gets, and a meta-protocol set with compare-cas; three on a
// memcached that gives no versions, whose CompareAndSwap is a gets and a
// cas). Each lost attempt makes two more. A tagged value read, or WithTags, adds a read of
// the tags' stamps each.
func (t *Typed[V]) Update(ctx context.Context, key string, fn func(old V, found bool) (V, error), opts ...SetOption) (V, error) {
	var zero V
	// Through t.Cache(): with a local tier or a backplane, the cache whose
	// writes also evict locally and publish, and whose reads go to the
	// shared cache (a swap must compare with the shared value).
	c := t.Cache()
	cas, ok := c.(CompareAndSwapper)
	if !ok {
		return zero, &Error{Op: "Update", Key: key, Err: fmt.Errorf("%w: %T is not a CompareAndSwapper", ErrUnsupported, c)}
	}
	o := t.setOptions(opts)
	if err := CheckTTL(o.ttl); err != nil {
		return zero, &Error{Op: "Update", Key: key, Err: err}
	}
	if err := t.settle(ctx, key); err != nil {
		return zero, WrapError("Update", key, err)
	}
	vr, _ := c.(Versioner)
	for attempt := 1; ; attempt++ {
		v, swapped, err := t.updateOnce(ctx, c, cas, &vr, key, fn, o)
		if err != nil || swapped {
			return v, err
		}
		if attempt == UpdateAttempts {
			return zero, &Error{Op: "Update", Key: key, Err: fmt.Errorf("%w (%d attempts)", ErrConflict, attempt)}
		}
		if err := sleepCtx(ctx, updateBackoff(attempt)); err != nil {
			return zero, &Error{Op: "Update", Key: key, Err: err}
		}
	}
}

// updateOnce makes one read-modify-write attempt and reports whether its
// write landed. With a Versioner (*vr not nil) it reads the value with its
// version and swaps on the version; when the cache's server gives no
// versions (ErrUnsupported) it sets *vr to nil and compares values, in this
// attempt and the next.
func (t *Typed[V]) updateOnce(ctx context.Context, c Cache, cas CompareAndSwapper, vr *Versioner, key string, fn func(V, bool) (V, error), o setOptions) (V, bool, error) {
	var zero, old V
	var (
		b       []byte
		version uint64
		err     error
	)
	if *vr != nil {
		b, version, err = (*vr).GetVersion(ctx, key)
		if errors.Is(err, ErrUnsupported) {
			*vr, version = nil, 0
		}
	}
	if *vr == nil {
		b, err = c.Get(ctx, key)
	}
	found := err == nil
	switch {
	case found:
		if b == nil {
			b = []byte{} // a present empty value; nil would mean "absent" to CompareAndSwap
		}
		payload, tags, stamps, _ := openEnvelope(b)
		if len(tags) > 0 {
			// A value whose tag was invalidated is a miss to fn; the swap
			// still compares with the bytes there.
			valid, err := t.checkTags(ctx, map[string]tagged{key: {tags, stamps}})
			if err != nil {
				return zero, false, WrapError("Update", key, err)
			}
			found = valid[key]
		}
		if found {
			if err := t.decodePayload(payload, &old); err != nil {
				Emit(ctx, c, Event{Kind: EventDecodeError, Key: key, Err: err})
				return zero, false, &Error{Op: "Update", Key: key, Err: err}
			}
		}
	case errors.Is(err, ErrNotFound):
		b = nil
	default:
		return zero, false, WrapError("Update", key, err)
	}
	v, err := fn(old, found)
	if err != nil {
		return zero, false, &Error{Op: "Update", Key: key, Err: err}
	}
	nb, err := t.encode("Update", key, v)
	if err != nil {
		return zero, false, err
	}
	if nb, err = t.storedBytes(ctx, nb, o); err != nil { // an envelope, with WithTags
		return zero, false, WrapError("Update", key, err)
	}
	var swapped bool
	if version != 0 {
		_, swapped, err = (*vr).SwapVersion(ctx, key, version, nb, o.ttl)
		if errors.Is(err, ErrUnsupported) {
			*vr = nil
		}
	}
	if version == 0 || *vr == nil {
		swapped, err = cas.CompareAndSwap(ctx, key, b, nb, o.ttl)
	}
	if err != nil {
		return zero, false, WrapError("Update", key, err)
	}
	return v, swapped, nil
}

// updateBackoff returns the wait after the n-th lost attempt (n >= 1):
// between half and all of min(UpdateRetryDelay·2ⁿ⁻¹, UpdateMaxRetryDelay).
func updateBackoff(n int) time.Duration {
	d := UpdateMaxRetryDelay
	if n < 30 {
		d = min(UpdateRetryDelay<<(n-1), UpdateMaxRetryDelay)
	}
	return d/2 + rand.N(d/2+1)
}

// sleepCtx waits d, or until ctx is done (returning ctx.Err()).
func sleepCtx(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
