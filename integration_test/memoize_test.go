package integration_test

// This file would be decorator_test.go, but a _test.go file whose name sorts
// before doc.go (the package's only non-test file) makes go/build take the
// directory's package name from it, and with the "_test" suffix stripped
// ("integration"), so the package no longer builds.
//
// The decorator's behaviours on real servers: the same tests for Redis and
// Memcached. Every cache gets a client of its own (its own connections), so
// "clients" stand for processes; a test's namespace is unique, so tests
// share the servers safely.
//
//	CACHEKIT_TEST_REDIS_ADDR=127.0.0.1:6379 CACHEKIT_TEST_MEMCACHED_ADDRS=127.0.0.1:11211 \
//	    go test -race -run 'TestDecorator' .

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memcached"
	"github.com/cachekit/cachekit/backend/redis"
	"github.com/cachekit/cachekit/decorator"
)

// decBackend makes caches in a namespace, each over a client of its own.
type decBackend struct {
	name     string
	newCache func(t *testing.T, namespace string) cachekit.Cache
}

func decBackends() []decBackend {
	return []decBackend{
		{"redis", func(t *testing.T, ns string) cachekit.Cache {
			client := goredis.NewClient(&goredis.Options{Addr: redisServer(t), PoolSize: 32, ReadTimeout: 5 * time.Second})
			// Thousands of callers queue for 32 connections: on a loaded
			// machine a read can wait past the default 1 s timeout, and a
			// cache that fails is (rightly) bypassed by calling fn. These
			// tests are about a cache that answers, however slowly.
			c := redis.New(client, &redis.Options{Namespace: sweepNamespace(ns), Timeout: 20 * time.Second})
			t.Cleanup(func() { c.Close(); client.Close() })
			return c
		}},
		{"memcached", func(t *testing.T, ns string) cachekit.Cache {
			client := memcache.New(memcachedServers(t, 1)...)
			client.Timeout = 5 * time.Second
			client.MaxIdleConns = 64
			c := memcached.New(client, &memcached.Options{Namespace: sweepNamespace(ns)})
			t.Cleanup(func() { c.Close(); client.Close() })
			// gomemcache opens a connection per concurrent operation, and
			// memcached refuses connections past its limit (-c, 1024 by
			// default) with "ERROR Too many open connections": bound the
			// operations in flight, as a deployment would.
			return &decLimited{Cache: c, sem: make(chan struct{}, 256)}
		}},
	}
}

// decLimited bounds the operations in flight on a cache.
type decLimited struct {
	cachekit.Cache
	sem chan struct{}
}

func (l *decLimited) acquire(ctx context.Context) error {
	select {
	case l.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *decLimited) Get(ctx context.Context, key string) ([]byte, error) {
	if err := l.acquire(ctx); err != nil {
		return nil, err
	}
	defer func() { <-l.sem }()
	return l.Cache.Get(ctx, key)
}

func (l *decLimited) GetMany(ctx context.Context, keys []string) (map[string][]byte, error) {
	if err := l.acquire(ctx); err != nil {
		return nil, err
	}
	defer func() { <-l.sem }()
	return l.Cache.GetMany(ctx, keys)
}

func (l *decLimited) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	if err := l.acquire(ctx); err != nil {
		return err
	}
	defer func() { <-l.sem }()
	return l.Cache.Set(ctx, key, v, ttl)
}

func (l *decLimited) SetMany(ctx context.Context, items map[string][]byte, ttl time.Duration) error {
	if err := l.acquire(ctx); err != nil {
		return err
	}
	defer func() { <-l.sem }()
	return l.Cache.SetMany(ctx, items, ttl)
}

func (l *decLimited) Add(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	if err := l.acquire(ctx); err != nil {
		return err
	}
	defer func() { <-l.sem }()
	return l.Cache.Add(ctx, key, v, ttl)
}

func (l *decLimited) Delete(ctx context.Context, keys ...string) (int, error) {
	if err := l.acquire(ctx); err != nil {
		return 0, err
	}
	defer func() { <-l.sem }()
	return l.Cache.Delete(ctx, keys...)
}

