package decorator_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
	_ "github.com/cachekit/cachekit/backend/redis"
	"github.com/cachekit/cachekit/decorator"
	"github.com/cachekit/cachekit/internal/testserver"
)

// With Lease and CacheTimeout over a frozen Redis, a call falls back to fn
// within a few CacheTimeouts (the Get, the lease's Add), not after the
// second that the release of a lease whose Add's outcome is unknown may
// take: that release goes on in the background, and Func.Wait waits for
// it, after which the lease is gone.
func TestLeaseOnStuckServer(t *testing.T) {
	srv := testserver.StartRedis(t)
	c, err := cachekit.Open(bg, "redis://"+srv.Addr()+"/0?namespace=dl&breaker_threshold=0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Get(bg, "warm"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("warm-up Get: %v", err)
	}
	f := decorator.New(cachekit.NewTyped[string](c, nil), func(_ context.Context, k string) (string, error) { return "v" + k, nil },
		&decorator.Options[string]{Name: "f", Lease: true, LeaseTTL: time.Minute, CacheTimeout: 50 * time.Millisecond,
			KeyFunc: func(s string) string { return s }, OnError: func(context.Context, error) {}})
	srv.Freeze()
	start := time.Now()
	v, err := f.Call(bg, "k")
	took := time.Since(start)
	if err != nil || v != "vk" {
		srv.Thaw()
		t.Fatalf("Call on a frozen cache: %q, %v; want fn's result", v, err)
	}
	t.Logf("Call took %v", took)
	// Get and Add, 50ms each; the old synchronous release took 1s more.
	if took > 700*time.Millisecond {
		t.Errorf("Call with Lease and a 50ms CacheTimeout on a frozen cache took %v, want less than 700ms", took)
	}
	// Wait waits for the release, which cannot end while the server is
	// frozen (nor before its one-second bound).
	waited := make(chan struct{})
	go func() { f.Wait(); close(waited) }()
	select {
	case <-waited:
		t.Error("Wait returned while the server was frozen: it did not wait for the release of the lease")
	case <-time.After(100 * time.Millisecond):
	}
	srv.Thaw()
	<-waited
	if ok, err := c.Exists(bg, "f!:k:owner"); ok || err != nil {
		t.Fatalf("lease after Wait: exists=%v (%v), want it released", ok, err)
	}
}
