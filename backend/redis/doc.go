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
//	timeout         default per-operation timeout, e.g. 100ms (default 1s; 0: none)
//	dial_timeout    connect timeout (default go-redis's, 5s)
//	read_timeout    socket read timeout (default go-redis's, 5s; 0: none)
//	write_timeout   socket write timeout (default go-redis's, same as read_timeout; 0: none)
//	pool_size       connections per node (default go-redis's, 10 per GOMAXPROCS)
//	max_value_size  largest value accepted, e.g. 1MiB (default and maximum 512MiB)
//	master_name     Sentinel only, required: the name of the monitored master
//	sentinel_auth   Sentinel only: true to send user:password to the Sentinels too (default false)
//
// Any other parameter is an error wrapping cachekit.ErrInvalidURL, as is a
// malformed value. Opening a URL does not contact the server; the first
// operation does. A cache opened from a URL always has go-redis's
// ContextTimeoutEnabled set. The password is kept only inside the go-redis
// client options: it never appears in an error, a log line, or when an
// [Options] or [Cache] value is printed.
//
// # Key layout
//
// With a namespace, the key "k" is stored in Redis as "<namespace>:k"; without
// one, as "k". Namespaces nest: keys of "app:users" also start with "app:", so
// Clear on namespace "app" removes them too. On a cluster, a namespace holding
// a hash tag, such as "{app}", puts all of its keys in one slot.
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
// of 0, EXISTS and PERSIST in one MULTI/EXEC. On a cluster, GetMany and
// Delete group their keys by hash slot (one MGET or DEL per slot, pipelined to
// each node concurrently), so a CROSSSLOT error never reaches the caller; a
// ClusterClient given go-redis's command-policy resolver, which refuses such
// commands in pipelines, gets one MGET or DEL that go-redis splits itself. On
// a Ring, GetMany and Delete send one GET or DEL per key, pipelined per shard.
// Any other UniversalClient implementation is treated as a single server.
// Values larger than [MaxValueSize] (or Options.MaxValueSize) are rejected
// with cachekit.ErrTooLarge before anything is sent, and a server that refuses
// a value for its size (a lower proto-max-bulk-len) is reported the same way.
//
// # Clear
//
// With a namespace, Clear walks the keyspace with SCAN MATCH "<namespace>:*",
// the namespace's glob characters (* ? [ ] \) escaped so that a namespace
// "a*" never matches "ab:...", and removes what it finds with UNLINK in
// batches. On a cluster it walks every master. It never uses KEYS, and it never
// flushes anything.
//
// WITHOUT A NAMESPACE, CLEAR RUNS FLUSHDB ASYNC: it empties the whole
// logical database (on a cluster, every master), including keys the cache did
// not write. Give every cache that shares a database with other data a
// namespace.
//
// # Deadlines
//
// An operation whose context has no deadline gets one of Options.Timeout
// (default 1s). A deadline holds even when it fires inside the client: the
// error then satisfies errors.Is(err, context.DeadlineExceeded), and the
// client's own error ("i/o timeout") stays reachable with errors.As. With a
// client that has go-redis's ContextTimeoutEnabled set, the deadline is put on
// the socket. A client without it ignores deadlines on the wire, so for such a
// client the cache runs each call on a goroutine of its own and returns when
// the context is done; the abandoned call ends when the client's read or write
// timeout fires, and its result is dropped. That costs a goroutine per call:
// set ContextTimeoutEnabled on clients you pass to [New].
//
// A cancellation (as opposed to a deadline) is seen before any I/O and while
// waiting for a pooled connection; with a ContextTimeoutEnabled client, a
// command already on the wire then finishes or times out first.
package redis
