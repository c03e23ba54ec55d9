package memcached

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit"
)

// DefaultMaxValueSize is the default Options.MaxValueSize: memcached's
// default item size limit (-I 1m) less room for the item header and the
// longest server key, so that a value of this size is stored whatever its
// key.
const DefaultMaxValueSize = 1<<20 - 512

// DefaultGenerationTTL is the default Options.GenerationTTL.
const DefaultGenerationTTL = time.Second

// Options configures a Cache. A nil *Options means the defaults of every
// field.
type Options struct {
	// Namespace isolates this cache's keys from other caches on the same
	// servers, and scopes Clear: keys are prefixed with the namespace and
	// its current generation, and Clear moves to a new generation. Default:
	// "", no namespace, in which case Clear flushes every server entirely
	// (flush_all).
	Namespace string

	// MaxValueSize is the largest value Set, SetMany and Add accept; a
	// larger one fails with ErrTooLarge before anything is sent. Default
	// (0): DefaultMaxValueSize, right for memcached's default -I 1m. Raise
	// it for servers started with a larger -I; a negative value turns the
	// client-side check off and leaves it to the server, whose "object too
	// large" reply is reported as ErrTooLarge too.
	MaxValueSize int

	// GenerationTTL is how long writes (Set, SetMany, Add, Delete) trust the
	// namespace generation this cache last saw before asking the server for
	// it again. Reads (Get, GetMany, Exists, and the reads inside Increment
	// and Expire) fetch the generation in the same round trip as the data
	// every time, so they see a Clear made anywhere at once; only writes
	// racing another process's Clear within this window may land in the old
	// generation and be lost, as if evicted. Default (0):
	// DefaultGenerationTTL, one second; negative: ask before every write.
	// Unused without a namespace.
	GenerationTTL time.Duration

	// BatchConcurrency bounds how many requests SetMany and Delete keep in
	// flight at once (gomemcache has no multi-key set or delete, so they
	// send one request per key). Default (0): the client's MaxIdleConns
	// (gomemcache's default of 2 when unset), so that batches don't dial
	// connections the client would close straight away.
	BatchConcurrency int
}

// Cache is a cachekit.Cache stored in memcached through a gomemcache client.
// It is safe for concurrent use. See the package documentation for how keys,
// TTLs, namespaces, Increment and contexts are handled.
type Cache struct {
	client    *memcache.Client
	ownClient bool
	servers   []string // set by OpenURL
	maxValue  int
	batch     int

	// Namespace state; nsPart == "" without a namespace.
	nsPart string
	genKey string
	genTTL time.Duration
	gen    atomic.Pointer[genState]

	mu       sync.RWMutex // guards closed against in-flight registrations
	closed   bool
	inflight sync.WaitGroup // calls and the goroutines they left running
}

var _ cachekit.Cache = (*Cache)(nil)

// genState is a namespace generation as last seen on the server.
type genState struct {
	gen     uint64
	prefix  string       // server key prefix of this generation
	checked atomic.Int64 // monotonic nanoseconds (see clock) when last confirmed
}

// New returns a Cache that stores its entries through client. The cache does
// not close client: Close leaves it open for the caller. For a pool of
// servers, build the client with a consistent-hashing selector:
// memcache.NewFromSelector(ring) with a [Ring].
func New(client *memcache.Client, opts *Options) *Cache {
	if opts == nil {
		opts = &Options{}
	}
	c := &Cache{
		client:   client,
		maxValue: opts.MaxValueSize,
		batch:    opts.BatchConcurrency,
		genTTL:   opts.GenerationTTL,
	}
	if c.maxValue == 0 {
		c.maxValue = DefaultMaxValueSize
	}
	if c.batch <= 0 {
		c.batch = client.MaxIdleConns
		if c.batch <= 0 {
			c.batch = memcache.DefaultMaxIdleConns
		}
	}
	if c.genTTL == 0 {
		c.genTTL = DefaultGenerationTTL
	}
	if opts.Namespace != "" {
		c.nsPart = namespacePart(opts.Namespace)
		c.genKey = generationKey(c.nsPart)
	}
	return c
}

