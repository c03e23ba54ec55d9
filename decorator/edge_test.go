package decorator_test

// Edge cases of the decorator found by red-teaming: durations at the limit
// of time.Duration, results that look like internal formats, and fn calling
// runtime.Goexit under fail-safe.

import (
	"context"
	"errors"
	"math"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/decorator"
	"github.com/cachekit/cachekit/serializer"
)

// TestHugeDurations: TTLs that reach past 2262 (the last time Unix
// nanoseconds hold) mean "as good as forever" in every format, not an
// expiry in the past or a negative TTL: the result is stored once and hit
// after, with nothing reported to OnError.
func TestHugeDurations(t *testing.T) {
	errNotFound := errors.New("not found")
	const years250 = 250 * 365 * 24 * time.Hour
	for name, o := range map[string]decorator.Options[int]{
		"plain TTL=MaxInt64":                  {TTL: math.MaxInt64},
		"fail-safe TTL=MaxInt64":              {TTL: math.MaxInt64, FailSafeMaxStale: time.Hour},
		"fail-safe TTL=250y":                  {TTL: years250, FailSafeMaxStale: time.Hour},
		"fail-safe MaxStale=MaxInt64":         {TTL: time.Hour, FailSafeMaxStale: math.MaxInt64},
		"refresh ahead TTL=MaxInt64":          {TTL: math.MaxInt64, RefreshAhead: 0.5},
		"negative caching NegativeTTL=MaxInt": {NegativeTTL: math.MaxInt64, NegativeError: errNotFound},
	} {
		t.Run(name, func(t *testing.T) {
			var log errorLog
			o.Name, o.OnError = "f", log.onError
			var calls atomic.Int32
			f := decorator.New(cachekit.NewTyped[int](newMem(t), nil), func(_ context.Context, k int) (int, error) {
				calls.Add(1)
				if o.NegativeTTL > 0 {
					return 0, errNotFound
				}
				return 2 * k, nil
			}, &o)
			for range 3 {
				v, err := f.Call(bg, 21)
				if o.NegativeTTL > 0 {
					if !errors.Is(err, errNotFound) {
						t.Fatalf("Call: %v, %v; want the remembered not-found", v, err)
					}
				} else if err != nil || v != 42 {
					t.Fatalf("Call: %v, %v; want 42", v, err)
				}
				f.Wait()
			}
			if n := calls.Load(); n != 1 {
				t.Errorf("fn ran %d times for 3 calls; want once", n)
			}
			if errs := log.all(); len(errs) > 0 {
				t.Errorf("OnError got %v; want nothing", errs)
			}
		})
	}
	t.Run("fail-safe Throttle=MaxInt64", func(t *testing.T) {
		// fn fails once the value is stale: fail-safe serves the stale
		// value and re-stores it as fresh for the throttle, here for the
		// rest of its stale window, so fn is not called again.
		var calls atomic.Int32
		f := decorator.New(cachekit.NewTyped[int](newMem(t), nil), func(_ context.Context, k int) (int, error) {
			if calls.Add(1) > 1 {
				return 0, errors.New("fn down")
			}
			return 2 * k, nil
		}, &decorator.Options[int]{Name: "f", TTL: 20 * time.Millisecond, FailSafeMaxStale: time.Hour, FailSafeThrottle: math.MaxInt64})
		if v, err := f.Call(bg, 21); err != nil || v != 42 {
			t.Fatalf("Call: %v, %v", v, err)
		}
		f.Wait()
		time.Sleep(50 * time.Millisecond) // the value is stale
		for range 3 {
			if v, err := f.Call(bg, 21); err != nil || v != 42 {
				t.Fatalf("Call with fn down: %v, %v; want the stale 42", v, err)
			}
			f.Wait()
		}
		if n := calls.Load(); n != 2 {
			t.Errorf("fn ran %d times; want twice (the load, then one failure before the throttle)", n)
		}
	})
	t.Run("CachedMany fail-safe TTL=MaxInt64", func(t *testing.T) {
		var calls atomic.Int32
		f := decorator.NewMany(cachekit.NewTyped[int](newMem(t), nil), func(_ context.Context, ks []int) (map[int]int, error) {
			calls.Add(1)
			out := map[int]int{}
			for _, k := range ks {
				out[k] = 2 * k
			}
			return out, nil
		}, &decorator.Options[int]{Name: "m", TTL: math.MaxInt64, FailSafeMaxStale: time.Hour})
		for range 3 {
			if m, err := f.Call(bg, []int{1, 2}); err != nil || m[1] != 2 || m[2] != 4 {
				t.Fatalf("Call: %v, %v", m, err)
			}
			f.Wait()
		}
		if n := calls.Load(); n != 1 {
			t.Errorf("fn ran %d times for 3 calls; want once", n)
		}
	})
}

