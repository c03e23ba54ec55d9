package integration_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/backend/redis"
	"github.com/cachekit/cachekit/cachetest"
)

// Redis-specific environment, on top of the harness's (servers_test.go,
// where redisSentinel, redisTLS and redisFlushAllowed read them):
//
//	CACHEKIT_TEST_REDIS_SENTINEL_ADDRS   comma-separated Sentinel addresses; with
//	CACHEKIT_TEST_REDIS_SENTINEL_MASTER  the monitored master's name, for the Sentinel tests
//	                                     (unset: the harness starts Sentinels from redis-server)
//	CACHEKIT_TEST_REDIS_FLUSH_OK=1       lets the tests run FLUSHDB (Clear without a
//	                                     namespace) on servers given by address; servers
//	                                     the harness started itself are always fair game
//	CACHEKIT_TEST_REDIS_TLS_ADDR         a TLS-only server (host:port), for the rediss://
//	CACHEKIT_TEST_REDIS_TLS_CA_FILE      tests, and the CA that signed its certificate
//	                                     (unset: the harness starts one from redis-server)
const (
	envRedisSentinelAddrs  = "CACHEKIT_TEST_REDIS_SENTINEL_ADDRS"
	envRedisSentinelMaster = "CACHEKIT_TEST_REDIS_SENTINEL_MASTER"
	envRedisFlushOK        = "CACHEKIT_TEST_REDIS_FLUSH_OK"
	envRedisTLSAddr        = "CACHEKIT_TEST_REDIS_TLS_ADDR"
)

// redisTestValueLimit is the MaxValueSize the conformance runs declare: big
// enough for the suite's 512 KiB value, small enough to test cheaply.
const redisTestValueLimit = 1 << 20

// redisClient returns a standalone client (ContextTimeoutEnabled unless
// told otherwise), closed when t ends.
func redisClient(t *testing.T, ctxTimeouts bool, db int) *goredis.Client {
	t.Helper()
	rdb := goredis.NewClient(&goredis.Options{
		Addr:                  redisServer(t),
		DB:                    db,
		ContextTimeoutEnabled: ctxTimeouts,
		ReadTimeout:           2 * time.Second,
	})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// redisClusterClient returns a cluster client, closed when t ends.
func redisClusterClient(t *testing.T) *goredis.ClusterClient {
	t.Helper()
	rdb := goredis.NewClusterClient(&goredis.ClusterOptions{
		Addrs:                 redisCluster(t),
		ContextTimeoutEnabled: true,
		ReadTimeout:           2 * time.Second,
	})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// uniqueName returns a name no other test or run uses, for a key or a
// namespace; the harness deletes what a run left under it (sweepNamespace).
func uniqueName(prefix string) string {
	return sweepNamespace(fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()))
}

func TestRedisConformance(t *testing.T) {
	rdb := redisClient(t, true, 0)
	cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
		return redis.New(rdb, &redis.Options{Namespace: sweepNamespace(ns), MaxValueSize: redisTestValueLimit})
	}, &cachetest.Options{MaxValueSize: redisTestValueLimit, UnnamespacedClear: cachetest.UnnamespacedClearRefused})
}

// TestRedisConformanceWithoutContextTimeouts runs the suite over a client
// without ContextTimeoutEnabled: the cache then enforces deadlines itself.
func TestRedisConformanceWithoutContextTimeouts(t *testing.T) {
	rdb := redisClient(t, false, 0)
	cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
		return redis.New(rdb, &redis.Options{Namespace: sweepNamespace(ns), MaxValueSize: redisTestValueLimit})
	}, &cachetest.Options{MaxValueSize: redisTestValueLimit, UnnamespacedClear: cachetest.UnnamespacedClearRefused})
}

// TestRedisURLConformance runs the suite over caches opened from URLs, each
// owning its client.
func TestRedisURLConformance(t *testing.T) {
	addr := redisServer(t)
	cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
		c, err := cachekit.Open(context.Background(), "redis://"+addr+"/0?max_value_size=1MiB&namespace="+url.QueryEscape(sweepNamespace(ns)))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}, &cachetest.Options{MaxValueSize: redisTestValueLimit, UnnamespacedClear: cachetest.UnnamespacedClearRefused})
}

