package memory

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/maypok86/otter/v2"

	"github.com/cachekit/cachekit"
)

// DefaultMaxBytes is the byte bound of a cache whose [Options.MaxBytes] is
// not set: 64 MiB.
const DefaultMaxBytes = 64 << 20

// EntryOverhead is the number of bytes each entry is counted for on top of
// the allocations of its key and value: the engine's node and its share of
// the hash table, as measured on 64-bit platforms (142 to 168 bytes,
// depending on how full the table is). The key and value are counted as the
// Go allocator holds them, rounded up to its size class (to whole 8 KiB
// pages above 32 KiB), so that MaxBytes bounds the heap the cache holds.
const EntryOverhead = 160

// Options configures a [Cache]. A nil *Options is valid and means the zero
// value: every field has a default.
type Options struct {
	// Namespace names the keyspace of the cache within its storage (see the
	// package documentation). The cache made by New has storage of its own,
	// so a namespace only matters to the caches that share the storage
	// through [Cache.WithNamespace]: those made with the same namespace see
	// this cache's keys, the others never do. The keys of this namespace are
	// stored as they are, so it costs nothing. Default: "" (the empty
	// namespace).
	Namespace string

	// MaxBytes bounds the total weight of the entries, which is the heap
	// they hold: the allocations of every key and value, rounded up as the
	// Go allocator rounds them (a 32,769-byte value takes 40,960), plus
	// [EntryOverhead] per entry (and, for keys of other namespaces than
	// Namespace, the namespace). The engine evicts the entries least
	// likely to be used again to stay within it.
	// Default (zero or negative): [DefaultMaxBytes], 64 MiB.
	MaxBytes int64

	// MaxEntries, when positive, also bounds the number of entries. The
	// bound on bytes still applies: each entry then weighs at least
	// MaxBytes/MaxEntries, so that neither bound can be exceeded. To bound
	// the number of entries alone, set MaxBytes high enough that it never
	// binds. Default (zero or negative): no bound on the number of entries.
	MaxEntries int

	// MaxValueSize is the longest value Set, SetMany and Add accept; a
	// longer one fails with an error for which errors.Is(err,
	// cachekit.ErrTooLarge) reports true. It is lowered, if need be, to
	// the longest value whose entry (with a short key) weighs at most
	// MaxBytes, a little under MaxBytes-EntryOverhead because of the
	// allocator's rounding; and an entry whose key, namespace and value
	// together weigh more than MaxBytes is rejected the same way, rather
	// than stored and evicted at once. Default (zero or negative):
	// MaxBytes/4, so that one entry cannot flush most of the cache.
	MaxValueSize int64
}

// Cache is an in-process [cachekit.Cache]. Make one with [New], or with
// [cachekit.Open] and a mem:// URL. It is safe for concurrent use.
type Cache struct {
	s      *store
	ns     string
	prefix string // of the engine's keys; "" in the storage's own namespace
	owner  bool   // Close releases s
	closed atomic.Bool
}

var (
	_ cachekit.Cache             = (*Cache)(nil)
	_ cachekit.CompareAndDeleter = (*Cache)(nil)
	_ cachekit.CompareAndSwapper = (*Cache)(nil)
	_ cachekit.SharedGetter      = (*Cache)(nil)
	_ cachekit.Versioner         = (*Cache)(nil)
)

// entry is the engine's value. data is never changed once stored (writes
// replace the entry, and a write that keeps the value, as Expire does,
// keeps the slice as it is), so readers may copy it without a lock, and
// GetShared may hand it out.
type entry struct {
	data []byte
	exp  int64  // deadline on the store's clock; 0: no expiry
	ver  uint64 // version (see version.go); 0: none given out yet
}

