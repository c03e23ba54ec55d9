package redis

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/internal/faultproxy"
	"github.com/cachekit/cachekit/internal/testserver"
)

// twoMasterCluster is a cluster client over two standalone servers, with a
// slot map of its own (ClusterOptions.ClusterSlots): slots 0-8191 on a
// fault proxy in front of server A, 8192-16383 on server B. The servers do
// not check slots, so every command is answered where the map sends it.
// promote makes the map name B for slots 0-8191 too (as a replica promoted
// after A's failure would); reloads counts the times the client loaded the
// map.
func twoMasterCluster(t *testing.T) (cl *goredis.ClusterClient, proxy *faultproxy.Proxy, promote func(), reloads *atomic.Int64) {
	t.Helper()
	a, b := testserver.StartRedis(t), testserver.StartRedis(t)
	proxy = faultproxy.Start(t, a.Addr())
	var mu sync.Mutex
	first := proxy.Addr()
	reloads = new(atomic.Int64)
	cl = goredis.NewClusterClient(&goredis.ClusterOptions{
		ClusterSlots: func(context.Context) ([]goredis.ClusterSlot, error) {
			reloads.Add(1)
			mu.Lock()
			defer mu.Unlock()
			return []goredis.ClusterSlot{
				{Start: 0, End: 8191, Nodes: []goredis.ClusterNode{{Addr: first}}},
				{Start: 8192, End: 16383, Nodes: []goredis.ClusterNode{{Addr: b.Addr()}}},
			}, nil
		},
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		DialerRetries:         1,
	})
	t.Cleanup(func() { cl.Close() })
	promote = func() {
		mu.Lock()
		first = b.Addr()
		mu.Unlock()
	}
	return cl, proxy, promote, reloads
}

// keysOn returns n keys (with the cache's namespace prefix pre) whose slots
// are in [lo, hi], without the prefix.
func keysOn(pre string, lo, hi uint16, n int) []string {
	var keys []string
	for i := 0; len(keys) < n; i++ {
		k := "k" + strconv.Itoa(i)
		if s := slot(pre + k); s >= lo && s <= hi {
			keys = append(keys, k)
		}
	}
	return keys
}