// CompareAndDelete forwards the wrapped cache's, as every wrapper must (the
// decorator releases its lease with it).
func (l *decLimited) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	if err := l.acquire(ctx); err != nil {
		return false, err
	}
	defer func() { <-l.sem }()
	return l.Cache.(cachekit.CompareAndDeleter).CompareAndDelete(ctx, key, old)
}

// CompareAndSwap forwards the wrapped cache's.
func (l *decLimited) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	if err := l.acquire(ctx); err != nil {
		return false, err
	}
	defer func() { <-l.sem }()
	return l.Cache.(cachekit.CompareAndSwapper).CompareAndSwap(ctx, key, old, new, ttl)
}

func (l *decLimited) Exists(ctx context.Context, key string) (bool, error) {
	if err := l.acquire(ctx); err != nil {
		return false, err
	}
	defer func() { <-l.sem }()
	return l.Cache.Exists(ctx, key)
}

// decRun runs test once per backend, each in a fresh namespace.
func decRun(t *testing.T, test func(t *testing.T, newCache func() cachekit.Cache)) {
	for _, b := range decBackends() {
		t.Run(b.name, func(t *testing.T) {
			ns := "dec-" + decUnique(t)
			test(t, func() cachekit.Cache { return b.newCache(t, ns) })
		})
	}
}

func decUnique(t *testing.T) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

var decBg = context.Background()

// decEventually polls cond until it holds or a generous deadline passes.
func decEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// decEvents is a cache wrapper that records the events the decorator emits.
type decEvents struct {
	cachekit.Cache
	mu     sync.Mutex
	counts map[cachekit.EventKind]int
}

func (e *decEvents) HandleEvent(_ context.Context, ev cachekit.Event) {
	e.mu.Lock()
	if e.counts == nil {
		e.counts = map[cachekit.EventKind]int{}
	}
	e.counts[ev.Kind]++
	e.mu.Unlock()
}

func (e *decEvents) count(k cachekit.EventKind) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.counts[k]
}

// 10,000 goroutines on one cold key: fn runs once.
func TestDecoratorLocalStampede(t *testing.T) {
	decRun(t, func(t *testing.T, newCache func() cachekit.Cache) {
		var calls, cacheErrs atomic.Int32
		var lastErr atomic.Value
		f := decorator.Cached(cachekit.NewTyped[string](newCache(), nil), func(context.Context, string) (string, error) {
			calls.Add(1)
			time.Sleep(200 * time.Millisecond)
			return "v", nil
		}, &decorator.Options[string]{Name: "stampede", TTL: time.Minute, OnError: func(ctx context.Context, err error) {
			cacheErrs.Add(1)
			lastErr.Store(err.Error())
		}})
		const n = 10000
		var wg sync.WaitGroup
		start := make(chan struct{})
		var failures atomic.Int32
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if v, err := f(decBg, "cold"); err != nil || v != "v" {
					if failures.Add(1) == 1 {
						t.Errorf("got %q, %v", v, err)
					}
				}
			}()
		}
		close(start)
		wg.Wait()
		if c := calls.Load(); c != 1 {
			t.Fatalf("fn ran %d times for %d callers; want 1 (cache errors: %d, last: %v)", c, n, cacheErrs.Load(), lastErr.Load())
		}
	})
}

// Four clients with their own connections, with the lease: fn runs once in
// total, counted outside the clients.
func TestDecoratorDistributedStampede(t *testing.T) {
	decRun(t, func(t *testing.T, newCache func() cachekit.Cache) {
		var calls atomic.Int32
		fn := func(context.Context, string) (string, error) {
			calls.Add(1)
			time.Sleep(300 * time.Millisecond)
			return "v", nil
		}
		const clients, perClient = 4, 50
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range clients {
			f := decorator.Cached(cachekit.NewTyped[string](newCache(), nil), fn,
				&decorator.Options[string]{Name: "lease", Lease: true, TTL: time.Minute})
			for range perClient {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					if v, err := f(decBg, "cold"); err != nil || v != "v" {
						t.Errorf("got %q, %v", v, err)
					}
				}()
			}
		}
		close(start)
		wg.Wait()
		if c := calls.Load(); c != 1 {
			t.Fatalf("fn ran %d times across %d clients; want 1", c, clients)
		}
	})
}

