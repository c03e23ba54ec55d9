package redis

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
	"weak"

	goredis "github.com/redis/go-redis/v9"
)

// Auto-pipelining (Options.AutoPipeline, URL auto_pipeline=true).
//
// Single-key commands go through go-redis's own AutoPipeliner, which
// coalesces the commands of concurrent callers into one pipeline per round
// trip: its deferred face (AsyncAutoPipeline) for callers that wait with a
// context that can be cancelled, its blocking face (AutoPipeline) for the
// others. The cache keeps its own rules on top of it:
//
//   - a lone caller is not pipelined: a call that finds no other call of
//     the cache in flight goes straight to the client (the pipeliner would
//     hand it to a goroutine of its own and back, which costs a lone caller
//     about 40% of its throughput); see apRoute;
//   - the pipeliner runs its batches on a context of its own, so the cache
//     waits for the result with the caller's context (bounded by Timeout),
//     and a hook on the client (guardHook) drops, right before a batch is
//     written, every command whose caller has stopped waiting or whose
//     context has ended: nothing is sent after the caller's context ended;
//   - a caller whose context can never be cancelled (context.Background,
//     the common case in workers) has only the cache's Timeout as a
//     deadline; on a client that puts deadlines on the socket, guardHook
//     gives the batch the earliest deadline of such callers in it, and they
//     wait for the batch alone, not in a select that also watches their
//     context: hundreds of callers woken by one batch otherwise queue on the
//     locks of both channels. The batch then ends by their deadline, as a
//     direct call would;
//   - a caller whose context ends after its command was handed to the
//     connection gets, for a write, an error wrapping
//     cachekit.ErrUnknownOutcome, and the cache's later writes wait until
//     that command has finished (the same gate as detached calls), so it
//     never lands after them; writes keep their noRetry marking, so the
//     pipeliner never resends them either.

// apOptions is the pipeliner configuration the cache asks for: one ordered
// stream of batches (MaxConcurrentBatches 1). Unordered only lets go-redis
// stripe its enqueue lock; every caller of the cache waits for its command
// before sending the next one, so each goroutine's commands still run in the
// order it sent them. A client whose deferred pipeliner already exists keeps
// its configuration (go-redis shares one per client).
func apOptions() *goredis.AutoPipelineOptions {
	return &goredis.AutoPipelineOptions{
		MaxBatchSize:         300,
		MaxConcurrentBatches: 1,
		Unordered:            true,
	}
}

// newAutoPipeliners returns the client's two AutoPipeliners, with the
// cache's guard hook installed on the client: the deferred face (async), for
// callers that wait with their context, and the blocking face (blocking),
// for callers whose context cannot be cancelled and who wait for their batch
// alone (it skips the deferred face's bookkeeping for readers of pending
// commands). Both are nil when the client has none (a Ring, or any other
// UniversalClient): the cache then sends every command directly.
func newAutoPipeliners(client goredis.UniversalClient) (async, blocking *goredis.AutoPipeliner) {
	switch client.(type) {
	case *goredis.Client, *goredis.ClusterClient:
	default:
		return nil, nil
	}
	async, err := client.AsyncAutoPipelineWithOptions(apOptions())
	if err != nil {
		return nil, nil
	}
	blocking, err = client.AutoPipelineWithOptions(&goredis.AutoPipelineOptions{MaxBatchSize: 300, MaxConcurrentBatches: 1})
	if err != nil {
		return nil, nil
	}
	installGuard(client)
	return async, blocking
}

// guardedClients records the clients that already carry guardHook, so that
// a client shared by many caches gets it once. Keys are weak pointers: the
// map does not keep a client alive, and an entry goes when its client does.
var guardedClients sync.Map

func installGuard(client goredis.UniversalClient) {
	switch cl := client.(type) {
	case *goredis.Client:
		addGuard(cl, client)
	case *goredis.ClusterClient:
		addGuard(cl, client)
	}
}

func addGuard[T any](p *T, client goredis.UniversalClient) {
	key := weak.Make(p)
	if _, loaded := guardedClients.LoadOrStore(key, struct{}{}); loaded {
		return
	}
	client.AddHook(guardHook{})
	runtime.AddCleanup(p, func(k weak.Pointer[T]) { guardedClients.Delete(k) }, key)
}

// States of a pipelined command.
const (
	cmdQueued  int32 = iota // handed to the pipeliner, not yet written
	cmdSending              // claimed by guardHook: being written, or written
	cmdDone                 // its batch has executed
	cmdDropped              // never written: its caller's context ended first
)

