package decorator_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/decorator"
)

// batchFn answers even ids (odd ones don't exist) and records each batch.
type batchFn struct {
	mu      sync.Mutex
	batches [][]int
	gate    chan struct{} // when set, calls wait for it
	started chan struct{} // when set, receives each call's start
	err     error
}

func (b *batchFn) fn(ctx context.Context, ids []int) (map[int]string, error) {
	b.mu.Lock()
	b.batches = append(b.batches, slices.Sorted(slices.Values(ids)))
	gate, started, err := b.gate, b.started, b.err
	b.mu.Unlock()
	if started != nil {
		started <- struct{}{}
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	out := map[int]string{}
	for _, id := range ids {
		if id%2 == 0 {
			out[id] = fmt.Sprint("v", id)
		}
	}
	return out, nil
}

func (b *batchFn) loaded() [][]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.batches)
}

func TestCachedManyOneRoundTripEach(t *testing.T) {
	s := newSpy(newMem(t))
	c := cachekit.NewTyped[string](s, nil)
	var b batchFn
	mf := decorator.NewMany(c, b.fn, &decorator.Options[int]{Name: "users"})
	f := mf.Call
	got, err := f(bg, []int{2, 4, 4, 5})
	if err != nil || len(got) != 2 || got[2] != "v2" || got[4] != "v4" {
		t.Fatalf("first call = %v, %v", got, err)
	}
	mf.Wait() // the write is made in the background
	if s.getManys.Load() != 1 || s.setManys.Load() != 1 || s.gets.Load() != 0 || s.sets.Load() != 0 {
		t.Fatalf("round trips: GetMany %d, SetMany %d, Get %d, Set %d; want one GetMany and one SetMany",
			s.getManys.Load(), s.setManys.Load(), s.gets.Load(), s.sets.Load())
	}
	got, err = f(bg, []int{2, 4, 6, 5})
	if err != nil || len(got) != 3 || got[6] != "v6" {
		t.Fatalf("second call = %v, %v", got, err)
	}
	// Only the missing ids went to fn; 5 (not returned) was not stored.
	if l := b.loaded(); len(l) != 2 || !slices.Equal(l[1], []int{5, 6}) {
		t.Fatalf("batches = %v; want [2 4 5] then [5 6]", l)
	}
}

func TestCachedManyNegativeCaching(t *testing.T) {
	c := cachekit.NewTyped[string](newMem(t), nil)
	var b batchFn
	f := decorator.CachedMany(c, b.fn, &decorator.Options[int]{Name: "users", NegativeTTL: time.Minute})
	f(bg, []int{1, 2})
	got, err := f(bg, []int{1, 2})
	if err != nil || len(got) != 1 || got[2] != "v2" {
		t.Fatalf("got %v, %v", got, err)
	}
	if l := b.loaded(); len(l) != 1 {
		t.Fatalf("batches = %v; want one (1 is remembered as not found)", l)
	}
}

func TestCachedManyOverlappingBatchesLoadEachKeyOnce(t *testing.T) {
	c := cachekit.NewTyped[string](newMem(t), nil)
	b := batchFn{gate: make(chan struct{}), started: make(chan struct{}, 10)}
	f := decorator.CachedMany(c, b.fn, &decorator.Options[int]{Name: "users"})
	var wg sync.WaitGroup
	results := make([]map[int]string, 2)
	wg.Add(1)
	go func() { defer wg.Done(); results[0], _ = f(bg, []int{2, 4, 6}) }()
	<-b.started
	wg.Add(1)
	go func() { defer wg.Done(); results[1], _ = f(bg, []int{4, 6, 8}) }()
	<-b.started
	close(b.gate)
	wg.Wait()
	if l := b.loaded(); len(l) != 2 || !slices.Equal(l[0], []int{2, 4, 6}) || !slices.Equal(l[1], []int{8}) {
		t.Fatalf("batches = %v; want [2 4 6] and [8]", l)
	}
	if len(results[1]) != 3 || results[1][4] != "v4" || results[1][8] != "v8" {
		t.Fatalf("second caller got %v", results[1])
	}
}

