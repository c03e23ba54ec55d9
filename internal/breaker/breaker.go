// Package breaker is the circuit breaker the network backends share: after a
// run of consecutive connection failures it opens, and calls fail at once with
// an error wrapping cachekit.ErrUnavailable and the last failure, without
// touching the network, for a set duration. Then one call goes through as a
// probe (half-open): its success closes the breaker, its failure opens it again.
//
// A nil *Breaker is a breaker that never opens, so a backend can hold one
// unconditionally.
package breaker

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cachekit/cachekit"
)

// Outcome is what a call that Allow let through tells the breaker.
type Outcome int

const (
	// Success: the server answered (a miss is an answer too).
	Success Outcome = iota
	// Failure: the server could not be reached or did not answer in the
	// backend's own time limit.
	Failure
	// Ignore: the call says nothing about the server, e.g. the caller's
	// context ended first, or the request was invalid.
	Ignore
)

// Breaker is a consecutive-failure circuit breaker. Its methods are safe for
// concurrent use.
type Breaker struct {
	threshold int
	open      time.Duration
	now       func() time.Time

	// tripped and dirty let the common case (closed, no recent failure)
	// skip the mutex: tripped mirrors !openUntil.IsZero(), dirty mirrors
	// failures > 0.
	tripped atomic.Bool
	dirty   atomic.Bool

	mu        sync.Mutex
	failures  int
	openUntil time.Time // zero: closed
	probing   bool      // a half-open probe is in flight
	lastErr   error
}

// New returns a breaker that opens after threshold consecutive failures and
// stays open for d. It returns nil, a breaker that never opens, when
// threshold < 1 or d <= 0.
func New(threshold int, d time.Duration) *Breaker {
	if threshold < 1 || d <= 0 {
		return nil
	}
	return &Breaker{threshold: threshold, open: d, now: time.Now}
}

// SetClock replaces the breaker's clock (for tests).
func (b *Breaker) SetClock(now func() time.Time) { b.now = now }

// Allow reports whether a call may go to the server. When it returns a non-nil
// error (wrapping cachekit.ErrUnavailable and the last failure) the call must
// not be made. When it returns nil the caller must report the call's outcome
// with Done exactly once.
func (b *Breaker) Allow() error {
	if b == nil || !b.tripped.Load() {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.openUntil.IsZero() {
		return nil
	}
	if now := b.now(); now.Before(b.openUntil) || b.probing {
		return b.errLocked()
	}
	b.probing = true
	return nil
}

// Done records the outcome of a call that Allow let through.
func (b *Breaker) Done(o Outcome, err error) {
	if b == nil {
		return
	}
	if o != Failure && !b.tripped.Load() && !b.dirty.Load() {
		return // closed with a clean record: nothing to change
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch o {
	case Success:
		b.failures = 0
		b.openUntil = time.Time{}
		b.probing = false
	case Failure:
		b.lastErr = err
		if b.probing || !b.openUntil.IsZero() {
			b.probing = false
			b.openUntil = b.now().Add(b.open)
		} else {
			b.failures++
			if b.failures >= b.threshold {
				b.openUntil = b.now().Add(b.open)
			}
		}
	case Ignore:
		b.probing = false
	}
	b.tripped.Store(!b.openUntil.IsZero())
	b.dirty.Store(b.failures > 0)
}

// Open reports whether the breaker is open now (calls are being refused).
func (b *Breaker) Open() bool {
	if b == nil || !b.tripped.Load() {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.openUntil.IsZero() && (b.now().Before(b.openUntil) || b.probing)
}

func (b *Breaker) errLocked() error {
	return &openError{until: b.openUntil, failures: b.threshold, cause: b.lastErr}
}

// openError is what Allow returns while the breaker is open.
type openError struct {
	until    time.Time
	failures int
	cause    error
}

func (e *openError) Error() string {
	msg := fmt.Sprintf("%v: circuit breaker open after %d consecutive connection failures", cachekit.ErrUnavailable, e.failures)
	if e.cause != nil {
		msg += "; last: " + e.cause.Error()
	}
	return msg
}

// Unwrap returns cachekit.ErrUnavailable and the last failure.
func (e *openError) Unwrap() []error {
	if e.cause == nil {
		return []error{cachekit.ErrUnavailable}
	}
	return []error{cachekit.ErrUnavailable, e.cause}
}
