package decorator_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/decorator"
)

// flaky is a decorated function's body whose result and failure the test
// controls.
type flaky struct {
	calls   atomic.Int32
	version atomic.Int32
	fail    atomic.Bool
	gate    atomic.Pointer[chan struct{}] // when set, calls wait for it
}

var errDown = errors.New("database down")

func (f *flaky) fn(ctx context.Context, _ string) (int, error) {
	f.calls.Add(1)
	if g := f.gate.Load(); g != nil {
		select {
		case <-*g:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	if f.fail.Load() {
		return 0, errDown
	}
	return int(f.version.Load()), nil
}

// block makes the next calls wait until the returned function is called.
func (f *flaky) block() func() {
	g := make(chan struct{})
	f.gate.Store(&g)
	return func() { f.gate.Store(nil); close(g) }
}

func TestFailSafeServesStaleAndThrottles(t *testing.T) {
	s := newSpy(newMem(t))
	c := cachekit.NewTyped[int](s, nil)
	var fl flaky
	fl.version.Store(1)
	f := decorator.Cached(c, fl.fn, &decorator.Options[string]{Name: "f", TTL: 40 * time.Millisecond,
		FailSafeMaxStale: time.Second, FailSafeThrottle: 300 * time.Millisecond})
	if v, _ := f(bg, "k"); v != 1 {
		t.Fatal(v)
	}
	time.Sleep(60 * time.Millisecond) // stale now
	fl.fail.Store(true)
	if v, err := f(bg, "k"); err != nil || v != 1 {
		t.Fatalf("fn failed with a stale value: %d, %v; want the stale 1", v, err)
	}
	if s.count(cachekit.EventStaleServed) != 1 {
		t.Fatal("no stale_served event")
	}
	// Within the throttle interval fn is not retried.
	for range 5 {
		if v, err := f(bg, "k"); err != nil || v != 1 {
			t.Fatalf("throttled: %d, %v", v, err)
		}
	}
	if n := fl.calls.Load(); n != 2 {
		t.Fatalf("fn called %d times; want 2 (not retried within the throttle interval)", n)
	}
	time.Sleep(350 * time.Millisecond)
	f(bg, "k")
	if n := fl.calls.Load(); n != 3 {
		t.Fatalf("fn called %d times; want a retry after the throttle interval", n)
	}
	// Past the maximum staleness, the error comes through.
	time.Sleep(time.Second)
	if _, err := f(bg, "k"); !errors.Is(err, errDown) {
		t.Fatalf("past FailSafeMaxStale: %v; want fn's error", err)
	}
}

func TestWithoutFailSafeTheErrorComesThrough(t *testing.T) {
	c := cachekit.NewTyped[int](newMem(t), nil)
	var fl flaky
	f := decorator.Cached(c, fl.fn, &decorator.Options[string]{Name: "f", TTL: 20 * time.Millisecond})
	f(bg, "k")
	time.Sleep(40 * time.Millisecond)
	fl.fail.Store(true)
	if _, err := f(bg, "k"); !errors.Is(err, errDown) {
		t.Fatalf("err = %v; want fn's error", err)
	}
}

func TestFailSafeCoversPanics(t *testing.T) {
	c := cachekit.NewTyped[int](newMem(t), nil)
	var calls atomic.Int32
	f := decorator.Cached(c, func(context.Context, string) (int, error) {
		if calls.Add(1) > 1 {
			panic("bug")
		}
		return 1, nil
	}, &decorator.Options[string]{Name: "f", TTL: 20 * time.Millisecond, FailSafeMaxStale: time.Minute})
	f(bg, "k")
	time.Sleep(40 * time.Millisecond)
	if v, err := f(bg, "k"); err != nil || v != 1 {
		t.Fatalf("panic with a stale value: %d, %v; want the stale value", v, err)
	}
}

func TestSoftTimeoutReturnsStaleAndFinishesInTheBackground(t *testing.T) {
	s := newSpy(newMem(t))
	c := cachekit.NewTyped[int](s, nil)
	var fl flaky
	fl.version.Store(1)
	f := decorator.New(c, fl.fn, &decorator.Options[string]{Name: "f", TTL: 30 * time.Millisecond,
		FailSafeMaxStale: time.Minute, SoftTimeout: 20 * time.Millisecond})
	f.Call(bg, "k")
	time.Sleep(50 * time.Millisecond)
	fl.version.Store(2)
	unblock := fl.block()
	if v, err := f.Call(bg, "k"); err != nil || v != 1 {
		t.Fatalf("soft timeout: %d, %v; want the stale 1", v, err)
	}
	// fn is still running: the caller did not wait for it.
	unblock()
	f.Wait()
	if v, _ := f.Call(bg, "k"); v != 2 {
		t.Fatalf("after the background run: %d; want 2", v)
	}
	if n := fl.calls.Load(); n != 2 {
		t.Fatalf("fn called %d times; want 2", n)
	}
}

func TestHardTimeout(t *testing.T) {
	c := cachekit.NewTyped[int](newMem(t), nil)
	var fl flaky
	fl.version.Store(7)
	f := decorator.New(c, fl.fn, &decorator.Options[string]{Name: "f", HardTimeout: 20 * time.Millisecond})
	unblock := fl.block()
	_, err := f.Call(bg, "k")
	if !errors.Is(err, decorator.ErrHardTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v; want ErrHardTimeout and DeadlineExceeded", err)
	}
	// A caller that arrives while fn still runs joins the same run.
	_, err = f.Call(bg, "k")
	if !errors.Is(err, decorator.ErrHardTimeout) {
		t.Fatalf("second caller: %v", err)
	}
	unblock()
	f.Wait()
	if v, err := f.Call(bg, "k"); err != nil || v != 7 {
		t.Fatalf("after the background run: %d, %v; want 7 from the cache", v, err)
	}
	if n := fl.calls.Load(); n != 1 {
		t.Fatalf("fn called %d times; want 1", n)
	}
}

func TestHardTimeoutWithStaleValue(t *testing.T) {
	c := cachekit.NewTyped[int](newMem(t), nil)
	var fl flaky
	fl.version.Store(1)
	f := decorator.New(c, fl.fn, &decorator.Options[string]{Name: "f", TTL: 20 * time.Millisecond,
		FailSafeMaxStale: time.Minute, HardTimeout: 20 * time.Millisecond})
	f.Call(bg, "k")
	time.Sleep(40 * time.Millisecond)
	defer f.Wait()
	defer fl.block()()
	if v, err := f.Call(bg, "k"); err != nil || v != 1 {
		t.Fatalf("hard timeout with a stale value: %d, %v; want 1", v, err)
	}
}

// present reports whether key holds a value right now.
func present(t *testing.T, c cachekit.Cache, key string) bool {
	t.Helper()
	ok, err := c.Exists(bg, key)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// A hot key never goes cold: with early refresh, a key read often is
// refreshed before it expires, so it is present at every read. (Without
// early refresh it expires after one TTL.)
func TestEarlyRefreshKeepsAHotKeyWarm(t *testing.T) {
	s := newSpy(newMem(t))
	c := cachekit.NewTyped[int](s, nil)
	var fl flaky
	const ttl = 300 * time.Millisecond
	f := decorator.New(c, fl.fn, &decorator.Options[string]{Name: "f", TTL: ttl, RefreshAhead: 0.3})
	key, _ := f.Key("hot")
	f.Call(bg, "hot")
	f.Wait() // the first write is made in the background
	last := time.Now()
	checked := 0
	for end := last.Add(4 * ttl); time.Now().Before(end); {
		// On a machine so loaded that this loop stalls for most of a TTL,
		// nothing reads the key, so nothing refreshes it: skip that read.
		if gap := time.Since(last); gap < ttl/2 {
			checked++
			if !present(t, s, key) {
				t.Fatalf("the hot key went cold (%d early refreshes so far)", s.count(cachekit.EventEarlyRefresh))
			}
		}
		fl.version.Add(1)
		if _, err := f.Call(bg, "hot"); err != nil {
			t.Fatal(err)
		}
		last = time.Now()
		time.Sleep(10 * time.Millisecond)
	}
	f.Wait()
	if checked == 0 {
		t.Skip("the machine is too loaded to read the key often")
	}
	if s.count(cachekit.EventEarlyRefresh) == 0 {
		t.Fatal("no early_refresh event")
	}
}

func TestProbabilisticEarlyRefresh(t *testing.T) {
	s := newSpy(newMem(t))
	c := cachekit.NewTyped[int](s, nil)
	var calls atomic.Int32
	f := decorator.New(c, func(context.Context, string) (int, error) {
		calls.Add(1)
		time.Sleep(5 * time.Millisecond) // delta
		return 1, nil
	}, &decorator.Options[string]{Name: "f", TTL: time.Hour, RefreshBeta: 1e9})
	f.Call(bg, "k")
	// delta*beta = 5e6s, far beyond the 1h TTL: each hit refreshes with
	// probability e^(-3600/5e6), about 0.9993.
	for calls.Load() == 1 {
		f.Call(bg, "k")
		f.Wait()
	}
	if calls.Load() != 2 || s.count(cachekit.EventEarlyRefresh) != 1 {
		t.Fatalf("calls %d, refreshes %d; want 2 and 1", calls.Load(), s.count(cachekit.EventEarlyRefresh))
	}
	// With a small beta, an hour-long TTL is nowhere near its refresh.
	g := decorator.New(c, func(context.Context, string) (int, error) { calls.Add(1); time.Sleep(time.Millisecond); return 1, nil },
		&decorator.Options[string]{Name: "g", TTL: time.Hour, RefreshBeta: 1})
	for range 100 {
		g.Call(bg, "k")
	}
	g.Wait()
	if calls.Load() != 3 {
		t.Fatalf("calls %d; want 3 (no refresh far from expiry)", calls.Load())
	}
}

// A refresh whose key was deleted while it ran must not resurrect it:
// whether the delete came through Invalidate or from elsewhere (another
// process, an operator).
func TestEarlyRefreshDoesNotResurrectADeletedKey(t *testing.T) {
	for _, how := range []string{"Invalidate", "Delete"} {
		t.Run(how, func(t *testing.T) {
			mem := newMem(t)
			c := cachekit.NewTyped[int](mem, nil)
			var fl flaky
			f := decorator.New(c, fl.fn, &decorator.Options[string]{Name: "f", TTL: 100 * time.Millisecond, RefreshAhead: 0.1})
			key, _ := f.Key("k")
			f.Call(bg, "k")
			time.Sleep(20 * time.Millisecond)
			unblock := fl.block()
			f.Call(bg, "k") // starts the refresh, which waits in fn
			eventually(t, "the refresh to start", func() bool { return fl.calls.Load() == 2 })
			if how == "Invalidate" {
				f.Invalidate(bg, "k")
			} else {
				mem.Delete(bg, key)
			}
			unblock()
			f.Wait()
			if present(t, mem, key) {
				t.Fatal("the refresh resurrected the deleted key")
			}
		})
	}
}

// An early refresh that fails leaves the current value in place.
func TestFailedEarlyRefreshKeepsTheValue(t *testing.T) {
	c := cachekit.NewTyped[int](newMem(t), nil)
	var fl flaky
	fl.version.Store(1)
	f := decorator.New(c, fl.fn, &decorator.Options[string]{Name: "f", TTL: time.Hour, RefreshAhead: 0.000001})
	f.Call(bg, "k")
	fl.fail.Store(true)
	time.Sleep(10 * time.Millisecond)
	for range 3 {
		if v, err := f.Call(bg, "k"); err != nil || v != 1 {
			t.Fatalf("%d, %v; want 1", v, err)
		}
		f.Wait()
	}
}
