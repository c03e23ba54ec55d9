package integration_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/redis"
	"github.com/cachekit/cachekit/decorator"
	"github.com/cachekit/cachekit/internal/faultproxy"
	"github.com/cachekit/cachekit/internal/testserver"
)

// Fault-injection tests for the Redis backend (issue #12): lost replies, a
// killed and a frozen server, namespace isolation on real servers and a
// cluster, and CompareAndDelete under contention. The servers that are
// frozen, killed or put behind a proxy are processes of their own
// (internal/testserver); the shared ones come from the harness.

// TestRedisFaultLostReply drops the reply of a write after the server ran
// it, many times over: Increment adds exactly once or reports
// ErrUnknownOutcome, Add never reports ErrExists for its own write, and
// Delete's count is right or the error is ErrUnknownOutcome.
func TestRedisFaultLostReply(t *testing.T) {
	srv := testserver.StartRedis(t)
	proxy := faultproxy.Start(t, srv.Addr())
	admin := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { admin.Close() })
	ctx := context.Background()

	opened, err := cachekit.Open(ctx, "redis://"+proxy.Addr()+"/0?namespace=lost-url&breaker_threshold=0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { opened.Close() })
	defaults := goredis.NewClient(&goredis.Options{Addr: proxy.Addr(), ContextTimeoutEnabled: true}) // MaxRetries: go-redis's 3
	t.Cleanup(func() { defaults.Close() })
	caches := []struct {
		name string
		c    cachekit.Cache
		ns   string
	}{
		{"Open", opened, "lost-url"},
		{"New", redis.New(defaults, &redis.Options{Namespace: "lost-new", BreakerThreshold: -1}), "lost-new"},
	}
	const rounds = 10
	for _, tc := range caches {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			raw := func(k string) string { return tc.ns + ":" + k }
			// A read first, so the connection is up and the lost reply is
			// the write's, not a new connection's handshake.
			drop := func() {
				t.Helper()
				if _, err := c.Exists(ctx, "warm-up"); err != nil {
					t.Fatal(err)
				}
				proxy.DropNextReply()
			}
			var unknowns int
			want := int64(0)
			for i := 0; i < rounds; i++ {
				drop()
				v, err := c.Increment(ctx, "ctr", 1)
				got, _ := admin.Get(ctx, raw("ctr")).Int64()
				switch {
				case err == nil:
					want++
					if v != want || got != want {
						t.Fatalf("round %d: Increment returned %d, server holds %d; want %d", i, v, got, want)
					}
				case errors.Is(err, cachekit.ErrUnknownOutcome):
					unknowns++
					if got != want && got != want+1 {
						t.Fatalf("round %d: after an unknown Increment the server holds %d; want %d or %d", i, got, want, want+1)
					}
					want = got
				default:
					t.Fatalf("round %d: Increment: %v", i, err)
				}

				key := "lease-" + strconv.Itoa(i)
				drop()
				err = c.Add(ctx, key, []byte("mine"), time.Minute)
				if errors.Is(err, cachekit.ErrExists) {
					t.Fatalf("round %d: Add reported ErrExists for its own write: %v", i, err)
				}
				if err != nil && !errors.Is(err, cachekit.ErrUnknownOutcome) {
					t.Fatalf("round %d: Add: %v", i, err)
				}
				stored, _ := admin.Get(ctx, raw(key)).Result()
				if err == nil && stored != "mine" {
					t.Fatalf("round %d: Add succeeded but the server holds %q", i, stored)
				}
				if stored != "mine" {
					if err := admin.Set(ctx, raw(key), "mine", time.Minute).Err(); err != nil {
						t.Fatal(err)
					}
				}

				drop()
				n, err := c.Delete(ctx, key)
				left, _ := admin.Exists(ctx, raw(key)).Result()
				switch {
				case err == nil && (n != 1 || left != 0):
					t.Fatalf("round %d: Delete = %d with %d left; want 1 and 0", i, n, left)
				case err != nil && !errors.Is(err, cachekit.ErrUnknownOutcome):
					t.Fatalf("round %d: Delete: %v", i, err)
				case err != nil && n != 0:
					t.Fatalf("round %d: Delete returned a count (%d) with its error", i, n)
				}
			}
			if unknowns == 0 {
				t.Fatalf("no Increment of %d reported a lost reply: the proxy dropped nothing?", rounds)
			}
		})
	}
}

