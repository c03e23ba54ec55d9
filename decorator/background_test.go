package decorator_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/decorator"
)

// gated wraps a Cache: while a gate is set, Set, SetMany or Delete wait for
// it to open (or for ctx), so that a test can hold a cache operation in
// flight.
type gated struct {
	cachekit.Cache
	setGate, delGate atomic.Pointer[chan struct{}]
	setsIn, delsIn   atomic.Int32 // calls that reached the gate

	holdGet atomic.Pointer[chan struct{}] // the next Get or GetMany answers only after it opens
}

func (c *gated) GetMany(ctx context.Context, keys []string) (map[string][]byte, error) {
	g := c.holdGet.Swap(nil)
	m, err := c.Cache.GetMany(ctx, keys)
	if g != nil {
		<-*g
	}
	return m, err
}

func (c *gated) Get(ctx context.Context, key string) ([]byte, error) {
	g := c.holdGet.Swap(nil)
	b, err := c.Cache.Get(ctx, key)
	if g != nil {
		<-*g
	}
	return b, err
}

func gate(p *atomic.Pointer[chan struct{}]) func() {
	g := make(chan struct{})
	p.Store(&g)
	return func() { p.Store(nil); close(g) }
}

func pass(ctx context.Context, p *atomic.Pointer[chan struct{}], in *atomic.Int32) error {
	g := p.Load()
	if g == nil {
		return nil
	}
	in.Add(1)
	select {
	case <-*g:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *gated) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	if err := pass(ctx, &c.setGate, &c.setsIn); err != nil {
		return err
	}
	return c.Cache.Set(ctx, key, v, ttl)
}

func (c *gated) SetMany(ctx context.Context, items map[string][]byte, ttl time.Duration) error {
	if err := pass(ctx, &c.setGate, &c.setsIn); err != nil {
		return err
	}
	return c.Cache.SetMany(ctx, items, ttl)
}

func (c *gated) Delete(ctx context.Context, keys ...string) (int, error) {
	if err := pass(ctx, &c.delGate, &c.delsIn); err != nil {
		return 0, err
	}
	return c.Cache.Delete(ctx, keys...)
}

// within runs f in a goroutine and fails the test if it has not returned
// after a generous bound: the test is about f not waiting for something
// that the test holds back.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s waited for an operation the test holds back", what)
	}
}

// blocked reports whether f is still running after a short while, which it
// must be: the test holds back what it waits for. (A false "still running"
// only needs a slow machine to let f run late, never a wrong failure.)
func blocked(f func()) (still bool, wait func()) {
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
		return false, func() {}
	case <-time.After(50 * time.Millisecond):
		return true, func() { <-done }
	}
}

// The caller gets fn's value as soon as fn returns: the cache write is made
// in the background, and Wait waits for it.
func TestValueDoesNotWaitForTheWrite(t *testing.T) {
	g := &gated{Cache: newMem(t)}
	var calls atomic.Int32
	f := decorator.New(cachekit.NewTyped[int](g, nil), func(context.Context, int) (int, error) {
		return int(calls.Add(1)), nil
	}, &decorator.Options[int]{Name: "f"})
	open := gate(&g.setGate)
	var v int
	var err error
	within(t, "Call", func() { v, err = f.Call(bg, 1) })
	if err != nil || v != 1 {
		t.Fatalf("Call = %d, %v; want 1, nil", v, err)
	}
	// The write is on its way: a call now takes its value, not fn's again.
	within(t, "a second Call", func() { v, err = f.Call(bg, 1) })
	if err != nil || v != 1 || calls.Load() != 1 {
		t.Fatalf("second Call = %d, %v after %d calls of fn; want the value on its way (1) and one call", v, err, calls.Load())
	}
	still, waited := blocked(f.Wait)
	if !still {
		t.Fatal("Wait returned while the write was held back")
	}
	open()
	waited()
	if b, err := g.Cache.Get(bg, mustKey(t, f, 1)); err != nil || string(b) != "1" {
		t.Fatalf("stored %q, %v; want 1", b, err)
	}

	mg := &gated{Cache: newMem(t)}
	var b batchFn
	mf := decorator.NewMany(cachekit.NewTyped[string](mg, nil), b.fn, &decorator.Options[int]{Name: "m"})
	open = gate(&mg.setGate)
	var got map[int]string
	within(t, "CachedMany's Call", func() { got, err = mf.Call(bg, []int{2, 4}) })
	if err != nil || len(got) != 2 {
		t.Fatalf("CachedMany = %v, %v", got, err)
	}
	within(t, "CachedMany's second Call", func() { got, err = mf.Call(bg, []int{2, 4}) })
	if err != nil || len(got) != 2 || len(b.loaded()) != 1 {
		t.Fatalf("second CachedMany = %v, %v after batches %v; want the values on their way", got, err, b.loaded())
	}
	if still, waited := blocked(mf.Wait); !still {
		t.Fatal("ManyFunc.Wait returned while the write was held back")
	} else {
		open()
		waited()
	}
}

