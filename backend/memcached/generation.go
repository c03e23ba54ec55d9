package memcached

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// Namespace generations: see "Namespaces and Clear" in the package
// documentation.
//
// With a Ring (Options.Selector, or a URL), every server holds the
// generation of the keys it stores, under its own generation key (routed to
// it by the Ring), so that losing or adding a server touches only the keys
// that server holds. Without one (no selector, or another selector, which
// may place a key differently in every generation), the namespace has one
// generation key, wherever the client puts it.

// genSlot is one generation key and what this cache last saw of it.
type genSlot struct {
	addr string // server address; "" with a single generation key
	key  string // server key of the generation
	cur  atomic.Pointer[genState]
}

// genState is a namespace generation as last seen on the server.
type genState struct {
	gen     uint64
	prefix  string       // server key prefix of this generation
	checked atomic.Int64 // monotonic nanoseconds (see clock) when last confirmed
}

var clockBase = time.Now()

// clock returns monotonic nanoseconds.
func clock() int64 { return int64(time.Since(clockBase)) }

// keyPrefix returns the server key prefix of s ("" for nil, no namespace).
func (s *genState) keyPrefix() string {
	if s == nil {
		return ""
	}
	return s.prefix
}

// initGenerations sets up the generation slots of a namespaced cache:
// one per server of ring, or one for the namespace when ring is nil.
func (c *Cache) initGenerations(ring *Ring) {
	if ring == nil {
		c.slots = []*genSlot{{key: generationKey(c.nsPart)}}
		return
	}
	c.ring = ring
	c.placePrefix = string(marker) + c.nsPart + "::"
	for _, addr := range ring.names {
		c.slots = append(c.slots, &genSlot{addr: addr, key: serverGenerationKey(c.nsPart, addr)})
	}
}

// slotFor returns the generation slot of key (nil without a namespace).
func (c *Cache) slotFor(key string) *genSlot {
	switch {
	case c.nsPart == "":
		return nil
	case len(c.slots) == 1:
		return c.slots[0]
	}
	// The Ring places a namespaced key by the key without its generation
	// (see Ring), which is this.
	return c.slots[c.ring.index(serverKey(c.placePrefix, key))]
}

// newGenState returns the state for gen, confirmed now.
func (c *Cache) newGenState(gen uint64) *genState {
	s := &genState{gen: gen, prefix: generationPrefix(c.nsPart, gen)}
	s.checked.Store(clock())
	return s
}

// saw records that slot's server holds generation gen, given that the
// caller worked with old (which may be nil). It returns the state to use for
// gen.
func (c *Cache) saw(slot *genSlot, old *genState, gen uint64) *genState {
	if old != nil && old.gen == gen {
		old.checked.Store(clock())
		return old
	}
	s := c.newGenState(gen)
	// Replace only what the caller started from: a concurrent call may have
	// stored a newer generation already, which a stale reply must not undo.
	slot.cur.CompareAndSwap(old, s)
	return s
}

// parseGeneration reads a generation value.
func parseGeneration(slot *genSlot, v []byte) (uint64, error) {
	g, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
	if err != nil {
		return 0, errGenerationKey(slot.key, v, err)
	}
	return g, nil
}

// loadGeneration asks slot's server for the namespace generation, creating
// one if there is none, and returns its state.
func (c *Cache) loadGeneration(cl *call, slot *genSlot) (*genState, error) {
	old := slot.cur.Load()
	it, err := c.get(cl, slot.key)
	if err != nil {
		return nil, err
	}
	return c.sawItem(cl, slot, old, it)
}

// sawItem records what a get of slot's generation key returned (nil: a
// miss), creating a generation when there is none.
func (c *Cache) sawItem(cl *call, slot *genSlot, old *genState, it *memcache.Item) (*genState, error) {
	if it == nil {
		return c.newGeneration(cl, slot, old)
	}
	g, err := parseGeneration(slot, it.Value)
	if err != nil {
		return nil, err
	}
	return c.saw(slot, old, g), nil
}

// loadGenerations is loadGeneration for several slots, in one round trip.
func (c *Cache) loadGenerations(cl *call, slots []*genSlot) ([]*genState, error) {
	out := make([]*genState, len(slots))
	if len(slots) == 1 {
		s, err := c.loadGeneration(cl, slots[0])
		out[0] = s
		return out, err
	}
	olds := make([]*genState, len(slots))
	keys := make([]string, len(slots))
	for i, slot := range slots {
		olds[i], keys[i] = slot.cur.Load(), slot.key
	}
	m, err := c.getMulti(cl, keys)
	if err != nil {
		return nil, err
	}
	for i, slot := range slots {
		if out[i], err = c.sawItem(cl, slot, olds[i], m[slot.key]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// newGeneration creates slot's generation key, which is missing (never set,
// or evicted, or flushed, or its server is new or was restarted). The first
// generation is random, so that a namespace whose generation key was lost
// never comes back to the generation of keys that may still be stored.
func (c *Cache) newGeneration(cl *call, slot *genSlot, old *genState) (*genState, error) {
	for range 3 {
		g := rand.Uint64N(1<<62) + 1<<32
		// An add may be resent: a second one finds the key and reads it.
		err := c.do(cl, slot.key, false, func() error {
			return c.client.Add(&memcache.Item{Key: slot.key, Value: strconv.AppendUint(nil, g, 10)})
		})
		if err == nil {
			return c.saw(slot, old, g), nil
		}
		if !errors.Is(err, memcache.ErrNotStored) {
			return nil, err
		}
		// Someone else created it first: use theirs.
		it, err := c.get(cl, slot.key)
		if err != nil {
			return nil, err
		}
		if it == nil {
			continue // and gone again already
		}
		g, err = parseGeneration(slot, it.Value)
		if err != nil {
			return nil, err
		}
		return c.saw(slot, old, g), nil
	}
	return nil, fmt.Errorf("memcached: namespace generation key %q keeps disappearing", slot.key)
}

// writeState returns the generation of slot that Set, SetMany and Add use:
// the last one seen, if seen within GenerationTTL, else the server's. Without
// a namespace (nil slot) it returns nil.
func (c *Cache) writeState(cl *call, slot *genSlot) (*genState, error) {
	if slot == nil {
		return nil, nil
	}
	s := slot.cur.Load()
	if s != nil && c.genTTL > 0 && clock()-s.checked.Load() < int64(c.genTTL) {
		return s, nil
	}
	return c.loadGeneration(cl, slot)
}
