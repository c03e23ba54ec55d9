package memcached

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/internal/testpeer"
	"github.com/cachekit/cachekit/internal/testserver"
)

// TestClientSelector: the selector a client was built with is found, so
// that meta requests go where gomemcache sends the key's gets.
func TestClientSelector(t *testing.T) {
	client := memcache.New("10.0.0.1:11211", "10.0.0.2:11211")
	sel := clientSelector(client)
	if sel == nil {
		t.Fatal("clientSelector found no selector in a memcache.New client: the versioned methods would all be ErrUnsupported")
	}
	for _, k := range []string{"a", "b", "c", "~ns:1:k"} {
		a, err := sel.PickServer(k)
		if err != nil {
			t.Fatal(err)
		}
		var ref memcache.ServerList
		ref.SetServers("10.0.0.1:11211", "10.0.0.2:11211")
		b, _ := ref.PickServer(k)
		if a.String() != b.String() {
			t.Fatalf("key %q: the found selector picks %s, gomemcache's ServerList %s", k, a, b)
		}
	}
	ring := mustRing(t, "10.0.0.1:11211", "10.0.0.2:11211")
	if s := clientSelector(memcache.NewFromSelector(ring)); s != ring {
		t.Fatalf("clientSelector of a NewFromSelector(ring) client = %v; want the ring", s)
	}
	// Options.Selector wins, also for a single server (where the cache keeps
	// no per-server breakers).
	one := mustRing(t, "10.0.0.3:11211")
	if c := New(memcache.New("10.0.0.3:11211"), &Options{Selector: one}); c.meta.sel != one {
		t.Fatalf("meta selector = %v; want Options.Selector", c.meta.sel)
	}
}

// versionCache returns a cache over the first test server, with a fresh
// namespace ns ("" for none).
func versionCache(t *testing.T, ns string, opts *Options) *Cache {
	t.Helper()
	addr := testServers(t, 1)[0]
	client := memcache.New(addr)
	client.Timeout = 5 * time.Second
	t.Cleanup(func() { client.Close() })
	if opts == nil {
		opts = &Options{}
	}
	opts.Namespace = ns
	c := New(client, opts)
	t.Cleanup(func() { c.Close() })
	return c
}

// rawCommand sends one request on a connection of its own and returns the
// first reply line.
func rawCommand(t *testing.T, addr, req string) string {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(nc).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(line, "\r\n")
}

// serverKeyOf returns the memcached key of key in c as it stands.
func serverKeyOf(t *testing.T, c *Cache, key string) string {
	t.Helper()
	s, err := c.writeState(nil, c.slotFor(key))
	if err != nil {
		t.Fatal(err)
	}
	return serverKey(s.keyPrefix(), key)
}