func mustKey[K comparable, V any](t *testing.T, f *decorator.Func[K, V], k K) string {
	t.Helper()
	key, err := f.Key(k)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// Wait also waits for runs of fn that every caller has left (fn not
// watching its ctx), on both function types.
func TestWaitCoversAbandonedLoads(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	f := decorator.New(cachekit.NewTyped[int](newMem(t), nil), func(context.Context, int) (int, error) {
		started <- struct{}{}
		<-release
		return 1, nil
	}, &decorator.Options[int]{Name: "f"})
	mf := decorator.NewMany(cachekit.NewTyped[int](newMem(t), nil), func(_ context.Context, ids []int) (map[int]int, error) {
		started <- struct{}{}
		<-release
		return map[int]int{}, nil
	}, &decorator.Options[int]{Name: "m"})
	ctx, cancel := context.WithCancel(bg)
	errs := make(chan error, 2)
	go func() { _, err := f.Call(ctx, 1); errs <- err }()
	go func() { _, err := mf.Call(ctx, []int{1}); errs <- err }()
	<-started
	<-started
	cancel()
	for range 2 {
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Fatalf("a caller that left got %v; want context.Canceled", err)
		}
	}
	stillF, waitF := blocked(f.Wait)
	stillM, waitM := blocked(mf.Wait)
	close(release)
	waitF()
	waitM()
	if !stillF || !stillM {
		t.Fatalf("Wait returned while fn still ran: Func %v, ManyFunc %v", !stillF, !stillM)
	}
}

// A cold load reads the cache once: the look before calling fn happens
// only when a write of the key's stripe ended after the caller's read
// began. (Each read is a hit or a miss to the stats hooks.)
func TestColdLoadReadsOnce(t *testing.T) {
	s := newSpy(newMem(t))
	f := decorator.New(cachekit.NewTyped[int](s, nil), func(context.Context, int) (int, error) { return 1, nil },
		&decorator.Options[int]{Name: "f"})
	for i := range 20 {
		if _, err := f.Call(bg, i); err != nil {
			t.Fatal(err)
		}
		f.Wait()
	}
	if n := s.gets.Load(); n != 20 {
		t.Fatalf("20 cold loads read the cache %d times; want 20", n)
	}
}

