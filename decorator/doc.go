// Package decorator memoizes Go functions through a cachekit cache: it is
// aiocache's @cached, @cached_stampede and @multi_cached, with the
// resilience FusionCache and sturdyc users ask for.
//
//	getUser := decorator.Cached(users, loadUser, &decorator.Options[int]{Name: "user"})
//	u, err := getUser(ctx, 42) // same signature as loadUser
//
// [Cached] returns a function with fn's signature, so call sites don't
// change; [New] returns a [Func] whose Call is that function and whose
// Invalidate, Refresh and Key act on one argument. [CachedMany] and
// [NewMany] do the same for batch functions of the form
// fn(ctx, []K) (map[K]V, error). The cache is a [cachekit.Typed], whose
// serializer encodes the values and whose TTL is the default one.
//
// # What is stored
//
// Successful results, zero values included; fn's errors are returned (the
// same error value) and never stored. Options.SkipCache leaves some results
// out, Options.TTL and Options.TTLFunc set the TTL (default: the Typed's),
// and Options.NegativeTTL remembers "not found" for a while: for Cached,
// an error matching Options.NegativeError (later calls return
// NegativeError itself); for CachedMany, an argument fn's map leaves out.
//
// # Keys
//
// Each decorated function has a key space: Options.Name, or by default the
// function's symbol name ("example.com/app/users.Load"). A function literal
// or a generic instance has no stable symbol name, so it needs a Name
// (Cached panics without one). The key of an argument is the escaped name,
// ':' and a canonical, injective encoding of the argument, which is the
// same in every process and run and readable in a cache browser:
//
//	string, named string    user:s:42
//	signed, unsigned ints   user:i:-7  user:u:7
//	bool, float             user:b:true  user:f:1.5   (-0 is 0)
//	struct, array, any      user:v:{s3:a:b,i2;,}  user:v:[i1;,i2;,]  user:v:T6:strings1:x
//
// In the composite form every string carries its length and every value its
// type tag, and an interface carries its dynamic type's package path and
// name, so two different arguments never share a key ("a:b" and
// struct{"a", "b"} don't, nor 1 and int64(1) in an any). Pointers,
// channels and unsafe pointers compare by address, which is not stable
// across processes: a key type containing one is rejected when the function
// is decorated (an interface holding one, when the key is made, with
// cachekit.ErrInvalidKey); use Options.KeyFunc for those, or to choose
// your own keys (then the key is name ':' KeyFunc's string). A key longer
// than cachekit.MaxKeySize-1 bytes becomes name '#' and the SHA-256 of its
// encoding. In a name, '%', ':', '#' and '!' are percent-escaped, so no key
// of one function equals a key of another.
//
// # Stored format
//
// With none of fail-safe, early refresh or negative caching on, the stored
// value is plain: exactly the Typed's encoding of the value, which
// Typed.Get reads too. With any of them on, it is a versioned envelope:
// the magic bytes "\xC1CKD" (0xC1 starts no JSON or MessagePack document),
// a version, flags, the time it was stored, its logical expiry, the end of
// its fail-safe window and how long fn took, then the Typed's encoding.
// The physical TTL is the logical TTL plus Options.FailSafeMaxStale. Each
// reader decodes in its own format only: an envelope reader that finds
// plain bytes, or a plain reader that finds an envelope (or a plain value
// starting with the magic, under a pass-through serializer), treats them as
// undecodable: a miss that is reported to OnError and overwritten by the
// next load. Logical expiry uses the writers' wall clocks, so processes
// sharing a cache should keep their clocks in sync.
//
// # Cache trouble is not the caller's trouble
//
// A cache read that fails or times out (Options.CacheTimeout), or a value
// that does not decode, makes the decorated function call fn and return
// its result; the error goes to Options.OnError (and undecodable values
// emit a cachekit.EventDecodeError). A failed write is reported the same
// way. Options.FailFast returns read errors to the caller instead.
//
// The caller never waits for a cache write: fn's value is returned as soon
// as fn returns, and the value is stored in the background (see Background
// work). So a frozen or dead cache costs a caller one failed read, bounded
// by Options.CacheTimeout when set and by the backend's own operation
// timeout otherwise, plus fn's time.
//
// # Stampedes
//
// In a process, concurrent misses for one key share one call of fn. Each
// caller waits only as long as its own ctx allows, and leaving never fails
// the others; fn's ctx keeps the first caller's values but not its
// cancellation, and is cancelled only when every caller waiting for it has
// gone. A panic in fn reaches every waiter as an error for which
// errors.Is(err, cachekit.ErrLoaderPanic) reports true, with no hang and no
// leaked goroutine. A load that starts while the write of another load's
// value of the key is still on its way takes that value instead of calling
// fn; and when such a write ended after the caller's read began, the load
// looks at the cache once more before calling fn. So a caller who missed
// just as another load stored the value does not run fn again, and a cold
// miss is one cache read (one miss to the stats hooks), not two.
//
// Across processes, Options.Lease adds a lease, a [lock.Lock] of the
// key: the process that wins it (an atomic Add of the key's lease key with
// a random owner value) runs fn; the others poll the cache with backoff
// and jitter until the value appears, trying to win the lease only when
// there is no value and no lease, so N processes missing one key run fn
// once. A holder that dies releases by the lease's expiry
// (Options.LeaseTTL). The holder releases, after its value is stored, with
// Lock.Release: the cache's cachekit.CompareAndDeleter deletes the lease
// only while it still holds the holder's value, so a holder whose lease
// expired while fn ran never deletes the lease another process has won
// since (it reports lock.ErrLockLost to Options.OnError instead). Every
// backend of this module implements CompareAndDelete and every wrapper of
// one (WithHooks, the local tier) forwards it.
//
// A foreign cache without CompareAndDelete (or a wrapper of one that hides
// it) cannot release a lease atomically, and lock.Locker refuses it. The
// decorator then takes the same lease with Add and releases it by Get,
// compare and Delete, skipped in the last tenth of LeaseTTL, and tells
// OnError once per decorated function (an error wrapping
// cachekit.ErrUnsupported). That release
// has a race: if the lease expires between the Get and the Delete and
// another process wins it in between, its lease is deleted, and a third
// process may run fn too. Forward CompareAndDelete to close it.
//
// The lease key of a data key is the escaped name, "!", the rest of the
// data key, and ":owner" ("name!:..." or "name!#...", then ":owner"); when
// that would be longer than cachekit.MaxKeySize, the rest is replaced by
// "=" and its hex SHA-256. The decorator's leases take no fencing tokens
// (lock.Options.NoFence): they only keep processes from duplicating work,
// and leave no key behind once released or expired.
//
// # Fail-safe, timeouts and early refresh
//
// With Options.FailSafeMaxStale, a value outlives its TTL by that much as
// a stale value: when fn fails and a stale value exists, the stale value is
// returned (cachekit.EventStaleServed) and stored again as fresh for
// Options.FailSafeThrottle, so that fn is retried at most once per
// interval, in every process, until the stale window ends. A caller that
// hangs up is not fn failing: when fn returns a context error because
// every caller waiting for it has gone, nothing is re-stored and no
// EventLoadError is emitted.
//
// Options.SoftTimeout returns the stale value when fn takes longer; fn runs
// on in the background and stores its result. Options.HardTimeout always
// returns after that long: the stale value if one exists, else an error
// wrapping [ErrHardTimeout]. With either set, fn is not cancelled when its
// callers leave, only after Options.BackgroundTimeout.
//
// Options.RefreshAhead (a fraction of the TTL) and Options.RefreshBeta
// (probabilistic early expiration, Vattani et al., VLDB 2015) refresh a
// hot key in the background before it expires, one refresh per key per
// process, so that a hot key never goes cold. A refresh stores its result
// only if the key still holds the value it refreshed: one deleted
// meanwhile (by Invalidate, or by anyone, in any process) stays deleted.
// Between that check and the write there remains a window of one round
// trip in which a delete from another process can be lost; deletes through
// Invalidate in the same process are excluded completely.
//
// # Invalidate and Refresh
//
// [Func.Invalidate] deletes the values of some arguments; loads of those
// arguments that were running meanwhile in this process don't store their
// (possibly older) results, and later calls start new loads. Writes of
// those arguments already on their way are waited for before the delete,
// so none lands after Invalidate returns. No lock is held across a cache
// operation: a slow Delete holds up only its caller. [Func.Refresh] calls
// fn now and stores its result before returning.
//
// # Local tier
//
// When the Typed has a local tier (cachekit.TypedOptions.Local), the
// decorated functions read and write through it, and a hit is served from
// process memory: no cache operation, no decode, and for an argument of a
// scalar type (a string, a number, a bool) no allocation (the keys of
// recent such arguments are remembered; a composite argument or
// Options.KeyFunc costs the key's allocations). A call that does not find
// its key there reads the cache as before and keeps what it read; a load
// keeps the value it stored.
// Hits and misses of the tier are reported as cachekit.EventLocalHit and
// EventLocalMiss; [CachedMany] serves the keys held in memory and reads
// only the others, in one GetMany.
//
// In the plain format the local entries are the Typed's own: a value
// loaded by the decorated function is a local hit for Typed.Get of its key,
// and a value written by Typed.Set is one for the function. In the
// envelope format (fail-safe, early refresh, negative caching) the
// function keeps the decoded value together with its envelope, in entries
// of its own that Typed.Get never returns (it reads the cache, as without a
// local tier). Every decision is taken from the envelope's header when the
// entry is read, exactly as for a value read from the cache: a value past
// its TTL is stale (fn is called; fail-safe may serve it), a remembered
// "not found" is returned until NegativeTTL ends, a hit may start an early
// refresh, and a value re-stored by fail-safe is served (and reported
// stale) for FailSafeThrottle. The early refresh's check that the cache
// still holds the value it refreshes reads the cache, as before.
//
// A local entry lives at most cachekit.LocalOptions.TTL, and never longer
// than the value's TTL: in the plain format, the TTL the function stores it
// with (Options.TTL, TTLFunc, or the Typed's; the cache does not tell how
// much of it is left, so a value read from the cache may outlive its
// remote copy by up to that much; TTLFunc and SkipCache are called with a
// value read from the cache too, and a value they would not store is not
// kept locally), in the envelope format the end of its
// fail-safe window (its physical expiry). With LocalOptions.Copy, each hit
// decodes a fresh value from the bytes kept beside it.
//
// Writes go through Typed.Cache(): each drops the key from this process's
// local tier and is published on the Typed's Backplane, so that every
// other Typed on it (in this process or another) drops the key too; this
// holds for loads, fail-safe's re-stores, [Func.Refresh] and
// [Func.Invalidate]. A value is kept locally only if no write or
// invalidation of its key (from this process or, by the Backplane, from
// another) came between the moment it was known to be current (before the
// cache read, or around the write) and the moment it is kept. Writes made
// elsewhere reach the local tier only through the Backplane, with the
// delays and bounds the Typed documents. Typed.Close empties the tier;
// the decorated functions then read the cache on every call.
//
// The lease (Options.Lease) works as without a local tier: waiters poll
// the cache, not the tier. Its keys are written to the cache below the
// Typed's wrapper: they are never held locally, so their writes are not
// published, and a load publishes one invalidation, its value's.
//
// # Background work
//
// The cache writes of loaded values (and the lease releases after them),
// early refreshes, and runs of fn that outlive their callers run in
// goroutines that [Func.Wait] and [ManyFunc.Wait] wait for. A write is
// bounded by Options.CacheTimeout when set; without it, its context has no
// deadline, so the backend applies its own operation timeout (the URL's
// timeout), and it is cancelled after Options.BackgroundTimeout in any
// case. A run of fn is bounded by BackgroundTimeout (fn must honour its ctx
// for that bound to hold). The decorated functions have no Close: call
// Wait before closing the cache (a write still on its way then fails with
// cachekit.ErrClosed, reported to OnError), and at the end of a test.
//
// # Events
//
// The decorated functions emit, through [cachekit.Emit] on the Typed's
// cache: EventLoad and EventLoadError for each run of fn, EventStampedeJoin
// for a caller that waited for another's load (in this process or, with
// the lease, another), EventStaleServed, EventEarlyRefresh and
// EventDecodeError; with a local tier, EventLocalHit and EventLocalMiss for
// each key looked up there.
package decorator
