// Package redis is the cachekit backend for Redis, built on go-redis v9
// (imported here as goredis). It works with a standalone server, with
// Sentinel-managed failover, with Redis Cluster, and with a go-redis Ring.
//
// # Two ways in
//
// Wrap a client you already have with [New]; the client stays yours, and
// Close leaves it open:
//
//	rdb := goredis.NewClient(&goredis.Options{
//		Addr:                  "localhost:6379",
//		ContextTimeoutEnabled: true, // recommended, see "Deadlines"
//	})
//	c := redis.New(rdb, &redis.Options{Namespace: "app"})
//
// Or import the package for its side effect and open a URL with
// cachekit.Open; the cache then owns its client and closes it on Close:
//
//	import _ "github.com/cachekit/cachekit/backend/redis"
//
//	c, err := cachekit.Open(ctx, "redis://:secret@localhost:6379/0?namespace=app&timeout=100ms")
//
// # URLs
//
//	redis://[user:password@]host[:port][/db][?param=value&...]
//	rediss://...                                  TLS (certificates verified, TLS 1.2 or later)
//	redis+cluster://host1:7000,host2:7001[/?...]  Redis Cluster; any reachable nodes as seeds
//	rediss+cluster://...                          Redis Cluster over TLS
//	redis+sentinel://host1:26379,host2:26379[/db]?master_name=mymaster[&...]
//	rediss+sentinel://...                         Sentinel and data nodes over TLS
//
// The port defaults to 6379 (26379 for Sentinel). IPv6 hosts are written in
// brackets, [::1]:6379, in one-host URLs (Go's URL parser rejects them in a
// list). The path selects the database (default 0; Redis Cluster has only 0).
// user:password, when present, authenticates to the data nodes; the user may
// be empty (redis://:password@host), and characters such as @ : / in the
// password are percent-encoded (p%40ss for p@ss). Query parameters:
//
//	namespace       key namespace, see below (default none)
//	allow_flush     true lets Clear without a namespace run FLUSHDB (default false)
//	timeout         per-operation timeout, e.g. 100ms (default 1s; 0: none)
//	dial_timeout    connect timeout (default go-redis's, 5s)
//	read_timeout    socket read timeout (default go-redis's, 5s; 0: none)
//	write_timeout   socket write timeout (default go-redis's, same as read_timeout; 0: none)
//	pool_size       connections per node (default go-redis's, 10 per GOMAXPROCS)
//	max_value_size  largest value accepted, e.g. 1MiB (default and maximum 512MiB)
//	master_name     Sentinel only, required: the name of the monitored master
//	sentinel_auth   Sentinel only: true to send user:password to the Sentinels too (default false)
//	breaker_threshold  consecutive connection failures that open the circuit breaker (default 3; 0: no breaker)
//	breaker_duration   how long the open breaker refuses calls, e.g. 2s (default 1s; 0: no breaker)
//	auto_pipeline   true coalesces concurrent single-key calls into pipelines (default false; see "Auto-pipelining")
//	cluster_reload_interval  Cluster only: least time between slot-map reloads after connection failures, and
//	                the client's periodic reload, e.g. 1s (default 500ms after failures, go-redis's 60s periodic;
//	                0: neither the reload on failures nor a shorter period; see "Topology changes")
//
// Any other parameter is an error wrapping cachekit.ErrInvalidURL, as is a
// malformed value. Opening a URL does not contact the server; the first
// operation does. A cache opened from a URL always has go-redis's
// ContextTimeoutEnabled set, MaxRetries -1 (go-redis resends nothing; the
// cache retries reads itself, see "Failures") and DialerRetries 1 (a refused
// dial fails at once, with its cause, instead of being retried until the
// operation's timeout hides it). The password is kept only inside the go-redis
// client options: it never appears in an error, a log line, or when an
// [Options] or [Cache] value is printed.
//
// # Key layout
//
// With a namespace, the key "k" is stored in Redis as "<namespace>:k"; without
// one, as "k". In the namespace, ':' is written "%3A" and '%' is written
// "%25" (namespace "app:users" is stored as "app%3Ausers:k"), so the first
// ':' of a stored key ends its namespace: namespaces never nest, namespace
// "app" with key "users:k" is not namespace "app:users" with key "k", and
// Clear on "app" leaves "app:users" alone. Namespaces without ':' or '%' are
// stored as they are. On a cluster, a namespace holding a hash tag, such as
// "{app}", puts all of its keys in one slot; otherwise a cache's keys spread
// over every slot.
//
// Values are stored as plain Redis strings, TTLs with millisecond precision
// (rounded up), and counters as base-10 ASCII, so other Redis clients can read
// what the cache writes.
//
// # Commands
//
// Every operation is one command or one pipelined round trip: GET; MGET for
// GetMany; SET with PX; pipelined SETs for SetMany; SET NX for Add; DEL;
// EXISTS; INCRBY for Increment; PEXPIRE for Expire, and for Expire with a ttl
// of 0, EXISTS and PERSIST in one MULTI/EXEC; for CompareAndDelete
// (cachekit.CompareAndDeleter), EVALSHA of a one-key Lua script that deletes
// the key only while it holds the given value (EVAL when the server does not
// have the script yet), which works on a cluster too; for CompareAndSwap
// (cachekit.CompareAndSwapper), likewise one EVALSHA of a one-key script that
// GETs and compares, then SETs with PX (or, for a nil old, SET NX with PX).
// Neither is ever resent: a lost reply is cachekit.ErrUnknownOutcome. On a
// cluster, GetMany and Delete group their keys by hash slot (one MGET or DEL per slot, pipelined to
// each node concurrently), so a CROSSSLOT error never reaches the caller; a
// ClusterClient given go-redis's command-policy resolver, which refuses such
// commands in pipelines, gets one MGET that go-redis splits itself, and one
// small Lua script per slot for Delete (go-redis would resend the parts of a
// DEL it splits itself). On
// a Ring, GetMany and Delete send one GET or DEL per key, pipelined per shard.
//
// # Topology changes
//
// Cluster master failover: go-redis learns a new slot map only from
// MOVED/ASK/READONLY replies and every ClusterOptions.ClusterStateReloadInterval
// (60s by default), so after a master dies its client keeps dialling the dead
// address while the promoted replica already serves the slots. The cache
// therefore asks a *goredis.ClusterClient to reload its slot map
// (ReloadState, in the background) after any connection failure, at most once
// per Options.ClusterReloadInterval (default 500ms; URL cluster_reload_interval).
// This applies to caller-supplied cluster clients too; to also shorten their
// periodic reload, set ClusterStateReloadInterval on the client. Writes to the
// dead master's slots then resume within about a second of the cluster's own
// failover (cluster-node-timeout plus the election); until then they fail
// (a write whose reply was lost reports cachekit.ErrUnknownOutcome) and may
// open that master's breaker, never the other masters'. Replication is
// asynchronous: a write acknowledged just before the master died can be
// lost; a value read back is never one that was not written.
//
// Resharding: a node answers a command for a slot being migrated with MOVED,
// ASK or TRYAGAIN, each meaning it did not run the command. go-redis follows
// MOVED and ASK itself, but retries TRYAGAIN in a pipeline only for the first
// command and only when no command is marked not-retryable. GetMany, SetMany,
// Delete and Clear's UNLINKs therefore resend, per command, every command
// that got one of these replies (writes too: they were not run), with a short
// backoff (4ms doubling to 256ms, at most 12 times) within the operation's
// deadline, so resharding does not reach the caller; calls touching a
// migrating slot take longer meanwhile.
//
// Sentinel failover: the Sentinel client (redis+sentinel://) follows the
// Sentinels' announcement of the new master; writes resume within about a
// second of the promotion.
// Any other UniversalClient implementation is treated as a single server.
// Values larger than [MaxValueSize] (or Options.MaxValueSize) are rejected
// with cachekit.ErrTooLarge before anything is sent, and a server that refuses
// a value for its size (a lower proto-max-bulk-len) is reported the same way.
//
// # Clear
//
// With a namespace, Clear walks the keyspace with SCAN MATCH "<namespace>:*"
// (the encoded namespace, see "Key layout"), the namespace's glob characters
// (* ? [ ] \) escaped so that a namespace "a*" never matches "ab:...", and
// removes what it finds with UNLINK in batches. On a cluster it walks every
// master. It never uses KEYS, and it never flushes anything.
//
// Without a namespace, Clear would have to empty the whole logical database
// (FLUSHDB ASYNC; on a cluster, every master), including keys the cache did
// not write, so it refuses: it returns an error wrapping
// cachekit.ErrFlushNotAllowed and sends nothing, unless the cache was given
// Options.AllowFlush (URL: allow_flush=true). A typo that drops the namespace
// from a URL therefore cannot wipe a shared server.
//
// # Deadlines
//
// Every operation is bounded by Options.Timeout (default 1s): it ends at the
// earlier of its context's deadline and the timeout. A deadline holds even
// when it fires inside the client: the error then satisfies
// errors.Is(err, context.DeadlineExceeded), and the client's own error
// ("i/o timeout") stays reachable with errors.As. With a
// client that has go-redis's ContextTimeoutEnabled set, the deadline is put on
// the socket. A client without it ignores deadlines on the wire, so for such a
// client the cache runs each call on a goroutine of its own and returns when
// the context is done; the abandoned call ends when the client's read or write
// timeout fires, and its result is dropped. Nothing is handed to the client
// after the context has ended, and a write abandoned that way (its error
// wraps cachekit.ErrUnknownOutcome) holds back the cache's later writes
// until it has ended, so it never lands after a write that succeeded after
// it. That costs a goroutine per call: set ContextTimeoutEnabled on clients
// you pass to [New].
//
// A cancellation (as opposed to a deadline) is seen before any I/O and while
// waiting for a pooled connection. With a ContextTimeoutEnabled client, a
// command already on the wire when its context is cancelled is not
// interrupted (go-redis puts only deadlines on the socket): the call returns
// when the reply arrives, with the command's own outcome (a value read, a
// write applied), or when the cache's Timeout fires, with an error wrapping
// the context's error, context.Canceled (and, for a write,
// cachekit.ErrUnknownOutcome).
// So a cancelled call waits at most Timeout (1s by default) for a server
// that stopped answering; callers that must return at once on cancellation
// should also give their context a deadline, which is put on the socket.
//
// # Failures
//
// Writes are applied at most once per call. The cache marks every write
// command as not retryable, so go-redis never resends one, whatever the
// client's MaxRetries: a resent INCRBY adds twice, a resent SET NX reports
// ErrExists for the caller's own write, a resent DEL reports 0. When a write
// fails after its request may have reached the server (the connection
// dropped, or the deadline passed, before the reply), the error wraps
// cachekit.ErrUnknownOutcome and the cause: the write was applied once or not
// at all. Errors that prove nothing was sent (a refused dial, no free
// connection, a context that ended first) and server error replies are
// reported as they are. Reads (GET, MGET, EXISTS, SCAN) whose connection
// dropped are tried once more while their context lasts.
//
// A server that cannot be reached shows in the error itself: against a
// closed port, errors.Is(err, syscall.ECONNREFUSED) and the message says
// "connection refused" (for clients given to [New], set MaxRetries: -1 and
// DialerRetries: 1 to get that rather than the deadline; see New). go-redis
// also writes such failures to its own logger, which is global
// (goredis.SetLogger); the cache leaves it alone, since the error already
// carries the cause.
//
// Each cache has a circuit breaker (Options.BreakerThreshold and
// BreakerDuration; URL breaker_threshold and breaker_duration): after 3
// consecutive connection failures (a failed dial, a dropped connection, the
// cache's own Timeout firing; never the caller's cancellation or deadline)
// every call fails at once, without touching the network, with an error
// wrapping cachekit.ErrUnavailable and the last failure, for 1s; then one
// call goes through as a probe, and its success closes the breaker. A cache
// in front of a dead server thus costs its callers microseconds, not a
// timeout per call. On a Redis Cluster there is one breaker per master:
// while a master is down or frozen, its breaker opens after 3 failed calls
// for its keys, the calls for keys of its slots (and multi-key calls and
// Clears that involve it) fail at once with ErrUnavailable, and the keys of
// the other masters keep working as before. A refused call also asks for a
// slot-map reload, so once a replica has been promoted its (closed) breaker
// takes over the slots.
//
// Close returns within Options.Timeout: a Sentinel client that is still
// trying to reach unreachable Sentinels finishes closing in the background.
//
// # Auto-pipelining
//
// With Options.AutoPipeline (URL: auto_pipeline=true), the single-key
// operations of concurrent callers (Get, Set, Add, Exists, Increment, Expire
// with a positive ttl, Delete on a standalone server) share round trips:
// they go through go-redis's own AutoPipeliner (the client's
// AsyncAutoPipeline, and AutoPipeline for callers whose context cannot be
// cancelled), which writes the commands queued while one batch is on the
// wire as the next pipeline. A call that finds no other such call of the
// cache in flight is sent directly, so a lone caller keeps the latency of a
// plain call. GetMany, SetMany, Clear, CompareAndDelete, Expire with a ttl
// of 0 and Deletes on a cluster are sent as without the option: one MGET or
// one pipeline each.
//
// Turn it on when many goroutines share a cache and the server or the
// network, not the application, limits throughput: on loopback, 100-byte
// GETs from 64 goroutines ran at several times the throughput of plain
// go-redis, with lower median latency (BENCHMARKS.md has the numbers). It
// works with a *goredis.Client (standalone, or Sentinel through
// NewFailoverClient) and a *goredis.ClusterClient (batches go per node,
// keys routed by slot); a Ring has no AutoPipeliner, and with a Ring or any
// other client the option changes nothing.
//
// The rules above hold with it: a goroutine's calls run in the order it
// makes them (each waits for its reply before the next); every call ends
// by its deadline; nothing is sent after a caller's context ended (a hook
// the cache adds to the client, once per client, drops queued commands whose
// caller's context ended before their batch is written; such a write reports
// the context's error, not ErrUnknownOutcome); writes are never resent; a
// write whose context ended after it was written reports ErrUnknownOutcome,
// and later writes of the cache wait until it has finished; the breaker
// counts failures as for direct calls. Two things differ. A batch is written
// on a connection of its own with go-redis's read and write timeouts, and
// only one batch is on the wire at a time, so a server that stops answering
// holds the queued calls until their deadlines (then the breaker opens). And
// callers whose context can never be cancelled (context.Background and
// values on top of it) share their batch's deadline: on a client with
// ContextTimeoutEnabled the batch's socket deadline is the earliest of their
// deadlines, which may end a batch-mate a few milliseconds before its own.
//
// The AutoPipeliners belong to the client and live until the client is
// closed: a cache opened from a URL closes them with its client; with [New],
// closing the client does. go-redis shares one of each face per client: when
// the client already has one, the cache uses it with its configuration;
// otherwise it creates it with one batch on the wire at a time, up to 300
// commands per batch.
//
// # Backplane
//
// The package registers redis:// and rediss:// with cachekit.OpenBackplane,
// and [NewBackplane] makes the same from a client (which stays the
// caller's; a backplane opened from a URL owns and closes its client):
//
//	redis://[user:password@]host[:port][/db]?channel=app   pub/sub (the default mode)
//	redis://host:6379/0?mode=tracking                      server-assisted
//
//	mode          pubsub (default) or tracking
//	channel       pub/sub only: messages go on Redis channel "cachekit:bp:<channel>" (default "default")
//	timeout       bounds each Publish and each step of (re)subscribing, e.g. 500ms (default 1s)
//	dial_timeout  connect timeout (default go-redis's, 5s)
//
// In pub/sub mode, Publish sends one PUBLISH of a compact binary message
// (namespace, keys, Clear, origin; any key bytes), so it works whatever the
// cache's backend is, Memcached included. Messages on the channel that are
// not invalidations are dropped and reported to onError.
//
// In tracking mode the server sends the invalidations itself: the backplane
// runs CLIENT TRACKING ON BCAST with the key prefix of every watched cache's
// namespace (see "Key layout"; every key for a cache without a namespace),
// REDIRECTed to a connection subscribed to __redis__:invalidate, and maps
// each invalidated key back to its namespace and key. A write by any client
// (redis-cli, another language) therefore invalidates, and Publish does
// nothing. A FLUSHDB or FLUSHALL invalidates every watched namespace (All).
// The server cannot tell who wrote, so a process's own writes come back to
// it and evict its own fresh local copies (one extra cache read each);
// every write under a watched prefix is sent to every process (tracking is
// by key name, on every database of the server). Tracking mode needs a
// *goredis.Client (standalone or Sentinel) or a *goredis.ClusterClient
// given to NewBackplane: on a cluster it tracks every master, and checks the
// list of masters every max(timeout, 1s) (a master found later, after a
// failover, brings a Reset).
//
// Both modes subscribe on one goroutine per backplane, started by the first
// Subscribe (which waits until the subscription is in place, up to twice
// the timeout). An idle subscription sends a PING every max(timeout, 1s), so
// a server that stops answering is noticed. A lost subscription is reported
// to onError and set up again with backoff (50ms doubling to 2s); once it
// receives again, subscribers get an Invalidation with Reset set, since
// messages may have been lost meanwhile. Close must not be called from
// onMessage or onError.
package redis