func TestCachedManyCancellation(t *testing.T) {
	c := cachekit.NewTyped[string](newMem(t), nil)
	b := batchFn{gate: make(chan struct{}), started: make(chan struct{}, 10)}
	var fnCtx atomic.Value
	f := decorator.CachedMany(c, func(ctx context.Context, ids []int) (map[int]string, error) {
		fnCtx.Store(ctx)
		return b.fn(ctx, ids)
	}, &decorator.Options[int]{Name: "users"})
	owner, cancelOwner := context.WithCancel(bg)
	ownerErr := make(chan error, 1)
	go func() { _, err := f(owner, []int{2}); ownerErr <- err }()
	<-b.started
	joiner := make(chan map[int]string, 1)
	go func() { m, _ := f(bg, []int{2}); joiner <- m }()
	time.Sleep(20 * time.Millisecond)
	cancelOwner()
	if err := <-ownerErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("owner: %v", err)
	}
	if err := fnCtx.Load().(context.Context).Err(); err != nil {
		t.Fatalf("fn's ctx cancelled (%v) while the joiner still waits", err)
	}
	close(b.gate)
	if m := <-joiner; m[2] != "v2" {
		t.Fatalf("joiner got %v", m)
	}

	// When every caller has gone, fn's ctx is cancelled.
	b2 := batchFn{gate: make(chan struct{}), started: make(chan struct{}, 10)}
	g := decorator.CachedMany(c, func(ctx context.Context, ids []int) (map[int]string, error) {
		fnCtx.Store(ctx)
		return b2.fn(ctx, ids)
	}, &decorator.Options[int]{Name: "users2"})
	ctx, cancel := context.WithCancel(bg)
	done := make(chan struct{})
	go func() { defer close(done); g(ctx, []int{2}) }()
	<-b2.started
	cancel()
	<-done
	eventually(t, "fn's ctx to be cancelled", func() bool { return fnCtx.Load().(context.Context).Err() != nil })
}

func TestCachedManyPanicAndErrors(t *testing.T) {
	c := cachekit.NewTyped[string](newMem(t), nil)
	f := decorator.CachedMany(c, func(context.Context, []int) (map[int]string, error) { panic("boom") },
		&decorator.Options[int]{Name: "p"})
	if _, err := f(bg, []int{1}); !errors.Is(err, cachekit.ErrLoaderPanic) {
		t.Fatalf("panic: %v", err)
	}
	b := batchFn{err: errDown}
	g := decorator.CachedMany(c, b.fn, &decorator.Options[int]{Name: "e"})
	if _, err := g(bg, []int{2}); err != errDown { //nolint:errorlint // identity is the point
		t.Fatalf("err = %v; want fn's error", err)
	}
}

func TestCachedManyFailSafe(t *testing.T) {
	c := cachekit.NewTyped[string](newMem(t), nil)
	var b batchFn
	f := decorator.CachedMany(c, b.fn, &decorator.Options[int]{Name: "u", TTL: 20 * time.Millisecond, FailSafeMaxStale: time.Minute})
	f(bg, []int{2, 4})
	time.Sleep(40 * time.Millisecond)
	b.mu.Lock()
	b.err = errDown
	b.mu.Unlock()
	got, err := f(bg, []int{2, 4})
	if err != nil || got[2] != "v2" || got[4] != "v4" {
		t.Fatalf("fail-safe: %v, %v; want the stale values", got, err)
	}
	// An argument without a stale value: the error.
	if _, err := f(bg, []int{2, 6}); !errors.Is(err, errDown) {
		t.Fatalf("err = %v; want errDown", err)
	}
}

func TestCachedManyInvalidate(t *testing.T) {
	c := cachekit.NewTyped[string](newMem(t), nil)
	var b batchFn
	f := decorator.NewMany(c, b.fn, &decorator.Options[int]{Name: "u"})
	f.Call(bg, []int{2, 4})
	f.Invalidate(bg, 2)
	f.Call(bg, []int{2, 4})
	if l := b.loaded(); len(l) != 2 || !slices.Equal(l[1], []int{2}) {
		t.Fatalf("batches = %v; want [2 4] then [2]", l)
	}
	if got, err := f.Refresh(bg, 4); err != nil || got[4] != "v4" {
		t.Fatalf("Refresh = %v, %v", got, err)
	}
	if l := b.loaded(); len(l) != 3 {
		t.Fatalf("batches = %v; want a third for Refresh", l)
	}
}

func TestCachedManyRejectsUnsupportedOptions(t *testing.T) {
	c := cachekit.NewTyped[string](newMem(t), nil)
	var b batchFn
	mustPanic(t, "Lease", func() { decorator.CachedMany(c, b.fn, &decorator.Options[int]{Name: "u", Lease: true}) })
}

func TestCachedManyCacheTrouble(t *testing.T) {
	s := newSpy(newMem(t))
	s.getErr.Store(errors.New("connection refused"))
	var log errorLog
	var b batchFn
	f := decorator.CachedMany(cachekit.NewTyped[string](s, nil), b.fn, &decorator.Options[int]{Name: "u", OnError: log.onError})
	got, err := f(bg, []int{2, 4})
	if err != nil || len(got) != 2 || len(log.all()) != 1 {
		t.Fatalf("got %v, %v, OnError %v; want fn's results and one reported error", got, err, log.all())
	}
	ff := decorator.CachedMany(cachekit.NewTyped[string](s, nil), b.fn, &decorator.Options[int]{Name: "u", FailFast: true})
	if _, err := ff(bg, []int{2}); err == nil {
		t.Fatal("FailFast: no error")
	}
}