// --- Call plumbing -------------------------------------------------------

// enter registers a call, failing when the cache is closed or ctx is done.
// A nil error must be paired with c.leave().
func (c *Cache) enter(ctx context.Context) error {
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return cachekit.ErrClosed
	}
	c.inflight.Add(1)
	c.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		c.inflight.Done()
		return err
	}
	return nil
}

func (c *Cache) leave() { c.inflight.Done() }

// run calls fn, which talks to the servers, and honours ctx although
// gomemcache takes none. With a context that can never be done
// (context.Background) fn runs on the caller's goroutine. Otherwise it runs
// on its own goroutine and run returns ctx's error as soon as ctx is done;
// the abandoned request then finishes (or fails) within the client's
// Timeout, and Close waits for it. A client error that is an i/o timeout
// after ctx is done is reported as ctx's error (still wrapping the client's).
// Must be called between enter and leave.
func (c *Cache) run(ctx context.Context, fn func() error) error {
	if ctx.Done() == nil {
		return fn()
	}
	done := make(chan error, 1)
	c.inflight.Add(1)
	go func() {
		defer c.inflight.Done()
		done <- fn()
	}()
	select {
	case err := <-done:
		return ctxError(ctx, err)
	case <-ctx.Done():
		select {
		case err := <-done: // finished at the same moment: keep its result
			return ctxError(ctx, err)
		default:
			return ctx.Err()
		}
	}
}

// ctxError reports a client timeout caused by a done ctx as ctx's error.
func ctxError(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	if isTimeout(err) {
		return fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	return err
}

func isTimeout(err error) bool {
	var cte *memcache.ConnectTimeoutError
	if errors.As(err, &cte) {
		return true
	}
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// clientError translates a gomemcache error: a server's "object too large"
// reply becomes ErrTooLarge (still wrapping the client's error).
func clientError(err error) error {
	if err != nil && strings.Contains(err.Error(), "object too large") {
		return fmt.Errorf("%w: %w", cachekit.ErrTooLarge, err)
	}
	return err
}

func (c *Cache) checkValue(value []byte) error {
	if c.maxValue > 0 && len(value) > c.maxValue {
		return fmt.Errorf("%w: %d bytes, the limit is %d", cachekit.ErrTooLarge, len(value), c.maxValue)
	}
	return nil
}

// detach copies value when run may hand it to a goroutine that outlives the
// call, so that the caller may reuse its slice as soon as the call returns.
func detach(ctx context.Context, value []byte) []byte {
	if ctx.Done() == nil {
		return value
	}
	return bytes.Clone(value)
}

// --- Namespace generations -------------------------------------------------

var clockBase = time.Now()

// clock returns monotonic nanoseconds.
func clock() int64 { return int64(time.Since(clockBase)) }

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
		return 0, fmt.Errorf("memcached: namespace generation key %q holds %q, not a number: %w", c.genKey, v, err)
	}
	return g, nil
}

