package cachekit_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
	"github.com/cachekit/cachekit/cachetest"
)

// opCounter is a hook that counts the operations that reach the cache,
// and records the events it is given.
type opCounter struct {
	mu     sync.Mutex
	ops    map[string]int
	events []cachekit.Event
}

func (h *opCounter) ProcessOp(ctx context.Context, op *cachekit.Op) error {
	h.mu.Lock()
	if h.ops == nil {
		h.ops = map[string]int{}
	}
	h.ops[op.Name()]++
	h.mu.Unlock()
	return op.Next(ctx)
}

func (h *opCounter) OnEvent(_ context.Context, ev cachekit.Event) {
	h.mu.Lock()
	h.events = append(h.events, ev)
	h.mu.Unlock()
}

func (h *opCounter) count(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ops[name]
}

func (h *opCounter) kinds(kind cachekit.EventKind) []cachekit.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []cachekit.Event
	for _, ev := range h.events {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

// fakeClock is an injected local-tier clock.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() int64              { return c.ns.Load() }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// cluster is several Typed over one shared memory cache (one per process,
// as it were), each with its own hooks counting what reaches the cache.
type cluster struct {
	mem   *memory.Cache
	bp    cachekit.Backplane
	typed []*cachekit.Typed[string]
	hooks []*opCounter
}

func newCluster(t *testing.T, n int, opts cachekit.TypedOptions) *cluster {
	t.Helper()
	cl := &cluster{mem: memory.New(&memory.Options{Namespace: "app"}), bp: opts.Backplane}
	for range n {
		h := &opCounter{}
		o := opts
		typed := cachekit.NewTyped[string](cachekit.WithHooks(cl.mem, h), &o)
		cl.typed = append(cl.typed, typed)
		cl.hooks = append(cl.hooks, h)
	}
	t.Cleanup(func() {
		for _, typed := range cl.typed {
			typed.Wait()
			if err := typed.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
		if cl.bp != nil {
			cl.bp.Close()
		}
		cl.mem.Close()
	})
	return cl
}

// want asserts what Get returns on each Typed: value, or a miss for "".
func (cl *cluster) want(t *testing.T, key, value string) {
	t.Helper()
	for i, typed := range cl.typed {
		got, err := typed.Get(ctx, key)
		switch {
		case value == "" && !errors.Is(err, cachekit.ErrNotFound):
			t.Errorf("typed %d: Get(%q) = %q, %v; want a miss", i, key, got, err)
		case value != "" && (err != nil || got != value):
			t.Errorf("typed %d: Get(%q) = %q, %v; want %q", i, key, got, err, value)
		}
	}
}

func TestLocalTierServesFromMemory(t *testing.T) {
	cl := newCluster(t, 1, cachekit.TypedOptions{Local: &cachekit.LocalOptions{}})
	a, h := cl.typed[0], cl.hooks[0]
	if err := cl.mem.Set(ctx, "k", []byte(`"v1"`), 0); err != nil {
		t.Fatal(err)
	}
	cl.want(t, "k", "v1") // a local miss: reads the cache
	if n := h.count("Get"); n != 1 {
		t.Fatalf("%d Gets reached the cache, want 1", n)
	}
	for range 3 {
		cl.want(t, "k", "v1")
	}
	if n := h.count("Get"); n != 1 {
		t.Fatalf("local hits reached the cache: %d Gets", n)
	}
	if hits, misses := len(h.kinds(cachekit.EventLocalHit)), len(h.kinds(cachekit.EventLocalMiss)); hits != 3 || misses != 1 {
		t.Fatalf("events: %d local hits, %d local misses; want 3 and 1", hits, misses)
	}
	// Set keeps the written value locally: the next Get makes no call.
	if err := a.Set(ctx, "k", "v2"); err != nil {
		t.Fatal(err)
	}
	cl.want(t, "k", "v2")
	if n := h.count("Get"); n != 1 {
		t.Fatalf("Get after Set reached the cache: %d Gets", n)
	}
	// GetMany: local keys from memory, the others in one GetMany.
	_ = cl.mem.Set(ctx, "j", []byte(`"j1"`), 0)
	got, err := a.GetMany(ctx, []string{"k", "j", "absent", "j"})
	if err != nil || len(got) != 2 || got["k"] != "v2" || got["j"] != "j1" {
		t.Fatalf("GetMany = %v, %v", got, err)
	}
	got, err = a.GetMany(ctx, []string{"k", "j"})
	if err != nil || len(got) != 2 || h.count("GetMany") != 1 {
		t.Fatalf("second GetMany = %v, %v, %d GetManys reached the cache", got, err, h.count("GetMany"))
	}
}

// Three Typed with local tiers over one cache and one memory backplane:
// every write through any of them is seen by the others' next Get.
func TestLocalCoherenceWithMemoryBackplane(t *testing.T) {
	cl := newCluster(t, 3, cachekit.TypedOptions{
		Local:     &cachekit.LocalOptions{TTL: time.Hour},
		Backplane: cachekit.NewMemoryBackplane(),
	})
	a, b, c := cl.typed[0], cl.typed[1], cl.typed[2]
	step := func(name string, write func() error, key, want string) {
		t.Helper()
		if err := write(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cl.want(t, key, want)
		cl.want(t, key, want) // the second time from the local tiers
	}
	step("Set", func() error { return a.Set(ctx, "k", "v1") }, "k", "v1")
	step("Set elsewhere", func() error { return b.Set(ctx, "k", "v2") }, "k", "v2")
	step("Delete", func() error { _, err := c.Delete(ctx, "k"); return err }, "k", "")
	step("Add", func() error { return a.Add(ctx, "k", "v3") }, "k", "v3")
	step("SetMany", func() error { return b.SetMany(ctx, map[string]string{"k": "v4", "j": "j4"}) }, "k", "v4")
	cl.want(t, "j", "j4")
	step("Update", func() error {
		_, err := c.Update(ctx, "k", func(old string, found bool) (string, error) { return old + "+", nil })
		return err
	}, "k", "v4+")
	step("Cache().Set", func() error { return a.Cache().Set(ctx, "k", []byte(`"raw"`), 0) }, "k", "raw")
	step("Cache().Expire", func() error { _, err := b.Cache().Expire(ctx, "k", time.Hour); return err }, "k", "raw")
	step("Cache().CompareAndSwap", func() error {
		_, err := c.Cache().(cachekit.CompareAndSwapper).CompareAndSwap(ctx, "k", []byte(`"raw"`), []byte(`"cas"`), 0)
		return err
	}, "k", "cas")
	step("Cache().CompareAndDelete", func() error {
		_, err := a.Cache().(cachekit.CompareAndDeleter).CompareAndDelete(ctx, "k", []byte(`"cas"`))
		return err
	}, "k", "")
	step("GetOrLoad", func() error {
		_, err := b.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "loaded", nil })
		b.Wait()
		return err
	}, "k", "loaded")
	step("Cache().Delete", func() error { _, err := c.Cache().Delete(ctx, "k"); return err }, "k", "")
	_ = a.Set(ctx, "k", "v5")
	cl.want(t, "k", "v5")
	step("Cache().Clear", func() error { return b.Cache().Clear(ctx) }, "k", "")
	cl.want(t, "j", "")

	// Each Typed received the others' messages, not its own.
	for i, h := range cl.hooks {
		if n := len(h.kinds(cachekit.EventInvalidation)); n == 0 {
			t.Errorf("typed %d reported no invalidation", i)
		}
		if errs := h.kinds(cachekit.EventBackplaneError); len(errs) > 0 {
			t.Errorf("typed %d: backplane errors %v", i, errs)
		}
	}
}

// Invalidations of another namespace on the same backplane are ignored.
func TestLocalIgnoresOtherNamespaces(t *testing.T) {
	bp := cachekit.NewMemoryBackplane()
	defer bp.Close()
	mem := memory.New(nil)
	defer mem.Close()
	users := cachekit.NewTyped[string](mem.WithNamespace("users"), &cachekit.TypedOptions{Local: &cachekit.LocalOptions{}, Backplane: bp})
	defer users.Close()
	h := &opCounter{}
	other := cachekit.NewTyped[string](cachekit.WithHooks(mem.WithNamespace("users"), h), &cachekit.TypedOptions{Local: &cachekit.LocalOptions{}, Backplane: bp})
	defer other.Close()
	orders := cachekit.NewTyped[string](mem.WithNamespace("orders"), &cachekit.TypedOptions{Backplane: bp})

	_ = users.Set(ctx, "k", "u1")
	if v, err := other.Get(ctx, "k"); err != nil || v != "u1" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	_ = orders.Set(ctx, "k", "o1")
	_ = orders.Cache().Clear(ctx)
	before := h.count("Get")
	if v, err := other.Get(ctx, "k"); err != nil || v != "u1" || h.count("Get") != before {
		t.Fatalf("after writes in another namespace: Get = %q, %v, %d cache Gets (want a local hit)", v, err, h.count("Get")-before)
	}
}

// Without a backplane, a write elsewhere is not seen until the local entry
// expires: LocalOptions.TTL bounds the staleness.
func TestLocalStaleWithoutBackplaneUntilTTL(t *testing.T) {
	cl := newCluster(t, 2, cachekit.TypedOptions{Local: &cachekit.LocalOptions{TTL: time.Minute}})
	a, b := cl.typed[0], cl.typed[1]
	var clock fakeClock
	cachekit.SetLocalClock(b, clock.now)
	_ = a.Set(ctx, "k", "v1")
	if v, _ := b.Get(ctx, "k"); v != "v1" {
		t.Fatalf("Get = %q", v)
	}
	_ = a.Set(ctx, "k", "v2")
	if v, _ := b.Get(ctx, "k"); v != "v1" {
		t.Fatalf("Get = %q: want the stale v1 (no backplane)", v)
	}
	clock.advance(time.Minute - 1)
	if v, _ := b.Get(ctx, "k"); v != "v1" {
		t.Fatalf("Get just before LocalOptions.TTL = %q, want v1", v)
	}
	clock.advance(1)
	if v, _ := b.Get(ctx, "k"); v != "v2" {
		t.Fatalf("Get at LocalOptions.TTL = %q, want v2", v)
	}
}

// A local entry never outlives the remote TTL the Typed knows: the TTL it
// wrote with, or TypedOptions.TTL for what it read.
func TestLocalTTLNeverExceedsRemoteTTL(t *testing.T) {
	cl := newCluster(t, 1, cachekit.TypedOptions{TTL: 10 * time.Second, Local: &cachekit.LocalOptions{TTL: time.Hour}})
	a, h := cl.typed[0], cl.hooks[0]
	var clock fakeClock
	cachekit.SetLocalClock(a, clock.now)
	gets := func() int { return h.count("Get") }

	_ = a.Set(ctx, "w", "v", cachekit.WithTTL(time.Second))
	_, _ = a.Get(ctx, "w")
	if gets() != 0 {
		t.Fatal("Get after Set reached the cache")
	}
	clock.advance(time.Second)
	_, _ = a.Get(ctx, "w")
	if gets() != 1 {
		t.Fatal("the local entry outlived the TTL it was written with")
	}

	_ = cl.mem.Set(ctx, "r", []byte(`"v"`), time.Hour)
	_, _ = a.Get(ctx, "r") // read: lives min(LocalOptions.TTL, TypedOptions.TTL)
	clock.advance(10*time.Second - 1)
	_, _ = a.Get(ctx, "r")
	if gets() != 2 {
		t.Fatalf("%d Gets: the read value did not stay local", gets())
	}
	clock.advance(1)
	_, _ = a.Get(ctx, "r")
	if gets() != 3 {
		t.Fatal("a read value outlived TypedOptions.TTL in the local tier")
	}
}

func TestLocalMaxEntries(t *testing.T) {
	cl := newCluster(t, 1, cachekit.TypedOptions{Local: &cachekit.LocalOptions{MaxEntries: 10}})
	a := cl.typed[0]
	for i := range 200 {
		k := fmt.Sprint("k", i)
		_ = a.Set(ctx, k, k)
		if v, err := a.Get(ctx, k); err != nil || v != k {
			t.Fatalf("Get(%s) = %q, %v", k, v, err)
		}
	}
	if n := cachekit.LocalLen(a); n > 10 {
		t.Fatalf("the local tier holds %d values, MaxEntries is 10", n)
	}
}

func TestLocalZeroAndNegativeOptionsTakeDefaults(t *testing.T) {
	for _, lo := range []cachekit.LocalOptions{{}, {MaxEntries: -1, TTL: -time.Second}, {MaxEntries: 1, TTL: math.MaxInt64}} {
		cl := newCluster(t, 1, cachekit.TypedOptions{Local: &lo})
		a, h := cl.typed[0], cl.hooks[0]
		_ = a.Set(ctx, "k", "v")
		cl.want(t, "k", "v")
		if h.count("Get") != 0 {
			t.Fatalf("%+v: the value was not kept locally", lo)
		}
		if cachekit.LocalLen(a) != 1 {
			t.Fatalf("%+v: LocalLen = %d", lo, cachekit.LocalLen(a))
		}
	}
}

func TestLocalCopy(t *testing.T) {
	mem := memory.New(nil)
	defer mem.Close()
	shared := cachekit.NewTyped[[]int](mem, &cachekit.TypedOptions{Local: &cachekit.LocalOptions{}})
	copied := cachekit.NewTyped[[]int](mem, &cachekit.TypedOptions{Local: &cachekit.LocalOptions{Copy: true}})
	for _, typed := range []*cachekit.Typed[[]int]{shared, copied} {
		_ = typed.Set(ctx, "k", []int{1, 2})
		v, _ := typed.Get(ctx, "k")
		v[0] = 99
	}
	if v, _ := shared.Get(ctx, "k"); v[0] != 99 {
		t.Errorf("without Copy, Get = %v: want the shared value the caller changed", v)
	}
	if v, _ := copied.Get(ctx, "k"); v[0] != 1 {
		t.Errorf("with Copy, Get = %v: a caller's change reached the local tier", v)
	}
}

func TestTypedCacheWrapper(t *testing.T) {
	cl := newCluster(t, 2, cachekit.TypedOptions{Local: &cachekit.LocalOptions{}, Backplane: cachekit.NewMemoryBackplane()})
	a := cl.typed[0]
	c := a.Cache()
	if u, ok := c.(interface{ Unwrap() cachekit.Cache }); !ok || u.Unwrap() == nil {
		t.Fatal("Cache() has no Unwrap")
	}
	if _, ok := c.(cachekit.CompareAndSwapper); !ok {
		t.Error("Cache() hides CompareAndSwapper")
	}
	if _, ok := c.(cachekit.CompareAndDeleter); !ok {
		t.Error("Cache() hides CompareAndDeleter")
	}
	if ns := cachekit.NamespaceOf(c); ns != "app" {
		t.Errorf("NamespaceOf(Cache()) = %q", ns)
	}
	// Writes through the wrapper drop the local entries, its own Typed's
	// included, and publish.
	_ = cl.mem.Set(ctx, "n", []byte("1"), 0)
	var counters []*cachekit.Typed[int]
	for range 2 {
		n := cachekit.NewTyped[int](cl.mem, &cachekit.TypedOptions{Local: &cachekit.LocalOptions{}, Backplane: cl.bp})
		defer n.Close()
		if v, err := n.Get(ctx, "n"); err != nil || v != 1 {
			t.Fatalf("Get = %d, %v", v, err)
		}
		counters = append(counters, n)
	}
	if _, err := counters[0].Cache().Increment(ctx, "n", 1); err != nil {
		t.Fatal(err)
	}
	for i, n := range counters {
		if v, err := n.Get(ctx, "n"); err != nil || v != 2 {
			t.Fatalf("counter %d: Get after Increment = %d, %v; want 2", i, v, err)
		}
	}
	// Without the optional interfaces, the wrapper has none either.
	plain := cachekit.NewTyped[string](bareCache{cl.mem}, &cachekit.TypedOptions{Local: &cachekit.LocalOptions{}})
	defer plain.Close()
	if _, ok := plain.Cache().(cachekit.CompareAndSwapper); ok {
		t.Error("the wrapper of a cache without CompareAndSwap claims it")
	}
}

// bareCache hides the optional interfaces of the cache it embeds.
type bareCache struct{ cachekit.Cache }

// failingBackplane fails every Publish and Watch.
type failingBackplane struct {
	cachekit.Backplane
	watched atomic.Int32
}

func (b *failingBackplane) Publish(context.Context, cachekit.Invalidation) error {
	return errors.New("backplane down")
}

func (b *failingBackplane) Watch(cachekit.Cache) error {
	b.watched.Add(1)
	return errors.New("watch refused")
}

func TestBackplaneErrorsNeverFailWrites(t *testing.T) {
	bp := &failingBackplane{Backplane: cachekit.NewMemoryBackplane()}
	var mu sync.Mutex
	var reported []error
	cl := newCluster(t, 1, cachekit.TypedOptions{
		Local:     &cachekit.LocalOptions{},
		Backplane: bp,
		OnError: func(_ context.Context, err error) {
			mu.Lock()
			reported = append(reported, err)
			mu.Unlock()
		},
	})
	a, h := cl.typed[0], cl.hooks[0]
	if bp.watched.Load() != 1 {
		t.Fatalf("Watch called %d times, want 1", bp.watched.Load())
	}
	if err := a.Set(ctx, "k", "v"); err != nil {
		t.Fatalf("Set with a failing backplane: %v", err)
	}
	if _, err := a.Delete(ctx, "k"); err != nil {
		t.Fatalf("Delete with a failing backplane: %v", err)
	}
	if err := a.Cache().Clear(ctx); err != nil {
		t.Fatalf("Clear with a failing backplane: %v", err)
	}
	if _, err := a.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "l", nil }); err != nil {
		t.Fatal(err)
	}
	a.Wait()
	if v, err := a.Get(ctx, "k"); err != nil || v != "l" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	mu.Lock()
	n := len(reported)
	mu.Unlock()
	if n != 5 { // Watch, and 4 publishes
		t.Fatalf("OnError got %d errors, want 5: %v", n, reported)
	}
	if evs := h.kinds(cachekit.EventBackplaneError); len(evs) != 5 || evs[0].Err == nil {
		t.Fatalf("hooks got %d backplane_error events, want 5", len(evs))
	}
}