// A lease whose holder died expires, and a waiter then runs fn.
func TestDecoratorDeadLeaseHolder(t *testing.T) {
	decRun(t, func(t *testing.T, newCache func() cachekit.Cache) {
		c := newCache()
		var calls atomic.Int32
		f := decorator.New(cachekit.NewTyped[string](c, nil), func(context.Context, string) (string, error) {
			calls.Add(1)
			return "v", nil
		}, &decorator.Options[string]{Name: "dead", Lease: true, LeasePoll: 20 * time.Millisecond})
		key, _ := f.Key("k")
		// The lease of a holder that died: the decorator's lease key (a
		// lock.Locker key) holding a token nobody will release.
		if err := c.Add(decBg, "dead!"+key[len("dead"):]+":owner", []byte("crashed"), time.Second); err != nil {
			t.Fatal(err)
		}
		if v, err := f.Call(decBg, "k"); err != nil || v != "v" || calls.Load() != 1 {
			t.Fatalf("got %q, %v, %d calls", v, err, calls.Load())
		}
	})
}

func TestDecoratorCancellationAndPanic(t *testing.T) {
	decRun(t, func(t *testing.T, newCache func() cachekit.Cache) {
		typed := cachekit.NewTyped[string](newCache(), nil)
		release := make(chan struct{})
		fnErr := make(chan error, 1)
		f := decorator.Cached(typed, func(ctx context.Context, _ string) (string, error) {
			select {
			case <-release:
			case <-ctx.Done():
			}
			fnErr <- ctx.Err()
			return "v", nil
		}, &decorator.Options[string]{Name: "cancel"})
		leaver, cancel := context.WithCancel(decBg)
		leaverErr := make(chan error, 1)
		go func() { _, err := f(leaver, "k"); leaverErr <- err }()
		stayer := make(chan string, 1)
		go func() { v, _ := f(decBg, "k"); stayer <- v }()
		time.Sleep(50 * time.Millisecond)
		cancel()
		if err := <-leaverErr; !errors.Is(err, context.Canceled) {
			t.Fatalf("leaver: %v", err)
		}
		close(release)
		if v := <-stayer; v != "v" {
			t.Fatalf("stayer: %q", v)
		}
		if err := <-fnErr; err != nil {
			t.Fatalf("fn's ctx cancelled while a caller waited: %v", err)
		}

		// Every caller gone: fn's ctx is cancelled.
		g := decorator.Cached(typed, func(ctx context.Context, _ string) (string, error) {
			<-ctx.Done()
			fnErr <- ctx.Err()
			return "", ctx.Err()
		}, &decorator.Options[string]{Name: "cancel-all"})
		ctx, cancel2 := context.WithTimeout(decBg, 50*time.Millisecond)
		defer cancel2()
		if _, err := g(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("g: %v", err)
		}
		select {
		case <-fnErr:
		case <-time.After(5 * time.Second):
			t.Fatal("fn's ctx not cancelled after every caller left")
		}

		// A panic is an error for every waiter.
		var wg sync.WaitGroup
		gate := make(chan struct{})
		p := decorator.Cached(typed, func(context.Context, string) (string, error) { <-gate; panic("boom") },
			&decorator.Options[string]{Name: "panic"})
		for range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := p(decBg, "k"); !errors.Is(err, cachekit.ErrLoaderPanic) {
					t.Errorf("panic: %v", err)
				}
			}()
		}
		time.Sleep(50 * time.Millisecond)
		close(gate)
		wg.Wait()
	})
}

var decErrDown = errors.New("database down")

