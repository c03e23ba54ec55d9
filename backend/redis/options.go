package redis

import (
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/internal/breaker"
)

// DefaultTimeout bounds each operation when [Options.Timeout] is zero.
const DefaultTimeout = time.Second

// MaxValueSize is the largest value Redis stores with its default
// configuration: proto-max-bulk-len, 512 MiB. Larger values are rejected with
// [cachekit.ErrTooLarge] before anything is sent.
const MaxValueSize = 512 << 20

// DefaultScanCount is the COUNT hint Clear gives SCAN, and the most keys it
// unlinks in one command, when [Options.ScanCount] is zero.
const DefaultScanCount = 1000

// DefaultBreakerThreshold is how many consecutive connection failures open
// the circuit breaker when [Options.BreakerThreshold] is zero.
const DefaultBreakerThreshold = 3

// DefaultBreakerDuration is how long an open circuit breaker refuses calls
// when [Options.BreakerDuration] is zero.
const DefaultBreakerDuration = time.Second

// Options configures a [Cache]. A nil *Options is the same as a zero Options,
// and every zero field means its documented default.
type Options struct {
	// Namespace, when not empty, keeps the cache's keys apart from every
	// other namespace's: the key k is stored as E(Namespace) + ":" + k,
	// where E writes the namespace's ':' as "%3A" and '%' as "%25" (and
	// leaves everything else as it is), so that no namespace's keys start
	// with another namespace's prefix: namespace "a" with key "b:k" and
	// namespace "a:b" with key "k" are different keys, and Clear on "a"
	// leaves "a:b" alone. On a cluster, a namespace holding a hash tag such
	// as "{app}" puts every key of the namespace in one slot, on one node.
	//
	// The default, "", stores keys as they are, and Clear then refuses to
	// run unless AllowFlush is set (see [Cache.Clear]).
	Namespace string

	// AllowFlush lets Clear on a cache without a Namespace empty the whole
	// logical database with FLUSHDB (on a cluster, every master), including
	// keys the cache did not write. Without it, such a Clear fails with an
	// error wrapping cachekit.ErrFlushNotAllowed and touches nothing. It
	// has no effect on a cache with a Namespace. Default false.
	AllowFlush bool

	// Timeout bounds each operation: the operation ends at the earlier of
	// the context's deadline and Timeout from its start. For Clear it
	// bounds each round trip of the walk rather than the whole walk. Zero
	// means [DefaultTimeout] (1s); a negative value means no bound other
	// than the context's and the client's own read and write timeouts.
	// Calls made with a context that can never be cancelled
	// (context.Background) share timers, so their deadline may be up to 1%
	// of Timeout (at least 0.1ms) late. Timeout also bounds how long Close
	// waits for a client the cache owns to close.
	Timeout time.Duration

	// MaxValueSize is the largest value Set, SetMany and Add accept; a
	// larger one fails with cachekit.ErrTooLarge before anything is sent.
	// Zero, or anything above [MaxValueSize] (512 MiB, Redis's default
	// proto-max-bulk-len), means MaxValueSize. A server configured with a
	// lower proto-max-bulk-len refuses larger values itself, usually by
	// dropping the connection; the cache then asks it for its limit
	// (CONFIG GET) and reports ErrTooLarge too. Set MaxValueSize to the
	// server's limit to have such values rejected before they are sent.
	MaxValueSize int

	// ScanCount is the COUNT hint Clear passes to SCAN and the most keys it
	// removes with one UNLINK. Zero means [DefaultScanCount] (1000).
	ScanCount int

	// BreakerThreshold is how many consecutive connection failures (a
	// refused or failed dial, a connection reset or closed mid-call, the
	// cache's own Timeout firing; never the caller's own cancellation or
	// deadline) open the cache's circuit breaker. While it is open, every
	// call fails at once, without touching the network, with an error
	// wrapping cachekit.ErrUnavailable and the last failure; after
	// BreakerDuration one call goes through as a probe, and its success
	// closes the breaker. Zero means [DefaultBreakerThreshold] (3); a
	// negative value disables the breaker.
	//
	// On a cluster (*goredis.ClusterClient) there is one breaker per
	// master, with these settings: the failures of one master open its
	// breaker only, and only the calls for keys of its slots (and the
	// multi-key calls and Clears that involve it) fail at once, while the
	// keys of the other masters keep working.
	BreakerThreshold int

	// BreakerDuration is how long the open breaker refuses calls before it
	// lets a probe through. Zero means [DefaultBreakerDuration] (1s); a
	// negative value disables the breaker.
	BreakerDuration time.Duration

	// AutoPipeline coalesces the single-key operations (Get, Set, Add,
	// Exists, Increment, Expire with a positive ttl, Delete of keys on one
	// server) of concurrent callers into pipelines, through go-redis's own
	// AutoPipeliner (the client's AsyncAutoPipeline and AutoPipeline). An
	// operation that finds no other operation of the cache in flight is sent
	// directly, so a lone caller pays nothing for it. GetMany, SetMany, Clear and
	// multi-slot Deletes stay one MGET or pipeline as without it. Deadlines,
	// the breaker, ErrUnknownOutcome and the rule that writes are never
	// resent hold as without it; a goroutine's operations still run in the
	// order it makes them.
	//
	// It pays off when many goroutines share the cache (measured with
	// 100-byte GETs on loopback: 6-8x the throughput of plain go-redis at
	// 64 goroutines and about 10x at 512, with lower latency; see
	// BENCHMARKS.md). It needs a *goredis.Client (standalone or Sentinel)
	// or a *goredis.ClusterClient; with any other client it has no effect.
	// It adds a hook to the client (once per client) that drops the cache's
	// queued commands whose callers' contexts have ended before they are
	// written, and it starts the client's AutoPipeliners, which live until
	// the client is closed. Default false.
	AutoPipeline bool

	// ClusterReloadInterval applies to a *goredis.ClusterClient (from a
	// redis+cluster:// URL or the caller's own): when an operation fails to
	// reach a node (a refused dial, a dropped connection, a socket
	// timeout), the cache asks the client to reload its slot map
	// (ClusterClient.ReloadState), at most once per ClusterReloadInterval.
	// go-redis itself reloads only on MOVED/ASK/READONLY replies and every
	// ClusterOptions.ClusterStateReloadInterval (60s by default), so after a
	// master dies it would keep dialling it until then, while its replica
	// already serves the slots; with the reload the cache finds the
	// promoted replica within this interval of the cluster's failover. Zero
	// means [DefaultClusterReloadInterval] (500ms); a negative value turns
	// the reload off. URLs set it, and the client's periodic reload
	// interval, with cluster_reload_interval.
	ClusterReloadInterval time.Duration
}