// guard is what the cache and guardHook share about one pipelined command.
type guard struct {
	route   *apRoute        // the cache's
	ctx     context.Context // the caller's context, bounded by the cache's Timeout
	state   atomic.Int32
	bounded bool // the caller waits for the batch alone: it must end by ctx's deadline
}

func (g *guard) guardState() *guard { return g }

// deadline is a bounded command's deadline: its context's.
func (g *guard) deadline() time.Time {
	dl, _ := g.ctx.Deadline()
	return dl
}

// claim decides, right before the command is written (now), whether it may
// go: not when its context has ended or its caller has given up on it, nor,
// for a bounded caller, once its deadline has passed (its context's timer
// may fire a little late, and a deadline in the past given to the batch
// would fail every command in it). It is idempotent.
func (g *guard) claim(now time.Time) bool {
	if g.ctx.Err() == nil && (!g.bounded || now.Before(g.deadline())) {
		if g.state.CompareAndSwap(cmdQueued, cmdSending) {
			return true
		}
	} else {
		g.state.CompareAndSwap(cmdQueued, cmdDropped)
	}
	return g.state.Load() == cmdSending
}

// claimBounded is claim for a bounded command, which also returns its
// deadline (read once: the batch's deadline is the earliest of them).
func (g *guard) claimBounded(now time.Time) (time.Time, bool) {
	dl := g.deadline()
	switch g.state.Load() {
	case cmdQueued:
	case cmdSending:
		return dl, true // claimed already
	default:
		return dl, false
	}
	if g.ctx.Err() == nil && now.Before(dl) {
		g.state.Store(cmdSending)
		return dl, true
	}
	g.state.Store(cmdDropped)
	return dl, false
}

// dropErr is the error a dropped command carries: its context's (which has
// ended, since only that drops a command), as a notSentError.
func (g *guard) dropErr() error {
	err := g.ctx.Err()
	switch {
	case err != nil:
	case g.bounded:
		err = context.DeadlineExceeded
	default:
		err = context.Canceled
	}
	return &notSentError{ctxErr: err}
}

// notSentError marks a command guardHook dropped. go-redis takes it for a
// reply of the server (it has the RedisError marker), so that the dropped
// command does not fail the commands queued after it, as a connection error
// would; the cache turns it back into the context's error.
type notSentError struct{ ctxErr error }

func (e *notSentError) Error() string { return "not sent: " + e.ctxErr.Error() }
func (e *notSentError) Unwrap() error { return e.ctxErr }
func (e *notSentError) RedisError()   {}

// guarded is a command wrapped for the pipeliner. direct is the command to
// send when the cache sends it straight to the client instead: the wrapped
// command itself, with a write's noRetry marking.
type guarded interface {
	goredis.Cmder
	guardState() *guard
	direct() goredis.Cmder
}

// The guarded command types embed the go-redis command by pointer, so every
// method go-redis calls on it (including its unexported ones) is the
// command's own; NoRetry keeps the write marking of noRetry* wrappers.

// guardedGet is a GET built for an auto-pipelining cache (see newGet): the
// command, its guard and its arguments are one allocation, so that the
// pipelined path allocates less than a direct call. The command is held by
// value: it is copied once, from the value NewStringCmd returns, before
// anything else can see it.
type guardedGet struct {
	goredis.StringCmd
	guard
	args [2]any
	key  string // args[1]'s string (see stringAny)
}

func (c *guardedGet) direct() goredis.Cmder { return &c.StringCmd }

type guardedString struct {
	*goredis.StringCmd
	guard
}

func (c *guardedString) direct() goredis.Cmder { return c.StringCmd }

type guardedInt struct {
	*goredis.IntCmd
	guard
	noRetry bool
}

func (c *guardedInt) NoRetry() bool { return c.noRetry }

func (c *guardedInt) direct() goredis.Cmder {
	if c.noRetry {
		return noRetryInt{c.IntCmd}
	}
	return c.IntCmd
}

type guardedStatus struct {
	*goredis.StatusCmd
	guard
	noRetry bool
}

func (c *guardedStatus) NoRetry() bool { return c.noRetry }

func (c *guardedStatus) direct() goredis.Cmder {
	if c.noRetry {
		return noRetryStatus{c.StatusCmd}
	}
	return c.StatusCmd
}

type guardedBool struct {
	*goredis.BoolCmd
	guard
	noRetry bool
}

func (c *guardedBool) NoRetry() bool { return c.noRetry }

