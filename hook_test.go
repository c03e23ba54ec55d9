package cachekit_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
	"github.com/cachekit/cachekit/cachetest"
)

var hookPassThrough = cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error {
	return op.Next(ctx)
})

// TestHooksConformance runs the conformance suite on memory caches wrapped
// in one and in two pass-through hooks.
func TestHooksConformance(t *testing.T) {
	for _, n := range []int{1, 2} {
		t.Run(fmt.Sprintf("%dHooks", n), func(t *testing.T) {
			const maxValue = 1 << 20
			root := memory.New(&memory.Options{MaxBytes: 64 << 20, MaxValueSize: maxValue})
			t.Cleanup(func() { root.Close() })
			hooks := make([]cachekit.Hook, n)
			for i := range hooks {
				hooks[i] = hookPassThrough
			}
			cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
				return cachekit.WithHooks(root.WithNamespace(ns), hooks...)
			}, &cachetest.Options{MaxValueSize: maxValue, UnnamespacedClear: cachetest.UnnamespacedClearRemoves})
		})
	}
}

func TestWithHooksNone(t *testing.T) {
	c := memory.New(nil)
	defer c.Close()
	if got := cachekit.WithHooks(c); got != cachekit.Cache(c) {
		t.Errorf("WithHooks(c) = %T, want c itself", got)
	}
	if got := cachekit.WithHooks(c, nil, nil); got != cachekit.Cache(c) {
		t.Errorf("WithHooks(c, nil, nil) = %T, want c itself", got)
	}
}

// hookTrace is a hook that appends "name>" before and "<name" after Next.
type hookTrace struct {
	name string
	mu   *sync.Mutex
	log  *[]string
}

func (h hookTrace) ProcessOp(ctx context.Context, op *cachekit.Op) error {
	h.add(h.name + ">" + op.Name())
	err := op.Next(ctx)
	h.add("<" + h.name)
	return err
}

func (h hookTrace) OnEvent(ctx context.Context, ev cachekit.Event) {
	h.add(h.name + ":" + string(ev.Kind))
}

func (h hookTrace) add(s string) {
	h.mu.Lock()
	*h.log = append(*h.log, s)
	h.mu.Unlock()
}

func hookTraces(names ...string) (func() []string, []cachekit.Hook) {
	var (
		mu  sync.Mutex
		log []string
	)
	var hooks []cachekit.Hook
	for _, n := range names {
		hooks = append(hooks, hookTrace{n, &mu, &log})
	}
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := slices.Clone(log)
		log = log[:0]
		return out
	}, hooks
}