// DefaultClusterReloadInterval is the least time between the slot-map
// reloads a cache asks of its cluster client after connection failures, when
// [Options.ClusterReloadInterval] is zero.
const DefaultClusterReloadInterval = 500 * time.Millisecond

// clientKind says how multi-key operations are routed.
type clientKind int

const (
	single  clientKind = iota // *goredis.Client (standalone or Sentinel failover), or unknown
	cluster                   // *goredis.ClusterClient: keys grouped by hash slot
	ring                      // *goredis.Ring: keys routed one by one
)

// Cache is a [cachekit.Cache] stored in Redis through a go-redis
// UniversalClient: a standalone or Sentinel-managed server (*goredis.Client,
// from NewClient or NewFailoverClient), a Redis Cluster
// (*goredis.ClusterClient) or a *goredis.Ring. Every operation is one
// command or one pipelined round trip (on a cluster, one per node involved,
// run concurrently).
//
// Create one with [New] or through cachekit.Open with a redis:// URL. It is
// safe for concurrent use.
type Cache struct {
	client   goredis.UniversalClient
	kind     clientKind
	owned    bool // Close closes client
	ctxAware bool // the client bounds I/O by the context's deadline itself

	prefix     string // encoded Namespace + ":", or ""
	pattern    string // SCAN MATCH pattern for Clear; "" without a namespace
	allowFlush bool
	timeout    time.Duration
	slack      time.Duration // how late a shared default deadline may be
	maxValue   int
	scanCount  int

	health health      // the whole client's breaker (see health in roundtrip.go)
	nodes  *nodeHealth // cluster: per-master breakers; nil otherwise, or with the breaker disabled
	gate   writeGate   // orders writes after abandoned ones (detached and pipelined calls)

	ap         *goredis.AutoPipeliner // deferred face; nil: no auto-pipelining
	apBlocking *goredis.AutoPipeliner // blocking face, with ap
	apAlways   bool                   // tests: pipeline lone callers too
	route      apRoute                // with ap: direct or pipelined

	reloadEvery time.Duration // cluster: least gap between slot-map reloads on failures; 0: off
	lastReload  atomic.Int64  // cluster: unix nanos of the last reload asked for

	shared    atomic.Pointer[sharedTimer] // see bound
	closed    atomic.Bool
	closeDone chan struct{} // closed when an owned client has finished closing
}

