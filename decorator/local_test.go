package decorator_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/decorator"
)

var errNotFound = errors.New("not found")

// ops counts what reaches the cache below a Typed's local tier, and the
// events reported.
type ops struct {
	n      [cachekit.NumOpKinds]atomic.Int32
	mu     sync.Mutex
	events map[cachekit.EventKind]int
	keys   []int // NumKeys of each GetMany
}

func (o *ops) ProcessOp(ctx context.Context, op *cachekit.Op) error {
	o.n[op.Kind()].Add(1)
	if op.Kind() == cachekit.OpGetMany {
		o.mu.Lock()
		o.keys = append(o.keys, op.NumKeys())
		o.mu.Unlock()
	}
	return op.Next(ctx)
}

func (o *ops) OnEvent(_ context.Context, ev cachekit.Event) {
	o.mu.Lock()
	if o.events == nil {
		o.events = map[cachekit.EventKind]int{}
	}
	o.events[ev.Kind]++
	o.mu.Unlock()
}

// total returns the number of operations seen.
func (o *ops) total() int {
	n := 0
	for i := range o.n {
		n += int(o.n[i].Load())
	}
	return n
}

func (o *ops) event(kind cachekit.EventKind) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.events[kind]
}

// reset forgets what was counted.
func (o *ops) reset() {
	for i := range o.n {
		o.n[i].Store(0)
	}
	o.mu.Lock()
	o.events, o.keys = nil, nil
	o.mu.Unlock()
}

// node is one "process": a Typed with a local tier over the shared
// storage, through hooks of its own.
type node[V any] struct {
	typed *cachekit.Typed[V]
	ops   *ops
}

// newNodes returns n Typed caches over mem sharing bp, each with a local
// tier of options lo, closed at the end of the test.
func newNodes[V any](t *testing.T, mem cachekit.Cache, bp cachekit.Backplane, n int, lo cachekit.LocalOptions) []node[V] {
	t.Helper()
	var out []node[V]
	for range n {
		o := &ops{}
		lo := lo
		typed := cachekit.NewTyped[V](cachekit.WithHooks(mem, o), &cachekit.TypedOptions{Local: &lo, Backplane: bp})
		t.Cleanup(func() { typed.Close() })
		out = append(out, node[V]{typed, o})
	}
	return out
}

// formats are the two stored formats: plain, and the envelope (fail-safe
// on, with a TTL long enough that nothing goes stale during a test).
var formats = []struct {
	name string
	opts decorator.Options[string]
}{
	{"plain", decorator.Options[string]{Name: "f"}},
	{"envelope", decorator.Options[string]{Name: "f", TTL: time.Hour, FailSafeMaxStale: time.Hour}},
}

// With a local tier, hits after the first load make no cache operation,
// in both formats, and are reported as local hits.
func TestLocalTierServesHits(t *testing.T) {
	for _, format := range formats {
		t.Run(format.name, func(t *testing.T) {
			nodes := newNodes[int](t, newMem(t), nil, 1, cachekit.LocalOptions{})
			n := nodes[0]
			var calls atomic.Int32
			opts := format.opts
			f := decorator.New(n.typed, func(context.Context, string) (int, error) { return int(calls.Add(1)), nil }, &opts)
			if v, err := f.Call(bg, "k"); err != nil || v != 1 {
				t.Fatalf("first call = %d, %v", v, err)
			}
			f.Wait()
			n.ops.reset()
			for range 100 {
				if v, err := f.Call(bg, "k"); err != nil || v != 1 {
					t.Fatalf("hit = %d, %v; want 1", v, err)
				}
			}
			if got := n.ops.total(); got != 0 || calls.Load() != 1 {
				t.Fatalf("100 hits made %d cache operations and %d calls of fn; want 0 and 1", got, calls.Load())
			}
			if h, m := n.ops.event(cachekit.EventLocalHit), n.ops.event(cachekit.EventLocalMiss); h != 100 || m != 0 {
				t.Fatalf("local_hit %d, local_miss %d; want 100 and 0", h, m)
			}
			// Another key: one local miss, then the cache read.
			f.Call(bg, "other")
			f.Wait()
			if m, g := n.ops.event(cachekit.EventLocalMiss), n.ops.n[cachekit.OpGet].Load(); m != 1 || g != 1 {
				t.Fatalf("a cold key: local_miss %d, cache Gets %d; want 1 and 1", m, g)
			}
		})
	}
}

