package integration_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/memcached"
	"github.com/cachekit/cachekit/backend/redis"
	"github.com/cachekit/cachekit/cachetest"
	"github.com/cachekit/cachekit/plugin/logging"
	"github.com/cachekit/cachekit/plugin/stats"
)

// Hooks and their plugins (stats, logging) on the real backends: the
// conformance suite through the hooks, and a scripted sequence of
// operations whose counts are known exactly. The OpenTelemetry plugin is a
// module of its own, with the same scripted test in plugin/otel.

// hooksBackend opens caches of one backend in any namespace; the caches of
// one hooksBackend share one client.
type hooksBackend struct {
	name     string
	maxValue int
	open     func(t *testing.T, ns string) cachekit.Cache
}

func hooksBackends(t *testing.T) []hooksBackend {
	return []hooksBackend{
		{name: "redis", maxValue: 1 << 20, open: hooksRedis(t)},
		{name: "memcached", maxValue: memcached.DefaultMaxValueSize, open: hooksMemcached(t)},
	}
}

// hooksRedis returns an opener of Redis caches over one client, made when
// first needed (so that a test without Redis is skipped only then).
func hooksRedis(t *testing.T) func(t *testing.T, ns string) cachekit.Cache {
	var (
		once sync.Once
		rdb  *goredis.Client
	)
	return func(tt *testing.T, ns string) cachekit.Cache {
		addr := redisServer(tt)
		once.Do(func() {
			rdb = goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true, ReadTimeout: 2 * time.Second})
			t.Cleanup(func() { rdb.Close() })
		})
		return redis.New(rdb, &redis.Options{Namespace: sweepNamespace(ns), MaxValueSize: 1 << 20})
	}
}

func hooksMemcached(t *testing.T) func(t *testing.T, ns string) cachekit.Cache {
	var (
		once   sync.Once
		client *memcache.Client
	)
	return func(tt *testing.T, ns string) cachekit.Cache {
		addrs := memcachedServers(tt, 1)
		once.Do(func() {
			client = memcache.New(addrs...)
			client.Timeout = 5 * time.Second
			client.MaxIdleConns = 16
			t.Cleanup(func() { client.Close() })
		})
		return memcached.New(client, &memcached.Options{Namespace: sweepNamespace(ns)})
	}
}

// hooksNamespace returns a namespace no other test or run uses.
func hooksNamespace(t *testing.T) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "hooks-" + hex.EncodeToString(b[:])
}

// TestHooksConformance runs the suite on every backend through the stats
// and logging hooks (logging every record, to a discarding handler).
func TestHooksConformance(t *testing.T) {
	for _, b := range hooksBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			st := stats.New(nil)
			lg := logging.New(slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug})), nil)
			cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
				return cachekit.WithHooks(b.open(t, ns), st, lg)
			}, &cachetest.Options{MaxValueSize: b.maxValue})
		})
	}
}

// hooksScript runs a fixed sequence of operations on c: the same sequence
// as plugin/stats and plugin/otel run on the memory backend.
func hooksScript(t *testing.T, c cachekit.Cache) {
	t.Helper()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Set(ctx, "a", []byte("1"), 0))
	must(c.Set(ctx, "b", []byte("two"), time.Minute))
	must(c.Set(ctx, "s", []byte("text"), 0))
	_, _ = c.Get(ctx, "a")                              // hit
	_, _ = c.Get(ctx, "b")                              // hit
	_, _ = c.Get(ctx, "c")                              // miss
	_, _ = c.GetMany(ctx, []string{"a", "b", "c", "d"}) // 2 hits, 2 misses
	must(c.SetMany(ctx, map[string][]byte{"e": []byte("5"), "f": []byte("6")}, time.Hour))
	_ = c.Add(ctx, "a", []byte("x"), 0) // exists: not an error
	must(c.Add(ctx, "g", []byte("7"), 0))
	_, _ = c.Exists(ctx, "a")       // hit
	_, _ = c.Exists(ctx, "z")       // miss
	_, _ = c.Increment(ctx, "n", 1) // 1
	_, _ = c.Increment(ctx, "n", 2) // 3
	_, _ = c.Increment(ctx, "s", 1) // error: not an integer
	_, _ = c.Expire(ctx, "a", 0)    // true
	_, _ = c.Expire(ctx, "z", 0)    // false
	_, _ = c.Delete(ctx, "a", "z")  // 1
	if cas, ok := c.(cachekit.CompareAndSwapper); !ok {
		t.Fatalf("%T hides CompareAndSwap", c)
	} else if ok, err := cas.CompareAndSwap(ctx, "b", []byte("two"), []byte("2"), time.Minute); !ok || err != nil {
		t.Fatalf("CompareAndSwap(b) = %v, %v", ok, err)
	}
	if cad, ok := c.(cachekit.CompareAndDeleter); !ok {
		t.Fatalf("%T hides CompareAndDelete", c)
	} else if ok, err := cad.CompareAndDelete(ctx, "e", []byte("wrong")); ok || err != nil {
		t.Fatalf("CompareAndDelete(e, wrong) = %v, %v", ok, err)
	}
	_, _ = c.Get(ctx, "")             // error: invalid key
	_ = c.Set(ctx, "k", nil, -1)      // error: negative TTL
	must(c.Clear(ctx))                // empties the namespace
	_, _ = c.Get(ctx, "b")            // miss
	_, _ = c.GetMany(ctx, []string{}) // nothing
}

