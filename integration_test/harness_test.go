package integration_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	goredis "github.com/redis/go-redis/v9"
)

// These tests prove the harness itself: each server it hands out is real
// and behaves, using the raw clients (no cachekit code).

func TestHarnessRedis(t *testing.T) {
	t.Parallel()
	addr := redisServer(t)
	if again := redisServer(t); again != addr {
		t.Fatalf("redisServer: %q then %q, want one shared server", addr, again)
	}
	rdb := goredis.NewClient(&goredis.Options{Addr: addr})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if got, err := rdb.Ping(ctx).Result(); err != nil || got != "PONG" {
		t.Fatalf("PING %s = %q, %v; want PONG", addr, got, err)
	}
	key := fmt.Sprintf("harness:%s:%d", t.Name(), time.Now().UnixNano())
	defer rdb.Del(context.Background(), key)
	if err := rdb.Set(ctx, key, "v", time.Minute).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := rdb.Get(ctx, key).Result(); err != nil || got != "v" {
		t.Fatalf("GET = %q, %v; want v", got, err)
	}
	if _, err := rdb.Get(ctx, key+":missing").Result(); err != goredis.Nil {
		t.Fatalf("GET missing: err = %v, want redis.Nil", err)
	}
}

func TestHarnessRedisCluster(t *testing.T) {
	t.Parallel()
	addrs := redisCluster(t)
	if len(addrs) < 3 {
		t.Fatalf("redisCluster returned %d addresses, want at least 3: %v", len(addrs), addrs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	rdb := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs})
	defer rdb.Close()

	info, err := rdb.ClusterInfo(ctx).Result()
	if err != nil {
		t.Fatalf("CLUSTER INFO: %v", err)
	}
	if !strings.Contains(info, "cluster_state:ok") {
		t.Fatalf("CLUSTER INFO: no cluster_state:ok in\n%s", info)
	}

	// The client sees at least 3 masters, each answering PING.
	var masters atomic.Int32
	if err := rdb.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
		masters.Add(1) // ForEachMaster runs fn concurrently
		return c.Ping(ctx).Err()
	}); err != nil {
		t.Fatalf("PING each master: %v", err)
	}
	if n := masters.Load(); n < 3 {
		t.Fatalf("ForEachMaster visited %d masters, want at least 3", n)
	}
	slots, err := rdb.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatalf("CLUSTER SLOTS: %v", err)
	}
	owners := map[string]bool{}
	covered := 0
	for _, s := range slots {
		covered += s.End - s.Start + 1
		if len(s.Nodes) > 0 {
			owners[s.Nodes[0].Addr] = true
		}
	}
	if len(owners) < 3 || covered != 16384 {
		t.Fatalf("CLUSTER SLOTS: %d masters covering %d slots, want >= 3 covering 16384: %+v", len(owners), covered, slots)
	}

	// Keys that land on different slots (and so different masters): SET on
	// one key per master through the cluster client, GET them back.
	prefix := fmt.Sprintf("harness:%d:", time.Now().UnixNano())
	bySlotOwner := map[string]string{} // owner addr -> key
	for i := 0; len(bySlotOwner) < len(owners) && i < 10000; i++ {
		key := fmt.Sprintf("%s%d", prefix, i)
		slot, err := rdb.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT: %v", err)
		}
		for _, s := range slots {
			if int64(s.Start) <= slot && slot <= int64(s.End) {
				if _, seen := bySlotOwner[s.Nodes[0].Addr]; !seen {
					bySlotOwner[s.Nodes[0].Addr] = key
				}
			}
		}
	}
	if len(bySlotOwner) != len(owners) {
		t.Fatalf("found keys for %d of %d masters", len(bySlotOwner), len(owners))
	}
	for owner, key := range bySlotOwner {
		if err := rdb.Set(ctx, key, owner, time.Minute).Err(); err != nil {
			t.Fatalf("SET %s (on %s): %v", key, owner, err)
		}
		defer rdb.Del(context.Background(), key)
	}
	for owner, key := range bySlotOwner {
		if got, err := rdb.Get(ctx, key).Result(); err != nil || got != owner {
			t.Fatalf("GET %s = %q, %v; want %q", key, got, err, owner)
		}
		// The key really lives on that master.
		node := goredis.NewClient(&goredis.Options{Addr: owner})
		got, err := node.Get(ctx, key).Result()
		node.Close()
		if err != nil || got != owner {
			t.Fatalf("GET %s directly on %s = %q, %v; want %q", key, owner, got, err, owner)
		}
	}
}