// A caller that hangs up is not fn failing: fail-safe does not re-store
// the stale value as fresh (which would stop every process from calling fn
// for FailSafeThrottle), and the caller gets its ctx's error.
func TestCallerCancellationIsNotAFailure(t *testing.T) {
	const ttl = 30 * time.Millisecond
	opts := &decorator.Options[string]{Name: "f", TTL: ttl, FailSafeMaxStale: time.Hour, FailSafeThrottle: time.Hour}
	var fl flaky
	s := newSpy(newMem(t))
	f := decorator.New(cachekit.NewTyped[int](s, nil), fl.fn, opts)
	fl.version.Store(1)
	if v, err := f.Call(bg, "k"); err != nil || v != 1 {
		t.Fatalf("first Call = %d, %v", v, err)
	}
	f.Wait()
	time.Sleep(2 * ttl) // the value is stale now
	open := fl.block()
	ctx, cancel := context.WithCancel(bg)
	errc := make(chan error, 1)
	go func() { _, err := f.Call(ctx, "k"); errc <- err }()
	eventually(t, "fn to start", func() bool { return fl.calls.Load() == 2 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller who hung up got %v; want context.Canceled", err)
	}
	f.Wait()
	open()
	fl.version.Store(2)
	if v, err := f.Call(bg, "k"); err != nil || v != 2 {
		t.Fatalf("after a caller hung up: %d, %v; want fn's new value 2 (the stale 1 was re-stored as fresh)", v, err)
	}
	if n := s.count(cachekit.EventLoadError); n != 0 {
		t.Fatalf("%d load_error events for a cancelled caller; want 0", n)
	}

	// The same for CachedMany.
	ms := newSpy(newMem(t))
	var b batchFn
	mf := decorator.NewMany(cachekit.NewTyped[string](ms, nil), b.fn,
		&decorator.Options[int]{Name: "m", TTL: ttl, FailSafeMaxStale: time.Hour, FailSafeThrottle: time.Hour})
	if _, err := mf.Call(bg, []int{2}); err != nil {
		t.Fatal(err)
	}
	mf.Wait()
	time.Sleep(2 * ttl)
	b.mu.Lock()
	b.gate, b.started = make(chan struct{}), make(chan struct{}, 1)
	b.mu.Unlock()
	ctx, cancel = context.WithCancel(bg)
	go func() { _, err := mf.Call(ctx, []int{2}); errc <- err }()
	<-b.started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("CachedMany: the caller who hung up got %v; want context.Canceled", err)
	}
	mf.Wait()
	b.mu.Lock()
	b.gate, b.started = nil, nil
	b.mu.Unlock()
	if _, err := mf.Call(bg, []int{2}); err != nil {
		t.Fatal(err)
	}
	if l := b.loaded(); len(l) != 3 {
		t.Fatalf("CachedMany batches %v; want a third load after the caller hung up (the stale value was re-stored as fresh)", l)
	}
}

// sameStripeKeys returns an argument other than 0 whose key shares 0's
// stripe.
func sameStripeKey(t *testing.T, f *decorator.Func[int, int]) int {
	for i := 1; i < 100000; i++ {
		if decorator.SameStripe(f, 0, i) {
			return i
		}
	}
	t.Fatal("no key shares key 0's stripe")
	return 0
}

// A slow Delete in Invalidate holds up no other key, not even one that
// shares its stripe; and a write on its way when Invalidate starts lands
// before Invalidate deletes, so the invalidated value is not left behind.
func TestInvalidateHoldsNoLockAcrossIO(t *testing.T) {
	g := &gated{Cache: newMem(t)}
	var version atomic.Int32
	f := decorator.New(cachekit.NewTyped[int](g, nil), func(context.Context, int) (int, error) {
		return int(version.Load()), nil
	}, &decorator.Options[int]{Name: "f"})
	other := sameStripeKey(t, f)

	open := gate(&g.delGate)
	inv := make(chan error, 1)
	go func() { inv <- f.Invalidate(bg, 0) }()
	eventually(t, "the Delete to start", func() bool { return g.delsIn.Load() == 1 })
	version.Store(5)
	var v int
	var err error
	within(t, "a load of a key on the invalidated stripe", func() {
		v, err = f.Call(bg, other)
		f.Wait() // its write too
	})
	if err != nil || v != 5 {
		t.Fatalf("Call = %d, %v", v, err)
	}
	open()
	if err := <-inv; err != nil {
		t.Fatal(err)
	}

	// A write on its way when Invalidate starts: Invalidate waits for it,
	// then deletes.
	open = gate(&g.setGate)
	version.Store(6)
	within(t, "Call", func() { v, err = f.Call(bg, 0) })
	eventually(t, "the write to start", func() bool { return g.setsIn.Load() == 1 })
	still, waited := blocked(func() { inv <- f.Invalidate(bg, 0) })
	open()
	waited()
	if err := <-inv; err != nil {
		t.Fatal(err)
	}
	if !still {
		t.Fatal("Invalidate returned while a write of the key was on its way")
	}
	f.Wait()
	if b, err := g.Cache.Get(bg, mustKey(t, f, 0)); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("after Invalidate the cache holds %q, %v; want a miss", b, err)
	}
}