// hooksScriptStats is the snapshot hooksScript produces, latencies aside.
var hooksScriptStats = stats.Snapshot{
	Ops: 25, Hits: 5, Misses: 5, HitRatio: 0.5, Errors: 3,
	Get:       stats.OpStats{Count: 5, Hits: 2, Misses: 2, Errors: 1},
	GetMany:   stats.OpStats{Count: 2, Hits: 2, Misses: 2},
	Set:       stats.OpStats{Count: 4, Errors: 1},
	SetMany:   stats.OpStats{Count: 1},
	Add:       stats.OpStats{Count: 2},
	Delete:    stats.OpStats{Count: 1},
	Exists:    stats.OpStats{Count: 2, Hits: 1, Misses: 1},
	Increment: stats.OpStats{Count: 3, Errors: 1},
	Expire:    stats.OpStats{Count: 2},
	Clear:     stats.OpStats{Count: 1},

	CompareAndDelete: stats.OpStats{Count: 1},
	CompareAndSwap:   stats.OpStats{Count: 1},
}

func hooksWithoutLatency(s stats.Snapshot) stats.Snapshot {
	for _, p := range []*stats.OpStats{&s.Get, &s.GetMany, &s.Set, &s.SetMany, &s.Add, &s.Delete, &s.Exists, &s.Increment, &s.Expire, &s.Clear, &s.CompareAndDelete, &s.CompareAndSwap} {
		p.P50, p.P99 = 0, 0
	}
	return s
}

func TestHooksStatsScript(t *testing.T) {
	for _, b := range hooksBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			st := stats.New(nil)
			c := cachekit.WithHooks(b.open(t, hooksNamespace(t)), st)
			defer c.Close()
			hooksScript(t, c)
			got := st.Snapshot()
			if hooksWithoutLatency(got) != hooksScriptStats {
				t.Errorf("\n got %+v\nwant %+v", got, hooksScriptStats)
			}
			// A network round trip is slower than FastThreshold, so every
			// call was timed: every kind has percentiles.
			for k := range cachekit.NumOpKinds {
				if o := got.ByKind(cachekit.OpKind(k)); o.P50 <= 0 || o.P99 < o.P50 {
					t.Errorf("%v: P50 %v, P99 %v", cachekit.OpKind(k), o.P50, o.P99)
				}
			}
		})
	}
}

// hooksLog collects JSON log records.
type hooksLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *hooksLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *hooksLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func TestHooksLoggingScript(t *testing.T) {
	for _, b := range hooksBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			var out hooksLog
			logger := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
			c := cachekit.WithHooks(b.open(t, hooksNamespace(t)), logging.New(logger, nil))
			defer c.Close()
			hooksScript(t, c)

			// One record per operation: count them by level, op and outcome.
			got := map[string]int{}
			text := out.String()
			for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
				var r struct{ Level, Msg, Op, Outcome, Error string }
				if err := json.Unmarshal([]byte(line), &r); err != nil {
					t.Fatalf("bad line %q: %v", line, err)
				}
				got[r.Level+" "+r.Op+" "+r.Outcome]++
			}
			want := map[string]int{
				"DEBUG Set ok": 3, "ERROR Set error": 1,
				"DEBUG Get hit": 2, "DEBUG Get miss": 2, "ERROR Get error": 1,
				"DEBUG GetMany ok": 2, "DEBUG SetMany ok": 1,
				"DEBUG Add exists": 1, "DEBUG Add ok": 1,
				"DEBUG Exists hit": 1, "DEBUG Exists miss": 1,
				"DEBUG Increment ok": 2, "ERROR Increment error": 1,
				"DEBUG Expire ok": 2, "DEBUG Delete ok": 1, "DEBUG Clear ok": 1,
				"DEBUG CompareAndSwap ok": 1, "DEBUG CompareAndDelete ok": 1,
			}
			if len(got) != len(want) {
				t.Errorf("records by level, op and outcome:\n got %v\nwant %v", got, want)
			}
			for k, n := range want {
				if got[k] != n {
					t.Errorf("%q: %d records, want %d", k, got[k], n)
				}
			}
			// Values are never logged ("two" and "text" are the values of b
			// and s; no key contains them).
			for _, v := range []string{"two", "text"} {
				if strings.Contains(text, v) {
					t.Errorf("the log contains the value %q:\n%s", v, text)
				}
			}
		})
	}
}