func TestHarnessMemcached(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2} {
		t.Run(fmt.Sprintf("servers=%d", n), func(t *testing.T) {
			t.Parallel()
			addrs := memcachedServers(t, n)
			if len(addrs) != n {
				t.Fatalf("memcachedServers(t, %d) returned %d addresses: %v", n, len(addrs), addrs)
			}
			seen := map[string]bool{}
			for _, addr := range addrs {
				if seen[addr] {
					t.Fatalf("memcachedServers(t, %d): duplicate address %s in %v", n, addr, addrs)
				}
				seen[addr] = true
			}
			if first := memcachedServers(t, 1); first[0] != addrs[0] {
				t.Fatalf("memcachedServers(t, 1) = %v, want the first of %v", first, addrs)
			}
			for _, addr := range addrs {
				mc := memcache.New(addr) // one server: every key goes there
				mc.Timeout = 5 * time.Second
				if err := mc.Ping(); err != nil {
					t.Fatalf("ping %s: %v", addr, err)
				}
				key := fmt.Sprintf("harness:%d:%d", n, time.Now().UnixNano())
				if err := mc.Set(&memcache.Item{Key: key, Value: []byte(addr), Expiration: 60}); err != nil {
					t.Fatalf("set on %s: %v", addr, err)
				}
				it, err := mc.Get(key)
				if err != nil || string(it.Value) != addr {
					t.Fatalf("get on %s = %v, %v; want %q", addr, it, err, addr)
				}
				if _, err := mc.Get(key + ":missing"); err != memcache.ErrCacheMiss {
					t.Fatalf("get missing on %s: err = %v, want ErrCacheMiss", addr, err)
				}
				if err := mc.Delete(key); err != nil {
					t.Fatalf("delete on %s: %v", addr, err)
				}
				mc.Close()
			}
		})
	}
}

// TestHarnessParallel asks for every kind of server from many parallel
// subtests at once: each helper gives every caller the same answer, the same
// servers or the same reason why there are none.
func TestHarnessParallel(t *testing.T) {
	t.Parallel()
	type got struct {
		redis, redisErr         string
		cluster, clusterErr     string
		memcached, memcachedErr string
	}
	errText := func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	}
	const n = 8
	results := make([]got, n)
	t.Run("group", func(t *testing.T) {
		for i := range n {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				var g got
				var err error
				g.redis, err = harnessRedisAddr()
				g.redisErr = errText(err)
				cluster, err := harnessRedisClusterAddrs()
				g.cluster, g.clusterErr = strings.Join(cluster, ","), errText(err)
				mc, err := harnessMemcachedAddrs(1 + i%2)
				g.memcached, g.memcachedErr = strings.Join(mc, ","), errText(err)
				results[i] = g
			})
		}
	})
	if t.Failed() {
		return
	}
	for i := range n {
		want := results[i%2] // same n of memcached servers
		if results[i] != want {
			t.Errorf("subtest %d got %+v, subtest %d got %+v", i, results[i], i%2, want)
		}
	}
	one, two := results[0], results[1]
	if one.memcachedErr == "" && two.memcachedErr == "" && !strings.HasPrefix(two.memcached, one.memcached+",") {
		t.Errorf("memcachedServers(t, 2) = %s does not start with memcachedServers(t, 1) = %s", two.memcached, one.memcached)
	}
	// Every helper agreed; now the usual skip (or, under CI, failure) for
	// what is missing.
	redisServer(t)
	redisCluster(t)
	memcachedServers(t, 2)
}