// A value another process stored is read once from the cache and then
// served from memory.
func TestLocalTierKeepsWhatItReads(t *testing.T) {
	for _, format := range formats {
		t.Run(format.name, func(t *testing.T) {
			nodes := newNodes[int](t, newMem(t), cachekit.NewMemoryBackplane(), 2, cachekit.LocalOptions{})
			opts := format.opts
			fa := decorator.New(nodes[0].typed, func(context.Context, string) (int, error) { return 7, nil }, &opts)
			fb := decorator.New(nodes[1].typed, func(context.Context, string) (int, error) {
				t.Error("b ran fn for a stored value")
				return 0, nil
			}, &opts)
			fa.Call(bg, "k")
			fa.Wait()
			for range 3 {
				if v, err := fb.Call(bg, "k"); err != nil || v != 7 {
					t.Fatalf("b = %d, %v; want 7", v, err)
				}
			}
			if g := nodes[1].ops.n[cachekit.OpGet].Load(); g != 1 {
				t.Fatalf("b made %d cache Gets for 3 calls; want 1", g)
			}
		})
	}
}

// The plain format shares the Typed's entries: a decorated function's
// value is a local hit for Typed.Get, and Typed.Set's value is one for the
// decorated function.
func TestLocalTierSharedWithTypedInPlainFormat(t *testing.T) {
	n := newNodes[int](t, newMem(t), nil, 1, cachekit.LocalOptions{})[0]
	f := decorator.New(n.typed, func(context.Context, string) (int, error) { return 1, nil }, &decorator.Options[string]{Name: "f"})
	f.Call(bg, "k")
	f.Wait()
	key, _ := f.Key("k")
	n.ops.reset()
	if v, err := n.typed.Get(bg, key); err != nil || v != 1 || n.ops.total() != 0 {
		t.Fatalf("Typed.Get = %d, %v with %d cache operations; want 1 from memory", v, err, n.ops.total())
	}
	if err := n.typed.Set(bg, key, 2); err != nil {
		t.Fatal(err)
	}
	n.ops.reset()
	if v, err := f.Call(bg, "k"); err != nil || v != 2 || n.ops.total() != 0 {
		t.Fatalf("after Typed.Set: %d, %v with %d cache operations; want 2 from memory", v, err, n.ops.total())
	}
}

// In the envelope format the decorator's entries are its own: Typed.Get
// of the key reads the cache (and finds an envelope it cannot decode), as
// without a local tier.
func TestLocalTierEnvelopeEntriesAreNotTypedValues(t *testing.T) {
	n := newNodes[int](t, newMem(t), nil, 1, cachekit.LocalOptions{})[0]
	f := decorator.New(n.typed, func(context.Context, string) (int, error) { return 1, nil },
		&decorator.Options[string]{Name: "f", NegativeTTL: time.Hour, NegativeError: errNotFound})
	f.Call(bg, "k")
	f.Wait()
	key, _ := f.Key("k")
	n.ops.reset()
	if v, err := n.typed.Get(bg, key); !errors.Is(err, cachekit.ErrDecode) || n.ops.total() != 1 {
		t.Fatalf("Typed.Get of an envelope = %d, %v after %d cache operations; want ErrDecode from the cache", v, err, n.ops.total())
	}
}