func TestDecoratorFailSafe(t *testing.T) {
	decRun(t, func(t *testing.T, newCache func() cachekit.Cache) {
		events := &decEvents{Cache: newCache()}
		var calls atomic.Int32
		var fail atomic.Bool
		f := decorator.Cached(cachekit.NewTyped[int](events, nil), func(context.Context, string) (int, error) {
			calls.Add(1)
			if fail.Load() {
				return 0, decErrDown
			}
			return 1, nil
		}, &decorator.Options[string]{Name: "failsafe", TTL: 100 * time.Millisecond,
			FailSafeMaxStale: time.Minute, FailSafeThrottle: time.Second})
		f(decBg, "k")
		time.Sleep(150 * time.Millisecond)
		fail.Store(true)
		for range 5 {
			if v, err := f(decBg, "k"); err != nil || v != 1 {
				t.Fatalf("fail-safe: %d, %v; want the stale 1", v, err)
			}
		}
		if c := calls.Load(); c != 2 {
			t.Fatalf("fn called %d times; want 2 (then throttled)", c)
		}
		if events.count(cachekit.EventStaleServed) == 0 {
			t.Fatal("no stale_served event")
		}
		// Without fail-safe the error comes through.
		g := decorator.Cached(cachekit.NewTyped[int](newCache(), nil), func(context.Context, string) (int, error) {
			return 0, decErrDown
		}, &decorator.Options[string]{Name: "no-failsafe"})
		if _, err := g(decBg, "k"); !errors.Is(err, decErrDown) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestDecoratorTimeouts(t *testing.T) {
	decRun(t, func(t *testing.T, newCache func() cachekit.Cache) {
		typed := cachekit.NewTyped[int](newCache(), nil)
		var version atomic.Int32
		version.Store(1)
		var gate atomic.Pointer[chan struct{}]
		fn := func(ctx context.Context, _ string) (int, error) {
			if g := gate.Load(); g != nil {
				select {
				case <-*g:
				case <-ctx.Done():
					return 0, ctx.Err()
				}
			}
			return int(version.Load()), nil
		}
		block := func() func() {
			g := make(chan struct{})
			gate.Store(&g)
			return func() { gate.Store(nil); close(g) }
		}

		// Soft timeout: the stale value now, the new one stored later.
		soft := decorator.New(typed, fn, &decorator.Options[string]{Name: "soft", TTL: 100 * time.Millisecond,
			FailSafeMaxStale: time.Minute, SoftTimeout: 50 * time.Millisecond})
		soft.Call(decBg, "k")
		time.Sleep(150 * time.Millisecond)
		version.Store(2)
		unblock := block()
		if v, err := soft.Call(decBg, "k"); err != nil || v != 1 {
			t.Fatalf("soft timeout: %d, %v; want the stale 1", v, err)
		}
		unblock()
		soft.Wait()
		if v, _ := soft.Call(decBg, "k"); v != 2 {
			t.Fatalf("after the background run: %d; want 2", v)
		}

		// Hard timeout without a stale value: an error, and the value is
		// stored when fn finishes.
		hard := decorator.New(typed, fn, &decorator.Options[string]{Name: "hard", HardTimeout: 50 * time.Millisecond})
		unblock = block()
		if _, err := hard.Call(decBg, "k"); !errors.Is(err, decorator.ErrHardTimeout) {
			t.Fatalf("hard timeout: %v", err)
		}
		unblock()
		hard.Wait()
		if v, err := hard.Call(decBg, "k"); err != nil || v != 2 {
			t.Fatalf("after the background run: %d, %v", v, err)
		}
	})
}

func TestDecoratorEarlyRefresh(t *testing.T) {
	decRun(t, func(t *testing.T, newCache func() cachekit.Cache) {
		events := &decEvents{Cache: newCache()}
		typed := cachekit.NewTyped[int](events, nil)
		var calls atomic.Int32
		var gate atomic.Pointer[chan struct{}]
		fn := func(ctx context.Context, _ string) (int, error) {
			n := calls.Add(1)
			if g := gate.Load(); g != nil {
				<-*g
			}
			return int(n), nil
		}
		// The logical TTL is what counts, even where the server rounds the
		// physical one up (Memcached, to whole seconds).
		f := decorator.New(typed, fn, &decorator.Options[string]{Name: "refresh", TTL: time.Second, RefreshAhead: 0.2})
		key, _ := f.Key("k")
		f.Call(decBg, "k")
		time.Sleep(300 * time.Millisecond)
		if v, _ := f.Call(decBg, "k"); v != 1 {
			t.Fatalf("hit = %d; want the current 1", v)
		}
		f.Wait()
		if events.count(cachekit.EventEarlyRefresh) != 1 {
			t.Fatal("no early refresh")
		}
		if v, _ := f.Call(decBg, "k"); v != 2 {
			t.Fatalf("after the refresh: %d; want 2", v)
		}

		// A refresh whose key is deleted meanwhile doesn't resurrect it.
		time.Sleep(300 * time.Millisecond)
		g := make(chan struct{})
		gate.Store(&g)
		f.Call(decBg, "k") // starts a refresh, which waits in fn
		decEventually(t, "the refresh to start", func() bool { return calls.Load() == 3 })
		if _, err := events.Delete(decBg, key); err != nil {
			t.Fatal(err)
		}
		gate.Store(nil)
		close(g)
		f.Wait()
		if ok, err := events.Exists(decBg, key); err != nil || ok {
			t.Fatalf("Exists = %v, %v: the refresh resurrected the deleted key", ok, err)
		}
	})
}

func TestDecoratorNegativeCaching(t *testing.T) {
	decRun(t, func(t *testing.T, newCache func() cachekit.Cache) {
		errNo := errors.New("no such thing")
		var calls atomic.Int32
		f := decorator.Cached(cachekit.NewTyped[string](newCache(), nil), func(context.Context, int) (string, error) {
			calls.Add(1)
			return "", fmt.Errorf("lookup: %w", errNo)
		}, &decorator.Options[int]{Name: "neg", NegativeError: errNo, NegativeTTL: 300 * time.Millisecond})
		for range 3 {
			if _, err := f(decBg, 1); !errors.Is(err, errNo) {
				t.Fatalf("err = %v", err)
			}
		}
		if c := calls.Load(); c != 1 {
			t.Fatalf("fn called %d times; want 1", c)
		}
		time.Sleep(400 * time.Millisecond)
		f(decBg, 1)
		if c := calls.Load(); c != 2 {
			t.Fatalf("after NegativeTTL: %d calls; want 2", c)
		}
	})
}

func TestDecoratorCachedMany(t *testing.T) {
	decRun(t, func(t *testing.T, newCache func() cachekit.Cache) {
		var mu sync.Mutex
		var batches [][]int
		gate := make(chan struct{})
		started := make(chan struct{}, 4)
		fn := func(ctx context.Context, ids []int) (map[int]string, error) {
			mu.Lock()
			batches = append(batches, slices.Sorted(slices.Values(ids)))
			mu.Unlock()
			started <- struct{}{}
			<-gate
			out := map[int]string{}
			for _, id := range ids {
				if id%2 == 0 {
					out[id] = fmt.Sprint("v", id)
				}
			}
			return out, nil
		}
		f := decorator.CachedMany(cachekit.NewTyped[string](newCache(), nil), fn,
			&decorator.Options[int]{Name: "many", NegativeTTL: time.Minute})
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); f(decBg, []int{2, 4, 5}) }()
		<-started
		var second map[int]string
		go func() { defer wg.Done(); second, _ = f(decBg, []int{4, 5, 6}) }()
		<-started
		close(gate)
		wg.Wait()
		if len(batches) != 2 || !slices.Equal(batches[1], []int{6}) {
			t.Fatalf("batches = %v; want [2 4 5] and [6]", batches)
		}
		if len(second) != 2 || second[4] != "v4" || second[6] != "v6" {
			t.Fatalf("second = %v", second)
		}
		got, err := f(decBg, []int{2, 4, 5, 6})
		if err != nil || len(got) != 3 || len(batches) != 2 {
			t.Fatalf("all cached: %v, %v, batches %v", got, err, batches)
		}
	})
}

func TestDecoratorInvalidate(t *testing.T) {
	decRun(t, func(t *testing.T, newCache func() cachekit.Cache) {
		var version atomic.Int32
		f := decorator.New(cachekit.NewTyped[int](newCache(), nil), func(context.Context, string) (int, error) {
			return int(version.Load()), nil
		}, &decorator.Options[string]{Name: "inv"})
		f.Call(decBg, "k")
		version.Store(1)
		if err := f.Invalidate(decBg, "k"); err != nil {
			t.Fatal(err)
		}
		if v, _ := f.Call(decBg, "k"); v != 1 {
			t.Fatalf("after Invalidate: %d", v)
		}
	})
}

// Four OS processes (this test binary, run again) on one cold key with the
// lease: fn runs once in total, counted by the parent from what the
// children report.
func TestDecoratorDistributedStampedeProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	for _, backend := range []string{"redis", "memcached"} {
		t.Run(backend, func(t *testing.T) {
			env := []string{decEnvChild + "=" + backend, decEnvNamespace + "=" + sweepNamespace("dec-"+decUnique(t)),
				// Start together, a little after every child is up.
				decEnvStart + "=" + strconv.FormatInt(time.Now().Add(3*time.Second).UnixNano(), 10)}
			if backend == "redis" {
				env = append(env, harnessEnvRedisAddr+"="+redisServer(t))
			} else {
				env = append(env, harnessEnvMemcachedAddrs+"="+memcachedServers(t, 1)[0])
			}
			const procs = 4
			outs := make([][]byte, procs)
			errs := make([]error, procs)
			var wg sync.WaitGroup
			for i := range procs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cmd := exec.Command(os.Args[0], "-test.run=^TestDecoratorProcessChild$", "-test.count=1")
					cmd.Env = append(os.Environ(), env...)
					outs[i], errs[i] = cmd.CombinedOutput()
				}()
			}
			wg.Wait()
			total := 0
			for i := range procs {
				if errs[i] != nil {
					t.Fatalf("child %d: %v\n%s", i, errs[i], outs[i])
				}
				m := regexp.MustCompile(`fn-calls=(\d+) hits=(\d+)`).FindSubmatch(outs[i])
				if m == nil {
					t.Fatalf("child %d reported nothing:\n%s", i, outs[i])
				}
				n, _ := strconv.Atoi(string(m[1]))
				total += n
				if string(m[2]) != "25" {
					t.Fatalf("child %d: %s of 25 callers got the value", i, m[2])
				}
			}
			if total != 1 {
				t.Fatalf("fn ran %d times across %d processes; want 1; the children said:\n%s", total, procs, bytes.Join(outs, []byte("\n")))
			}
		})
	}
}

