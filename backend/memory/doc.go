// Package memory is cachekit's in-process backend: a bounded, concurrent
// cache with per-entry TTLs, built on [github.com/maypok86/otter/v2].
//
// It needs no server, so it suits tests, single-process programs and a fast
// local tier in front of a shared cache:
//
//	c := memory.New(&memory.Options{MaxBytes: 256 << 20})
//	defer c.Close()
//
// # Bounds and eviction
//
// The cache is bounded by the heap its entries hold ([Options.MaxBytes],
// 64 MiB by default). Each entry weighs the allocations of its key and value
// as the Go allocator makes them (rounded up to its size class, and above
// 32 KiB to whole 8 KiB pages: a 32,769-byte value weighs 40,960) plus
// [EntryOverhead] bytes for the engine's node and hash table. Measured
// after a GC, a full cache holds between 0.87 and 1.01 times MaxBytes of
// heap for values from 10 bytes to 1 MiB. When the total would exceed
// MaxBytes, the entries least likely to be used again are evicted
// (W-TinyLFU, which keeps frequently used entries through scans); the 1 MiB
// case holds less because 15 such entries leave a gap the next one does
// not fit in. [Options.MaxEntries] optionally
// bounds the number of entries as well. A value longer than
// [Options.MaxValueSize] (MaxBytes/4 by default) is rejected with an error
// for which errors.Is(err, cachekit.ErrTooLarge) reports true, so that one
// entry cannot flush the cache.
//
// # Expiry
//
// TTLs have nanosecond resolution: an entry with a 30ms TTL is a miss 30ms
// after it was written, whether or not the engine has removed it yet; every
// read checks the entry's deadline. Expired entries that nobody reads are
// removed within a few seconds by a background clean-up (one goroutine per
// storage, stopped by Close), or earlier by the eviction policy.
//
// # Values
//
// Values are copied on the way in and on the way out: changing a slice passed
// to Set, or returned by Get, never changes what is stored. The copy returned
// by Get is the only allocation of a hit (a cache made with WithNamespace in
// another namespace also allocates its prefixed key).
//
// # Namespaces
//
// Every cache made by [New] has storage of its own: two caches made by New
// never see each other's keys, whatever their namespaces. [Options.Namespace]
// names the keyspace of the cache within that storage. [Cache.WithNamespace]
// returns another cache that shares the storage (and its MaxBytes budget) in
// another namespace; caches on one storage with the same namespace see the
// same keys, and caches with different namespaces never do.
//
// Clear removes the keys of the cache's own namespace and nothing else. An
// empty namespace is a namespace like any other: Clear on a cache without a
// namespace removes the keys written without a namespace and leaves those of
// other namespaces alone. When no cache in another namespace was ever made
// on the storage, Clear empties the storage at once; otherwise it scans the
// storage for the namespace's keys, in time proportional to the number of
// entries.
//
// # URLs
//
// A blank import registers the schemes mem and memory with
// [cachekit.DefaultURLMux], so that [cachekit.Open] can open the cache from
// configuration:
//
//	import _ "github.com/cachekit/cachekit/backend/memory"
//
//	c, err := cachekit.Open(ctx, "mem://?max_bytes=64MiB&namespace=app")
//
// The URL has no host and no path. Its query parameters, all optional, are:
//
//	max_bytes       Options.MaxBytes: a size such as 64MiB, 500MB or 1048576
//	max_entries     Options.MaxEntries: a non-negative integer
//	max_value_size  Options.MaxValueSize: a size such as 1MiB
//	namespace       Options.Namespace
//
// The query is parsed strictly (internal/urlparam, shared with the other
// backends): a malformed pair (a ';' or a bad %-escape), a parameter given
// twice and an unknown parameter are errors wrapping cachekit.ErrInvalidURL,
// and the error for an unknown one lists the valid ones. A cache opened from
// a URL owns its storage.
//
// # Compare-and-delete
//
// [Cache.CompareAndDelete] implements [cachekit.CompareAndDeleter]: it
// deletes a key only while it holds exactly the given bytes, atomically, as
// lease and lock releases need.
//
// # Compare-and-swap
//
// [Cache.CompareAndSwap] implements [cachekit.CompareAndSwapper]: it stores
// a new value and TTL only while the key holds exactly the given old bytes
// (a nil old: only while the key is absent or expired), atomically with
// respect to every other write of the storage, as read-modify-write and lock
// extension need. A non-nil empty old matches a stored empty value, never a
// missing key.
//
// # Shared reads
//
// [Cache.GetShared] implements [cachekit.SharedGetter]: it is Get without
// the copy, returning the stored bytes themselves, read-only, with no
// allocation (for the keys of the storage's own namespace). No write ever
// changes stored bytes in place (Set, SetMany, Add, CompareAndSwap store a
// copy of their value, Increment a new one, Expire keeps the bytes as they
// are), so the bytes GetShared returns stay as they were for as long as the
// caller keeps them. [cachekit.Typed] reads with it, decoding without a
// copy.
//
// # Closing
//
// Close on a cache made by New (or opened from a URL) releases the storage:
// afterwards every method of it, and of every cache made from it with
// WithNamespace, returns an error for which errors.Is(err, cachekit.ErrClosed)
// reports true. Close on a cache made with WithNamespace closes only that
// cache and leaves the storage to its owner.
package memory
