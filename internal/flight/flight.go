// Package flight runs one load per key for concurrent callers, like
// golang.org/x/sync/singleflight, with the cancellation rules a cache needs:
//
//   - each caller waits only as long as its own context allows, and leaving
//     never fails the callers that stay;
//   - the load runs on a context that keeps the first caller's values but
//     none of its cancellation, and is cancelled only when every caller has
//     gone, so nobody pays for work nobody waits for;
//   - a panic in the load reaches every caller as a *PanicError, and a load
//     that calls runtime.Goexit reaches every caller as ErrGoexit, with no
//     hang and no leaked goroutine;
//   - every load goroutine is tracked: Wait returns when they have all ended,
//     including loads that every caller has left.
package flight

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
)

// ErrGoexit is the error callers get when the load called runtime.Goexit
// (t.FailNow in a test's loader, say) instead of returning.
var ErrGoexit = errors.New("load called runtime.Goexit")

// PanicError is the error callers get when the load panicked.
type PanicError struct {
	Value any    // what the load passed to panic
	Stack []byte // the loading goroutine's stack at the panic
}

// Error reports the panic value and the stack, as singleflight does, so the
// origin of the panic is not lost when the error is logged.
func (p *PanicError) Error() string {
	return fmt.Sprintf("load panicked: %v\n\n%s", p.Value, p.Stack)
}

// Unwrap returns the panic value when it is an error.
func (p *PanicError) Unwrap() error {
	err, _ := p.Value.(error)
	return err
}

// Group deduplicates loads by key. The zero value is ready to use.
type Group[K comparable, V any] struct {
	mu      sync.Mutex
	calls   map[K]*call[V]
	running int        // load goroutines that have not ended
	idle    *sync.Cond // signalled when running drops to 0; on mu
}

type call[V any] struct {
	done    chan struct{}
	val     V
	err     error
	waiters int
	cancel  context.CancelFunc
}

// Do returns the result of fn for key, calling fn at most once for all the
// callers that ask for key while it runs. fn runs in a goroutine of its own.
// Do returns when fn finishes or when ctx is done, whichever comes first; in
// the second case it returns ctx's error. joined reports whether this caller
// joined a load another caller started.
func (g *Group[K, V]) Do(ctx context.Context, key K, fn func(context.Context) (V, error)) (v V, err error, joined bool) {
	if err := ctx.Err(); err != nil {
		return v, err, false
	}
	g.mu.Lock()
	c, joined := g.calls[key]
	if joined {
		c.waiters++
	} else {
		if g.calls == nil {
			g.calls = make(map[K]*call[V])
		}
		lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c = &call[V]{done: make(chan struct{}), waiters: 1, cancel: cancel}
		g.calls[key] = c
		g.running++
		go g.run(lctx, key, c, fn)
	}
	g.mu.Unlock()

	select {
	case <-c.done:
		return c.val, c.err, joined
	case <-ctx.Done():
		g.leave(key, c)
		var zero V
		return zero, ctx.Err(), joined
	}
}

// leave records that a caller stopped waiting. The last one to go cancels
// the load and forgets it, so a later caller starts afresh instead of
// joining a cancelled load.
func (g *Group[K, V]) leave(key K, c *call[V]) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c.waiters--
	if c.waiters > 0 {
		return
	}
	if g.calls[key] == c {
		delete(g.calls, key)
	}
	c.cancel()
}

func (g *Group[K, V]) run(ctx context.Context, key K, c *call[V], fn func(context.Context) (V, error)) {
	returned := false
	defer func() {
		if r := recover(); r != nil {
			var zero V
			c.val, c.err = zero, &PanicError{Value: r, Stack: debug.Stack()}
		} else if !returned {
			// Neither a return nor a panic: fn called runtime.Goexit, which
			// ends this goroutine after the deferred calls whatever they do.
			var zero V
			c.val, c.err = zero, ErrGoexit
		}
		c.cancel()
		g.mu.Lock()
		if g.calls[key] == c {
			delete(g.calls, key)
		}
		close(c.done)
		g.running--
		if g.running == 0 && g.idle != nil {
			g.idle.Broadcast()
		}
		g.mu.Unlock()
	}()
	c.val, c.err = fn(ctx)
	returned = true
}

// Wait returns when every load the group has started has ended, including
// loads that every caller has left (their context is cancelled, but fn may
// not watch it). Loads started while Wait waits are waited for too. Wait
// may be called any number of times, concurrently with Do.
func (g *Group[K, V]) Wait() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.running > 0 {
		if g.idle == nil {
			g.idle = sync.NewCond(&g.mu)
		}
		g.idle.Wait()
	}
}

// Forget makes the next Do for key start a new load even if one is running.
// Callers already waiting keep waiting for the running one.
func (g *Group[K, V]) Forget(key K) {
	g.mu.Lock()
	delete(g.calls, key)
	g.mu.Unlock()
}