// TestRedisAutoPipelineConformance runs the suite with auto-pipelining on:
// caches built in code and opened from URLs, standalone and on the cluster.
func TestRedisAutoPipelineConformance(t *testing.T) {
	opts := &cachetest.Options{MaxValueSize: redisTestValueLimit, UnnamespacedClear: cachetest.UnnamespacedClearRefused}
	t.Run("New", func(t *testing.T) {
		rdb := redisClient(t, true, 0)
		cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
			return redis.New(rdb, &redis.Options{Namespace: sweepNamespace(ns), MaxValueSize: redisTestValueLimit, AutoPipeline: true})
		}, opts)
	})
	t.Run("URL", func(t *testing.T) {
		addr := redisServer(t)
		cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
			c, err := cachekit.Open(context.Background(), "redis://"+addr+"/0?auto_pipeline=true&max_value_size=1MiB&namespace="+url.QueryEscape(sweepNamespace(ns)))
			if err != nil {
				t.Fatal(err)
			}
			return c
		}, opts)
	})
	t.Run("Cluster", func(t *testing.T) {
		rdb := redisClusterClient(t)
		cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
			return redis.New(rdb, &redis.Options{Namespace: sweepNamespace(ns), MaxValueSize: redisTestValueLimit, AutoPipeline: true})
		}, opts)
	})
	t.Run("ClusterURL", func(t *testing.T) {
		addrs := redisCluster(t)
		cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
			c, err := cachekit.Open(context.Background(), "redis+cluster://"+strings.Join(addrs, ",")+"?auto_pipeline=true&max_value_size=1MiB&namespace="+url.QueryEscape(sweepNamespace(ns)))
			if err != nil {
				t.Fatal(err)
			}
			return c
		}, opts)
	})
}

func TestRedisClusterConformance(t *testing.T) {
	rdb := redisClusterClient(t)
	cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
		return redis.New(rdb, &redis.Options{Namespace: sweepNamespace(ns), MaxValueSize: redisTestValueLimit})
	}, &cachetest.Options{MaxValueSize: redisTestValueLimit, UnnamespacedClear: cachetest.UnnamespacedClearRefused})
}

// TestRedisRingConformance runs the suite over a go-redis Ring. Its two
// shards are the same server (the harness has one standalone server), which
// still exercises the per-shard routing of GetMany, Delete and Clear.
func TestRedisRingConformance(t *testing.T) {
	addr := redisServer(t)
	rdb := goredis.NewRing(&goredis.RingOptions{
		Addrs:                 map[string]string{"shard-a": addr, "shard-b": addr},
		ContextTimeoutEnabled: true,
	})
	t.Cleanup(func() { rdb.Close() })
	cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
		return redis.New(rdb, &redis.Options{Namespace: sweepNamespace(ns), MaxValueSize: redisTestValueLimit})
	}, &cachetest.Options{MaxValueSize: redisTestValueLimit, UnnamespacedClear: cachetest.UnnamespacedClearRefused})
}

// masterAddrs returns, for each key, the address of the master owning its
// slot, and the number of distinct slots.
func slotOwners(t *testing.T, rdb *goredis.ClusterClient, keys []string) (owners map[string]int, slots int) {
	t.Helper()
	ctx := context.Background()
	owners = map[string]int{}
	seen := map[int64]bool{}
	for _, k := range keys {
		s, err := rdb.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		seen[s] = true
		node, err := rdb.MasterForKey(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		owners[node.Options().Addr]++
	}
	return owners, len(seen)
}

// roundTrips counts calls into a go-redis client: each Process is one
// command, each ProcessPipeline one pipeline.
type roundTrips struct{ cmds, pipelines atomic.Int64 }

func (h *roundTrips) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (h *roundTrips) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.cmds.Add(1)
		return next(ctx, cmd)
	}
}
func (h *roundTrips) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.pipelines.Add(1)
		return next(ctx, cmds)
	}
}
func (h *roundTrips) reset() (cmds, pipelines int64) {
	return h.cmds.Swap(0), h.pipelines.Swap(0)
}

// TestRedisClusterCrossSlot: GetMany and Delete over keys in many slots on
// every master never surface CROSSSLOT, and each is one pipeline. With
// go-redis's command-policy resolver, which refuses multi-slot commands in
// pipelines and splits them itself, they still work.
func TestRedisClusterCrossSlot(t *testing.T) {
	for _, dynamic := range []bool{false, true} {
		t.Run(fmt.Sprintf("DynamicResolver=%v", dynamic), func(t *testing.T) {
			rdb := redisClusterClient(t)
			if dynamic {
				rdb.SetCommandInfoResolver(rdb.NewDynamicResolver())
			}
			testCrossSlot(t, rdb, !dynamic)
		})
	}
}

