package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/internal/faultproxy"
	"github.com/cachekit/cachekit/internal/testserver"
)

// casSemantics checks what every CompareAndSwapper must do, on c (whose
// keys admin reads as prefix+key).
func casSemantics(t *testing.T, c *Cache, admin goredis.UniversalClient) {
	t.Helper()
	ctx := context.Background()
	swap := func(key string, old, new []byte, ttl time.Duration, want bool) {
		t.Helper()
		ok, err := c.CompareAndSwap(ctx, key, old, new, ttl)
		if ok != want || err != nil {
			t.Fatalf("CompareAndSwap(%q, old %q (nil: %v), new %q) = %v, %v; want %v, nil", key, old, old == nil, new, ok, err, want)
		}
	}
	value := func(key, want string) {
		t.Helper()
		v, err := c.Get(ctx, key)
		if err != nil || string(v) != want {
			t.Fatalf("Get(%q) = %q, %v; want %q", key, v, err, want)
		}
	}
	miss := func(key string) {
		t.Helper()
		if v, err := c.Get(ctx, key); !errors.Is(err, cachekit.ErrNotFound) {
			t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", key, v, err)
		}
	}
	if err := c.Set(ctx, "k", []byte("v0"), 0); err != nil {
		t.Fatal(err)
	}
	swap("k", []byte("v0"), []byte("v1"), 0, true)
	value("k", "v1")
	for _, wrong := range [][]byte{[]byte("v0"), []byte("v"), []byte("v1 "), {}, nil} {
		swap("k", wrong, []byte("v2"), 0, false)
		value("k", "v1")
	}
	// Absent key: only a nil old swaps.
	swap("absent", []byte("v0"), []byte("x"), 0, false)
	swap("absent", []byte{}, []byte("x"), 0, false)
	miss("absent")
	swap("absent", nil, []byte("first"), 0, true)
	value("absent", "first")
	swap("absent", nil, []byte("second"), 0, false)
	value("absent", "first")
	// An empty stored value is present: an empty old swaps, a nil one not.
	if err := c.Set(ctx, "e", []byte{}, 0); err != nil {
		t.Fatal(err)
	}
	swap("e", nil, []byte("x"), 0, false)
	swap("e", []byte{}, []byte("x"), 0, true)
	value("e", "x")
	swap("e", []byte("x"), nil, 0, true)
	if v, err := c.Get(ctx, "e"); err != nil || v == nil || len(v) != 0 {
		t.Fatalf("after swapping to an empty value: %q, %v; want an empty hit", v, err)
	}
	// Binary values compare byte for byte.
	bin := []byte{0, 0xff, '\n', 0, '\'', '"'}
	if err := c.Set(ctx, "b", bin, 0); err != nil {
		t.Fatal(err)
	}
	swap("b", bin[:3], []byte("y"), 0, false)
	swap("b", bin, append([]byte{}, bin[1:]...), 0, true)
	value("b", string(bin[1:]))

	// TTLs: in milliseconds rounded up; 0 removes a previous TTL.
	if err := c.Set(ctx, "t", []byte("a"), time.Hour); err != nil {
		t.Fatal(err)
	}
	swap("t", []byte("a"), []byte("b"), 0, true)
	if d := admin.PTTL(ctx, c.key("t")).Val(); d != -1 {
		t.Fatalf("PTTL after a swap with ttl 0: %v; want -1 (no expiry)", d)
	}
	swap("t", []byte("b"), []byte("c"), time.Hour, true)
	if d := admin.PTTL(ctx, c.key("t")).Val(); d <= 59*time.Minute || d > time.Hour {
		t.Fatalf("PTTL after a swap with ttl 1h: %v", d)
	}
	swap("t2", nil, []byte("c"), 30*time.Minute, true)
	if d := admin.PTTL(ctx, c.key("t2")).Val(); d <= 29*time.Minute || d > 30*time.Minute {
		t.Fatalf("PTTL after a nil-old swap with ttl 30m: %v", d)
	}
	swap("t", []byte("c"), []byte("d"), 10*time.Microsecond+time.Hour, true) // rounds up to 3600001ms
	if d := admin.PTTL(ctx, c.key("t")).Val(); d <= 59*time.Minute || d > time.Hour+time.Millisecond {
		t.Fatalf("PTTL after a swap with ttl 1h+10µs: %v", d)
	}
	// A short TTL expires (polled with a generous bound).
	swap("short", nil, []byte("s"), 1500*time.Microsecond, true)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := c.Get(ctx, "short"); errors.Is(err, cachekit.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a value swapped in with a 1.5ms TTL is still there after 10s")
		}
	}
	swap("short", []byte("s"), []byte("t"), 0, false) // expired is absent
	miss("short")
}