func TestHookOrder(t *testing.T) {
	ctx := context.Background()
	m := memory.New(nil)
	defer m.Close()
	read, hooks := hookTraces("a", "b", "c")
	c := cachekit.WithHooks(m, hooks...)
	if err := c.Set(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	want := []string{"a>Set", "b>Set", "c>Set", "<c", "<b", "<a"}
	if got := read(); !slices.Equal(got, want) {
		t.Errorf("order = %v, want %v (the first hook is the outermost)", got, want)
	}

	// Wrapping a wrapped cache puts the new hooks outside the old ones, in
	// one chain.
	read2, outer := hookTraces("x", "y")
	c2 := cachekit.WithHooks(c, outer...)
	if _, err := c2.Get(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if got, want := read2(), []string{"x>Get", "y>Get", "<y", "<x"}; !slices.Equal(got, want) {
		t.Errorf("outer hooks = %v, want %v", got, want)
	}
	if got, want := read(), []string{"a>Get", "b>Get", "c>Get", "<c", "<b", "<a"}; !slices.Equal(got, want) {
		t.Errorf("inner hooks = %v, want %v", got, want)
	}
	if u, ok := c2.(interface{ Unwrap() cachekit.Cache }); !ok || u.Unwrap() != cachekit.Cache(m) {
		t.Errorf("WithHooks of a hooked cache does not unwrap to the backend")
	}

	// Events go to the hooks in the same order, outer hooks first.
	cachekit.Emit(ctx, c2, cachekit.Event{Kind: cachekit.EventLoad, Key: "k"})
	if got, want := read2(), []string{"x:load", "y:load"}; !slices.Equal(got, want) {
		t.Errorf("outer events = %v, want %v", got, want)
	}
	if got, want := read(), []string{"a:load", "b:load", "c:load"}; !slices.Equal(got, want) {
		t.Errorf("inner events = %v, want %v", got, want)
	}
}

// hookRecorded is what a hook saw of one operation.
type hookRecorded struct {
	Name    string
	Kind    cachekit.OpKind
	Key     string
	Keys    []string
	TTL     time.Duration
	Delta   int64
	Size    int
	NumKeys int
	Outcome cachekit.Outcome
	Hits    int
	Misses  int
	Count   int
	OK      bool
	N       int64
	Failed  bool
}

type hookRecorder struct {
	mu  sync.Mutex
	ops []hookRecorded
}

func (r *hookRecorder) ProcessOp(ctx context.Context, op *cachekit.Op) error {
	before := hookRecorded{Size: op.Size()}
	err := op.Next(ctx)
	if err != op.Err() {
		panic("Err() differs from what Next returned")
	}
	rec := hookRecorded{
		Name: op.Name(), Kind: op.Kind(), Key: op.Key, Keys: slices.Clone(op.Keys), TTL: op.TTL,
		Delta: op.Delta, Size: op.Size(), NumKeys: op.NumKeys(), Outcome: op.Outcome(),
		Hits: op.Hits(), Misses: op.Misses(), Count: op.Count, OK: op.OK, N: op.N, Failed: err != nil,
	}
	if op.Kind() == cachekit.OpSet && before.Size != rec.Size {
		panic("Set's size changed across Next")
	}
	r.mu.Lock()
	r.ops = append(r.ops, rec)
	r.mu.Unlock()
	return err
}

func (r *hookRecorder) take() []hookRecorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.ops
	r.ops = nil
	return out
}

// TestOpFields checks what a hook sees of every operation: name, inputs,
// outputs, size, outcome, hits and misses.
func TestHookOpFields(t *testing.T) {
	ctx := context.Background()
	m := memory.New(nil)
	defer m.Close()
	rec := &hookRecorder{}
	c := cachekit.WithHooks(m, rec)

	_ = c.Set(ctx, "a", []byte("abcde"), time.Minute)
	_, _ = c.Get(ctx, "a")
	_, _ = c.Get(ctx, "nope")
	_ = c.SetMany(ctx, map[string][]byte{"b": []byte("xy"), "c": []byte("z")}, time.Hour)
	_, _ = c.GetMany(ctx, []string{"a", "b", "zz", "a"})
	_ = c.Add(ctx, "a", []byte("v"), 0)
	_ = c.Add(ctx, "d", []byte("vv"), 2*time.Second)
	_, _ = c.Exists(ctx, "a")
	_, _ = c.Exists(ctx, "zz")
	_, _ = c.Increment(ctx, "n", 5)
	_, _ = c.Increment(ctx, "a", 1) // not an integer
	_, _ = c.Expire(ctx, "a", time.Second)
	_, _ = c.Delete(ctx, "a", "b", "zz")
	_ = c.Clear(ctx)
	_, _ = c.Get(ctx, "") // invalid key

	want := []hookRecorded{
		{Name: "Set", Kind: cachekit.OpSet, Key: "a", TTL: time.Minute, Size: 5, NumKeys: 1, Outcome: cachekit.OutcomeOK},
		{Name: "Get", Kind: cachekit.OpGet, Key: "a", Size: 5, NumKeys: 1, Outcome: cachekit.OutcomeHit, Hits: 1},
		{Name: "Get", Kind: cachekit.OpGet, Key: "nope", NumKeys: 1, Outcome: cachekit.OutcomeMiss, Misses: 1, Failed: true},
		{Name: "SetMany", Kind: cachekit.OpSetMany, TTL: time.Hour, Size: 3, NumKeys: 2, Outcome: cachekit.OutcomeOK},
		{Name: "GetMany", Kind: cachekit.OpGetMany, Keys: []string{"a", "b", "zz", "a"}, Size: 7, NumKeys: 4, Outcome: cachekit.OutcomeOK, Hits: 3, Misses: 1},
		{Name: "Add", Kind: cachekit.OpAdd, Key: "a", Size: 1, NumKeys: 1, Outcome: cachekit.OutcomeExists, Failed: true},
		{Name: "Add", Kind: cachekit.OpAdd, Key: "d", TTL: 2 * time.Second, Size: 2, NumKeys: 1, Outcome: cachekit.OutcomeOK},
		{Name: "Exists", Kind: cachekit.OpExists, Key: "a", NumKeys: 1, Outcome: cachekit.OutcomeHit, Hits: 1, OK: true},
		{Name: "Exists", Kind: cachekit.OpExists, Key: "zz", NumKeys: 1, Outcome: cachekit.OutcomeMiss, Misses: 1},
		{Name: "Increment", Kind: cachekit.OpIncrement, Key: "n", Delta: 5, NumKeys: 1, Outcome: cachekit.OutcomeOK, N: 5},
		{Name: "Increment", Kind: cachekit.OpIncrement, Key: "a", Delta: 1, NumKeys: 1, Outcome: cachekit.OutcomeError, Failed: true},
		{Name: "Expire", Kind: cachekit.OpExpire, Key: "a", TTL: time.Second, NumKeys: 1, Outcome: cachekit.OutcomeOK, OK: true},
		{Name: "Delete", Kind: cachekit.OpDelete, Keys: []string{"a", "b", "zz"}, NumKeys: 3, Outcome: cachekit.OutcomeOK, Count: 2},
		{Name: "Clear", Kind: cachekit.OpClear, Outcome: cachekit.OutcomeOK},
		{Name: "Get", Kind: cachekit.OpGet, NumKeys: 1, Outcome: cachekit.OutcomeError, Failed: true},
	}
	got := rec.take()
	if len(got) != len(want) {
		t.Fatalf("hookRecorded %d operations, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if fmt.Sprintf("%+v", g) != fmt.Sprintf("%+v", w) {
			t.Errorf("op %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
}

// hookCounting is a Cache that counts the calls of each method it passes on.
type hookCounting struct {
	cachekit.Cache
	calls sync.Map // method name -> *atomic.Int64
}

func (c *hookCounting) inc(name string) {
	v, _ := c.calls.LoadOrStore(name, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (c *hookCounting) n(name string) int64 {
	v, ok := c.calls.Load(name)
	if !ok {
		return 0
	}
	return v.(*atomic.Int64).Load()
}

func (c *hookCounting) Get(ctx context.Context, key string) ([]byte, error) {
	c.inc("Get")
	return c.Cache.Get(ctx, key)
}

func (c *hookCounting) GetMany(ctx context.Context, keys []string) (map[string][]byte, error) {
	c.inc("GetMany")
	return c.Cache.GetMany(ctx, keys)
}

func (c *hookCounting) Close() error {
	c.inc("Close")
	return c.Cache.Close()
}

func TestHookGetManyIsOneCall(t *testing.T) {
	ctx := context.Background()
	m := memory.New(nil)
	inner := &hookCounting{Cache: m}
	c := cachekit.WithHooks(inner, hookPassThrough, &hookRecorder{})
	_ = c.SetMany(ctx, map[string][]byte{"a": {1}, "b": {2}}, 0)
	got, err := c.GetMany(ctx, []string{"a", "b", "c"})
	if err != nil || len(got) != 2 {
		t.Fatalf("GetMany = %v, %v", got, err)
	}
	if g, m := inner.n("GetMany"), inner.n("Get"); g != 1 || m != 0 {
		t.Errorf("the wrapped cache got %d GetMany and %d Get calls, want 1 and 0", g, m)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n := inner.n("Close"); n != 1 {
		t.Errorf("Close reached the wrapped cache %d times, want 1", n)
	}
	if _, err := c.Get(ctx, "a"); !errors.Is(err, cachekit.ErrClosed) {
		t.Errorf("Get after Close: %v, want ErrClosed", err)
	}
}

// TestShortCircuit checks that a hook can answer without the cache, and
// that the hooks inside it and the cache are then not called.
func TestHookShortCircuit(t *testing.T) {
	ctx := context.Background()
	m := memory.New(nil)
	defer m.Close()
	inner := &hookCounting{Cache: m}
	answer := cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error {
		switch op.Kind() {
		case cachekit.OpGet:
			if strings.HasPrefix(op.Key, "fixed:") {
				op.Value = []byte("answer")
				return nil
			}
		case cachekit.OpGetMany:
			op.Values = map[string][]byte{op.Keys[0]: []byte("first")}
			return nil
		case cachekit.OpExists:
			op.OK = true
			return nil
		case cachekit.OpIncrement:
			op.N = 42
			return nil
		case cachekit.OpDelete:
			op.Count = 7
			return nil
		case cachekit.OpSet:
			return errors.New("read-only")
		}
		return op.Next(ctx)
	})
	rec := &hookRecorder{}
	outer := &hookRecorder{}
	c := cachekit.WithHooks(inner, outer, answer, rec)

	if v, err := c.Get(ctx, "fixed:1"); err != nil || string(v) != "answer" {
		t.Errorf("Get = %q, %v; want answer", v, err)
	}
	if n := inner.n("Get"); n != 0 {
		t.Errorf("the cache saw %d Gets, want 0", n)
	}
	if got, err := c.GetMany(ctx, []string{"x", "y"}); err != nil || len(got) != 1 || string(got["x"]) != "first" {
		t.Errorf("GetMany = %q, %v", got, err)
	}
	if ok, err := c.Exists(ctx, "x"); !ok || err != nil {
		t.Errorf("Exists = %v, %v", ok, err)
	}
	if n, err := c.Increment(ctx, "x", 1); n != 42 || err != nil {
		t.Errorf("Increment = %v, %v", n, err)
	}
	if n, err := c.Delete(ctx, "x"); n != 7 || err != nil {
		t.Errorf("Delete = %v, %v", n, err)
	}
	err := c.Set(ctx, "x", []byte("v"), 0)
	var ce *cachekit.Error
	if !errors.As(err, &ce) || ce.Op != "Set" || ce.Key != "x" || ce.Err.Error() != "read-only" {
		t.Errorf("Set = %v; want a *cachekit.Error{Op: Set, Key: x} around the hook's error", err)
	}
	if got := rec.take(); len(got) != 0 {
		t.Errorf("the hook inside the short circuit saw %d operations, want 0", len(got))
	}
	// The outer hook saw the answers as outputs.
	got := outer.take()
	if len(got) != 6 {
		t.Fatalf("outer hook saw %d operations, want 6", len(got))
	}
	if got[0].Outcome != cachekit.OutcomeHit || got[0].Size != 6 {
		t.Errorf("outer hook saw Get %+v", got[0])
	}
	if got[5].Outcome != cachekit.OutcomeError {
		t.Errorf("outer hook saw Set %+v, want an error", got[5])
	}
	// Other keys go through.
	if _, err := c.Get(ctx, "other"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Errorf("Get(other) = %v, want ErrNotFound", err)
	}
}

// TestModify checks that a hook can change inputs and outputs: here it
// prefixes keys and upper-cases values read.
func TestHookModify(t *testing.T) {
	ctx := context.Background()
	m := memory.New(nil)
	defer m.Close()
	prefix := cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error {
		if op.Key != "" {
			op.Key = "p:" + op.Key
		}
		err := op.Next(ctx)
		if op.Kind() == cachekit.OpGet && err == nil {
			op.Value = []byte(strings.ToUpper(string(op.Value)))
		}
		return err
	})
	c := cachekit.WithHooks(m, prefix)
	if err := c.Set(ctx, "k", []byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	if v, err := m.Get(ctx, "p:k"); err != nil || string(v) != "hello" {
		t.Errorf("backend has %q, %v under p:k", v, err)
	}
	if v, err := c.Get(ctx, "k"); err != nil || string(v) != "HELLO" {
		t.Errorf("Get = %q, %v; want HELLO", v, err)
	}
	// Errors from the cache name the key the cache saw.
	_, err := c.Get(ctx, "absent")
	var ce *cachekit.Error
	if !errors.As(err, &ce) || !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("Get(absent) = %v", err)
	}
	if ce.Key != "p:absent" && ce.Key != "absent" {
		t.Errorf("error key %q", ce.Key)
	}
}

// TestRetry checks that a hook may call Next more than once, and that the
// hooks inside it run again each time.
func TestHookRetry(t *testing.T) {
	ctx := context.Background()
	m := memory.New(nil)
	defer m.Close()
	var attempts atomic.Int32
	flaky := cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error {
		if attempts.Add(1) < 3 {
			return errors.New("transient")
		}
		return op.Next(ctx)
	})
	retry := cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error {
		var err error
		for range 5 {
			if err = op.Next(ctx); err == nil || op.Outcome() != cachekit.OutcomeError {
				return err
			}
		}
		return err
	})
	read, tr := hookTraces("t")
	c := cachekit.WithHooks(m, retry, tr[0], flaky)
	if err := c.Set(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatalf("Set = %v", err)
	}
	if n := attempts.Load(); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
	if got := read(); len(got) != 6 {
		t.Errorf("the middle hook ran %v, want three times", got)
	}
	if v, err := c.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Errorf("Get = %q, %v", v, err)
	}
}

// hookEventCache is a Cache that handles events itself.
type hookEventCache struct {
	cachekit.Cache
	mu   sync.Mutex
	seen []cachekit.EventKind
}

func (c *hookEventCache) HandleEvent(ctx context.Context, ev cachekit.Event) {
	c.mu.Lock()
	c.seen = append(c.seen, ev.Kind)
	c.mu.Unlock()
}

func TestHookEventsForwarded(t *testing.T) {
	ctx := context.Background()
	m := memory.New(nil)
	defer m.Close()
	inner := &hookEventCache{Cache: m}
	var order []string
	var mu sync.Mutex
	eh := cachekit.EventHookFunc(func(ctx context.Context, ev cachekit.Event) {
		mu.Lock()
		order = append(order, "hook:"+string(ev.Kind))
		mu.Unlock()
	})
	c := cachekit.WithHooks(inner, hookPassThrough, eh)
	typed := cachekit.NewTyped[string](c, nil)
	v, err := typed.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "x", nil })
	if err != nil || v != "x" {
		t.Fatalf("GetOrLoad = %q, %v", v, err)
	}
	if !slices.Equal(order, []string{"hook:load"}) {
		t.Errorf("the event hook saw %v", order)
	}
	if !slices.Equal(inner.seen, []cachekit.EventKind{cachekit.EventLoad}) {
		t.Errorf("the wrapped cache saw %v, want the event forwarded", inner.seen)
	}

	// An EventHookFunc alone is enough to make a hooked cache.
	only := cachekit.WithHooks(m, eh)
	if only == cachekit.Cache(m) {
		t.Fatal("WithHooks with an EventHookFunc returned the cache itself")
	}
	cachekit.Emit(ctx, only, cachekit.Event{Kind: cachekit.EventDecodeError})
	if order[len(order)-1] != "hook:decode_error" {
		t.Errorf("the event hook saw %v", order)
	}
	if err := only.Set(ctx, "z", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
}

func TestContextErrorsThroughHooks(t *testing.T) {
	m := memory.New(nil)
	defer m.Close()
	rec := &hookRecorder{}
	c := cachekit.WithHooks(m, rec)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Get(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get = %v, want context.Canceled", err)
	}
	if got := rec.take(); len(got) != 1 || got[0].Outcome != cachekit.OutcomeError {
		t.Errorf("hook saw %+v, want one error", got)
	}
}

func TestHookNoAllocations(t *testing.T) {
	ctx := context.Background()
	m := memory.New(nil)
	defer m.Close()
	_ = m.Set(ctx, "k", []byte("v"), 0)
	c := cachekit.WithHooks(m, hookPassThrough, hookPassThrough)
	bare := testing.AllocsPerRun(1000, func() { _, _ = m.Get(ctx, "k") })
	hooked := testing.AllocsPerRun(1000, func() { _, _ = c.Get(ctx, "k") })
	if hooked != bare {
		t.Errorf("Get allocates %v times through two hooks, %v times bare; want the same", hooked, bare)
	}
	bare = testing.AllocsPerRun(1000, func() { _, _ = m.Increment(ctx, "n", 1) })
	hooked = testing.AllocsPerRun(1000, func() { _, _ = c.Increment(ctx, "n", 1) })
	if hooked != bare {
		t.Errorf("Increment allocates %v times through two hooks, %v times bare; want the same", hooked, bare)
	}
}

func TestHookStrings(t *testing.T) {
	names := []string{"Get", "GetMany", "Set", "SetMany", "Add", "Delete", "Exists", "Increment", "Expire", "Clear", "CompareAndDelete", "CompareAndSwap"}
	if len(names) != cachekit.NumOpKinds {
		t.Fatalf("NumOpKinds = %d", cachekit.NumOpKinds)
	}
	for i, n := range names {
		if got := cachekit.OpKind(i).String(); got != n {
			t.Errorf("OpKind(%d) = %q, want %q", i, got, n)
		}
	}
	if got := cachekit.OpKind(200).String(); got != "OpKind(200)" {
		t.Errorf("OpKind(200) = %q", got)
	}
	for o, want := range map[cachekit.Outcome]string{
		cachekit.OutcomeOK: "ok", cachekit.OutcomeHit: "hit", cachekit.OutcomeMiss: "miss",
		cachekit.OutcomeExists: "exists", cachekit.OutcomeError: "error", 9: "Outcome(9)",
	} {
		if got := o.String(); got != want {
			t.Errorf("Outcome(%d) = %q, want %q", o, got, want)
		}
	}
}

// plainCache hides every method of a Cache beyond the Cache interface, such
// as a backend's CompareAndDelete.
type plainCache struct{ cachekit.Cache }

// cadCache is a Cache with CompareAndDelete, for tests that must not depend
// on a backend's.
type cadCache struct {
	cachekit.Cache
	mu sync.Mutex
}

func (c *cadCache) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, err := c.Cache.Get(ctx, key)
	switch {
	case errors.Is(err, cachekit.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	case string(v) != string(old):
		return false, nil
	}
	_, err = c.Cache.Delete(ctx, key)
	return err == nil, err
}

// casCache is a Cache with CompareAndSwap, for tests that must not depend
// on a backend's.
type casCache struct {
	cachekit.Cache
	mu sync.Mutex
}

func (c *casCache) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, err := c.Cache.Get(ctx, key)
	switch {
	case errors.Is(err, cachekit.ErrNotFound):
		if old != nil {
			return false, nil
		}
	case err != nil:
		return false, err
	case old == nil || string(v) != string(old):
		return false, nil
	}
	return true, c.Cache.Set(ctx, key, new, ttl)
}