// TestRedisFaultKilledServer kills the server under a URL-opened cache and
// calls it in a loop, as a decorated function would: every error names the
// refused connection, once the breaker is open a Get returns at once, and
// after a restart the cache works again once the breaker period is over.
func TestRedisFaultKilledServer(t *testing.T) {
	srv := testserver.StartRedis(t)
	ctx := context.Background()
	c, err := cachekit.Open(ctx, "redis://"+srv.Addr()+"/0?namespace=killed&breaker_threshold=3&breaker_duration=500ms")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Set(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	srv.Kill()

	var open int
	for i := 0; i < 20; i++ {
		start := time.Now()
		_, err := c.Get(ctx, "k")
		took := time.Since(start)
		if err == nil {
			t.Fatalf("Get %d against a killed server succeeded", i)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("Get %d: %v; want the refused connection in the error", i, err)
		}
		if took > 900*time.Millisecond {
			t.Fatalf("Get %d took %v; want it to fail within the 1s operation timeout, on the refused dial", i, took)
		}
		if errors.Is(err, cachekit.ErrUnavailable) {
			open++
			if took > 200*time.Millisecond {
				t.Fatalf("Get %d with the breaker open took %v", i, took)
			}
		} else if i >= 3 && open == 0 {
			t.Fatalf("Get %d: breaker still closed after %d refused connections: %v", i, i, err)
		}
	}
	if open == 0 {
		t.Fatal("the breaker never opened")
	}

	// A decorated function over the dead cache runs at fn's speed: the
	// cache read and the background write fail at once.
	calls := 0
	f := decorator.New(cachekit.NewTyped[string](c, nil), func(ctx context.Context, id int) (string, error) {
		calls++
		return "v" + strconv.Itoa(id), nil
	}, &decorator.Options[int]{Name: "killed-server-fn"})
	for i := 0; i < 20; i++ {
		start := time.Now()
		v, err := f.Call(ctx, i)
		if took := time.Since(start); err != nil || v != "v"+strconv.Itoa(i) || took > 200*time.Millisecond {
			t.Fatalf("decorated call %d with the cache down: %q, %v after %v; want fn's value at once", i, v, err, took)
		}
	}
	f.Wait()
	if calls != 20 {
		t.Fatalf("fn ran %d times for 20 calls", calls)
	}

	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := c.Set(ctx, "k", []byte("back"), 0)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cache did not recover after the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v, err := c.Get(ctx, "k"); err != nil || string(v) != "back" {
		t.Fatalf("Get after the restart: %q, %v", v, err)
	}
}

// TestRedisFaultFrozenServer freezes the server (SIGSTOP): each call ends at
// the cache's own timeout until the breaker opens, then calls fail at once;
// after the thaw the cache works again.
func TestRedisFaultFrozenServer(t *testing.T) {
	srv := testserver.StartRedis(t)
	ctx := context.Background()
	c, err := cachekit.Open(ctx, "redis://"+srv.Addr()+"/0?namespace=frozen&timeout=300ms&breaker_threshold=2&breaker_duration=300ms")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Set(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	srv.Freeze()
	thawed := false
	defer func() {
		if !thawed {
			srv.Thaw()
		}
	}()
	for i := 0; i < 2; i++ {
		start := time.Now()
		_, err := c.Get(ctx, "k")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Get %d on a frozen server: %v; want the 300ms timeout", i, err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("Get %d took %v; timeout 300ms", i, took)
		}
	}
	start := time.Now()
	_, err = c.Get(ctx, "k")
	if !errors.Is(err, cachekit.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("after 2 timeouts: %v; want ErrUnavailable wrapping the timeout", err)
	}
	if took := time.Since(start); took > 200*time.Millisecond {
		t.Fatalf("Get with the breaker open took %v", took)
	}
	srv.Thaw()
	thawed = true
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := c.Get(ctx, "k")
		if err == nil && string(v) == "v" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery after the thaw: %q, %v", v, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRedisNamespacesDoNotNest: on a standalone server and on a cluster,
// namespace "x" with key "b:k" is not namespace "x:b" with key "k", and
// Clear on one namespace removes nothing of another, for namespaces holding
// separators and glob characters.
func TestRedisNamespacesDoNotNest(t *testing.T) {
	for _, topo := range []string{"standalone", "cluster"} {
		t.Run(topo, func(t *testing.T) {
			var client goredis.UniversalClient
			if topo == "cluster" {
				client = redisClusterClient(t)
			} else {
				client = redisClient(t, true, 0)
			}
			ctx := context.Background()
			base := uniqueName("nest")
			suffixes := []string{"", ":b", "*", "?", "[a]", `\`, "%", "%3Ab", ":", "::b"}
			keys := []string{"k", "b:k", "3Ab:k", ":k", "*", "{t}k"}
			caches := map[string]*redis.Cache{}
			for _, s := range suffixes {
				ns := base + s
				caches[ns] = redis.New(client, &redis.Options{Namespace: ns, ScanCount: 4})
				for _, k := range keys {
					if err := caches[ns].Set(ctx, k, []byte(ns+"|"+k), time.Minute); err != nil {
						t.Fatal(err)
					}
				}
			}
			for ns, c := range caches {
				got, err := c.GetMany(ctx, keys)
				if err != nil || len(got) != len(keys) {
					t.Fatalf("namespace %q: %d of its keys, %v", ns, len(got), err)
				}
				for k, v := range got {
					if string(v) != ns+"|"+k {
						t.Fatalf("namespace %q key %q holds %q: another namespace's value", ns, k, v)
					}
				}
			}
			cleared := map[string]bool{}
			for _, s := range suffixes {
				ns := base + s
				if err := caches[ns].Clear(ctx); err != nil {
					t.Fatal(err)
				}
				cleared[ns] = true
				for other, c := range caches {
					got, err := c.GetMany(ctx, keys)
					if err != nil {
						t.Fatal(err)
					}
					want := len(keys)
					if cleared[other] {
						want = 0
					}
					if len(got) != want {
						t.Fatalf("after Clear on %q, namespace %q holds %d of its %d keys; want %d", ns, other, len(got), len(keys), want)
					}
				}
			}
		})
	}
}

// TestRedisClearNeedsNamespaceOrAllowFlush: without a namespace, Clear
// touches nothing unless AllowFlush (allow_flush=true) is set.
func TestRedisClearNeedsNamespaceOrAllowFlush(t *testing.T) {
	ctx := context.Background()
	db := redisClient(t, true, 14)
	keep := uniqueName("keep")
	if err := db.Set(ctx, keep, "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	defer db.Del(ctx, keep)
	c := redis.New(db, nil)
	if err := c.Clear(ctx); !errors.Is(err, cachekit.ErrFlushNotAllowed) {
		t.Fatalf("Clear without a namespace: %v; want ErrFlushNotAllowed", err)
	}
	opened, err := cachekit.Open(ctx, "redis://"+redisServer(t)+"/14")
	if err != nil {
		t.Fatal(err)
	}
	defer opened.Close()
	if err := opened.Clear(ctx); !errors.Is(err, cachekit.ErrFlushNotAllowed) {
		t.Fatalf("Clear of redis://.../14: %v; want ErrFlushNotAllowed", err)
	}
	if v, err := db.Get(ctx, keep).Result(); err != nil || v != "v" {
		t.Fatalf("a refused Clear touched the database: %q, %v", v, err)
	}

	flushAllowed(t, "CACHEKIT_TEST_REDIS_ADDR")
	allowed, err := cachekit.Open(ctx, "redis://"+redisServer(t)+"/14?allow_flush=true")
	if err != nil {
		t.Fatal(err)
	}
	defer allowed.Close()
	if err := allowed.Clear(ctx); err != nil {
		t.Fatalf("Clear with allow_flush=true: %v", err)
	}
	if n, err := db.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("database 14 after an allowed flush: %d keys, %v", n, err)
	}
}

// TestRedisCompareAndDelete: on a standalone server and a cluster, 100
// concurrent releases of one lease delete it exactly once, for leases in
// many slots.
func TestRedisCompareAndDelete(t *testing.T) {
	for _, topo := range []string{"standalone", "cluster"} {
		t.Run(topo, func(t *testing.T) {
			var client goredis.UniversalClient
			if topo == "cluster" {
				client = redisClusterClient(t)
			} else {
				client = redisClient(t, true, 0)
			}
			ctx := context.Background()
			c := redis.New(client, &redis.Options{Namespace: uniqueName("cad")})
			defer c.Clear(ctx)
			var cad cachekit.CompareAndDeleter = c
			for i := 0; i < 8; i++ {
				key := "lease-" + strconv.Itoa(i)
				if err := c.Set(ctx, key, []byte("token"), time.Minute); err != nil {
					t.Fatal(err)
				}
				var deleted atomic.Int32
				var wg sync.WaitGroup
				for range 100 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						ok, err := cad.CompareAndDelete(ctx, key, []byte("token"))
						if err != nil {
							t.Error(err)
						}
						if ok {
							deleted.Add(1)
						}
					}()
				}
				wg.Wait()
				if n := deleted.Load(); n != 1 {
					t.Fatalf("%s: %d of 100 concurrent releases deleted; want exactly 1", key, n)
				}
				if ok, err := cad.CompareAndDelete(ctx, key, []byte("token")); ok || err != nil {
					t.Fatalf("release of a deleted lease: %v, %v", ok, err)
				}
			}
			if err := c.Set(ctx, "held", []byte("someone-else"), time.Minute); err != nil {
				t.Fatal(err)
			}
			if ok, err := cad.CompareAndDelete(ctx, "held", []byte("token")); ok || err != nil {
				t.Fatalf("release of somebody else's lease: %v, %v", ok, err)
			}
		})
	}
}

// TestRedisNamespacesDoNotNestClusterSpread is the cluster case of issue
// #11: namespaces "t1" and "t1:x" hold 300 keys each, spread over slots of
// every master of the cluster; Clear on "t1" removes its 300 keys and none
// of "t1:x" on any master, and Clear on "t1:x" then leaves "t1"'s new keys
// alone.
func TestRedisNamespacesDoNotNestClusterSpread(t *testing.T) {
	rdb := redisClusterClient(t)
	ctx := context.Background()
	parent := uniqueName("t1")
	child := parent + ":x"
	outer := redis.New(rdb, &redis.Options{Namespace: parent, ScanCount: 50})
	inner := redis.New(rdb, &redis.Options{Namespace: child, ScanCount: 50})
	keys := make([]string, 300)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}
	fill := func(c *redis.Cache, ns string) {
		t.Helper()
		items := map[string][]byte{}
		for _, k := range keys {
			items[k] = []byte(ns + "|" + k)
		}
		if err := c.SetMany(ctx, items, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	fill(outer, parent)
	fill(inner, child)

	// The child's keys are on every master: the namespace's ':' is
	// written %3A on the wire (see Options.Namespace).
	masters := map[string]int{}
	for _, k := range keys {
		m, err := rdb.MasterForKey(ctx, strings.ReplaceAll(child, ":", "%3A")+":"+k)
		if err != nil {
			t.Fatal(err)
		}
		masters[m.Options().Addr]++
	}
	var all []string
	var mu sync.Mutex // ForEachMaster calls fn concurrently
	if err := rdb.ForEachMaster(ctx, func(_ context.Context, m *goredis.Client) error {
		mu.Lock()
		all = append(all, m.Options().Addr)
		mu.Unlock()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, addr := range all {
		if masters[addr] == 0 {
			t.Fatalf("none of the 300 keys of %q is on master %s (%v): the test would not cover it", child, addr, masters)
		}
	}
	if len(all) < 3 {
		t.Fatalf("the cluster has %d masters; want 3", len(all))
	}
	t.Logf("keys of %q per master: %v", child, masters)

	count := func(c *redis.Cache, ns string) int {
		t.Helper()
		got, err := c.GetMany(ctx, keys)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range got {
			if string(v) != ns+"|"+k {
				t.Fatalf("namespace %q key %q holds %q", ns, k, v)
			}
		}
		return len(got)
	}
	if err := outer.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(outer, parent); n != 0 {
		t.Fatalf("after Clear on %q it still holds %d of its keys", parent, n)
	}
	if n := count(inner, child); n != len(keys) {
		t.Fatalf("Clear on %q removed %d of the %d keys of %q", parent, len(keys)-n, len(keys), child)
	}
	fill(outer, parent)
	if err := inner.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(inner, child); n != 0 {
		t.Fatalf("after Clear on %q it still holds %d of its keys", child, n)
	}
	if n := count(outer, parent); n != len(keys) {
		t.Fatalf("Clear on %q removed %d of the %d keys of %q", child, len(keys)-n, len(keys), parent)
	}
	if err := outer.Clear(ctx); err != nil {
		t.Fatal(err)
	}
}
