package redis

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// bound returns ctx bounded by the cache's timeout (ending at the earlier of
// ctx's deadline and the timeout from now), and the cancel func to call
// afterwards (nil when there is none).
//
// A context that can never end by itself (context.Background, or values on
// top of it: Done returns nil) gets a timer-backed deadline shared with the
// other calls starting within the same [slack] interval: creating a timer per
// call costs about as much as the rest of the cache's work. Such a deadline
// is at most slack late. A context whose own deadline is at most slack later
// than the timeout is used as it is.
func (c *Cache) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.timeout <= 0 {
		return ctx, nil
	}
	if dl, ok := ctx.Deadline(); ok {
		if time.Until(dl) <= c.timeout+c.slack {
			return ctx, nil
		}
		return context.WithTimeout(ctx, c.timeout)
	}
	if ctx.Done() != nil {
		return context.WithTimeout(ctx, c.timeout)
	}
	shared := c.sharedDeadline()
	if ctx == context.Background() {
		return shared, nil
	}
	return valuesFrom{Context: shared, values: ctx}, nil
}

// sharedTimer is a context ending at deadline, used by every call that
// starts early enough for it to be at most slack later than its own.
type sharedTimer struct {
	ctx    context.Context
	cancel context.CancelFunc // never called: the context ends at its deadline
	end    time.Duration      // the deadline, as time since clockBase
}

// clockBase is the origin of sharedTimer.end: time.Since reads only the
// monotonic clock, about half the cost of time.Now on every call.
var clockBase = time.Now()

// sharedDeadline returns a context that ends between c.timeout and
// c.timeout + c.slack from now.
func (c *Cache) sharedDeadline() context.Context {
	want := time.Since(clockBase) + c.timeout
	if s := c.shared.Load(); s != nil && s.end >= want {
		return s.ctx
	}
	now := time.Now()
	ctx, cancel := context.WithDeadline(context.Background(), now.Add(c.timeout+c.slack))
	c.shared.Store(&sharedTimer{ctx: ctx, cancel: cancel, end: now.Sub(clockBase) + c.timeout + c.slack})
	return ctx
}

// valuesFrom is a context whose deadline, Done and Err come from the
// embedded context and whose values come from another one.
type valuesFrom struct {
	context.Context
	values context.Context
}

func (v valuesFrom) Value(key any) any { return v.values.Value(key) }

// ended reports whether ctx is done, or its deadline has passed (a socket
// deadline set from it can fire a moment before its own timer does).
func ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// Detached calls.
//
// A client without ContextTimeoutEnabled ignores the context once it holds a
// connection, so the cache runs such a call on a goroutine of its own and
// returns when the context is done. Two rules keep that safe:
//
//   - nothing is sent after the context has ended: the goroutine checks the
//     context right before it hands the call to the client, and the client
//     itself gives up waiting for a connection when the context ends;
//   - an abandoned write (one whose context ended while the client still
//     had it) cannot land after a later write of the same cache: it is
//     counted in the cache's writeGate until its goroutine returns, and every
//     later write first waits for the gate to be empty (or for its own
//     context to end, in which case it sends nothing).

// detached call states.
const (
	callRunning int32 = iota
	callFinished
	callAbandoned
)

// abandonedError is the error of a write whose context ended while the
// client still had it: it may have been sent, and may yet be applied.
type abandonedError struct{ ctxErr error }

func (e *abandonedError) Error() string { return e.ctxErr.Error() }
func (e *abandonedError) Unwrap() error { return e.ctxErr }

// detached runs fn on its own goroutine and returns when it finishes or ctx
// is done, whichever is first (see "Detached calls" above).
func (c *Cache) detached(ctx context.Context, write bool, fn func(ctx context.Context) error) error {
	if write {
		if err := c.gate.wait(ctx); err != nil {
			return err
		}
	}
	var state atomic.Int32
	done := make(chan error, 1)
	go func() {
		var err error
		if err = ctx.Err(); err == nil {
			err = fn(ctx)
		}
		if !state.CompareAndSwap(callRunning, callFinished) {
			c.gate.release() // abandoned: later writes may go now
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	if !write {
		select {
		case err := <-done: // finished at the same moment: keep the result
			return err
		default:
			return ctx.Err()
		}
	}
	c.gate.add() // before the state changes, so no later write misses it
	if !state.CompareAndSwap(callRunning, callAbandoned) {
		c.gate.release()
		return <-done // finished at the same moment: keep the result
	}
	return &abandonedError{ctxErr: ctx.Err()}
}

// writeGate counts abandoned writes still running.
type writeGate struct {
	pending atomic.Int32 // n, for the lock-free fast path
	mu      sync.Mutex
	n       int
	idle    chan struct{} // closed when n drops to 0
}

func (g *writeGate) add() {
	g.mu.Lock()
	if g.n == 0 {
		g.idle = make(chan struct{})
	}
	g.n++
	g.pending.Store(int32(g.n))
	g.mu.Unlock()
}

func (g *writeGate) release() {
	g.mu.Lock()
	g.n--
	if g.n == 0 {
		close(g.idle)
	}
	g.pending.Store(int32(g.n))
	g.mu.Unlock()
}

// open reports whether no abandoned write is running: wait would return at
// once.
func (g *writeGate) open() bool { return g.pending.Load() == 0 }

// wait returns when no abandoned write is running, or with ctx's error when
// ctx ends first.
func (g *writeGate) wait(ctx context.Context) error {
	if g.pending.Load() == 0 {
		return nil
	}
	g.mu.Lock()
	if g.n == 0 {
		g.mu.Unlock()
		return nil
	}
	idle := g.idle
	g.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