// bothCache has CompareAndDelete and CompareAndSwap.
type bothCache struct {
	*cadCache
	cas *casCache
}

func (c bothCache) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	return c.cas.CompareAndSwap(ctx, key, old, new, ttl)
}

// WithHooks implements exactly the optional interfaces of the cache it wraps,
// for every combination, and wrapping again keeps them.
func TestHooksForwardOptionalInterfaces(t *testing.T) {
	ctx := context.Background()
	m := memory.New(nil)
	defer m.Close()
	for _, inner := range []cachekit.Cache{
		plainCache{m},
		&cadCache{Cache: plainCache{m}},
		&casCache{Cache: plainCache{m}},
		bothCache{&cadCache{Cache: plainCache{m}}, &casCache{Cache: plainCache{m}}},
	} {
		_, wantCAD := inner.(cachekit.CompareAndDeleter)
		_, wantCAS := inner.(cachekit.CompareAndSwapper)
		rec := &hookRecorder{}
		for depth, c := range []cachekit.Cache{cachekit.WithHooks(inner, rec), cachekit.WithHooks(cachekit.WithHooks(inner, rec), hookPassThrough)} {
			cad, gotCAD := c.(cachekit.CompareAndDeleter)
			cas, gotCAS := c.(cachekit.CompareAndSwapper)
			if gotCAD != wantCAD || gotCAS != wantCAS {
				t.Fatalf("WithHooks (depth %d) of %T: CompareAndDeleter %v, CompareAndSwapper %v; want %v, %v", depth+1, inner, gotCAD, gotCAS, wantCAD, wantCAS)
			}
			if u, ok := c.(interface{ Unwrap() cachekit.Cache }); !ok || u.Unwrap() != inner {
				t.Fatalf("WithHooks (depth %d) of %T does not unwrap to it", depth+1, inner)
			}
			if gotCAS {
				rec.take()
				if ok, err := cas.CompareAndSwap(ctx, "cas", nil, []byte("v1"), time.Minute); !ok || err != nil {
					t.Fatalf("CompareAndSwap(absent -> v1) = %v, %v", ok, err)
				}
				if ok, err := cas.CompareAndSwap(ctx, "cas", []byte("v0"), []byte("v2"), 0); ok || err != nil {
					t.Fatalf("CompareAndSwap(v0 -> v2) over v1 = %v, %v; want false", ok, err)
				}
				if ok, err := cas.CompareAndSwap(ctx, "cas", []byte("v1"), []byte("v22"), 0); !ok || err != nil {
					t.Fatalf("CompareAndSwap(v1 -> v22) = %v, %v; want true", ok, err)
				}
				if v, err := c.Get(ctx, "cas"); err != nil || string(v) != "v22" {
					t.Fatalf("Get after CompareAndSwap = %q, %v; want v22", v, err)
				}
				want := []hookRecorded{
					{Name: "CompareAndSwap", Kind: cachekit.OpCompareAndSwap, Key: "cas", TTL: time.Minute, Size: 2, NumKeys: 1, Outcome: cachekit.OutcomeOK, OK: true},
					{Name: "CompareAndSwap", Kind: cachekit.OpCompareAndSwap, Key: "cas", Size: 2, NumKeys: 1, Outcome: cachekit.OutcomeOK},
					{Name: "CompareAndSwap", Kind: cachekit.OpCompareAndSwap, Key: "cas", Size: 3, NumKeys: 1, Outcome: cachekit.OutcomeOK, OK: true},
					{Name: "Get", Kind: cachekit.OpGet, Key: "cas", Size: 3, NumKeys: 1, Outcome: cachekit.OutcomeHit, Hits: 1},
				}
				if got := rec.take(); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("hooks saw\n%+v\nwant\n%+v", got, want)
				}
				if _, err := c.Delete(ctx, "cas"); err != nil {
					t.Fatal(err)
				}
			}
			if gotCAD {
				_ = c.Set(ctx, "cad", []byte("x"), 0)
				if ok, err := cad.CompareAndDelete(ctx, "cad", []byte("x")); !ok || err != nil {
					t.Fatalf("CompareAndDelete = %v, %v; want true", ok, err)
				}
			}
		}
	}
}