const (
	decEnvChild     = "CACHEKIT_TEST_DECORATOR_CHILD"
	decEnvNamespace = "CACHEKIT_TEST_DECORATOR_NAMESPACE"
	decEnvStart     = "CACHEKIT_TEST_DECORATOR_START"
)

// TestDecoratorProcessChild is one process of
// TestDecoratorDistributedStampedeProcesses; it does nothing on its own.
func TestDecoratorProcessChild(t *testing.T) {
	backend := os.Getenv(decEnvChild)
	if backend == "" {
		t.Skip("a child of TestDecoratorDistributedStampedeProcesses")
	}
	var newCache func(*testing.T, string) cachekit.Cache
	for _, b := range decBackends() {
		if b.name == backend {
			newCache = b.newCache
		}
	}
	start, _ := strconv.ParseInt(os.Getenv(decEnvStart), 10, 64)
	var calls, hits atomic.Int32
	f := decorator.New(cachekit.NewTyped[string](newCache(t, os.Getenv(decEnvNamespace)), nil),
		func(context.Context, string) (string, error) {
			calls.Add(1)
			time.Sleep(500 * time.Millisecond)
			return "v", nil
		}, &decorator.Options[string]{Name: "procs", Lease: true, TTL: time.Minute,
			// A lease far longer than fn: on a loaded CI machine a holder's
			// fn plus its write must never outlast the lease, or a waiter
			// rightly takes it over and runs fn too.
			LeaseTTL: time.Minute,
			OnError:  func(ctx context.Context, err error) { fmt.Printf("cache-error: %v\n", err) }})
	time.Sleep(time.Until(time.Unix(0, start)))
	var wg sync.WaitGroup
	for range 25 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, err := f.Call(decBg, "cold"); err == nil && v == "v" {
				hits.Add(1)
			} else {
				t.Errorf("got %q, %v", v, err)
			}
		}()
	}
	wg.Wait()
	// The value reaches the cache, and the lease is released, in the
	// background after fn returns: wait for both before this process ends
	// (and its cache is closed), or the other processes find neither and
	// take the lease over when it expires, running fn again.
	f.Wait()
	fmt.Printf("fn-calls=%d hits=%d\n", calls.Load(), hits.Load())
}
