// Package cachekit is one cache API for Go with pluggable backends: an
// in-process memory cache, Redis and Memcached, chosen by a URL.
//
// # Layers
//
// [Cache] is the byte-level contract. Every backend implements it, and so
// does every wrapper; the cachetest package is its conformance suite, and
// every backend in this module passes it against the real server. [Typed]
// sits on top: it serializes values of one Go type (JSON by default, msgpack
// or raw bytes from the serializer package), applies a default TTL and
// loads missing values with [Typed.GetOrLoad], one load per key at a time.
// GetOrLoad hands the loaded value to its callers as soon as the load
// returns and writes it to the cache in the background;
// [Typed.Wait] waits for those writes, so call it before closing the Cache.
// The decorator package memoizes whole functions.
//
// # Optional interfaces
//
// As database/sql drivers do, a Cache may implement more than the contract:
// [CompareAndDeleter] deletes a key only while it holds an expected value
// (lease and lock release). Check for it with a type assertion. Every
// backend of this module implements it, and [WithHooks] forwards it, so
// wrapping a cache never hides it; the cachetest suite checks both.
// [CompareAndSwapper] replaces a value only while it holds an expected one
// ([Typed.Update] and package lock build on both). [SharedGetter] is Get
// without the defensive copy: it returns the stored bytes themselves,
// read-only and never changed afterwards; the memory backend implements it,
// [WithHooks] and the local tier forward it, and [Typed] reads with it when
// it can, decoding without a copy. [Versioner] reads a value with its
// version and writes or deletes on condition of that version, one request
// each where the backend stamps writes (memcached's cas id; the memory
// backend too): [Typed.Update] and package lock use it when the cache has
// it, and every wrapper forwards it.
//
// # Local tier and backplane
//
// [TypedOptions].Local keeps values decoded in process memory in front of a
// shared Redis or Memcached (FusionCache's L1): a read that finds its key
// there costs no network round trip, no decode and no allocation. The tier
// is bounded by [LocalOptions].MaxEntries (W-TinyLFU, on otter) and
// LocalOptions.TTL, and never keeps a value longer than the remote TTL the
// Typed knows. Values it returns are shared between callers, so do not
// modify them (or set LocalOptions.Copy). Typed.Close ends what the tier
// started.
//
// A [Backplane] keeps the local tiers of several processes, and of several
// Typed in one process, coherent: every write through a Typed or its
// Cache() publishes an [Invalidation] naming the namespace and keys after
// the write succeeded, and every other Typed on the backplane drops those
// keys. [NewMemoryBackplane] delivers in process and synchronously;
// [OpenBackplane] opens one by URL from a backend package, such as Redis
// pub/sub (redis://host:6379/0?channel=app, for any cache backend) or Redis
// client tracking (?mode=tracking, which also sees writes by other
// clients). Backplane trouble goes to TypedOptions.OnError and to hooks as
// [EventBackplaneError] and never fails a read or a write; while messages
// cannot arrive, LocalOptions.TTL bounds staleness. Without a backplane,
// a local entry may be stale for up to LocalOptions.TTL.
//
// [WithTags] attaches tags to written entries and [Typed.InvalidateTags]
// makes them all misses, for every Typed over the namespace, on every
// backend: each tag has a stamp in the shared cache that tagged entries
// carry and that a read of them checks (one round trip more for tagged
// entries only). The events [EventLocalHit], [EventLocalMiss],
// [EventInvalidation] and [EventTagMiss] let hooks count what the local tier
// and tags do.
//
// # Choosing a backend
//
// A backend registers its URL schemes when imported, as database/sql drivers
// do; [Open] then builds a cache from configuration:
//
//	import (
//		"github.com/cachekit/cachekit"
//		_ "github.com/cachekit/cachekit/backend/memory"
//		_ "github.com/cachekit/cachekit/backend/redis"
//	)
//
//	c, err := cachekit.Open(ctx, os.Getenv("CACHE_URL")) // e.g. mem:// in tests, redis://... in production
//
// The URL forms are:
//
//	mem://?max_bytes=64MiB&max_entries=0&namespace=app      (also memory://)
//	redis://user:pass@host:6379/0?namespace=app&timeout=100ms
//	rediss://...                                            (TLS)
//	redis+cluster://h1:7000,h2:7001?namespace=app
//	redis+sentinel://h1:26379,h2:26379?master_name=mymaster
//	memcached://h1:11211,h2:11211?namespace=app&timeout=100ms
//
// Each backend's package documentation lists its parameters. Unknown
// parameters are errors, and no error or log line shows a URL's password.
// Backends can also be built in code from a client the program already has:
// memory.New, redis.New and memcached.New.
//
// # Errors
//
// Failures are reported with sentinel errors, to be checked with errors.Is:
// [ErrNotFound] for a miss, [ErrExists], [ErrNotInteger], [ErrClosed],
// [ErrInvalidKey], [ErrTooLarge], [ErrInvalidTTL], [ErrDecode], [ErrEncode],
// [ErrLoaderPanic] (a loader panicked or called runtime.Goexit),
// [ErrInvalidURL], [ErrUnavailable], [ErrUnknownOutcome] and
// [ErrFlushNotAllowed]. They usually arrive inside an [*Error] that names
// the operation and key; an invalid key, for instance, is an *Error whose
// Op is the method called, on every backend. A backend client's own errors
// stay reachable with errors.As, and context errors stay errors.Is-able as
// context.Canceled and context.DeadlineExceeded, including deadlines that
// fire inside a client.
//
// # Hooks and events
//
// [WithHooks] runs every operation through hooks: middleware that sees an
// [Op] before and after it runs, and can change or answer it. The plugin
// packages plugin/stats, plugin/logging (log/slog) and plugin/otel
// (OpenTelemetry, its own module) are ready-made hooks, and hooks that
// implement [EventHook] also receive the [Event]s that Typed and the
// decorator report through [Emit]: loads, load errors, stampede joins, stale
// values served, early refreshes and decode failures. [EventKind] defines
// each precisely enough to count with: a decode failure, for one, follows a
// read the hooks saw as a hit, and is a miss to the caller.
//
// # Semantics every backend shares
//
// TTL 0 means no expiry, a negative TTL is an error, and a TTL shorter than a
// backend's resolution rounds up, never down to "forever". Keys are any
// non-empty string up to [MaxKeySize] bytes; backends that cannot hold some
// keys natively encode them without collisions. Values are never aliased:
// changing a slice after Set, or one returned by Get, changes nothing stored.
// A namespace prefixes every key, and Clear removes that namespace's keys
// only, however namespaces nest or look like patterns ("a" and "a:b", "a*").
// Without a namespace, Clear on the memory backend empties its private
// store, while Redis and Memcached refuse it with ErrFlushNotAllowed unless
// their AllowFlush option says otherwise: it would flush the whole server.
package cachekit