func (c *guardedBool) direct() goredis.Cmder {
	if c.noRetry {
		return noRetryBool{c.BoolCmd}
	}
	return c.BoolCmd
}

// newGet returns GET key, and the form to hand to do: on an
// auto-pipelining cache, the command already wrapped for the pipeliner.
func (c *Cache) newGet(ctx context.Context, key string) (*goredis.StringCmd, goredis.Cmder) {
	if c.ap == nil {
		cmd := goredis.NewStringCmd(ctx, "get", key)
		return cmd, cmd
	}
	w := &guardedGet{key: key}
	w.args = [2]any{"get", stringAny(&w.key)}
	w.StringCmd = *goredis.NewStringCmd(ctx, w.args[:]...)
	return &w.StringCmd, w
}

// stringAny returns *p as an interface value that refers to *p itself:
// converting a string to an interface otherwise copies its header to an
// allocation of its own. *p must never change afterwards (an interface's
// value is immutable).
func stringAny(p *string) any {
	x := any("")
	(*[2]unsafe.Pointer)(unsafe.Pointer(&x))[1] = unsafe.Pointer(p)
	return x
}

// pipelinable reports whether cmd is a command the cache sends through the
// pipeliner: the single commands of Get, Set, Add, Delete, Exists,
// Increment and Expire (a Get's comes already wrapped, see newGet). MGET
// (GetMany) and every multi-command round trip stay as they are.
func pipelinable(cmd goredis.Cmder) bool {
	switch cmd.(type) {
	case *guardedGet, *goredis.StringCmd, *goredis.IntCmd, noRetryInt, noRetryStatus, noRetryBool, *goredis.BoolCmd:
		return true
	}
	return false
}

// guardCmd wraps cmd (pipelinable) for the pipeliner, unless it is wrapped
// already.
func guardCmd(ctx context.Context, cmd goredis.Cmder) guarded {
	var w guarded
	switch c := cmd.(type) {
	case guarded:
		w = c
	case *goredis.StringCmd:
		w = &guardedString{StringCmd: c}
	case *goredis.IntCmd:
		w = &guardedInt{IntCmd: c}
	case noRetryInt:
		w = &guardedInt{IntCmd: c.IntCmd, noRetry: true}
	case noRetryStatus:
		w = &guardedStatus{StatusCmd: c.StatusCmd, noRetry: true}
	case noRetryBool:
		w = &guardedBool{BoolCmd: c.BoolCmd, noRetry: true}
	case *goredis.BoolCmd:
		w = &guardedBool{BoolCmd: c}
	default:
		return nil
	}
	w.guardState().ctx = ctx
	return w
}

// unguarded is cmd as it goes straight to the client: a command wrapped in
// advance for the pipeliner (see newGet) without its wrapper.
func unguarded(cmd goredis.Cmder) goredis.Cmder {
	if gc, ok := cmd.(guarded); ok {
		return gc.direct()
	}
	return cmd
}

// guardHook is installed on clients used for auto-pipelining. It drops the
// cache's pipelined commands whose caller's context has ended before they
// are written, and marks the others whose callers wait on the deferred face
// done once their batch has executed (a bounded caller reads nothing but
// its command's result). Every other command passes through untouched.
type guardHook struct{}

func (guardHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (guardHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		gc, ok := cmd.(guarded)
		if !ok {
			return next(ctx, cmd)
		}
		g := gc.guardState()
		if g.route != nil {
			g.route.alone() // a batch of one
		}
		if !g.claim(time.Now()) {
			return g.dropErr()
		}
		if g.bounded {
			ctx = withBatchDeadline(ctx, g.deadline())
		}
		err := next(ctx, cmd)
		g.state.Store(cmdDone)
		return err
	}
}