// The lease is released with the memory backend's own CompareAndDelete
// (through the spy, which forwards it as WithHooks does), never by reading
// the lease.
func TestLeaseReleaseUsesTheBackendsCompareAndDelete(t *testing.T) {
	mem := newMem(t)
	s := newSpy(mem)
	f := decorator.New(cachekit.NewTyped[int](s, nil), func(context.Context, int) (int, error) { return 1, nil },
		&decorator.Options[int]{Name: "f", Lease: true})
	if _, err := f.Call(bg, 1); err != nil {
		t.Fatal(err)
	}
	f.Wait()
	if ok, _ := mem.Exists(bg, decorator.LeaseKey(f, 1)); ok {
		t.Fatal("the lease was not released")
	}
	if n := s.cads.Load(); n != 1 {
		t.Fatalf("%d CompareAndDeletes; want 1", n)
	}
	// The caller's read and the look after winning the lease; a release
	// by Get, compare and Delete would read the lease too.
	if n, d := s.gets.Load(), s.deletes.Load(); n != 2 || d != 0 {
		t.Fatalf("%d Gets, %d Deletes; want 2 and 0: the release must not read or plainly delete the lease", n, d)
	}
}

// A caller whose read missed just before another load's write landed does
// not call fn again: it looks again before calling fn.
func TestMissJustBeforeAWriteLandsDoesNotLoadAgain(t *testing.T) {
	g := &gated{Cache: newMem(t)}
	var calls atomic.Int32
	f := decorator.New(cachekit.NewTyped[int](g, nil), func(context.Context, int) (int, error) {
		return int(calls.Add(1)), nil
	}, &decorator.Options[int]{Name: "f"})
	hold := make(chan struct{})
	g.holdGet.Store(&hold)
	late := make(chan int)
	go func() { v, _ := f.Call(bg, 1); late <- v }() // its read misses, and answers late
	eventually(t, "the first read", func() bool { return g.holdGet.Load() == nil })
	time.Sleep(10 * time.Millisecond) // let it reach the backend (not needed for correctness)
	if v, err := f.Call(bg, 1); err != nil || v != 1 {
		t.Fatalf("Call = %d, %v", v, err)
	}
	f.Wait() // the write has landed
	close(hold)
	if v := <-late; v != 1 || calls.Load() != 1 {
		t.Fatalf("the late caller got %d after %d calls of fn; want 1 and 1", v, calls.Load())
	}
}

// The same for CachedMany: a batch whose read missed just before another
// batch's write landed loads only what is still missing.
func TestManyMissJustBeforeAWriteLandsDoesNotLoadAgain(t *testing.T) {
	g := &gated{Cache: newMem(t)}
	var b batchFn
	f := decorator.NewMany(cachekit.NewTyped[string](g, nil), b.fn, &decorator.Options[int]{Name: "m"})
	hold := make(chan struct{})
	g.holdGet.Store(&hold)
	late := make(chan map[int]string)
	go func() { v, _ := f.Call(bg, []int{2, 4}); late <- v }() // its read misses, and answers late
	eventually(t, "the first read", func() bool { return g.holdGet.Load() == nil })
	time.Sleep(10 * time.Millisecond) // let it reach the backend (not needed for correctness)
	if v, err := f.Call(bg, []int{2}); err != nil || v[2] != "v2" {
		t.Fatalf("Call = %v, %v", v, err)
	}
	f.Wait() // the write has landed
	close(hold)
	v := <-late
	if len(v) != 2 || v[2] != "v2" || v[4] != "v4" {
		t.Fatalf("the late caller got %v", v)
	}
	if l := b.loaded(); len(l) != 2 || !slices.Equal(l[1], []int{4}) {
		t.Fatalf("batches %v; want [2] then [4] (2 was stored meanwhile)", l)
	}
}
