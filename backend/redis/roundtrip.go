package redis

import (
	"context"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/internal/breaker"
)

// Every operation reaches the server through do (one command) or run (any
// number of commands in one round trip). Both apply, in this order:
//
//   - the circuit breaker: while it is open the call fails at once with an
//     error wrapping cachekit.ErrUnavailable and the last failure;
//   - the deadline: the cache's Timeout bounds the call (see bound), and for
//     a client that ignores contexts the call runs detached (see detached);
//   - the route: with Options.AutoPipeline, a single-key command that finds
//     other calls of the cache in flight goes through go-redis's
//     AutoPipeliner (see pipelined in autopipeline.go), any other straight
//     to the client;
//   - the retry rule: a read whose connection dropped is tried once more
//     while its context lasts; a write is never resent, by the cache or by
//     go-redis (write commands are wrapped in noRetry), and a write that
//     failed after it may have been sent reports cachekit.ErrUnknownOutcome;
//   - error translation (settle) and the breaker's bookkeeping.

// opKind says whether a round trip may change data.
type opKind bool

const (
	read  opKind = false
	write opKind = true
)

// do sends one command. Write commands must be wrapped with noRetry. On a
// cluster it answers to the breaker of the master of its first key's slot.
func (c *Cache) do(ctx context.Context, kind opKind, cmd goredis.Cmder) error {
	h := &c.health
	if c.nodes != nil {
		h = c.nodes.forKey(ctx, firstKey(cmd))
	}
	return c.exchange(ctx, kind, h, nil, cmd, nil)
}

// run performs one round trip: fn issues the command(s) with the context it
// is given. Write commands must be wrapped with noRetry. It answers to the
// whole client's breaker; see runKey, runNode and runSlots for the round
// trips that answer to one cluster master's.
func (c *Cache) run(ctx context.Context, kind opKind, fn func(ctx context.Context) error) error {
	return c.exchange(ctx, kind, &c.health, nil, nil, fn)
}

// runKey is run for a round trip about key alone: on a cluster it answers
// to the breaker of the master of key's slot.
func (c *Cache) runKey(ctx context.Context, kind opKind, key string, fn func(ctx context.Context) error) error {
	h := &c.health
	if c.nodes != nil {
		h = c.nodes.forKey(ctx, key)
	}
	return c.exchange(ctx, kind, h, nil, nil, fn)
}

// runNode is run for a round trip to one node of a cluster (Clear's walk):
// it answers to that node's breaker.
func (c *Cache) runNode(ctx context.Context, kind opKind, node *goredis.Client, fn func(ctx context.Context) error) error {
	h := &c.health
	if c.nodes != nil && node != nil {
		h = c.nodes.forAddr(node.Options().Addr)
	}
	return c.exchange(ctx, kind, h, nil, nil, fn)
}

// runSlots is run for a pipeline of commands of several slots, which fn
// sends with execRedirected(ctx, t, ...): on a cluster each command answers
// to the breaker of its slot's master (t is then not nil), so one master's
// failures never open the breaker of another.
func (c *Cache) runSlots(ctx context.Context, kind opKind, fn func(ctx context.Context, t *slotTarget) error) error {
	if c.nodes == nil {
		return c.exchange(ctx, kind, &c.health, nil, nil, func(ctx context.Context) error { return fn(ctx, nil) })
	}
	t := &slotTarget{caller: ctx}
	return c.exchange(ctx, kind, nil, t, nil, func(ctx context.Context) error { return fn(ctx, t) })
}