// store is the storage that caches made by New and by WithNamespace share.
//
// The engine's keys are strings, which it hashes fastest. The keys of the
// namespace given to New are stored as they are, so that the usual cache,
// with storage of its own, pays nothing for namespaces; the keys of the
// other namespaces are prefixed, collision-free (see namespacePrefix).
type store struct {
	c         *otter.Cache[string, entry]
	clock     *clock
	ns        string // the namespace whose keys are stored unprefixed
	maxWeight uint64
	minWeight uint32 // every entry weighs at least this (MaxEntries)
	maxValue  int64
	versions  atomic.Uint64 // the last version given out (version.go)
	closed    atomic.Bool
	// scoped is set once a second namespace may share the storage: Clear
	// must then scan for its namespace's keys instead of emptying it.
	scoped   atomic.Bool
	stop     chan struct{} // closed to stop the clean-up goroutine
	stopOnce sync.Once
	done     chan struct{} // closed when the clean-up goroutine returns
}

// Engine keys: a key of the storage's own namespace that starts with a NUL
// byte is stored behind escapedPrefix; the keys of any other namespace ns
// behind namespacePrefix(ns). As keys of the storage's own namespace that do
// not start with NUL are stored as they are, no two (namespace, key) pairs
// share an engine key.
const (
	escapedPrefix = "\x00p"
	otherPrefix   = "\x00n"
)

// namespacePrefix returns the prefix of the engine keys of namespace ns
// when it is not the storage's own: otherPrefix, the length of ns as a
// uvarint, and ns. The length makes the prefixes of two namespaces never
// prefixes of one another.
func namespacePrefix(ns string) string {
	b := make([]byte, 0, len(otherPrefix)+binary.MaxVarintLen64+len(ns))
	b = append(b, otherPrefix...)
	b = binary.AppendUvarint(b, uint64(len(ns)))
	return string(append(b, ns...))
}

