package memory_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
)

func TestCompareAndDelete(t *testing.T) {
	c := newCache(t, nil)
	var cad cachekit.CompareAndDeleter = c

	mustSet(t, c, "k", []byte("mine"), 0)
	if ok, err := cad.CompareAndDelete(bg, "k", []byte("theirs")); ok || err != nil {
		t.Fatalf("CompareAndDelete(wrong value) = %v, %v; want false, nil", ok, err)
	}
	wantValue(t, c, "k", "mine")
	if ok, err := cad.CompareAndDelete(bg, "k", []byte("min")); ok || err != nil {
		t.Fatalf("CompareAndDelete(prefix of the value) = %v, %v; want false, nil", ok, err)
	}
	if ok, err := cad.CompareAndDelete(bg, "k", []byte("mine")); !ok || err != nil {
		t.Fatalf("CompareAndDelete(right value) = %v, %v; want true, nil", ok, err)
	}
	wantMiss(t, c, "k")
	if ok, err := cad.CompareAndDelete(bg, "k", []byte("mine")); ok || err != nil {
		t.Fatalf("CompareAndDelete(missing) = %v, %v; want false, nil", ok, err)
	}

	// An empty value matches an empty (or nil) old.
	mustSet(t, c, "empty", nil, 0)
	if ok, err := cad.CompareAndDelete(bg, "empty", []byte{}); !ok || err != nil {
		t.Fatalf("CompareAndDelete(empty) = %v, %v; want true, nil", ok, err)
	}
}

func TestCompareAndDeleteExpired(t *testing.T) {
	c := newCache(t, nil)
	mustSet(t, c, "k", []byte("v"), time.Hour)
	memory.Freeze(c)
	memory.Advance(c, 2*time.Hour)
	if !memory.Held(c, "k") {
		t.Fatal("the engine dropped the entry; the test needs it held")
	}
	if ok, err := c.CompareAndDelete(bg, "k", []byte("v")); ok || err != nil {
		t.Fatalf("CompareAndDelete(expired) = %v, %v; want false, nil", ok, err)
	}
	wantMiss(t, c, "k")
}

func TestCompareAndDeleteNamespaces(t *testing.T) {
	root := newCache(t, nil)
	a, b := root.WithNamespace("a"), root.WithNamespace("b")
	mustSet(t, a, "k", []byte("v"), 0)
	mustSet(t, b, "k", []byte("v"), 0)
	mustSet(t, root, "k", []byte("v"), 0)
	if ok, err := a.CompareAndDelete(bg, "k", []byte("v")); !ok || err != nil {
		t.Fatalf("CompareAndDelete in a = %v, %v; want true, nil", ok, err)
	}
	wantMiss(t, a, "k")
	wantValue(t, b, "k", "v")
	wantValue(t, root, "k", "v")
	if ok, _ := a.CompareAndDelete(bg, "k", []byte("v")); ok {
		t.Fatal("second CompareAndDelete in a deleted another namespace's key")
	}
}

func TestCompareAndDeleteErrors(t *testing.T) {
	c := newCache(t, nil)
	mustSet(t, c, "k", []byte("v"), 0)
	if _, err := c.CompareAndDelete(bg, "", []byte("v")); !errors.Is(err, cachekit.ErrInvalidKey) {
		t.Errorf("CompareAndDelete(empty key) = %v; want ErrInvalidKey", err)
	}
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if ok, err := c.CompareAndDelete(ctx, "k", []byte("v")); ok || !errors.Is(err, context.Canceled) {
		t.Errorf("CompareAndDelete(cancelled ctx) = %v, %v; want false, context.Canceled", ok, err)
	}
	wantValue(t, c, "k", "v")
	c.Close()
	if _, err := c.CompareAndDelete(bg, "k", []byte("v")); !errors.Is(err, cachekit.ErrClosed) {
		t.Errorf("CompareAndDelete after Close = %v; want ErrClosed", err)
	}
}

// TestCompareAndDeleteConcurrent races 100 releases of one token: exactly
// one may win, and a value written after it is never deleted by the others.
func TestCompareAndDeleteConcurrent(t *testing.T) {
	c := newCache(t, nil)
	for round := range 20 {
		mustSet(t, c, "lock", []byte("token"), 0)
		var wins atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ok, err := c.CompareAndDelete(bg, "lock", []byte("token"))
				if err != nil {
					t.Error(err)
				}
				if ok {
					wins.Add(1)
				}
			}()
		}
		close(start)
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d of 100 concurrent CompareAndDelete calls deleted; want exactly 1", round, n)
		}
		wantMiss(t, c, "lock")
	}
}