func TestVersioner(t *testing.T) {
	uniq := fmt.Sprint(time.Now().UnixNano())
	for _, ns := range []string{"", "ver-" + uniq} {
		for _, withCtx := range []bool{false, true} {
			t.Run(fmt.Sprintf("namespace=%v,deadline=%v", ns != "", withCtx), func(t *testing.T) {
				c := versionCache(t, ns, nil)
				ctx := context.Background()
				if withCtx {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, time.Minute)
					defer cancel()
				}
				// Keys memcached cannot hold as they are go through the
				// same encoding as Get's.
				for _, key := range []string{"k-" + uniq + fmt.Sprint(withCtx), "a key with spaces " + uniq + fmt.Sprint(withCtx)} {
					if _, _, err := c.GetVersion(ctx, key); !errors.Is(err, cachekit.ErrNotFound) {
						t.Fatalf("GetVersion of a missing key: %v; want ErrNotFound", err)
					}
					if v, ok, err := c.SwapVersion(ctx, key, 1, []byte("x"), 0); v != 0 || ok || err != nil {
						t.Fatalf("SwapVersion of a missing key: %d, %v, %v; want 0, false, nil", v, ok, err)
					}
					if ok, err := c.DeleteVersion(ctx, key, 1); ok || err != nil {
						t.Fatalf("DeleteVersion of a missing key: %v, %v; want false, nil", ok, err)
					}
					val := []byte("v1\r\nEND\r\n") // a data block that looks like protocol
					v1, err := c.AddVersion(ctx, key, val, time.Minute)
					if err != nil || v1 == 0 {
						t.Fatalf("AddVersion: %d, %v", v1, err)
					}
					if got, err := c.Get(ctx, key); err != nil || string(got) != string(val) {
						t.Fatalf("Get after AddVersion: %q, %v", got, err)
					}
					got, ver, err := c.GetVersion(ctx, key)
					if err != nil || string(got) != string(val) || ver != v1 {
						t.Fatalf("GetVersion after AddVersion: %q, %d, %v; want %q, %d", got, ver, err, val, v1)
					}
					if v, err := c.AddVersion(ctx, key, []byte("other"), 0); !errors.Is(err, cachekit.ErrExists) || v != 0 {
						t.Fatalf("AddVersion of a present key: %d, %v; want ErrExists", v, err)
					}
					if v, ok, err := c.SwapVersion(ctx, key, v1+1000, []byte("wrong"), 0); v != 0 || ok || err != nil {
						t.Fatalf("SwapVersion with a wrong version: %d, %v, %v", v, ok, err)
					}
					if v, ok, err := c.SwapVersion(ctx, key, 0, []byte("wrong"), 0); v != 0 || ok || err != nil {
						t.Fatalf("SwapVersion with version 0: %d, %v, %v", v, ok, err)
					}
					v2, ok, err := c.SwapVersion(ctx, key, v1, []byte("v2"), time.Minute)
					if !ok || err != nil || v2 == 0 || v2 == v1 {
						t.Fatalf("SwapVersion with the right version: %d, %v, %v", v2, ok, err)
					}
					if got, ver, err := c.GetVersion(ctx, key); err != nil || string(got) != "v2" || ver != v2 {
						t.Fatalf("GetVersion after the swap: %q, %d, %v; want v2, %d", got, ver, err, v2)
					}
					if v, ok, err := c.SwapVersion(ctx, key, v1, []byte("again"), 0); v != 0 || ok || err != nil {
						t.Fatalf("SwapVersion with a spent version: %d, %v, %v", v, ok, err)
					}
					// Set and Expire (a rewrite of the value) give new versions.
					if err := c.Set(ctx, key, []byte("v3"), 0); err != nil {
						t.Fatal(err)
					}
					_, v3, err := c.GetVersion(ctx, key)
					if err != nil || v3 == v2 {
						t.Fatalf("GetVersion after Set: %d, %v; want a version other than %d", v3, err, v2)
					}
					if _, err := c.Expire(ctx, key, time.Hour); err != nil {
						t.Fatal(err)
					}
					if ok, err := c.DeleteVersion(ctx, key, v3); ok || err != nil {
						t.Fatalf("DeleteVersion with the version before an Expire: %v, %v", ok, err)
					}
					if ok, err := c.DeleteVersion(ctx, key, 0); ok || err != nil {
						t.Fatalf("DeleteVersion with version 0: %v, %v", ok, err)
					}
					_, v4, err := c.GetVersion(ctx, key)
					if err != nil {
						t.Fatal(err)
					}
					if ok, err := c.DeleteVersion(ctx, key, v4+1000); ok || err != nil {
						t.Fatalf("DeleteVersion with a wrong version: %v, %v", ok, err)
					}
					if ok, err := c.DeleteVersion(ctx, key, v4); !ok || err != nil {
						t.Fatalf("DeleteVersion with the right version: %v, %v", ok, err)
					}
					if _, err := c.Get(ctx, key); !errors.Is(err, cachekit.ErrNotFound) {
						t.Fatalf("Get after DeleteVersion: %v; want ErrNotFound", err)
					}
					if ok, err := c.DeleteVersion(ctx, key, v4); ok || err != nil {
						t.Fatalf("second DeleteVersion: %v, %v", ok, err)
					}
					// An empty value is a value.
					ve, err := c.AddVersion(ctx, key, []byte{}, 0)
					if err != nil {
						t.Fatal(err)
					}
					if got, ver, err := c.GetVersion(ctx, key); err != nil || got == nil || len(got) != 0 || ver != ve {
						t.Fatalf("GetVersion of an empty value: %q (nil %v), %d, %v", got, got == nil, ver, err)
					}
					if _, err := c.Delete(ctx, key); err != nil {
						t.Fatal(err)
					}
				}
			})
		}
	}
}