// New returns an empty in-process cache configured by opts, which may be
// nil. The cache owns its storage, which Close releases.
func New(opts *Options) *Cache {
	var o Options
	if opts != nil {
		o = *opts
	}
	maxBytes := o.MaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	s := &store{
		clock:     newClock(),
		ns:        o.Namespace,
		maxWeight: uint64(maxBytes),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	if o.MaxEntries > 0 {
		// Each entry weighs at least slot, so a total weight within
		// maxWeight means at most MaxEntries entries as well as at most
		// MaxBytes bytes. Weights are uint32: a slot that does not fit
		// lowers the weight bound instead, which still implies both.
		slot := (uint64(maxBytes) + uint64(o.MaxEntries) - 1) / uint64(o.MaxEntries)
		if slot > math.MaxUint32 {
			slot = math.MaxUint32
			s.maxWeight = slot * uint64(o.MaxEntries)
		}
		s.minWeight = uint32(slot)
	}
	// The largest value that fits in maxWeight at all, and whose weight
	// fits in a uint32 with any key; Set also checks each entry's weight,
	// key and namespace included.
	fit := int64(largestValue(min(s.maxWeight, math.MaxUint32-2*cachekit.MaxKeySize)))
	s.maxValue = o.MaxValueSize
	if s.maxValue <= 0 {
		s.maxValue = int64(s.maxWeight) / 4
	}
	s.maxValue = max(min(s.maxValue, fit), 0)

	s.c = otter.Must(&otter.Options[string, entry]{
		MaximumWeight: s.maxWeight,
		Weigher:       s.weigh,
		// A write sets the deadline from the entry's own; reads leave it.
		ExpiryCalculator: otter.ExpiryWritingFunc(s.expiresAfter),
		Clock:            s.clock,
	})
	go cleanUpLoop(weak.Make(s), s.stop, s.done)
	return &Cache{s: s, ns: o.Namespace, owner: true}
}

// WithNamespace returns a cache that shares c's storage, and its bounds, in
// namespace ns. Caches on one storage with the same namespace see the same
// keys; Clear on one of them removes the keys of its namespace only. Keys of
// a namespace other than the one given to New are stored with a prefix, so
// each call of a cache made with WithNamespace in another namespace
// allocates that key.
//
// Close on the returned cache closes only that cache. Closing the cache made
// by New closes the storage, and with it every cache made from it.
func (c *Cache) WithNamespace(ns string) *Cache {
	v := &Cache{s: c.s, ns: ns}
	if ns != c.s.ns {
		c.s.scoped.Store(true)
		v.prefix = namespacePrefix(ns)
	}
	return v
}

// key returns the engine's key for k, which CheckKey accepted.
func (c *Cache) key(k string) string {
	switch {
	case c.prefix != "":
		return c.prefix + k
	case k[0] == 0:
		return escapedPrefix + k
	}
	return k
}

// deadline returns the expiry of an entry written now with ttl (validated).
func (s *store) deadline(ttl time.Duration) int64 {
	if ttl == 0 {
		return 0
	}
	now := s.clock.precise()
	if int64(ttl) > math.MaxInt64-now {
		return math.MaxInt64
	}
	return now + int64(ttl)
}

// live reports whether e is unexpired. Only an entry with a deadline reads
// the clock.
func (s *store) live(e entry) bool {
	return e.exp == 0 || s.clock.precise() < e.exp
}

// weigh is the engine's Weigher.
func (s *store) weigh(k string, e entry) uint32 {
	w := max(entryWeight(len(k), len(e.data)), uint64(s.minWeight))
	return uint32(min(w, math.MaxUint32))
}

// expiresAfter tells the engine when to remove an entry that is being
// written: at the entry's own deadline, which reads never move. The engine's
// clock is the store's (see clock), and the write's time on it is
// e.SnapshotAtNano, so the engine's deadline is exactly e.Value.exp.
func (s *store) expiresAfter(e otter.Entry[string, entry]) time.Duration {
	if e.Value.exp == 0 {
		return math.MaxInt64 // saturates to "never"
	}
	// A non-positive duration would keep the previous deadline (none, for a
	// creation): an entry already past its deadline gets the shortest.
	return time.Duration(max(e.Value.exp-e.SnapshotAtNano, 1))
}

// checkOpen returns ErrClosed after Close of c or of its storage's owner.
func (c *Cache) checkOpen() error {
	if c.closed.Load() || c.s.closed.Load() {
		return cachekit.ErrClosed
	}
	return nil
}

// checkValue returns ErrTooLarge when key and value cannot be stored.
func (c *Cache) checkValue(k string, value []byte) error {
	if int64(len(value)) > c.s.maxValue ||
		entryWeight(len(c.prefix)+len(escapedPrefix)+len(k), len(value)) > c.s.maxWeight {
		return cachekit.ErrTooLarge
	}
	return nil
}

// clone returns a copy of b that is never nil.
func clone(b []byte) []byte {
	out := make([]byte, len(b))
	copy(out, b)
	return out
}

// Get returns a copy of the value stored under key, or an error for which
// errors.Is(err, cachekit.ErrNotFound) reports true on a miss. An expired
// entry is a miss even before the engine removes it.
func (c *Cache) Get(ctx context.Context, key string) ([]byte, error) {
	b, err := c.GetShared(ctx, key)
	if err != nil {
		return nil, err
	}
	return clone(b), nil
}

// GetShared is Get without the copy: it returns the stored bytes
// themselves, which the caller must not modify, with the errors Get
// returns (named "Get"). The bytes never change afterwards: every write
// replaces a value, never changes it in place, so they stay as they are
// while the key is overwritten, deleted, evicted or the cache closed. It
// implements [cachekit.SharedGetter].
func (c *Cache) GetShared(ctx context.Context, key string) ([]byte, error) {
	if err := c.checkOpen(); err != nil {
		return nil, cachekit.WrapError("Get", key, err)
	}
	if err := cachekit.CheckKey(key); err != nil {
		return nil, cachekit.WrapError("Get", key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, cachekit.WrapError("Get", key, err)
	}
	e, ok := c.get(key)
	if !ok {
		return nil, cachekit.WrapError("Get", key, cachekit.ErrNotFound)
	}
	return e.data[:len(e.data):len(e.data)], nil
}

// get returns the live entry under k. The engine may still hold an entry
// past its deadline; the deadline decides.
func (c *Cache) get(k string) (entry, bool) {
	e, ok := c.s.c.GetIfPresent(c.key(k))
	if !ok || !c.s.live(e) {
		return entry{}, false
	}
	return e, true
}

// GetMany returns copies of the values of the keys that are present; missing
// and expired keys are absent from the map. Duplicate keys are allowed.
func (c *Cache) GetMany(ctx context.Context, keys []string) (map[string][]byte, error) {
	if err := c.checkOpen(); err != nil {
		return nil, cachekit.WrapError("GetMany", "", err)
	}
	for _, k := range keys {
		if err := cachekit.CheckKey(k); err != nil {
			return nil, cachekit.WrapError("GetMany", k, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, cachekit.WrapError("GetMany", "", err)
	}
	out := make(map[string][]byte, len(keys))
	for _, k := range keys {
		if e, ok := c.get(k); ok {
			out[k] = clone(e.data)
		}
	}
	return out, nil
}

// Set stores a copy of value under key with the given TTL (0: no expiry),
// replacing any previous value and TTL.
func (c *Cache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := c.checkSet(ctx, key, value, ttl); err != nil {
		return cachekit.WrapError("Set", key, err)
	}
	c.set(key, value, c.s.deadline(ttl))
	return nil
}

func (c *Cache) set(k string, value []byte, exp int64) {
	c.s.c.Set(c.key(k), entry{data: clone(value), exp: exp})
}

// checkSet validates a single-key write.
func (c *Cache) checkSet(ctx context.Context, k string, value []byte, ttl time.Duration) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if err := cachekit.CheckKey(k); err != nil {
		return err
	}
	if err := cachekit.CheckTTL(ttl); err != nil {
		return err
	}
	if err := c.checkValue(k, value); err != nil {
		return err
	}
	return ctx.Err()
}

// SetMany stores a copy of every item with the same TTL. Every key and value
// is validated first, so an invalid one stores nothing.
func (c *Cache) SetMany(ctx context.Context, items map[string][]byte, ttl time.Duration) error {
	if err := c.checkOpen(); err != nil {
		return cachekit.WrapError("SetMany", "", err)
	}
	for k, v := range items {
		if err := cachekit.CheckKey(k); err != nil {
			return cachekit.WrapError("SetMany", k, err)
		}
		if err := c.checkValue(k, v); err != nil {
			return cachekit.WrapError("SetMany", k, err)
		}
	}
	if err := cachekit.CheckTTL(ttl); err != nil {
		return cachekit.WrapError("SetMany", "", err)
	}
	if err := ctx.Err(); err != nil {
		return cachekit.WrapError("SetMany", "", err)
	}
	exp := c.s.deadline(ttl)
	for k, v := range items {
		c.set(k, v, exp)
	}
	return nil
}

// Add stores a copy of value under key only if key is absent or expired,
// atomically. Otherwise it returns an error for which errors.Is(err,
// cachekit.ErrExists) reports true and leaves the stored value unchanged.
func (c *Cache) Add(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := c.checkSet(ctx, key, value, ttl); err != nil {
		return cachekit.WrapError("Add", key, err)
	}
	e := entry{data: clone(value), exp: c.s.deadline(ttl)}
	exists := false
	c.s.c.Compute(c.key(key), func(old entry, found bool) (entry, otter.ComputeOp) {
		if found && c.s.live(old) {
			exists = true
			return old, otter.CancelOp
		}
		return e, otter.WriteOp
	})
	if exists {
		return cachekit.WrapError("Add", key, cachekit.ErrExists)
	}
	return nil
}

// Delete removes keys and reports how many of them were present and
// unexpired.
func (c *Cache) Delete(ctx context.Context, keys ...string) (int, error) {
	if err := c.checkOpen(); err != nil {
		return 0, cachekit.WrapError("Delete", "", err)
	}
	for _, k := range keys {
		if err := cachekit.CheckKey(k); err != nil {
			return 0, cachekit.WrapError("Delete", k, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, cachekit.WrapError("Delete", "", err)
	}
	n := 0
	for _, k := range keys {
		if old, ok := c.s.c.Invalidate(c.key(k)); ok && c.s.live(old) {
			n++
		}
	}
	return n, nil
}

// CompareAndDelete deletes key only while it is present, unexpired and holds
// exactly the bytes old, atomically with respect to every other write of the
// storage, and reports whether it deleted it. A missing or expired key, or
// one holding anything else, is left as it is and reports false with a nil
// error (an expired entry is removed, as a read would treat it as gone).
// It implements [cachekit.CompareAndDeleter].
func (c *Cache) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	if err := c.checkOpen(); err != nil {
		return false, cachekit.WrapError("CompareAndDelete", key, err)
	}
	if err := cachekit.CheckKey(key); err != nil {
		return false, cachekit.WrapError("CompareAndDelete", key, err)
	}
	if err := ctx.Err(); err != nil {
		return false, cachekit.WrapError("CompareAndDelete", key, err)
	}
	deleted := false
	c.s.c.Compute(c.key(key), func(e entry, found bool) (entry, otter.ComputeOp) {
		switch {
		case !found:
			return e, otter.CancelOp
		case !c.s.live(e):
			return e, otter.InvalidateOp
		case !bytes.Equal(e.data, old):
			return e, otter.CancelOp
		}
		deleted = true
		return e, otter.InvalidateOp
	})
	return deleted, nil
}

// CompareAndSwap stores a copy of new under key with the given TTL (0: no
// expiry) only while key holds exactly the bytes old, atomically with
// respect to every other write of the storage, and reports whether it did.
// An old of nil means "only while key is absent or expired"; a non-nil empty
// old matches a present, empty value and never a missing key. A key holding
// anything else, or missing when old is not nil, is left as it is and
// reports false with a nil error. The key, TTL and new value are validated
// as Set validates them. It implements [cachekit.CompareAndSwapper].
func (c *Cache) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	if err := c.checkSet(ctx, key, new, ttl); err != nil {
		return false, cachekit.WrapError("CompareAndSwap", key, err)
	}
	next := entry{data: clone(new), exp: c.s.deadline(ttl)}
	swapped := false
	c.s.c.Compute(c.key(key), func(e entry, found bool) (entry, otter.ComputeOp) {
		present := found && c.s.live(e)
		switch {
		case old == nil && present,
			old != nil && !present,
			old != nil && !bytes.Equal(e.data, old):
			if found && !present {
				return e, otter.InvalidateOp
			}
			return e, otter.CancelOp
		}
		swapped = true
		return next, otter.WriteOp
	})
	return swapped, nil
}

// Exists reports whether key is present and unexpired.
func (c *Cache) Exists(ctx context.Context, key string) (bool, error) {
	if err := c.checkOpen(); err != nil {
		return false, cachekit.WrapError("Exists", key, err)
	}
	if err := cachekit.CheckKey(key); err != nil {
		return false, cachekit.WrapError("Exists", key, err)
	}
	if err := ctx.Err(); err != nil {
		return false, cachekit.WrapError("Exists", key, err)
	}
	_, ok := c.get(key)
	return ok, nil
}

// Increment adds delta to the base-10 integer stored under key, atomically,
// and returns the result, which it stores as base-10 ASCII. A missing or
// expired key starts at 0 and gets no expiry; an existing key keeps its TTL.
// A value that is not a base-10 int64 (an optional '-' and digits), or a
// result that would overflow, fails with an error for which errors.Is(err,
// cachekit.ErrNotInteger) reports true and leaves the value unchanged.
func (c *Cache) Increment(ctx context.Context, key string, delta int64) (int64, error) {
	if err := c.checkOpen(); err != nil {
		return 0, cachekit.WrapError("Increment", key, err)
	}
	if err := cachekit.CheckKey(key); err != nil {
		return 0, cachekit.WrapError("Increment", key, err)
	}
	if err := ctx.Err(); err != nil {
		return 0, cachekit.WrapError("Increment", key, err)
	}
	var (
		result int64
		err    error
	)
	c.s.c.Compute(c.key(key), func(old entry, found bool) (entry, otter.ComputeOp) {
		if !found || !c.s.live(old) {
			result = delta
			return entry{data: strconv.AppendInt(nil, delta, 10)}, otter.WriteOp
		}
		n, ok := parseInt(old.data)
		if !ok || (delta > 0 && n > math.MaxInt64-delta) || (delta < 0 && n < math.MinInt64-delta) {
			err = cachekit.ErrNotInteger
			return old, otter.CancelOp
		}
		result = n + delta
		return entry{data: strconv.AppendInt(nil, result, 10), exp: old.exp}, otter.WriteOp
	})
	if err != nil {
		return 0, cachekit.WrapError("Increment", key, err)
	}
	return result, nil
}

// parseInt parses an optional '-' followed by base-10 digits, the form
// Increment stores, into an int64.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || b[0] == '+' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	return n, err == nil
}

// Expire sets a new TTL on key (0: no expiry) and reports whether key was
// present and unexpired. It never creates a key.
func (c *Cache) Expire(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if err := c.checkOpen(); err != nil {
		return false, cachekit.WrapError("Expire", key, err)
	}
	if err := cachekit.CheckKey(key); err != nil {
		return false, cachekit.WrapError("Expire", key, err)
	}
	if err := cachekit.CheckTTL(ttl); err != nil {
		return false, cachekit.WrapError("Expire", key, err)
	}
	if err := ctx.Err(); err != nil {
		return false, cachekit.WrapError("Expire", key, err)
	}
	exp := c.s.deadline(ttl)
	existed := false
	c.s.c.Compute(c.key(key), func(old entry, found bool) (entry, otter.ComputeOp) {
		switch {
		case !found:
			return old, otter.CancelOp
		case !c.s.live(old):
			return old, otter.InvalidateOp
		}
		existed = true
		return entry{data: old.data, exp: exp, ver: old.ver}, otter.WriteOp
	})
	return existed, nil
}

// Clear removes every key in c's namespace and nothing else. On storage that
// no cache made with WithNamespace shares, that is everything; otherwise
// Clear scans the storage for the namespace's keys.
func (c *Cache) Clear(ctx context.Context) error {
	if err := c.checkOpen(); err != nil {
		return cachekit.WrapError("Clear", "", err)
	}
	if err := ctx.Err(); err != nil {
		return cachekit.WrapError("Clear", "", err)
	}
	if !c.s.scoped.Load() {
		c.s.c.InvalidateAll()
		return nil
	}
	for k := range c.s.c.Keys() {
		var mine bool
		if c.prefix == "" {
			mine = !strings.HasPrefix(k, otherPrefix)
		} else {
			mine = strings.HasPrefix(k, c.prefix)
		}
		if mine {
			c.s.c.Invalidate(k)
		}
	}
	return nil
}

// Close closes c. Afterwards every method of c returns an error for which
// errors.Is(err, cachekit.ErrClosed) reports true. Closing the cache made by
// New also releases the storage (its entries and its clean-up goroutine) and
// closes every cache made from it with WithNamespace. Close is idempotent and
// always returns nil.
//
// A cache that is dropped without Close does not leak: once it is garbage,
// its clean-up goroutine returns within a second.
func (c *Cache) Close() error {
	if !c.closed.CompareAndSwap(false, true) || !c.owner {
		return nil
	}
	if c.s.closed.CompareAndSwap(false, true) {
		c.s.stopCleanUp()
		c.s.c.StopAllGoroutines()
		c.s.c.InvalidateAll()
	}
	return nil
}

// stopCleanUp stops the clean-up goroutine and waits for it to return.
func (s *store) stopCleanUp() {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
}
