package cachekit

import (
	"context"
	"time"
)

// Versioner is an optional interface of a [Cache] whose backend stamps every
// write of a key with a version (memcached's compare-and-swap id): it reads a
// value together with its version, and writes or deletes on condition that
// the version is unchanged, in one request each. [CompareAndSwapper] and
// [CompareAndDeleter] must read the value again to compare it where the
// backend has no compare-by-value of its own (two requests on Memcached);
// with a version in hand the compare is the server's. [Typed.Update] and
// package lock use it when the cache has it: an uncontended Update is then a
// GetVersion and a SwapVersion, and a lock's release a DeleteVersion.
//
// A version is an opaque number, never 0 for a stored value. Every write
// that stores key (Set, SetMany, Add, Increment, a swap, an Expire that
// rewrites the value) gives it a new version, and a key deleted and stored
// again never gets back a version it had: so a version that still matches
// proves the value is the one read with it. (A backend whose server starts
// counting again after a restart, as memcached does, can repeat versions
// across that restart, when every value it held is gone.)
//
// A miss (absent or expired key) is an error for which errors.Is(err,
// ErrNotFound) reports true from GetVersion, and (0, false, nil) from
// SwapVersion and DeleteVersion; so is a version that does not match. Keys,
// values, TTLs, a closed cache and a done context are checked as Get, Set
// and Add check them, and errors name the operation ("GetVersion",
// "AddVersion", "SwapVersion", "DeleteVersion"). A backend that can keep
// the promise only with some servers (memcached before 1.6 has no meta
// protocol) returns an error for which errors.Is(err, ErrUnsupported)
// reports true, having written nothing; callers then fall back to
// CompareAndSwap and CompareAndDelete, which it also implements.
//
// The memory and Memcached backends implement it; Redis does not need it,
// as its CompareAndSwap and CompareAndDelete are one round trip already (a
// Lua script). Every wrapper of this module forwards it, so wrapping a cache
// never hides it. Hooks see its methods as the operations they are a form
// of (GetVersion an [OpGet], AddVersion an [OpAdd], SwapVersion an
// [OpCompareAndSwap], DeleteVersion an [OpCompareAndDelete]), for which
// [Op.Versioned] reports true. Check for it with a type assertion:
//
//	if v, ok := c.(cachekit.Versioner); ok { b, ver, err = v.GetVersion(ctx, key) }
type Versioner interface {
	CompareAndSwapper
	CompareAndDeleter

	// GetVersion is Get that also returns the version of the value.
	GetVersion(ctx context.Context, key string) (value []byte, version uint64, err error)

	// AddVersion is Add (ErrExists when key holds a value) that also
	// returns the version of the value it stored.
	AddVersion(ctx context.Context, key string, value []byte, ttl time.Duration) (version uint64, err error)

	// SwapVersion stores value under key with ttl only while key's version
	// is still version, and returns the version of the value it stored and
	// true; a key with another version, or none, is left as it is and
	// reports (0, false, nil).
	SwapVersion(ctx context.Context, key string, version uint64, value []byte, ttl time.Duration) (newVersion uint64, swapped bool, err error)

	// DeleteVersion deletes key only while its version is still version,
	// and reports whether it did; a key with another version, or none, is
	// left as it is and reports false with a nil error.
	DeleteVersion(ctx context.Context, key string, version uint64) (deleted bool, err error)
}
