package memory

import (
	"context"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/cachekit/cachekit"
)

// Versions ([cachekit.Versioner]).
//
// Every write stores a new entry. Plain writes (Set, SetMany, Add,
// Increment, CompareAndSwap) store it without a version (0), so that they
// pay nothing for versions; the first GetVersion of such an entry gives it
// one, from the storage's counter, by storing the same entry again with it.
// AddVersion and SwapVersion store theirs with a version already. A version
// is never given out twice by one storage, and every write replaces the
// entry, so a version that still matches proves that nobody wrote the key
// since it was read. Expire keeps the value and its version.

// nextVersion returns a version no entry of the storage has had.
func (s *store) nextVersion() uint64 { return s.versions.Add(1) }

// GetVersion returns a copy of the value stored under key and its version,
// with the errors Get returns (named "GetVersion"). It implements
// [cachekit.Versioner].
func (c *Cache) GetVersion(ctx context.Context, key string) ([]byte, uint64, error) {
	if err := c.checkOpen(); err != nil {
		return nil, 0, cachekit.WrapError("GetVersion", key, err)
	}
	if err := cachekit.CheckKey(key); err != nil {
		return nil, 0, cachekit.WrapError("GetVersion", key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, cachekit.WrapError("GetVersion", key, err)
	}
	e, ok := c.get(key)
	if ok && e.ver == 0 {
		// Give the entry a version, unless a write replaced it meanwhile:
		// then read what that write stored.
		e, ok = c.versioned(key)
	}
	if !ok {
		return nil, 0, cachekit.WrapError("GetVersion", key, cachekit.ErrNotFound)
	}
	return clone(e.data), e.ver, nil
}

// versioned returns the live entry under key, with a version given to it if
// it had none.
func (c *Cache) versioned(key string) (entry, bool) {
	var out entry
	live := false
	c.s.c.Compute(c.key(key), func(e entry, found bool) (entry, otter.ComputeOp) {
		switch {
		case !found:
			return e, otter.CancelOp
		case !c.s.live(e):
			return e, otter.InvalidateOp
		}
		live = true
		if e.ver != 0 {
			out = e
			return e, otter.CancelOp
		}
		e.ver = c.s.nextVersion()
		out = e
		return e, otter.WriteOp
	})
	return out, live
}

// AddVersion is Add that returns the version of the value it stored. It
// implements [cachekit.Versioner].
func (c *Cache) AddVersion(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	if err := c.checkSet(ctx, key, value, ttl); err != nil {
		return 0, cachekit.WrapError("AddVersion", key, err)
	}
	e := entry{data: clone(value), exp: c.s.deadline(ttl)}
	var ver uint64
	c.s.c.Compute(c.key(key), func(old entry, found bool) (entry, otter.ComputeOp) {
		if found && c.s.live(old) {
			return old, otter.CancelOp
		}
		e.ver = c.s.nextVersion()
		ver = e.ver
		return e, otter.WriteOp
	})
	if ver == 0 {
		return 0, cachekit.WrapError("AddVersion", key, cachekit.ErrExists)
	}
	return ver, nil
}

// SwapVersion stores a copy of value under key with the given TTL (0: no
// expiry) only while key is present, unexpired and still has the version
// given, atomically, and returns the new version and true; otherwise it
// leaves the key as it is and returns (0, false, nil). The key, TTL and
// value are validated as Set validates them. It implements
// [cachekit.Versioner].
func (c *Cache) SwapVersion(ctx context.Context, key string, version uint64, value []byte, ttl time.Duration) (uint64, bool, error) {
	if err := c.checkSet(ctx, key, value, ttl); err != nil {
		return 0, false, cachekit.WrapError("SwapVersion", key, err)
	}
	next := entry{data: clone(value), exp: c.s.deadline(ttl), ver: c.s.nextVersion()}
	if !c.ifVersion(key, version, next, otter.WriteOp) {
		return 0, false, nil
	}
	return next.ver, true, nil
}

// DeleteVersion deletes key only while it is present, unexpired and still
// has the version given, atomically, and reports whether it did. It
// implements [cachekit.Versioner].
func (c *Cache) DeleteVersion(ctx context.Context, key string, version uint64) (bool, error) {
	if err := c.checkOpen(); err != nil {
		return false, cachekit.WrapError("DeleteVersion", key, err)
	}
	if err := cachekit.CheckKey(key); err != nil {
		return false, cachekit.WrapError("DeleteVersion", key, err)
	}
	if err := ctx.Err(); err != nil {
		return false, cachekit.WrapError("DeleteVersion", key, err)
	}
	return c.ifVersion(key, version, entry{}, otter.InvalidateOp), nil
}

// ifVersion replaces the entry under key with next (op WriteOp), or removes
// it (op InvalidateOp), only while it is live and has the version given,
// atomically, and reports whether it did. An expired entry is removed, as
// a read would treat it as gone.
func (c *Cache) ifVersion(key string, version uint64, next entry, op otter.ComputeOp) bool {
	done := false
	c.s.c.Compute(c.key(key), func(e entry, found bool) (entry, otter.ComputeOp) {
		switch {
		case !found:
			return e, otter.CancelOp
		case !c.s.live(e):
			return e, otter.InvalidateOp
		case version == 0 || e.ver != version:
			return e, otter.CancelOp
		}
		done = true
		return next, op
	})
	return done
}
