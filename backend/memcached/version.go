package memcached

import (
	"context"
	"fmt"
	"time"

	"github.com/cachekit/cachekit"
)

// Versioned access: memcached's cas ids are the versions of
// cachekit.Versioner. See "Versions" in the package documentation.

// GetVersion returns the value stored under key and its version, memcached's
// cas id, or an error wrapping cachekit.ErrNotFound on a miss. It is Get's
// request (a gets, with a namespace in the same multi-key get as the
// namespace's generation, coalesced with other reads under
// Options.AutoPipeline): one round trip. A server running with CAS
// disabled (memcached -C) reports 0 for every item; GetVersion then fails
// with an error wrapping cachekit.ErrUnsupported. It implements
// cachekit.Versioner.
func (c *Cache) GetVersion(ctx context.Context, key string) ([]byte, uint64, error) {
	const op = "GetVersion"
	if err := cachekit.CheckKey(key); err != nil {
		return nil, 0, cachekit.WrapError(op, key, err)
	}
	if err := c.enter(ctx); err != nil {
		return nil, 0, cachekit.WrapError(op, key, err)
	}
	defer c.leave()
	it, err := c.getItem(ctx, key)
	if err != nil {
		return nil, 0, cachekit.WrapError(op, key, err)
	}
	if it == nil {
		return nil, 0, cachekit.WrapError(op, key, cachekit.ErrNotFound)
	}
	if it.CasID == 0 {
		return nil, 0, cachekit.WrapError(op, key, &unsupportedError{why: "the server returned no cas id (CAS disabled, -C)"})
	}
	v := it.Value
	if v == nil {
		v = []byte{}
	}
	return v, it.CasID, nil
}

// AddVersion stores value under key with ttl (0: no expiry) only if key is
// absent, as Add does, and returns the version of the value it stored; a
// present key is an error wrapping cachekit.ErrExists. It sends one meta
// set in add mode (ms with ME and c, which returns the new cas), with the
// TTL and flags Set sends; with a namespace, like Add, it uses the
// generation this cache last saw within Options.GenerationTTL (asking the
// server first otherwise) and asks again before it reports ErrExists. A
// reply that is lost is not resent: the error wraps
// cachekit.ErrUnknownOutcome. It implements cachekit.Versioner.
func (c *Cache) AddVersion(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	const op = "AddVersion"
	if err := c.checkWrite(key, value, ttl); err != nil {
		return 0, cachekit.WrapError(op, key, err)
	}
	if err := c.enter(ctx); err != nil {
		return 0, cachekit.WrapError(op, key, err)
	}
	defer c.leave()
	exp, abs := expiration(ttl, time.Now())
	value = detach(ctx, value)
	var version uint64
	err := c.run(ctx, writes{key: key}, func(cl *call) error {
		stored, err := c.addLoop(cl, key, func(sk string) (bool, error) {
			r, err := c.metaSet(cl, sk, value, abs, exp, 0)
			switch {
			case err != nil:
				return false, err
			case r.code == "NS":
				return false, nil
			case r.code != "HD":
				return false, unexpectedCode("ms", r)
			}
			version = r.cas
			return true, storedVersion(r)
		})
		if err == nil && !stored {
			err = cachekit.ErrExists
		}
		return err
	})
	if err != nil {
		return 0, cachekit.WrapError(op, key, err)
	}
	return version, nil
}

// SwapVersion stores value under key with ttl (0: no expiry) only while
// key's version is still version, and returns the new version and true; a
// key with another version, or none, is left as it is and reports
// (0, false, nil). It sends one meta set that compares the cas id (ms with
// C<version> and c), with the TTL and flags Set sends; with a namespace it
// uses the generation this cache last saw within Options.GenerationTTL
// (asking the server first otherwise), as Set does: a swap racing another
// process's Clear within that window may land in the cleared generation
// and be lost, as a Set would. A reply that is lost is not resent: the
// error wraps cachekit.ErrUnknownOutcome. It implements cachekit.Versioner.
func (c *Cache) SwapVersion(ctx context.Context, key string, version uint64, value []byte, ttl time.Duration) (uint64, bool, error) {
	const op = "SwapVersion"
	if err := c.checkWrite(key, value, ttl); err != nil {
		return 0, false, cachekit.WrapError(op, key, err)
	}
	if err := c.enter(ctx); err != nil {
		return 0, false, cachekit.WrapError(op, key, err)
	}
	defer c.leave()
	if version == 0 {
		return 0, false, nil // no stored value has version 0
	}
	exp, abs := expiration(ttl, time.Now())
	value = detach(ctx, value)
	var newVersion uint64
	err := c.run(ctx, writes{key: key}, func(cl *call) error {
		s, err := c.writeState(cl, c.slotFor(key))
		if err != nil {
			return err
		}
		r, err := c.metaSet(cl, serverKey(s.keyPrefix(), key), value, abs, exp, version)
		if err != nil {
			return err
		}
		switch r.code {
		case "HD":
			newVersion = r.cas
			return storedVersion(r)
		case "EX", "NF":
			return nil
		}
		return unexpectedCode("ms", r)
	})
	if err != nil {
		return 0, false, cachekit.WrapError(op, key, err)
	}
	return newVersion, newVersion != 0, nil
}

// DeleteVersion deletes key only while its version is still version, and
// reports whether it did; a key with another version, or none, is left as
// it is and reports false. It sends one meta delete that compares the cas
// id (md with C<version>). With a namespace it uses the generation this
// cache last saw within Options.GenerationTTL (asking the server first
// otherwise): a cas id names one item, so an item of a generation cleared
// meanwhile is the one the version was read from, and the live key of the
// new generation is never touched. A reply that is lost is not resent: the
// error wraps cachekit.ErrUnknownOutcome. It implements cachekit.Versioner.
func (c *Cache) DeleteVersion(ctx context.Context, key string, version uint64) (bool, error) {
	const op = "DeleteVersion"
	if err := cachekit.CheckKey(key); err != nil {
		return false, cachekit.WrapError(op, key, err)
	}
	if err := c.enter(ctx); err != nil {
		return false, cachekit.WrapError(op, key, err)
	}
	defer c.leave()
	if version == 0 {
		return false, nil // no stored value has version 0
	}
	var deleted bool
	err := c.run(ctx, writes{key: key}, func(cl *call) error {
		s, err := c.writeState(cl, c.slotFor(key))
		if err != nil {
			return err
		}
		r, err := c.metaDelete(cl, serverKey(s.keyPrefix(), key), version)
		if err != nil {
			return err
		}
		switch r.code {
		case "HD":
			deleted = true
			return nil
		case "EX", "NF":
			return nil
		}
		return unexpectedCode("md", r)
	})
	if err != nil {
		return false, cachekit.WrapError(op, key, err)
	}
	return deleted, nil
}

// storedVersion checks the cas id of an HD reply: the value is stored, so
// a reply without one leaves the caller with no version of what it wrote.
func storedVersion(r metaReply) error {
	if r.cas == 0 {
		return fmt.Errorf("%w: memcached stored the value but returned no cas id (CAS disabled?)", cachekit.ErrUnknownOutcome)
	}
	return nil
}

// unexpectedCode reports a meta reply code a request cannot get.
func unexpectedCode(cmd string, r metaReply) error {
	return unknownOutcome(&replyError{line: r.code + " (to " + cmd + ")"})
}
