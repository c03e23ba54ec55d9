package memcached

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit"
)

func (c *Cache) checkValue(value []byte) error {
	if c.maxValue > 0 && len(value) > c.maxValue {
		return fmt.Errorf("%w: %d bytes, the limit is %d", cachekit.ErrTooLarge, len(value), c.maxValue)
	}
	return nil
}

func (c *Cache) checkWrite(key string, value []byte, ttl time.Duration) error {
	if err := cachekit.CheckKey(key); err != nil {
		return err
	}
	if err := cachekit.CheckTTL(ttl); err != nil {
		return err
	}
	return c.checkValue(value)
}

// detach copies value when run may hand it to a goroutine that outlives the
// call, so that the caller may reuse its slice as soon as the call returns.
func detach(ctx context.Context, value []byte) []byte {
	if ctx.Done() == nil {
		return value
	}
	return bytes.Clone(value)
}

// store sends one set (or add) of an item.
func (c *Cache) store(cl *call, verb func(*memcache.Item) error, it *memcache.Item) error {
	return c.do(cl, it.Key, true, func() error { return clientError(verb(it)) })
}

// Set stores value under key with ttl (0: no expiry).
func (c *Cache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	const op = "Set"
	if err := c.checkWrite(key, value, ttl); err != nil {
		return cachekit.WrapError(op, key, err)
	}
	if err := c.enter(ctx); err != nil {
		return cachekit.WrapError(op, key, err)
	}
	defer c.leave()
	exp, abs := expiration(ttl, time.Now())
	value = detach(ctx, value)
	err := c.run(ctx, writes{key: key}, func(cl *call) error {
		s, err := c.writeState(cl, c.slotFor(key))
		if err != nil {
			return err
		}
		return c.store(cl, c.client.Set, &memcache.Item{
			Key: serverKey(s.keyPrefix(), key), Value: value, Flags: abs, Expiration: exp,
		})
	})
	return cachekit.WrapError(op, key, err)
}

// SetMany stores every item with ttl. gomemcache has no multi-key set, so
// SetMany sends one set per item, at most BatchConcurrency at a time. It is
// not atomic: on an error some items may have been stored.
func (c *Cache) SetMany(ctx context.Context, items map[string][]byte, ttl time.Duration) error {
	const op = "SetMany"
	if err := cachekit.CheckTTL(ttl); err != nil {
		return cachekit.WrapError(op, "", err)
	}
	type kv struct {
		key   string
		value []byte
	}
	list := make([]kv, 0, len(items))
	keys := make([]string, 0, len(items))
	for k, v := range items {
		if err := cachekit.CheckKey(k); err != nil {
			return keyError(op, k, err)
		}
		if err := c.checkValue(v); err != nil {
			return keyError(op, k, err)
		}
		list = append(list, kv{k, v})
		keys = append(keys, k)
	}
	if err := c.enter(ctx); err != nil {
		return cachekit.WrapError(op, "", err)
	}
	defer c.leave()
	if len(list) == 0 {
		return nil
	}
	if ctx.Done() != nil {
		for i := range list {
			list[i].value = bytes.Clone(list[i].value)
		}
	}
	exp, abs := expiration(ttl, time.Now())
	err := c.run(ctx, writes{keys: keys}, func(cl *call) error {
		// The generation of every server involved, asked for (once per
		// server) only when not seen within GenerationTTL.
		states := make([]*genState, len(list))
		if c.nsPart != "" {
			seen := map[*genSlot]*genState{}
			for i := range list {
				slot := c.slotFor(list[i].key)
				s, ok := seen[slot]
				if !ok {
					var err error
					if s, err = c.writeState(cl, slot); err != nil {
						return err
					}
					seen[slot] = s
				}
				states[i] = s
			}
		}
		return c.each(ctx, len(list), func(i int) error {
			return c.store(cl, c.client.Set, &memcache.Item{
				Key: serverKey(states[i].keyPrefix(), list[i].key), Value: list[i].value, Flags: abs, Expiration: exp,
			})
		})
	})
	return cachekit.WrapError(op, "", err)
}

