package memcached

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachekit/cachekit"
	"github.com/cachekit/cachekit/internal/testserver"
)

// casClient returns a client of a memcached process started for t.
func casClient(t *testing.T, addr string) *memcache.Client {
	t.Helper()
	client := memcache.New(addr)
	client.MaxIdleConns = 16
	client.Timeout = 5 * time.Second
	t.Cleanup(func() { client.Close() })
	return client
}

func TestCompareAndSwap(t *testing.T) {
	// The pool has servers of its own: the subtests without a namespace
	// must not see each other's keys.
	srv, srv2, srv3 := testserver.StartMemcached(t), testserver.StartMemcached(t), testserver.StartMemcached(t)
	ring, err := NewRing(srv2.Addr(), srv3.Addr())
	if err != nil {
		t.Fatal(err)
	}
	pool := memcache.NewFromSelector(ring)
	pool.MaxIdleConns = 16
	pool.Timeout = 5 * time.Second
	t.Cleanup(func() { pool.Close() })
	for _, tc := range []struct {
		name, ns string
		client   *memcache.Client
	}{
		{"one server", "", casClient(t, srv.Addr())},
		{"one server", "cas", casClient(t, srv.Addr())},
		{"pool", "", pool},
		{"pool", "pool", pool},
	} {
		ns := tc.ns
		t.Run(fmt.Sprintf("%s,namespace=%q", tc.name, ns), func(t *testing.T) {
			c := New(tc.client, &Options{Namespace: ns})
			defer c.Close()
			var _ cachekit.CompareAndSwapper = c
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
			// An empty stored value is present: an empty old swaps, nil not.
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
			// Binary values and keys memcached cannot hold as they are.
			bin := []byte{0, 0xff, '\r', '\n', 0}
			if err := c.Set(ctx, "a key\n", bin, 0); err != nil {
				t.Fatal(err)
			}
			swap("a key\n", bin[:3], []byte("y"), 0, false)
			swap("a key\n", bin, []byte("y"), 0, true)
			value("a key\n", "y")
			// A deleted key (CompareAndDelete's expired item) is absent.
			if ok, err := c.CompareAndDelete(ctx, "a key\n", []byte("y")); !ok || err != nil {
				t.Fatalf("CompareAndDelete: %v, %v", ok, err)
			}
			swap("a key\n", []byte("y"), []byte("z"), 0, false)
			swap("a key\n", nil, []byte("z"), 0, true)
			value("a key\n", "z")

			casRace(t, c, "race", 5)
			for i := range 20 { // keys on both servers of the pool
				key := fmt.Sprint("spread-", i)
				swap(key, nil, []byte("a"), time.Minute, true)
				swap(key, []byte("a"), []byte("b"), time.Minute, true)
				value(key, "b")
			}
		})
	}
}

