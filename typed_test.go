package cachekit_test

import (
	"context"
	"errors"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memory"
	"github.com/cachekit/cachekit/serializer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var ctx = context.Background()

func newMem(t *testing.T) cachekit.Cache {
	t.Helper()
	c := memory.New(nil)
	t.Cleanup(func() { c.Close() })
	return c
}

type user struct {
	ID    int64             `json:"id" msgpack:"id"`
	Name  string            `json:"name" msgpack:"name"`
	Tags  []string          `json:"tags" msgpack:"tags"`
	Attrs map[string]string `json:"attrs" msgpack:"attrs"`
}

var serializers = map[string]serializer.Serializer{"json": serializer.JSON{}, "msgpack": serializer.MsgPack{}}

func TestTypedRoundTrip(t *testing.T) {
	for name, ser := range serializers {
		t.Run(name, func(t *testing.T) {
			c := cachekit.NewTyped[user](newMem(t), &cachekit.TypedOptions{Serializer: ser})
			want := user{ID: math.MaxInt64, Name: "Ada", Tags: []string{"a", "b"}, Attrs: map[string]string{"k": "v"}}
			if err := c.Set(ctx, "u", want); err != nil {
				t.Fatal(err)
			}
			got, err := c.Get(ctx, "u")
			if err != nil || got.ID != want.ID || got.Name != want.Name || len(got.Tags) != 2 || got.Attrs["k"] != "v" {
				t.Fatalf("Get = %+v, %v; want %+v", got, err, want)
			}
		})
	}
}

func TestTypedZeroValueIsAHit(t *testing.T) {
	for name, ser := range serializers {
		t.Run(name, func(t *testing.T) {
			mem := newMem(t)
			ints := cachekit.NewTyped[int](mem, &cachekit.TypedOptions{Serializer: ser})
			if err := ints.Set(ctx, "zero", 0); err != nil {
				t.Fatal(err)
			}
			if v, err := ints.Get(ctx, "zero"); err != nil || v != 0 {
				t.Fatalf("Get(zero) = %d, %v; want 0, nil", v, err)
			}
			ptrs := cachekit.NewTyped[*user](mem, &cachekit.TypedOptions{Serializer: ser})
			if err := ptrs.Set(ctx, "nil", nil); err != nil {
				t.Fatal(err)
			}
			if v, err := ptrs.Get(ctx, "nil"); err != nil || v != nil {
				t.Fatalf("Get(nil pointer) = %v, %v; want nil, nil", v, err)
			}
			loads := 0
			v, err := ints.GetOrLoad(ctx, "zero", func(context.Context) (int, error) { loads++; return 9, nil })
			if err != nil || v != 0 || loads != 0 {
				t.Fatalf("GetOrLoad of a stored zero = %d, %v after %d loads; want 0, nil, no load", v, err, loads)
			}
		})
	}
}

func TestTypedMiss(t *testing.T) {
	c := cachekit.NewTyped[string](newMem(t), nil)
	v, err := c.Get(ctx, "absent")
	if !errors.Is(err, cachekit.ErrNotFound) || v != "" {
		t.Fatalf("Get(absent) = %q, %v; want ErrNotFound", v, err)
	}
}

func TestTypedDecodeErrors(t *testing.T) {
	mem := newMem(t)
	for _, tc := range []struct {
		name string
		raw  []byte
		ser  serializer.Serializer
	}{
		{"json garbage", []byte("{not json"), serializer.JSON{}},
		{"json type mismatch", []byte(`"a string"`), serializer.JSON{}},
		{"msgpack array32 bomb", []byte{0xdd, 0xff, 0xff, 0xff, 0xff}, serializer.MsgPack{}},
		{"msgpack map32 bomb", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}, serializer.MsgPack{}},
		{"msgpack truncated", []byte{0x92, 0x01}, serializer.MsgPack{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := mem.Set(ctx, "bad", tc.raw, 0); err != nil {
				t.Fatal(err)
			}
			c := cachekit.NewTyped[[]int](mem, &cachekit.TypedOptions{Serializer: tc.ser})
			v, err := c.Get(ctx, "bad")
			var ce *cachekit.Error
			if !errors.Is(err, cachekit.ErrDecode) || !errors.As(err, &ce) || ce.Op != "Get" || ce.Key != "bad" {
				t.Fatalf("Get of %s = %v, %v; want an *Error{Op: Get, Key: bad} wrapping ErrDecode", tc.name, v, err)
			}
			if v != nil {
				t.Fatalf("Get of %s returned a value %v alongside the error", tc.name, v)
			}
			if _, err := c.GetMany(ctx, []string{"bad"}); !errors.Is(err, cachekit.ErrDecode) {
				t.Fatalf("GetMany of %s = %v; want ErrDecode", tc.name, err)
			}
		})
	}
}