// WithHooks forwards CompareAndDeleter when, and only when, the wrapped
// cache implements it, and runs it through the hooks (issue 12, item 17).
func TestHooksForwardCompareAndDelete(t *testing.T) {
	ctx := context.Background()
	m := memory.New(nil)
	defer m.Close()
	rec := &hookRecorder{}

	plain := cachekit.WithHooks(plainCache{m}, rec)
	if _, ok := plain.(cachekit.CompareAndDeleter); ok {
		t.Fatal("WithHooks of a cache without CompareAndDelete claims to have it")
	}
	if _, ok := cachekit.WithHooks(plain, hookPassThrough).(cachekit.CompareAndDeleter); ok {
		t.Fatal("WithHooks of a hooked cache without CompareAndDelete claims to have it")
	}

	inner := &cadCache{Cache: plainCache{m}}
	c := cachekit.WithHooks(inner, rec)
	cad, ok := c.(cachekit.CompareAndDeleter)
	if !ok {
		t.Fatal("WithHooks hides the wrapped cache's CompareAndDelete")
	}
	if u, ok := c.(interface{ Unwrap() cachekit.Cache }); !ok || u.Unwrap() != cachekit.Cache(inner) {
		t.Fatal("the CompareAndDeleter wrapper does not unwrap to the cache it wraps")
	}
	_ = c.Set(ctx, "lease", []byte("token-1"), 0)
	rec.take()
	if ok, err := cad.CompareAndDelete(ctx, "lease", []byte("token-2")); ok || err != nil {
		t.Fatalf("CompareAndDelete(wrong value) = %v, %v; want false, nil", ok, err)
	}
	if ok, err := cad.CompareAndDelete(ctx, "lease", []byte("token-1")); !ok || err != nil {
		t.Fatalf("CompareAndDelete(right value) = %v, %v; want true, nil", ok, err)
	}
	if _, err := c.Get(ctx, "lease"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("Get after CompareAndDelete = %v; want a miss", err)
	}
	want := []hookRecorded{
		{Name: "CompareAndDelete", Kind: cachekit.OpCompareAndDelete, Key: "lease", Size: 7, NumKeys: 1, Outcome: cachekit.OutcomeOK},
		{Name: "CompareAndDelete", Kind: cachekit.OpCompareAndDelete, Key: "lease", Size: 7, NumKeys: 1, Outcome: cachekit.OutcomeOK, OK: true},
		{Name: "Get", Kind: cachekit.OpGet, Key: "lease", NumKeys: 1, Outcome: cachekit.OutcomeMiss, Misses: 1, Failed: true},
	}
	if got := rec.take(); !slices.EqualFunc(got, want, func(a, b hookRecorded) bool { return fmt.Sprint(a) == fmt.Sprint(b) }) {
		t.Fatalf("hooks saw\n%+v\nwant\n%+v", got, want)
	}

	// Wrapping again keeps it, in one chain, and a hook can answer it.
	answer := cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error {
		if op.Kind() == cachekit.OpCompareAndDelete && op.Key == "fake" {
			op.OK = true
			return nil
		}
		return op.Next(ctx)
	})
	c2, ok := cachekit.WithHooks(c, answer).(cachekit.CompareAndDeleter)
	if !ok {
		t.Fatal("WithHooks of a hooked CompareAndDeleter hides CompareAndDelete")
	}
	if ok, err := c2.CompareAndDelete(ctx, "fake", []byte("x")); !ok || err != nil {
		t.Fatalf("CompareAndDelete answered by a hook = %v, %v; want true, nil", ok, err)
	}
	if ok, err := c2.CompareAndDelete(ctx, "", []byte("x")); ok || err == nil {
		t.Fatalf("CompareAndDelete(\"\") through two wrappers = %v, %v; want an error", ok, err)
	}
	if got := rec.take(); len(got) != 1 || got[0].Kind != cachekit.OpCompareAndDelete || !got[0].Failed {
		t.Fatalf("the inner hook saw %+v; want one failed CompareAndDelete (the outer hook answered the other)", got)
	}
}