func testCrossSlot(t *testing.T, rdb *goredis.ClusterClient, countTrips bool) {
	ctx := context.Background()
	ns := uniqueName("crossslot")
	c := redis.New(rdb, &redis.Options{Namespace: ns})
	defer c.Close()

	items := map[string][]byte{}
	var keys, wire []string
	for i := range 200 {
		k := "key-" + strconv.Itoa(i)
		items[k] = []byte("value-" + strconv.Itoa(i))
		keys = append(keys, k)
		wire = append(wire, ns+":"+k)
	}
	owners, slots := slotOwners(t, rdb, wire)
	if len(owners) < 3 || slots < 100 {
		t.Fatalf("test keys cover %d masters and %d slots; want >= 3 and >= 100", len(owners), slots)
	}

	hook := &roundTrips{}
	rdb.AddHook(hook)
	wantOnePipeline := func(what string) {
		t.Helper()
		if cmds, pipes := hook.reset(); countTrips && (cmds != 0 || pipes != 1) {
			t.Errorf("%s made %d commands and %d pipelines; want one pipeline", what, cmds, pipes)
		}
	}
	if err := c.SetMany(ctx, items, time.Minute); err != nil {
		t.Fatalf("SetMany: %v", err)
	}
	wantOnePipeline("SetMany")
	query := append(append([]string{}, keys...), "missing-1", "missing-2", keys[0])
	got, err := c.GetMany(ctx, query)
	if err != nil {
		t.Fatalf("GetMany: %v", err)
	}
	wantOnePipeline("GetMany")
	if len(got) != len(items) {
		t.Fatalf("GetMany returned %d entries; want %d", len(got), len(items))
	}
	for k, v := range items {
		if !bytes.Equal(got[k], v) {
			t.Fatalf("GetMany[%q] = %q; want %q", k, got[k], v)
		}
	}
	n, err := c.Delete(ctx, append(keys[:150:150], "missing", keys[0])...)
	if err != nil || n != 150 {
		t.Fatalf("Delete(150 keys + a missing one + a duplicate) = %d, %v; want 150", n, err)
	}
	wantOnePipeline("Delete")
	// The rest are really there, under the namespace, and nothing else is.
	for _, w := range wire[150:160] {
		if v, err := rdb.Get(ctx, w).Result(); err != nil || !strings.HasPrefix(v, "value-") {
			t.Fatalf("raw GET %q = %q, %v", w, v, err)
		}
	}
	if left := scanAll(t, rdb, ns+":*"); len(left) != 50 {
		t.Fatalf("%d keys left after Delete; want 50", len(left))
	}
	got, err = c.GetMany(ctx, keys)
	if err != nil || len(got) != 50 {
		t.Fatalf("GetMany after Delete = %d entries, %v; want 50", len(got), err)
	}
	if err := c.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if left := scanAll(t, rdb, ns+":*"); len(left) != 0 {
		t.Fatalf("%d keys left after Clear", len(left))
	}
}

