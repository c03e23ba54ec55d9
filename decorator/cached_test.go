package decorator_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/decorator"
	"github.com/cachekit/cachekit/serializer"
)

func TestHitAfterMissAndZeroValues(t *testing.T) {
	c := cachekit.NewTyped[int](newMem(t), nil)
	var calls atomic.Int32
	f := decorator.Cached(c, func(_ context.Context, k string) (int, error) {
		calls.Add(1)
		if k == "zero" {
			return 0, nil
		}
		return len(k), nil
	}, &decorator.Options[string]{Name: "len"})
	for range 3 {
		if v, err := f(bg, "abc"); err != nil || v != 3 {
			t.Fatalf("f(abc) = %d, %v", v, err)
		}
		if v, err := f(bg, "zero"); err != nil || v != 0 {
			t.Fatalf("f(zero) = %d, %v", v, err)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("fn called %d times; want 2 (zero values are stored too)", n)
	}
}

func TestErrorsAreReturnedAsTheyAreAndNotStored(t *testing.T) {
	c := cachekit.NewTyped[int](newMem(t), nil)
	boom := errors.New("boom")
	var calls atomic.Int32
	f := decorator.Cached(c, func(context.Context, int) (int, error) { calls.Add(1); return 0, boom },
		&decorator.Options[int]{Name: "boom"})
	for range 2 {
		if _, err := f(bg, 1); err != boom { //nolint:errorlint // identity is the point
			t.Fatalf("err = %v; want fn's own error value", err)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("fn called %d times; errors must not be stored", n)
	}
}

func TestDoneContext(t *testing.T) {
	c := cachekit.NewTyped[int](newMem(t), nil)
	var calls atomic.Int32
	f := decorator.Cached(c, func(context.Context, int) (int, error) { calls.Add(1); return 1, nil },
		&decorator.Options[int]{Name: "f"})
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if _, err := f(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v; want context.Canceled", err)
	}
	if calls.Load() != 0 {
		t.Fatal("fn ran for a done context")
	}
}

func TestSkipCacheAndTTLFunc(t *testing.T) {
	c := cachekit.NewTyped[int](newMem(t), nil)
	var calls atomic.Int32
	f := decorator.Cached(c, func(_ context.Context, k int) (int, error) { calls.Add(1); return k, nil },
		&decorator.Options[int]{
			Name:      "f",
			SkipCache: func(_ int, v any) bool { return v.(int) < 0 },
			TTLFunc: func(k int, _ any) time.Duration {
				if k == 2 {
					return 30 * time.Millisecond
				}
				return 0
			},
		})
	f(bg, -1)
	f(bg, -1)
	if n := calls.Load(); n != 2 {
		t.Fatalf("skipped result: fn called %d times; want 2", n)
	}
	f(bg, 1)
	f(bg, 2)
	time.Sleep(60 * time.Millisecond)
	f(bg, 1) // no expiry: a hit
	f(bg, 2) // expired: a miss
	if n := calls.Load(); n != 5 {
		t.Fatalf("fn called %d times; want 5", n)
	}
}

func TestDefaultTTLComesFromTyped(t *testing.T) {
	c := cachekit.NewTyped[int](newMem(t), &cachekit.TypedOptions{TTL: 30 * time.Millisecond})
	var calls atomic.Int32
	f := decorator.Cached(c, func(context.Context, int) (int, error) { calls.Add(1); return 1, nil },
		&decorator.Options[int]{Name: "f"})
	f(bg, 1)
	f(bg, 1)
	time.Sleep(60 * time.Millisecond)
	f(bg, 1)
	if n := calls.Load(); n != 2 {
		t.Fatalf("fn called %d times; want 2 (a hit, then a miss after the Typed TTL)", n)
	}
}

func TestCacheTroubleIsNotTheCallersTrouble(t *testing.T) {
	down := errors.New("connection refused")
	s := newSpy(newMem(t))
	s.getErr.Store(down)
	s.setErr.Store(down)
	c := cachekit.NewTyped[int](s, nil)
	var log errorLog
	var calls atomic.Int32
	fn := func(context.Context, int) (int, error) { calls.Add(1); return 7, nil }
	f := decorator.New(c, fn, &decorator.Options[int]{Name: "f", OnError: log.onError})
	if v, err := f.Call(bg, 1); err != nil || v != 7 {
		t.Fatalf("with a failing cache: %d, %v; want fn's result", v, err)
	}
	f.Wait() // the write is made in the background
	ops := map[string]bool{}
	for _, err := range log.all() {
		var ce *cachekit.Error
		if !errors.Is(err, down) || !errors.As(err, &ce) {
			t.Fatalf("OnError got %v; want *cachekit.Error wrapping the cache's error", err)
		}
		ops[ce.Op] = true
	}
	if !ops["Get"] || !ops["Set"] {
		t.Fatalf("OnError got errors for %v; want the failed Get and Set", ops)
	}

	ff := decorator.Cached(c, fn, &decorator.Options[int]{Name: "f", FailFast: true})
	before := calls.Load()
	if _, err := ff(bg, 1); !errors.Is(err, down) {
		t.Fatalf("FailFast: err = %v; want the cache error", err)
	}
	if calls.Load() != before {
		t.Fatal("FailFast called fn")
	}
}

func TestSlowCacheIsBoundedByCacheTimeout(t *testing.T) {
	s := newSpy(newMem(t))
	s.getHang.Store(true)
	c := cachekit.NewTyped[int](s, nil)
	var log errorLog
	f := decorator.Cached(c, func(context.Context, int) (int, error) { return 7, nil },
		&decorator.Options[int]{Name: "f", CacheTimeout: 20 * time.Millisecond, OnError: log.onError})
	if v, err := f(bg, 1); err != nil || v != 7 {
		t.Fatalf("with a hanging cache: %d, %v", v, err)
	}
	if errs := log.all(); len(errs) == 0 || !errors.Is(errs[0], context.DeadlineExceeded) {
		t.Fatalf("OnError got %v; want the timed-out Get", errs)
	}
}

func TestUndecodableValueIsReloaded(t *testing.T) {
	s := newSpy(newMem(t))
	c := cachekit.NewTyped[int](s, nil)
	var log errorLog
	var calls atomic.Int32
	f := decorator.New(c, func(context.Context, int) (int, error) { calls.Add(1); return 7, nil },
		&decorator.Options[int]{Name: "f", OnError: log.onError})
	key, _ := f.Key(1)
	s.Set(bg, key, []byte("{garbage"), 0)
	if v, err := f.Call(bg, 1); err != nil || v != 7 {
		t.Fatalf("f = %d, %v", v, err)
	}
	if errs := log.all(); len(errs) != 1 || !errors.Is(errs[0], cachekit.ErrDecode) {
		t.Fatalf("OnError got %v; want one ErrDecode", errs)
	}
	if s.count(cachekit.EventDecodeError) != 1 {
		t.Fatal("no decode_error event")
	}
	f.Call(bg, 1)
	if calls.Load() != 1 {
		t.Fatal("the undecodable value was not overwritten")
	}
}

// A reader of one stored format never returns the other's bytes as a
// value: plain and envelope readers of the same key space overwrite each
// other's values, for every serializer.
func TestFormatsAreNeverMisread(t *testing.T) {
	for name, ser := range map[string]serializer.Serializer{"json": serializer.JSON{}, "msgpack": serializer.MsgPack{}, "raw": serializer.Raw{}} {
		t.Run(name, func(t *testing.T) {
			c := cachekit.NewTyped[[]byte](newMem(t), &cachekit.TypedOptions{Serializer: ser})
			var plainCalls, envCalls atomic.Int32
			plain := decorator.New(c, func(context.Context, int) ([]byte, error) { plainCalls.Add(1); return []byte("plain"), nil },
				&decorator.Options[int]{Name: "f"})
			env := decorator.New(c, func(context.Context, int) ([]byte, error) { envCalls.Add(1); return []byte("env"), nil },
				&decorator.Options[int]{Name: "f", FailSafeMaxStale: time.Hour, TTL: time.Hour})
			for i := range 4 {
				if v, err := plain.Call(bg, 1); err != nil || string(v) != "plain" {
					t.Fatalf("round %d: plain reader got %q, %v", i, v, err)
				}
				plain.Wait() // the write is made in the background
				if v, err := env.Call(bg, 1); err != nil || string(v) != "env" {
					t.Fatalf("round %d: envelope reader got %q, %v", i, v, err)
				}
				env.Wait()
			}
			if plainCalls.Load() != 4 || envCalls.Load() != 4 {
				t.Fatalf("calls: plain %d, envelope %d; want 4 each", plainCalls.Load(), envCalls.Load())
			}
		})
	}
}

func TestLocalStampede(t *testing.T) {
	s := newSpy(newMem(t))
	c := cachekit.NewTyped[string](s, nil)
	var calls atomic.Int32
	release := make(chan struct{})
	f := decorator.Cached(c, func(context.Context, string) (string, error) {
		calls.Add(1)
		<-release
		return "v", nil
	}, &decorator.Options[string]{Name: "f"})
	const n = 10000
	var wg, started sync.WaitGroup
	started.Add(n)
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			if v, err := f(bg, "cold"); err != nil || v != "v" {
				errs <- fmt.Errorf("got %q, %v", v, err)
			}
		}()
	}
	started.Wait()
	// Release fn once every caller has missed (and is about to wait for it).
	eventually(t, "callers to miss", func() bool { return s.gets.Load() >= n })
	time.Sleep(10 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := calls.Load(); got != 1 {
		t.Fatalf("fn ran %d times for %d concurrent callers; want 1", got, n)
	}
	// Callers that joined the load report it (a caller still between its
	// miss and the join when the load ended finds the value instead).
	if j := s.count(cachekit.EventStampedeJoin); j == 0 || j > n-1 {
		t.Fatalf("%d stampede_join events; want 1 to %d", j, n-1)
	}
}

func TestEachWaiterHonoursItsOwnContext(t *testing.T) {
	c := cachekit.NewTyped[string](newMem(t), nil)
	release := make(chan struct{})
	fnCtxErr := make(chan error, 1)
	f := decorator.Cached(c, func(ctx context.Context, _ string) (string, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		fnCtxErr <- ctx.Err()
		return "v", nil
	}, &decorator.Options[string]{Name: "f"})

	leaver, cancel := context.WithCancel(bg)
	leaverErr := make(chan error, 1)
	go func() { _, err := f(leaver, "k"); leaverErr <- err }()
	stayer := make(chan string, 1)
	go func() { v, _ := f(bg, "k"); stayer <- v }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-leaverErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("leaver: %v; want context.Canceled", err)
	}
	close(release)
	if v := <-stayer; v != "v" {
		t.Fatalf("stayer got %q", v)
	}
	if err := <-fnCtxErr; err != nil {
		t.Fatalf("fn's ctx was cancelled (%v) while a caller still waited", err)
	}
}

