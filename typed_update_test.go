package cachekit_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
	"github.com/cachekit/cachekit/serializer"
)

// updCounter is the struct the Update tests increment a field of.
type updCounter struct {
	N     int    `json:"n"`
	Other int    `json:"other"`
	Note  string `json:"note,omitempty"`
}

// updCache wraps a cache that implements CompareAndSwapper, counting Gets
// and CompareAndSwaps, recording the TTL of the last swap, and running
// optional functions after each Get and before each swap (a "conflicting
// writer" in the middle of an Update).
type updCache struct {
	cachekit.Cache
	gets, swaps atomic.Int32
	lastTTL     atomic.Int64
	afterGet    func(ctx context.Context)
	beforeSwap  func(ctx context.Context)
}

func newUpdCache(t *testing.T) *updCache {
	t.Helper()
	m := memory.New(nil)
	t.Cleanup(func() { m.Close() })
	return &updCache{Cache: m}
}

func (c *updCache) Get(ctx context.Context, key string) ([]byte, error) {
	c.gets.Add(1)
	b, err := c.Cache.Get(ctx, key)
	if c.afterGet != nil {
		c.afterGet(ctx)
	}
	return b, err
}

func (c *updCache) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	c.swaps.Add(1)
	c.lastTTL.Store(int64(ttl))
	if c.beforeSwap != nil {
		c.beforeSwap(ctx)
	}
	return c.Cache.(cachekit.CompareAndSwapper).CompareAndSwap(ctx, key, old, new, ttl)
}

func updIncr(old updCounter, found bool) (updCounter, error) {
	old.N++
	return old, nil
}

func TestUpdateMissThenHit(t *testing.T) {
	c := newUpdCache(t)
	ty := cachekit.NewTyped[updCounter](c, nil)
	var sawFound []bool
	fn := func(old updCounter, found bool) (updCounter, error) {
		sawFound = append(sawFound, found)
		if !found && old != (updCounter{}) {
			t.Errorf("miss: fn got %+v, want the zero value", old)
		}
		old.N++
		return old, nil
	}
	for want := 1; want <= 3; want++ {
		v, err := ty.Update(ctx, "k", fn)
		if err != nil || v.N != want {
			t.Fatalf("Update %d: %+v, %v", want, v, err)
		}
		if got, err := ty.Get(ctx, "k"); err != nil || got.N != want {
			t.Fatalf("Get after Update %d: %+v, %v", want, got, err)
		}
	}
	if len(sawFound) != 3 || sawFound[0] || !sawFound[1] || !sawFound[2] {
		t.Fatalf("found flags %v, want [false true true]", sawFound)
	}
}

// An uncontended Update is one Get and one CompareAndSwap: two round trips.
func TestUpdateRoundTrips(t *testing.T) {
	c := newUpdCache(t)
	ty := cachekit.NewTyped[updCounter](c, nil)
	for i := range 3 {
		c.gets.Store(0)
		c.swaps.Store(0)
		if _, err := ty.Update(ctx, "k", updIncr); err != nil {
			t.Fatal(err)
		}
		if g, s := c.gets.Load(), c.swaps.Load(); g != 1 || s != 1 {
			t.Fatalf("Update %d: %d Gets and %d CompareAndSwaps, want 1 and 1", i, g, s)
		}
	}
}

