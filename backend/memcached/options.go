package memcached

import (
	"net"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit/internal/breaker"
)

// DefaultMaxValueSize is the default Options.MaxValueSize: memcached's
// default item size limit (-I 1m) less room for the item header and the
// longest server key, so that a value of this size is stored whatever its
// key.
const DefaultMaxValueSize = 1<<20 - 512

// DefaultGenerationTTL is the default Options.GenerationTTL.
const DefaultGenerationTTL = time.Second

// DefaultBreakerThreshold and DefaultBreakerDuration are the defaults of
// Options.BreakerThreshold and Options.BreakerDuration.
const (
	DefaultBreakerThreshold = 3
	DefaultBreakerDuration  = time.Second
)

// Options configures a Cache. A nil *Options means the defaults of every
// field.
type Options struct {
	// Namespace isolates this cache's keys from other caches on the same
	// servers, and scopes Clear: keys are prefixed with the namespace and
	// its current generation, and Clear moves to a new generation. Default:
	// "", no namespace, in which case Clear would have to flush every
	// server entirely (flush_all), which it only does with AllowFlush.
	Namespace string

	// AllowFlush lets Clear on a cache without a Namespace flush every
	// server of the client (flush_all), deleting every key on them,
	// including other programs' keys. Default false: such a Clear returns
	// an error wrapping cachekit.ErrFlushNotAllowed and sends nothing, so
	// that a configuration mistake that loses the namespace can never wipe
	// a shared server. Unused with a Namespace.
	AllowFlush bool

	// MaxValueSize is the largest value Set, SetMany and Add accept; a
	// larger one fails with ErrTooLarge before anything is sent. Default
	// (0): DefaultMaxValueSize, right for memcached's default -I 1m. Raise
	// it for servers started with a larger -I; a negative value turns the
	// client-side check off and leaves it to the server, whose "object too
	// large" reply is reported as ErrTooLarge too.
	MaxValueSize int

	// GenerationTTL is how long Set, SetMany, Add, Increment with a positive
	// delta, AddVersion, SwapVersion and DeleteVersion trust the namespace
	// generation this cache last saw before asking the server for it again.
	// Reads (Get, GetMany, Exists, GetVersion, and the reads inside Increment
	// with a delta of zero or less, Expire, CompareAndDelete and
	// CompareAndSwap) fetch the generation in the same round trip as the data
	// every time, and Delete asks for it before deleting, so they see a Clear
	// made anywhere at once; only those writes racing another process's Clear
	// within this window may land in the old generation and be lost, as if
	// evicted. Default (0): DefaultGenerationTTL, one second; negative: ask
	// before every write. Unused without a namespace.
	GenerationTTL time.Duration

	// BatchConcurrency bounds how many requests SetMany and Delete keep in
	// flight at once (gomemcache has no multi-key set or delete, so they
	// send one request per key). Default (0): the client's MaxIdleConns
	// (gomemcache's default of 2 when unset), so that batches don't dial
	// connections the client would close straight away.
	BatchConcurrency int

	// BreakerThreshold is how many consecutive connection failures (a
	// refused or timed-out dial, a reset or closed connection, no reply
	// within the client's Timeout; not the caller's own context ending, and
	// not the server's error replies) open the circuit breaker of a server.
	// While it is open, calls that need that server fail at once, without
	// touching the network, with an error wrapping cachekit.ErrUnavailable
	// and the last failure; after BreakerDuration one call goes through as
	// a probe, and its success closes the breaker. Default (0):
	// DefaultBreakerThreshold (3); negative: no breaker.
	BreakerThreshold int

	// BreakerDuration is how long an open breaker refuses calls before it
	// lets a probe through. Default (0): DefaultBreakerDuration (1s);
	// negative: no breaker.
	BreakerDuration time.Duration

	// Selector is the memcache.ServerSelector the client was built with
	// (the *Ring given to memcache.NewFromSelector, say). With it, the
	// cache keeps one circuit breaker per server, so one dead server of a
	// pool does not stop calls that need only the others; when it is a
	// [Ring], a namespace also keeps its generation on every server (see
	// SingleGenerationKey). Default (nil): one breaker for the whole client
	// (gomemcache does not tell which server a key goes to) and a single
	// generation key. Caches opened from a URL set it themselves.
	Selector memcache.ServerSelector

	// AutoPipeline coalesces the single-key reads (Get, Exists, GetVersion)
	// of concurrent callers into one multi-key get per server: while a server
	// has requests in flight, further reads for it queue and go out together,
	// with the namespace generation fetched once per batch, when one of those
	// returns. A lone caller sends its read at once, as without the option.
	// Callers with a cancellable context wait on a channel rather than
	// running the call on a goroutine of their own. Turn it on when many
	// goroutines read through one cache: on loopback it reads several times
	// faster than plain gomemcache from 64 goroutines (see BENCHMARKS.md).
	// Writes and GetMany are unchanged. Default false (caches opened from a
	// URL set it unless auto_pipeline=false).
	AutoPipeline bool

	// SingleGenerationKey keeps a namespace's generation under one key on
	// one server, the layout of earlier versions, instead of one
	// generation on every server of the pool, each beside the keys it
	// holds. By default, when the cache knows where its client places keys
	// (a cache opened from a URL, or Options.Selector set to the [Ring]
	// the client was built on), every server holds its own generation, so
	// adding a server, or losing one, touches only the keys on that server
	// (see "Pools and topology changes" in the package documentation).
	// With another selector, or none, the cache cannot tell which server a
	// key goes to, so it keeps the single key whatever this field says.
	// Every cache sharing a namespace must use the same layout and list the
	// servers by the same addresses: the two layouts do not see each
	// other's keys or Clears. Default false (URL per_server_generations=false
	// sets it).
	SingleGenerationKey bool
}