// TestCompareAndSwapTTL: the swapped item carries the TTL as Set writes it,
// the absolute expiry in its flags (read with a raw client), and a short TTL
// expires.
func TestCompareAndSwapTTL(t *testing.T) {
	srv := testserver.StartMemcached(t)
	client := casClient(t, srv.Addr())
	c := New(client, nil)
	defer c.Close()
	ctx := context.Background()
	flags := func(key string) uint32 {
		t.Helper()
		it, err := client.Get(serverKey("", key))
		if err != nil {
			t.Fatalf("raw get of %q: %v", key, err)
		}
		return it.Flags
	}
	within := func(key string, ttl time.Duration) {
		t.Helper()
		f := int64(flags(key))
		lo, hi := time.Now().Add(ttl).Unix()-5, time.Now().Add(ttl).Unix()+5
		if f < lo || f > hi {
			t.Fatalf("%q: absolute expiry in the flags %d; want about now+%v (%d)", key, f, ttl, time.Now().Add(ttl).Unix())
		}
	}
	if err := c.Set(ctx, "k", []byte("a"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.CompareAndSwap(ctx, "k", []byte("a"), []byte("b"), 0); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if f := flags("k"); f != 0 {
		t.Fatalf("flags after a swap with ttl 0: %d; want 0 (no expiry)", f)
	}
	if ok, err := c.CompareAndSwap(ctx, "k", []byte("b"), []byte("c"), time.Hour); !ok || err != nil {
		t.Fatal(ok, err)
	}
	within("k", time.Hour)
	// Over 30 days the expiry is sent as an absolute time: the item must
	// not expire at once (memcached would read 40 days of seconds as a
	// time in 1970).
	if ok, err := c.CompareAndSwap(ctx, "k", []byte("c"), []byte("d"), 40*24*time.Hour); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if v, err := c.Get(ctx, "k"); err != nil || string(v) != "d" {
		t.Fatalf("after a swap with a 40-day TTL: %q, %v", v, err)
	}
	within("k", 40*24*time.Hour)
	// Increment keeps the TTL the swap recorded.
	if ok, err := c.CompareAndSwap(ctx, "n", nil, []byte("41"), 2*time.Hour); !ok || err != nil {
		t.Fatal(ok, err)
	}
	within("n", 2*time.Hour)
	if n, err := c.Increment(ctx, "n", 1); n != 42 || err != nil {
		t.Fatalf("Increment: %d, %v", n, err)
	}
	within("n", 2*time.Hour)

	// A short TTL (a millisecond, rounded up, never to "forever") expires.
	// memcached's clock ticks once a second: poll with a generous bound.
	if err := c.Set(ctx, "short2", []byte("d"), 0); err != nil {
		t.Fatal(err)
	}
	for key, old := range map[string][]byte{"short1": nil, "short2": []byte("d")} {
		if ok, err := c.CompareAndSwap(ctx, key, old, []byte("short"), time.Millisecond); !ok || err != nil {
			t.Fatalf("%s: %v, %v", key, ok, err)
		}
	}
	for _, key := range []string{"short1", "short2"} {
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if _, err := c.Get(ctx, key); errors.Is(err, cachekit.ErrNotFound) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: a value swapped in with a 1ms TTL is still there after 15s", key)
			}
		}
	}
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

// TestCompareAndSwapAfterClear: a Clear by another cache of the namespace
// (a new generation) makes the key absent for the swap too.
func TestCompareAndSwapAfterClear(t *testing.T) {
	srv := testserver.StartMemcached(t)
	client := casClient(t, srv.Addr())
	a := New(client, &Options{Namespace: "clr", GenerationTTL: time.Hour})
	b := New(client, &Options{Namespace: "clr"})
	defer a.Close()
	defer b.Close()
	ctx := context.Background()
	if err := a.Set(ctx, "k", []byte("v0"), 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := a.CompareAndSwap(ctx, "k", []byte("v0"), []byte("v1"), 0); ok || err != nil {
		t.Fatalf("swap of a cleared key: %v, %v; want false", ok, err)
	}
	if err := a.Set(ctx, "j", []byte("v0"), 0); err != nil { // a trusts its generation: written in the old one
		t.Fatal(err)
	}
	if err := b.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := a.CompareAndSwap(ctx, "j", nil, []byte("fresh"), 0); !ok || err != nil {
		t.Fatalf("nil-old swap of a key cleared meanwhile: %v, %v; want true", ok, err)
	}
	if v, err := b.Get(ctx, "j"); err != nil || string(v) != "fresh" {
		t.Fatalf("the other cache reads %q, %v; want fresh", v, err)
	}
}

func TestCompareAndSwapErrors(t *testing.T) {
	srv := testserver.StartMemcached(t)
	client := casClient(t, srv.Addr())
	c := New(client, &Options{MaxValueSize: 16})
	ctx := context.Background()
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
	_, err = c.CompareAndSwap(ctx, "k", []byte("v"), []byte("w"), -time.Second)
	check("negative ttl", err, cachekit.ErrInvalidTTL)
	_, err = c.CompareAndSwap(ctx, "k", []byte("v"), make([]byte, 17), 0)
	check("too large", err, cachekit.ErrTooLarge)
	// An old longer than any storable value simply matches nothing.
	if ok, err := c.CompareAndSwap(ctx, "k", make([]byte, 17), []byte("w"), 0); ok || err != nil {
		t.Errorf("old longer than the limit: %v, %v; want false, nil", ok, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = c.CompareAndSwap(cctx, "k", []byte("v"), []byte("w"), 0)
	check("cancelled ctx", err, context.Canceled)
	if v, _ := c.Get(ctx, "k"); string(v) != "v" {
		t.Fatalf("a failed swap changed the value to %q", v)
	}
	// A server that refuses the value for its size: ErrTooLarge, and
	// nothing changed.
	big := New(client, &Options{MaxValueSize: -1})
	_, err = big.CompareAndSwap(ctx, "k", []byte("v"), make([]byte, 2<<20), 0)
	check("refused by the server", err, cachekit.ErrTooLarge)
	if v, _ := c.Get(ctx, "k"); string(v) != "v" {
		t.Fatalf("a refused swap changed the value to %q", v)
	}
	// A plain Set the server refuses for its size removes the key's value
	// (memcached's doing; the package documentation says so).
	if err := big.Set(ctx, "k", make([]byte, 2<<20), 0); !errors.Is(err, cachekit.ErrTooLarge) {
		t.Fatalf("Set refused by the server: %v; want ErrTooLarge", err)
	}
	if _, err := c.Get(ctx, "k"); !errors.Is(err, cachekit.ErrNotFound) {
		t.Fatalf("after a Set the server refused: %v; want the key empty, as documented", err)
	}
	c.Close()
	_, err = c.CompareAndSwap(ctx, "k", []byte("v"), []byte("w"), 0)
	check("after Close", err, cachekit.ErrClosed)
}

// replyDropper is a proxy that loses the server's reply to the next request
// starting with one of the armed verbs (after the server executed it) and
// closes that connection, as a network failure would.
type replyDropper struct {
	ln      net.Listener
	target  string
	verb    atomic.Pointer[string]
	dropped atomic.Bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   []net.Conn
}

func startReplyDropper(t *testing.T, target string) *replyDropper {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &replyDropper{ln: ln, target: target}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			cc, err := ln.Accept()
			if err != nil {
				return
			}
			sc, err := net.Dial("tcp", target)
			if err != nil {
				cc.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, cc, sc)
			p.mu.Unlock()
			var drop atomic.Bool // the next reply on this connection is lost
			p.wg.Add(2)
			go func() { // client to server
				defer p.wg.Done()
				defer sc.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := cc.Read(buf)
					if n > 0 {
						if v := p.verb.Load(); v != nil && bytes.HasPrefix(buf[:n], []byte(*v)) && p.verb.CompareAndSwap(v, nil) {
							drop.Store(true)
						}
						if _, err := sc.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
			go func() { // server to client
				defer p.wg.Done()
				defer cc.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := sc.Read(buf)
					if n > 0 {
						if drop.Load() {
							p.dropped.Store(true)
							return
						}
						if _, err := cc.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *replyDropper) Addr() string { return p.ln.Addr().String() }

// TestCompareAndSwapLostReply loses the reply of the cas (or the add, for a
// nil old) after the server ran it: the caller learns the outcome is
// unknown, and the swap was applied once, never resent (a resent cas would
// fail on the changed CAS id, a resent add on the stored key).
func TestCompareAndSwapLostReply(t *testing.T) {
	srv := testserver.StartMemcached(t)
	direct := casClient(t, srv.Addr())
	proxy := startReplyDropper(t, srv.Addr())
	for _, ns := range []string{"", "lost"} {
		for _, withCtx := range []bool{false, true} {
			t.Run(fmt.Sprintf("namespace=%q,deadline=%v", ns, withCtx), func(t *testing.T) {
				client := casClient(t, proxy.Addr())
				c := New(client, &Options{Namespace: ns, BreakerThreshold: -1})
				defer c.Close()
				reader := New(direct, &Options{Namespace: ns})
				ctx := context.Background()
				if withCtx {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, time.Minute)
					defer cancel()
				}
				key := fmt.Sprintf("k-%v", withCtx)
				if err := c.Set(ctx, key, []byte("v0"), 0); err != nil {
					t.Fatal(err)
				}
				for _, tc := range []struct {
					verb, key string
					old       []byte
				}{{"cas ", key, []byte("v0")}, {"add ", key + "-fresh", nil}} {
					proxy.dropped.Store(false)
					verb := tc.verb
					proxy.verb.Store(&verb)
					ok, err := c.CompareAndSwap(ctx, tc.key, tc.old, []byte("v1"), time.Minute)
					if ok || !errors.Is(err, cachekit.ErrUnknownOutcome) {
						t.Fatalf("swap by %q with its reply lost: %v, %v; want false, ErrUnknownOutcome", verb, ok, err)
					}
					if !proxy.dropped.Load() {
						t.Fatalf("the proxy dropped no reply of %q", verb)
					}
					if v, err := reader.Get(context.Background(), tc.key); err != nil || string(v) != "v1" {
						t.Fatalf("after the lost %q the server holds %q, %v; want v1 (applied once)", verb, v, err)
					}
				}
				// The cache recovers on a fresh connection.
				if ok, err := c.CompareAndSwap(ctx, key, []byte("v1"), []byte("v2"), 0); !ok || err != nil {
					t.Fatalf("swap after the lost replies: %v, %v", ok, err)
				}
			})
		}
	}
}

// countingConn counts the requests written on a connection (gomemcache
// flushes each request in one Write).
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

// TestIncrementNative: a positive Increment is one incr request, with and
// without a namespace (the generation trusted for GenerationTTL), keeps
// the item's flags and so its TTL, and creates a missing key; a result past
// math.MaxInt64 or past 2^64 is ErrNotInteger with the delta taken back
// off; a negative value goes through the compare-and-swap loop; the values
// incr reads more laxly than the contract behave as documented; and with
// GenerationTTL negative, Increment sees another cache's Clear at once.
func TestIncrementNative(t *testing.T) {
	srv := testserver.StartMemcached(t)
	var requests atomic.Int64
	client := casClient(t, srv.Addr())
	var d net.Dialer
	client.DialContext = func(ctx context.Context, network, address string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		return countingConn{conn, &requests}, nil
	}
	ctx := context.Background()
	for _, ns := range []string{"", "native"} {
		t.Run("namespace="+ns, func(t *testing.T) {
			c := New(client, &Options{Namespace: ns, GenerationTTL: time.Hour})
			defer c.Close()
			if n, err := c.Increment(ctx, "n", 5); n != 5 || err != nil {
				t.Fatalf("Increment(missing, 5) = %d, %v; want 5", n, err)
			}
			requests.Store(0)
			for i := range 10 {
				if n, err := c.Increment(ctx, "n", 1); n != int64(6+i) || err != nil {
					t.Fatalf("Increment = %d, %v; want %d", n, err, 6+i)
				}
			}
			if got := requests.Load(); got != 10 {
				t.Fatalf("10 Increments sent %d requests; want 10 (one incr each)", got)
			}
			if v, err := c.Get(ctx, "n"); string(v) != "15" || err != nil {
				t.Fatalf("Get = %q, %v; want 15", v, err)
			}

			// The TTL, in the item's flags, is kept.
			if err := c.Set(ctx, "ttl", []byte("1"), time.Hour); err != nil {
				t.Fatal(err)
			}
			before, _, err := c.getOne(nil, "ttl")
			if err != nil || before == nil {
				t.Fatal(before, err)
			}
			if n, err := c.Increment(ctx, "ttl", 41); n != 42 || err != nil {
				t.Fatalf("Increment = %d, %v; want 42", n, err)
			}
			after, _, err := c.getOne(nil, "ttl")
			if err != nil || after == nil || after.Flags != before.Flags || after.Flags == 0 || string(after.Value) != "42" {
				t.Fatalf("after Increment: %+v, %v; want value 42 and flags %d (the absolute expiry) kept", after, err, before.Flags)
			}

			// Negative values: incr refuses them, the cas loop counts.
			if err := c.Set(ctx, "neg", []byte("-5"), 0); err != nil {
				t.Fatal(err)
			}
			if n, err := c.Increment(ctx, "neg", 3); n != -2 || err != nil {
				t.Fatalf("Increment(-5, 3) = %d, %v; want -2", n, err)
			}
			if n, err := c.Increment(ctx, "neg", 7); n != 5 || err != nil {
				t.Fatalf("Increment(-2, 7) = %d, %v; want 5", n, err)
			}

			// Past MaxInt64 (incr succeeds, the result says it overflowed)
			// and past 2^64 (incr wraps): ErrNotInteger, value restored.
			for _, tc := range []struct {
				v     string
				delta int64
			}{
				{"9223372036854775807", 1},
				{"9223372036854775000", 10000},
				{"18446744073709551615", 1},
				{"18446744073709551000", 1 << 62},
				{"1", 1<<63 - 1},
			} {
				if err := c.Set(ctx, "big", []byte(tc.v), time.Hour); err != nil {
					t.Fatal(err)
				}
				if n, err := c.Increment(ctx, "big", tc.delta); !errors.Is(err, cachekit.ErrNotInteger) {
					t.Fatalf("Increment(%s, %d) = %d, %v; want ErrNotInteger", tc.v, tc.delta, n, err)
				}
				if v, err := c.Get(ctx, "big"); string(v) != tc.v || err != nil {
					t.Fatalf("after the refused Increment(%s, %d): %q, %v; want the value back", tc.v, tc.delta, v, err)
				}
			}

			// What incr reads more laxly than the contract (documented).
			for _, tc := range []struct{ v, after string }{
				{" 5", "6 "}, {"+5", "6 "}, {"5 apples", "6       "}, {"007", "8  "},
			} {
				if err := c.Set(ctx, "lax", []byte(tc.v), 0); err != nil {
					t.Fatal(err)
				}
				if n, err := c.Increment(ctx, "lax", 1); n != int64(tc.after[0]-'0') || err != nil {
					t.Fatalf("Increment(%q, 1) = %d, %v; want %c (incr's reading)", tc.v, n, err, tc.after[0])
				}
				if v, err := c.Get(ctx, "lax"); string(v) != tc.after || err != nil {
					t.Fatalf("after Increment(%q, 1): %q, %v; want %q (rewritten in place)", tc.v, v, err, tc.after)
				}
			}
			// Not numbers at all: ErrNotInteger, value untouched.
			for _, v := range []string{"", "abc", "12abc", "1.5", "99999999999999999999"} {
				if err := c.Set(ctx, "nan", []byte(v), 0); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Increment(ctx, "nan", 1); !errors.Is(err, cachekit.ErrNotInteger) {
					t.Fatalf("Increment(%q, 1): %v; want ErrNotInteger", v, err)
				}
				if got, err := c.Get(ctx, "nan"); string(got) != v || err != nil {
					t.Fatalf("after Increment(%q, 1): %q, %v", v, got, err)
				}
			}

			if ns != "" {
				// A cache that asks for the generation before every
				// write sees another cache's Clear at once.
				eager := New(client, &Options{Namespace: ns, GenerationTTL: -1})
				defer eager.Close()
				if n, err := eager.Increment(ctx, "n", 1); n != 16 || err != nil {
					t.Fatalf("Increment = %d, %v; want 16", n, err)
				}
				if err := c.Clear(ctx); err != nil {
					t.Fatal(err)
				}
				if n, err := eager.Increment(ctx, "n", 1); n != 1 || err != nil {
					t.Fatalf("Increment after a Clear elsewhere = %d, %v; want 1", n, err)
				}
			}
		})
	}
}

// TestIncrementLostReply loses the reply of the incr (positive delta), of
// the add that creates a missing counter, and of the cas (negative delta):
// each time the caller learns the outcome is unknown, and the server
// applied the delta exactly once.
func TestIncrementLostReply(t *testing.T) {
	srv := testserver.StartMemcached(t)
	direct := New(casClient(t, srv.Addr()), nil)
	proxy := startReplyDropper(t, srv.Addr())
	c := New(casClient(t, proxy.Addr()), &Options{BreakerThreshold: -1})
	defer c.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		verb   string
		key    string
		delta  int64
		before string // "" for a missing key
		after  string
	}{
		{"incr ", "a", 2, "40", "42"},
		{"add ", "fresh", 3, "", "3"},
		{"cas ", "b", -2, "44", "42"},
	} {
		if tc.before != "" {
			if err := direct.Set(ctx, tc.key, []byte(tc.before), 0); err != nil {
				t.Fatal(err)
			}
		}
		proxy.dropped.Store(false)
		verb := tc.verb
		proxy.verb.Store(&verb)
		n, err := c.Increment(ctx, tc.key, tc.delta)
		if !errors.Is(err, cachekit.ErrUnknownOutcome) {
			t.Fatalf("Increment with the %q reply lost = %d, %v; want ErrUnknownOutcome", verb, n, err)
		}
		if !proxy.dropped.Load() {
			t.Fatalf("the proxy dropped no reply of %q", verb)
		}
		if v, err := direct.Get(ctx, tc.key); string(v) != tc.after || err != nil {
			t.Fatalf("after the lost %q the server holds %q, %v; want %s (applied once)", verb, v, err, tc.after)
		}
	}
}