// 8 goroutines x 25 increments of a field: the count ends exact, and every
// Update that reported success is in it.
func TestUpdateConcurrentExact(t *testing.T) {
	ty := cachekit.NewTyped[updCounter](newMem(t), &cachekit.TypedOptions{Serializer: serializer.MsgPack{}})
	const workers, each = 8, 25
	var successes, conflicts atomic.Int32
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < each; {
				_, err := ty.Update(ctx, "counter", updIncr)
				switch {
				case err == nil:
					successes.Add(1)
					done++
				case errors.Is(err, cachekit.ErrConflict):
					conflicts.Add(1) // nothing was written: try again
				default:
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	v, err := ty.Get(ctx, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if v.N != workers*each || successes.Load() != workers*each {
		t.Fatalf("counter %d after %d successful Updates; want %d", v.N, successes.Load(), workers*each)
	}
	t.Logf("%d Updates gave up with ErrConflict (and were retried)", conflicts.Load())
}

// Creating the key concurrently: every creator's contribution survives.
func TestUpdateConcurrentCreate(t *testing.T) {
	ty := cachekit.NewTyped[[]int](newMem(t), nil)
	const workers = 8
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, err := ty.Update(ctx, "list", func(old []int, found bool) ([]int, error) {
					return append(old, i), nil
				})
				if !errors.Is(err, cachekit.ErrConflict) {
					if err != nil {
						t.Error(err)
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	got, err := ty.Get(ctx, "list")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, i := range got {
		seen[i] = true
	}
	if len(got) != workers || len(seen) != workers {
		t.Fatalf("list %v, want each of 0..%d once", got, workers-1)
	}
}

func TestUpdateFnErrorAborts(t *testing.T) {
	c := newUpdCache(t)
	ty := cachekit.NewTyped[updCounter](c, nil)
	if err := ty.Set(ctx, "k", updCounter{N: 7}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	calls := 0
	v, err := ty.Update(ctx, "k", func(old updCounter, found bool) (updCounter, error) {
		calls++
		return updCounter{N: 99}, boom
	})
	if !errors.Is(err, boom) || v != (updCounter{}) {
		t.Fatalf("Update = %+v, %v; want the zero value and boom", v, err)
	}
	var ce *cachekit.Error
	if !errors.As(err, &ce) || ce.Op != "Update" || ce.Key != "k" {
		t.Fatalf("error %#v is not an *Error for Update of k", err)
	}
	if calls != 1 || c.swaps.Load() != 0 {
		t.Fatalf("fn ran %d times, %d swaps; want 1 and 0", calls, c.swaps.Load())
	}
	if got, _ := ty.Get(ctx, "k"); got.N != 7 {
		t.Fatalf("value changed to %+v", got)
	}
}

func TestUpdateUndecodable(t *testing.T) {
	c := newUpdCache(t)
	ty := cachekit.NewTyped[updCounter](c, nil)
	if err := c.Set(ctx, "k", []byte("\x00not json"), 0); err != nil {
		t.Fatal(err)
	}
	_, err := ty.Update(ctx, "k", func(old updCounter, found bool) (updCounter, error) {
		t.Error("fn called with an undecodable value")
		return old, nil
	})
	if !errors.Is(err, cachekit.ErrDecode) {
		t.Fatalf("Update of garbage: %v, want ErrDecode", err)
	}
	if c.swaps.Load() != 0 {
		t.Fatal("Update wrote over an undecodable value")
	}
	if b, _ := c.Cache.Get(ctx, "k"); string(b) != "\x00not json" {
		t.Fatalf("stored bytes changed to %q", b)
	}
}

func TestUpdateEncodeError(t *testing.T) {
	c := newUpdCache(t)
	ty := cachekit.NewTyped[any](c, nil)
	_, err := ty.Update(ctx, "k", func(old any, found bool) (any, error) {
		return make(chan int), nil // JSON can't encode a channel
	})
	if !errors.Is(err, cachekit.ErrEncode) || c.swaps.Load() != 0 {
		t.Fatalf("Update of an unencodable value: %v (%d swaps), want ErrEncode and no write", err, c.swaps.Load())
	}
}

// A writer that changes the key between every read and write of an Update:
// Update gives up with ErrConflict after UpdateAttempts attempts, having
// written nothing, and the writer's changes are all there.
func TestUpdateConflictEveryTime(t *testing.T) {
	c := newUpdCache(t)
	ty := cachekit.NewTyped[updCounter](c, nil)
	other := cachekit.NewTyped[updCounter](c.Cache, nil) // the writer, bypassing the counting wrapper
	c.afterGet = func(ctx context.Context) {
		if _, err := other.Update(ctx, "k", func(old updCounter, _ bool) (updCounter, error) {
			old.Other++
			return old, nil
		}); err != nil {
			t.Error(err)
		}
	}
	calls := 0
	_, err := ty.Update(ctx, "k", func(old updCounter, found bool) (updCounter, error) {
		calls++
		old.N++
		return old, nil
	})
	if !errors.Is(err, cachekit.ErrConflict) {
		t.Fatalf("Update against a constant writer: %v, want ErrConflict", err)
	}
	if calls != cachekit.UpdateAttempts || int(c.swaps.Load()) != cachekit.UpdateAttempts {
		t.Fatalf("fn ran %d times, %d swaps; want %d", calls, c.swaps.Load(), cachekit.UpdateAttempts)
	}
	c.afterGet = nil
	v, err := ty.Get(ctx, "k")
	if err != nil || v.N != 0 || v.Other != cachekit.UpdateAttempts {
		t.Fatalf("after the conflict: %+v, %v; want N 0 and Other %d", v, err, cachekit.UpdateAttempts)
	}
}

// Updaters against a constant conflicting writer: each Update either
// succeeds or returns ErrConflict, and every success is in the final value
// (no lost update), as are all the writer's.
func TestUpdateConstantWriterNoLostUpdate(t *testing.T) {
	ty := cachekit.NewTyped[updCounter](newMem(t), nil)
	stop := make(chan struct{})
	var writes atomic.Int32
	var writer sync.WaitGroup
	writer.Add(1)
	go func() {
		defer writer.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, err := ty.Update(ctx, "k", func(old updCounter, _ bool) (updCounter, error) {
				old.Other++
				return old, nil
			})
			switch {
			case err == nil:
				writes.Add(1)
			case !errors.Is(err, cachekit.ErrConflict):
				t.Error(err)
				return
			}
		}
	}()
	var successes, conflicts atomic.Int32
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				_, err := ty.Update(ctx, "k", updIncr)
				switch {
				case err == nil:
					successes.Add(1)
				case errors.Is(err, cachekit.ErrConflict):
					conflicts.Add(1)
				default:
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	writer.Wait()
	v, err := ty.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if v.N != int(successes.Load()) || v.Other != int(writes.Load()) {
		t.Fatalf("final %+v; want N %d (successful Updates) and Other %d (writer's)", v, successes.Load(), writes.Load())
	}
	t.Logf("%d successes, %d conflicts, %d writer updates", successes.Load(), conflicts.Load(), writes.Load())
}

// ctx cancelled while Update waits between attempts: ctx's error, no write.
func TestUpdateContextDuringBackoff(t *testing.T) {
	c := newUpdCache(t)
	ty := cachekit.NewTyped[updCounter](c, nil)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.afterGet = func(context.Context) {
		if err := c.Cache.Set(ctx, "k", []byte(`{"other":1}`), 0); err != nil { // always conflicts
			t.Error(err)
		}
	}
	c.beforeSwap = func(context.Context) { cancel() } // the swap still runs, and loses
	_, err := ty.Update(cctx, "k", updIncr)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Update with ctx cancelled during its backoff: %v, want context.Canceled", err)
	}
	if s := c.swaps.Load(); s != 1 {
		t.Fatalf("%d swaps after cancellation, want 1", s)
	}
}

func TestUpdateTTL(t *testing.T) {
	c := newUpdCache(t)
	ty := cachekit.NewTyped[updCounter](c, &cachekit.TypedOptions{TTL: time.Hour})
	if _, err := ty.Update(ctx, "k", updIncr); err != nil {
		t.Fatal(err)
	}
	if d := time.Duration(c.lastTTL.Load()); d != time.Hour {
		t.Fatalf("default TTL: swap with %v, want 1h", d)
	}
	if _, err := ty.Update(ctx, "k", updIncr, cachekit.WithTTL(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if d := time.Duration(c.lastTTL.Load()); d != time.Minute {
		t.Fatalf("WithTTL: swap with %v, want 1m", d)
	}
	_, err := ty.Update(ctx, "k", updIncr, cachekit.WithTTL(-time.Second))
	if !errors.Is(err, cachekit.ErrInvalidTTL) {
		t.Fatalf("negative TTL: %v, want ErrInvalidTTL", err)
	}
	// The TTL really applies: a short one expires the value.
	if _, err := ty.Update(ctx, "short", updIncr, cachekit.WithTTL(20*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := ty.Get(ctx, "short")
		if errors.Is(err, cachekit.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("value written with a 20ms TTL still there after 10s: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A present empty value is found (and swapped from), not taken for a miss.
func TestUpdateEmptyValue(t *testing.T) {
	c := newUpdCache(t)
	ty := cachekit.NewTyped[[]byte](c, &cachekit.TypedOptions{Serializer: serializer.Raw{}})
	if err := c.Set(ctx, "k", []byte{}, 0); err != nil {
		t.Fatal(err)
	}
	v, err := ty.Update(ctx, "k", func(old []byte, found bool) ([]byte, error) {
		if !found || len(old) != 0 {
			t.Errorf("fn got %q, found %v; want empty and found", old, found)
		}
		return append(old, 'x'), nil
	})
	if err != nil || string(v) != "x" {
		t.Fatalf("Update of an empty value: %q, %v", v, err)
	}
}

// A cache without CompareAndSwap: ErrUnsupported, before anything is read.
func TestUpdateUnsupported(t *testing.T) {
	type bare struct{ cachekit.Cache } // hides the memory cache's optional interfaces
	c := newUpdCache(t)
	ty := cachekit.NewTyped[updCounter](bare{c}, nil)
	_, err := ty.Update(ctx, "k", func(old updCounter, found bool) (updCounter, error) {
		t.Error("fn called")
		return old, nil
	})
	if !errors.Is(err, cachekit.ErrUnsupported) {
		t.Fatalf("Update without CompareAndSwapper: %v, want ErrUnsupported", err)
	}
	if c.gets.Load() != 0 {
		t.Fatal("Update read the cache before failing")
	}
}

// Update goes through hooks: WithHooks forwards CompareAndSwap.
func TestUpdateThroughHooks(t *testing.T) {
	var swaps atomic.Int32
	c := cachekit.WithHooks(newMem(t), cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error {
		if op.Kind() == cachekit.OpCompareAndSwap {
			swaps.Add(1)
		}
		return op.Next(ctx)
	}))
	ty := cachekit.NewTyped[updCounter](c, nil)
	for range 3 {
		if _, err := ty.Update(ctx, "k", updIncr); err != nil {
			t.Fatal(err)
		}
	}
	if v, _ := ty.Get(ctx, "k"); v.N != 3 {
		t.Fatalf("counter %d, want 3", v.N)
	}
	if n := swaps.Load(); n != 3 {
		t.Fatalf("hooks saw %d CompareAndSwaps, want 3", n)
	}
}

// Update adds an item to a cart without losing one added concurrently.
func ExampleTyped_Update() {
	type Cart struct{ Items []string }
	c := memory.New(nil)
	defer c.Close()
	carts := cachekit.NewTyped[Cart](c, &cachekit.TypedOptions{TTL: time.Hour})
	ctx := context.Background()

	for _, item := range []string{"apple", "pear"} {
		cart, err := carts.Update(ctx, "cart:42", func(cart Cart, found bool) (Cart, error) {
			if !found {
				fmt.Println("new cart")
			}
			cart.Items = append(cart.Items, item)
			return cart, nil
		})
		if errors.Is(err, cachekit.ErrConflict) {
			fmt.Println("the cart kept changing; nothing written")
			return
		}
		fmt.Println(cart.Items, err)
	}
	// Output:
	// new cart
	// [apple] <nil>
	// [apple pear] <nil>
}

func BenchmarkUpdateMemory(b *testing.B) {
	m := memory.New(nil)
	defer m.Close()
	ty := cachekit.NewTyped[updCounter](m, &cachekit.TypedOptions{Serializer: serializer.MsgPack{}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ty.Update(ctx, "k", updIncr); err != nil {
			b.Fatal(err)
		}
	}
}

// With local tiers and a backplane: an Update through one Typed is seen by
// the next Get of every other (and of itself), as a Set would be.
func TestUpdateLocalTierCoherent(t *testing.T) {
	shared := newMem(t)
	bp := cachekit.NewMemoryBackplane()
	defer bp.Close()
	opts := &cachekit.TypedOptions{
		Local:     &cachekit.LocalOptions{MaxEntries: 100, TTL: time.Hour},
		Backplane: bp,
	}
	a := cachekit.NewTyped[updCounter](shared, opts)
	defer a.Close()
	b := cachekit.NewTyped[updCounter](shared, opts)
	defer b.Close()
	if err := a.Set(ctx, "k", updCounter{N: 1}); err != nil {
		t.Fatal(err)
	}
	for want := 2; want <= 4; want++ {
		for _, ty := range []*cachekit.Typed[updCounter]{a, b} { // both hold it locally now
			if _, err := ty.Get(ctx, "k"); err != nil {
				t.Fatal(err)
			}
		}
		writer := a
		if want%2 == 1 {
			writer = b
		}
		if v, err := writer.Update(ctx, "k", updIncr); err != nil || v.N != want {
			t.Fatalf("Update: %+v, %v; want N %d", v, err, want)
		}
		for name, ty := range map[string]*cachekit.Typed[updCounter]{"a": a, "b": b} {
			if v, err := ty.Get(ctx, "k"); err != nil || v.N != want {
				t.Fatalf("%s.Get after an Update: %+v, %v; want N %d", name, v, err, want)
			}
		}
	}
}

// Tags: Update reads a tagged value, writes the tags WithTags gives, and
// takes a value whose tag was invalidated for a miss.
func TestUpdateTags(t *testing.T) {
	ty := cachekit.NewTyped[updCounter](newMem(t), nil)
	if err := ty.Set(ctx, "k", updCounter{N: 5}, cachekit.WithTags("t1")); err != nil {
		t.Fatal(err)
	}
	v, err := ty.Update(ctx, "k", func(old updCounter, found bool) (updCounter, error) {
		if !found || old.N != 5 {
			t.Errorf("fn got %+v, found %v; want N 5, found", old, found)
		}
		old.N++
		return old, nil
	}, cachekit.WithTags("t2"))
	if err != nil || v.N != 6 {
		t.Fatalf("Update of a tagged value: %+v, %v", v, err)
	}
	if err := ty.InvalidateTags(ctx, "t1"); err != nil { // no longer tagged t1
		t.Fatal(err)
	}
	if v, err := ty.Get(ctx, "k"); err != nil || v.N != 6 {
		t.Fatalf("after invalidating the old tag: %+v, %v; want N 6", v, err)
	}
	if err := ty.InvalidateTags(ctx, "t2"); err != nil {
		t.Fatal(err)
	}
	if _, err := ty.Get(ctx, "k"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("after invalidating its tag: %v, want ErrNotFound", err)
	}
	v, err = ty.Update(ctx, "k", func(old updCounter, found bool) (updCounter, error) {
		if found {
			t.Errorf("fn got an invalidated value as found: %+v", old)
		}
		return updCounter{N: 100}, nil
	})
	if err != nil || v.N != 100 {
		t.Fatalf("Update of an invalidated value: %+v, %v", v, err)
	}
	if v, err := ty.Get(ctx, "k"); err != nil || v.N != 100 {
		t.Fatalf("Get after it: %+v, %v; want N 100", v, err)
	}
}

// Over a Versioner (the memory backend is one), an uncontended Update reads
// with GetVersion and swaps with SwapVersion; a miss is stored with a
// CompareAndSwap from absent.
func TestUpdateVersioned(t *testing.T) {
	type seen struct {
		kind      cachekit.OpKind
		versioned bool
	}
	var mu sync.Mutex
	var ops []seen
	c := cachekit.WithHooks(newMem(t), cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error {
		mu.Lock()
		ops = append(ops, seen{op.Kind(), op.Versioned()})
		mu.Unlock()
		return op.Next(ctx)
	}))
	if _, ok := c.(cachekit.Versioner); !ok {
		t.Fatalf("WithHooks over memory is a %T, not a Versioner", c)
	}
	ty := cachekit.NewTyped[updCounter](c, nil)
	want := [][]seen{
		{{cachekit.OpGet, true}, {cachekit.OpCompareAndSwap, false}}, // miss: add
		{{cachekit.OpGet, true}, {cachekit.OpCompareAndSwap, true}},
		{{cachekit.OpGet, true}, {cachekit.OpCompareAndSwap, true}},
	}
	for i, w := range want {
		ops = nil
		v, err := ty.Update(ctx, "k", updIncr)
		if err != nil || v.N != i+1 {
			t.Fatalf("Update %d: %+v, %v", i, v, err)
		}
		if fmt.Sprint(ops) != fmt.Sprint(w) {
			t.Fatalf("Update %d made %v; want %v", i, ops, w)
		}
	}
}

// noVersions is a memory cache whose server, as it were, gives no
// versions: every Versioner method fails with ErrUnsupported.
type noVersions struct {
	*memory.Cache
	calls atomic.Int32
}

func (c *noVersions) GetVersion(context.Context, string) ([]byte, uint64, error) {
	c.calls.Add(1)
	return nil, 0, cachekit.ErrUnsupported
}

func (c *noVersions) AddVersion(context.Context, string, []byte, time.Duration) (uint64, error) {
	c.calls.Add(1)
	return 0, cachekit.ErrUnsupported
}

func (c *noVersions) SwapVersion(context.Context, string, uint64, []byte, time.Duration) (uint64, bool, error) {
	c.calls.Add(1)
	return 0, false, cachekit.ErrUnsupported
}

func (c *noVersions) DeleteVersion(context.Context, string, uint64) (bool, error) {
	c.calls.Add(1)
	return false, cachekit.ErrUnsupported
}

// A Versioner whose server gives no versions: Update compares values, and
// asks for versions once per Update.
func TestUpdateVersionsUnsupported(t *testing.T) {
	m := memory.New(nil)
	t.Cleanup(func() { m.Close() })
	c := &noVersions{Cache: m}
	ty := cachekit.NewTyped[updCounter](c, nil)
	for i := range 3 {
		c.calls.Store(0)
		v, err := ty.Update(ctx, "k", updIncr)
		if err != nil || v.N != i+1 {
			t.Fatalf("Update %d: %+v, %v", i, v, err)
		}
		if n := c.calls.Load(); n != 1 {
			t.Fatalf("Update %d called %d Versioner methods; want 1 (then values)", i, n)
		}
	}
}

// 8 goroutines x 25 increments over a Versioner, with a writer Setting
// another key meanwhile: the count ends exact.
func TestUpdateVersionedConcurrentExact(t *testing.T) {
	ty := cachekit.NewTyped[updCounter](newMem(t), nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				for {
					_, err := ty.Update(ctx, "k", updIncr)
					if errors.Is(err, cachekit.ErrConflict) {
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	if v, err := ty.Get(ctx, "k"); err != nil || v.N != 200 {
		t.Fatalf("counter %+v, %v; want N 200", v, err)
	}
}