// each calls fn(0) to fn(n-1), at most c.batch at a time, and returns the
// first error. It stops starting calls once one failed or ctx is done.
func (c *Cache) each(ctx context.Context, n int, fn func(i int) error) error {
	workers := min(c.batch, n)
	if workers <= 1 {
		for i := range n {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(i); err != nil {
				return err
			}
		}
		return nil
	}
	var (
		next     atomic.Int64
		failed   atomic.Bool
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() && ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					failed.Store(true)
					errOnce.Do(func() { firstErr = err })
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// Add stores value under key only if key is absent (memcached's add, which
// is atomic), else returns an error wrapping cachekit.ErrExists.
func (c *Cache) Add(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	const op = "Add"
	if err := c.checkWrite(key, value, ttl); err != nil {
		return cachekit.WrapError(op, key, err)
	}
	if err := c.enter(ctx); err != nil {
		return cachekit.WrapError(op, key, err)
	}
	defer c.leave()
	exp, abs := expiration(ttl, time.Now())
	value = detach(ctx, value)
	err := c.run(ctx, writes{key: key}, func(cl *call) error {
		stored, err := c.addLoop(cl, key, func(sk string) (bool, error) {
			return c.addItem(cl, &memcache.Item{Key: sk, Value: value, Flags: abs, Expiration: exp})
		})
		if err == nil && !stored {
			err = cachekit.ErrExists
		}
		return err
	})
	return cachekit.WrapError(op, key, err)
}

// addLoop is the request loop of the adds (Add, CompareAndSwap from
// absent, AddVersion): add stores the value under the server key it is
// given, in the generation this cache knows, and reports whether it did
// (false: the key exists there). With a namespace, a key found to exist is
// believed only after the generation is asked for again: when another
// process cleared the namespace meanwhile, the add is made again in the new
// generation (up to three times in all).
func (c *Cache) addLoop(cl *call, key string, add func(sk string) (bool, error)) (bool, error) {
	slot := c.slotFor(key)
	s, err := c.writeState(cl, slot)
	if err != nil {
		return false, err
	}
	for range 3 {
		stored, err := add(serverKey(s.keyPrefix(), key))
		if err != nil || stored || s == nil {
			return stored, err
		}
		// The key exists in the generation this cache knows; make sure
		// that generation was not cleared meanwhile.
		fresh, err := c.loadGeneration(cl, slot)
		if err != nil {
			return false, err
		}
		if fresh.gen == s.gen {
			return false, nil
		}
		s = fresh
	}
	return false, nil
}

// addItem is memcached's add of it: false, nil when the key exists.
func (c *Cache) addItem(cl *call, it *memcache.Item) (bool, error) {
	err := c.store(cl, c.client.Add, it)
	if errors.Is(err, memcache.ErrNotStored) {
		return false, nil
	}
	return err == nil, err
}

// freshStates returns the generation of the server of each key now, asking
// the servers involved (one round trip). Delete needs this: a delete in a
// generation cleared meanwhile would report a key as deleted and leave the
// live one readable. Without a namespace it returns nils.
func (c *Cache) freshStates(cl *call, keys []string) ([]*genState, error) {
	out := make([]*genState, len(keys))
	if c.nsPart == "" {
		return out, nil
	}
	idx := map[*genSlot]int{}
	var slots []*genSlot
	at := make([]int, len(keys))
	for i, k := range keys {
		slot := c.slotFor(k)
		j, ok := idx[slot]
		if !ok {
			j = len(slots)
			idx[slot] = j
			slots = append(slots, slot)
		}
		at[i] = j
	}
	states, err := c.loadGenerations(cl, slots)
	if err != nil {
		return nil, err
	}
	for i := range keys {
		out[i] = states[at[i]]
	}
	return out, nil
}

// Delete removes keys and reports how many existed. With a namespace it
// asks the servers for the namespace's generation first (as reads do), so
// that it never deletes in a generation another process cleared. It sends
// one delete per key (gomemcache has no multi-key delete), at most
// BatchConcurrency at a time.
func (c *Cache) Delete(ctx context.Context, keys ...string) (int, error) {
	const op = "Delete"
	key := ""
	if len(keys) == 1 {
		key = keys[0]
	}
	for _, k := range keys {
		if err := cachekit.CheckKey(k); err != nil {
			return 0, keyError(op, k, err)
		}
	}
	if err := c.enter(ctx); err != nil {
		return 0, cachekit.WrapError(op, key, err)
	}
	defer c.leave()
	if len(keys) == 0 {
		return 0, nil
	}
	uniq := uniqueKeys(keys)
	w := writes{keys: uniq}
	if len(uniq) == 1 {
		w = writes{key: uniq[0]}
	}
	var n atomic.Int64
	err := c.run(ctx, w, func(cl *call) error {
		states, err := c.freshStates(cl, uniq)
		if err != nil {
			return err
		}
		return c.each(ctx, len(uniq), func(i int) error {
			sk := serverKey(states[i].keyPrefix(), uniq[i])
			err := c.do(cl, sk, true, func() error { return c.client.Delete(sk) })
			switch {
			case err == nil:
				n.Add(1)
			case errors.Is(err, memcache.ErrCacheMiss):
			default:
				return err
			}
			return nil
		})
	})
	if err != nil {
		return 0, cachekit.WrapError(op, key, err)
	}
	return int(n.Load()), nil
}
