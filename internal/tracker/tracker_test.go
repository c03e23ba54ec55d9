package tracker

import (
	"testing"
	"time"
)

// TestWaitWaitsForLateAdds: Wait returns only when every goroutine counted
// has ended, including one added while Wait was waiting.
func TestWaitWaitsForLateAdds(t *testing.T) {
	var tr Tracker
	tr.Wait() // nothing counted: returns at once
	release := make(chan struct{})
	tr.Add()
	go func() { <-release; tr.Done() }()
	waited := make(chan struct{})
	go func() { tr.Wait(); close(waited) }()
	tr.Add() // while Wait waits
	second := make(chan struct{})
	go func() { <-second; tr.Done() }()
	close(release)
	select {
	case <-waited:
		t.Fatal("Wait returned with a goroutine still counted")
	case <-time.After(50 * time.Millisecond):
	}
	close(second)
	<-waited
}