var (
	_ cachekit.Cache             = (*Cache)(nil)
	_ cachekit.CompareAndDeleter = (*Cache)(nil)
)

// New returns a Cache that stores its entries through client. The client
// stays the caller's: Close leaves it open, and it must outlive the cache.
//
// Deadlines: a client created with ContextTimeoutEnabled set (and read and
// write timeouts not set to -2) applies the context's deadline to the socket
// itself, and the cache calls it directly; this is the fast path and the
// recommended setup. With any other client the cache runs each call on its
// own goroutine and returns as soon as the context is done; the abandoned
// call then ends on its own when the client's read or write timeout fires,
// so those timeouts must not be disabled. A write abandoned that way reports
// cachekit.ErrUnknownOutcome, and the cache's later writes wait until it has
// ended, so it can never land after them.
//
// Retries: the cache marks every write it sends as not retryable, so go-redis
// never resends one, whatever the client's MaxRetries (a resent INCRBY would
// add twice). Reads are retried as the client is configured. For a client
// built for a cache, set MaxRetries: -1 and DialerRetries: 1, as URLs opened
// by cachekit.Open do: then an operation against a server that is down fails
// at once with the dial error (connection refused) rather than spending its
// whole Timeout on dial retries and reporting only the deadline.
func New(client goredis.UniversalClient, opts *Options) *Cache {
	if client == nil {
		panic("redis.New: nil client")
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	c := &Cache{
		client:     client,
		scanCount:  o.ScanCount,
		timeout:    o.Timeout,
		maxValue:   o.MaxValueSize,
		allowFlush: o.AllowFlush,
	}
	if c.scanCount <= 0 {
		c.scanCount = DefaultScanCount
	}
	switch {
	case c.timeout == 0:
		c.timeout = DefaultTimeout
	case c.timeout < 0:
		c.timeout = 0
	}
	c.slack = max(c.timeout/100, 100*time.Microsecond)
	if c.maxValue <= 0 || c.maxValue > MaxValueSize {
		c.maxValue = MaxValueSize
	}
	if o.Namespace != "" {
		c.prefix = namespacePrefix(o.Namespace)
		c.pattern = escapeGlob(c.prefix) + "*"
	}
	threshold, duration := o.BreakerThreshold, o.BreakerDuration
	if threshold == 0 {
		threshold = DefaultBreakerThreshold
	}
	if duration == 0 {
		duration = DefaultBreakerDuration
	}
	c.health.b = breaker.New(threshold, duration) // nil when either is negative
	switch cl := client.(type) {
	case *goredis.Client:
		opt := cl.Options()
		c.ctxAware = opt.ContextTimeoutEnabled && opt.ReadTimeout >= 0 && opt.WriteTimeout >= 0
	case *goredis.ClusterClient:
		c.kind = cluster
		switch c.reloadEvery = o.ClusterReloadInterval; {
		case c.reloadEvery == 0:
			c.reloadEvery = DefaultClusterReloadInterval
		case c.reloadEvery < 0:
			c.reloadEvery = 0
		}
		if c.health.b != nil {
			c.nodes = newNodeHealth(cl, threshold, duration, &c.health)
		}
		opt := cl.Options()
		c.ctxAware = opt.ContextTimeoutEnabled && opt.ReadTimeout >= 0 && opt.WriteTimeout >= 0
	case *goredis.Ring:
		c.kind = ring
		opt := cl.Options()
		c.ctxAware = opt.ContextTimeoutEnabled && opt.ReadTimeout >= 0 && opt.WriteTimeout >= 0
	}
	if o.AutoPipeline {
		c.ap, c.apBlocking = newAutoPipeliners(client)
	}
	return c
}

// Close marks the cache closed; every later call fails with
// cachekit.ErrClosed. A cache opened from a URL also closes its client; one
// made by [New] leaves the caller's client open. Close is idempotent.
//
// Close returns within the cache's Timeout (default 1s): a client that takes
// longer to close (a Sentinel client blocks while it is still trying to reach
// unreachable Sentinels, up to its dial timeout) finishes closing in the
// background, and Close then returns nil.
func (c *Cache) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	if !c.owned {
		return nil
	}
	done := make(chan error, 1)
	c.closeDone = make(chan struct{})
	go func() {
		defer close(c.closeDone)
		done <- c.client.Close()
	}()
	wait := c.timeout
	if wait <= 0 {
		wait = DefaultTimeout
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return nil
	}
}