// TestHarnessDocker proves the Docker path of the harness even when the
// other tests got their servers from the environment (as under CI): it
// starts a Redis, a memcached and a Redis Cluster in containers (falling
// back to the local images, built on first use, where the official ones
// can't be pulled) and talks to each with the raw clients.
// CACHEKIT_TEST_DOCKER=0 says there is no Docker: the test then does nothing.
func TestHarnessDocker(t *testing.T) {
	t.Parallel()
	if v := os.Getenv(harnessEnvDocker); harnessOff(v) {
		harnessBackendDocker.setSource("off ("+harnessEnvDocker+"="+v+")", nil, false)
		t.Logf("%s=%s: not testing the Docker path", harnessEnvDocker, v)
		return
	}
	if _, err := harnessDockerClient(); err != nil {
		harnessBackendDocker.setSource("", err, false)
		harnessUnavailable(t, harnessBackendDocker, err)
	}
	// Each check gets its own deadline once its server is up: starting
	// containers can take long on a loaded machine, and must not eat the
	// time of the command that checks them.
	opCtx := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	var started []string
	var mu sync.Mutex
	note := func(s string) { mu.Lock(); started = append(started, s); mu.Unlock() }
	t.Run("group", func(t *testing.T) {
		t.Run("redis", func(t *testing.T) {
			t.Parallel()
			addr, err := harnessDockerRedis()
			if err != nil {
				harnessBackendDocker.setSource("", err, false)
				harnessUnavailable(t, harnessBackendDocker, err)
			}
			rdb := goredis.NewClient(&goredis.Options{Addr: addr})
			defer rdb.Close()
			ctx := opCtx(t)
			if err := rdb.Set(ctx, "harness:docker", "v", time.Minute).Err(); err != nil {
				t.Fatalf("SET on the Redis container %s: %v", addr, err)
			}
			rdb.Del(ctx, "harness:docker")
			note("Redis " + addr)
		})
		t.Run("memcached", func(t *testing.T) {
			t.Parallel()
			addrs, err := harnessDockerMemcached(1)
			if err != nil {
				harnessBackendDocker.setSource("", err, false)
				harnessUnavailable(t, harnessBackendDocker, err)
			}
			mc := memcache.New(addrs[0])
			mc.Timeout = 5 * time.Second
			defer mc.Close()
			if err := mc.Set(&memcache.Item{Key: "harness:docker", Value: []byte("v"), Expiration: 60}); err != nil {
				t.Fatalf("set on the memcached container %s: %v", addrs[0], err)
			}
			mc.Delete("harness:docker")
			note("memcached " + addrs[0])
		})
		t.Run("cluster", func(t *testing.T) {
			t.Parallel()
			addrs, err := harnessDockerCluster()
			if err != nil {
				harnessBackendDocker.setSource("", err, false)
				harnessUnavailable(t, harnessBackendDocker, err)
			}
			rdb := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs})
			defer rdb.Close()
			ctx := opCtx(t)
			if err := rdb.Set(ctx, "harness:docker", "v", time.Minute).Err(); err != nil {
				t.Fatalf("SET on the cluster containers %v: %v", addrs, err)
			}
			rdb.Del(ctx, "harness:docker")
			note("Redis Cluster " + strings.Join(addrs, ","))
		})
	})
	if len(started) == 3 {
		harnessBackendDocker.setSource("started "+strings.Join(started, "; ")+" from "+harnessImageName(&harnessRedisImage)+
			" and "+harnessImageName(&harnessMemcachedImage), nil, false)
		harnessBackendDocker.used(t)
	}
}

// TestHarnessSentinel checks the Sentinel setup with the raw client: the
// master it names takes writes, and a replica is attached.
func TestHarnessSentinel(t *testing.T) {
	t.Parallel()
	addrs, master := redisSentinel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rdb := goredis.NewFailoverClient(&goredis.FailoverOptions{MasterName: master, SentinelAddrs: addrs})
	defer rdb.Close()
	key := fmt.Sprintf("harness:sentinel:%d", time.Now().UnixNano())
	if err := rdb.Set(ctx, key, "v", time.Minute).Err(); err != nil {
		t.Fatalf("SET through Sentinel: %v", err)
	}
	defer rdb.Del(context.Background(), key)
	info, err := rdb.Info(ctx, "replication").Result()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info, "role:master") {
		t.Fatalf("the master Sentinel names is not a master:\n%s", info)
	}
}

// TestHarnessTLS checks the TLS server: TLS PING with the trusted CA works,
// and plain text does not.
func TestHarnessTLS(t *testing.T) {
	t.Parallel()
	addr := redisTLS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := harnessRedisTLSPing(ctx, addr); err != nil {
		t.Fatal(err)
	}
	if err := harnessRedisPing(ctx, addr); err == nil {
		t.Fatalf("plain-text PING to the TLS port %s succeeded", addr)
	}
}
