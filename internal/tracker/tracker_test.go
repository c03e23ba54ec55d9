package tracker

import (
	"context"
	"testing"
	"time"
)

// TestWaitWaitsForLateGoroutines: Wait returns only when every goroutine
// started has ended, including one started while Wait was waiting.
func TestWaitWaitsForLateGoroutines(t *testing.T) {
	var tr Tracker
	tr.Wait() // nothing running: returns at once
	first, second := make(chan struct{}), make(chan struct{})
	tr.Go(func() { <-first })
	waited := make(chan struct{})
	go func() { tr.Wait(); close(waited) }()
	tr.Go(func() { <-second }) // while Wait waits
	close(first)
	select {
	case <-waited:
		t.Fatal("Wait returned with a goroutine still running")
	case <-time.After(50 * time.Millisecond):
	}
	close(second)
	<-waited
}

// TestRunReturnsAtCtxEnd: Run waits for f while ctx is live, returns when
// ctx ends first, and f, still counted, goes on.
func TestRunReturnsAtCtxEnd(t *testing.T) {
	var tr Tracker
	ran := false
	tr.Run(context.Background(), func() { ran = true })
	if !ran {
		t.Fatal("Run returned before f did, with a live ctx")
	}
	ctx, cancel := context.WithCancel(context.Background())
	release := make(chan struct{})
	time.AfterFunc(10*time.Millisecond, cancel)
	tr.Run(ctx, func() { <-release }) // returns at the cancel
	waited := make(chan struct{})
	go func() { tr.Wait(); close(waited) }()
	select {
	case <-waited:
		t.Fatal("Wait returned while f was still running")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-waited
}
