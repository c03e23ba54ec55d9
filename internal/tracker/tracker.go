// Package tracker counts goroutines running in the background, so that a
// Wait method can return once they have all ended.
package tracker

import "sync"

// Tracker counts running goroutines and waits for them. Unlike a
// sync.WaitGroup, Add may run concurrently with Wait: a goroutine started
// while Wait waits is waited for too. The zero value is ready to use.
type Tracker struct {
	mu   sync.Mutex
	n    int
	idle *sync.Cond // on mu, made on first use
}

// Add counts one more running goroutine.
func (t *Tracker) Add() {
	t.mu.Lock()
	t.n++
	t.mu.Unlock()
}

// Done counts one goroutine fewer.
func (t *Tracker) Done() {
	t.mu.Lock()
	t.n--
	if t.n == 0 && t.idle != nil {
		t.idle.Broadcast()
	}
	t.mu.Unlock()
}

// Wait returns when no goroutine is counted.
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
