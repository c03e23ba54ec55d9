package memcached

import (
	"context"
	"errors"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit"
)

// Clear removes every key of the cache's namespace by moving the namespace
// to a new generation (one incr of its generation key); the old keys become
// unreachable at once and memcached evicts them in time. Other namespaces
// are untouched. Without a namespace, Clear flushes every server
// (flush_all), removing everything on them, but only with
// Options.AllowFlush (URL allow_flush=true); otherwise it returns an error
// wrapping cachekit.ErrFlushNotAllowed and sends nothing.
func (c *Cache) Clear(ctx context.Context) error {
	const op = "Clear"
	if c.nsPart == "" && !c.allowFlush {
		return cachekit.WrapError(op, "", cachekit.ErrFlushNotAllowed)
	}
	if err := c.enter(ctx); err != nil {
		return cachekit.WrapError(op, "", err)
	}
	defer c.leave()
	err := c.run(ctx, writes{all: true}, func(cl *call) error {
		if c.nsPart == "" {
			// flush_all goes to every server in one client call; it is
			// not subject to the per-server breakers.
			if err := cl.begin(true); err != nil {
				return err
			}
			err := c.client.FlushAll()
			if classify(err) == lost {
				return unknownOutcome(err)
			}
			return err
		}
		old := c.gen.Load()
		var g uint64
		err := c.do(cl, c.genKey, true, func() error {
			var err error
			g, err = c.client.Increment(c.genKey, 1)
			return err
		})
		if errors.Is(err, memcache.ErrCacheMiss) {
			_, err = c.newGeneration(cl, old)
			return err
		}
		if err != nil {
			return err
		}
		c.gen.Store(c.newGenState(g))
		return nil
	})
	return cachekit.WrapError(op, "", err)
}
