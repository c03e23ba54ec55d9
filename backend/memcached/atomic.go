package memcached

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit"
)

// Read-modify-write operations: Increment with a positive delta is
// memcached's own incr; everything else is a compare-and-swap loop over gets
// and cas (casLoop).

// casLoop is the gets/cas loop shared by the read-modify-write operations.
// It reads key's item (nil when missing) with the namespace generation it
// was read in, asks next what to store, and stores that: with cas when there
// was an item (next returns it, or a new item with its CasID), with add when
// there was none (next builds the whole item, server key included). A nil
// item from next ends the loop with nothing stored (false); an error from
// next ends it with that error. A cas that finds the item changed
// (EXISTS) reads it again and asks next again, after a short random backoff
// from the third attempt on; a cas that finds the item gone, and an add
// that finds one, do the same when retryGone is set, and otherwise end the
// loop with false. A stored item ends it with true. A cas or add whose reply
// is lost is not resent (the error wraps cachekit.ErrUnknownOutcome).
func (c *Cache) casLoop(ctx context.Context, cl *call, key string, retryGone bool,
	next func(cur *memcache.Item, s *genState) (*memcache.Item, error)) (bool, error) {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if err := ctx.Err(); err != nil {
				return false, err
			}
			backoff(attempt)
		}
		cur, s, err := c.getOne(cl, key)
		if err != nil {
			return false, err
		}
		it, err := next(cur, s)
		if err != nil || it == nil {
			return false, err
		}
		verb := c.client.CompareAndSwap
		if cur == nil {
			verb = c.client.Add
		}
		err = c.store(cl, verb, it)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, memcache.ErrCASConflict):
			continue // changed meanwhile
		case errors.Is(err, memcache.ErrNotStored), errors.Is(err, memcache.ErrCacheMiss):
			if retryGone {
				continue // removed (cas) or created (add) meanwhile
			}
			return false, nil
		default:
			return false, err
		}
	}
}

// Increment adds delta to the base-10 int64 stored under key.
//
// A positive delta is memcached's own incr, one request: it keeps the
// item's flags and expiry (so the TTL is kept), and a missing key is created
// with add (no expiry; when another writer created it first, incr again).
// incr counts in unsigned 64 bits, so a result above math.MaxInt64, or one
// that wrapped, means the value was not an int64 that could take delta:
// Increment then takes the delta back off (a compare-and-swap that writes
// the number back) and fails with ErrNotInteger. A value incr refuses as
// non-numeric (a negative number, among others) goes through the
// compare-and-swap loop below. incr also reads as numbers some values that
// are not base-10 int64s in the strict sense of the contract: leading
// spaces, a '+' sign, and anything after a space ("5 apples" counts as 5);
// it increments them where the contract says ErrNotInteger. And incr
// rewrites a value whose result is shorter in place, padded with spaces:
// "007" incremented by 1 reads "8  " afterwards. Values written by
// Increment, or by Set of a strconv-formatted number, are never like that.
// With a namespace, incr uses the generation this cache last saw within
// Options.GenerationTTL, as Set does: an Increment racing another process's
// Clear within that window may count in the cleared generation (it returns
// the old counter plus delta, and the count is lost with the generation).
//
// A delta of zero or less is a compare-and-swap loop, as memcached's decr
// stops at 0: gets, parse, cas with the same flags and the absolute expiry
// recorded in them (so the TTL is kept); a missing key is created with add
// (no expiry), and a lost race starts over.
//
// An incr, cas or add whose reply is lost is never resent: the error wraps
// cachekit.ErrUnknownOutcome, and the delta was added once or not at all.
func (c *Cache) Increment(ctx context.Context, key string, delta int64) (int64, error) {
	const op = "Increment"
	if err := cachekit.CheckKey(key); err != nil {
		return 0, cachekit.WrapError(op, key, err)
	}
	if err := c.enter(ctx); err != nil {
		return 0, cachekit.WrapError(op, key, err)
	}
	defer c.leave()
	var n int64
	err := c.run(ctx, writes{key: key}, func(cl *call) error {
		var err error
		if delta > 0 {
			n, err = c.incr(ctx, cl, key, delta)
		} else {
			n, err = c.increment(ctx, cl, key, delta)
		}
		return err
	})
	if err != nil {
		return 0, cachekit.WrapError(op, key, err)
	}
	return n, nil
}