// exchange runs one round trip answering to the breaker h, or, with t, to
// the breakers execRedirected picks per command.
func (c *Cache) exchange(ctx context.Context, kind opKind, h *health, t *slotTarget, cmd goredis.Cmder, fn func(ctx context.Context) error) error {
	if h != nil {
		if err := h.allow(); err != nil {
			if c.nodes != nil {
				// The node may have been replaced by now (a replica
				// promoted): a reload would show it.
				c.reloadSlots()
			}
			return err
		}
	}
	bctx, cancel := c.bound(ctx)
	var err error
	if c.ap != nil && cmd != nil && pipelinable(cmd) {
		// Auto-pipelining, but not for a lone caller (see apRoute).
		piped := c.route.piped()
		entered := !piped
		if entered {
			piped = c.route.enter() || c.apAlways
		}
		switch {
		case !piped || c.ap.IsClosed() || c.apBlocking.IsClosed():
			err = c.attempt(bctx, kind, unguarded(cmd), nil)
		case kind == write && !c.gate.open():
			err = c.pipelined(bctx, kind, c.guardFor(bctx, cmd, ctx.Done() == nil))
		default:
			w := c.guardFor(bctx, cmd, ctx.Done() == nil)
			if w.guardState().bounded {
				// The batch ends by the deadline (see guardHook), so the
				// call does. It waits in this frame, not in pipelined's:
				// the garbage collector scans the stacks of the hundreds
				// of callers parked here frame by frame, and each frame
				// fewer is measurably less work for it.
				err = boundedErr(c.apBlocking.Process(bctx, w))
			} else {
				err = c.pipelined(bctx, kind, w)
			}
		}
		if entered {
			c.route.leave()
		}
	} else {
		err = c.attempt(bctx, kind, cmd, fn)
	}
	if err != nil && kind == read && connDropped(err) && bctx.Err() == nil && (t == nil || !t.refused) {
		// A read is safe to resend; a pooled connection the server had
		// closed (a restart, an idle timeout) fails this way once. The
		// second try goes straight to the client.
		err = c.attempt(bctx, kind, unguarded(cmd), fn)
	}
	if t != nil && t.refused {
		// An open breaker of one of the masters: nothing was sent.
		if cancel != nil {
			cancel()
		}
		return err
	}
	err = c.settle(ctx, bctx, kind, h, err)
	if cancel != nil {
		cancel()
	}
	return err
}

func (c *Cache) attempt(ctx context.Context, kind opKind, cmd goredis.Cmder, fn func(ctx context.Context) error) error {
	if c.ctxAware || ctx.Done() == nil {
		if fn != nil {
			return fn(ctx)
		}
		return c.client.Process(ctx, cmd)
	}
	if fn == nil {
		fn = func(ctx context.Context) error { return c.client.Process(ctx, cmd) }
	}
	return c.detached(ctx, kind == write, fn)
}

// settle translates the error of a round trip run under bctx (ctx bounded
// by the cache's timeout) and reports its outcome to the breaker h (none
// when h is nil: execRedirected has reported it per command).
func (c *Cache) settle(ctx, bctx context.Context, kind opKind, h *health, err error) error {
	if err == nil || err == goredis.Nil || isServerError(err) {
		if h != nil {
			h.succeeded()
		}
		return err
	}
	if c.closed.Load() && isClientClosed(err) {
		if h != nil {
			h.ignored()
		}
		if kind == write && !unsent(err) {
			// Close cut the connection under the write: it may have
			// been applied.
			err = &causeError{sentinel: cachekit.ErrUnknownOutcome, err: err}
		}
		return &causeError{sentinel: cachekit.ErrClosed, err: err}
	}
	err = contextError(bctx, err)
	if h != nil {
		switch outcome(ctx, bctx, err) {
		case breaker.Failure:
			h.failed(err)
			c.reloadSlots()
		default:
			h.ignored()
		}
	}
	if kind == write && !unsent(err) {
		err = &causeError{sentinel: cachekit.ErrUnknownOutcome, err: err}
	}
	return err
}

// outcome says what a failed round trip's error err (translated by
// contextError) tells the breaker: ctx is the caller's context, bctx the
// same bounded by the cache's timeout.
func outcome(ctx, bctx context.Context, err error) breaker.Outcome {
	switch {
	case ended(ctx):
		// The caller's own cancellation or deadline: it says nothing
		// about the server.
		return breaker.Ignore
	case ended(bctx) || connFailure(err):
		return breaker.Failure
	default:
		return breaker.Ignore
	}
}

// reloadSlots asks a cluster client to reload its slot map after a
// connection failure, at most once per reloadEvery: a node that stopped
// answering may have been replaced (a replica promoted after its master
// died), and go-redis would otherwise learn it only from its periodic reload.
// The reload runs in the background (ReloadState), never on the caller's
// time.
func (c *Cache) reloadSlots() {
	if c.reloadEvery <= 0 {
		return
	}
	now := time.Now().UnixNano()
	last := c.lastReload.Load()
	if now-last < int64(c.reloadEvery) || !c.lastReload.CompareAndSwap(last, now) {
		return
	}
	if cl, ok := c.client.(*goredis.ClusterClient); ok {
		cl.ReloadState(context.Background())
	}
}