// A write through another Typed (another process) sharing the backplane:
// the decorated function's next call sees it.
func TestLocalTierSeesOtherProcessesWrites(t *testing.T) {
	for _, format := range formats {
		t.Run(format.name, func(t *testing.T) {
			bp := cachekit.NewMemoryBackplane()
			nodes := newNodes[int](t, newMem(t), bp, 2, cachekit.LocalOptions{TTL: time.Hour})
			var version atomic.Int32
			version.Store(1)
			fn := func(context.Context, string) (int, error) { return int(version.Load()), nil }
			opts := format.opts
			fa := decorator.New(nodes[0].typed, fn, &opts)
			fb := decorator.New(nodes[1].typed, fn, &opts)
			if v, _ := fa.Call(bg, "k"); v != 1 {
				t.Fatalf("a = %d; want 1", v)
			}
			fa.Wait()
			version.Store(2)
			if _, err := fb.Refresh(bg, "k"); err != nil { // b writes 2
				t.Fatal(err)
			}
			if v, err := fa.Call(bg, "k"); err != nil || v != 2 {
				t.Fatalf("a after b's write = %d, %v; want 2", v, err)
			}
			if format.name == "plain" {
				// A Typed.Set of the key in b, too.
				key, _ := fa.Key("k")
				if err := nodes[1].typed.Set(bg, key, 3); err != nil {
					t.Fatal(err)
				}
				if v, err := fa.Call(bg, "k"); err != nil || v != 3 {
					t.Fatalf("a after b's Typed.Set = %d, %v; want 3", v, err)
				}
			}
			// A delete in b: a runs fn.
			version.Store(4)
			key, _ := fa.Key("k")
			if _, err := nodes[1].typed.Cache().Delete(bg, key); err != nil {
				t.Fatal(err)
			}
			if v, err := fa.Call(bg, "k"); err != nil || v != 4 {
				t.Fatalf("a after b's Delete = %d, %v; want 4 (a load)", v, err)
			}
			fa.Wait()
			fb.Wait()
		})
	}
}

// Invalidate drops the value locally and publishes: the other process
// runs fn on its next call. Refresh replaces it everywhere.
func TestLocalTierInvalidateAndRefresh(t *testing.T) {
	for _, format := range formats {
		t.Run(format.name, func(t *testing.T) {
			nodes := newNodes[int](t, newMem(t), cachekit.NewMemoryBackplane(), 2, cachekit.LocalOptions{TTL: time.Hour})
			var version, calls atomic.Int32
			fn := func(context.Context, string) (int, error) { calls.Add(1); return int(version.Load()), nil }
			opts := format.opts
			fa := decorator.New(nodes[0].typed, fn, &opts)
			fb := decorator.New(nodes[1].typed, fn, &opts)
			version.Store(1)
			fa.Call(bg, "k")
			fa.Wait()
			fb.Call(bg, "k") // now in b's local tier
			if err := fa.Invalidate(bg, "k"); err != nil {
				t.Fatal(err)
			}
			version.Store(2)
			if v, _ := fb.Call(bg, "k"); v != 2 || calls.Load() != 2 {
				t.Fatalf("b after a's Invalidate = %d with %d calls of fn; want 2 and 2", v, calls.Load())
			}
			fb.Wait()
			if v, _ := fa.Call(bg, "k"); v != 2 || calls.Load() != 2 {
				t.Fatalf("a after b's load = %d with %d calls of fn; want b's 2", v, calls.Load())
			}
			version.Store(3)
			if v, err := fb.Refresh(bg, "k"); err != nil || v != 3 {
				t.Fatalf("Refresh = %d, %v", v, err)
			}
			nodes[1].ops.reset()
			if v, _ := fa.Call(bg, "k"); v != 3 {
				t.Fatalf("a after b's Refresh = %d; want 3", v)
			}
			if v, _ := fb.Call(bg, "k"); v != 3 || nodes[1].ops.total() != 0 {
				t.Fatalf("b after its Refresh = %d with %d cache operations; want 3 from memory", v, nodes[1].ops.total())
			}
			fa.Wait()
			fb.Wait()
		})
	}
}

