// Package memcached is a cachekit backend for memcached, built on the
// gomemcache client (github.com/bradfitz/gomemcache). It works with one
// server or a pool, and hides memcached's differences from the cachekit
// contract, so code written against cachekit.Cache behaves the same here as
// on the other backends.
//
// # Opening
//
// Either wrap a client you configure yourself (the cache never closes it):
//
//	ring, err := memcached.NewRing("10.0.0.1:11211", "10.0.0.2:11211")
//	client := memcache.NewFromSelector(ring)
//	c := memcached.New(client, &memcached.Options{Namespace: "app"})
//
// or open one from a URL (the cache owns its client and closes it on Close):
//
//	import _ "github.com/cachekit/cachekit/backend/memcached"
//
//	c, err := cachekit.Open(ctx, "memcached://h1:11211,h2:11211?namespace=app&timeout=100ms")
//
// The URL's scheme is memcached:// or memcache://; servers are a comma-
// separated host list (port 11211 when none is given), or an empty host and a
// Unix socket path (memcached:///run/memcached.sock). Parameters: namespace,
// timeout (socket timeout, default 500ms), max_idle_conns (per server, default
// 16), max_value_size (default 1MiB-512B), generation_ttl (default 1s),
// batch_concurrency (default max_idle_conns times the servers), allow_flush
// (default false), breaker_threshold (default 3), breaker_duration
// (default 1s), auto_pipeline (default true) and per_server_generations
// (default true). Unknown parameters are errors. See [OpenURL].
//
// # Pools and consistent hashing
//
// A URL with several servers spreads keys with a [Ring], a ketama-style
// consistent-hashing memcache.ServerSelector: adding a fifth server to four
// moves about a fifth of the keys, where gomemcache's default ServerList
// (hash modulo the number of servers) moves most of them. Use NewRing with
// memcache.NewFromSelector for clients you build yourself.
//
// # Pools and topology changes
//
// A namespace's generation (see below) lives on every server of the pool:
// each server holds the generation of the keys it stores, under
// "~" + namespace + ":gen@" + its address, which the Ring sends to that
// server. A key uses the generation of the server that holds it, fetched in
// the same multi-key get as the key, so reads still cost one round trip per
// server and writes are unchanged. The Ring places a namespaced key without
// its generation, so keys never move between servers on a Clear. Then:
//
//   - growing a pool from N to N+1 servers keeps the keys that stay on their
//     server (about N/(N+1) of them); the keys the new server takes are
//     misses, its generation starting afresh;
//   - losing a server fails only the calls that need it (its breaker makes
//     them fail at once): keys on the others keep working, and GetMany
//     returns the keys it could read with an error naming the server it
//     could not (see Batches);
//   - Clear moves the generation on every server, concurrently. A server it
//     cannot reach keeps its generation and so its keys: Clear still moves
//     the others, then fails with an error naming the servers it could not
//     clear. A server that was restarted comes back empty; one that was only
//     unreachable serves its old keys again until a Clear succeeds, so retry
//     a Clear that failed.
//
// This is the layout whenever the cache knows where its client places keys:
// caches opened from a URL (per_server_generations=true is the default), and
// New with Options.Selector set to the Ring the client was built on. A cache
// over another selector, or given none, cannot tell which server a key goes
// to, so its namespace keeps a single generation key, "~" + namespace +
// ":gen", on whichever server the client puts it; so does a cache with
// Options.SingleGenerationKey (URL per_server_generations=false), the layout
// of earlier versions. With a single key, every call in the namespace needs
// the server that holds it: when that server dies, every call fails, and
// when a new server takes that key, the whole namespace reads as empty.
//
// Every cache sharing a namespace must use the same layout and list the
// servers by the same addresses (as placement needs anyway): the two
// layouts don't see each other's keys or Clears, so upgrading from the
// single key (or changing the setting) empties the namespace once, every
// entry missing as if evicted. Without a namespace the setting changes
// nothing.
//
// # Keys
//
// memcached keys are at most 250 bytes of printable ASCII without spaces.
// Any other cachekit key (spaces, control bytes, non-ASCII, longer keys) is
// encoded so that no two keys collide: a key that is plain printable ASCII,
// does not start with '~' and fits is sent as it is; otherwise it is sent as
// "~" + base64url(key), or, when that would not fit, "~~" +
// hex(sha256(key)). A key that merely looks encoded (starts with '~') is
// itself encoded, so it cannot collide with the encoding of another key. The
// SHA-256 form is collision-free for every practical purpose; the other forms
// are injective outright.
//
// # Namespaces and Clear
//
// With Options.Namespace set, keys are stored as
// "~" + namespace + ":" + generation + ":" + key (a namespace that is not
// plain ASCII, contains ':' or '~', or is longer than 64 bytes appears as a
// SHA-256 of itself). The generation is a number kept under a reserved key,
// one per server of a Ring (see above) or the single "~" + namespace +
// ":gen", created at random the first time. Clear
// increments it (one atomic incr): every key of the old generation becomes
// unreachable at once and memcached's LRU reclaims the memory in time, and
// other namespaces are untouched. Clear never flushes a server while a
// namespace is set. If the generation key itself is evicted or flushed, a
// new random generation starts, which empties the namespace and never brings
// old keys back.
//
// Reads (Get, GetMany, Exists, GetVersion, and the reads inside Increment
// with a delta of zero or less, Expire, CompareAndDelete and CompareAndSwap)
// fetch the generation key in the same multi-key get as the data (on a pool,
// a concurrent request to the server that holds it), so they see a Clear made
// by any process at once, at no extra round trip. Delete asks for the
// generation before it deletes (one more round trip), so a delete never lands
// in a generation another process has cleared, where it would count a dead
// key and leave the live one readable. Set, SetMany, Add, Increment with a
// positive delta and the versioned writes (see Versions) use the generation
// this cache last saw if it saw it within Options.GenerationTTL (default 1s),
// else ask first: a write that races another process's Clear within that
// window may land in the old generation and be lost, as if evicted (such an
// Increment returns the old counter plus its delta). Add that finds its key
// present asks for the generation again before reporting ErrExists, so a
// Clear elsewhere never makes Add fail wrongly.
//
// Without a namespace, keys are stored as encoded above, and Clear would
// have to flush every server of the client (flush_all), removing everything
// on them, including other programs' keys and other namespaces. It does so
// only with Options.AllowFlush (URL allow_flush=true); otherwise Clear
// returns an error wrapping cachekit.ErrFlushNotAllowed and sends nothing,
// so that a configuration mistake that drops the namespace cannot wipe a
// shared server.
//
// # TTLs
//
// memcached counts expiry in whole seconds against a clock that ticks once a
// second, so an item given n seconds lives between n-1 and n seconds. The
// backend rounds a TTL up to whole seconds and adds one: an entry lives at
// least its TTL and less than TTL+2s, and a sub-second TTL never becomes 0
// (which memcached reads as "never expires"). A result over 30 days is sent
// as an absolute Unix time, as memcached requires (it reads larger values
// that way); such expiries depend on the server's clock agreeing with the
// client's, and are capped at 2038-01-19, the protocol's int32 limit. A
// negative TTL is ErrInvalidTTL.
//
// The backend also writes every entry's absolute expiry (Unix seconds, 0 for
// none) into its memcached flags, because memcached cannot report an item's
// remaining TTL through gomemcache. Increment reads the flags back to keep
// the TTL, and Expire rewrites them. Other programs writing to the same keys
// should leave flags at 0.
//
// # Increment
//
// Increment with a positive delta is memcached's incr, one request: it
// keeps the item's flags and expiry, so the TTL is kept. A missing key is
// created with add and no expiry (and incremented again when another
// writer created it first). incr counts in unsigned 64 bits, so a result
// above math.MaxInt64, or one that wrapped, shows a value that could not
// take the delta: Increment takes the delta back off with a
// compare-and-swap and returns ErrNotInteger. A value incr refuses (not a
// number, or a negative one) goes through the compare-and-swap loop, as
// does every delta of zero or less (memcached's decr stops at 0): gets the
// value, parse it as a base-10 int64 (a value that is not one, or a result
// that would overflow, is ErrNotInteger), cas the new value with the
// recorded expiry; a missing key is created with add and no expiry. A lost
// race retries with a short random backoff, so concurrent increments are
// exact.
//
// incr is laxer than the contract in two ways, for values that neither
// Increment nor a Set of a strconv-formatted number ever stores: it reads leading spaces, a '+' sign and anything after a space as
// part of a number (" 5", "+5" and "5 apples" count as 5, where the
// contract says ErrNotInteger), and it rewrites a result shorter than the
// value in place, padded with spaces ("007" plus 1 reads "8  "). With a
// namespace, a positive Increment trusts the generation it last saw within
// Options.GenerationTTL, as Set does (see Namespaces and Clear).
//
// Expire is a compare-and-swap too (touch cannot change flags), so it sends
// the value back: it costs two round trips and the value's size both ways.
//
// # CompareAndDelete
//
// Cache implements cachekit.CompareAndDeleter (lease and lock release).
// memcached's delete compares no value, so CompareAndDelete reads the item
// with gets, compares the bytes, and replaces it with cas and a negative
// expiry: memcached stores such an item as already expired, so the swap is an
// atomic delete-if-unchanged, and the key is a miss for every get, add and
// delete at once (no tombstone to skip). A cas that finds the item changed
// reads it again; exactly one of many concurrent releases of one value
// deletes it. With a version in hand, DeleteVersion deletes in one request
// (see Versions).
//
// # CompareAndSwap
//
// Cache implements cachekit.CompareAndSwapper (read-modify-write, lock
// extension). With a nil old it is add ("only if absent"; NOT_STORED reports
// false). Otherwise it reads the item with gets, compares the bytes, and
// stores the new value with cas and the TTL converted as Set converts it; a
// cas that finds the item changed reads it again, so exactly one of many
// concurrent swaps from one value wins. It costs two round trips (one for a
// nil old); with a namespace the generation travels with the gets. Like
// every memcached entry, a swapped value may be evicted before its TTL, so a
// lock kept in memcached can be lost to eviction.
//
// # Versions
//
// Cache implements cachekit.Versioner, whose versions are memcached's cas
// ids, so that a caller holding a version needs no read before its
// compare: each method is one request. GetVersion is Get's request (gets,
// with a namespace in the same multi-key get as the generation, coalesced
// under AutoPipeline). The writes use memcached's meta protocol, which
// gomemcache does not speak: AddVersion sends ms in add mode (ME) with the
// c flag, which returns the new cas id; SwapVersion sends ms with
// C<version> and c, which stores only while the item's cas id is still
// version; DeleteVersion sends md with C<version>. They carry the TTL
// (converted as Set converts it) and the flags Set sends, and check keys,
// values and TTLs as Add does. So lock.Acquire and Release cost three
// round trips (ms, incr, md) where the compare-by-value methods cost four,
// and an uncontended Typed.Update two (gets, ms) where it costs three. With
// a namespace, the writes use the generation this cache last saw within
// Options.GenerationTTL, as Set does (a swap racing another process's
// Clear within that window may land in the cleared generation and be lost,
// as a Set would); a cas id names one item, so a versioned write never
// touches the key of a newer generation.
//
// The meta requests travel on connections of the cache's own: at most the
// client's MaxIdleConns idle per server, dialed with the client's
// DialContext (so a custom or TLS dialer, or [LivenessDialer], applies)
// and bounded by its Timeout, sent to the server the client's selector
// picks for the key (Options.Selector, or else the selector the client was
// built with, which the cache reads from the client), and closed by Close.
// They go through the same circuit breakers, resend rule and
// cachekit.ErrUnknownOutcome errors as every other request (see Failures).
// Each new connection is checked before its first meta command, with
// version and stats settings in one round trip: the commands above need
// memcached 1.6.13 or later (1.6.10 changed the syntax of ms, 1.6.13 fixed
// md's compare and the cas id ms returns), with CAS enabled (not -C).
// Against any other server (an older memcached answers ERROR) a versioned
// write sends nothing but the check, the connection is closed, and the
// method fails with an error wrapping cachekit.ErrUnsupported; for a
// minute after, the methods fail so at once, without dialing. Typed.Update
// and package lock then fall back to CompareAndSwap and CompareAndDelete.
//
// When memcached cannot store the value of an ms (too large for its items,
// or out of memory under -M), it removes the key's current item, whatever
// the mode or the cas id compared. So AddVersion and SwapVersion refuse,
// with ErrTooLarge and before anything is sent, a value whose item would
// exceed the server's item size limit (-I, read in the connection's
// check), even with Options.MaxValueSize turned off; and a SERVER_ERROR
// reply (out of memory) wraps cachekit.ErrUnknownOutcome, as the key's
// value may be gone.
//
// memcached counts cas ids from 1 again when it restarts, empty: a version
// read before a restart may match a value stored after it. A version
// proves a value unchanged only within one run of the server.
//
// # Values
//
// Values larger than Options.MaxValueSize (default 1 MiB - 512 bytes, what
// memcached's default -I 1m holds with any key) are ErrTooLarge before
// anything is sent; a server that refuses a value as too large for its item
// size is reported as ErrTooLarge too, and the client stays usable. But
// memcached removes the key's current item when it refuses to store a new
// one, so such a Set, SetMany or Add leaves the key empty: keep
// MaxValueSize (max_value_size) within the servers' -I, as the default is
// for memcached's default -I 1m.
//
// # Contexts
//
// gomemcache takes no context. A call with a context that can never be done
// (context.Background) runs on the caller's goroutine, bounded by the
// client's Timeout. Any other call runs its requests on a goroutine and
// returns the context's error as soon as the context is done; the abandoned
// requests end within the client's Timeout, and Close waits for them. Client
// i/o timeouts that happen once the context is done are reported as the
// context's error.
//
// An abandoned call sends nothing more: its goroutine checks before every
// request, so no request leaves after the context has ended, and a write
// abandoned before its request left returns the plain context error (it did
// nothing). A write abandoned after its request left may still be applied:
// its error wraps the context's error and cachekit.ErrUnknownOutcome, and
// until its goroutine ends, a later write to the same key through the same
// client (or a Clear of the namespace) waits for it, within the later
// write's own context. So a write that returned an error never lands after
// a later successful write from this process. (One request can still leave
// late: one whose connection was being dialed when the context ended; the
// same ordering keeps it from overtaking a later write.)
//
// With Options.AutoPipeline (on by default in URLs), Get and Exists wait
// for their read on a channel together with their context instead of
// running on a goroutine of their own (see Auto-batching below), so a
// cancellable context costs a read little more than context.Background.
//
// # Auto-batching
//
// gomemcache has no pipelining. With Options.AutoPipeline the cache coalesces
// the single-key reads (Get, Exists, GetVersion) of concurrent callers into
// one multi-key get per server, with the namespace generation key fetched
// once per batch. It batches only when reads are already in flight: each
// server has at most two batches in flight, a caller that finds fewer sends
// its read at once (a lone caller pays a lock, and with a cancellable context
// a hand-off to a goroutine, as without the option), and the reads that
// arrive meanwhile queue and go out together when a batch returns, up to 256
// keys per batch. There is no timer: the window is the round trip of the
// batch in flight. A caller whose context ends returns at once with the
// context's error, and a read still queued then is dropped from its batch
// before the batch is sent. Batches go through the per-server circuit
// breakers and the resend on a fresh connection described below; every caller
// of a failed batch gets the batch's error, wrapped as for a Get. Two callers
// of one key in one batch each get their own copy of the value. Writes,
// GetMany and the reads inside Increment, Expire, CompareAndDelete and
// CompareAndSwap are unchanged (gomemcache cannot pipeline them). Caches
// opened from a URL batch unless auto_pipeline=false; for New, set it when
// many goroutines read through one cache: on loopback it reads several times
// faster than plain gomemcache from 64 goroutines up, and a lone caller costs
// what it costs without it (see BENCHMARKS.md, "Memcached auto-batching").
//
// # Failures
//
// Errors carry their cause: a dead server's error wraps the dial error, so
// errors.Is(err, syscall.ECONNREFUSED) works, and the message says so.
//
// Every request goes through a circuit breaker (Options.BreakerThreshold,
// default 3, and Options.BreakerDuration, default 1s): after that many
// consecutive connection failures of a server (refused or timed-out dials,
// connections reset or closed, no reply within the client's Timeout; not
// the caller's context ending, and not the server's error replies), calls
// that need that server fail at once, without touching the network, with an
// error wrapping cachekit.ErrUnavailable and the last failure. After
// BreakerDuration one call goes through as a probe; its success closes the
// breaker. The breakers are per server when the cache knows the client's
// selector (caches opened from a URL, or Options.Selector), so one dead
// server of a pool leaves the keys of the others working; otherwise there is
// one breaker for the client. With a namespace kept under a single
// generation key, every call also needs the server that holds that key (see
// Pools and topology changes).
//
// A request that fails on a connection the server had closed (after a
// restart every pooled connection is dead) drops the client's idle
// connections and is resent once on a fresh one: reads always, writes only
// when the request surely never left. [LivenessDialer] (used by caches
// opened from a URL) checks a pooled connection before writing to it, so a
// dead one is found before the request leaves and writes are resent too;
// without it, a write on a dead connection fails with
// cachekit.ErrUnknownOutcome. A write whose request may have reached the
// server but whose reply was lost (the connection failed, or no reply
// within the client's Timeout) is never resent: its error wraps
// cachekit.ErrUnknownOutcome, and it was applied once or not at all.
// Increment, Add and Delete never turn a lost reply into a wrong number,
// a wrong ErrExists or a wrong count. A write that failed with the client's
// own Timeout against a stalled server may still be applied when the
// server resumes; its error says the outcome is unknown.
//
// # Batches
//
// GetMany is one multi-key get per server involved, sent concurrently, so
// one round trip. When some servers of a pool fail and others answer (the
// cache knowing the client's selector: a URL, or Options.Selector), it
// returns the values of the servers that answered with an error wrapping
// cachekit.ErrUnavailable and each failed server's error, naming those
// servers and how many keys were not read; their keys are absent from the
// map. When no key could be read, it fails as a whole, with a nil map. gomemcache has no multi-key set or delete, so SetMany and
// Delete send one request per key, up to Options.BatchConcurrency at a time;
// SetMany is not atomic. Exists fetches the value and discards it (memcached
// has no existence check that leaves the TTL alone).
package memcached