// incr is Increment for a positive delta: memcached's incr (see Increment).
func (c *Cache) incr(ctx context.Context, cl *call, key string, delta int64) (int64, error) {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			backoff(attempt)
		}
		s, err := c.writeState(cl, c.slotFor(key))
		if err != nil {
			return 0, err
		}
		sk := serverKey(s.keyPrefix(), key)
		var n uint64
		err = c.do(cl, sk, true, func() error {
			var err error
			n, err = c.client.Increment(sk, uint64(delta))
			return err
		})
		switch {
		case err == nil:
			if n > math.MaxInt64 || n < uint64(delta) {
				return 0, c.undoIncr(ctx, cl, key, n, delta)
			}
			return int64(n), nil
		case errors.Is(err, memcache.ErrCacheMiss):
			err := c.store(cl, c.client.Add, &memcache.Item{Key: sk, Value: strconv.AppendInt(nil, delta, 10)})
			if errors.Is(err, memcache.ErrNotStored) {
				continue // created meanwhile: incr it
			}
			if err != nil {
				return 0, err
			}
			return delta, nil
		case nonNumeric(err):
			// A negative number, or not a number: the compare-and-swap
			// loop counts the former and refuses the latter.
			return c.increment(ctx, cl, key, delta)
		default:
			return 0, err
		}
	}
}

// nonNumeric reports whether err is memcached refusing to incr a value
// that is not an unsigned 64-bit decimal number.
func nonNumeric(err error) bool {
	return err != nil && strings.Contains(err.Error(), "non-numeric value")
}

// undoIncr takes delta back off key after an incr whose result n shows the
// value was no int64 that could take delta, and returns the ErrNotInteger
// error Increment reports. It subtracts delta (modulo 2^64, as incr added
// it) with a compare-and-swap that writes the number back in base 10 and
// keeps the item's flags and expiry; it leaves alone a value that is gone
// or no longer a number (a writer replaced it).
func (c *Cache) undoIncr(ctx context.Context, cl *call, key string, n uint64, delta int64) error {
	bad := fmt.Errorf("%w: incr by %d gave %d: the value was not an int64 that could take it", cachekit.ErrNotInteger, delta, n)
	_, err := c.casLoop(ctx, cl, key, false, func(it *memcache.Item, _ *genState) (*memcache.Item, error) {
		if it == nil {
			return nil, nil
		}
		v, err := strconv.ParseUint(strings.TrimRight(string(it.Value), " "), 10, 64)
		if err != nil {
			return nil, nil
		}
		it.Value = strconv.AppendUint(it.Value[:0], v-uint64(delta), 10)
		it.Expiration = flagsExpiration(it.Flags)
		return it, nil
	})
	if err != nil {
		return fmt.Errorf("%w (taking the delta back off failed: %w)", bad, err)
	}
	return bad
}

// increment is Increment as a compare-and-swap loop (see Increment).
func (c *Cache) increment(ctx context.Context, cl *call, key string, delta int64) (int64, error) {
	var sum int64
	_, err := c.casLoop(ctx, cl, key, true, func(it *memcache.Item, s *genState) (*memcache.Item, error) {
		if it == nil {
			sum = delta
			return &memcache.Item{Key: serverKey(s.keyPrefix(), key), Value: strconv.AppendInt(nil, delta, 10)}, nil
		}
		cur, err := parseInt64(it.Value)
		if err != nil {
			return nil, err
		}
		sum = cur + delta
		if (delta > 0 && sum < cur) || (delta < 0 && sum > cur) {
			return nil, fmt.Errorf("%w: %d%+d overflows int64", cachekit.ErrNotInteger, cur, delta)
		}
		it.Value = strconv.AppendInt(it.Value[:0], sum, 10)
		it.Expiration = flagsExpiration(it.Flags)
		return it, nil
	})
	if err != nil {
		return 0, err
	}
	return sum, nil
}

// parseInt64 parses a stored counter: an optional '-' and base-10 digits
// that fit an int64 (no '+', no spaces).
func parseInt64(v []byte) (int64, error) {
	if len(v) > 0 && v[0] != '+' {
		if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return n, nil
		}
	}
	// The value itself stays out of the error: errors end up in logs.
	return 0, fmt.Errorf("%w (%d-byte value)", cachekit.ErrNotInteger, len(v))
}

// backoff sleeps a little, more after more lost compare-and-swap races, so
// that many writers of one key don't all retry in lockstep.
func backoff(attempt int) {
	if attempt < 2 {
		return
	}
	limit := time.Duration(25<<min(attempt, 7)) * time.Microsecond // up to 3.2ms
	time.Sleep(rand.N(limit))
}

// Expire sets a new TTL on key (0: no expiry) and reports whether it
// existed. The absolute expiry lives in the item's flags too (for
// Increment), and touch cannot change flags, so Expire is a compare-and-swap
// that writes the value back with the new flags and expiry; it costs a
// transfer of the value both ways.
func (c *Cache) Expire(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	const op = "Expire"
	if err := cachekit.CheckKey(key); err != nil {
		return false, cachekit.WrapError(op, key, err)
	}
	if err := cachekit.CheckTTL(ttl); err != nil {
		return false, cachekit.WrapError(op, key, err)
	}
	if err := c.enter(ctx); err != nil {
		return false, cachekit.WrapError(op, key, err)
	}
	defer c.leave()
	var found bool
	err := c.run(ctx, writes{key: key}, func(cl *call) error {
		var err error
		found, err = c.casLoop(ctx, cl, key, false, func(it *memcache.Item, _ *genState) (*memcache.Item, error) {
			if it != nil {
				it.Expiration, it.Flags = expiration(ttl, time.Now())
			}
			return it, nil
		})
		return err
	})
	if err != nil {
		return false, cachekit.WrapError(op, key, err)
	}
	return found, nil
}