// A local entry lives no longer than the TTL it was stored with, whether
// this process wrote it or read it.
func TestLocalTierEntryNeverOutlivesItsTTL(t *testing.T) {
	for name, format := range map[string]decorator.Options[string]{
		"plain":    {Name: "f", TTL: 50 * time.Millisecond},
		"envelope": {Name: "f", TTL: 50 * time.Millisecond, NegativeTTL: time.Hour, NegativeError: errNotFound},
	} {
		mem := newMem(t)
		nodes := newNodes[int](t, mem, nil, 1, cachekit.LocalOptions{TTL: time.Hour})
		var calls atomic.Int32
		fn := func(context.Context, string) (int, error) { return int(calls.Add(1)), nil }
		opts := format
		f := decorator.New(nodes[0].typed, fn, &opts)
		f.Call(bg, "written")
		// A value written by a function without a local tier, then read.
		other := decorator.New(cachekit.NewTyped[int](mem, nil), fn, &opts)
		other.Call(bg, "read")
		other.Wait()
		f.Call(bg, "read")
		f.Wait()
		before := calls.Load()
		time.Sleep(80 * time.Millisecond) // past the TTL
		f.Call(bg, "written")
		f.Call(bg, "read")
		f.Wait()
		if got := calls.Load() - before; got != 2 {
			t.Fatalf("%s: %d calls of fn after the TTL; want 2 (one per key: the local entries expired)", name, got)
		}
	}
}

// Fail-safe through the local tier: a stale local entry is judged stale at
// read time (fn is called), served when fn fails, and the throttled value
// is then served from memory.
func TestLocalTierFailSafe(t *testing.T) {
	n := newNodes[int](t, newMem(t), nil, 1, cachekit.LocalOptions{TTL: time.Hour})[0]
	var fl flaky
	fl.version.Store(1)
	f := decorator.New(n.typed, fl.fn, &decorator.Options[string]{Name: "f", TTL: 40 * time.Millisecond,
		FailSafeMaxStale: time.Hour, FailSafeThrottle: time.Hour})
	if v, _ := f.Call(bg, "k"); v != 1 {
		t.Fatal(v)
	}
	f.Wait()
	time.Sleep(60 * time.Millisecond) // stale now
	fl.fail.Store(true)
	n.ops.reset()
	if v, err := f.Call(bg, "k"); err != nil || v != 1 || fl.calls.Load() != 2 {
		t.Fatalf("stale local entry, fn failing: %d, %v, %d calls of fn; want the stale 1 after a call", v, err, fl.calls.Load())
	}
	if g := n.ops.n[cachekit.OpGet].Load(); g != 0 {
		t.Fatalf("the stale value came from %d cache Gets; want 0 (the local tier had it)", g)
	}
	f.Wait()
	n.ops.reset()
	for range 5 {
		if v, err := f.Call(bg, "k"); err != nil || v != 1 {
			t.Fatalf("throttled: %d, %v; want 1", v, err)
		}
	}
	if fl.calls.Load() != 2 || n.ops.total() != 0 || n.ops.event(cachekit.EventStaleServed) != 5 {
		t.Fatalf("throttled: %d calls of fn, %d cache operations, %d stale_served; want 2, 0, 5",
			fl.calls.Load(), n.ops.total(), n.ops.event(cachekit.EventStaleServed))
	}
}

// Negative caching through the local tier: "not found" is remembered in
// memory.
func TestLocalTierNegativeCaching(t *testing.T) {
	n := newNodes[int](t, newMem(t), nil, 1, cachekit.LocalOptions{})[0]
	var calls atomic.Int32
	f := decorator.New(n.typed, func(context.Context, string) (int, error) { calls.Add(1); return 0, errNotFound },
		&decorator.Options[string]{Name: "f", NegativeTTL: time.Hour, NegativeError: errNotFound})
	f.Call(bg, "k")
	f.Wait()
	n.ops.reset()
	for range 3 {
		if _, err := f.Call(bg, "k"); err != errNotFound {
			t.Fatalf("err = %v; want NegativeError itself", err)
		}
	}
	if calls.Load() != 1 || n.ops.total() != 0 {
		t.Fatalf("%d calls of fn, %d cache operations; want 1 and 0", calls.Load(), n.ops.total())
	}
}