func TestTypedEncodeError(t *testing.T) {
	c := cachekit.NewTyped[float64](newMem(t), nil) // JSON cannot carry NaN
	err := c.Set(ctx, "nan", math.NaN())
	if !errors.Is(err, cachekit.ErrEncode) {
		t.Fatalf("Set(NaN) with JSON = %v; want ErrEncode", err)
	}
	if _, err := c.Get(ctx, "nan"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("a failed Set stored something: %v", err)
	}
}

func TestTypedTTL(t *testing.T) {
	c := cachekit.NewTyped[string](newMem(t), &cachekit.TypedOptions{TTL: 50 * time.Millisecond})
	if err := c.Set(ctx, "default", "v"); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "forever", "v", cachekit.WithTTL(0)); err != nil {
		t.Fatal(err)
	}
	if err := c.SetMany(ctx, map[string]string{"m1": "v", "m2": "v"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(ctx, "added", "v", cachekit.WithTTL(time.Hour)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(120 * time.Millisecond)
	got, err := c.GetMany(ctx, []string{"default", "forever", "m1", "m2", "added"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["forever"] != "v" || got["added"] != "v" {
		t.Fatalf("after the default TTL: %v; want only forever and added", got)
	}
	if err := c.Set(ctx, "neg", "v", cachekit.WithTTL(-time.Second)); !errors.Is(err, cachekit.ErrInvalidTTL) {
		t.Fatalf("Set with a negative TTL = %v; want ErrInvalidTTL", err)
	}
}

func TestTypedAddAndDelete(t *testing.T) {
	c := cachekit.NewTyped[int](newMem(t), nil)
	if err := c.Add(ctx, "k", 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(ctx, "k", 2); !errors.Is(err, cachekit.ErrExists) {
		t.Fatalf("second Add = %v; want ErrExists", err)
	}
	if n, err := c.Delete(ctx, "k", "other"); err != nil || n != 1 {
		t.Fatalf("Delete = %d, %v; want 1, nil", n, err)
	}
}

func TestGetOrLoadStoresAndHits(t *testing.T) {
	c := cachekit.NewTyped[string](newMem(t), nil)
	loads := 0
	load := func(context.Context) (string, error) { loads++; return "loaded", nil }
	for range 3 {
		v, err := c.GetOrLoad(ctx, "k", load)
		if err != nil || v != "loaded" {
			t.Fatalf("GetOrLoad = %q, %v", v, err)
		}
	}
	if loads != 1 {
		t.Fatalf("load ran %d times; want 1", loads)
	}
	c.Wait() // the loaded value is written in the background
	if v, err := c.Get(ctx, "k"); err != nil || v != "loaded" {
		t.Fatalf("Get after GetOrLoad = %q, %v", v, err)
	}
}

func TestGetOrLoadErrorsAreNotCached(t *testing.T) {
	c := cachekit.NewTyped[string](newMem(t), nil)
	boom := errors.New("boom")
	_, err := c.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "", boom })
	if !errors.Is(err, boom) {
		t.Fatalf("GetOrLoad = %v; want the load's error", err)
	}
	if _, err := c.Get(ctx, "k"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("the failed load stored something: %v", err)
	}
}

func TestGetOrLoadOneLoadForConcurrentMisses(t *testing.T) {
	c := cachekit.NewTyped[int](newMem(t), nil)
	var loads atomic.Int32
	release := make(chan struct{})
	load := func(context.Context) (int, error) {
		loads.Add(1)
		<-release
		return 7, nil
	}
	const n = 2000
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, err := c.GetOrLoad(ctx, "hot", load); err != nil || v != 7 {
				t.Errorf("GetOrLoad = %d, %v", v, err)
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	if l := loads.Load(); l != 1 {
		t.Fatalf("load ran %d times for %d concurrent misses; want 1", l, n)
	}
}

func TestGetOrLoadCancellation(t *testing.T) {
	c := cachekit.NewTyped[string](newMem(t), nil)
	release := make(chan struct{})
	loadCancelled := make(chan struct{}, 1)
	load := func(lctx context.Context) (string, error) {
		select {
		case <-release:
			return "v", nil
		case <-lctx.Done():
			loadCancelled <- struct{}{}
			return "", lctx.Err()
		}
	}
	leaving, leave := context.WithCancel(ctx)
	leftErr := make(chan error, 1)
	go func() {
		_, err := c.GetOrLoad(leaving, "k", load)
		leftErr <- err
	}()
	waitLoadWaiters(t, 1)
	stayed := make(chan string, 1)
	go func() {
		v, err := c.GetOrLoad(ctx, "k", load)
		if err != nil {
			t.Errorf("the caller that stayed got %v", err)
		}
		stayed <- v
	}()
	waitLoadWaiters(t, 2)
	leave()
	if err := <-leftErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller that left got %v; want context.Canceled", err)
	}
	close(release)
	if v := <-stayed; v != "v" {
		t.Fatalf("the caller that stayed got %q; want v", v)
	}
	select {
	case <-loadCancelled:
		t.Fatal("the load was cancelled while a caller still waited")
	default:
	}

	// When every caller leaves, the load's context is cancelled.
	only, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	blocking := func(lctx context.Context) (string, error) {
		<-lctx.Done()
		loadCancelled <- struct{}{}
		return "", lctx.Err()
	}
	if _, err := c.GetOrLoad(only, "other", blocking); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GetOrLoad past its deadline = %v", err)
	}
	select {
	case <-loadCancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the load was not cancelled after its only caller left")
	}
}

// waitLoadWaiters waits until n goroutines wait inside the single-flight
// group (the caller that started a load and those that joined it), so a test
// orders its callers without sleeping.
func waitLoadWaiters(t *testing.T, n int) {
	t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := string(buf[:runtime.Stack(buf, true)])
		if got := strings.Count(st, "internal/flight.(*Group[...]).Do("); got >= n {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("%d callers waiting in the flight group, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestGetOrLoadPanic(t *testing.T) {
	c := cachekit.NewTyped[int](newMem(t), nil)
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.GetOrLoad(ctx, "k", func(context.Context) (int, error) { <-release; panic("boom") })
			if !errors.Is(err, cachekit.ErrLoaderPanic) {
				t.Errorf("GetOrLoad with a panicking load = %v; want ErrLoaderPanic", err)
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	if _, err := c.Get(ctx, "k"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("a panicking load stored something: %v", err)
	}
}

func TestGetOrLoadOverwritesUndecodableValue(t *testing.T) {
	mem := newMem(t)
	if err := mem.Set(ctx, "k", []byte("{corrupt"), 0); err != nil {
		t.Fatal(err)
	}
	var reported []error
	c := cachekit.NewTyped[string](mem, &cachekit.TypedOptions{OnError: func(_ context.Context, err error) {
		reported = append(reported, err)
	}})
	v, err := c.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "fresh", nil })
	if err != nil || v != "fresh" {
		t.Fatalf("GetOrLoad over a corrupt value = %q, %v; want fresh, nil", v, err)
	}
	c.Wait()
	if len(reported) != 1 || !errors.Is(reported[0], cachekit.ErrDecode) {
		t.Fatalf("OnError got %v; want one ErrDecode", reported)
	}
	if v, err := c.Get(ctx, "k"); err != nil || v != "fresh" {
		t.Fatalf("Get after the reload = %q, %v; want the corrupt value overwritten", v, err)
	}
}

func TestGetOrLoadOnClosedCache(t *testing.T) {
	mem := memory.New(nil)
	mem.Close()
	c := cachekit.NewTyped[int](mem, nil)
	loads := 0
	_, err := c.GetOrLoad(ctx, "k", func(context.Context) (int, error) { loads++; return 1, nil })
	if !errors.Is(err, cachekit.ErrClosed) || loads != 0 {
		t.Fatalf("GetOrLoad on a closed cache = %v after %d loads; want ErrClosed, no load", err, loads)
	}
}

// gatedCache is a Cache whose Set waits for release (or for its context)
// before storing, and records the context it was given.
type gatedCache struct {
	cachekit.Cache
	release chan struct{}
	mu      sync.Mutex
	setErrs []error
}

func (c *gatedCache) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	select {
	case <-c.release:
	case <-ctx.Done():
		c.mu.Lock()
		c.setErrs = append(c.setErrs, ctx.Err())
		c.mu.Unlock()
		return ctx.Err()
	}
	return c.Cache.Set(ctx, key, v, ttl)
}

// GetOrLoad hands the loaded value over as soon as the load returns: a slow
// cache write is not the caller's wait, and the caller's cancellation does
// not cancel the write (issue 12, item 7).
func TestGetOrLoadDoesNotWaitForTheWrite(t *testing.T) {
	slow := &gatedCache{Cache: newMem(t), release: make(chan struct{})}
	var mu sync.Mutex
	var reported []error
	c := cachekit.NewTyped[string](slow, &cachekit.TypedOptions{
		WriteTimeout: time.Minute,
		OnError: func(_ context.Context, err error) {
			mu.Lock()
			reported = append(reported, err)
			mu.Unlock()
		},
	})
	// The write cannot finish before the caller's deadline: before the fix,
	// the caller waited for it and got DeadlineExceeded, and the write,
	// cancelled with the caller, never landed.
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	v, err := c.GetOrLoad(cctx, "k", func(context.Context) (string, error) {
		time.Sleep(50 * time.Millisecond)
		return "loaded", nil
	})
	cancel() // the caller is gone before the write proceeds
	if err != nil || v != "loaded" {
		t.Fatalf("GetOrLoad with a slow cache write = %q, %v; want loaded, nil", v, err)
	}
	close(slow.release)
	c.Wait()
	if got, err := c.Get(ctx, "k"); err != nil || got != "loaded" {
		t.Fatalf("Get after Wait = %q, %v; want the loaded value stored", got, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reported) != 0 || len(slow.setErrs) != 0 {
		t.Fatalf("the write failed: OnError %v, Set saw %v", reported, slow.setErrs)
	}
}

// deadlineCache records the deadline of each Set's context.
type deadlineCache struct {
	cachekit.Cache
	mu        sync.Mutex
	deadlines []*time.Duration // time left when Set was called; nil: no deadline
}

func (c *deadlineCache) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	var left *time.Duration
	if dl, ok := ctx.Deadline(); ok {
		d := time.Until(dl)
		left = &d
	}
	c.mu.Lock()
	c.deadlines = append(c.deadlines, left)
	c.mu.Unlock()
	return c.Cache.Set(ctx, key, v, ttl)
}

func TestGetOrLoadWriteTimeout(t *testing.T) {
	load := func(context.Context) (int, error) { return 1, nil }
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		max     time.Duration // longest deadline the write may have; -1: none
	}{
		{"default", 0, cachekit.DefaultWriteTimeout},
		{"set", 20 * time.Millisecond, 20 * time.Millisecond},
		{"none", -1, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dc := &deadlineCache{Cache: newMem(t)}
			c := cachekit.NewTyped[int](dc, &cachekit.TypedOptions{WriteTimeout: tc.timeout})
			// The caller's own deadline is far longer: the write has its own.
			cctx, cancel := context.WithTimeout(ctx, time.Hour)
			defer cancel()
			if _, err := c.GetOrLoad(cctx, "k", load); err != nil {
				t.Fatal(err)
			}
			c.Wait()
			dc.mu.Lock()
			defer dc.mu.Unlock()
			if len(dc.deadlines) != 1 {
				t.Fatalf("%d writes; want 1", len(dc.deadlines))
			}
			got := dc.deadlines[0]
			if tc.max < 0 {
				if got != nil {
					t.Fatalf("write had a deadline %v away; want none of Typed's own", *got)
				}
				return
			}
			// (Less than nothing left is possible on a loaded machine.)
			if got == nil {
				t.Fatalf("write had no deadline; want one at most %v away", tc.max)
			}
			if *got > tc.max {
				t.Fatalf("write deadline %v away; want at most %v", *got, tc.max)
			}
		})
	}

	// A write that outlasts WriteTimeout ends with DeadlineExceeded, reported.
	stuck := &gatedCache{Cache: newMem(t), release: make(chan struct{})}
	errs := make(chan error, 1)
	c := cachekit.NewTyped[int](stuck, &cachekit.TypedOptions{
		WriteTimeout: 20 * time.Millisecond,
		OnError:      func(_ context.Context, err error) { errs <- err },
	})
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second) // fail, not hang, if GetOrLoad waits for the write
	defer cancel()
	if v, err := c.GetOrLoad(cctx, "k", load); err != nil || v != 1 {
		t.Fatalf("GetOrLoad = %d, %v", v, err)
	}
	c.Wait()
	var ce *cachekit.Error
	if err := <-errs; !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &ce) || ce.Op != "GetOrLoad" || ce.Key != "k" {
		t.Fatalf("OnError got %v; want a GetOrLoad *Error wrapping DeadlineExceeded", err)
	}
}