func TestFnContextCancelledWhenEveryWaiterHasGone(t *testing.T) {
	c := cachekit.NewTyped[string](newMem(t), nil)
	cancelled := make(chan struct{})
	started := make(chan struct{})
	f := decorator.Cached(c, func(ctx context.Context, _ string) (string, error) {
		close(started)
		<-ctx.Done()
		close(cancelled)
		return "", ctx.Err()
	}, &decorator.Options[string]{Name: "f"})
	ctx1, cancel1 := context.WithCancel(bg)
	ctx2, cancel2 := context.WithCancel(bg)
	defer cancel2()
	done1, done2 := make(chan error, 1), make(chan error, 1)
	go func() { _, err := f(ctx1, "k"); done1 <- err }()
	<-started
	go func() { _, err := f(ctx2, "k"); done2 <- err }()
	eventually(t, "the second caller to join", func() bool {
		buf := make([]byte, 1<<20)
		return strings.Count(string(buf[:runtime.Stack(buf, true)]), "internal/flight.(*Group[...]).Do(") == 2
	})
	cancel1()
	if err := <-done1; !errors.Is(err, context.Canceled) {
		t.Fatalf("first caller: %v", err)
	}
	select {
	case <-cancelled:
		t.Fatal("fn's ctx was cancelled while a caller still waited")
	case <-time.After(20 * time.Millisecond):
	}
	cancel2()
	if err := <-done2; !errors.Is(err, context.Canceled) {
		t.Fatalf("second caller: %v", err)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("fn's ctx not cancelled after every caller left")
	}
}