// Early refresh from local hits: the refresh's guard compares the cache
// with the bytes of the local entry, so it stores, and the new value
// replaces the local one.
func TestLocalTierEarlyRefresh(t *testing.T) {
	n := newNodes[int](t, newMem(t), nil, 1, cachekit.LocalOptions{TTL: time.Hour})[0]
	var version atomic.Int32
	version.Store(1)
	f := decorator.New(n.typed, func(context.Context, string) (int, error) { return int(version.Load()), nil },
		&decorator.Options[string]{Name: "f", TTL: time.Minute, RefreshAhead: 0.0001}) // due after 6ms
	f.Call(bg, "k")
	f.Wait()
	time.Sleep(20 * time.Millisecond)
	version.Store(2)
	n.ops.reset()
	if v, _ := f.Call(bg, "k"); v != 1 {
		t.Fatalf("hit = %d; want the fresh 1", v)
	}
	f.Wait()
	if n.ops.event(cachekit.EventEarlyRefresh) != 1 {
		t.Fatalf("early_refresh %d; want 1", n.ops.event(cachekit.EventEarlyRefresh))
	}
	if v, _ := f.Call(bg, "k"); v != 2 {
		t.Fatalf("after the refresh = %d; want 2", v)
	}
	f.Wait()
}

// The lease still runs fn once across processes that have local tiers.
func TestLocalTierLease(t *testing.T) {
	mem := newMem(t)
	nodes := newNodes[string](t, mem, cachekit.NewMemoryBackplane(), 4, cachekit.LocalOptions{})
	var calls atomic.Int32
	release := make(chan struct{})
	fn := func(context.Context, string) (string, error) {
		calls.Add(1)
		<-release
		return "v", nil
	}
	var wg sync.WaitGroup
	var fs []*decorator.Func[string, string]
	for _, n := range nodes {
		f := decorator.New(n.typed, fn, &decorator.Options[string]{Name: "f", Lease: true, LeasePoll: 5 * time.Millisecond})
		fs = append(fs, f)
		for range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if v, err := f.Call(bg, "cold"); err != nil || v != "v" {
					t.Errorf("got %q, %v", v, err)
				}
			}()
		}
	}
	eventually(t, "a holder to run fn", func() bool { return calls.Load() == 1 })
	close(release)
	wg.Wait()
	for _, f := range fs {
		f.Wait()
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("fn ran %d times across 4 processes; want 1", n)
	}
	if ok, _ := mem.Exists(bg, decorator.LeaseKey(fs[0], "cold")); ok {
		t.Fatal("the lease key is still there after the load")
	}
	for i, n := range nodes { // and then each process serves it from memory
		n.ops.reset()
		fs[i].Call(bg, "cold") // a process that got the value from its poll reads it once
		n.ops.reset()
		if v, _ := fs[i].Call(bg, "cold"); v != "v" || n.ops.total() != 0 {
			t.Fatalf("process %d: %q with %d cache operations; want \"v\" from memory", i, v, n.ops.total())
		}
	}
}

// A value read from the cache is not kept when a write of the key (here,
// another process's, arriving by the backplane) lands between the read
// and the fill: the next call reads the cache again and sees the write.
func TestLocalTierReadRacingAWriteIsNotKept(t *testing.T) {
	mem := newMem(t)
	bp := cachekit.NewMemoryBackplane()
	other := newNodes[int](t, mem, bp, 1, cachekit.LocalOptions{})[0]
	var armed atomic.Bool
	var key string
	hook := cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error {
		err := op.Next(ctx)
		if op.Kind() == cachekit.OpGet && armed.CompareAndSwap(true, false) {
			if err := other.typed.Set(ctx, key, 2); err != nil {
				return err
			}
		}
		return err
	})
	typed := cachekit.NewTyped[int](cachekit.WithHooks(mem, hook), &cachekit.TypedOptions{Local: &cachekit.LocalOptions{TTL: time.Hour}, Backplane: bp})
	t.Cleanup(func() { typed.Close() })
	f := decorator.New(typed, func(context.Context, string) (int, error) { return 1, nil }, &decorator.Options[string]{Name: "f"})
	key, _ = f.Key("k")
	if err := mem.Set(bg, key, []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	if v, _ := f.Call(bg, "k"); v != 1 {
		t.Fatalf("the racing read = %d; want what it read, 1", v)
	}
	if v, _ := f.Call(bg, "k"); v != 2 {
		t.Fatalf("the next call = %d; want the write that raced the read, 2", v)
	}
}

