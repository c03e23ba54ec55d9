package memory_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
)

func TestCompareAndSwap(t *testing.T) {
	c := newCache(t, nil)
	var cas cachekit.CompareAndSwapper = c

	mustSet(t, c, "k", []byte("v0"), 0)
	if ok, err := cas.CompareAndSwap(bg, "k", []byte("v0"), []byte("v1"), 0); !ok || err != nil {
		t.Fatalf("CompareAndSwap(right old) = %v, %v; want true, nil", ok, err)
	}
	wantValue(t, c, "k", "v1")
	if ok, err := cas.CompareAndSwap(bg, "k", []byte("v0"), []byte("v2"), 0); ok || err != nil {
		t.Fatalf("CompareAndSwap(wrong old) = %v, %v; want false, nil", ok, err)
	}
	wantValue(t, c, "k", "v1")
	if ok, err := cas.CompareAndSwap(bg, "k", []byte("v"), []byte("v2"), 0); ok || err != nil {
		t.Fatalf("CompareAndSwap(prefix of the value) = %v, %v; want false, nil", ok, err)
	}
	wantValue(t, c, "k", "v1")

	// Absent key with an old value: nothing is written.
	if ok, err := cas.CompareAndSwap(bg, "absent", []byte("v0"), []byte("v1"), 0); ok || err != nil {
		t.Fatalf("CompareAndSwap(absent, old != nil) = %v, %v; want false, nil", ok, err)
	}
	wantMiss(t, c, "absent")
	if ok, err := cas.CompareAndSwap(bg, "absent", []byte{}, []byte("v1"), 0); ok || err != nil {
		t.Fatalf("CompareAndSwap(absent, old empty) = %v, %v; want false, nil", ok, err)
	}
	wantMiss(t, c, "absent")

	// old == nil: only while absent.
	if ok, err := cas.CompareAndSwap(bg, "new", nil, []byte("first"), 0); !ok || err != nil {
		t.Fatalf("CompareAndSwap(absent, nil old) = %v, %v; want true, nil", ok, err)
	}
	wantValue(t, c, "new", "first")
	if ok, err := cas.CompareAndSwap(bg, "new", nil, []byte("second"), 0); ok || err != nil {
		t.Fatalf("CompareAndSwap(present, nil old) = %v, %v; want false, nil", ok, err)
	}
	wantValue(t, c, "new", "first")

	// A stored empty value matches an empty, non-nil old, and not nil.
	mustSet(t, c, "empty", []byte{}, 0)
	if ok, err := cas.CompareAndSwap(bg, "empty", nil, []byte("x"), 0); ok || err != nil {
		t.Fatalf("CompareAndSwap(empty value, nil old) = %v, %v; want false, nil", ok, err)
	}
	if ok, err := cas.CompareAndSwap(bg, "empty", []byte{}, []byte("x"), 0); !ok || err != nil {
		t.Fatalf("CompareAndSwap(empty value, empty old) = %v, %v; want true, nil", ok, err)
	}
	wantValue(t, c, "empty", "x")

	// Swapping to an empty value stores an empty hit.
	if ok, err := cas.CompareAndSwap(bg, "empty", []byte("x"), nil, 0); !ok || err != nil {
		t.Fatalf("CompareAndSwap(to nil new) = %v, %v; want true, nil", ok, err)
	}
	if v, err := c.Get(bg, "empty"); err != nil || v == nil || len(v) != 0 {
		t.Fatalf("Get after swapping to nil = %q (nil: %v), %v; want an empty hit", v, v == nil, err)
	}
}

func TestCompareAndSwapCopies(t *testing.T) {
	c := newCache(t, nil)
	mustSet(t, c, "k", []byte("v0"), 0)
	old, next := []byte("v0"), []byte("v1")
	if ok, err := c.CompareAndSwap(bg, "k", old, next, 0); !ok || err != nil {
		t.Fatalf("CompareAndSwap = %v, %v", ok, err)
	}
	next[0] = 'X'
	old[0] = 'X'
	wantValue(t, c, "k", "v1")
}

func TestCompareAndSwapTTL(t *testing.T) {
	c := newCache(t, nil)
	mustSet(t, c, "k", []byte("v0"), 0)
	mustSet(t, c, "keep", []byte("v0"), time.Minute)
	memory.Freeze(c)
	if ok, err := c.CompareAndSwap(bg, "k", []byte("v0"), []byte("v1"), time.Hour); !ok || err != nil {
		t.Fatalf("CompareAndSwap(ttl 1h) = %v, %v", ok, err)
	}
	// ttl 0 replaces a TTL with no expiry, as Set does.
	if ok, err := c.CompareAndSwap(bg, "keep", []byte("v0"), []byte("v1"), 0); !ok || err != nil {
		t.Fatalf("CompareAndSwap(ttl 0) = %v, %v", ok, err)
	}
	memory.Advance(c, 59*time.Minute)
	wantValue(t, c, "k", "v1")
	memory.Advance(c, 2*time.Minute)
	wantMiss(t, c, "k")
	wantValue(t, c, "keep", "v1")

	// An expired entry is absent: old == nil swaps, old == its value does not.
	if !memory.Held(c, "k") {
		t.Fatal("the engine dropped the entry; the test needs it held")
	}
	if ok, err := c.CompareAndSwap(bg, "k", []byte("v1"), []byte("v2"), 0); ok || err != nil {
		t.Fatalf("CompareAndSwap(expired, its old value) = %v, %v; want false, nil", ok, err)
	}
	wantMiss(t, c, "k")
	mustSet(t, c, "k2", []byte("v"), time.Second)
	memory.Advance(c, time.Hour)
	if ok, err := c.CompareAndSwap(bg, "k2", nil, []byte("fresh"), 0); !ok || err != nil {
		t.Fatalf("CompareAndSwap(expired, nil old) = %v, %v; want true, nil", ok, err)
	}
	wantValue(t, c, "k2", "fresh")
}

