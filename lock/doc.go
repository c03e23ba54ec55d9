// Package lock provides leases on names in any cachekit cache: a distributed
// mutex with fencing tokens, in the manner of aiocache's RedLock (with its
// single-server semantics).
//
//	locker := lock.New(cache, &lock.Options{TTL: 30 * time.Second})
//	l, err := locker.Acquire(ctx, "invoice:42") // waits until held, or ctx is done
//	if err != nil { ... }
//	defer l.Release(ctx)
//	writeInvoice(ctx, l.Token()) // the resource rejects writes with a token older than one it has seen
//
// # How it works
//
// A lock on name is the key Prefix+name+":owner" (Prefix is "lock:" by
// default) holding a random 128-bit value that only its holder knows:
//
//   - Acquire and TryAcquire store it with the cache's atomic Add and the
//     lease's TTL, then take a fencing token by incrementing the companion
//     key Prefix+name+":fence".
//   - Extend sets a new TTL with CompareAndSwap(owner key, value, value);
//     Release deletes the key with CompareAndDelete(owner key, value).
//     Neither touches a lease that is no longer the holder's: they return
//     ErrLockLost instead.
//
// Over a cache that is a [cachekit.Versioner] (memory, Memcached), the
// lease is added with AddVersion, which also returns its version, and
// Extend and Release compare that version (SwapVersion, DeleteVersion)
// instead of the value: on Memcached one request each instead of a gets
// and a cas. When the version no longer matches (an Extend of the same
// Lock from another goroutine changed it) or the server gives none
// (memcached before 1.6), they compare the value, as above.
//
// An uncontended Acquire and Release is three cache calls: three round
// trips on Redis (SET NX, INCRBY, a Lua compare-and-delete); three
// requests on Memcached (a meta-protocol add that returns the lease's cas
// id, incr, and a meta-protocol delete on that cas id; four on a memcached
// without the meta protocol, whose CompareAndDelete is a gets and a cas).
// With Options.NoFence (for
// stampede locks on many names, which need no tokens) there is no fencing
// counter and no Increment: two calls. A waiting Acquire
// polls with Add, backing off exponentially with jitter from
// Options.RetryDelay to Options.MaxRetryDelay; it is not woken by a Release,
// so a lock changes hands up to MaxRetryDelay after it is released.
//
// Release needs a cache that implements [cachekit.CompareAndDeleter], and
// Extend one that implements [cachekit.CompareAndSwapper]. Every backend of
// this module implements both, and cachekit.WithHooks keeps them. Over a
// cache without CompareAndDelete, Acquire and TryAcquire fail with an
// error for which errors.Is(err, cachekit.ErrUnsupported) reports true,
// before taking anything; over one without CompareAndSwap, only Extend does.
//
// # Failed acquisitions, and Wait
//
// An acquisition that fails after its lease may have been stored (an Add
// whose reply was lost, so that its outcome is unknown, an Increment that
// failed, a lapsed acquisition) deletes that lease again, if it is still
// its own, so that the name is not locked until the TTL passes. Acquire
// and TryAcquire wait for that delete only while their ctx is live: once
// ctx has ended (typically, its deadline passed while the server was
// stuck) they return at once, with the cache's error (on a backend that
// honours ctx, one for which errors.Is(err, ctx.Err()) reports true, and
// cachekit.ErrUnknownOutcome when the Add's reply was lost), and the
// delete goes on in the background, for up to a second (a lease it fails
// to delete expires after its TTL).
// [Locker.Wait] returns when every such background delete has ended: call
// it before closing the cache, and at the end of tests that check for
// leaked goroutines.
//
// # What it guarantees, and what it does not
//
// A lock is a lease on one server: one Redis (on a Redis Cluster, the
// master of the lease key's slot; every call is a single-key operation),
// one Memcached server (the one the pool hashes the lease key to; if that
// server leaves the pool, the name hashes to another server, where it is
// free), or the memory of one process. While that server keeps the key, at
// most one Lock for a name exists whose lease has not expired. It is not Redlock: it does not take a majority of independent
// masters, so the failover of a Redis master that had not yet replicated the
// lease to its replica can hand the lock to a second holder.
//
// A lease ends after its TTL whether or not its holder is done. A holder
// that pauses longer than the TTL (a GC pause, a frozen VM, a process
// stopped by SIGSTOP, a slow network) loses the lock to the next process
// while it still believes it holds it; its next Extend or Release reports
// ErrLockLost, but writes it makes in between are not stopped by the lock.
// That is what fencing tokens are for: every acquisition of a name gets a
// token greater than all earlier ones (Lock.Token), the holder passes its
// token with each write, and the resource rejects a write whose token is
// lower than one it has already accepted. A resource that can compare a
// token (a database row with a version column, an object store with
// conditional writes) is thereby safe against a paused holder; one that
// cannot is protected only as long as holders finish within their TTL.
// Choose a TTL well above the longest critical section, and Extend long
// ones.
//
// Tokens grow as long as the companion key survives: it is written with no
// expiry, one small integer key per name. Clearing the cache's namespace,
// flushing the server, restarting it, or an eviction resets it, and tokens
// start again at 1. (A memcached restart also restarts its cas ids, the
// versions a lock there releases its lease by: a holder that lost its lease
// to the restart may, if its old cas id comes round again, release the next
// holder's lease.) Redis evicts keys without a TTL only under the allkeys-* maxmemory
// policies; Memcached evicts any key under memory pressure (LRU), and
// evicts lease keys too, which ends a lease early. Prefer Redis for locks
// that protect anything that matters; Memcached locks are fine to reduce
// duplicate work (a stampede lock), where losing one now and then only
// costs an extra computation. (Memcached rounds TTLs up to whole seconds,
// plus one: a lease there can outlive its TTL by up to two seconds, never
// the reverse.)
//
// An acquisition is checked against the local clock: if the Add and the
// Increment together took about as long as the TTL (more than the TTL less
// 1% and 2ms for clock drift), the lease may have expired before the token
// was taken, so that a later holder could have a smaller token; the
// acquisition is then given up (its lease deleted if still there): Acquire
// tries again, TryAcquire returns ErrLockLost.
package lock