// A backplane with no Typed left publishes to nobody; Close ends the
// subscription and the Typed keeps working without its local tier.
func TestTypedCloseEndsSubscription(t *testing.T) {
	bp := cachekit.NewMemoryBackplane()
	defer bp.Close()
	mem := memory.New(nil)
	defer mem.Close()
	h := &opCounter{}
	a := cachekit.NewTyped[string](mem, &cachekit.TypedOptions{Local: &cachekit.LocalOptions{}, Backplane: bp})
	b := cachekit.NewTyped[string](cachekit.WithHooks(mem, h), &cachekit.TypedOptions{Local: &cachekit.LocalOptions{}, Backplane: bp})
	_ = a.Set(ctx, "k", "v1")
	_, _ = b.Get(ctx, "k")
	received := len(h.kinds(cachekit.EventInvalidation))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	_ = a.Set(ctx, "k", "v2")
	if n := len(h.kinds(cachekit.EventInvalidation)); n != received {
		t.Fatalf("a closed Typed received %d invalidations", n-received)
	}
	if v, err := b.Get(ctx, "k"); err != nil || v != "v2" {
		t.Fatalf("Get after Close = %q, %v; want v2 from the cache", v, err)
	}
	_ = a.Close()
}

// A reset from the backplane (it reconnected, messages may be lost) drops
// every local entry.
func TestLocalResetDropsEverything(t *testing.T) {
	bp := cachekit.NewMemoryBackplane()
	cl := newCluster(t, 1, cachekit.TypedOptions{Local: &cachekit.LocalOptions{}, Backplane: bp})
	a := cl.typed[0]
	_ = a.Set(ctx, "k", "v")
	_ = cl.mem.Set(ctx, "k", []byte(`"w"`), 0) // behind the Typed's back
	cl.want(t, "k", "v")
	_ = bp.Publish(ctx, cachekit.Invalidation{Namespace: "elsewhere", Reset: true, Origin: "bp"})
	cl.want(t, "k", "w")
}

