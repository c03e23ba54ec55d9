package cachekit

import (
	"context"
	"time"
)

// Cache is the byte-level contract that every backend implements, and so does
// every wrapper (hooks, tiers). Application code usually reaches it through
// [Typed]; backend authors implement it and prove it with the cachetest
// conformance suite.
//
// All methods must be safe for concurrent use. Every method that takes a
// context must honour it: when ctx is done before the operation completes, the
// method must return an error for which errors.Is(err, ctx.Err()) reports true
// (context.Canceled or context.DeadlineExceeded), including when the deadline
// fires inside the backend's client. (One exception, which the Redis backend
// documents: a request already sent when its context is cancelled, rather
// than reaching its deadline, runs until its reply or the backend's own
// timeout, and reports its own outcome.)
//
// Keys are arbitrary non-empty strings of at most [MaxKeySize] bytes; a backend
// that cannot store some keys natively (Memcached and spaces, say) must encode
// them so that no two distinct keys collide. Any other key must be rejected with
// an error for which errors.Is(err, ErrInvalidKey) reports true.
//
// Values are opaque bytes. A backend must never alias them: changing a slice
// passed to Set, or returned by Get, must not change what is stored.
//
// TTLs: 0 means "no expiry"; a negative TTL must be rejected with an error for
// which errors.Is(err, ErrInvalidTTL) reports true; a positive TTL shorter than
// the backend's resolution must be rounded up, never down to 0.
//
// After Close, every method must return an error for which
// errors.Is(err, ErrClosed) reports true.
type Cache interface {
	// Get returns the value stored under key. On a miss (absent or expired) it
	// must return an error for which errors.Is(err, ErrNotFound) reports true.
	// An empty stored value is a hit and returns a non-nil, empty slice.
	Get(ctx context.Context, key string) ([]byte, error)

	// GetMany returns the values of the keys that are present; missing keys
	// are simply absent from the map (a miss is not an error). It must use one
	// round trip where the backend allows it. Duplicate keys are allowed.
	// On error the map may hold a partial result: a backend spread over
	// several servers may return the values it read from the servers that
	// answered, with an error saying what it could not read (the keys it
	// could not read are absent, as misses are); callers that need every
	// key must treat any error as a failure.
	GetMany(ctx context.Context, keys []string) (map[string][]byte, error)

	// Set stores value under key, replacing any previous value and TTL. A ttl
	// of 0 means no expiry.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error

	// SetMany stores every item with the same ttl, in one round trip where the
	// backend allows it. Every key gets the TTL.
	SetMany(ctx context.Context, items map[string][]byte, ttl time.Duration) error

	// Add stores value under key only if key is absent, atomically. If key is
	// present it must return an error for which errors.Is(err, ErrExists)
	// reports true and leave the stored value unchanged.
	Add(ctx context.Context, key string, value []byte, ttl time.Duration) error

	// Delete removes keys and reports how many of them existed. Deleting a
	// missing key is not an error.
	Delete(ctx context.Context, keys ...string) (int, error)

	// Exists reports whether key is present and unexpired.
	Exists(ctx context.Context, key string) (bool, error)

	// Increment adds delta (which may be negative) to the integer stored under
	// key, atomically, and returns the new value. A missing key starts at 0 and
	// gets no expiry; an existing key keeps its TTL. Values are stored as
	// base-10 ASCII, so Get returns e.g. "42". If the stored value is not a
	// base-10 int64, or the result would overflow int64, it must return an
	// error for which errors.Is(err, ErrNotInteger) reports true.
	Increment(ctx context.Context, key string, delta int64) (int64, error)

	// Expire sets a new TTL on an existing key and reports whether the key
	// existed. A ttl of 0 removes any expiry (persist).
	Expire(ctx context.Context, key string, ttl time.Duration) (bool, error)

	// Clear removes every key in this cache's namespace and nothing else.
	// Backends document what Clear does when no namespace is set.
	Clear(ctx context.Context) error

	// Close releases the cache's resources. A cache built by Open owns and
	// closes its client; one built by a backend's New with a caller's client
	// leaves that client open. Close is idempotent.
	Close() error
}

// MaxKeySize is the longest key, in bytes, that every backend accepts.
const MaxKeySize = 4096

// CheckKey reports whether key is acceptable to every backend: non-empty and
// at most [MaxKeySize] bytes. It returns an error for which
// errors.Is(err, ErrInvalidKey) reports true otherwise. Backends call it before
// touching their storage.
func CheckKey(key string) error {
	switch {
	case key == "":
		return ErrInvalidKey
	case len(key) > MaxKeySize:
		return ErrInvalidKey
	}
	return nil
}

// CheckTTL returns an error for which errors.Is(err, ErrInvalidTTL) reports
// true when ttl is negative.
func CheckTTL(ttl time.Duration) error {
	if ttl < 0 {
		return ErrInvalidTTL
	}
	return nil
}

// CompareAndDeleter is an optional interface of a [Cache]: CompareAndDelete
// deletes key only while it still holds exactly old, atomically, and reports
// whether it deleted it. A missing key, or one holding anything else, is left
// as it is and reports false with a nil error. It is what lease and lock
// releases need: delete my token, never somebody else's.
//
// Every backend of this module implements it (Redis with a Lua script,
// Memcached with gets/cas, memory atomically) and every wrapper of this
// module forwards it, so wrapping a cache never hides it. Check for it with a
// type assertion, as database/sql does for its drivers' optional interfaces:
//
//	if cad, ok := c.(cachekit.CompareAndDeleter); ok { ... }
type CompareAndDeleter interface {
	CompareAndDelete(ctx context.Context, key string, old []byte) (deleted bool, err error)
}

// CompareAndSwapper is an optional interface of a [Cache]: CompareAndSwap
// stores new under key with ttl only while key still holds exactly old,
// atomically, and reports whether it did. An old of nil means "only while key
// is absent" (as Add, but reporting false instead of ErrExists). A key holding
// anything else, or missing when old is not nil, is left as it is and reports
// false with a nil error. It is the primitive of read-modify-write
// ([Typed.Update]) and of lock extension.
//
// Every backend of this module implements it (Redis with a Lua script,
// Memcached with gets/cas, memory atomically) and every wrapper of this module
// forwards it.
type CompareAndSwapper interface {
	CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (swapped bool, err error)
}
