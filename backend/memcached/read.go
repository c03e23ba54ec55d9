package memcached

import (
	"context"
	"fmt"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit"
)

// fetch gets the items of serverKeys(prefix) in one round trip (one request
// per server involved). With a namespace it fetches the generation key too,
// and starts over if the generation moved, so that a read never sees keys of
// a cleared generation. It returns the items by server key and the state the
// keys were built from.
func (c *Cache) fetch(cl *call, serverKeys func(prefix string) []string) (map[string]*memcache.Item, *genState, error) {
	if c.nsPart == "" {
		keys := serverKeys("")
		if len(keys) == 1 {
			it, err := c.get(cl, keys[0])
			if err != nil || it == nil {
				return nil, nil, err
			}
			return map[string]*memcache.Item{it.Key: it}, nil, nil
		}
		m, err := c.getMulti(cl, keys)
		return m, nil, err
	}
	s := c.gen.Load()
	if s == nil {
		var err error
		if s, err = c.loadGeneration(cl); err != nil {
			return nil, nil, err
		}
	}
	for range 5 {
		keys := append([]string{c.genKey}, serverKeys(s.prefix)...)
		m, err := c.getMulti(cl, keys)
		if err != nil {
			return nil, nil, err
		}
		gi, ok := m[c.genKey]
		if !ok {
			// The generation is gone, so is everything in it.
			s, err = c.newGeneration(cl, s)
			return nil, s, err
		}
		g, err := c.parseGeneration(gi.Value)
		if err != nil {
			return nil, nil, err
		}
		if g == s.gen {
			s.checked.Store(clock())
			delete(m, c.genKey)
			return m, s, nil
		}
		s = c.saw(s, g) // cleared meanwhile: read the new generation
	}
	return nil, nil, fmt.Errorf("memcached: namespace generation key %q keeps changing", c.genKey)
}

// getOne fetches one key's item (nil on a miss) and the state it was read in.
func (c *Cache) getOne(cl *call, key string) (*memcache.Item, *genState, error) {
	if c.nsPart == "" {
		it, err := c.get(cl, serverKey("", key))
		return it, nil, err
	}
	var sk string
	m, s, err := c.fetch(cl, func(prefix string) []string {
		sk = serverKey(prefix, key)
		return []string{sk}
	})
	if err != nil {
		return nil, nil, err
	}
	return m[sk], s, nil
}

// Get returns the value stored under key, or an error wrapping
// cachekit.ErrNotFound on a miss.
func (c *Cache) Get(ctx context.Context, key string) ([]byte, error) {
	const op = "Get"
	if err := cachekit.CheckKey(key); err != nil {
		return nil, cachekit.WrapError(op, key, err)
	}
	if err := c.enter(ctx); err != nil {
		return nil, cachekit.WrapError(op, key, err)
	}
	defer c.leave()
	var (
		it  *memcache.Item
		err error
	)
	switch {
	case c.batcher != nil:
		it, err = c.getBatched(ctx, key)
	case ctx.Done() == nil: // no goroutine needed: skip run's closure
		it, _, err = c.getOne(nil, key)
	default:
		err = c.run(ctx, writes{}, func(cl *call) error {
			var err error
			it, _, err = c.getOne(cl, key)
			return err
		})
	}
	if err != nil {
		return nil, cachekit.WrapError(op, key, err)
	}
	if it == nil {
		return nil, cachekit.WrapError(op, key, cachekit.ErrNotFound)
	}
	if it.Value == nil {
		return []byte{}, nil
	}
	return it.Value, nil
}

// uniqueKeys returns keys without repeats, in order.
func uniqueKeys(keys []string) []string {
	if len(keys) <= 1 {
		return keys
	}
	uniq := make([]string, 0, len(keys))
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			uniq = append(uniq, k)
		}
	}
	return uniq
}

// GetMany returns the values of the keys that are present, in one round
// trip: one multi-key get per server involved, sent concurrently.
func (c *Cache) GetMany(ctx context.Context, keys []string) (map[string][]byte, error) {
	const op = "GetMany"
	for _, k := range keys {
		if err := cachekit.CheckKey(k); err != nil {
			return nil, keyError(op, k, err)
		}
	}
	if err := c.enter(ctx); err != nil {
		return nil, cachekit.WrapError(op, "", err)
	}
	defer c.leave()
	out := make(map[string][]byte, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	uniq := uniqueKeys(keys)
	var (
		items map[string]*memcache.Item
		sks   []string
	)
	err := c.run(ctx, writes{}, func(cl *call) error {
		var err error
		items, _, err = c.fetch(cl, func(prefix string) []string {
			sks = make([]string, len(uniq))
			for i, k := range uniq {
				sks[i] = serverKey(prefix, k)
			}
			return sks
		})
		return err
	})
	if err != nil {
		return nil, cachekit.WrapError(op, "", err)
	}
	for i, k := range uniq {
		if it, ok := items[sks[i]]; ok {
			v := it.Value
			if v == nil {
				v = []byte{}
			}
			out[k] = v
		}
	}
	return out, nil
}

// Exists reports whether key is present. memcached has no existence check
// that leaves the TTL alone, so Exists fetches the value and discards it.
func (c *Cache) Exists(ctx context.Context, key string) (bool, error) {
	const op = "Exists"
	if err := cachekit.CheckKey(key); err != nil {
		return false, cachekit.WrapError(op, key, err)
	}
	if err := c.enter(ctx); err != nil {
		return false, cachekit.WrapError(op, key, err)
	}
	defer c.leave()
	var found bool
	var err error
	if c.batcher != nil {
		var it *memcache.Item
		it, err = c.getBatched(ctx, key)
		found = it != nil
	} else {
		err = c.run(ctx, writes{}, func(cl *call) error {
			it, _, err := c.getOne(cl, key)
			found = it != nil
			return err
		})
	}
	if err != nil {
		return false, cachekit.WrapError(op, key, err)
	}
	return found, nil
}