// TestHooksEvents counts the events of Typed.GetOrLoad over each backend:
// a miss and a load, a hit, a load error, callers joining a running load,
// and a value that does not decode.
func TestHooksEvents(t *testing.T) {
	for _, b := range hooksBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := stats.New(nil)
			raw := b.open(t, hooksNamespace(t))
			defer raw.Close()
			typed := cachekit.NewTyped[string](cachekit.WithHooks(raw, st), nil)
			load := func(v string) func(context.Context) (string, error) {
				return func(context.Context) (string, error) { return v, nil }
			}
			if v, err := typed.GetOrLoad(ctx, "k1", load("one")); err != nil || v != "one" {
				t.Fatalf("GetOrLoad(k1) = %q, %v", v, err)
			}
			typed.Wait() // GetOrLoad writes in the background
			if v, err := typed.GetOrLoad(ctx, "k1", load("other")); err != nil || v != "one" {
				t.Fatalf("GetOrLoad(k1) again = %q, %v", v, err)
			}
			boom := errors.New("boom")
			if _, err := typed.GetOrLoad(ctx, "k2", func(context.Context) (string, error) { return "", boom }); !errors.Is(err, boom) {
				t.Fatalf("GetOrLoad(k2) = %v", err)
			}

			const callers = 4
			release := make(chan struct{})
			var wg sync.WaitGroup
			for range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					v, err := typed.GetOrLoad(ctx, "k3", func(context.Context) (string, error) {
						<-release
						return "three", nil
					})
					if err != nil || v != "three" {
						t.Errorf("GetOrLoad(k3) = %q, %v", v, err)
					}
				}()
			}
			hooksWaitInFlight(t, "k3", callers)
			close(release)
			wg.Wait()

			if err := raw.Set(ctx, "k4", []byte("{not json"), 0); err != nil {
				t.Fatal(err)
			}
			if v, err := typed.GetOrLoad(ctx, "k4", load("four")); err != nil || v != "four" {
				t.Fatalf("GetOrLoad(k4) = %q, %v", v, err)
			}

			typed.Wait() // the background writes of k3 and k4
			got := hooksWithoutLatency(st.Snapshot())
			want := stats.Snapshot{
				// k4's read found a value (a hit for the cache) that did
				// not decode (a miss in the totals).
				Ops: 11, Hits: 1, Misses: 7, HitRatio: 0.125,
				Get:           stats.OpStats{Count: 8, Hits: 2, Misses: 6},
				Set:           stats.OpStats{Count: 3},
				Loads:         3,
				LoadErrors:    1,
				StampedeJoins: callers - 1,
				DecodeErrors:  1,
			}
			if got != want {
				t.Errorf("\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// hooksWaitInFlight waits until n goroutines started by the calling
// goroutine are waiting in the single-flight group for key's load: the one
// that started the load and the n-1 that joined it. Counting only the
// caller's goroutines keeps parallel subtests apart.
func hooksWaitInFlight(t *testing.T, key string, n int) {
	t.Helper()
	buf := make([]byte, 4<<20)
	self := string(buf[:runtime.Stack(buf, false)])
	self, _, _ = strings.Cut(strings.TrimPrefix(self, "goroutine "), " ")
	createdBy := "in goroutine " + self + "\n"
	deadline := time.Now().Add(20 * time.Second)
	for {
		all := string(buf[:runtime.Stack(buf, true)])
		got := 0
		for _, g := range strings.Split(all, "\n\n") {
			if strings.Contains(g, "internal/flight.(*Group[...]).Do(") && strings.Contains(g, createdBy) {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers waiting for the load of %s, want %d", got, key, n)
		}
		time.Sleep(time.Millisecond)
	}
}