// Write commands are wrapped so that go-redis never resends them: a command
// whose reply was lost may have been applied, and resending it would apply
// it twice (or report ErrExists for the caller's own SET NX). go-redis asks
// every command whether it may be retried (Cmder.NoRetry) in its retry loops,
// on standalone, Sentinel, Cluster and Ring clients and in pipelines; each
// wrapper holds a single pointer, so wrapping allocates nothing.

type noRetryStatus struct{ *goredis.StatusCmd }

func (noRetryStatus) NoRetry() bool { return true }

type noRetryBool struct{ *goredis.BoolCmd }

func (noRetryBool) NoRetry() bool { return true }

type noRetryInt struct{ *goredis.IntCmd }

func (noRetryInt) NoRetry() bool { return true }

// The breaker's bookkeeping. Allow and Done take the breaker's lock, which
// every call of the cache would otherwise take twice: with auto-pipelining,
// hundreds of callers woken by one batch then queue on it. While the breaker
// is closed and has counted no failure, Allow lets every call through and
// Done(Success) and Done(Ignore) change nothing, so the cache skips them:
// breakerHint knows the breaker is in that state when no Done(Failure) has
// begun since a Done(Success) that saw none begin.
type breakerHint struct {
	failures atomic.Uint64 // Done(Failure) calls begun
	clean    atomic.Uint64 // 1 + failures as of the last clean Done(Success); 0: none yet
}

// health is one circuit breaker with its hint: the whole client's
// (Cache.health), or one cluster master's (see nodeHealth).
type health struct {
	b    *breaker.Breaker // nil: disabled
	hint breakerHint
}

func (h *health) clean() bool {
	return h.b == nil || h.hint.clean.Load() == h.hint.failures.Load()+1
}

func (h *health) allow() error {
	if h.clean() {
		return nil
	}
	return h.b.Allow()
}

func (h *health) succeeded() {
	if h.clean() {
		return
	}
	seen := h.hint.failures.Load()
	h.b.Done(breaker.Success, nil)
	if h.hint.failures.Load() == seen {
		h.hint.clean.Store(seen + 1)
	}
}

func (h *health) ignored() {
	if !h.clean() {
		h.b.Done(breaker.Ignore, nil)
	}
}

func (h *health) failed(err error) {
	if h.b == nil {
		return
	}
	h.hint.failures.Add(1)
	h.b.Done(breaker.Failure, err)
}

// record reports one outcome to h.
func (h *health) record(o breaker.Outcome, err error) {
	switch o {
	case breaker.Success:
		h.succeeded()
	case breaker.Failure:
		h.failed(err)
	default:
		h.ignored()
	}
}

// apRoute decides, for an auto-pipelining cache, whether a call goes
// through the pipeliner or straight to the client: a lone caller goes
// direct, with a plain call's latency; concurrent callers share pipelines.
//
// In direct mode every call counts itself in flight (enter, leave); one that
// finds another in flight switches to piped mode and is pipelined. In piped
// mode calls only read the mode, so that hundreds of concurrent callers do
// not all write one counter; guardHook switches back to direct mode when
// apAloneBatches batches in a row held a single command of the cache:
// nobody else was calling meanwhile. Each counter has a cache line of its
// own, so that neither slows down reads of the Cache's other fields.
type apRoute struct {
	_        [64]byte
	inflight atomic.Int64 // direct-mode calls in flight
	_        [56]byte
	pipe     atomic.Bool
	singles  atomic.Int32 // batches of one in a row, in piped mode
	_        [56]byte
}

// apAloneBatches is how many batches of a single command in a row switch an
// auto-pipelining cache back to direct calls.
const apAloneBatches = 4

func (r *apRoute) piped() bool { return r.pipe.Load() }

// enter counts a direct-mode call in and reports whether others are in
// flight (it then switches to piped mode). Every enter needs a leave.
func (r *apRoute) enter() bool {
	if r.inflight.Add(1) > 1 {
		if !r.pipe.Load() {
			r.pipe.Store(true)
		}
		return true
	}
	return false
}

func (r *apRoute) leave() { r.inflight.Add(-1) }

// alone records a batch holding one command of the cache.
func (r *apRoute) alone() {
	if r.pipe.Load() && r.singles.Add(1) >= apAloneBatches {
		r.pipe.Store(false)
		r.singles.Store(0)
	}
}

// together records a batch holding several commands of the cache.
func (r *apRoute) together() {
	if r.singles.Load() != 0 {
		r.singles.Store(0)
	}
}