// ExampleWithHooks shows a hook that counts misses per key prefix: the
// kind of thing a ready-made plugin can't know about your keys.
func ExampleWithHooks() {
	ctx := context.Background()
	var mu sync.Mutex
	misses := map[string]int{}
	byPrefix := cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error {
		err := op.Next(ctx) // run the operation
		if op.Outcome() == cachekit.OutcomeMiss {
			prefix, _, _ := strings.Cut(op.Key, ":")
			mu.Lock()
			misses[prefix]++
			mu.Unlock()
		}
		return err
	})

	c := cachekit.WithHooks(memory.New(nil), byPrefix)
	defer c.Close()

	_ = c.Set(ctx, "user:1", []byte("ada"), time.Minute)
	_, _ = c.Get(ctx, "user:1")
	_, _ = c.Get(ctx, "user:2")
	_, _ = c.Get(ctx, "session:9")
	_, _ = c.Get(ctx, "user:3")
	fmt.Println(misses)
	// Output:
	// map[session:1 user:2]
}

// A hook can also answer an operation itself, without the cache: here it
// refuses writes, to make a cache read-only.
func ExampleHookFunc_readOnly() {
	ctx := context.Background()
	m := memory.New(nil)
	defer m.Close()
	_ = m.Set(ctx, "config", []byte("v1"), 0)

	readOnly := cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error {
		switch op.Kind() {
		case cachekit.OpGet, cachekit.OpGetMany, cachekit.OpExists:
			return op.Next(ctx)
		}
		return errors.New("read-only cache") // short-circuit: the cache is not called
	})
	c := cachekit.WithHooks(m, readOnly)

	v, _ := c.Get(ctx, "config")
	fmt.Println(string(v))
	fmt.Println(c.Set(ctx, "config", []byte("v2"), 0))
	// Output:
	// v1
	// cachekit: Set "config": read-only cache
}