// CachedMany reads through the local tier: the keys held in memory are
// served from there and only the others are read, in one GetMany.
func TestLocalTierCachedMany(t *testing.T) {
	for _, format := range formats {
		t.Run(format.name, func(t *testing.T) {
			n := newNodes[int](t, newMem(t), nil, 1, cachekit.LocalOptions{})[0]
			var calls atomic.Int32
			opts := format.opts
			if format.name == "envelope" {
				opts.NegativeTTL = time.Hour
			}
			f := decorator.NewMany(n.typed, func(_ context.Context, args []string) (map[string]int, error) {
				calls.Add(1)
				out := map[string]int{}
				for _, a := range args {
					if a != "absent" {
						out[a] = len(a)
					}
				}
				return out, nil
			}, &opts)
			f.Call(bg, []string{"a", "bb", "absent"})
			f.Wait()
			n.ops.reset()
			got, err := f.Call(bg, []string{"a", "bb", "absent"})
			if err != nil || len(got) != 2 || got["bb"] != 2 {
				t.Fatalf("second call = %v, %v", got, err)
			}
			wantOps := 0
			if format.name == "plain" {
				wantOps = 1 // "absent" is not remembered: it is read, and loaded
			}
			if n.ops.n[cachekit.OpGetMany].Load() != int32(wantOps) {
				t.Fatalf("%d GetManys for the second call; want %d", n.ops.n[cachekit.OpGetMany].Load(), wantOps)
			}
			f.Wait()
			n.ops.reset()
			got, err = f.Call(bg, []string{"a", "ccc"})
			if err != nil || got["a"] != 1 || got["ccc"] != 3 {
				t.Fatalf("third call = %v, %v", got, err)
			}
			n.ops.mu.Lock()
			keys := n.ops.keys
			n.ops.mu.Unlock()
			if len(keys) != 1 || keys[0] != 1 {
				t.Fatalf("GetManys of the third call read %v keys; want one of 1 (\"a\" is in memory)", keys)
			}
			f.Wait()
		})
	}
}

// With LocalOptions.Copy, each hit returns a value of its own.
func TestLocalTierCopy(t *testing.T) {
	for _, format := range formats {
		t.Run(format.name, func(t *testing.T) {
			n := newNodes[[]int](t, newMem(t), nil, 1, cachekit.LocalOptions{Copy: true})[0]
			opts := format.opts
			f := decorator.New(n.typed, func(context.Context, string) ([]int, error) { return []int{1, 2}, nil }, &opts)
			f.Call(bg, "k")
			f.Wait()
			n.ops.reset()
			v, _ := f.Call(bg, "k")
			v[0] = 99
			w, _ := f.Call(bg, "k")
			if w[0] != 1 || n.ops.total() != 0 {
				t.Fatalf("after a caller modified its value, the next hit = %v with %d cache operations; want [1 2] from memory", w, n.ops.total())
			}
		})
	}
}

// After Typed.Close the decorated function reads the cache, as without a
// local tier.
func TestLocalTierClosed(t *testing.T) {
	for _, format := range formats {
		t.Run(format.name, func(t *testing.T) {
			n := newNodes[int](t, newMem(t), nil, 1, cachekit.LocalOptions{})[0]
			opts := format.opts
			f := decorator.New(n.typed, func(context.Context, string) (int, error) { return 5, nil }, &opts)
			f.Call(bg, "k")
			f.Wait()
			n.typed.Close()
			n.ops.reset()
			for range 2 {
				if v, err := f.Call(bg, "k"); err != nil || v != 5 {
					t.Fatalf("after Close: %d, %v", v, err)
				}
			}
			if g := n.ops.n[cachekit.OpGet].Load(); g != 2 {
				t.Fatalf("%d cache Gets for 2 calls after Close; want 2", g)
			}
		})
	}
}

// countingBackplane records the keys published on a memory backplane.
type countingBackplane struct {
	cachekit.Backplane
	mu   sync.Mutex
	keys []string
}

func (b *countingBackplane) Publish(ctx context.Context, inv cachekit.Invalidation) error {
	b.mu.Lock()
	b.keys = append(b.keys, inv.Keys...)
	b.mu.Unlock()
	return b.Backplane.Publish(ctx, inv)
}