// New returns a Cache that stores its entries through client. The cache does
// not close client: Close leaves it open for the caller. For a pool of
// servers, build the client with a consistent-hashing selector:
// memcache.NewFromSelector(ring) with a [Ring], and pass the ring as
// Options.Selector for per-server circuit breakers and per-server namespace
// generations. Set client.DialContext
// to [LivenessDialer] so that writes can be retried safely on a fresh
// connection after a server restart (reads are retried either way).
//
// New panics if client is nil.
func New(client *memcache.Client, opts *Options) *Cache {
	if client == nil {
		panic("memcached.New: nil client")
	}
	if opts == nil {
		opts = &Options{}
	}
	c := &Cache{
		client:     client,
		maxValue:   opts.MaxValueSize,
		batch:      opts.BatchConcurrency,
		genTTL:     opts.GenerationTTL,
		allowFlush: opts.AllowFlush,
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
	c.meta.client = client
	if c.meta.sel = opts.Selector; c.meta.sel == nil {
		c.meta.sel = clientSelector(client)
	}
	if opts.Namespace != "" {
		c.nsPart = namespacePart(opts.Namespace)
		var ring *Ring
		if !opts.SingleGenerationKey {
			ring, _ = opts.Selector.(*Ring)
		}
		c.initGenerations(ring)
	}
	threshold, d := opts.BreakerThreshold, opts.BreakerDuration
	if threshold == 0 {
		threshold = DefaultBreakerThreshold
	}
	if d == 0 {
		d = DefaultBreakerDuration
	}
	c.breakerThreshold, c.breakerDuration = threshold, d
	if opts.Selector != nil {
		c.selector = opts.Selector
		c.breakers = map[string]*breaker.Breaker{}
		_ = opts.Selector.Each(func(a net.Addr) error {
			c.breakers[a.String()] = breaker.New(threshold, d)
			return nil
		})
		if len(c.breakers) <= 1 {
			// One server: no need to ask the selector for every key.
			for _, b := range c.breakers {
				c.br = b
			}
			c.selector, c.breakers = nil, nil
		}
	} else {
		c.br = breaker.New(threshold, d)
	}
	if opts.AutoPipeline {
		c.batcher = &batcher{}
		if c.selector != nil {
			c.batchers = make(map[string]*batcher, len(c.breakers))
			for addr := range c.breakers {
				c.batchers[addr] = &batcher{}
			}
		}
	}
	return c
}
