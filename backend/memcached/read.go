package memcached

import (
	"context"
	"errors"
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
//
// When some servers of a pool answer and others fail (see getMulti), fetch
// returns the items it read with a *partialError: a key it could not read
// (its server failed, or the server holding its generation) is nil, like
// a miss, and counted in the error. Every other error fails the whole
// fetch.
func (c *Cache) fetch(cl *call, keys []string) ([]*memcache.Item, []*genState, error) {
	items := make([]*memcache.Item, len(keys))
	var unread *unreadError
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
		if err != nil && !errors.As(err, &unread) {
			return nil, nil, err
		}
		n := 0
		for i, sk := range sks {
			items[i] = m[sk]
			if unread != nil && unread.keys[sk] {
				n++
			}
		}
		return wholeOrPartial(items, nil, partial(unread, n, len(keys)))
	}
	states := make([]*genState, len(keys))
	slots := make([]*genSlot, len(keys))
	pending := make([]int, len(keys))
	for i, k := range keys {
		slots[i], pending[i] = c.slotFor(k), i
	}
	var (
		used    []*genSlot
		from    = map[*genSlot]*genState{}
		sks     = make([]string, len(keys))
		notRead int
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
		var u *unreadError
		if err != nil && !errors.As(err, &u) {
			return nil, nil, err
		}
		if u != nil {
			if unread == nil {
				unread = &unreadError{keys: map[string]bool{}}
			}
			for _, s := range u.servers {
				unread.add(s.addr, nil, s.err)
			}
		}
		// Each server's generation: still the one its keys were read in,
		// or moved (read them again), or gone (so is everything in it),
		// or not read (nor are its keys).
		now := map[*genSlot]*genState{}
		failed := map[*genSlot]bool{}
		for _, slot := range used {
			old := from[slot]
			gi, ok := m[slot.key]
			if !ok && u != nil && u.keys[slot.key] {
				failed[slot] = true
				continue
			}
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
			if failed[slot] {
				notRead++ // its generation is unknown: so is the key
				continue
			}
			s, ok := now[slot]
			if !ok {
				next = append(next, i) // read again in the new generation
				continue
			}
			states[i] = s
			if from[slot] == s { // read in s, else new: a miss
				if u != nil && u.keys[sks[i]] {
					notRead++
					continue
				}
				items[i] = m[sks[i]]
			}
		}
		pending = next
		if len(pending) == 0 {
			return wholeOrPartial(items, states, partial(unread, notRead, len(keys)))
		}
	}
	return nil, nil, fmt.Errorf("memcached: namespace generation key %q keeps changing", slots[pending[0]].key)
}

// partial returns the error of a fetch of total keys of which n could not
// be read from the servers in unread (nil when all were read).
func partial(unread *unreadError, n, total int) error {
	if unread == nil || n == 0 {
		return nil
	}
	return &partialError{unread: n, total: total, servers: unread.servers}
}

// wholeOrPartial returns fetch's result: with a partial error that covers
// every key, nothing was read, and the fetch fails with the first failed
// server's error, as when every server fails.
func wholeOrPartial(items []*memcache.Item, states []*genState, err error) ([]*memcache.Item, []*genState, error) {
	if pe, ok := err.(*partialError); ok && pe.unread == pe.total {
		return nil, nil, pe.servers[0].err
	}
	return items, states, err
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
	it, err := c.getItem(ctx, key)
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

// getItem is Get's read (and GetVersion's): key's item, read with gets
// (so with its cas), or nil on a miss. Must be called between enter and
// leave.
func (c *Cache) getItem(ctx context.Context, key string) (*memcache.Item, error) {
	switch {
	case c.batcher != nil:
		return c.getBatched(ctx, key)
	case ctx.Done() == nil: // no goroutine needed: skip run's closure
		it, _, err := c.getOne(nil, key)
		return it, err
	}
	var it *memcache.Item
	err := c.run(ctx, writes{}, func(cl *call) error {
		var err error
		it, _, err = c.getOne(cl, key)
		return err
	})
	if err != nil {
		return nil, err // it may be set still by an abandoned call
	}
	return it, nil
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
//
// When the cache knows the client's servers (Options.Selector, or a URL)
// and some servers of the pool answer while others fail, GetMany returns
// the values read from the servers that answered together with an error
// for which errors.Is(err, cachekit.ErrUnavailable) reports true, which
// also wraps each failed server's own error (a dial error, say) and says
// which servers and how many keys were not read; the keys of a failed
// server (with a single generation key, every key if that is the one
// failing) are absent from the map, as misses are. When every server
// involved fails, or without a known selector, any failure fails the call
// with a nil map.
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
	// Only fn's own error is a *partialError, returned once fn is done: an
	// abandoned call's items must not be read.
	var pe *partialError
	if err != nil && !errors.As(err, &pe) {
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
	if pe != nil {
		return out, cachekit.WrapError(op, "", pe)
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