// TestClusterBreakerPerMaster: on a cluster, one master that stops
// answering opens its own breaker only. Calls for its keys (single-key,
// and multi-key calls that involve it) then fail at once with
// ErrUnavailable, while every call for the other master's keys keeps
// succeeding; failures of a multi-slot pipeline count against the master
// that failed, not the others; once the master answers again its keys work
// again.
func TestClusterBreakerPerMaster(t *testing.T) {
	cl, proxy, _, _ := twoMasterCluster(t)
	ctx := context.Background()
	c := New(cl, &Options{Namespace: "pm", Timeout: 300 * time.Millisecond, BreakerThreshold: 3, BreakerDuration: 200 * time.Millisecond})
	onA := keysOn("pm:", 0, 8191, 4)
	onB := keysOn("pm:", 8192, 16383, 4)
	for _, k := range append(append([]string{}, onA...), onB...) {
		if err := c.Set(ctx, k, []byte("v-"+k), time.Minute); err != nil {
			t.Fatalf("Set %s before the fault: %v", k, err)
		}
	}

	proxy.Blackhole(true) // master A stops answering (as a frozen process)

	// Three multi-slot GetManys time out on A: each counts one failure
	// against A's breaker and a success for B's.
	both := []string{onA[0], onB[0]}
	for i := range 3 {
		_, err := c.GetMany(ctx, both)
		if err == nil || errors.Is(err, cachekit.ErrUnavailable) {
			t.Fatalf("GetMany %d with master A blackholed = %v; want its timeout", i, err)
		}
	}
	// A's breaker is open: its keys fail at once, without waiting for the
	// 300ms timeout.
	for _, op := range []func() error{
		func() error { _, err := c.Get(ctx, onA[1]); return err },
		func() error { return c.Set(ctx, onA[1], []byte("x"), time.Minute) },
		func() error { _, err := c.GetMany(ctx, both); return err },
		func() error {
			return c.SetMany(ctx, map[string][]byte{onA[2]: []byte("x"), onB[2]: []byte("x")}, time.Minute)
		},
		func() error { _, err := c.Delete(ctx, onA[3], onB[3]); return err },
		func() error { _, err := c.CompareAndDelete(ctx, onA[1], []byte("x")); return err },
	} {
		if err := op(); !errors.Is(err, cachekit.ErrUnavailable) {
			t.Fatalf("a call involving master A while its breaker is open = %v; want ErrUnavailable", err)
		}
	}
	// B's keys work, one by one and together.
	for _, k := range onB {
		if v, err := c.Get(ctx, k); err != nil || string(v) != "v-"+k {
			t.Fatalf("Get %s on master B while A is down = %q, %v", k, v, err)
		}
		if err := c.Set(ctx, k, []byte("w-"+k), time.Minute); err != nil {
			t.Fatalf("Set %s on master B while A is down: %v", k, err)
		}
	}
	got, err := c.GetMany(ctx, onB)
	if err != nil || len(got) != len(onB) {
		t.Fatalf("GetMany of master B's keys while A is down = %d keys, %v", len(got), err)
	}
	if err := c.SetMany(ctx, map[string][]byte{onB[0]: []byte("m"), onB[1]: []byte("m")}, time.Minute); err != nil {
		t.Fatalf("SetMany on master B while A is down: %v", err)
	}
	if n, err := c.Delete(ctx, onB[2], onB[3]); err != nil || n != 2 {
		t.Fatalf("Delete on master B while A is down = %d, %v", n, err)
	}
	// Clear walks every master: A's walk fails at once.
	if err := c.Clear(ctx); !errors.Is(err, cachekit.ErrUnavailable) {
		t.Fatalf("Clear while master A's breaker is open = %v; want ErrUnavailable", err)
	}
	if err := c.Set(ctx, onB[0], []byte("v-"+onB[0]), time.Minute); err != nil {
		t.Fatal(err)
	}

	// A answers again: after its breaker's open time a probe gets through
	// and closes it (the bound is generous; it takes ~200ms).
	proxy.Blackhole(false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := c.Get(ctx, onA[0])
		if err == nil && string(v) == "v-"+onA[0] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("master A's keys still fail 10s after it answers again: %q, %v", v, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got, err := c.GetMany(ctx, both); err != nil || len(got) != 2 {
		t.Fatalf("GetMany over both masters after recovery = %d keys, %v", len(got), err)
	}
}

// TestClusterBreakerPromotedReplicaTakesOver: while a master's breaker is
// open, a refused call asks the client to reload its slot map; once the map
// names another node for those slots (a promoted replica), the slots' calls
// go there, under that node's own closed breaker, while the old master
// still does not answer and its breaker stays open.
func TestClusterBreakerPromotedReplicaTakesOver(t *testing.T) {
	cl, proxy, promote, reloads := twoMasterCluster(t)
	ctx := context.Background()
	c := New(cl, &Options{Namespace: "pr", Timeout: 300 * time.Millisecond, BreakerThreshold: 3,
		BreakerDuration: time.Hour, ClusterReloadInterval: 10 * time.Millisecond})
	k := keysOn("pr:", 0, 8191, 1)[0]
	if err := c.Set(ctx, k, []byte("old"), time.Minute); err != nil {
		t.Fatal(err)
	}
	proxy.Blackhole(true)
	for range 3 {
		if _, err := c.Get(ctx, k); err == nil || errors.Is(err, cachekit.ErrUnavailable) {
			t.Fatalf("Get with master A blackholed = %v; want its timeout", err)
		}
	}
	if _, err := c.Get(ctx, k); !errors.Is(err, cachekit.ErrUnavailable) {
		t.Fatalf("Get after 3 timeouts = %v; want ErrUnavailable", err)
	}
	// Read before the promotion: a reload already on its way (the refused
	// Get above asked for one) may land right after it and move the slots.
	before := reloads.Load()
	promote()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.Get(ctx, k)
		if errors.Is(err, cachekit.ErrNotFound) {
			break // answered by B, which never held the key
		}
		if !errors.Is(err, cachekit.ErrUnavailable) {
			t.Fatalf("Get while the map moves = %v; want ErrUnavailable, then B's answer", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slots never moved to B (slot-map loads since the promotion: %d)", reloads.Load()-before)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if reloads.Load() == before {
		t.Fatal("the slots moved without a slot-map reload")
	}
	if err := c.Set(ctx, k, []byte("new"), time.Minute); err != nil {
		t.Fatalf("Set on the promoted node: %v", err)
	}
	if v, err := c.Get(ctx, k); err != nil || string(v) != "new" {
		t.Fatalf("Get on the promoted node = %q, %v", v, err)
	}
	// The old master's breaker is still open (an hour): only the slot map
	// moved the calls.
	// (go-redis names a loopback node ":port".)
	_, port, _ := strings.Cut(proxy.Addr(), ":")
	var old *health
	c.nodes.byAddr.Range(func(addr, h any) bool {
		if strings.HasSuffix(addr.(string), ":"+port) {
			old = h.(*health)
		}
		return true
	})
	if old == nil {
		t.Fatal("no breaker for the old master")
	}
	if err := old.allow(); !errors.Is(err, cachekit.ErrUnavailable) {
		t.Fatalf("old master's breaker: %v; want still open", err)
	}
}

// TestClusterBreakerStandaloneUnchanged: a standalone cache keeps one
// breaker for its client (no per-node table), and a cluster cache with the
// breaker disabled has none either.
func TestClusterBreakerStandaloneUnchanged(t *testing.T) {
	single := goredis.NewClient(&goredis.Options{Addr: refusedAddr(t)})
	defer single.Close()
	if c := New(single, nil); c.nodes != nil || c.health.b == nil {
		t.Fatalf("standalone cache: nodes %v, breaker %v; want none, one", c.nodes, c.health.b)
	}
	cl := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: []string{refusedAddr(t)}})
	defer cl.Close()
	if c := New(cl, &Options{BreakerThreshold: -1}); c.nodes != nil {
		t.Fatal("cluster cache with the breaker disabled has per-node breakers")
	}
	if c := New(cl, nil); c.nodes == nil {
		t.Fatal("cluster cache has no per-node breakers")
	}
}