// casRace runs rounds of 100 concurrent swappers from v0, each to a value of
// its own: exactly one must win per round, and its value must be stored.
func casRace(t *testing.T, c *Cache, key string, rounds int) {
	t.Helper()
	ctx := context.Background()
	for round := range rounds {
		if err := c.Set(ctx, key, []byte("v0"), time.Minute); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var winners []string
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				mine := fmt.Sprintf("v%d-%d", round, i+1)
				ok, err := c.CompareAndSwap(ctx, key, []byte("v0"), []byte(mine), time.Minute)
				if err != nil {
					t.Error(err)
				}
				if ok {
					mu.Lock()
					winners = append(winners, mine)
					mu.Unlock()
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("round %d: %d of 100 concurrent CompareAndSwaps swapped (%v); want exactly 1", round, len(winners), winners)
		}
		if v, err := c.Get(ctx, key); err != nil || string(v) != winners[0] {
			t.Fatalf("round %d: stored %q, %v; want the winner's %q", round, v, err, winners[0])
		}
	}
}

func TestCompareAndSwap(t *testing.T) {
	srv := testserver.StartRedis(t)
	cl := realClient(t, srv.Addr(), &goredis.Options{ContextTimeoutEnabled: true})
	ctx := context.Background()
	for name, opts := range map[string]*Options{
		"namespace":    {Namespace: "cas"},
		"no namespace": nil,
		"autopipeline": {Namespace: "ap", AutoPipeline: true},
	} {
		t.Run(name, func(t *testing.T) {
			c := New(cl, opts)
			defer c.Close()
			var _ cachekit.CompareAndSwapper = c
			casSemantics(t, c, cl)
			casRace(t, c, "race", 5)
		})
	}

	// A Ring routes the script by its one key, as a cluster does.
	t.Run("ring", func(t *testing.T) {
		rg := goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"a": srv.Addr()}, ContextTimeoutEnabled: true})
		defer rg.Close()
		c := New(rg, &Options{Namespace: "ring"})
		casSemantics(t, c, rg)
		casRace(t, c, "race", 2)
	})

	// Namespaces: a swap in one never touches another's key.
	a, b := New(cl, &Options{Namespace: "a"}), New(cl, &Options{Namespace: "b"})
	_ = a.Set(ctx, "k", []byte("v"), 0)
	_ = b.Set(ctx, "k", []byte("v"), 0)
	if ok, err := a.CompareAndSwap(ctx, "k", []byte("v"), []byte("a1"), 0); !ok || err != nil {
		t.Fatalf("swap in a: %v, %v", ok, err)
	}
	if v, err := b.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("b's key after a swap in a: %q, %v", v, err)
	}

	// A server that lost its script cache (restart, SCRIPT FLUSH) gets EVAL.
	if err := cl.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if ok, err := a.CompareAndSwap(ctx, "k", []byte("a1"), []byte("a2"), 0); !ok || err != nil {
		t.Fatalf("after SCRIPT FLUSH: %v, %v; want true", ok, err)
	}
	if ok, err := a.CompareAndSwap(ctx, "k", []byte("a2"), []byte("a3"), 0); !ok || err != nil {
		t.Fatalf("after EVAL loaded the script: %v, %v; want true", ok, err)
	}

	// A key of another type: a nil old reports false (as SET NX would),
	// a value old fails with the server's error, and nothing changes.
	if err := cl.RPush(ctx, "a:list", "x").Err(); err != nil {
		t.Fatal(err)
	}
	if ok, err := a.CompareAndSwap(ctx, "list", nil, []byte("v"), 0); ok || err != nil {
		t.Fatalf("nil old on a list: %v, %v; want false, nil", ok, err)
	}
	if ok, err := a.CompareAndSwap(ctx, "list", []byte("x"), []byte("v"), 0); ok || err == nil || errors.Is(err, cachekit.ErrUnknownOutcome) {
		t.Fatalf("value old on a list: %v, %v; want false and the server's WRONGTYPE error", ok, err)
	}
	if typ := cl.Type(ctx, "a:list").Val(); typ != "list" {
		t.Fatalf("the list became a %s", typ)
	}
}

