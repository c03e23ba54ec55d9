package memcached

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit"
)

// Clear removes every key of the cache's namespace by moving the namespace
// to a new generation (one incr of its generation key on every server, sent
// concurrently); the old keys become unreachable at once and memcached
// evicts them in time. Other namespaces are untouched. A server that cannot
// be reached keeps its generation, and so its keys: Clear still moves the
// others, then fails with an error that names every server it could not
// clear and wraps their errors (cachekit.ErrUnavailable for a server whose
// breaker is open). A server that restarted comes back empty; one that was
// only unreachable serves its old keys again until a Clear succeeds, so
// retry a Clear that failed. Without a namespace, Clear flushes every server
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
		return c.bumpAll(cl)
	})
	return cachekit.WrapError(op, "", err)
}

// bumpAll moves every generation slot to a new generation, concurrently,
// and returns the errors of the slots it could not move.
func (c *Cache) bumpAll(cl *call) error {
	if len(c.slots) == 1 {
		return c.bump(cl, c.slots[0])
	}
	errs := make([]error, len(c.slots))
	var wg sync.WaitGroup
	for i, slot := range c.slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.bump(cl, slot); err != nil {
				errs[i] = &serverError{addr: slot.addr, err: err}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// bump moves one generation slot to a new generation.
func (c *Cache) bump(cl *call, slot *genSlot) error {
	old := slot.cur.Load()
	var g uint64
	err := c.do(cl, slot.key, true, func() error {
		var err error
		g, err = c.client.Increment(slot.key, 1)
		return err
	})
	if errors.Is(err, memcache.ErrCacheMiss) {
		_, err = c.newGeneration(cl, slot, old)
		return err
	}
	if err != nil {
		return err
	}
	slot.cur.Store(c.newGenState(g))
	return nil
}

// serverError is the error of one server of a pool.
type serverError struct {
	addr string
	err  error
}

func (e *serverError) Error() string {
	return fmt.Sprintf("memcached: clearing the namespace on server %s: %v", e.addr, e.err)
}

func (e *serverError) Unwrap() error { return e.err }