// slowFirstGet is a Cache whose first Get reads a miss, then holds it back
// until release is closed: the read of a caller that began before another
// caller's load and returns after that load finished.
type slowFirstGet struct {
	cachekit.Cache
	once    sync.Once
	reading chan struct{} // closed when the first Get has read
	release chan struct{}
	setGate chan struct{} // if non-nil, Set waits for it
}

func (c *slowFirstGet) Get(ctx context.Context, key string) ([]byte, error) {
	first := false
	c.once.Do(func() { first = true })
	b, err := c.Cache.Get(ctx, key)
	if first {
		close(c.reading)
		<-c.release
	}
	return b, err
}

func (c *slowFirstGet) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	if c.setGate != nil {
		<-c.setGate
	}
	return c.Cache.Set(ctx, key, v, ttl)
}

// A caller whose cache read overlaps another caller's whole load takes that
// load's value instead of loading again (issue 12, item 9), whether the
// load's write has landed by then or not.
func TestGetOrLoadOverlappingReadDoesNotLoadAgain(t *testing.T) {
	for _, landed := range []bool{true, false} {
		t.Run(map[bool]string{true: "write landed", false: "write pending"}[landed], func(t *testing.T) {
			sc := &slowFirstGet{Cache: newMem(t), reading: make(chan struct{}), release: make(chan struct{})}
			if !landed {
				sc.setGate = make(chan struct{})
			}
			var joins atomic.Int32
			hooked := cachekit.WithHooks(sc, cachekit.EventHookFunc(func(_ context.Context, ev cachekit.Event) {
				if ev.Kind == cachekit.EventStampedeJoin {
					joins.Add(1)
				}
			}))
			c := cachekit.NewTyped[int](hooked, nil)
			var loads atomic.Int32
			load := func(context.Context) (int, error) { return int(loads.Add(1)), nil }

			first := make(chan int)
			go func() {
				v, err := c.GetOrLoad(ctx, "k", load)
				if err != nil {
					t.Errorf("the slow reader's GetOrLoad: %v", err)
				}
				first <- v
			}()
			<-sc.reading // the slow reader has seen the miss
			// (A deadline, so that a GetOrLoad waiting for its write fails
			// rather than hangs.)
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if v, err := c.GetOrLoad(cctx, "k", load); err != nil || v != 1 {
				t.Fatalf("the second caller's GetOrLoad = %d, %v; want 1 (its load)", v, err)
			}
			if landed {
				c.Wait() // the write has landed: nothing of the load is left in flight
			}
			close(sc.release)
			if v := <-first; v != 1 {
				t.Fatalf("the slow reader got %d; want 1, the value of the load that finished during its read", v)
			}
			if n := loads.Load(); n != 1 {
				t.Fatalf("load ran %d times; want 1", n)
			}
			if j := joins.Load(); j != 1 {
				t.Fatalf("%d stampede_join events; want 1, for the slow reader", j)
			}
			if sc.setGate != nil {
				close(sc.setGate)
			}
			c.Wait()
		})
	}
}