// TestResultsThatLookLikeTagEnvelopes: with serializer.Raw, a result that
// starts like the envelope of a tagged Typed value comes back from the cache
// exactly as fn returned it, in the plain and the envelope formats, through
// Cached, CachedMany and Typed.Get alike.
func TestResultsThatLookLikeTagEnvelopes(t *testing.T) {
	const result = "\x00\xffck:tags\x00\x00hello" // an untagged envelope of "hello"
	for name, o := range map[string]decorator.Options[int]{
		"plain":     {Name: "f"},
		"fail-safe": {Name: "f", FailSafeMaxStale: time.Hour},
	} {
		t.Run(name, func(t *testing.T) {
			typed := cachekit.NewTyped[string](newMem(t), &cachekit.TypedOptions{Serializer: serializer.Raw{}})
			f := decorator.New(typed, func(context.Context, int) (string, error) { return result, nil }, &o)
			for i := range 2 { // a load, then a hit
				if v, err := f.Call(bg, 1); err != nil || v != result {
					t.Fatalf("call %d: %q, %v; want %q", i, v, err, result)
				}
				f.Wait()
			}
			if name == "plain" {
				key, _ := f.Key(1)
				if v, err := typed.Get(bg, key); err != nil || v != result {
					t.Fatalf("Typed.Get of the decorator's key: %q, %v; want %q", v, err, result)
				}
			}
			o.Name = "m"
			m := decorator.NewMany(typed, func(_ context.Context, ks []int) (map[int]string, error) {
				return map[int]string{ks[0]: result}, nil
			}, &o)
			for i := range 2 {
				if got, err := m.Call(bg, []int{1}); err != nil || got[1] != result {
					t.Fatalf("CachedMany call %d: %q, %v; want %q", i, got[1], err, result)
				}
				m.Wait()
			}
		})
	}
}

// TestGoexitServesStale: with fail-safe, fn calling runtime.Goexit is a
// failure like a panic: the caller gets the stale value.
func TestGoexitServesStale(t *testing.T) {
	var calls atomic.Int32
	f := decorator.New(cachekit.NewTyped[int](newMem(t), nil), func(_ context.Context, k int) (int, error) {
		if calls.Add(1) > 1 {
			runtime.Goexit()
		}
		return 2 * k, nil
	}, &decorator.Options[int]{Name: "f", TTL: 20 * time.Millisecond, FailSafeMaxStale: time.Hour})
	if v, err := f.Call(bg, 21); err != nil || v != 42 {
		t.Fatalf("Call: %v, %v", v, err)
	}
	f.Wait()
	time.Sleep(50 * time.Millisecond) // the value is stale
	if v, err := f.Call(bg, 21); err != nil || v != 42 {
		t.Fatalf("Call with fn calling Goexit: %v, %v; want the stale 42", v, err)
	}
	f.Wait()
	if n := calls.Load(); n != 2 {
		t.Fatalf("fn ran %d times; want 2", n)
	}
}