func TestPanicBecomesAnErrorForEveryWaiter(t *testing.T) {
	c := cachekit.NewTyped[string](newMem(t), nil)
	release := make(chan struct{})
	var calls atomic.Int32
	f := decorator.Cached(c, func(_ context.Context, k string) (string, error) {
		if calls.Add(1) == 1 {
			<-release
			panic("boom")
		}
		return "ok", nil
	}, &decorator.Options[string]{Name: "f"})
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := f(bg, "k")
			if !errors.Is(err, cachekit.ErrLoaderPanic) {
				t.Errorf("err = %v; want ErrLoaderPanic", err)
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	if v, err := f(bg, "k"); err != nil || v != "ok" {
		t.Fatalf("after the panic: %q, %v", v, err)
	}
}

func TestNegativeCaching(t *testing.T) {
	errNoUser := errors.New("no such user")
	c := cachekit.NewTyped[string](newMem(t), nil)
	var calls atomic.Int32
	fn := func(_ context.Context, id int) (string, error) {
		calls.Add(1)
		return "", fmt.Errorf("user %d: %w", id, errNoUser)
	}
	f := decorator.Cached(c, fn, &decorator.Options[int]{Name: "user", NegativeError: errNoUser, NegativeTTL: 50 * time.Millisecond})
	for range 3 {
		if _, err := f(bg, 1); !errors.Is(err, errNoUser) {
			t.Fatalf("err = %v; want errNoUser", err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("fn called %d times; want 1 (the 'not found' is remembered)", n)
	}
	time.Sleep(80 * time.Millisecond)
	f(bg, 1)
	if n := calls.Load(); n != 2 {
		t.Fatalf("fn called %d times after NegativeTTL; want 2", n)
	}
	// Without negative caching, every call asks fn.
	g := decorator.Cached(c, fn, &decorator.Options[int]{Name: "user2"})
	g(bg, 1)
	g(bg, 1)
	if n := calls.Load(); n != 4 {
		t.Fatalf("without NegativeTTL fn called %d times; want 4", n)
	}
}

func TestInvalidateAndRefresh(t *testing.T) {
	c := cachekit.NewTyped[int](newMem(t), nil)
	var version atomic.Int32
	f := decorator.New(c, func(context.Context, string) (int, error) { return int(version.Load()), nil },
		&decorator.Options[string]{Name: "f"})
	if v, _ := f.Call(bg, "k"); v != 0 {
		t.Fatal(v)
	}
	version.Store(1)
	if v, _ := f.Call(bg, "k"); v != 0 {
		t.Fatalf("cached value = %d; want 0", v)
	}
	if err := f.Invalidate(bg, "k"); err != nil {
		t.Fatal(err)
	}
	if v, _ := f.Call(bg, "k"); v != 1 {
		t.Fatalf("after Invalidate = %d; want 1", v)
	}
	version.Store(2)
	if v, err := f.Refresh(bg, "k"); err != nil || v != 2 {
		t.Fatalf("Refresh = %d, %v; want 2", v, err)
	}
	if v, _ := f.Call(bg, "k"); v != 2 {
		t.Fatalf("after Refresh = %d; want 2", v)
	}
}

// A load that overlaps an Invalidate returns its value to its callers but
// does not store it: it may predate the change that caused the invalidation.
func TestLoadOverlappingInvalidateIsNotStored(t *testing.T) {
	c := cachekit.NewTyped[int](newMem(t), nil)
	release := make(chan struct{})
	var calls atomic.Int32
	f := decorator.New(c, func(context.Context, string) (int, error) {
		if calls.Add(1) == 1 {
			<-release
		}
		return int(calls.Load()), nil
	}, &decorator.Options[string]{Name: "f"})
	done := make(chan int)
	go func() { v, _ := f.Call(bg, "k"); done <- v }()
	eventually(t, "fn to start", func() bool { return calls.Load() == 1 })
	f.Invalidate(bg, "k")
	close(release)
	<-done
	if v, _ := f.Call(bg, "k"); v != 2 {
		t.Fatalf("after an overlapping Invalidate: %d; want a fresh load (2)", v)
	}
}

// fn calling runtime.Goexit (t.FailNow in a test's fn, say) ends its load
// without a result: the callers get an error rather than a zero value or a
// hang.
func TestGoexitInFn(t *testing.T) {
	for _, opts := range []*decorator.Options[int]{
		{Name: "f"},
		{Name: "f", Lease: true},
		{Name: "f", HardTimeout: time.Minute},
	} {
		mem := newMem(t)
		s := newSpy(mem)
		f := decorator.New(cachekit.NewTyped[int](s, nil), func(context.Context, int) (int, error) { runtime.Goexit(); return 1, nil },
			opts)
		v, err := f.Call(bg, 1)
		if !errors.Is(err, cachekit.ErrLoaderPanic) || errors.Is(err, decorator.ErrHardTimeout) {
			t.Fatalf("%+v: got %d, %v; want an error wrapping ErrLoaderPanic, as Typed.GetOrLoad reports it", opts, v, err)
		}
		f.Wait()
		if n := s.count(cachekit.EventLoadError); n != 1 {
			t.Fatalf("%+v: %d load_error events; want 1", opts, n)
		}
		if opts.Lease {
			if ok, _ := mem.Exists(bg, decorator.LeaseKey(f, 1)); ok {
				t.Fatal("the lease of a load whose fn called Goexit was not released")
			}
		}
	}
}

func TestFnSeesTheCallersContextValues(t *testing.T) {
	type traceKey struct{}
	c := cachekit.NewTyped[string](newMem(t), nil)
	f := decorator.Cached(c, func(ctx context.Context, _ int) (string, error) {
		s, _ := ctx.Value(traceKey{}).(string)
		return s, nil
	}, &decorator.Options[int]{Name: "f"})
	if v, _ := f(context.WithValue(bg, traceKey{}, "trace-1"), 1); v != "trace-1" {
		t.Fatalf("fn saw %q; want the caller's trace-1", v)
	}
}