func (guardHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		ours, dropped := 0, 0
		waited := false    // a command of the cache's whose caller reads its state
		var route *apRoute // the first of the cache's commands' route
		var deadline, now time.Time
		for _, cmd := range cmds {
			gc, ok := cmd.(guarded)
			if !ok {
				continue
			}
			g := gc.guardState()
			if ours == 0 {
				now = time.Now()
				route = g.route
			}
			ours++
			if g.bounded {
				if dl, ok := g.claimBounded(now); !ok {
					dropped++
				} else if deadline.IsZero() || dl.Before(deadline) {
					deadline = dl
				}
				continue
			}
			waited = true
			if !g.claim(now) {
				dropped++
			}
		}
		if ours == 0 {
			return next(ctx, cmds)
		}
		if route != nil {
			if ours == 1 {
				route.alone() // nobody else was calling
			} else {
				route.together()
			}
		}
		kept := cmds
		if dropped > 0 {
			kept = make([]goredis.Cmder, 0, len(cmds)-dropped)
			for _, cmd := range cmds {
				if gc, ok := cmd.(guarded); ok && gc.guardState().state.Load() == cmdDropped {
					cmd.SetErr(gc.guardState().dropErr())
					continue
				}
				kept = append(kept, cmd)
			}
		}
		var err error
		if len(kept) > 0 {
			if !deadline.IsZero() {
				ctx = withBatchDeadline(ctx, deadline)
			}
			err = next(ctx, kept)
		}
		if waited {
			// Only a caller on the deferred face reads the state (see
			// pipelined); the callers of the batch wake when this returns,
			// so nothing else is done here for bounded commands.
			for _, cmd := range kept {
				if gc, ok := cmd.(guarded); ok && !gc.guardState().bounded {
					gc.guardState().state.Store(cmdDone)
				}
			}
		}
		return err
	}
}

// batchDeadline is the batch's context with an earlier deadline: the one
// the socket gets on a client with ContextTimeoutEnabled. Nothing else of
// the batch's context changes.
type batchDeadline struct {
	context.Context
	deadline time.Time
}

func (b batchDeadline) Deadline() (time.Time, bool) { return b.deadline, true }

func withBatchDeadline(ctx context.Context, deadline time.Time) context.Context {
	if dl, ok := ctx.Deadline(); ok && !deadline.Before(dl) {
		return ctx
	}
	return batchDeadline{Context: ctx, deadline: deadline}
}

// guardFor wraps cmd (pipelinable) for the pipeliner, for a caller of the
// cache whose context, bounded by the cache's Timeout, is ctx. uncancelled
// says the caller's own context can never be cancelled: nothing but ctx's
// deadline can then end ctx, and on a client that puts deadlines on the
// socket the command is bounded: its caller waits for its batch alone, on
// the blocking face (see the rules at the top of this file).
func (c *Cache) guardFor(ctx context.Context, cmd goredis.Cmder, uncancelled bool) guarded {
	var w guarded
	var g *guard
	if get, ok := cmd.(*guardedGet); ok {
		// The common case, without guardCmd's search of the interfaces.
		w, g = get, &get.guard
		g.ctx = ctx
	} else {
		w = guardCmd(ctx, cmd)
		g = w.guardState()
	}
	g.route = &c.route
	if uncancelled && c.ctxAware {
		if _, ok := ctx.Deadline(); ok {
			g.bounded = true
		}
	}
	return w
}

// boundedErr is the error of a bounded command, as the blocking face
// returned it: a command guardHook dropped unsent reports its context's
// error.
func boundedErr(err error) error {
	if err == nil || err == goredis.Nil {
		return err
	}
	var ns *notSentError
	if errors.As(err, &ns) {
		return ns.ctxErr
	}
	return err
}

// pipelined sends w through the pipeliner, a write after the cache's
// abandoned writes have finished, and waits for its result: a bounded
// command on the blocking face, any other on the deferred face while ctx
// lasts (see the rules at the top of this file). exchange sends a bounded
// command itself when no abandoned write holds it back.
func (c *Cache) pipelined(ctx context.Context, kind opKind, w guarded) error {
	if kind == write {
		if err := c.gate.wait(ctx); err != nil {
			return err
		}
	}
	g := w.guardState()
	if g.bounded {
		return boundedErr(c.apBlocking.Process(ctx, w))
	}
	f := c.ap.Submit(ctx, w)
	err := f.WaitContext(ctx)
	if err == nil || err == goredis.Nil {
		return err
	}
	var ns *notSentError
	if errors.As(err, &ns) {
		return ns.ctxErr // dropped unsent
	}
	if ctx.Err() == nil {
		return err
	}
	// The context has ended: find out whether the command went out.
	if g.state.CompareAndSwap(cmdQueued, cmdDropped) || g.state.Load() == cmdDropped {
		return ctx.Err() // it never will: nothing was sent
	}
	if g.state.Load() == cmdDone {
		return f.Wait() // its batch ended at the same moment: keep the result
	}
	if kind == write {
		// Written, reply pending: later writes wait for it to finish.
		c.gate.add()
		go func() {
			_ = f.Wait()
			c.gate.release()
		}()
		return &abandonedError{ctxErr: ctx.Err()}
	}
	return ctx.Err()
}
