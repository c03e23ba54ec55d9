// Package tracker runs goroutines in the background and counts them, so
// that a Wait method can return once they have all ended.
package tracker

import (
	"context"
	"sync"
)

// Tracker counts the goroutines it runs and waits for them. Unlike a
// sync.WaitGroup, Go may run concurrently with Wait: a goroutine started
// while Wait waits is waited for too. The zero value is ready to use.
type Tracker struct {
	mu   sync.Mutex
	n    int
	idle *sync.Cond // on mu, made on first use
}

// Go runs f on a goroutine of its own, counted until f returns.
func (t *Tracker) Go(f func()) {
	t.mu.Lock()
	t.n++
	t.mu.Unlock()
	go func() {
		defer t.done()
		f()
	}()
}

// Run runs f as Go does and waits for it to return, but only while ctx is
// live: when ctx ends first, Run returns and f goes on in the background.
func (t *Tracker) Run(ctx context.Context, f func()) {
	done := make(chan struct{})
	t.Go(func() {
		defer close(done)
		f()
	})
	select {
	case <-done:
	case <-ctx.Done():
	}
}

func (t *Tracker) done() {
	t.mu.Lock()
	t.n--
	if t.n == 0 && t.idle != nil {
		t.idle.Broadcast()
	}
	t.mu.Unlock()
}

// Wait returns when no goroutine that Go or Run started is running.
func (t *Tracker) Wait() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.n > 0 {
		if t.idle == nil {
			t.idle = sync.NewCond(&t.mu)
		}
		t.idle.Wait()
	}
}