func TestCompareAndSwapErrors(t *testing.T) {
	srv := testserver.StartRedis(t)
	cl := realClient(t, srv.Addr(), &goredis.Options{ContextTimeoutEnabled: true})
	ctx := context.Background()
	c := New(cl, &Options{Namespace: "err", MaxValueSize: 16})
	if err := c.Set(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	check := func(what string, err, want error) {
		t.Helper()
		var ce *cachekit.Error
		if !errors.Is(err, want) || !errors.As(err, &ce) || ce.Op != "CompareAndSwap" {
			t.Errorf("%s: %v; want a CompareAndSwap *cachekit.Error wrapping %v", what, err, want)
		}
	}
	_, err := c.CompareAndSwap(ctx, "", nil, []byte("v"), 0)
	check("empty key", err, cachekit.ErrInvalidKey)
	_, err = c.CompareAndSwap(ctx, strings.Repeat("k", cachekit.MaxKeySize+1), nil, []byte("v"), 0)
	check("long key", err, cachekit.ErrInvalidKey)
	_, err = c.CompareAndSwap(ctx, "k", []byte("v"), []byte("w"), -time.Millisecond)
	check("negative ttl", err, cachekit.ErrInvalidTTL)
	_, err = c.CompareAndSwap(ctx, "k", []byte("v"), make([]byte, 17), 0)
	check("too large new", err, cachekit.ErrTooLarge)
	_, err = c.CompareAndSwap(ctx, "k", make([]byte, 17), []byte("w"), 0)
	check("too large old", err, cachekit.ErrTooLarge)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = c.CompareAndSwap(cctx, "k", []byte("v"), []byte("w"), 0)
	check("cancelled ctx", err, context.Canceled)
	if v, _ := c.Get(ctx, "k"); string(v) != "v" {
		t.Fatalf("a failed swap changed the value to %q", v)
	}
	c.Close()
	_, err = c.CompareAndSwap(ctx, "k", []byte("v"), []byte("w"), 0)
	check("after Close", err, cachekit.ErrClosed)
}

// TestCompareAndSwapLostReply drops the reply of a swap the server ran: the
// caller learns the outcome is unknown, and the swap was applied once, never
// resent (a resent swap would find its own new value and report false).
func TestCompareAndSwapLostReply(t *testing.T) {
	srv := testserver.StartRedis(t)
	admin := realClient(t, srv.Addr(), nil)
	ctx := context.Background()
	proxy := faultproxy.Start(t, srv.Addr())
	for name, cl := range map[string]*goredis.Client{
		"default MaxRetries":       realClient(t, proxy.Addr(), &goredis.Options{ContextTimeoutEnabled: true}),
		"no ContextTimeoutEnabled": realClient(t, proxy.Addr(), &goredis.Options{ReadTimeout: 2 * time.Second}),
	} {
		t.Run(name, func(t *testing.T) {
			c := New(cl, &Options{Namespace: "lost-" + name, BreakerThreshold: -1})
			if err := c.Set(ctx, "k", []byte("v0"), 0); err != nil {
				t.Fatal(err)
			}
			// Loads the script, so that the dropped reply is the swap's
			// and not a NOSCRIPT refusal's.
			if ok, err := c.CompareAndSwap(ctx, "absent", []byte("x"), []byte("y"), 0); ok || err != nil {
				t.Fatal(ok, err)
			}
			for i, old := range [][]byte{[]byte("v0"), nil} {
				key := "k"
				if old == nil {
					key = fmt.Sprintf("fresh-%d", i)
				}
				// A read first, so that a connection is up and the drop
				// hits the swap itself.
				if _, err := c.Exists(ctx, "warm-up"); err != nil {
					t.Fatal(err)
				}
				proxy.DropNextReply()
				ok, err := c.CompareAndSwap(ctx, key, old, []byte("v1"), time.Minute)
				if ok || !errors.Is(err, cachekit.ErrUnknownOutcome) {
					t.Fatalf("swap (old %q) with its reply lost: %v, %v; want false, ErrUnknownOutcome", old, ok, err)
				}
				if !proxy.ReplyDropped() {
					t.Fatal("the proxy dropped no reply")
				}
				if v, _ := admin.Get(ctx, c.key(key)).Result(); v != "v1" {
					t.Fatalf("after the lost swap the server holds %q; want v1 (applied once)", v)
				}
			}
		})
	}
}

// startCluster3 starts a Redis Cluster of three masters, the slots split
// between them, and returns their addresses.
func startCluster3(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	var addrs []string
	var admins []*goredis.Client
	for i := range 3 {
		srv := testserver.StartRedis(t, "--cluster-enabled", "yes", "--cluster-node-timeout", "5000")
		addrs = append(addrs, srv.Addr())
		admin := realClient(t, srv.Addr(), nil)
		admins = append(admins, admin)
		lo, hi := i*16384/3, (i+1)*16384/3-1
		if err := admin.Do(ctx, "cluster", "addslotsrange", lo, hi).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range admins[1:] {
		host, port, _ := strings.Cut(addrs[0], ":")
		if err := a.ClusterMeet(ctx, host, port).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ok := true
		for _, a := range admins {
			info, err := a.ClusterInfo(ctx).Result()
			if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:3") {
				ok = false
			}
		}
		if ok {
			return addrs
		}
		if time.Now().After(deadline) {
			t.Fatal("the 3-node cluster never became ok")
		}
	}
}

// TestCompareAndSwapCluster: the script names one key, so it runs on the
// node owning the key's slot, for keys spread over three masters.
func TestCompareAndSwapCluster(t *testing.T) {
	addrs := startCluster3(t)
	cl := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: true})
	t.Cleanup(func() { cl.Close() })
	c := New(cl, &Options{Namespace: "cas"})
	defer c.Close()
	casSemantics(t, c, cl)
	ctx := context.Background()
	// Keys on every node, each node loading the script on first use.
	nodes := map[string]bool{}
	for i := range 30 {
		key := fmt.Sprintf("spread-%d", i)
		if ok, err := c.CompareAndSwap(ctx, key, nil, []byte("a"), time.Minute); !ok || err != nil {
			t.Fatalf("%s: %v, %v", key, ok, err)
		}
		if ok, err := c.CompareAndSwap(ctx, key, []byte("a"), []byte("b"), time.Minute); !ok || err != nil {
			t.Fatalf("%s: %v, %v", key, ok, err)
		}
		node, err := cl.MasterForKey(ctx, c.key(key))
		if err != nil {
			t.Fatal(err)
		}
		nodes[node.Options().Addr] = true
	}
	if len(nodes) != 3 {
		t.Fatalf("30 keys landed on %d nodes; want all 3", len(nodes))
	}
	casRace(t, c, "race", 3)
}
