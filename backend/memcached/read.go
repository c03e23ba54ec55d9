package memcached

import (
	"context"
	"fmt"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit"
)

// fetch gets the items of keys (cachekit keys; nil for a miss, in the
// order of keys) in one round trip: one multi-key get per server involved.
// With a namespace it fetches the generation key of every server involved
// too (each server's generation lives on that server, so it travels in the
// same request as the server's keys), and reads again the keys of a server
// whose generation moved, so that a read never sees keys of a cleared
// generation. It returns, with a namespace, the generation state each key
// was read in.
func (c *Cache) fetch(cl *call, keys []string) ([]*memcache.Item, []*genState, error) {
	items := make([]*memcache.Item, len(keys))
	if c.nsPart == "" {
		if len(keys) == 1 {
			it, err := c.get(cl, serverKey("", keys[0]))
			items[0] = it
			return items, nil, err
		}
		sks := make([]string, len(keys))
		for i, k := range keys {
			sks[i] = serverKey("", k)
		}
		m, err := c.getMulti(cl, uniqueKeys(sks))
		if err != nil {
			return nil, nil, err
		}
		for i, sk := range sks {
			items[i] = m[sk]
		}
		return items, nil, nil
	}
	states := make([]*genState, len(keys))
	slots := make([]*genSlot, len(keys))
	pending := make([]int, len(keys))
	for i, k := range keys {
		slots[i], pending[i] = c.slotFor(k), i
	}
	var (
		used []*genSlot
		from = map[*genSlot]*genState{}
		sks  = make([]string, len(keys))
	)
	for range 5 {
		// One request: the generation key of every server involved, and
		// the keys of each in the generation last seen there (none yet
		// for a server whose generation this cache has never seen).
		used = used[:0]
		clear(from)
		req := make([]string, 0, len(pending)+1)
		for _, i := range pending {
			slot := slots[i]
			s, ok := from[slot]
			if !ok {
				s = slot.cur.Load()
				from[slot] = s
				used = append(used, slot)
				req = append(req, slot.key)
			}
			if s != nil {
				sks[i] = serverKey(s.prefix, keys[i])
				req = append(req, sks[i])
			}
		}
		m, err := c.getMulti(cl, uniqueKeys(req))
		if err != nil {
			return nil, nil, err
		}
		// Each server's generation: still the one its keys were read in,
		// or moved (read them again), or gone (so is everything in it).
		now := map[*genSlot]*genState{}
		for _, slot := range used {
			old := from[slot]
			gi, ok := m[slot.key]
			if !ok {
				s, err := c.newGeneration(cl, slot, old)
				if err != nil {
					return nil, nil, err
				}
				now[slot] = s
				continue
			}
			g, err := parseGeneration(slot, gi.Value)
			if err != nil {
				return nil, nil, err
			}
			if old != nil && g == old.gen {
				old.checked.Store(clock())
				now[slot] = old
				continue
			}
			c.saw(slot, old, g)
		}
		next := pending[:0]
		for _, i := range pending {
			slot := slots[i]
			s, ok := now[slot]
			if !ok {
				next = append(next, i) // read again in the new generation
				continue
			}
			states[i] = s
			if from[slot] == s { // read in s, else new: a miss
				items[i] = m[sks[i]]
			}
		}
		pending = next
		if len(pending) == 0 {
			return items, states, nil
		}
	}
	return nil, nil, fmt.Errorf("memcached: namespace generation key %q keeps changing", slots[pending[0]].key)
}

// getOne fetches one key's item (nil on a miss) and the state it was read in.
func (c *Cache) getOne(cl *call, key string) (*memcache.Item, *genState, error) {
	if c.nsPart == "" {
		it, err := c.get(cl, serverKey("", key))
		return it, nil, err
	}
	items, states, err := c.fetch(cl, []string{key})
	if err != nil {
		return nil, nil, err
	}
	return items[0], states[0], nil
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
	var items []*memcache.Item
	err := c.run(ctx, writes{}, func(cl *call) error {
		var err error
		items, _, err = c.fetch(cl, uniq)
		return err
	})
	if err != nil {
		return nil, cachekit.WrapError(op, "", err)
	}
	for i, k := range uniq {
		if it := items[i]; it != nil {
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