// TestCompareAndSwapShortTTL checks a real, short TTL without a frozen clock:
// the entry is gone at some point, polled with a generous bound.
func TestCompareAndSwapShortTTL(t *testing.T) {
	c := newCache(t, nil)
	if ok, err := c.CompareAndSwap(bg, "k", nil, []byte("v"), 20*time.Millisecond); !ok || err != nil {
		t.Fatalf("CompareAndSwap = %v, %v", ok, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := c.Get(bg, "k"); errors.Is(err, cachekit.ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the entry swapped in with a 20ms TTL is still there after 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCompareAndSwapNamespaces(t *testing.T) {
	root := newCache(t, nil)
	a, b := root.WithNamespace("a"), root.WithNamespace("b")
	mustSet(t, a, "k", []byte("v"), 0)
	mustSet(t, b, "k", []byte("v"), 0)
	if ok, err := a.CompareAndSwap(bg, "k", []byte("v"), []byte("a1"), 0); !ok || err != nil {
		t.Fatalf("CompareAndSwap in a = %v, %v; want true, nil", ok, err)
	}
	wantValue(t, a, "k", "a1")
	wantValue(t, b, "k", "v")
	wantMiss(t, root, "k")
	if ok, err := root.CompareAndSwap(bg, "k", []byte("v"), []byte("r"), 0); ok || err != nil {
		t.Fatalf("CompareAndSwap in root of another namespace's key = %v, %v; want false, nil", ok, err)
	}
	if ok, err := root.CompareAndSwap(bg, "k", nil, []byte("r"), 0); !ok || err != nil {
		t.Fatalf("CompareAndSwap(nil old) in root = %v, %v; want true, nil", ok, err)
	}
	wantValue(t, root, "k", "r")
	wantValue(t, a, "k", "a1")
	wantValue(t, b, "k", "v")
}

func TestCompareAndSwapErrors(t *testing.T) {
	c := newCache(t, &memory.Options{MaxValueSize: 16})
	mustSet(t, c, "k", []byte("v"), 0)
	if ok, err := c.CompareAndSwap(bg, "", nil, []byte("v"), 0); ok || !errors.Is(err, cachekit.ErrInvalidKey) {
		t.Errorf("CompareAndSwap(empty key) = %v, %v; want false, ErrInvalidKey", ok, err)
	}
	long := string(make([]byte, cachekit.MaxKeySize+1))
	if ok, err := c.CompareAndSwap(bg, long, nil, []byte("v"), 0); ok || !errors.Is(err, cachekit.ErrInvalidKey) {
		t.Errorf("CompareAndSwap(long key) = %v, %v; want false, ErrInvalidKey", ok, err)
	}
	if ok, err := c.CompareAndSwap(bg, "k", []byte("v"), []byte("w"), -time.Second); ok || !errors.Is(err, cachekit.ErrInvalidTTL) {
		t.Errorf("CompareAndSwap(negative ttl) = %v, %v; want false, ErrInvalidTTL", ok, err)
	}
	if ok, err := c.CompareAndSwap(bg, "k", []byte("v"), make([]byte, 17), 0); ok || !errors.Is(err, cachekit.ErrTooLarge) {
		t.Errorf("CompareAndSwap(too large) = %v, %v; want false, ErrTooLarge", ok, err)
	}
	var ce *cachekit.Error
	if _, err := c.CompareAndSwap(bg, "", nil, nil, 0); !errors.As(err, &ce) || ce.Op != "CompareAndSwap" {
		t.Errorf("CompareAndSwap error = %v; want a *cachekit.Error of op CompareAndSwap", err)
	}
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if ok, err := c.CompareAndSwap(ctx, "k", []byte("v"), []byte("w"), 0); ok || !errors.Is(err, context.Canceled) {
		t.Errorf("CompareAndSwap(cancelled ctx) = %v, %v; want false, context.Canceled", ok, err)
	}
	wantValue(t, c, "k", "v")
	c.Close()
	if ok, err := c.CompareAndSwap(bg, "k", []byte("v"), []byte("w"), 0); ok || !errors.Is(err, cachekit.ErrClosed) {
		t.Errorf("CompareAndSwap after Close = %v, %v; want false, ErrClosed", ok, err)
	}
}

// TestCompareAndSwapConcurrent races 100 swappers from the same old value to
// a value of their own, round after round: exactly one wins each round, and
// the stored value is the winner's.
func TestCompareAndSwapConcurrent(t *testing.T) {
	c := newCache(t, nil)
	for round := range 20 {
		mustSet(t, c, "k", []byte("v0"), 0)
		var mu sync.Mutex
		var winners []int
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ok, err := c.CompareAndSwap(bg, "k", []byte("v0"), []byte(fmt.Sprintf("v%d", i+1)), time.Minute)
				if err != nil {
					t.Error(err)
				}
				if ok {
					mu.Lock()
					winners = append(winners, i+1)
					mu.Unlock()
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("round %d: %d of 100 concurrent CompareAndSwap calls swapped; want exactly 1", round, len(winners))
		}
		wantValue(t, c, "k", fmt.Sprintf("v%d", winners[0]))
	}
}