// TestVersionTTL: AddVersion and SwapVersion store the TTL and the
// absolute-expiry flags Set stores, read back with memcached's mg.
func TestVersionTTL(t *testing.T) {
	c := versionCache(t, "ttl-"+fmt.Sprint(time.Now().UnixNano()), nil)
	addr := testServers(t, 1)[0]
	ctx := context.Background()
	ttlOf := func(key string) (ttl, flags int64) {
		line := rawCommand(t, addr, "mg "+serverKeyOf(t, c, key)+" t f\r\n")
		if _, err := fmt.Sscanf(line, "HD t%d f%d", &ttl, &flags); err != nil {
			t.Fatalf("mg of %q: %q: %v", key, line, err)
		}
		return ttl, flags
	}
	now := time.Now().Unix()
	v, err := c.AddVersion(ctx, "k", []byte("v"), 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// 1.5s is rounded up to 2s, plus memcached's one-second tick.
	if ttl, flags := ttlOf("k"); ttl < 2 || ttl > 3 || flags < now+3 || flags > time.Now().Unix()+3 {
		t.Fatalf("after AddVersion with 1.5s: ttl %d, flags %d (now %d); want 2-3s and now+3", ttl, flags, now)
	}
	if v, _, err = c.SwapVersion(ctx, "k", v, []byte("w"), 40*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if ttl, flags := ttlOf("k"); ttl < 40*24*3600-5 || ttl > 40*24*3600+2 || flags < now+40*24*3600 {
		t.Fatalf("after SwapVersion with 40 days (sent as an absolute time): ttl %d, flags %d", ttl, flags)
	}
	if _, _, err = c.SwapVersion(ctx, "k", v, []byte("w"), 0); err != nil {
		t.Fatal(err)
	}
	if ttl, flags := ttlOf("k"); ttl != -1 || flags != 0 {
		t.Fatalf("after SwapVersion with no TTL: ttl %d, flags %d; want -1 (none), 0", ttl, flags)
	}
	// Increment keeps the TTL a versioned write recorded in the flags.
	if _, err := c.AddVersion(ctx, "n", []byte("-5"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Increment(ctx, "n", -1); err != nil || n != -6 {
		t.Fatalf("Increment of an AddVersion counter: %d, %v", n, err)
	}
	if ttl, _ := ttlOf("n"); ttl < 3590 || ttl > 3602 {
		t.Fatalf("TTL after Increment of an AddVersion counter: %d; want about an hour", ttl)
	}
	// And the value expires.
	if _, err := c.AddVersion(ctx, "short", []byte("v"), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _, err := c.GetVersion(ctx, "short")
		if errors.Is(err, cachekit.ErrNotFound) {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("a 1ms AddVersion still read after 10s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestVersionNamespaces: versioned writes land in the namespace's current
// generation, are invisible to other namespaces, and a Clear (by this cache
// or, with the generation asked for every time, by another) makes an old
// version miss.
func TestVersionNamespaces(t *testing.T) {
	ns := "vns-" + fmt.Sprint(time.Now().UnixNano())
	c := versionCache(t, ns, nil)
	other := versionCache(t, ns+"-other", nil)
	ctx := context.Background()
	v, err := c.AddVersion(ctx, "k", []byte("mine"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := other.GetVersion(ctx, "k"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("another namespace reads the key: %v", err)
	}
	if ov, err := other.AddVersion(ctx, "k", []byte("theirs"), 0); err != nil || ov == v {
		t.Fatalf("AddVersion in another namespace: %d, %v", ov, err)
	}
	if !strings.HasPrefix(serverKeyOf(t, c, "k"), "~"+ns+":") {
		t.Fatalf("server key %q is not in the namespace", serverKeyOf(t, c, "k"))
	}
	if err := c.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := c.SwapVersion(ctx, "k", v, []byte("x"), 0); ok || err != nil {
		t.Fatalf("SwapVersion after Clear: %v, %v; want false", ok, err)
	}
	if ok, err := c.DeleteVersion(ctx, "k", v); ok || err != nil {
		t.Fatalf("DeleteVersion after Clear: %v, %v; want false", ok, err)
	}
	if _, _, err := c.GetVersion(ctx, "k"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("GetVersion after Clear: %v", err)
	}
	if got, err := other.Get(ctx, "k"); err != nil || string(got) != "theirs" {
		t.Fatalf("the other namespace after Clear: %q, %v", got, err)
	}
	// A Clear by another cache of the namespace, seen at once with the
	// generation asked for before every write.
	fresh := versionCache(t, ns, &Options{GenerationTTL: -1})
	v, err = fresh.AddVersion(ctx, "k2", []byte("a"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := fresh.SwapVersion(ctx, "k2", v, []byte("b"), 0); ok || err != nil {
		t.Fatalf("SwapVersion after another cache's Clear: %v, %v; want false", ok, err)
	}
	if nv, err := fresh.AddVersion(ctx, "k2", []byte("c"), 0); err != nil || nv == v {
		t.Fatalf("AddVersion after another cache's Clear: %d, %v; want a new value", nv, err)
	}
	// Add reports ErrExists only after asking for the generation again: a
	// cache that trusts a cleared generation still adds.
	trusting := versionCache(t, ns, &Options{GenerationTTL: time.Hour})
	if _, err := trusting.AddVersion(ctx, "k3", []byte("a"), 0); err != nil {
		t.Fatal(err)
	}
	if err := fresh.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := trusting.AddVersion(ctx, "k3", []byte("b"), 0); err != nil {
		t.Fatalf("AddVersion of a key cleared elsewhere: %v; want it stored", err)
	}
	if got, err := fresh.Get(ctx, "k3"); err != nil || string(got) != "b" {
		t.Fatalf("after AddVersion in the new generation: %q, %v", got, err)
	}
	// A version read before another cache's Clear, used by a cache that
	// still trusts the cleared generation, names the old item only: the
	// live key of the new generation is left alone.
	_, old, err := trusting.GetVersion(ctx, "k3")
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.AddVersion(ctx, "k3", []byte("live"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := trusting.DeleteVersion(ctx, "k3", old); err != nil {
		t.Fatal(err)
	}
	if _, _, err := trusting.SwapVersion(ctx, "k3", old, []byte("stale"), 0); err != nil {
		t.Fatal(err)
	}
	if got, err := fresh.Get(ctx, "k3"); err != nil || string(got) != "live" {
		t.Fatalf("the new generation's key after versioned writes with an old version: %q, %v; want it untouched", got, err)
	}
}

// TestVersionBadInput: bad keys, values and TTLs, a closed cache and a done
// context fail with their typed errors, naming the operation, and send
// nothing.
func TestVersionBadInput(t *testing.T) {
	bh := testpeer.NewBlackhole(t)
	client := memcache.New(bh.Addr())
	defer client.Close()
	c := New(client, &Options{Namespace: "ns", MaxValueSize: 10})
	ctx := context.Background()
	type result struct {
		op  string
		err error
	}
	calls := func(ctx context.Context, key string, value []byte, ttl time.Duration, ops ...string) []result {
		if len(ops) == 0 {
			ops = []string{"GetVersion", "AddVersion", "SwapVersion", "DeleteVersion"}
		}
		var rs []result
		for _, op := range ops {
			var err error
			switch op {
			case "GetVersion":
				_, _, err = c.GetVersion(ctx, key)
			case "AddVersion":
				_, err = c.AddVersion(ctx, key, value, ttl)
			case "SwapVersion":
				_, _, err = c.SwapVersion(ctx, key, 7, value, ttl)
			case "DeleteVersion":
				_, err = c.DeleteVersion(ctx, key, 7)
			}
			rs = append(rs, result{op, err})
		}
		return rs
	}
	check := func(what string, rs []result, want error) {
		t.Helper()
		for _, r := range rs {
			var ce *cachekit.Error
			if !errors.Is(r.err, want) || !errors.As(r.err, &ce) || ce.Op != r.op {
				t.Errorf("%s: %s: %v; want %v in a *cachekit.Error for %s", what, r.op, r.err, want, r.op)
			}
		}
	}
	check("empty key", calls(ctx, "", []byte("v"), 0), cachekit.ErrInvalidKey)
	check("oversize key", calls(ctx, strings.Repeat("k", cachekit.MaxKeySize+1), []byte("v"), 0), cachekit.ErrInvalidKey)
	check("oversize value", calls(ctx, "k", make([]byte, 11), 0, "AddVersion", "SwapVersion"), cachekit.ErrTooLarge)
	check("negative TTL", calls(ctx, "k", []byte("v"), -time.Second, "AddVersion", "SwapVersion"), cachekit.ErrInvalidTTL)
	done, cancel := context.WithCancel(ctx)
	cancel()
	check("cancelled context", calls(done, "k", []byte("v"), 0), context.Canceled)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	check("closed cache", calls(ctx, "k", []byte("v"), 0), cachekit.ErrClosed)
	if n := bh.Accepted(); n != 0 {
		t.Fatalf("the server saw %d connections; want none", n)
	}
}

// TestVersionRace: of 100 goroutines swapping from one version, exactly
// one wins, and the key holds its value.
func TestVersionRace(t *testing.T) {
	c := versionCache(t, "race-"+fmt.Sprint(time.Now().UnixNano()), nil)
	ctx := context.Background()
	v, err := c.AddVersion(ctx, "k", []byte("start"), 0)
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg     sync.WaitGroup
		wins   atomic.Int64
		winner atomic.Value
	)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			val := fmt.Sprint("g", i)
			nv, ok, err := c.SwapVersion(ctx, "k", v, []byte(val), 0)
			if err != nil {
				t.Error(err)
				return
			}
			if ok {
				wins.Add(1)
				winner.Store([2]any{val, nv})
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d goroutines won the swap; want exactly 1", wins.Load())
	}
	w := winner.Load().([2]any)
	if got, ver, err := c.GetVersion(ctx, "k"); err != nil || string(got) != w[0] || ver != w[1] {
		t.Fatalf("after the race: %q, %d, %v; want the winner's %q, %d", got, ver, err, w[0], w[1])
	}
}

// TestVersionLostReply loses the reply of the ms or md after the server ran
// it, closing the connection: the caller learns the outcome is unknown, the
// write was applied once and not resent, and the next call works on a
// fresh connection.
func TestVersionLostReply(t *testing.T) {
	srv := testserver.StartMemcached(t)
	direct := casClient(t, srv.Addr())
	proxy := startReplyDropper(t, srv.Addr())
	for _, ns := range []string{"", "lost"} {
		for _, withCtx := range []bool{false, true} {
			t.Run(fmt.Sprintf("namespace=%q,deadline=%v", ns, withCtx), func(t *testing.T) {
				c := New(casClient(t, proxy.Addr()), &Options{Namespace: ns, BreakerThreshold: -1})
				defer c.Close()
				reader := New(direct, &Options{Namespace: ns})
				ctx := context.Background()
				if withCtx {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, time.Minute)
					defer cancel()
				}
				key := fmt.Sprint("k-", withCtx)
				lose := func(verb string) {
					proxy.dropped.Store(false)
					proxy.verb.Store(&verb)
				}
				lost := func(what string, err error) {
					t.Helper()
					if !errors.Is(err, cachekit.ErrUnknownOutcome) {
						t.Fatalf("%s with its reply lost: %v; want ErrUnknownOutcome", what, err)
					}
					if !proxy.dropped.Load() {
						t.Fatalf("%s: the proxy dropped no reply", what)
					}
				}
				// Connect and check the connection first: the proxy arms on
				// a verb at the start of a write.
				if _, err := c.AddVersion(ctx, key+"-warm", []byte("w"), time.Minute); err != nil {
					t.Fatal(err)
				}
				lose("ms ")
				_, err := c.AddVersion(ctx, key, []byte("v1"), time.Minute)
				lost("AddVersion", err)
				_, v1, err := reader.GetVersion(context.Background(), key)
				if err != nil {
					t.Fatalf("after the lost AddVersion: %v; want it applied", err)
				}
				lose("ms ")
				_, _, err = c.SwapVersion(ctx, key, v1, []byte("v2"), time.Minute)
				lost("SwapVersion", err)
				got, v2, err := reader.GetVersion(context.Background(), key)
				if err != nil || string(got) != "v2" {
					t.Fatalf("after the lost SwapVersion: %q, %v; want v2 (applied once)", got, err)
				}
				lose("md ")
				_, err = c.DeleteVersion(ctx, key, v2)
				lost("DeleteVersion", err)
				if _, err := reader.Get(context.Background(), key); !errors.Is(err, cachekit.ErrNotFound) {
					t.Fatalf("after the lost DeleteVersion: %v; want it applied", err)
				}
				if _, err := c.AddVersion(ctx, key, []byte("v3"), 0); err != nil {
					t.Fatalf("AddVersion after the lost replies: %v", err)
				}
			})
		}
	}
}

// TestVersionServerFailures: against a frozen server, a versioned write
// fails within the client's Timeout with ErrUnknownOutcome (the request
// left, no reply came) and the failures open the breaker; against a killed
// one, the refused dial is no unknown outcome (nothing left); after a
// restart, pooled connections that died are dropped and the request is
// resent on a fresh one (LivenessDialer).
func TestVersionServerFailures(t *testing.T) {
	srv := testserver.StartMemcached(t)
	client := memcache.New(srv.Addr())
	client.Timeout = 300 * time.Millisecond
	client.DialContext = LivenessDialer(nil)
	defer client.Close()
	c := New(client, &Options{BreakerThreshold: 2, BreakerDuration: time.Hour})
	defer c.Close()
	ctx := context.Background()
	v, err := c.AddVersion(ctx, "k", []byte("v"), 0)
	if err != nil {
		t.Fatal(err)
	}
	srv.Freeze()
	// The pooled connection sends the request, whose reply never comes.
	_, _, err = c.SwapVersion(ctx, "k", v, []byte("w"), 0)
	if !errors.Is(err, cachekit.ErrUnknownOutcome) || errors.Is(err, cachekit.ErrUnavailable) {
		t.Fatalf("SwapVersion against a frozen server: %v; want ErrUnknownOutcome", err)
	}
	// A fresh connection is dialed (the kernel accepts it) and checked,
	// and the check's reply never comes: the request was not sent.
	_, _, err = c.SwapVersion(ctx, "k", v, []byte("w"), 0)
	if err == nil || errors.Is(err, cachekit.ErrUnknownOutcome) || errors.Is(err, cachekit.ErrUnavailable) {
		t.Fatalf("SwapVersion on a fresh connection to a frozen server: %v; want a timeout, request not sent", err)
	}
	_, err = c.DeleteVersion(ctx, "k", v)
	if !errors.Is(err, cachekit.ErrUnavailable) || errors.Is(err, cachekit.ErrUnknownOutcome) {
		t.Fatalf("DeleteVersion with the breaker open: %v; want ErrUnavailable, nothing sent", err)
	}
	srv.Thaw()

	// A fresh cache (closed breaker) against the killed server: refused.
	c2 := New(client, &Options{BreakerThreshold: 1, BreakerDuration: time.Hour})
	defer c2.Close()
	// Warm a pooled meta connection, then restart the server under it.
	if _, err := c2.AddVersion(ctx, "k2", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	srv.Restart()
	v2, err := c2.AddVersion(ctx, "k2", []byte("v"), 0)
	if err != nil || v2 == 0 {
		t.Fatalf("AddVersion after a restart (dead pooled connection): %d, %v; want it resent on a fresh connection", v2, err)
	}
	srv.Kill()
	_, err = c2.AddVersion(ctx, "k3", []byte("v"), 0)
	if !errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, cachekit.ErrUnknownOutcome) {
		t.Fatalf("AddVersion against a killed server: %v; want ECONNREFUSED, no unknown outcome", err)
	}
	if _, err := c2.AddVersion(ctx, "k3", []byte("v"), 0); !errors.Is(err, cachekit.ErrUnavailable) {
		t.Fatalf("AddVersion with the breaker open: %v; want ErrUnavailable", err)
	}
}

// oldServer is a protocol-level stand-in for a server without usable meta
// commands: a TCP listener that answers every line with reply (ERROR, as
// memcached before 1.6 answers an unknown command, or a VERSION line of an
// old release). It is not memcached; it only tests how the cache detects
// such a server. Every behaviour test runs against a real memcached.
type oldServer struct {
	ln       net.Listener
	accepted atomic.Int64
	mu       sync.Mutex
	lines    []string
	wg       sync.WaitGroup
}

func startOldServer(t *testing.T, reply func(line string) string) *oldServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &oldServer{ln: ln}
	var conns []net.Conn
	var mu sync.Mutex
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer nc.Close()
				r := bufio.NewReader(nc)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					line = strings.TrimSuffix(line, "\r\n")
					s.mu.Lock()
					s.lines = append(s.lines, line)
					s.mu.Unlock()
					if _, err := nc.Write([]byte(reply(line) + "\r\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, nc := range conns {
			nc.Close()
		}
		mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *oldServer) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

// TestVersionUnsupportedServer (protocol level, see oldServer): a server
// that answers ERROR to the connection check (memcached before 1.6), or
// reports a version whose meta commands differ, gets no meta command: the
// versioned writes fail with ErrUnsupported, having sent only the check,
// and for a while fail at once without dialing again.
func TestVersionUnsupportedServer(t *testing.T) {
	for name, reply := range map[string]func(string) string{
		"ERROR": func(string) string { return "ERROR" },
		"1.6.9": func(line string) string {
			if line == "version" {
				return "VERSION 1.6.9"
			}
			return "ERROR"
		},
		"cas disabled": func(line string) string {
			switch line {
			case "version":
				return "VERSION 1.6.18"
			case "stats settings":
				return "STAT maxbytes 67108864\r\nSTAT cas_enabled no\r\nEND"
			}
			return "ERROR"
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv := startOldServer(t, reply)
			client := memcache.New(srv.ln.Addr().String())
			defer client.Close()
			c := New(client, &Options{BreakerThreshold: 1, BreakerDuration: time.Hour})
			defer c.Close()
			ctx := context.Background()
			for i := range 2 {
				_, aerr := c.AddVersion(ctx, "k", []byte("flush_all"), 0)
				_, _, serr := c.SwapVersion(ctx, "k", 5, []byte("flush_all"), 0)
				_, derr := c.DeleteVersion(ctx, "k", 5)
				for op, err := range map[string]error{"AddVersion": aerr, "SwapVersion": serr, "DeleteVersion": derr} {
					var ce *cachekit.Error
					if !errors.Is(err, cachekit.ErrUnsupported) || !errors.As(err, &ce) || ce.Op != op {
						t.Fatalf("round %d: %s: %v; want ErrUnsupported in a *cachekit.Error for %s", i, op, err, op)
					}
				}
			}
			if n := srv.accepted.Load(); n != 1 {
				t.Fatalf("%d connections; want 1 (the check, whose verdict is kept)", n)
			}
			for _, line := range srv.seen() {
				if line != "version" && line != "stats settings" {
					t.Fatalf("the server received %q; want only the check", line)
				}
			}
			// The breaker counted answers, not failures.
			if err := c.Set(ctx, "k", []byte("v"), 0); errors.Is(err, cachekit.ErrUnavailable) {
				t.Fatalf("Set after the checks: %v; the breaker opened", err)
			}
		})
	}
}

// TestVersionCloseClosesConns: Close closes the cache's idle meta
// connections (the server sees them go), and the versioned methods then
// fail with ErrClosed.
func TestVersionCloseClosesConns(t *testing.T) {
	addr := testServers(t, 1)[0]
	var (
		mu    sync.Mutex
		conns []*trackedConn
	)
	client := memcache.New(addr)
	client.MaxIdleConns = 4
	client.DialContext = func(ctx context.Context, network, address string) (net.Conn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		tc := &trackedConn{Conn: nc}
		mu.Lock()
		conns = append(conns, tc)
		mu.Unlock()
		return tc, nil
	}
	defer client.Close()
	c := New(client, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.AddVersion(ctx, fmt.Sprint("close-", time.Now().UnixNano(), "-", i), []byte("v"), time.Minute); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(conns) == 0 {
		t.Fatal("no connection dialed")
	}
	for i, tc := range conns {
		if !tc.closed.Load() {
			t.Errorf("meta connection %d of %d still open after Close", i, len(conns))
		}
	}
	if _, err := c.AddVersion(ctx, "k", []byte("v"), 0); !errors.Is(err, cachekit.ErrClosed) {
		t.Fatalf("AddVersion after Close: %v", err)
	}
}

type trackedConn struct {
	net.Conn
	closed atomic.Bool
}

func (c *trackedConn) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}

func TestVersionAtLeast(t *testing.T) {
	for v, want := range map[string]bool{
		"1.6.13": true, "1.6.18": true, "1.6.100": true, "1.7.0": true, "2.0.0": true, "1.6.21-proxy": true,
		"1.6.12": false, "1.6.9": false, "1.5.22": false, "1.4.25": false, "0.9": false, "": false, "x.y.z": false, "1.6": false,
	} {
		if got := versionAtLeast(v, minMetaVersion); got != want {
			t.Errorf("versionAtLeast(%q) = %v; want %v", v, got, want)
		}
	}
}

// TestVersionPoolPlacement: on a pool, the meta requests go to the server
// the client's selector picks for the key, whether the cache was told the
// selector (a Ring) or found it in the client (gomemcache's ServerList),
// so that Get and GetVersion read what the versioned writes stored.
func TestVersionPoolPlacement(t *testing.T) {
	addrs := testServers(t, 2)
	ring := mustRing(t, addrs...)
	uniq := fmt.Sprint(time.Now().UnixNano())
	for name, setup := range map[string]func() (*memcache.Client, memcache.ServerSelector, *Options){
		"ServerList": func() (*memcache.Client, memcache.ServerSelector, *Options) {
			var sl memcache.ServerList
			sl.SetServers(addrs...)
			return memcache.New(addrs...), &sl, nil
		},
		"Ring": func() (*memcache.Client, memcache.ServerSelector, *Options) {
			return memcache.NewFromSelector(ring), ring, &Options{Selector: ring}
		},
	} {
		t.Run(name, func(t *testing.T) {
			client, sel, opts := setup()
			defer client.Close()
			c := New(client, opts)
			defer c.Close()
			ctx := context.Background()
			servers := map[string]bool{}
			for i := range 40 {
				key := fmt.Sprint("place-", name, uniq, "-", i)
				v, err := c.AddVersion(ctx, key, []byte("v"), time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				a, err := sel.PickServer(key)
				if err != nil {
					t.Fatal(err)
				}
				servers[a.String()] = true
				if line := rawCommand(t, a.String(), "mg "+key+" c\r\n"); line != fmt.Sprintf("HD c%d", v) {
					t.Fatalf("key %q on %s, where the selector puts it: %q; want HD c%d", key, a, line, v)
				}
				if _, ver, err := c.GetVersion(ctx, key); err != nil || ver != v {
					t.Fatalf("GetVersion of %q: %d, %v; want %d", key, ver, err, v)
				}
			}
			if len(servers) != 2 {
				t.Fatalf("40 keys went to %d servers; want both", len(servers))
			}
		})
	}
}

// TestVersionAfterRestart shows the caveat of the package documentation:
// memcached counts cas ids from 1 again after a restart, so a version read
// before it can match a value stored after it.
func TestVersionAfterRestart(t *testing.T) {
	srv := testserver.StartMemcached(t)
	client := memcache.New(srv.Addr())
	client.DialContext = LivenessDialer(nil)
	defer client.Close()
	c := New(client, nil)
	defer c.Close()
	ctx := context.Background()
	before, err := c.AddVersion(ctx, "k", []byte("before"), 0)
	if err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	srv.Restart()
	after, err := c.AddVersion(ctx, "k", []byte("after"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("the first value stored before and after a restart have versions %d and %d; the documentation says they can repeat (both should be memcached's first cas id)", before, after)
	}
	if _, ok, err := c.SwapVersion(ctx, "k", before, []byte("swapped"), 0); !ok || err != nil {
		t.Fatalf("SwapVersion with a version from before the restart: %v, %v; want it to match (the caveat)", ok, err)
	}
}

// TestVersionServerTooLarge: with the client-side check off, a value too
// large for the server's items (its item_size_max, learnt when the
// connection was checked) is ErrTooLarge before anything is sent, so the
// key keeps its value: memcached's ms, refusing a value as too large,
// would remove the key's current item, whatever its cas. A value just
// under the limit is stored.
func TestVersionServerTooLarge(t *testing.T) {
	c := versionCache(t, "", &Options{MaxValueSize: -1})
	ctx := context.Background()
	key := fmt.Sprint("big-", time.Now().UnixNano())
	for range 2 { // on a fresh connection, then with the limit known
		_, err := c.AddVersion(ctx, key, make([]byte, 2<<20), 0)
		if !errors.Is(err, cachekit.ErrTooLarge) || errors.Is(err, cachekit.ErrUnknownOutcome) {
			t.Fatalf("AddVersion of 2 MiB: %v; want ErrTooLarge", err)
		}
	}
	v, err := c.AddVersion(ctx, key, []byte("small"), time.Minute)
	if err != nil {
		t.Fatalf("AddVersion after the refusal: %v", err)
	}
	for _, ver := range []uint64{v, v + 1000} {
		if _, _, err := c.SwapVersion(ctx, key, ver, make([]byte, 1<<20), 0); !errors.Is(err, cachekit.ErrTooLarge) || errors.Is(err, cachekit.ErrUnknownOutcome) {
			t.Fatalf("SwapVersion to 1 MiB: %v; want ErrTooLarge", err)
		}
	}
	if got, ver, err := c.GetVersion(ctx, key); err != nil || string(got) != "small" || ver != v {
		t.Fatalf("after the refused swaps: %q, %d, %v; want the value unchanged", got, ver, err)
	}
	big := make([]byte, 1<<20-itemSize(len(key), 0))
	if _, ok, err := c.SwapVersion(ctx, key, v, big, 0); !ok || err != nil {
		t.Fatalf("SwapVersion to a value at the item size limit: %v, %v; want it stored", ok, err)
	}
	// The server's own refusal (here of a raw ms, as a miscalculated limit
	// would bring) removes the item, as the error says it may.
	sk := serverKeyOf(t, c, key)
	if line := rawCommand(t, testServers(t, 1)[0], fmt.Sprintf("ms %s %d C1 c\r\n%s\r\n", sk, 2<<20, make([]byte, 2<<20))); !strings.HasPrefix(line, "SERVER_ERROR") {
		t.Fatalf("raw ms of 2 MiB: %q", line)
	}
	if _, err := c.Get(ctx, key); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("after the server refused a too-large ms with a wrong cas: %v; memcached removed the item when this test was written", err)
	}
	if _, err := parseMetaReply([]byte("SERVER_ERROR object too large for cache")); !errors.Is(err, cachekit.ErrTooLarge) || !errors.Is(err, cachekit.ErrUnknownOutcome) {
		t.Fatalf("a SERVER_ERROR reply to ms maps to %v; want ErrTooLarge and ErrUnknownOutcome", err)
	}
}

// TestVersionCASDisabled: a real memcached run with CAS disabled (-C) has
// no versions: GetVersion of a present key and the versioned writes fail
// with ErrUnsupported, and the writes store nothing.
func TestVersionCASDisabled(t *testing.T) {
	srv := testserver.StartMemcached(t, "-C")
	client := casClient(t, srv.Addr())
	c := New(client, nil)
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.GetVersion(ctx, "k"); !errors.Is(err, cachekit.ErrUnsupported) {
		t.Fatalf("GetVersion with CAS disabled: %v; want ErrUnsupported", err)
	}
	if _, err := c.AddVersion(ctx, "new", []byte("v"), 0); !errors.Is(err, cachekit.ErrUnsupported) {
		t.Fatalf("AddVersion with CAS disabled: %v; want ErrUnsupported", err)
	}
	if _, _, err := c.SwapVersion(ctx, "k", 1, []byte("w"), 0); !errors.Is(err, cachekit.ErrUnsupported) {
		t.Fatalf("SwapVersion with CAS disabled: %v; want ErrUnsupported", err)
	}
	if _, err := c.DeleteVersion(ctx, "k", 1); !errors.Is(err, cachekit.ErrUnsupported) {
		t.Fatalf("DeleteVersion with CAS disabled: %v; want ErrUnsupported", err)
	}
	if _, err := c.Get(ctx, "new"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("AddVersion stored a value: %v", err)
	}
	if got, err := c.Get(ctx, "k"); err != nil || string(got) != "v" {
		t.Fatalf("the key after the refused writes: %q, %v", got, err)
	}
}

// TestVersionTLS: over a memcached that serves TLS only, the versioned
// writes dial their own connections with the client's DialContext (here a
// TLS dialer), as gomemcache's requests do, and work: the README promises
// that a TLS dialer applies to them.
func TestVersionTLS(t *testing.T) {
	srv, cfg := testserver.StartMemcachedTLS(t)
	client := casClient(t, srv.Addr())
	var dials atomic.Int32
	d := &tls.Dialer{Config: cfg}
	client.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return d.DialContext(ctx, network, addr)
	}
	c := New(client, &Options{Namespace: "tls"})
	defer c.Close()
	ctx := context.Background()

	ver, err := c.AddVersion(ctx, "k", []byte("v1"), time.Minute)
	if err != nil || ver == 0 {
		t.Fatalf("AddVersion over TLS = %d, %v", ver, err)
	}
	got, gv, err := c.GetVersion(ctx, "k")
	if err != nil || string(got) != "v1" || gv != ver {
		t.Fatalf("GetVersion over TLS = %q, %d, %v; want v1, %d", got, gv, err, ver)
	}
	nv, ok, err := c.SwapVersion(ctx, "k", ver, []byte("v2"), 0)
	if err != nil || !ok || nv == ver {
		t.Fatalf("SwapVersion over TLS = %d, %v, %v", nv, ok, err)
	}
	if ok, err := c.DeleteVersion(ctx, "k", ver); err != nil || ok {
		t.Fatalf("DeleteVersion of a spent version over TLS = %v, %v; want false", ok, err)
	}
	if ok, err := c.DeleteVersion(ctx, "k", nv); err != nil || !ok {
		t.Fatalf("DeleteVersion over TLS = %v, %v; want true", ok, err)
	}
	if _, err := c.Get(ctx, "k"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("Get after DeleteVersion over TLS: %v; want ErrNotFound", err)
	}
	if dials.Load() < 2 {
		t.Fatalf("%d dials through the client's DialContext; want gomemcache's and the meta connection's", dials.Load())
	}

	// Without the TLS dialer the same server answers nothing usable: the
	// versioned write fails, and nothing is stored.
	plain := New(casClient(t, srv.Addr()), &Options{Namespace: "tls"})
	defer plain.Close()
	tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := plain.AddVersion(tctx, "p", []byte("v"), 0); err == nil {
		t.Fatal("AddVersion over plain TCP to a TLS-only memcached succeeded")
	}
	if _, err := c.Get(ctx, "p"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("Get of the plain client's key: %v; want ErrNotFound", err)
	}
}
