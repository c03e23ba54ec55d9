package redis

import (
	"context"
	"errors"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
)

// getPiped is Get for the common case of an auto-pipelining cache under
// concurrency: a caller whose context can never be cancelled and has no
// deadline (context.Background, or values on top of it), a client that puts
// deadlines on the socket, a breaker that is closed and has counted no
// failure, and calls in piped mode (see apRoute). The GET is then bounded
// (see guardFor): it goes to the blocking face with the cache's shared
// Timeout deadline and waits for its batch alone. getPiped applies the rules
// exchange applies in that case, with less work per call: it reads neither
// the breaker's lock nor the pipeliners' closed flags (a closed pipeliner
// fails the command with goredis.ErrClosed, the error a direct call on the
// closed client returns, and settle translates it the same way), and it
// returns without exchange's frame on the stack of every caller parked in the
// pipeliner.
//
// ok is false when the call must take Get's general path; nothing has been
// sent then. Get is expected to try getPiped first on an auto-pipelining
// cache.
func (c *Cache) getPiped(ctx context.Context, key string) (b []byte, ok bool, err error) {
	if c.ap == nil || !c.ctxAware || c.timeout <= 0 || ctx.Done() != nil || !c.route.piped() ||
		c.closed.Load() || cachekit.CheckKey(key) != nil {
		return nil, false, nil
	}
	if _, has := ctx.Deadline(); has {
		return nil, false, nil
	}
	k := c.key(key)
	h := &c.health
	if c.nodes != nil {
		h = c.nodes.forKey(ctx, k)
	}
	if !h.clean() {
		return nil, false, nil // the breaker has a say: exchange asks it
	}
	// bound's deadline for a context that cannot end by itself.
	bctx := c.sharedDeadline()
	if ctx != context.Background() {
		bctx = valuesFrom{Context: bctx, values: ctx}
	}
	cmd, sent := c.newGet(ctx, k)
	err = boundedErr(c.apBlocking.Process(bctx, c.guardFor(bctx, sent, true)))
	if err == nil || err == goredis.Nil {
		h.succeeded()
	} else {
		// exchange's error path: one more try, straight to the client, for
		// a read whose connection dropped; then translation and the
		// breaker's bookkeeping.
		if connDropped(err) && bctx.Err() == nil {
			err = c.attempt(bctx, read, unguarded(sent), nil)
		}
		err = c.settle(ctx, bctx, read, h, err)
	}
	if err != nil {
		if errors.Is(err, goredis.Nil) {
			err = cachekit.ErrNotFound
		}
		return nil, true, cachekit.WrapError("Get", key, err)
	}
	b, _ = cmd.Bytes() // a copy of the reply
	if b == nil {
		b = []byte{}
	}
	return b, true, nil
}