// With a local tier, the lease's writes are not published: no process
// holds lease keys locally. The value's write is.
func TestLocalTierLeaseWritesAreNotPublished(t *testing.T) {
	bp := &countingBackplane{Backplane: cachekit.NewMemoryBackplane()}
	n := newNodes[int](t, newMem(t), bp, 1, cachekit.LocalOptions{})[0]
	f := decorator.New(n.typed, func(context.Context, string) (int, error) { return 1, nil },
		&decorator.Options[string]{Name: "f", Lease: true})
	f.Call(bg, "k")
	f.Wait()
	key, _ := f.Key("k")
	if n.ops.n[cachekit.OpAdd].Load() != 1 || n.ops.n[cachekit.OpCompareAndDelete].Load() != 1 {
		t.Fatalf("lease operations: %d Add, %d CompareAndDelete; want 1 and 1", n.ops.n[cachekit.OpAdd].Load(), n.ops.n[cachekit.OpCompareAndDelete].Load())
	}
	bp.mu.Lock()
	defer bp.mu.Unlock()
	if len(bp.keys) != 1 || bp.keys[0] != key {
		t.Fatalf("published %q; want only the value's key %q", bp.keys, key)
	}
}

// A local hit allocates nothing, in both formats, with a struct value and
// an int64 or a string argument.
func TestLocalTierHitAllocatesNothing(t *testing.T) {
	type user struct {
		ID   int64
		Name string
	}
	for _, format := range []decorator.Options[int64]{
		{Name: "plain"},
		{Name: "envelope", TTL: time.Hour, FailSafeMaxStale: time.Hour},
	} {
		typed := cachekit.NewTyped[user](newMem(t), &cachekit.TypedOptions{Local: &cachekit.LocalOptions{}})
		opts := format
		f := decorator.New(typed, func(context.Context, int64) (user, error) { return user{1, "ada"}, nil }, &opts)
		f.Call(bg, 1)
		f.Wait()
		if n := testing.AllocsPerRun(1000, func() { _, _ = f.Call(bg, 1) }); n != 0 {
			t.Errorf("%s: a local hit allocates %v times; want 0", format.Name, n)
		}
		opts.Name += "-string"
		fs := decorator.New(typed, func(context.Context, string) (user, error) { return user{1, "ada"}, nil },
			&decorator.Options[string]{Name: opts.Name, TTL: opts.TTL, FailSafeMaxStale: opts.FailSafeMaxStale})
		fs.Call(bg, "1")
		fs.Wait()
		if n := testing.AllocsPerRun(1000, func() { _, _ = fs.Call(bg, "1") }); n != 0 {
			t.Errorf("%s: a local hit allocates %v times; want 0", opts.Name, n)
		}
		typed.Close()
	}
}

// In the plain format a value read from the cache is kept locally only if
// the function would store it: SkipCache and a negative TTLFunc leave it
// in the cache alone.
func TestLocalTierSkipCacheAppliesToReads(t *testing.T) {
	for name, opts := range map[string]decorator.Options[string]{
		"SkipCache": {Name: "f", SkipCache: func(_ string, v any) bool { return v.(int) == 7 }},
		"TTLFunc":   {Name: "f", TTLFunc: func(_ string, v any) time.Duration { return time.Duration(v.(int)-8) * time.Hour }},
	} {
		t.Run(name, func(t *testing.T) {
			mem := newMem(t)
			writer := decorator.New(cachekit.NewTyped[int](mem, nil), func(context.Context, string) (int, error) { return 7, nil },
				&decorator.Options[string]{Name: "f"})
			writer.Call(bg, "k")
			writer.Wait()
			n := newNodes[int](t, mem, nil, 1, cachekit.LocalOptions{})[0]
			opts := opts
			f := decorator.New(n.typed, func(context.Context, string) (int, error) { t.Error("fn ran for a stored value"); return 0, nil }, &opts)
			for range 3 {
				if v, err := f.Call(bg, "k"); err != nil || v != 7 {
					t.Fatalf("= %d, %v; want the stored 7", v, err)
				}
			}
			if g := n.ops.n[cachekit.OpGet].Load(); g != 3 {
				t.Fatalf("%d cache Gets for 3 calls; want 3 (the value is not kept locally)", g)
			}
		})
	}
}
