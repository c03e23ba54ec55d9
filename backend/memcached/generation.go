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

// newGenState returns the state for gen, confirmed now.
func (c *Cache) newGenState(gen uint64) *genState {
	s := &genState{gen: gen, prefix: generationPrefix(c.nsPart, gen)}
	s.checked.Store(clock())
	return s
}

// saw records that the server holds generation gen, given that the caller
// worked with old (which may be nil). It returns the state to use for gen.
func (c *Cache) saw(old *genState, gen uint64) *genState {
	if old != nil && old.gen == gen {
		old.checked.Store(clock())
		return old
	}
	s := c.newGenState(gen)
	// Replace only what the caller started from: a concurrent call may have
	// stored a newer generation already, which a stale reply must not undo.
	c.gen.CompareAndSwap(old, s)
	return s
}

// parseGeneration reads a generation value.
func (c *Cache) parseGeneration(v []byte) (uint64, error) {
	g, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
	if err != nil {
		return 0, errGenerationKey(c.genKey, v, err)
	}
	return g, nil
}

// loadGeneration asks the server for the namespace generation, creating one
// if there is none, and returns its state.
func (c *Cache) loadGeneration(cl *call) (*genState, error) {
	old := c.gen.Load()
	it, err := c.get(cl, c.genKey)
	switch {
	case err != nil:
		return nil, err
	case it == nil:
		return c.newGeneration(cl, old)
	}
	g, err := c.parseGeneration(it.Value)
	if err != nil {
		return nil, err
	}
	return c.saw(old, g), nil
}

// newGeneration creates the generation key, which is missing (never set, or
// evicted, or flushed). The first generation is random, so that a namespace
// whose generation key was lost never comes back to the generation of keys
// that may still be stored.
func (c *Cache) newGeneration(cl *call, old *genState) (*genState, error) {
	for range 3 {
		g := rand.Uint64N(1<<62) + 1<<32
		// An add may be resent: a second one finds the key and reads it.
		err := c.do(cl, c.genKey, false, func() error {
			return c.client.Add(&memcache.Item{Key: c.genKey, Value: strconv.AppendUint(nil, g, 10)})
		})
		if err == nil {
			return c.saw(old, g), nil
		}
		if !errors.Is(err, memcache.ErrNotStored) {
			return nil, err
		}
		// Someone else created it first: use theirs.
		it, err := c.get(cl, c.genKey)
		if err != nil {
			return nil, err
		}
		if it == nil {
			continue // and gone again already
		}
		g, err = c.parseGeneration(it.Value)
		if err != nil {
			return nil, err
		}
		return c.saw(old, g), nil
	}
	return nil, fmt.Errorf("memcached: namespace generation key %q keeps disappearing", c.genKey)
}

// writeState returns the generation that Set, SetMany and Add use: the last
// one seen, if seen within GenerationTTL, else the server's. Without a
// namespace it returns nil.
func (c *Cache) writeState(cl *call) (*genState, error) {
	if c.nsPart == "" {
		return nil, nil
	}
	s := c.gen.Load()
	if s != nil && c.genTTL > 0 && clock()-s.checked.Load() < int64(c.genTTL) {
		return s, nil
	}
	return c.loadGeneration(cl)
}

// freshState returns the server's generation now, asking it (Delete needs
// this: a delete in a generation cleared meanwhile would report a key as
// deleted and leave the live one readable). Without a namespace it returns
// nil.
func (c *Cache) freshState(cl *call) (*genState, error) {
	if c.nsPart == "" {
		return nil, nil
	}
	return c.loadGeneration(cl)
}