// WithHooks over a Versioner runs its methods through the hooks as the
// kinds they are forms of, with Op.Versioned true and Op.Version in and
// out; a hook may answer one itself.
func TestHooksVersioner(t *testing.T) {
	ctx := context.Background()
	m := memory.New(nil)
	defer m.Close()
	type seen struct {
		Kind         cachekit.OpKind
		Versioned    bool
		In, Out      uint64
		OK           bool
		Old, Outcome string
	}
	var got []seen
	c := cachekit.WithHooks(m, cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error {
		in := op.Version
		err := op.Next(ctx)
		got = append(got, seen{op.Kind(), op.Versioned(), in, op.Version, op.OK, string(op.Old), op.Outcome().String()})
		return err
	}))
	v := c.(cachekit.Versioner)
	a, err := v.AddVersion(ctx, "k", []byte("v1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.AddVersion(ctx, "k", []byte("v1"), 0); !errors.Is(err, cachekit.ErrExists) {
		t.Fatalf("AddVersion of a present key: %v; want ErrExists", err)
	}
	b, g, err := v.GetVersion(ctx, "k")
	if err != nil || string(b) != "v1" || g != a {
		t.Fatalf("GetVersion = %q, %d, %v; want v1, %d", b, g, err, a)
	}
	s, ok, err := v.SwapVersion(ctx, "k", g, []byte("v2"), 0)
	if !ok || err != nil {
		t.Fatalf("SwapVersion = %d, %v, %v", s, ok, err)
	}
	if _, ok, _ := v.SwapVersion(ctx, "k", g, []byte("v3"), 0); ok {
		t.Fatal("SwapVersion with a spent version swapped")
	}
	if ok, err := v.DeleteVersion(ctx, "k", s); !ok || err != nil {
		t.Fatalf("DeleteVersion = %v, %v", ok, err)
	}
	if _, _, err := v.GetVersion(ctx, "k"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("GetVersion after DeleteVersion: %v; want ErrNotFound", err)
	}
	want := []seen{
		{cachekit.OpAdd, true, 0, a, false, "", "ok"},
		{cachekit.OpAdd, true, 0, 0, false, "", "exists"},
		{cachekit.OpGet, true, 0, a, false, "", "hit"},
		{cachekit.OpCompareAndSwap, true, a, s, true, "", "ok"},
		{cachekit.OpCompareAndSwap, true, a, 0, false, "", "ok"},
		{cachekit.OpCompareAndDelete, true, s, s, true, "", "ok"},
		{cachekit.OpGet, true, 0, 0, false, "", "miss"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("hooks saw\n%+v\nwant\n%+v", got, want)
	}

	// A hook that answers a versioned Get itself.
	answer := cachekit.WithHooks(m, cachekit.HookFunc(func(ctx context.Context, op *cachekit.Op) error {
		if op.Kind() == cachekit.OpGet && op.Versioned() {
			op.Value, op.Version = []byte("from the hook"), 42
			return nil
		}
		return op.Next(ctx)
	}))
	if b, ver, err := answer.(cachekit.Versioner).GetVersion(ctx, "k"); err != nil || string(b) != "from the hook" || ver != 42 {
		t.Fatalf("GetVersion answered by a hook = %q, %d, %v", b, ver, err)
	}
	// Errors name the method.
	_, _, err = answer.(cachekit.Versioner).SwapVersion(ctx, "", 1, nil, 0)
	var ce *cachekit.Error
	if !errors.As(err, &ce) || ce.Op != "SwapVersion" || !errors.Is(err, cachekit.ErrInvalidKey) {
		t.Fatalf("SwapVersion of an empty key through hooks: %v; want a *cachekit.Error with Op SwapVersion wrapping ErrInvalidKey", err)
	}
}