// loadGeneration asks the server for the namespace generation, creating one
// if there is none, and returns its state.
func (c *Cache) loadGeneration() (*genState, error) {
	old := c.gen.Load()
	it, err := c.client.Get(c.genKey)
	switch {
	case errors.Is(err, memcache.ErrCacheMiss):
		return c.newGeneration(old)
	case err != nil:
		return nil, err
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
func (c *Cache) newGeneration(old *genState) (*genState, error) {
	for range 3 {
		g := rand.Uint64N(1<<62) + 1<<32
		err := c.client.Add(&memcache.Item{Key: c.genKey, Value: strconv.AppendUint(nil, g, 10)})
		if err == nil {
			return c.saw(old, g), nil
		}
		if !errors.Is(err, memcache.ErrNotStored) {
			return nil, err
		}
		// Someone else created it first: use theirs.
		it, err := c.client.Get(c.genKey)
		if errors.Is(err, memcache.ErrCacheMiss) {
			continue // and gone again already
		}
		if err != nil {
			return nil, err
		}
		g, err = c.parseGeneration(it.Value)
		if err != nil {
			return nil, err
		}
		return c.saw(old, g), nil
	}
	return nil, fmt.Errorf("memcached: namespace generation key %q keeps disappearing", c.genKey)
}

// writeState returns the generation that writes use: the last one seen, if
// seen within GenerationTTL, else the server's. Without a namespace it
// returns nil.
func (c *Cache) writeState() (*genState, error) {
	if c.nsPart == "" {
		return nil, nil
	}
	s := c.gen.Load()
	if s != nil && c.genTTL > 0 && clock()-s.checked.Load() < int64(c.genTTL) {
		return s, nil
	}
	return c.loadGeneration()
}

// prefix returns the server key prefix of s ("" for nil, no namespace).
func (s *genState) keyPrefix() string {
	if s == nil {
		return ""
	}
	return s.prefix
}

// --- Reads -----------------------------------------------------------------

// fetch gets the items of serverKeys(state) in one round trip (one request
// per server involved). With a namespace it fetches the generation key too,
// and starts over if the generation moved, so that a read never sees keys of
// a cleared generation. It returns the items by server key and the state the
// keys were built from.
func (c *Cache) fetch(serverKeys func(prefix string) []string) (map[string]*memcache.Item, *genState, error) {
	if c.nsPart == "" {
		keys := serverKeys("")
		if len(keys) == 1 {
			it, err := c.client.Get(keys[0])
			if errors.Is(err, memcache.ErrCacheMiss) {
				return nil, nil, nil
			}
			if err != nil {
				return nil, nil, err
			}
			return map[string]*memcache.Item{it.Key: it}, nil, nil
		}
		m, err := c.client.GetMulti(keys)
		return m, nil, err
	}
	s := c.gen.Load()
	if s == nil {
		var err error
		if s, err = c.loadGeneration(); err != nil {
			return nil, nil, err
		}
	}
	for range 5 {
		keys := append([]string{c.genKey}, serverKeys(s.prefix)...)
		m, err := c.client.GetMulti(keys)
		if err != nil {
			return nil, nil, err
		}
		gi, ok := m[c.genKey]
		if !ok {
			// The generation is gone, so is everything in it.
			s, err = c.newGeneration(s)
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
func (c *Cache) getOne(key string) (*memcache.Item, *genState, error) {
	if c.nsPart == "" {
		it, err := c.client.Get(serverKey("", key))
		if errors.Is(err, memcache.ErrCacheMiss) {
			return nil, nil, nil
		}
		return it, nil, err
	}
	var sk string
	m, s, err := c.fetch(func(prefix string) []string {
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
	if ctx.Done() == nil { // no goroutine needed: skip run's closure
		it, _, err = c.getOne(key)
	} else {
		err = c.run(ctx, func() error {
			var err error
			it, _, err = c.getOne(key)
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

// GetMany returns the values of the keys that are present, in one round
// trip: one multi-key get per server involved, sent concurrently.
func (c *Cache) GetMany(ctx context.Context, keys []string) (map[string][]byte, error) {
	const op = "GetMany"
	for _, k := range keys {
		if err := cachekit.CheckKey(k); err != nil {
			return nil, cachekit.WrapError(op, "", fmt.Errorf("key %.64q: %w", k, err))
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
	uniq := make([]string, 0, len(keys))
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			uniq = append(uniq, k)
		}
	}
	var (
		items map[string]*memcache.Item
		sks   []string
	)
	err := c.run(ctx, func() error {
		var err error
		items, _, err = c.fetch(func(prefix string) []string {
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
	err := c.run(ctx, func() error {
		it, _, err := c.getOne(key)
		found = it != nil
		return err
	})
	if err != nil {
		return false, cachekit.WrapError(op, key, err)
	}
	return found, nil
}

// --- Writes ----------------------------------------------------------------

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
	if ctx.Done() == nil { // no goroutine needed: skip run's closure
		return cachekit.WrapError(op, key, c.set(key, value, exp, abs))
	}
	value = detach(ctx, value)
	err := c.run(ctx, func() error { return c.set(key, value, exp, abs) })
	return cachekit.WrapError(op, key, err)
}

func (c *Cache) set(key string, value []byte, exp int32, abs uint32) error {
	s, err := c.writeState()
	if err != nil {
		return err
	}
	return clientError(c.client.Set(&memcache.Item{
		Key: serverKey(s.keyPrefix(), key), Value: value, Flags: abs, Expiration: exp,
	}))
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
	for k, v := range items {
		if err := cachekit.CheckKey(k); err != nil {
			return cachekit.WrapError(op, "", fmt.Errorf("key %.64q: %w", k, err))
		}
		if err := c.checkValue(v); err != nil {
			return cachekit.WrapError(op, "", fmt.Errorf("key %.64q: %w", k, err))
		}
		list = append(list, kv{k, v})
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
	err := c.run(ctx, func() error {
		s, err := c.writeState()
		if err != nil {
			return err
		}
		return c.each(ctx, len(list), func(i int) error {
			return clientError(c.client.Set(&memcache.Item{
				Key: serverKey(s.keyPrefix(), list[i].key), Value: list[i].value, Flags: abs, Expiration: exp,
			}))
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
	err := c.run(ctx, func() error {
		s, err := c.writeState()
		if err != nil {
			return err
		}
		for range 3 {
			err = clientError(c.client.Add(&memcache.Item{
				Key: serverKey(s.keyPrefix(), key), Value: value, Flags: abs, Expiration: exp,
			}))
			if !errors.Is(err, memcache.ErrNotStored) {
				return err
			}
			if s == nil {
				return cachekit.ErrExists
			}
			// The key exists in the generation this cache knows; make sure
			// that generation was not cleared meanwhile.
			fresh, err := c.loadGeneration()
			if err != nil {
				return err
			}
			if fresh.gen == s.gen {
				return cachekit.ErrExists
			}
			s = fresh
		}
		return cachekit.ErrExists
	})
	return cachekit.WrapError(op, key, err)
}

// Delete removes keys and reports how many existed. It sends one delete per
// key (gomemcache has no multi-key delete), at most BatchConcurrency at a
// time.
func (c *Cache) Delete(ctx context.Context, keys ...string) (int, error) {
	const op = "Delete"
	key := ""
	if len(keys) == 1 {
		key = keys[0]
	}
	for _, k := range keys {
		if err := cachekit.CheckKey(k); err != nil {
			return 0, cachekit.WrapError(op, key, fmt.Errorf("key %.64q: %w", k, err))
		}
	}
	if err := c.enter(ctx); err != nil {
		return 0, cachekit.WrapError(op, key, err)
	}
	defer c.leave()
	if len(keys) == 0 {
		return 0, nil
	}
	uniq := keys
	if len(keys) > 1 {
		uniq = make([]string, 0, len(keys))
		seen := make(map[string]bool, len(keys))
		for _, k := range keys {
			if !seen[k] {
				seen[k] = true
				uniq = append(uniq, k)
			}
		}
	}
	var n atomic.Int64
	err := c.run(ctx, func() error {
		s, err := c.writeState()
		if err != nil {
			return err
		}
		return c.each(ctx, len(uniq), func(i int) error {
			err := c.client.Delete(serverKey(s.keyPrefix(), uniq[i]))
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

// Increment adds delta to the base-10 int64 stored under key. memcached's
// own incr cannot do it (no negative numbers, wraps at 2^64, fails on a
// missing key, pads shrunk values with spaces), so Increment is a
// compare-and-swap loop: gets, parse, cas with the same flags and the
// absolute expiry recorded in them (so the TTL is kept); a missing key is
// created with add (no expiry), and a lost race starts over.
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
	err := c.run(ctx, func() error {
		var err error
		n, err = c.increment(ctx, key, delta)
		return err
	})
	if err != nil {
		return 0, cachekit.WrapError(op, key, err)
	}
	return n, nil
}

func (c *Cache) increment(ctx context.Context, key string, delta int64) (int64, error) {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			backoff(attempt)
		}
		it, s, err := c.getOne(key)
		if err != nil {
			return 0, err
		}
		if it == nil {
			err := c.client.Add(&memcache.Item{
				Key: serverKey(s.keyPrefix(), key), Value: strconv.AppendInt(nil, delta, 10),
			})
			if errors.Is(err, memcache.ErrNotStored) {
				continue // created meanwhile
			}
			if err != nil {
				return 0, err
			}
			return delta, nil
		}
		cur, err := parseInt64(it.Value)
		if err != nil {
			return 0, err
		}
		sum := cur + delta
		if (delta > 0 && sum < cur) || (delta < 0 && sum > cur) {
			return 0, fmt.Errorf("%w: %d%+d overflows int64", cachekit.ErrNotInteger, cur, delta)
		}
		it.Value = strconv.AppendInt(it.Value[:0], sum, 10)
		it.Expiration = flagsExpiration(it.Flags)
		err = c.client.CompareAndSwap(it)
		switch {
		case err == nil:
			return sum, nil
		case errors.Is(err, memcache.ErrCASConflict), errors.Is(err, memcache.ErrNotStored),
			errors.Is(err, memcache.ErrCacheMiss):
			continue // changed or removed meanwhile
		default:
			return 0, err
		}
	}
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
// that many writers of one counter don't all retry in lockstep.
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
	err := c.run(ctx, func() error {
		for attempt := 0; ; attempt++ {
			if attempt > 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
				backoff(attempt)
			}
			it, _, err := c.getOne(key)
			if err != nil || it == nil {
				return err
			}
			it.Expiration, it.Flags = expiration(ttl, time.Now())
			err = c.client.CompareAndSwap(it)
			switch {
			case err == nil:
				found = true
				return nil
			case errors.Is(err, memcache.ErrCASConflict):
				continue
			case errors.Is(err, memcache.ErrNotStored), errors.Is(err, memcache.ErrCacheMiss):
				return nil // removed meanwhile
			default:
				return err
			}
		}
	})
	if err != nil {
		return false, cachekit.WrapError(op, key, err)
	}
	return found, nil
}

// Clear removes every key of the cache's namespace by moving the namespace
// to a new generation (one incr of its generation key); the old keys become
// unreachable at once and memcached evicts them in time. Other namespaces
// are untouched. Without a namespace, Clear flushes every server
// (flush_all), removing everything on them.
func (c *Cache) Clear(ctx context.Context) error {
	const op = "Clear"
	if err := c.enter(ctx); err != nil {
		return cachekit.WrapError(op, "", err)
	}
	defer c.leave()
	err := c.run(ctx, func() error {
		if c.nsPart == "" {
			return c.client.FlushAll()
		}
		old := c.gen.Load()
		g, err := c.client.Increment(c.genKey, 1)
		if errors.Is(err, memcache.ErrCacheMiss) {
			_, err = c.newGeneration(old)
			return err
		}
		if err != nil {
			return err
		}
		c.gen.Store(c.newGenState(g))
		return nil
	})
	return cachekit.WrapError(op, "", err)
}

// Close makes every later call fail with cachekit.ErrClosed and waits for
// requests that calls abandoned on a done context (they end within the
// client's Timeout). It closes the client only if the cache owns it (it was
// built by a URL opener). Close is idempotent.
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.inflight.Wait()
	if c.ownClient {
		return c.client.Close()
	}
	return nil
}