// scanAll returns the keys matching pattern on every master.
func scanAll(t *testing.T, rdb *goredis.ClusterClient, pattern string) map[string]bool {
	t.Helper()
	var mu sync.Mutex
	keys := map[string]bool{}
	err := rdb.ForEachMaster(context.Background(), func(ctx context.Context, node *goredis.Client) error {
		it := node.Scan(ctx, 0, pattern, 1000).Iterator()
		for it.Next(ctx) {
			mu.Lock()
			keys[it.Val()] = true
			mu.Unlock()
		}
		return it.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestRedisClusterClear: Clear walks every master and removes only its
// namespace, even when namespaces hold glob characters.
func TestRedisClusterClear(t *testing.T) {
	rdb := redisClusterClient(t)
	ctx := context.Background()
	base := uniqueName("clear")
	namespaces := []string{base, base + "*", base + "?", base + "[a]", base + "a", base + `\`, base + ":sub"}
	caches := map[string]*redis.Cache{}
	for _, ns := range namespaces {
		caches[ns] = redis.New(rdb, &redis.Options{Namespace: ns, ScanCount: 7}) // small batches: many SCAN rounds
		defer caches[ns].Close()
		items := map[string][]byte{}
		for i := range 60 {
			items["k"+strconv.Itoa(i)] = []byte(ns)
		}
		if err := caches[ns].SetMany(ctx, items, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	// Keys outside any namespace, some looking like namespaced ones.
	raw := []string{base, base + "-raw", base + "*x", base + "x:k1", base + "ab:k1"}
	for _, k := range raw {
		if err := rdb.Set(ctx, k, "raw", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	defer rdb.Del(ctx, raw...)
	all := scanAll(t, rdb, base+"*")
	if owners, _ := slotOwners(t, rdb, keysOf(all)); len(owners) < 3 {
		t.Fatalf("test keys on %d masters; want every master", len(owners))
	}

	// Clear the glob-looking namespace first: "base*" must not touch "base",
	// "base?", "base[a]", "basea".
	for _, ns := range []string{base + "*", base + "[a]", base + `\`, base} {
		if err := caches[ns].Clear(ctx); err != nil {
			t.Fatalf("Clear(%q): %v", ns, err)
		}
		left := scanAll(t, rdb, base+"*")
		for k := range all {
			cleared := strings.HasPrefix(k, ns+":")
			if left[k] == cleared {
				t.Fatalf("after Clear(%q): key %q present=%v", ns, k, left[k])
			}
		}
		all = left
	}
	// Namespaces never nest: "base:sub" is stored as "base%3Asub:", so
	// Clear(base) left it, and the others stay too.
	for _, ns := range []string{base + "?", base + "a", base + ":sub"} {
		got, err := caches[ns].GetMany(ctx, []string{"k0", "k59"})
		if err != nil || len(got) != 2 {
			t.Fatalf("namespace %q after the other Clears: %d keys, %v", ns, len(got), err)
		}
	}
	for _, k := range raw {
		if v, err := rdb.Get(ctx, k).Result(); err != nil || v != "raw" {
			t.Fatalf("un-namespaced key %q after Clear: %q, %v", k, v, err)
		}
	}
	for _, ns := range namespaces {
		if err := caches[ns].Clear(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func keysOf(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// flushAllowed skips t (or fails it under CI) unless it may flush databases
// on the server whose address came from envAddr (see redisFlushAllowed).
func flushAllowed(t *testing.T, envAddr string) {
	t.Helper()
	redisFlushAllowed(t, envAddr)
}

// TestRedisClearWithoutNamespace: Clear without a namespace empties the
// database it uses, and only that one (standalone: database 15 here).
func TestRedisClearWithoutNamespace(t *testing.T) {
	flushAllowed(t, "CACHEKIT_TEST_REDIS_ADDR")
	ctx := context.Background()
	db0, db15 := redisClient(t, true, 0), redisClient(t, true, 15)
	keep := uniqueName("keep-in-db0")
	if err := db0.Set(ctx, keep, "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	defer db0.Del(ctx, keep)
	c := redis.New(db15, &redis.Options{AllowFlush: true})
	defer c.Close()
	if err := c.Set(ctx, "a", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	if err := db15.Set(ctx, "not-written-by-the-cache", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := db15.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("database 15 after Clear: %d keys, %v; want 0", n, err)
	}
	if v, err := db0.Get(ctx, keep).Result(); err != nil || v != "v" {
		t.Fatalf("database 0 after Clear of database 15: %q, %v", v, err)
	}
}

func TestRedisClusterClearWithoutNamespace(t *testing.T) {
	flushAllowed(t, "CACHEKIT_TEST_REDIS_CLUSTER_ADDRS")
	ctx := context.Background()
	rdb := redisClusterClient(t)
	c := redis.New(rdb, &redis.Options{AllowFlush: true})
	defer c.Close()
	var keys []string
	for i := range 50 {
		keys = append(keys, uniqueName("flush")+strconv.Itoa(i))
	}
	for _, k := range keys {
		if err := c.Set(ctx, k, []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
	}
	if owners, _ := slotOwners(t, rdb, keys); len(owners) < 3 {
		t.Fatalf("keys on %d masters", len(owners))
	}
	if err := c.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	err := rdb.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
		n, err := node.DBSize(ctx).Result()
		if err == nil && n != 0 {
			err = fmt.Errorf("%s still holds %d keys", node.Options().Addr, n)
		}
		return err
	})
	if err != nil {
		t.Fatalf("after Clear without a namespace: %v", err)
	}
}

// pause blocks every client of the server behind node for d (CLIENT PAUSE
// ALL, sent from a connection of its own) and returns a func that waits for
// the pause to end: a paused server blocks CLIENT UNPAUSE too.
func pause(t *testing.T, node *goredis.Client, d time.Duration) (wait func()) {
	t.Helper()
	end := time.Now().Add(d)
	if err := node.Do(context.Background(), "CLIENT", "PAUSE", d.Milliseconds(), "ALL").Err(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
	return func() { time.Sleep(time.Until(end) + 10*time.Millisecond) }
}

// checkDeadline runs op with a deadline of d (or, for a negative d, with no
// deadline and a cache whose default timeout is -d) against a server that
// does not answer (paused), and checks that it fails with
// context.DeadlineExceeded, and returns well before the server would have
// answered: within deadlineSlack of the deadline (more than ten times the
// deadline, so that a loaded machine doesn't fail it; the pause lasts much
// longer). A slow call gets one more attempt.
func checkDeadline(t *testing.T, what string, d time.Duration, op func(ctx context.Context) error) {
	t.Helper()
	var took time.Duration
	for attempt := 0; attempt < 2; attempt++ {
		ctx, cancel := context.Background(), context.CancelFunc(func() {})
		if d > 0 {
			ctx, cancel = context.WithTimeout(ctx, d)
		}
		start := time.Now()
		err := op(ctx)
		took = time.Since(start)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: %v; want context.DeadlineExceeded", what, err)
			return
		}
		if took <= d.Abs()+deadlineSlack {
			return
		}
	}
	t.Errorf("%s returned %v after it started (2 attempts); deadline %v, so it waited for the server", what, took, d.Abs())
}

const (
	// deadlineSlack bounds how late after its deadline an operation on a
	// silent server may return.
	deadlineSlack = time.Second
	// deadlinePause is how long the server stays silent: longer than all
	// the checks of one cache could take at their slowest.
	deadlinePause = 10 * time.Second
)

// TestRedisDeadline blocks real servers with CLIENT PAUSE and checks that
// every kind of client returns at its deadline, with DeadlineExceeded, long
// before the server answers again.
func TestRedisDeadline(t *testing.T) {
	const deadline = 80 * time.Millisecond
	ctx := context.Background()
	t.Run("Standalone", func(t *testing.T) {
		t.Parallel()
		admin := redisClient(t, true, 0)
		addr := redisServer(t)
		ns := uniqueName("deadline")
		opened, err := cachekit.Open(ctx, "redis://"+addr+"/0?namespace="+ns+"&timeout=80ms")
		if err != nil {
			t.Fatal(err)
		}
		defer opened.Close()
		caches := map[string]cachekit.Cache{
			"New(ContextTimeoutEnabled)":    redis.New(redisClient(t, true, 0), &redis.Options{Namespace: ns}),
			"New(no ContextTimeoutEnabled)": redis.New(redisClient(t, false, 0), &redis.Options{Namespace: ns}),
			"Open":                          opened,
		}
		for name, c := range caches {
			if err := c.Set(ctx, "k", []byte("v"), time.Minute); err != nil { // connects before the pause
				t.Fatalf("%s: %v", name, err)
			}
		}
		wait := pause(t, admin, deadlinePause)
		var wg sync.WaitGroup
		for name, c := range caches { // at once, in one pause
			wg.Add(1)
			go func() {
				defer wg.Done()
				checkDeadline(t, name+" Get", deadline, func(ctx context.Context) error { _, err := c.Get(ctx, "k"); return err })
				checkDeadline(t, name+" SetMany", deadline, func(ctx context.Context) error {
					return c.SetMany(ctx, map[string][]byte{"a": nil, "b": nil}, 0)
				})
				checkDeadline(t, name+" Clear", deadline, func(ctx context.Context) error { return c.Clear(ctx) })
				if name == "Open" { // timeout=80ms applies without a deadline in ctx
					checkDeadline(t, name+" Get with the default timeout", -deadline, func(ctx context.Context) error { _, err := c.Get(ctx, "k"); return err })
				}
			}()
		}
		wg.Wait()
		wait()
		for name, c := range caches {
			// The server lifts a pause on its next cron tick, up to 100ms late.
			after, cancel := context.WithTimeout(ctx, 5*time.Second)
			v, err := c.Get(after, "k")
			cancel()
			if err != nil || string(v) != "v" {
				t.Fatalf("%s: Get after the pause = %q, %v", name, v, err)
			}
		}
	})

	t.Run("Cluster", func(t *testing.T) {
		t.Parallel()
		rdb := redisClusterClient(t)
		ns := uniqueName("deadline")
		c := redis.New(rdb, &redis.Options{Namespace: ns})
		defer c.Close()
		if err := c.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
			t.Fatal(err)
		}
		node, err := rdb.MasterForKey(ctx, ns+":k")
		if err != nil {
			t.Fatal(err)
		}
		wait := pause(t, node, deadlinePause)
		defer wait()
		checkDeadline(t, "cluster Get", deadline, func(ctx context.Context) error { _, err := c.Get(ctx, "k"); return err })
		checkDeadline(t, "cluster GetMany", deadline, func(ctx context.Context) error {
			_, err := c.GetMany(ctx, []string{"k", "a", "b", "c", "d"})
			return err
		})
		checkDeadline(t, "cluster Clear", deadline, func(ctx context.Context) error { return c.Clear(ctx) })
	})
}

func TestRedisOpenURL(t *testing.T) {
	ctx := context.Background()
	addr := redisServer(t)
	raw := redisClient(t, true, 0)
	raw15 := redisClient(t, true, 15)
	ns := uniqueName("open")

	c, err := cachekit.Open(ctx, "redis://"+addr+"/15?namespace="+url.QueryEscape(ns)+"&timeout=500ms&dial_timeout=1s&read_timeout=1s&write_timeout=1s&pool_size=3")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := raw15.Get(ctx, ns+":k").Result(); err != nil || v != "v" {
		t.Fatalf("raw GET %s:k in database 15 = %q, %v", ns, v, err)
	}
	if n, _ := raw.Exists(ctx, ns+":k").Result(); n != 0 {
		t.Fatal("the key landed in database 0")
	}
	if err := c.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	_, err = cachekit.Open(ctx, "redis://"+addr+"/0?namespace=x&colour=blue")
	if !errors.Is(err, cachekit.ErrInvalidURL) || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("unknown parameter: %v; want ErrInvalidURL naming it", err)
	}

	t.Run("Cluster", func(t *testing.T) {
		addrs := redisCluster(t)
		c, err := cachekit.Open(ctx, "redis+cluster://"+strings.Join(addrs, ",")+"/?namespace="+url.QueryEscape(ns)+"&timeout=1s")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		items := map[string][]byte{}
		var keys []string
		for i := range 50 {
			k := "k" + strconv.Itoa(i)
			items[k], keys = []byte(k), append(keys, k)
		}
		if err := c.SetMany(ctx, items, time.Minute); err != nil {
			t.Fatal(err)
		}
		got, err := c.GetMany(ctx, keys)
		if err != nil || len(got) != 50 {
			t.Fatalf("GetMany = %d, %v", len(got), err)
		}
		rdb := redisClusterClient(t)
		if v, err := rdb.Get(ctx, ns+":k7").Result(); err != nil || v != "k7" {
			t.Fatalf("raw GET = %q, %v", v, err)
		}
		if err := c.Clear(ctx); err != nil {
			t.Fatal(err)
		}
		if n := len(scanAll(t, rdb, ns+":*")); n != 0 {
			t.Fatalf("%d keys left after Clear", n)
		}
		_, err = cachekit.Open(ctx, "redis+cluster://"+strings.Join(addrs, ",")+"/?timeout=1s&db=2")
		if !errors.Is(err, cachekit.ErrInvalidURL) {
			t.Fatalf("unknown parameter db: %v", err)
		}
	})
}

// TestRedisWireLayout checks what a plain Redis client sees.
func TestRedisWireLayout(t *testing.T) {
	ctx := context.Background()
	rdb := redisClient(t, true, 0)
	ns := uniqueName("wire")
	c := redis.New(rdb, &redis.Options{Namespace: ns})
	plain := redis.New(rdb, nil)

	if err := c.Set(ctx, "user:1", []byte("alice"), 1500*time.Microsecond+time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := rdb.Get(ctx, ns+":user:1").Result(); err != nil || v != "alice" {
		t.Fatalf("raw GET %s:user:1 = %q, %v", ns, v, err)
	}
	if pttl, err := rdb.PTTL(ctx, ns+":user:1").Result(); err != nil || pttl <= time.Minute-time.Second || pttl > time.Minute+2*time.Millisecond {
		t.Fatalf("PTTL = %v, %v; want just over a minute (ms precision, rounded up)", pttl, err)
	}
	if _, err := c.Increment(ctx, "n", -42); err != nil {
		t.Fatal(err)
	}
	if v, err := rdb.Get(ctx, ns+":n").Result(); err != nil || v != "-42" {
		t.Fatalf("raw GET of a counter = %q, %v; want -42", v, err)
	}
	if pttl, _ := rdb.PTTL(ctx, ns+":n").Result(); pttl != -1 {
		t.Fatalf("a new counter's PTTL = %v; want none (-1)", pttl)
	}
	if err := rdb.Set(ctx, ns+":external", "from another client", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "external"); err != nil || string(v) != "from another client" {
		t.Fatalf("Get of a key written by another client = %q, %v", v, err)
	}
	key := uniqueName("plain")
	if err := plain.Set(ctx, key, []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	defer rdb.Del(ctx, key)
	if v, err := rdb.Get(ctx, key).Result(); err != nil || v != "x" {
		t.Fatalf("without a namespace the key is stored as is: %q, %v", v, err)
	}

	// One round trip each.
	hook := &roundTrips{}
	rdb.AddHook(hook)
	keys := []string{"a", "b", "c", "user:1"}
	if err := c.SetMany(ctx, map[string][]byte{"a": nil, "b": nil, "c": nil}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if cmds, pipes := hook.reset(); cmds != 0 || pipes != 1 {
		t.Errorf("SetMany: %d commands, %d pipelines; want one pipeline", cmds, pipes)
	}
	if got, err := c.GetMany(ctx, keys); err != nil || len(got) != 4 {
		t.Fatalf("GetMany = %v, %v", got, err)
	}
	if cmds, pipes := hook.reset(); cmds != 1 || pipes != 0 {
		t.Errorf("GetMany: %d commands, %d pipelines; want one MGET", cmds, pipes)
	}
	if n, err := c.Delete(ctx, keys...); err != nil || n != 4 {
		t.Fatalf("Delete = %d, %v", n, err)
	}
	if cmds, pipes := hook.reset(); cmds != 1 || pipes != 0 {
		t.Errorf("Delete: %d commands, %d pipelines; want one DEL", cmds, pipes)
	}
	if ok, err := c.Expire(ctx, "n", 0); err != nil || !ok {
		t.Fatalf("Expire(n, 0) = %v, %v", ok, err)
	}
	if cmds, pipes := hook.reset(); cmds != 0 || pipes != 1 {
		t.Errorf("Expire(0): %d commands, %d pipelines; want one MULTI/EXEC pipeline", cmds, pipes)
	}
	if err := c.Clear(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRedisTooLargeFromServer lowers the server's proto-max-bulk-len and
// checks that its refusal is reported as ErrTooLarge.
func TestRedisTooLargeFromServer(t *testing.T) {
	ctx := context.Background()
	admin := redisClient(t, true, 0)
	old, err := admin.ConfigGet(ctx, "proto-max-bulk-len").Result()
	if err != nil || old["proto-max-bulk-len"] == "" {
		t.Skipf("CONFIG GET proto-max-bulk-len: %v", err)
	}
	if err := admin.ConfigSet(ctx, "proto-max-bulk-len", "1mb").Err(); err != nil {
		t.Skipf("CONFIG SET proto-max-bulk-len: %v", err)
	}
	defer func() {
		if err := admin.ConfigSet(ctx, "proto-max-bulk-len", old["proto-max-bulk-len"]).Err(); err != nil {
			t.Errorf("restoring proto-max-bulk-len: %v", err)
		}
	}()
	c := redis.New(redisClient(t, true, 0), &redis.Options{Namespace: uniqueName("toolarge"), Timeout: 5 * time.Second})
	big := make([]byte, 1<<20+1)
	for op, err := range map[string]error{
		"Set":     c.Set(ctx, "big", big, 0),
		"Add":     c.Add(ctx, "big", big, 0),
		"SetMany": c.SetMany(ctx, map[string][]byte{"a": []byte("v"), "big": big}, 0),
	} {
		if !errors.Is(err, cachekit.ErrTooLarge) {
			t.Fatalf("%s of a value over the server's proto-max-bulk-len: %v; want ErrTooLarge", op, err)
		}
		// The server's reply, or (usually: the server drops the connection
		// as it refuses) the client's network error, stays reachable.
		var re goredis.Error
		var ne net.Error
		if !errors.As(err, &re) && !errors.As(err, &ne) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: the client's error is not reachable with errors.As: %v", op, err)
		}
	}
	if err := c.Set(ctx, "small", []byte("v"), 0); err != nil {
		t.Fatalf("the cache is unusable after the refusal: %v", err)
	}
	if err := c.Clear(ctx); err != nil {
		t.Fatal(err)
	}
}

// captureLogs sends go-redis's log lines to a buffer (and on to the
// standard logger) until the returned func is called.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logCapture) Printf(_ context.Context, format string, v ...any) {
	s := fmt.Sprintf(format, v...)
	l.mu.Lock()
	l.buf.WriteString(s + "\n")
	l.mu.Unlock()
	log.Print(s)
}

func (l *logCapture) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

type stdLogger struct{}

func (stdLogger) Printf(_ context.Context, format string, v ...any) { log.Printf(format, v...) }

// TestRedisPasswordRedaction: a password never shows in an error, a log
// line or a printed value: a bad URL, an unreachable host, and a real server
// refusing a wrong password.
func TestRedisPasswordRedaction(t *testing.T) {
	const right, wrong = "R1ght-Passw0rd-abc", "Wr0ng-Passw0rd-xyz"
	ctx := context.Background()
	logs := &logCapture{}
	goredis.SetLogger(logs)
	defer goredis.SetLogger(stdLogger{})

	admin := redisClient(t, true, 0)
	addr := redisServer(t)
	user := uniqueName("cachekit-test-user")
	if err := admin.Do(ctx, "ACL", "SETUSER", user, "on", ">"+right, "~*", "+@all").Err(); err != nil {
		t.Skipf("ACL SETUSER: %v", err)
	}
	defer admin.Do(ctx, "ACL", "DELUSER", user)

	var shown []string // every error and value the user could print
	show := func(v any) {
		for _, verb := range []string{"%v", "%+v", "%#v"} {
			shown = append(shown, fmt.Sprintf(verb, v))
		}
	}

	// The right password works.
	c, err := cachekit.Open(ctx, "redis://"+user+":"+right+"@"+addr+"/0?namespace="+user)
	if err != nil {
		t.Fatal(err)
	}
	show(c)
	if err := c.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatalf("with the right password: %v", err)
	}
	if err := c.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	c.Close()

	// A wrong password against the real server.
	c, err = cachekit.Open(ctx, "redis://"+user+":"+wrong+"@"+addr+"/0?namespace=x&timeout=2s")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(ctx, "k")
	if err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("Get with a wrong password: %v; want WRONGPASS", err)
	}
	show(err)
	show(c)
	c.Close()

	// A host that refuses connections.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	for _, raw := range []string{
		"redis://" + user + ":" + wrong + "@" + refused + "/0?timeout=300ms&dial_timeout=100ms",
		"redis+cluster://" + user + ":" + wrong + "@" + refused + "/?timeout=300ms&dial_timeout=100ms",
	} {
		c, err = cachekit.Open(ctx, raw)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Get(ctx, "k")
		if err == nil {
			t.Fatalf("Get from %s succeeded", cachekit.RedactURL(raw))
		}
		show(err)
		show(c)
		show(c.Clear(ctx))
		c.Close()
	}

	// Bad URLs.
	for _, raw := range []string{
		"redis://" + user + ":" + wrong + "@" + addr + "/0?bogus=1",
		"redis://" + user + ":" + wrong + "@" + addr + "/zero",
		"redis://" + user + ":" + wrong + "@host:port/0",
		"redis+sentinel://" + user + ":" + wrong + "@" + addr + "/0",
		"redis://" + user + ":" + wrong + "@h1,h2/0",
	} {
		_, err := cachekit.Open(ctx, raw)
		if !errors.Is(err, cachekit.ErrInvalidURL) {
			t.Errorf("Open(%s) = %v; want ErrInvalidURL", cachekit.RedactURL(raw), err)
		}
		show(err)
	}
	show(redis.Options{Namespace: "n", Timeout: time.Second})

	shown = append(shown, logs.String())
	for _, s := range shown {
		if strings.Contains(s, right) || strings.Contains(s, wrong) {
			t.Errorf("a password is shown: %s", s)
		}
	}
}

// TestRedisSentinel runs when Sentinel addresses are given.
func TestRedisSentinel(t *testing.T) {
	sentinels, master := redisSentinel(t)
	addrs := strings.Join(sentinels, ",")
	rdb := goredis.NewFailoverClient(&goredis.FailoverOptions{
		MasterName:            master,
		SentinelAddrs:         sentinels,
		ContextTimeoutEnabled: true,
	})
	defer rdb.Close()
	t.Run("Conformance", func(t *testing.T) {
		cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
			return redis.New(rdb, &redis.Options{Namespace: sweepNamespace(ns), MaxValueSize: redisTestValueLimit})
		}, &cachetest.Options{MaxValueSize: redisTestValueLimit, UnnamespacedClear: cachetest.UnnamespacedClearRefused})
	})
	t.Run("URL", func(t *testing.T) {
		ctx := context.Background()
		ns := uniqueName("sentinel")
		c, err := cachekit.Open(ctx, "redis+sentinel://"+addrs+"/0?master_name="+url.QueryEscape(master)+"&namespace="+ns)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if v, err := rdb.Get(ctx, ns+":k").Result(); err != nil || v != "v" {
			t.Fatalf("raw GET through the failover client = %q, %v", v, err)
		}
		if err := c.Clear(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestRedisTLS opens a rediss:// URL against a TLS server, when one is given.
func TestRedisTLS(t *testing.T) {
	addr := redisTLS(t)
	t.Run("Conformance", func(t *testing.T) {
		cachetest.Run(t, func(t *testing.T, ns string) cachekit.Cache {
			c, err := cachekit.Open(context.Background(), "rediss://"+addr+"/0?max_value_size=1MiB&namespace="+url.QueryEscape(sweepNamespace(ns)))
			if err != nil {
				t.Fatal(err)
			}
			return c
		}, &cachetest.Options{MaxValueSize: redisTestValueLimit, UnnamespacedClear: cachetest.UnnamespacedClearRefused})
	})
	ctx := context.Background()
	ns := uniqueName("tls")
	c, err := cachekit.Open(ctx, "rediss://"+addr+"/0?namespace="+ns)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Set(ctx, "k", []byte("over tls"), time.Minute); err != nil {
		t.Fatalf("Set over TLS: %v", err)
	}
	if v, err := c.Get(ctx, "k"); err != nil || string(v) != "over tls" {
		t.Fatalf("Get over TLS = %q, %v", v, err)
	}
	if err := c.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	// Plain redis:// to a TLS port fails (it does not fall back silently).
	plain, err := cachekit.Open(ctx, "redis://"+addr+"/0?timeout=500ms")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Get(ctx, "k"); err == nil {
		t.Fatal("redis:// against a TLS-only port succeeded")
	}
}