// A loader calling runtime.Goexit (t.FailNow in a test's loader, say)
// fails every waiter with ErrLoaderPanic instead of returning a zero value
// and a nil error (issue 12, item 12).
func TestGetOrLoadGoexit(t *testing.T) {
	var events atomic.Int32
	mem := cachekit.WithHooks(newMem(t), cachekit.EventHookFunc(func(_ context.Context, ev cachekit.Event) {
		if ev.Kind == cachekit.EventLoadError && errors.Is(ev.Err, cachekit.ErrLoaderPanic) {
			events.Add(1)
		}
	}))
	c := cachekit.NewTyped[int](mem, nil)
	release := make(chan struct{})
	var calls atomic.Int32
	load := func(context.Context) (int, error) {
		calls.Add(1)
		<-release
		runtime.Goexit()
		return 1, nil
	}
	const n = 5
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := c.GetOrLoad(ctx, "k", load)
			if !errors.Is(err, cachekit.ErrLoaderPanic) || !strings.Contains(err.Error(), "Goexit") || v != 0 {
				t.Errorf("GetOrLoad with a loader calling Goexit = %d, %v; want ErrLoaderPanic naming Goexit", v, err)
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	c.Wait()
	// (A caller arriving after the first load ended starts another.)
	if e, n := events.Load(), calls.Load(); e != n || n < 1 {
		t.Fatalf("%d load_error events for %d loads; want one per load", e, n)
	}
	if _, err := c.Get(ctx, "k"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("a load that called Goexit stored something: %v", err)
	}
	if v, err := c.GetOrLoad(ctx, "k", func(context.Context) (int, error) { return 2, nil }); err != nil || v != 2 {
		t.Fatalf("GetOrLoad after a Goexit = %d, %v; want 2, nil", v, err)
	}
	c.Wait()
}

// Wait also waits for a load that every caller left, and for its write.
func TestTypedWaitForAbandonedLoad(t *testing.T) {
	c := cachekit.NewTyped[int](newMem(t), nil)
	release := make(chan struct{})
	cctx, cancel := context.WithCancel(ctx)
	go func() { time.Sleep(10 * time.Millisecond); cancel() }()
	_, err := c.GetOrLoad(cctx, "k", func(context.Context) (int, error) {
		<-release // ignores its context
		return 5, nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("GetOrLoad = %v; want Canceled", err)
	}
	waited := make(chan struct{})
	go func() { c.Wait(); close(waited) }()
	select {
	case <-waited:
		t.Fatal("Wait returned while the load was still running")
	case <-time.After(30 * time.Millisecond):
	}
	close(release)
	<-waited
	if v, err := c.Get(ctx, "k"); err != nil || v != 5 {
		t.Fatalf("Get after Wait = %d, %v; want the abandoned load's value, written", v, err)
	}
}

// Every undecodable value read reports one decode_error event, so that a
// hook which counted the read as a hit can count a miss instead (issue 12,
// item 16).
func TestDecodeErrorEventPerValue(t *testing.T) {
	var mu sync.Mutex
	var keys []string
	mem := cachekit.WithHooks(newMem(t), cachekit.EventHookFunc(func(_ context.Context, ev cachekit.Event) {
		if ev.Kind == cachekit.EventDecodeError {
			mu.Lock()
			keys = append(keys, ev.Key)
			mu.Unlock()
		}
	}))
	for _, k := range []string{"bad1", "bad2"} {
		if err := mem.Set(ctx, k, []byte("{corrupt"), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := mem.Set(ctx, "good", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	c := cachekit.NewTyped[int](mem, nil)
	_, err := c.GetMany(ctx, []string{"good", "bad1", "missing", "bad2"})
	var ce *cachekit.Error
	if !errors.Is(err, cachekit.ErrDecode) || !errors.As(err, &ce) || ce.Op != "GetMany" || ce.Key != "bad1" {
		t.Fatalf("GetMany = %v; want an *Error{Op: GetMany, Key: bad1} wrapping ErrDecode", err)
	}
	if _, err := c.Get(ctx, "bad1"); !errors.Is(err, cachekit.ErrDecode) {
		t.Fatalf("Get = %v; want ErrDecode", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(keys, []string{"bad1", "bad2", "bad1"}) {
		t.Fatalf("decode_error events for %q; want bad1, bad2 (GetMany) and bad1 (Get)", keys)
	}
}

// A write of a key through the Typed (Delete here) is ordered after the
// background write of a value GetOrLoad loaded for it: the loaded value
// never lands after a later Delete, and later callers load afresh.
func TestTypedWritesWaitForBackgroundWrite(t *testing.T) {
	slow := &gatedCache{Cache: newMem(t), release: make(chan struct{})}
	c := cachekit.NewTyped[int](slow, nil)
	var loads atomic.Int32
	load := func(context.Context) (int, error) { return int(loads.Add(1)), nil }
	if v, err := c.GetOrLoad(ctx, "k", load); err != nil || v != 1 {
		t.Fatalf("GetOrLoad = %d, %v; want 1", v, err)
	}
	deleted := make(chan error, 1)
	go func() {
		_, err := c.Delete(ctx, "k")
		deleted <- err
	}()
	select {
	case err := <-deleted:
		t.Fatalf("Delete returned (%v) while the loaded value's write was pending: the write would land after it", err)
	case <-time.After(30 * time.Millisecond):
	}
	close(slow.release)
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	c.Wait()
	if v, err := c.Get(ctx, "k"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("Get after Delete = %d, %v; want a miss", v, err)
	}
	if v, err := c.GetOrLoad(ctx, "k", load); err != nil || v != 2 {
		t.Fatalf("GetOrLoad after Delete = %d, %v; want a fresh load (2)", v, err)
	}
	c.Wait()

	// A caller's context bounds the wait.
	stuck := &gatedCache{Cache: newMem(t), release: make(chan struct{})}
	c2 := cachekit.NewTyped[int](stuck, &cachekit.TypedOptions{WriteTimeout: time.Minute})
	if _, err := c2.GetOrLoad(ctx, "k", load); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := c2.Set(short, "k", 9); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Set while a write of the key hangs = %v; want DeadlineExceeded", err)
	}
	close(stuck.release)
	c2.Wait()
}