// Concurrent writers and readers in one process: once the writes are
// over, every reader sees the last value the cache holds.
func TestLocalConcurrentWritesConverge(t *testing.T) {
	cl := newCluster(t, 3, cachekit.TypedOptions{Local: &cachekit.LocalOptions{}, Backplane: cachekit.NewMemoryBackplane()})
	var wg sync.WaitGroup
	for i, typed := range cl.typed {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := range 200 {
				_ = typed.Set(ctx, "k", fmt.Sprint(i, "-", j))
			}
		}()
		go func() {
			defer wg.Done()
			for range 200 {
				_, _ = typed.Get(ctx, "k")
			}
		}()
	}
	wg.Wait()
	b, err := cl.mem.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	last := string(b[1 : len(b)-1])
	cl.want(t, "k", last)
}

func BenchmarkLocalHit(b *testing.B) {
	type profile struct {
		ID                                   int64
		Name, Email, City, Country, Language string
		Age, Score                           int
		Admin, Active                        bool
	}
	mem := memory.New(nil)
	defer mem.Close()
	p := profile{ID: 1, Name: "Ada", Email: "ada@example.com", City: "London", Country: "UK", Language: "en", Age: 36, Score: 99, Active: true}
	for _, bc := range []struct {
		name  string
		local *cachekit.LocalOptions
	}{{"memory", nil}, {"local", &cachekit.LocalOptions{}}} {
		b.Run(bc.name, func(b *testing.B) {
			typed := cachekit.NewTyped[profile](mem, &cachekit.TypedOptions{Local: bc.local})
			defer typed.Close()
			if err := typed.Set(ctx, "p", p); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := typed.Get(ctx, "p"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The Cache that a Typed with a local tier and a backplane returns passes
// the conformance suite, as every wrapper must.
func TestTypedCacheConformance(t *testing.T) {
	const maxValue = 1 << 20
	root := memory.New(&memory.Options{MaxBytes: 64 << 20, MaxValueSize: maxValue})
	t.Cleanup(func() { root.Close() })
	bp := cachekit.NewMemoryBackplane()
	t.Cleanup(func() { bp.Close() })
	cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
		typed := cachekit.NewTyped[string](root.WithNamespace(ns), &cachekit.TypedOptions{Local: &cachekit.LocalOptions{}, Backplane: bp})
		t.Cleanup(func() { typed.Close() })
		return typed.Cache()
	}, &cachetest.Options{MaxValueSize: maxValue, UnnamespacedClear: cachetest.UnnamespacedClearRemoves})
}

// partlyFailing is a cache whose multi-key writes and Clear do their work
// and then report a failure, as a memcached pool with one server down or a
// Redis Cluster with a master frozen does for the part it could not reach.
type partlyFailing struct{ cachekit.Cache }

var errPartDown = fmt.Errorf("server 2 of 3: %w", cachekit.ErrUnavailable)

func (p partlyFailing) SetMany(ctx context.Context, items map[string][]byte, ttl time.Duration) error {
	if err := p.Cache.SetMany(ctx, items, ttl); err != nil {
		return err
	}
	return errPartDown
}

func (p partlyFailing) Delete(ctx context.Context, keys ...string) (int, error) {
	n, err := p.Cache.Delete(ctx, keys...)
	if err != nil || len(keys) < 2 {
		return n, err
	}
	return n, errPartDown
}

func (p partlyFailing) Clear(ctx context.Context) error {
	if err := p.Cache.Clear(ctx); err != nil {
		return err
	}
	return errPartDown
}

// TestPartialWritesPublish: a write that spans keys or servers and fails
// in part still publishes its invalidation, so that other local tiers do
// not keep serving what it removed or replaced.
func TestPartialWritesPublish(t *testing.T) {
	mem := memory.New(nil)
	defer mem.Close()
	bp := cachekit.NewMemoryBackplane()
	defer bp.Close()
	opts := &cachekit.TypedOptions{Local: &cachekit.LocalOptions{TTL: time.Hour}, Backplane: bp}
	a := cachekit.NewTyped[string](partlyFailing{mem}, opts)
	b := cachekit.NewTyped[string](partlyFailing{mem}, opts)
	defer a.Close()
	defer b.Close()
	for name, write := range map[string]func() error{
		"Cache().Clear":  func() error { return a.Cache().Clear(ctx) },
		"Cache().Delete": func() error { _, err := a.Cache().Delete(ctx, "k", "j"); return err },
		"SetMany":        func() error { return a.SetMany(ctx, map[string]string{"k": "new", "j": "new"}) },
		"InvalidateTags": func() error { return a.InvalidateTags(ctx, "t") },
	} {
		if err := b.Set(ctx, "k", "old", cachekit.WithTags("t")); err != nil {
			t.Fatal(err)
		}
		if v, err := b.Get(ctx, "k"); err != nil || v != "old" { // held in b's local tier
			t.Fatalf("%s: Get before = %q, %v", name, v, err)
		}
		if err := write(); !errors.Is(err, cachekit.ErrUnavailable) {
			t.Fatalf("%s: %v; want the part's ErrUnavailable", name, err)
		}
		if v, err := b.Get(ctx, "k"); err == nil && v == "old" {
			t.Errorf("%s failed in part: the other Typed still serves %q from its local tier", name, v)
		}
	}
}
