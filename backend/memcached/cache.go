package memcached

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/internal/breaker"
)

// Cache is a cachekit.Cache stored in memcached through a gomemcache client.
// It is safe for concurrent use. See the package documentation for how keys,
// TTLs, namespaces, Increment, contexts and failures are handled.
type Cache struct {
	client     *memcache.Client
	ownClient  bool
	servers    []string // set by OpenURL
	maxValue   int
	batch      int
	allowFlush bool

	// Namespace state; nsPart == "" without a namespace.
	nsPart string
	genTTL time.Duration
	slots  []*genSlot // generation keys (generation.go)
	// With per-server generations: the client's Ring, and the prefix
	// whose server keys it places as it places the namespace's keys.
	ring        *Ring
	placePrefix string

	// Circuit breakers: one per server when the selector is known
	// (selector and breakers set), else one for the client (br; nil when
	// disabled).
	selector         memcache.ServerSelector
	breakers         map[string]*breaker.Breaker
	br               *breaker.Breaker
	breakerThreshold int
	breakerDuration  time.Duration

	// Auto-batching (autobatch.go): nil batcher when off; batchers by
	// server address when the selector is known, else batcher alone.
	batcher  *batcher
	batchers map[string]*batcher

	// The cache's own connections for meta commands (meta.go).
	meta metaPool

	mu       sync.RWMutex // guards closed against in-flight registrations
	closed   bool
	inflight sync.WaitGroup // calls and the goroutines they left running
}

var (
	_ cachekit.Cache             = (*Cache)(nil)
	_ cachekit.CompareAndDeleter = (*Cache)(nil)
	_ cachekit.CompareAndSwapper = (*Cache)(nil)
	_ cachekit.Versioner         = (*Cache)(nil)
)

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

// breakerFor returns the circuit breaker of the server that holds server
// key sk (nil: none).
func (c *Cache) breakerFor(sk string) *breaker.Breaker {
	if c.selector == nil {
		return c.br
	}
	addr, err := c.selector.PickServer(sk)
	if err != nil {
		return nil // the client reports the error
	}
	return c.breakers[addr.String()]
}

// pickServer returns the server of key, as the client's selector places it.
// Must only be called with a selector.
func (c *Cache) pickServer(key string) (net.Addr, error) {
	if c.ring != nil {
		return c.ring.addrs[c.ring.index(serverKey(c.placePrefix, key))], nil
	}
	var prefix string
	if slot := c.slotFor(key); slot != nil {
		prefix = slot.cur.Load().keyPrefix()
	}
	return c.selector.PickServer(serverKey(prefix, key))
}

// Close makes every later call fail with cachekit.ErrClosed and waits for
// requests that calls abandoned on a done context (they end within the
// client's Timeout). It closes the cache's own idle connections (those of
// the versioned methods: see "Versions" in the package documentation), and
// the client only if the cache owns it (it was built by a URL opener).
// Close is idempotent.
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.inflight.Wait()
	c.meta.closeIdle(true)
	if c.ownClient {
		return c.client.Close()
	}
	return nil
}