// CompareAndDelete deletes key only while it holds exactly old, and reports
// whether it deleted it. It implements cachekit.CompareAndDeleter.
//
// memcached's delete takes no compare-and-swap id, so CompareAndDelete reads
// the item with gets (and, with a namespace, the current generation in the
// same round trip), compares the bytes, and then replaces the item with cas
// and a negative expiry: memcached stores it as already expired, so the
// swap is an atomic delete-if-unchanged, and the key is a miss for every
// reader, add and delete at once. A cas that finds the item changed reads
// it again: another writer may have stored old again. A cas whose reply is
// lost is not resent (the error wraps cachekit.ErrUnknownOutcome).
func (c *Cache) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	const op = "CompareAndDelete"
	if err := cachekit.CheckKey(key); err != nil {
		return false, cachekit.WrapError(op, key, err)
	}
	if err := c.enter(ctx); err != nil {
		return false, cachekit.WrapError(op, key, err)
	}
	defer c.leave()
	old = detach(ctx, old)
	var deleted bool
	err := c.run(ctx, writes{key: key}, func(cl *call) error {
		var err error
		deleted, err = c.casLoop(ctx, cl, key, false, func(it *memcache.Item, _ *genState) (*memcache.Item, error) {
			if it == nil || !bytes.Equal(it.Value, old) {
				return nil, nil
			}
			return &memcache.Item{Key: it.Key, Flags: it.Flags, Expiration: -1, CasID: it.CasID}, nil
		})
		return err
	})
	if err != nil {
		return false, cachekit.WrapError(op, key, err)
	}
	return deleted, nil
}

// CompareAndSwap stores new under key with ttl (0: no expiry) only while key
// holds exactly old, and reports whether it did; an old of nil means "only
// while key is absent". It implements cachekit.CompareAndSwapper.
//
// With a nil old it is memcached's add, which is atomic (NOT_STORED reports
// false; with a namespace, as for Add, the generation is checked again
// before a NOT_STORED is believed). Otherwise it reads the item with gets
// (and, with a namespace, the current generation in the same round trip),
// compares the bytes, and stores new with cas, the TTL converted as Set
// converts it (rounded up to whole seconds, plus memcached's one-second
// tick, absolute beyond 30 days, the absolute expiry recorded in the flags).
// A missing key, a different value, or an item removed before the cas
// reports false. A cas that finds the item changed reads it again, as
// CompareAndDelete does: another writer (or an Expire, which rewrites the
// item) may have left old in place. A non-nil empty old matches a stored
// empty value, never a missing key. A cas or add whose reply is lost is not
// resent: the error wraps cachekit.ErrUnknownOutcome.
func (c *Cache) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	const op = "CompareAndSwap"
	if err := c.checkWrite(key, new, ttl); err != nil {
		return false, cachekit.WrapError(op, key, err)
	}
	if err := c.enter(ctx); err != nil {
		return false, cachekit.WrapError(op, key, err)
	}
	defer c.leave()
	exp, abs := expiration(ttl, time.Now())
	isNil := old == nil
	old, new = detach(ctx, old), detach(ctx, new)
	var swapped bool
	err := c.run(ctx, writes{key: key}, func(cl *call) error {
		var err error
		if isNil {
			swapped, err = c.addIfAbsent(cl, key, new, abs, exp)
			return err
		}
		swapped, err = c.casLoop(ctx, cl, key, false, func(it *memcache.Item, _ *genState) (*memcache.Item, error) {
			if it == nil || !bytes.Equal(it.Value, old) {
				return nil, nil
			}
			return &memcache.Item{Key: it.Key, Value: new, Flags: abs, Expiration: exp, CasID: it.CasID}, nil
		})
		return err
	})
	if err != nil {
		return false, cachekit.WrapError(op, key, err)
	}
	return swapped, nil
}

// addIfAbsent is Add reporting whether it stored the value instead of
// returning ErrExists.
func (c *Cache) addIfAbsent(cl *call, key string, value []byte, abs uint32, exp int32) (bool, error) {
	return c.addLoop(cl, key, func(sk string) (bool, error) {
		return c.addItem(cl, &memcache.Item{Key: sk, Value: value, Flags: abs, Expiration: exp})
	})
}
